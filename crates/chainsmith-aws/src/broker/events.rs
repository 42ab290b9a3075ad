//! What the broker tells its faces (the CLI's log lines, `aws monitor`, tests). Every string in
//! an event came from a peer: faces escape it before it reaches a terminal.

use std::net::SocketAddr;

use bytes::Bytes;

use super::wire::Version;
use crate::rules::Action;

/// Events kept for a slow reader before it misses some (it is told how many).
pub const EVENTS_CAPACITY: usize = 1024;

/// Something that happened on the broker.
#[derive(Clone, Debug)]
pub enum BrokerEvent {
    /// A device was admitted (CONNACK sent).
    Connected {
        /// Its client id.
        client_id: String,
        /// Where it came from.
        peer: SocketAddr,
        /// Its MQTT version.
        version: Version,
        /// The username it sent (the SDKs' `?SDK=…&Version=…`).
        username: Option<String>,
    },
    /// A CONNECT was refused; `reason` says which of AWS's rules (AWS itself only closes).
    Refused {
        /// Where it came from.
        peer: SocketAddr,
        /// The client id, when the CONNECT was read.
        client_id: Option<String>,
        /// Which rule, as [`crate::rules::Refused::kind`] names it (or `client-id-not-valid`,
        /// `server-busy` for the broker's own limits).
        kind: String,
        /// Why.
        reason: String,
    },
    /// A connection closed before its CONNECT was decided.
    Dropped {
        /// Where it came from.
        peer: SocketAddr,
        /// Why.
        reason: String,
    },
    /// A device published (what `aws monitor` streams).
    Published {
        /// Its client id (`aws publish` shows as `chainsmith-cli`).
        client_id: String,
        /// The topic.
        topic: String,
        /// The payload.
        payload: Bytes,
    },
    /// A policy decision said no.
    Denied {
        /// Who asked.
        client_id: String,
        /// What.
        action: Action,
        /// On what (topic or filter).
        resource: String,
    },
    /// A device's session ended.
    Disconnected {
        /// Its client id.
        client_id: String,
        /// Why.
        reason: String,
    },
    /// A publish over AWS's per-connection rate quota was discarded (the connection stays).
    Throttled {
        /// Who published.
        client_id: String,
        /// Where to.
        topic: String,
    },
    /// A QoS 1 message was sent the most times the broker tries and never acknowledged.
    Undelivered {
        /// To whom.
        client_id: String,
        /// The topic.
        topic: String,
        /// How many times it was sent.
        sends: u32,
    },
    /// A message not sent to an MQTT 5 device because the packet is larger than the Maximum
    /// Packet Size the device set in its CONNECT (MQTT 5.0 section 3.1.2.11.4: the server
    /// discards it for that client).
    TooLargeForDevice {
        /// To whom.
        client_id: String,
        /// The topic.
        topic: String,
        /// The PUBLISH packet's size.
        size: usize,
        /// The device's Maximum Packet Size.
        max: usize,
    },
    /// A fleet provisioning request was answered (to the requesting connection alone).
    Provisioning {
        /// Who asked.
        client_id: String,
        /// The request topic.
        topic: String,
        /// `accepted`, or `rejected STATUS CODE: MESSAGE`.
        outcome: String,
    },
    /// A state file (a shadow) did not parse and was set aside; the service goes on.
    SetAside {
        /// What was set aside, where, and how to restore it.
        note: String,
    },
}

impl BrokerEvent {
    /// One log line for `aws serve` (not yet escaped: the face escapes it for its terminal).
    pub fn line(&self) -> String {
        match self {
            BrokerEvent::Connected {
                client_id,
                peer,
                version,
                username,
            } => match username {
                Some(u) => format!("{client_id}: connected from {peer} ({version}, username {u})"),
                None => format!("{client_id}: connected from {peer} ({version})"),
            },
            BrokerEvent::Refused {
                peer,
                client_id: Some(id),
                reason,
                ..
            } => format!("{id}: refused from {peer}: {reason}; AWS closes the connection"),
            BrokerEvent::Refused {
                peer,
                client_id: None,
                reason,
                ..
            } => format!("refused {peer}: {reason}; AWS closes the connection"),
            BrokerEvent::Dropped { peer, reason } => format!("dropped {peer}: {reason}"),
            BrokerEvent::Published {
                client_id,
                topic,
                payload,
            } => format!("{client_id}: published {} bytes on {topic}", payload.len()),
            BrokerEvent::Denied {
                client_id,
                action,
                resource,
            } => format!(
                "{client_id}: {} on {resource} denied by its policies",
                crate::policy::action_name(*action)
            ),
            BrokerEvent::Disconnected { client_id, reason } => {
                format!("{client_id}: disconnected ({reason})")
            }
            BrokerEvent::Throttled { client_id, topic } => format!(
                "{client_id}: publish on {topic} discarded: over AWS's {} publishes per second per connection",
                super::limits::MAX_PUBLISHES_PER_SECOND
            ),
            BrokerEvent::Undelivered {
                client_id,
                topic,
                sends,
            } => format!(
                "{client_id}: a QoS 1 message on {topic} was sent {sends} times and never acknowledged; given up"
            ),
            BrokerEvent::TooLargeForDevice {
                client_id,
                topic,
                size,
                max,
            } => format!(
                "{client_id}: a message on {topic} not sent: its packet of {size} bytes is over the {max} bytes the device takes (its CONNECT's Maximum Packet Size)"
            ),
            BrokerEvent::Provisioning {
                client_id,
                topic,
                outcome,
            } => format!("{client_id}: {topic}: {outcome}"),
            BrokerEvent::SetAside { note } => note.clone(),
        }
    }
}
