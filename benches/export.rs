//! Export and lifecycle figures: how long each format takes to write (and, for PFX, to read
//! back and decode), an import, and a CRL over many revoked devices.
//!
//! Run: `cargo bench --bench export` (release). Prints one line per figure.

#![allow(clippy::unwrap_used)] // a bench that cannot set up should stop loudly
#![allow(clippy::too_many_lines)] // a bench reads top to bottom; the 150-line limit is for the product

use chainsmith::export::{ExportOptions, Format, PfxProfile, export_entity, pfx};
use chainsmith::ops::lifecycle::{self, ImportRequest};
use chainsmith::ops::{DeviceRequest, new_devices};
use chainsmith::store::Workspace;
use chainsmith_test_support::workspace::new_ca;
use std::time::{Duration, Instant};

fn time<T>(label: &str, n: u32, mut f: impl FnMut(u32) -> T) -> Duration {
    let start = Instant::now();
    for i in 0..n {
        std::hint::black_box(f(i));
    }
    let per = start.elapsed() / n;
    println!(
        "{label:<52} {:>9.3} ms/op  ({n} runs)",
        per.as_secs_f64() * 1e3
    );
    per
}

fn main() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let ws = Workspace::open_or_create(&tmp.path().join("ws")).expect("workspace");
    new_ca(&ws, "acme", None);
    new_ca(&ws, "inter", Some("acme"));
    let devices = 200u32;
    new_devices(
        &ws,
        &DeviceRequest {
            ids: vec![format!("dev-{{001..{devices:03}}}")],
            issuer: Some("inter".into()),
            ..Default::default()
        },
    )
    .expect("devices");
    let out = tmp.path().join("out");
    let opts = |formats: &[Format], sub: &str, i: u32| ExportOptions {
        out_dir: out.join(format!("{sub}-{i}")),
        formats: formats.to_vec(),
        password: Some("bench-pass".into()),
        ..Default::default()
    };
    println!("chainsmith export benchmark (ECDSA P-256 device under root → intermediate)");
    time("export pem (5 files)", 100, |i| {
        export_entity(
            &ws,
            &format!("dev-{:03}", i % devices + 1),
            &opts(&[Format::Pem], "pem", i),
        )
        .unwrap()
    });
    time("export der (2 files)", 100, |i| {
        export_entity(
            &ws,
            &format!("dev-{:03}", i % devices + 1),
            &opts(&[Format::Der], "der", i),
        )
        .unwrap()
    });
    for profile in [PfxProfile::Modern, PfxProfile::Compat] {
        time(
            &format!("export pfx {profile} (write + reopen + decode)"),
            50,
            |i| {
                let mut o = opts(&[Format::Pfx], &format!("pfx-{profile}"), i);
                o.pfx_profile = profile;
                export_entity(&ws, "dev-001", &o).unwrap()
            },
        );
    }
    time("export azure layout (4 files incl. PFX)", 50, |i| {
        export_entity(&ws, "dev-001", &opts(&[Format::Azure], "azure", i)).unwrap()
    });
    time("export pem with --key-password (AES-256 PKCS#8)", 50, |i| {
        let mut o = opts(&[Format::Pem], "kp", i);
        o.key_password = Some("k".into());
        export_entity(&ws, "dev-001", &o).unwrap()
    });
    let pfx_bytes = std::fs::read(out.join("pfx-modern-0/dev-001.pfx")).unwrap();
    time(
        "decode PFX algorithms (ASN.1 walk, no password)",
        10_000,
        |_| pfx::decode(&pfx_bytes).unwrap(),
    );
    let size_modern = std::fs::metadata(out.join("pfx-modern-0/dev-001.pfx"))
        .unwrap()
        .len();
    let size_compat = std::fs::metadata(out.join("pfx-compat-0/dev-001.pfx"))
        .unwrap()
        .len();
    println!(
        "{:<52} {size_modern} B modern, {size_compat} B compat",
        "PFX size (leaf + key + 2 issuers)"
    );
    let inter_pfx = out.join("inter-pfx");
    export_entity(
        &ws,
        "inter",
        &ExportOptions {
            out_dir: inter_pfx.clone(),
            formats: vec![Format::Pfx],
            password: Some("p".into()),
            ..Default::default()
        },
    )
    .unwrap();
    time("import PFX CA (open, check key, store)", 30, |i| {
        lifecycle::import(
            &ws,
            &ImportRequest {
                files: vec![inter_pfx.join("inter.pfx")],
                name: format!("imp-{i}"),
                password: Some("p".into()),
                force: false,
            },
        )
        .unwrap()
    });
    time("renew device (same key, history kept)", 30, |i| {
        lifecycle::renew(
            &ws,
            &lifecycle::RenewRequest {
                name: format!("dev-{:03}", i + 1),
                ..Default::default()
            },
            &chainsmith::hub::HubStore::new(ws.clone()),
        )
        .unwrap()
    });
    let revoked = 100;
    for i in 0..revoked {
        lifecycle::revoke(
            &ws,
            &lifecycle::RevokeRequest {
                name: format!("dev-{:03}", i + 101),
                reason: "superseded".into(),
                disable_on_hub: false,
            },
            &chainsmith::hub::HubStore::new(ws.clone()),
        )
        .unwrap();
    }
    time(
        &format!("crl over {devices} devices, {revoked} revoked (scan + sign)"),
        20,
        |_| lifecycle::crl(&ws, "inter", None).unwrap(),
    );
    time(
        &format!("list --expiring 30d over {} entities", devices + 32),
        20,
        |_| {
            lifecycle::expiring(
                &ws,
                time::Duration::days(30),
                time::OffsetDateTime::now_utc(),
            )
            .unwrap()
        },
    );
}
