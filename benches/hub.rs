//! The local hub under load, against Mosquitto with the same certificates, in one run.
//!
//! 1,000 devices with EC P-256 certificates connect over mTLS (handshakes/s), stay connected
//! (peak RSS of the broker process), send 20 QoS 1 messages each as fast as PUBACKs come back
//! (messages/s), then a paced phase at 2,000 msg/s measures PUBACK latency p50/p99.
//! Both brokers run as separate processes (`chainsmith hub serve --log off`, `mosquitto -c`),
//! so RSS is theirs alone. `cargo bench --bench hub` (release).
//! Knobs: HUB_BENCH_DEVICES (1000), HUB_BENCH_MESSAGES (20), HUB_BENCH_RATE (2000).

#![allow(clippy::unwrap_used)] // a bench that cannot set up should stop loudly

use std::time::Instant;

use chainsmith::hub::{Auth, HubDevice};
use chainsmith_test_support::figures::env_usize;
use chainsmith_test_support::hub_util::{self, Fixture};
use chainsmith_test_support::load::{
    Load, bench_devices, load_average, mosquitto_figures, print_table, runtime, served_figures,
};

fn main() {
    let devices = env_usize("HUB_BENCH_DEVICES", 1000);
    let messages = env_usize("HUB_BENCH_MESSAGES", 20);
    let rate = env_usize("HUB_BENCH_RATE", 2000);
    println!(
        "hub bench: {devices} devices (EC P-256, CA-signed, chain leaf+intermediate), {messages} QoS 1 messages each, paced phase at {rate} msg/s; load average {}",
        load_average()
    );
    let load = Load {
        messages,
        rate,
        bulk_topic: |id| format!("devices/{id}/messages/events/temperatureAlert=false"),
        paced_topic: |id| format!("devices/{id}/messages/events/"),
        username: Some(hub_util::username),
    };

    // Certificates and registry, made before any timing.
    let t = Instant::now();
    let fx = Fixture::new();
    fx.store.add_ca("root", true).unwrap();
    let identities = bench_devices(&fx, devices);
    fx.store
        .modify(|r| {
            for (id, _) in &identities {
                r.devices.push(HubDevice {
                    id: id.clone(),
                    auth: Auth::Ca,
                    primary: None,
                    secondary: None,
                    enabled: true,
                    added: time::OffsetDateTime::now_utc(),
                    provisioned_by: None,
                });
            }
            Ok(())
        })
        .unwrap();
    println!(
        "setup: {} certificates in {:.1} s",
        devices,
        t.elapsed().as_secs_f64()
    );

    let rt = runtime();
    let hub_fig = served_figures(
        &rt,
        env!("CARGO_BIN_EXE_chainsmith"),
        fx.root(),
        &["hub", "serve", "--log", "off"],
        &fx.trust_file(),
        &identities,
        &load,
    );
    let mq_fig = mosquitto_figures(&rt, &fx, &identities, &load);
    print_table("chainsmith hub", &hub_fig, &mq_fig);
    println!("load average at the end: {}", load_average());
}
