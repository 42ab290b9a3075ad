//! AWS IoT Core for chainsmith, beside `chainsmith-azure` on the same seam
//! (`chainsmith-server`): AWS's rules as AWS documents them, and the local AWS IoT Core.
//!
//! - [`policy`]: IoT policy documents and their evaluation (explicit Deny wins, no Allow means
//!   no), with the policy variables AWS substitutes.
//! - [`template`]: provisioning templates (`Parameters`, `Resources`, `Ref`, `Fn::Join`), as
//!   JITP and fleet provisioning use them.
//! - [`broker`]: the local AWS IoT Core's MQTT broker (the wire), asking [`rules`] at each
//!   decision.
//! - [`registry`]: the state under `WS/aws/` (registration code, CAs, certificates, things,
//!   policies, templates) and [`rules::Rules`] over it, JITP included.
//! - [`rules`]: the seam between the broker (the wire) and AWS's rules (the registry).
//!
//! Nothing here draws or prints: the CLI and TUI are faces over these modules.

pub mod broker;
pub mod policy;
pub mod registry;
pub mod rules;
pub mod template;
