//! The registrations a device may poll, by operation id: what every DPS transport answers a
//! poll from (MQTT's `$dps/registrations/GET/iotdps-get-operationstatus/`, HTTPS's
//! `GET …/operations/{operationId}`). An answer is given only to the certificate that
//! registered: a poll is authenticated as the register was, so an operation id alone (in a
//! log, a proxy's trace) lets no other certificate read the registration state.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

/// Operations a device may poll: answers by operation id, the oldest dropped when there are
/// more than [`MAX_OPS`], when they hold more than [`MAX_OPS_BYTES`], or after [`OP_TTL`].
#[derive(Default)]
pub(in crate::hub) struct Operations {
    answers: HashMap<String, Operation>,
    order: VecDeque<String>,
    bytes: usize,
}

/// One operation's answer: whose it is, the body, when it was made.
struct Operation {
    registration_id: String,
    /// The SHA-256 thumbprint of the certificate that registered.
    owner: String,
    body: Vec<u8>,
    at: std::time::Instant,
}

/// Operations remembered for polling (a device polls within seconds of registering).
const MAX_OPS: usize = 10_000;
/// Bytes of answers remembered: an answer holds the registration state and any issued
/// chain (a few KB) and the payload ([`super::MAX_PAYLOAD_BYTES`] at most), so this keeps
/// the last thousand or so of the largest and every one of the usual size.
const MAX_OPS_BYTES: usize = 32 * 1024 * 1024;
/// How long an answer can be polled. The SDKs poll after `retry-after` (1 s here) and give up
/// within minutes; DPS documents no retention, so ten minutes is generous.
const OP_TTL: Duration = Duration::from_secs(600);

impl Operations {
    /// Keep `body` as the answer to `id`, for `registration_id` polling with the certificate
    /// whose SHA-256 thumbprint is `owner`.
    pub(in crate::hub) fn insert(
        &mut self,
        id: String,
        registration_id: String,
        owner: String,
        body: Vec<u8>,
    ) {
        self.insert_at(
            id,
            (registration_id, owner),
            body,
            std::time::Instant::now(),
        );
    }

    fn insert_at(
        &mut self,
        id: String,
        (registration_id, owner): (String, String),
        body: Vec<u8>,
        now: std::time::Instant,
    ) {
        self.expire(now);
        self.bytes += body.len();
        self.order.push_back(id.clone());
        self.answers.insert(
            id,
            Operation {
                registration_id,
                owner,
                body,
                at: now,
            },
        );
        while self.order.len() > MAX_OPS || self.bytes > MAX_OPS_BYTES {
            if !self.drop_oldest() {
                break;
            }
        }
    }

    /// The answer to `id`, if it is `registration_id`'s, polled with the certificate that
    /// registered (SHA-256 thumbprint `owner`), and still kept.
    pub(in crate::hub) fn answer(
        &mut self,
        id: &str,
        registration_id: &str,
        owner: &str,
    ) -> Option<Vec<u8>> {
        self.answer_at(id, (registration_id, owner), std::time::Instant::now())
    }

    fn answer_at(
        &mut self,
        id: &str,
        (registration_id, owner): (&str, &str),
        now: std::time::Instant,
    ) -> Option<Vec<u8>> {
        self.expire(now);
        self.answers
            .get(id)
            .filter(|o| o.registration_id.eq_ignore_ascii_case(registration_id) && o.owner == owner)
            .map(|o| o.body.clone())
    }

    fn expire(&mut self, now: std::time::Instant) {
        while let Some(first) = self.order.front() {
            match self.answers.get(first) {
                Some(o) if now.saturating_duration_since(o.at) < OP_TTL => break,
                _ => {
                    self.drop_oldest();
                }
            }
        }
    }

    fn drop_oldest(&mut self) -> bool {
        let Some(old) = self.order.pop_front() else {
            return false;
        };
        if let Some(o) = self.answers.remove(&old) {
            self.bytes -= o.body.len();
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// Registration `dev`, registered with the certificate of thumbprint `T`.
    fn dev() -> (String, String) {
        ("dev".into(), "T".into())
    }

    #[test]
    fn only_the_registering_certificate_reads_an_answer() {
        let t0 = Instant::now();
        let mut ops = Operations::default();
        ops.insert_at("op".into(), dev(), b"state".to_vec(), t0);
        assert!(ops.answer_at("op", ("dev", "T"), t0).is_some());
        assert!(
            ops.answer_at("op", ("dev", "OTHER"), t0).is_none(),
            "another certificate naming the registration"
        );
    }

    #[test]
    fn operations_are_bounded_by_count_bytes_and_age() {
        let t0 = Instant::now();
        let mut ops = Operations::default();
        for i in 0..MAX_OPS + 5 {
            ops.insert_at(format!("op{i}"), dev(), vec![b'x'; 10], t0);
        }
        assert_eq!(ops.answers.len(), MAX_OPS);
        assert!(
            ops.answer_at("op0", ("dev", "T"), t0).is_none(),
            "the oldest went first"
        );
        assert!(
            ops.answer_at(&format!("op{}", MAX_OPS + 4), ("DEV", "T"), t0)
                .is_some()
        );
        assert!(
            ops.answer_at(&format!("op{}", MAX_OPS + 4), ("other", "T"), t0)
                .is_none()
        );

        let mut ops = Operations::default();
        let big = MAX_OPS_BYTES / 4 + 1;
        for i in 0..8 {
            ops.insert_at(format!("big{i}"), dev(), vec![0; big], t0);
        }
        assert!(ops.bytes <= MAX_OPS_BYTES, "{} bytes kept", ops.bytes);
        assert_eq!(ops.answers.len(), 3);

        let later = t0 + OP_TTL + Duration::from_secs(1);
        assert!(
            ops.answer_at("big7", ("dev", "T"), later).is_none(),
            "kept past its age"
        );
        assert_eq!((ops.answers.len(), ops.bytes), (0, 0));
    }
}
