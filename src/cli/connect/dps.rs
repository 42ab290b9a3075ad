//! `connect DEVICE --dps [--id-scope S] [--csr]`: provision through the local DPS first
//! (the engine's [`crate::provision::provision`]), printing each step it reports, then hand
//! the connection test the assigned device.

use super::ConnectArgs;
use crate::hub::HubStore;
use crate::mqtt::{Endpoint, Identity};
use crate::provision::{Progress, ProvisionError, ProvisionSpec};
use crate::store::Workspace;
use anyhow::anyhow;

/// Provision `identity` at the local hub's DPS; returns the identity the hub test uses.
pub async fn provision(
    json: bool,
    ws: &Workspace,
    store: &HubStore,
    endpoint: &Endpoint,
    identity: Identity,
    trust: Vec<Vec<u8>>,
    a: &ConnectArgs,
) -> anyhow::Result<Identity> {
    let spec = ProvisionSpec {
        endpoint,
        id_scope: a.id_scope.clone(),
        csr: a.csr,
        timeout: a.timeout,
        trust,
    };
    let mut show = |p: Progress<'_>| match p {
        Progress::Begin { .. } if json => {}
        Progress::Issued {
            registration_id,
            cert,
            key,
            onboarding,
        } if json => {
            super::super::print_json_line(&serde_json::json!({
                "event": "dps-issued",
                "registration_id": registration_id,
                "chain": cert,
                "key": key,
                "entity": registration_id,
                "onboarding": onboarding.map(|d| serde_json::json!({
                    "dir": d,
                    "cert": d.join(crate::store::CERT_FILE),
                    "key": d.join(crate::store::KEY_FILE),
                })),
            }));
        }
        Progress::Begin {
            registration_id,
            id_scope,
            api_version,
            csr,
        } => say!(
            "provision {registration_id} through the local DPS (ID scope {id_scope}, api-version {api_version}{})",
            if csr {
                ", CSR for a fresh P-256 key"
            } else {
                ""
            }
        ),
        Progress::Step(s) if json => {
            super::super::print_json_line(&serde_json::json!({ "event": "dps", "step": s }));
        }
        Progress::Step(s) => {
            let mark = if s.ok { "✓" } else { "✗" };
            say!(
                "{mark} dps {:<12} {:>9.1} ms  {}",
                s.step,
                s.ms,
                crate::text::escape_controls(&s.detail)
            );
        }
        Progress::Issued {
            registration_id,
            cert,
            key,
            onboarding,
        } => {
            let id = crate::text::escape_controls(registration_id);
            say!(
                "  issued chain {} (key {}); the workspace keeps the certificate as \"{id}\"",
                cert.display(),
                key.display()
            );
            // The onboarding certificate is no longer the entity's: say where it went, and
            // how to onboard with it again.
            if let Some(d) = onboarding {
                let (c, k) = (
                    d.join(crate::store::CERT_FILE),
                    d.join(crate::store::KEY_FILE),
                );
                say!(
                    "  the onboarding certificate moved to \"{id}\"'s history: {} (key {}); to onboard with it again: chainsmith connect {id} --dps --csr --cert {} --key {}",
                    c.display(),
                    k.display(),
                    c.display(),
                    k.display()
                );
            }
        }
    };
    crate::provision::provision(ws, store, identity, spec, &mut show)
        .await
        .map_err(|e| match e {
            ProvisionError::IdScope(m) => anyhow!("--id-scope: {m}"),
            e => e.into(),
        })
}
