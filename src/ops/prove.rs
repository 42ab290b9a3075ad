//! Proof of possession through the local hub: one engine call that the CLI (`hub ca prove`),
//! the TUI's Hub tab and the guide share. It lives in `ops`, above both the hub registry and
//! the verification certificate, so that the hub never calls up into `ops`.

use crate::hub::{HubStore, RegistryError};
use crate::store;

/// The whole proof of possession for workspace CA `ca`: upload it unverified if the hub
/// does not have it, make the verification certificate for the hub's code (at
/// [`super::verification_out`]), and have the hub check it. Returns the steps taken, for a face
/// to show; a CA that is Verified already is left alone.
pub fn hub_prove(hub: &HubStore, ca: &str) -> Result<Vec<String>, RegistryError> {
    let reg = hub.load()?;
    let mut steps = Vec::new();
    let entry = match reg.cas.iter().find(|c| c.name == ca) {
        Some(c) if c.verified => {
            return Ok(vec![format!("CA \"{ca}\" is already Verified in the hub")]);
        }
        Some(c) => {
            steps.push(format!("CA \"{ca}\" is in the hub, Unverified"));
            c.clone()
        }
        None => {
            let c = hub.add_ca(ca, false)?;
            steps.push(format!("added CA \"{ca}\" to the hub (Unverified)"));
            c
        }
    };
    steps.push(format!("hub verification code {}", entry.code));
    let out = super::verification_out(hub.ws.root(), ca);
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).map_err(|e| store::io_error("cannot create", dir, e))?;
    }
    super::new_verification(&hub.ws, ca, &entry.code, &out, None, true)?;
    steps.push(format!("verification certificate {}", out.display()));
    let bytes = std::fs::read(&out).map_err(|e| store::io_error("cannot read", &out, e))?;
    hub.verify_ca(ca, &bytes)?;
    steps.push(format!("hub verified the proof: CA \"{ca}\" is Verified"));
    Ok(steps)
}
