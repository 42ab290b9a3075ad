//! The local Device Provisioning Service's state and decisions, kept beside the hub registry
//! in `WS/hub/dps.json`: the ID scope, DPS's own certificate list (a CA verified on the hub is
//! not thereby verified here, as in Azure), enrollment groups, individual enrollments and
//! registrations.
//!
//! [`HubStore::dps_register`] is the whole decision for one register request: which enrollment
//! the device's certificate matches (an individual enrollment for its registration id wins over
//! any group, as in DPS), the refusal in DPS's words when none does, and on success the device
//! created or updated in the hub registry so it connects to the assigned hub at once. Chains
//! are checked by the hub's OpenSSL-based verifier ([`super::auth::HubTrust`]).

//!
//! One file per concern: `state.rs` (what is kept on disk), `enrollments.rs` (the operator's
//! certificates and enrollments), `allocation.rs` (an enrollment's custom allocation webhook
//! and initial twin), `registration.rs` (the decision), `issuing.rs` (signing a
//! device's CSR), `exchange.rs` (one register or poll, whatever carried it); and one file per
//! transport a device registers over: `mqtt.rs` (MQTT and MQTT over WebSockets), `amqp.rs`
//! (AMQP and AMQP over WebSockets), `https.rs` (the REST API on 443).

mod allocation;
pub(super) mod amqp;
mod enrollments;
pub(super) mod exchange;
pub(super) mod https;
mod issuing;
pub(super) mod mqtt;
mod operations;
mod registration;
mod state;

pub use allocation::{
    Allocation, DPS_WEBHOOK_TIMEOUT, MAX_INITIAL_TWIN_FILE_BYTES, MAX_WEBHOOK_REPLY_BYTES,
    MAX_WEBHOOK_URL_BYTES, WebhookFailure, certificate_info, check_webhook_url, read_initial_twin,
};
pub use enrollments::{EnrollmentSettings, Group, Individual};
pub use https::{CSR_HEADROOM_BYTES, MAX_BODY_BYTES};
pub use issuing::{CsrRefusal, CsrSigner, IssueFn, SignCsr};
pub(super) use operations::Operations;
pub use registration::{Assigned, Decision, DpsRefusal, DpsRefusalKind};
pub use state::{DpsState, Registration};

use super::registry::HubStore;

/// Largest device payload a register request may carry, compact JSON. DPS documents no limit
/// that we found; chosen as a twin's reported-properties limit
/// ([`crate::azure::MAX_TWIN_PROPERTIES_BYTES`], 32 KB), since a payload often seeds a twin.
/// Depth as a twin's ([`crate::azure::MAX_TWIN_DEPTH`]), so a stored registration can always be
/// read back (serde_json stops at 128 levels).
pub const MAX_PAYLOAD_BYTES: usize = crate::azure::MAX_TWIN_PROPERTIES_BYTES;
