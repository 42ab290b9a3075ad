//! Provisioning templates.
