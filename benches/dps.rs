//! The local DPS under load: 1,000 devices of one enrollment group register over MQTT
//! (registrations/s) and the time from the register PUBLISH to the assigned answer (p50/p99).
//!
//! The hub runs in-process (`Hub::start`, port 0); DPS_BENCH_CONCURRENCY devices register at
//! once, each on its own TLS connection with its own certificate, polling the operation at once
//! instead of after `retry-after` (so the figure is DPS's work, not the wait it asks for).
//! Every registration is recorded in `WS/hub/dps.json` and creates the device in the hub
//! registry (both written atomically under the workspace lock).
//! `cargo bench --bench dps`. Knobs: DPS_BENCH_DEVICES (1000), DPS_BENCH_CONCURRENCY (16).

#![allow(clippy::unwrap_used)] // a bench that cannot set up should stop loudly
#![allow(clippy::too_many_lines)] // a bench reads top to bottom; the 150-line limit is for the product

use std::sync::Arc;
use std::time::{Duration, Instant};

use chainsmith::azure::dps as wire;
use chainsmith::dps_client::{self, Device};
use chainsmith::hub::dps::Group;
use chainsmith::ops::{self, DeviceRequest};
use chainsmith::pki::KeyAlg;
use chainsmith_test_support::figures::env_usize;
use chainsmith_test_support::hub_util::{Fixture, start_hub};

fn main() {
    let n = env_usize("DPS_BENCH_DEVICES", 1000).clamp(1, 100_000);
    let conc = env_usize("DPS_BENCH_CONCURRENCY", 16).clamp(1, 256);
    let fx = Fixture::new();
    let t = Instant::now();
    ops::new_devices(
        &fx.ws,
        &DeviceRequest {
            ids: vec![format!("dps-{{0001..{n:04}}}")],
            issuer: Some("line2".into()),
            key: Some(KeyAlg::EcP256),
            ..Default::default()
        },
    )
    .unwrap();
    eprintln!(
        "setup: {n} device certificates in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    fx.store.dps_add_ca("line2", true).unwrap();
    fx.store
        .dps_add_group(Group {
            name: "bench".into(),
            primary: "line2".into(),
            secondary: None,
            settings: chainsmith::hub::dps::EnrollmentSettings {
                edge: false,
                enabled: true,
                issue_from: None,
                allocation: Default::default(),
                added: time::OffsetDateTime::now_utc(),
            },
        })
        .unwrap();
    let scope = fx.store.dps_id_scope().unwrap();
    let trust: Vec<Vec<u8>> = pem::parse_many(std::fs::read(fx.trust_file()).unwrap())
        .unwrap()
        .into_iter()
        .map(|p| p.into_contents())
        .collect();
    let line2 = fx.ws.load("line2").unwrap().cert_der;
    let devices: Vec<Device> = (1..=n)
        .map(|i| {
            let id = format!("dps-{i:04}");
            Device {
                chain: vec![fx.ws.load(&id).unwrap().cert_der, line2.clone()],
                key_pem: std::fs::read_to_string(fx.key_file(&id)).unwrap(),
                registration_id: id,
                trust: trust.clone(),
            }
        })
        .collect();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let hub = start_hub(fx.root()).await;
        let addr = hub.addr;
        let queue = Arc::new(std::sync::Mutex::new(devices));
        let t0 = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..conc {
            let queue = queue.clone();
            let scope = scope.clone();
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut failed = 0usize;
                loop {
                    let Some(d) = queue.lock().unwrap().pop() else { break };
                    let config = dps_client::tls_config(&d).unwrap();
                    let req = wire::RegisterRequest {
                        registration_id: d.registration_id.clone(),
                        payload: Some(serde_json::json!({"modelId": "dtmi:com:example:Thermostat;1"})),
                        csr: None,
                    };
                    let mut connected = 0.0;
                    let mut assigned = 0.0;
                    let mut on = |s: dps_client::ProvisionStep| match s.step.as_str() {
                        "CONNECT" => connected = s.ms,
                        "assigned" => assigned = s.ms,
                        _ => {}
                    };
                    let r = dps_client::provision(
                        addr,
                        "localhost",
                        config,
                        &d,
                        &scope,
                        wire::API_VERSION,
                        &req,
                        Duration::from_secs(30),
                        Some(Duration::ZERO),
                        &mut on,
                    )
                    .await;
                    match r {
                        Ok(_) => lat.push(assigned - connected),
                        Err(e) => {
                            failed += 1;
                            eprintln!("{}: {e}", d.registration_id);
                        }
                    }
                }
                (lat, failed)
            }));
        }
        let mut lat = Vec::new();
        let mut failed = 0;
        for t in tasks {
            let (l, f) = t.await.unwrap();
            lat.extend(l);
            failed += f;
        }
        let secs = t0.elapsed().as_secs_f64();
        lat.sort_by(|a, b| a.total_cmp(b));
        let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p).round() as usize];
        println!("dps: {n} devices of one enrollment group, {conc} registering at once");
        println!(
            "  registrations/s   {:.0} ({} assigned, {failed} failed, {secs:.1} s in all, TLS + CONNECT included)",
            lat.len() as f64 / secs,
            lat.len()
        );
        if !lat.is_empty() {
            println!(
                "  register→assigned p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (register PUBLISH to the 200 assigned answer, polling at once)",
                pct(0.5),
                pct(0.99),
                lat[lat.len() - 1]
            );
        }
        let st = fx.store.dps_load().unwrap();
        println!(
            "  recorded: {} registrations in dps.json, {} devices in the hub registry",
            st.registrations.len(),
            fx.store.load().unwrap().devices.len()
        );
        hub.shutdown().await;
    });
}
