//! The local AWS IoT Core under load, against Mosquitto with the same certificates, in one run
//! (the phases and the table are `benches/hub.rs`'s, from `chainsmith_test_support::load`).
//!
//! 1,000 devices with EC P-256 certificates under a registered CA, each certificate
//! registered ACTIVE with a policy allowing `iot:Connect` for its client id and
//! `iot:Publish` on `dev/${iot:ClientId}/*`, as an AWS account would hold them (set up through
//! the registry's own API: `register-ca-certificate`, `register-certificate`,
//! `create-policy`, `attach-policy`). They connect over mTLS (handshakes/s), stay connected
//! (RSS of the broker process), send 20 QoS 1 messages each as fast as PUBACKs come back
//! (messages/s: under AWS's 100 publishes per second per connection), then a paced phase at
//! 2,000 msg/s measures PUBACK latency p50/p99. Both brokers run as separate processes
//! (`chainsmith aws serve --log off`, `mosquitto -c`), so RSS is theirs alone.
//! `cargo bench --bench aws` (release).
//! Knobs: AWS_BENCH_DEVICES (1000), AWS_BENCH_MESSAGES (20), AWS_BENCH_RATE (2000).

#![allow(clippy::unwrap_used)] // a bench that cannot set up should stop loudly

use std::time::Instant;

use chainsmith::aws::broker::tls::trust_path;
use chainsmith::aws::registry::Registry;
use chainsmith::ops;
use chainsmith_test_support::figures::env_usize;
use chainsmith_test_support::hub_util::Fixture;
use chainsmith_test_support::load::{
    Load, bench_devices, load_average, mosquitto_figures, print_table, runtime, served_figures,
};

/// The policy every bench device's certificate carries: its own client id, its own topics,
/// with `*` for region and account as AWS accepts.
const POLICY: &str = r#"{"Version":"2012-10-17","Statement":[
  {"Effect":"Allow","Action":"iot:Connect","Resource":"arn:aws:iot:*:*:client/${iot:ClientId}"},
  {"Effect":"Allow","Action":"iot:Publish","Resource":"arn:aws:iot:*:*:topic/dev/${iot:ClientId}/*"}]}"#;

fn main() {
    let devices = env_usize("AWS_BENCH_DEVICES", 1000);
    let messages = env_usize("AWS_BENCH_MESSAGES", 20);
    let rate = env_usize("AWS_BENCH_RATE", 2000);
    println!(
        "aws bench: {devices} devices (EC P-256, CA-signed, chain leaf+intermediate, registered ACTIVE, one policy each), {messages} QoS 1 messages each, paced phase at {rate} msg/s; load average {}",
        load_average()
    );
    let load = Load {
        messages,
        rate,
        bulk_topic: |id| format!("dev/{id}/telemetry"),
        paced_topic: |id| format!("dev/{id}/telemetry"),
        username: None,
    };

    // Certificates and registry, made before any timing.
    let t = Instant::now();
    let fx = Fixture::new();
    let identities = bench_devices(&fx, devices);
    let registry = Registry::open(&fx.root().join("aws"), fx.ws.clock()).unwrap();
    // The CA that signs the devices, proved with a verification certificate whose CN is the
    // registration code ("Register your CA certificate", AWS IoT developer guide:
    // https://docs.aws.amazon.com/iot/latest/developerguide/register-CA-cert.html).
    let code = registry.registration_code().unwrap();
    let proof = fx.dir.path().join("verification.pem");
    ops::new_verification(&fx.ws, "line2", &code, &proof, None, false).unwrap();
    let proof_der = pem::parse(std::fs::read(&proof).unwrap())
        .unwrap()
        .into_contents();
    let ca_der = fx.ws.load("line2").unwrap().cert_der;
    registry
        .register_ca(Some("line2"), &ca_der, &proof_der, true, false, None)
        .unwrap();
    registry.create_policy("bench", POLICY).unwrap();
    for (id, _) in &identities {
        let der = fx.ws.load(id).unwrap().cert_der;
        let cert = registry.register_certificate(Some(id), &der, true).unwrap();
        registry.attach_policy("bench", &cert.id).unwrap();
    }
    drop(registry);
    println!(
        "setup: {} certificates registered in {:.1} s",
        devices,
        t.elapsed().as_secs_f64()
    );

    let rt = runtime();
    let aws_fig = served_figures(
        &rt,
        env!("CARGO_BIN_EXE_chainsmith"),
        fx.root(),
        &["aws", "serve", "--alpn-port", "0", "--log", "off"],
        &trust_path(&fx.ws),
        &identities,
        &load,
    );
    let mq_fig = mosquitto_figures(&rt, &fx, &identities, &load);
    print_table("chainsmith aws", &aws_fig, &mq_fig);
    println!("load average at the end: {}", load_average());
}
