//! `connect DEVICE --dps [--id-scope S] [--csr]`: provision through the local DPS first,
//! showing each step, then hand the connection test the assigned device (and, with --csr, the
//! certificate DPS issued for a fresh key).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};

use super::ConnectArgs;
use crate::azure::dps as wire;
use crate::dps_client::{self, ProvisionStep};
use crate::hub::HubStore;
use crate::mqtt::{Endpoint, Identity};
use crate::store::Workspace;

/// Provision `identity` at the local hub's DPS; returns the identity the hub test uses.
pub async fn provision(
    json: bool,
    ws: &Workspace,
    store: &HubStore,
    endpoint: &Endpoint,
    mut identity: Identity,
    trust: Vec<Vec<u8>>,
    a: &ConnectArgs,
) -> anyhow::Result<Identity> {
    let scope = match &a.id_scope {
        Some(s) => {
            wire::check_id_scope(s).map_err(|e| anyhow!("--id-scope: {e}"))?;
            s.clone()
        }
        None => store.dps_id_scope()?,
    };
    let regid = identity.device_id.clone();
    let device = dps_client::Device {
        registration_id: regid.clone(),
        chain: identity.sent.iter().map(|c| c.der.clone()).collect(),
        key_pem: identity.key_pem.clone(),
        trust,
    };
    let mut request = wire::RegisterRequest {
        registration_id: regid.clone(),
        payload: None,
        csr: None,
    };
    let mut fresh_key = None;
    let api = if a.csr {
        let (key, csr) = dps_client::fresh_csr(&regid).map_err(|e| anyhow!("making a CSR: {e}"))?;
        use base64::Engine;
        request.csr = Some(base64::engine::general_purpose::STANDARD.encode(csr));
        fresh_key = Some(key);
        wire::API_VERSION_CSR
    } else {
        wire::API_VERSION
    };
    let addr: SocketAddr = format!("{}:{}", endpoint.host, endpoint.port)
        .parse()
        .with_context(|| {
            format!(
                "the local hub's address {}:{}",
                endpoint.host, endpoint.port
            )
        })?;
    if !json {
        say!(
            "provision {regid} through the local DPS (ID scope {scope}, api-version {api}{})",
            if a.csr {
                ", CSR for a fresh P-256 key"
            } else {
                ""
            }
        );
    }
    let config = dps_client::tls_config(&device).map_err(|e| anyhow!(e))?;
    let mut show = |s: ProvisionStep| {
        if json {
            super::super::print_json_line(&serde_json::json!({ "event": "dps", "step": s }));
        } else {
            let mark = if s.ok { "✓" } else { "✗" };
            say!(
                "{mark} dps {:<12} {:>9.1} ms  {}",
                s.step,
                s.ms,
                crate::text::escape_controls(&s.detail)
            );
        }
    };
    let st = dps_client::provision(
        addr,
        &endpoint.host,
        config,
        &device,
        &scope,
        api,
        &request,
        a.timeout.max(Duration::from_secs(1)),
        None,
        &mut show,
    )
    .await
    .map_err(|e| anyhow!(e))?;
    if let Some(d) = &st.device_id {
        identity.device_id = d.clone();
    }
    let Some(key) = fresh_key else {
        return Ok(identity);
    };
    let Some(chain) = &st.issued_certificate_chain else {
        bail!("DPS assigned the device but returned no issuedCertificateChain for the CSR");
    };
    // The device keeps its fresh key; the files let it (and the user) use the issued chain.
    use base64::Engine;
    let mut pem_text = String::new();
    for c in chain {
        let der = base64::engine::general_purpose::STANDARD
            .decode(c)
            .context("issuedCertificateChain holds something other than base64")?;
        pem_text.push_str(&pem::encode(&pem::Pem::new("CERTIFICATE", der)));
    }
    let dir = store.dir().join("dps-issued");
    crate::store::make_private_dir_all(&dir)?;
    let cert = dir.join(format!(
        "{}_fullchain.pem",
        crate::azure::url_encode(&regid)
    ));
    let key_path = dir.join(format!("{}_key.pem", crate::azure::url_encode(&regid)));
    crate::store::write_atomic(&key_path, key.as_bytes(), 0o600)?;
    crate::store::write_atomic(&cert, pem_text.as_bytes(), 0o644)?;
    if !json {
        say!(
            "  issued chain {} (key {}); the workspace keeps the certificate as \"{regid}\"",
            cert.display(),
            key_path.display()
        );
    }
    let mut issued = Identity::from_files(&cert, &key_path, Some(ws))?;
    issued.device_id = identity.device_id;
    Ok(issued)
}
