//! Proof of possession through the local hub and its DPS: one engine call each that the CLI
//! (`hub ca prove`, `hub dps ca prove`), the TUI's Hub tab and the guide share, and DPS's
//! certificate issuance ([`dps_csr_signer`]). They live in `ops`, above both the hub registry
//! and the certificates they make, so that the hub never calls up into `ops`.

use crate::hub::dps::{CsrSigner, EnrollmentSettings, Group};
use crate::hub::{HubCa, HubStore, RegistryError};
use crate::store;

/// The whole proof of possession for workspace CA `ca`: upload it unverified if the hub
/// does not have it, make the verification certificate for the hub's code (at
/// [`crate::ops::verification_out`]), and have the hub check it. Returns the steps taken, for a face
/// to show; a CA that is Verified already is left alone.
pub fn hub_prove(hub: &HubStore, ca: &str) -> Result<Vec<String>, RegistryError> {
    prove(hub, ca, CaList::Hub)
}

/// The whole proof of possession for DPS (its own CA list, as the real service keeps): add the
/// CA if DPS lacks it, make the verification certificate for DPS's code, verify it. Returns
/// the steps taken; a CA Verified in DPS already is left alone.
pub fn dps_prove(hub: &HubStore, ca: &str) -> Result<Vec<String>, RegistryError> {
    prove(hub, ca, CaList::Dps)
}

/// Whose CA list a proof of possession is for: the hub and DPS each keep their own (as the
/// real services do), with the same steps.
#[derive(Clone, Copy)]
enum CaList {
    Hub,
    Dps,
}

impl CaList {
    /// The service as a step names it: "hub verification code", "added CA to the hub".
    fn service(self) -> &'static str {
        match self {
            CaList::Hub => "hub",
            CaList::Dps => "DPS",
        }
    }

    /// The service after "in" or "to".
    fn place(self) -> &'static str {
        match self {
            CaList::Hub => "the hub",
            CaList::Dps => "DPS",
        }
    }

    fn find(self, hub: &HubStore, ca: &str) -> Result<Option<HubCa>, RegistryError> {
        let cas = match self {
            CaList::Hub => hub.load()?.cas,
            CaList::Dps => hub.dps_load()?.cas,
        };
        Ok(cas.into_iter().find(|c| c.name == ca))
    }

    fn add(self, hub: &HubStore, ca: &str) -> Result<HubCa, RegistryError> {
        match self {
            CaList::Hub => hub.add_ca(ca, false),
            CaList::Dps => hub.dps_add_ca(ca, false),
        }
    }

    fn verify(self, hub: &HubStore, ca: &str, cert: &[u8]) -> Result<HubCa, RegistryError> {
        match self {
            CaList::Hub => hub.verify_ca(ca, cert),
            CaList::Dps => hub.dps_verify_ca(ca, cert),
        }
    }
}

fn prove(hub: &HubStore, ca: &str, list: CaList) -> Result<Vec<String>, RegistryError> {
    let (service, place) = (list.service(), list.place());
    let mut steps = Vec::new();
    let entry = match list.find(hub, ca)? {
        Some(c) if c.verified => {
            return Ok(vec![format!("CA \"{ca}\" is already Verified in {place}")]);
        }
        Some(c) => {
            steps.push(format!("CA \"{ca}\" is in {place}, Unverified"));
            c
        }
        None => {
            let c = list.add(hub, ca)?;
            steps.push(format!("added CA \"{ca}\" to {place} (Unverified)"));
            c
        }
    };
    steps.push(format!("{service} verification code {}", entry.code));
    let out = crate::ops::verification_out(hub.ws.root(), ca);
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).map_err(|e| store::io_error("cannot create", dir, e))?;
    }
    crate::ops::new_verification(&hub.ws, ca, &entry.code, &out, None, true)?;
    steps.push(format!("verification certificate {}", out.display()));
    let bytes = std::fs::read(&out).map_err(|e| store::io_error("cannot read", &out, e))?;
    list.verify(hub, ca, &bytes)?;
    steps.push(format!(
        "{service} verified the proof: CA \"{ca}\" is Verified"
    ));
    Ok(steps)
}

/// An enrollment group for workspace CA `ca` in one step (the TUI's key): DPS's proof of
/// possession first when DPS does not hold the CA Verified, then a group named after the CA
/// with it as primary. A group that already holds the CA is left as it is (its secondary
/// would be lost by replacing it). Returns the steps taken, for a face to show.
pub fn dps_group_from_ca(hub: &HubStore, ca: &str) -> Result<Vec<String>, RegistryError> {
    let mut steps = dps_prove(hub, ca)?;
    let st = hub.dps_load()?;
    if let Some(g) = st
        .groups
        .iter()
        .find(|g| g.primary == ca || g.secondary.as_deref() == Some(ca))
    {
        steps.push(format!(
            "enrollment group \"{}\" already holds CA \"{ca}\"",
            g.name
        ));
        return Ok(steps);
    }
    hub.dps_add_group(Group {
        name: ca.to_string(),
        primary: ca.to_string(),
        secondary: None,
        settings: EnrollmentSettings {
            edge: false,
            enabled: true,
            issue_from: None,
            allocation: Default::default(),
            added: hub.ws.now(),
        },
    })?;
    steps.push(format!(
        "added enrollment group \"{ca}\" (primary CA \"{ca}\")"
    ));
    Ok(steps)
}

/// DPS's certificate issuance, for [`crate::hub::HubConfig::csr_signer`]: the CSR signed by
/// the enrollment's issuing CA with the device profile ([`crate::ops::sign_csr`], target DPS) and
/// kept as entity `registration_id`, an earlier certificate going to its history.
pub fn dps_csr_signer() -> CsrSigner {
    CsrSigner(std::sync::Arc::new(
        |ws: &store::Workspace, ca: &str, registration_id: &str, csr: &[u8]| {
            let req = crate::ops::CsrRequest {
                issuer: ca.to_string(),
                name: Some(registration_id.to_string()),
                target: crate::pki::Target::Dps,
                force: true,
                cn_only: true,
                ..Default::default()
            };
            crate::ops::sign_csr(ws, csr, &req).map(|_| ())
        },
    ))
}
