//! The guide's AWS track: register a CA with its registration code, let JITP provision a device
//! on its first connection, update its shadow, each step checked against the local AWS IoT
//! Core's real state (`WS/aws/registry.json` through `chainsmith-aws`'s registry, the shadows
//! under `WS/aws/shadows/`, the endpoint `aws serve` records) and the workspace's entities.
//! The flow is the AWS IoT developer guide's "Just-in-time provisioning"
//! (<https://docs.aws.amazon.com/iot/latest/developerguide/jit-provisioning.html>).

use std::path::Path;

use super::GuideStep;
use crate::aws::broker::endpoint::{Endpoint, endpoint_path};
use crate::aws::broker::shadow::SHADOWS_DIR;
use crate::aws::registry::{Registry, Status};
use crate::ops::TreeRow;
use crate::store::{Kind, Workspace};
use crate::text::escape_controls;

/// The device the AWS track provisions by JITP (its CN becomes the thing's name).
pub(super) const AWS_DEVICE: &str = "aws-sensor-1";
/// Where the track's export writes the device's files, relative to the directory chainsmith
/// runs in (the export step's check looks there).
pub const AWS_EXPORT_DIR: &str = "aws-sensor-1-files";
/// Things with shadows the guide lists: it needs one; the shadow service keeps up to
/// `MAX_SHADOW_THINGS`, and a directory that large is not read on every tick.
const MAX_SHADOW_THINGS_READ: usize = 1000;
/// The largest `certificate.pem.crt` the export check reads: a certificate chain is a few KB.
const MAX_EXPORTED_CERT_BYTES: u64 = 64 * 1024;

/// The AWS track, from the CAs to the shadow.
pub const AWS_STEPS: [GuideStep; 9] = [
    GuideStep {
        id: "a-ca",
        text: include_str!("../../../assets/guide/aws-01-ca.txt"),
    },
    GuideStep {
        id: "a-code",
        text: include_str!("../../../assets/guide/aws-02-code.txt"),
    },
    GuideStep {
        id: "a-verify",
        text: include_str!("../../../assets/guide/aws-03-verify.txt"),
    },
    GuideStep {
        id: "a-register",
        text: include_str!("../../../assets/guide/aws-04-register.txt"),
    },
    GuideStep {
        id: "a-device",
        text: include_str!("../../../assets/guide/aws-05-device.txt"),
    },
    GuideStep {
        id: "a-export",
        text: include_str!("../../../assets/guide/aws-06-export.txt"),
    },
    GuideStep {
        id: "a-serve",
        text: include_str!("../../../assets/guide/aws-07-serve.txt"),
    },
    GuideStep {
        id: "a-connect",
        text: include_str!("../../../assets/guide/aws-08-connect.txt"),
    },
    GuideStep {
        id: "a-shadow",
        text: include_str!("../../../assets/guide/aws-09-shadow.txt"),
    },
];

/// A registered CA as the guide checks it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AwsCa {
    /// The workspace entity it was registered from, else its certificate id.
    pub name: String,
    /// ACTIVE.
    pub active: bool,
    /// Auto-registration on.
    pub auto_registration: bool,
    /// Its JITP template's name.
    pub template: Option<String>,
}

/// What the AWS track reads beyond the workspace's entities. Strings from the registry's
/// file are kept escaped: they reach the terminal.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AwsFacts {
    /// The registration code, when `WS/aws/registry.json` holds one.
    pub registration_code: Option<String>,
    /// The registered CAs.
    pub cas: Vec<AwsCa>,
    /// Things attached to a certificate JITP registered (no workspace name, signed by a CA
    /// with a template): (thing, certificate id).
    pub jitp_things: Vec<(String, String)>,
    /// Things with a shadow document under `WS/aws/shadows/`.
    pub shadows: Vec<String>,
    /// host:port `aws serve` recorded.
    pub endpoint: Option<String>,
    /// `AWS_EXPORT_DIR/certificate.pem.crt` under the directory looked in is [`AWS_DEVICE`]'s.
    pub exported: bool,
}

/// The AWS facts of `ws`, the export looked for under `base` (the directory chainsmith runs
/// in). Reads only: a workspace without `WS/aws/registry.json` gets none made.
pub fn aws_facts(ws: &Workspace, base: &Path) -> AwsFacts {
    let mut f = AwsFacts::default();
    let aws_dir = ws.root().join("aws");
    if aws_dir.join("registry.json").is_file() {
        if let Ok(state) = Registry::open(&aws_dir, ws.clock()).and_then(|r| r.snapshot()) {
            read_registry(&mut f, &state);
        }
    }
    f.shadows = shadow_things(&ws.root().join(SHADOWS_DIR));
    if endpoint_path(ws).is_file() {
        f.endpoint = Some(escape_controls(&Endpoint::load(ws).address()).into_owned());
    }
    f.exported = exported(ws, base);
    f
}

fn read_registry(f: &mut AwsFacts, state: &crate::aws::registry::State) {
    let esc = |s: &str| escape_controls(s).into_owned();
    if !state.registration_code.is_empty() {
        f.registration_code = Some(esc(&state.registration_code));
    }
    f.cas = state
        .cas
        .values()
        .map(|c| AwsCa {
            name: esc(c.name.as_deref().unwrap_or(&c.id)),
            active: c.status == Status::Active,
            auto_registration: c.auto_registration,
            template: c.template.as_deref().map(esc),
        })
        .collect();
    let jitp_ca = |id: &Option<String>| {
        id.as_ref()
            .and_then(|id| state.cas.get(id))
            .is_some_and(|ca| ca.template.is_some())
    };
    f.jitp_things = state
        .certificates
        .values()
        .filter(|c| c.name.is_none() && jitp_ca(&c.ca_id))
        .flat_map(|c| c.things.iter().map(|t| (esc(t), esc(&c.id))))
        .collect();
}

/// The things whose directory under `dir` holds a shadow document (`*.json`).
fn shadow_things(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let has_document = |thing: &Path| {
        std::fs::read_dir(thing).is_ok_and(|mut files| {
            files.any(|f| f.is_ok_and(|f| f.path().extension().is_some_and(|e| e == "json")))
        })
    };
    let mut things: Vec<String> = entries
        .take(MAX_SHADOW_THINGS_READ)
        .filter_map(Result::ok)
        .filter(|e| has_document(&e.path()))
        .map(|e| escape_controls(&e.file_name().to_string_lossy()).into_owned())
        .collect();
    things.sort();
    things
}

/// Whether `base/AWS_EXPORT_DIR/certificate.pem.crt` starts with [`AWS_DEVICE`]'s certificate.
fn exported(ws: &Workspace, base: &Path) -> bool {
    let file = base.join(AWS_EXPORT_DIR).join("certificate.pem.crt");
    if std::fs::metadata(&file).map_or(true, |m| m.len() > MAX_EXPORTED_CERT_BYTES) {
        return false;
    }
    let Ok(text) = std::fs::read(&file) else {
        return false;
    };
    let Ok(device) = ws.load(AWS_DEVICE) else {
        return false;
    };
    pem::parse(text).is_ok_and(|p| p.contents() == device.cert_der.as_slice())
}

/// The AWS track's checks: workspace entities and the local AWS IoT Core's state.
pub(super) fn aws_status(id: &str, rows: &[TreeRow], aws: &AwsFacts) -> Option<String> {
    let row = |name: &str| rows.iter().find(|r| r.meta.name == name);
    match id {
        "a-ca" => rows
            .iter()
            .filter(|r| r.meta.kind == Kind::Intermediate && r.meta.has_key)
            .find_map(|r| {
                let issuer = r.meta.issuer.as_deref()?;
                row(issuer)
                    .filter(|i| i.meta.kind == Kind::Root && i.meta.has_key)
                    .map(|_| format!("CA \"{}\" under root \"{issuer}\"", r.meta.name))
            }),
        "a-code" => aws.registration_code.as_ref().map(|c| {
            let head: String = c.chars().take(8).collect();
            format!("registration code {head}… in WS/aws/registry.json")
        }),
        "a-verify" => {
            let code = aws.registration_code.as_deref()?;
            rows.iter()
                .find(|r| r.meta.kind == Kind::Verification && r.meta.code.as_deref() == Some(code))
                .map(|r| {
                    format!(
                        "verification certificate signed by \"{}\", CN = the registration code",
                        r.meta.issuer.as_deref().unwrap_or("?")
                    )
                })
        }
        "a-register" => aws
            .cas
            .iter()
            .find(|c| c.active && c.auto_registration && c.template.is_some())
            .map(|c| {
                format!(
                    "CA \"{}\" ACTIVE, auto-registration on, template \"{}\"",
                    c.name,
                    c.template.as_deref().unwrap_or_default()
                )
            }),
        "a-device" => row(AWS_DEVICE)
            .filter(|r| r.meta.kind == Kind::Device && !r.meta.self_signed)
            .and_then(|r| r.meta.issuer.as_deref())
            .map(|issuer| format!("device \"{AWS_DEVICE}\" issued by \"{issuer}\"")),
        "a-export" => aws.exported.then(|| {
            format!("{AWS_EXPORT_DIR}/certificate.pem.crt is \"{AWS_DEVICE}\"'s certificate")
        }),
        "a-serve" => aws
            .endpoint
            .as_ref()
            .map(|e| format!("aws serve recorded its endpoint {e}")),
        "a-connect" => aws.jitp_things.first().map(|(thing, cert)| {
            let head: String = cert.chars().take(8).collect();
            format!("thing \"{thing}\" provisioned by JITP (certificate {head}…)")
        }),
        "a-shadow" => aws
            .shadows
            .first()
            .map(|t| format!("thing \"{t}\" has a shadow document")),
        _ => None,
    }
}
