//! Round-trip latency of the connection test, 10,000 messages each, in one run:
//! - the local hub (in-process): telemetry -> C2D echo, and twin GET -> response;
//! - a real Mosquitto broker (set_tcp_nodelay true): publish -> receive own telemetry.
//!
//! One message at a time (publish, wait for PUBACK and the round trip, then the next), so
//! these are latencies, not throughput. Run: `cargo bench --bench connect` (release).
//! `CONNECT_BENCH_COUNT=N` changes the number of messages.
//!
//! Then every transport of the local hub side by side (mqtt, mqtt-ws, amqp, amqp-ws):
//! handshakes/s (sequential whole connections: TCP, TLS with client certificate, WebSocket
//! upgrade, CONNECT or AMQP open + link attach, clean close; `CONNECT_BENCH_HANDSHAKES`, 200)
//! and messages/s (QoS 1 / settled telemetry, one in flight, acknowledgement only).

#![allow(clippy::unwrap_used)] // a bench that cannot set up should stop loudly
#![allow(clippy::too_many_lines)] // a bench reads top to bottom; the 150-line limit is for the product

use chainsmith::hub::{Auth, Hub, HubConfig, HubStore};
use chainsmith::mqtt::{
    self, ConnectionTest, Endpoint, Flavor, Identity, PeerKind, Summary, Transport,
};
use chainsmith::ops::{self, DeviceRequest};
use chainsmith::store::Workspace;
use chainsmith_test_support::broker::{mosquitto_available, mosquitto_with, server_cert};
use chainsmith_test_support::workspace::new_ca;
use std::time::Duration;

async fn run(test: ConnectionTest) -> Summary {
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let task = tokio::spawn(mqtt::run(test, tx));
    let mut failed = None;
    while let Some(e) = rx.recv().await {
        if let mqtt::Event::Failed { diagnosis, .. } = e {
            failed = Some(diagnosis);
        }
    }
    let summary = task.await.expect("test task");
    if let Some(d) = failed {
        panic!("benchmark connection failed: {} / {}", d.cause, d.fix);
    }
    summary
}

fn report(label: &str, s: &Summary) {
    let rt = s.round_trip_latency.expect("round trips");
    let ack = s
        .ack_latency
        .map(|a| format!("PUBACK p50 {:.3} ms p99 {:.3} ms", a.p50_ms, a.p99_ms))
        .unwrap_or_default();
    println!(
        "{label:<44} {:>6} msgs  round trip p50 {:>7.3} ms  p99 {:>7.3} ms  max {:>7.3} ms  ({ack}; {} lost; {:.0} msg/s)",
        s.sent,
        rt.p50_ms,
        rt.p99_ms,
        rt.max_ms,
        s.lost,
        f64::from(s.sent) / (s.total_ms / 1000.0)
    );
}

fn main() {
    let count: u32 = std::env::var("CONNECT_BENCH_COUNT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let tmp = tempfile::tempdir().expect("tmp");
    let ws = Workspace::init(&tmp.path().join("ws")).expect("workspace");
    new_ca(&ws, "Bench Root", None);
    new_ca(&ws, "Bench Line", Some("Bench Root"));
    ops::new_devices(
        &ws,
        &DeviceRequest {
            ids: vec!["bench-1".into()],
            issuer: Some("Bench Line".into()),
            ..Default::default()
        },
    )
    .expect("device");
    let identity = Identity::from_workspace(&ws, "bench-1").expect("identity");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        // The local hub, in-process, with echo.
        let store = HubStore::open(ws.root()).expect("hub store");
        store.add_ca("Bench Root", true).expect("hub ca");
        store.add_device("bench-1", Auth::Ca, None, None, None).expect("hub device");
        let hub = Hub::start(ws.root(), HubConfig { port: 0, echo: true, amqp_port: Some(0), websocket_port: Some(0), ..HubConfig::default() }).await.expect("hub");
        let trust = std::fs::read(store.trust_path()).expect("trust");
        let hub_ca: Vec<Vec<u8>> = pem::parse_many(&trust).expect("pem").into_iter().map(|b| b.into_contents()).collect();
        let local = |twin: bool, c2d: bool| {
            let ep = Endpoint { host: hub.addr.ip().to_string(), port: hub.addr.port(), peer: PeerKind::LocalHub };
            let mut t = ConnectionTest::new(identity.clone(), ep, Flavor::Azure);
            t.extra_ca = hub_ca.clone();
            t.system_roots = false;
            t.twin = twin;
            t.c2d_echo = c2d;
            t.count = count;
            t.interval = Duration::ZERO;
            t.per_message_events = false;
            t
        };
        // Warm up TLS and the hub once.
        let mut warm = local(true, true);
        warm.count = 50;
        run(warm).await;
        let c2d = run(local(false, true)).await;
        let twin = run(local(true, false)).await;

        // Every transport: handshakes/s and messages/s.
        let handshakes: u32 = std::env::var("CONNECT_BENCH_HANDSHAKES").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
        let mut rows = Vec::new();
        for transport in Transport::ALL {
            let port = match transport {
                Transport::Mqtt => hub.addr.port(),
                Transport::Amqp => hub.amqp_addr.expect("amqp").port(),
                Transport::MqttWs | Transport::AmqpWs => hub.websocket_addr.expect("ws").port(),
            };
            let plain = |n: u32| {
                let mut t = local(false, false);
                t.endpoint.port = port;
                t.transport = transport;
                t.count = n;
                t
            };
            run(plain(20)).await; // warm up
            let started = std::time::Instant::now();
            for _ in 0..handshakes {
                run(plain(0)).await;
            }
            let hs = f64::from(handshakes) / started.elapsed().as_secs_f64();
            let msgs = run(plain(count)).await;
            let per_s = f64::from(msgs.sent) / (msgs.total_ms / 1000.0);
            let ack = msgs.ack_latency.expect("acks");
            rows.push(format!(
                "  {:<8} {hs:>8.0} handshakes/s  {per_s:>8.0} msg/s  ack p50 {:.3} ms p99 {:.3} ms",
                transport.as_str(),
                ack.p50_ms,
                ack.p99_ms
            ));
        }
        hub.shutdown().await;
        println!("local hub per transport ({handshakes} sequential connections; {count} QoS 1 messages, one in flight):");
        for r in &rows {
            println!("{r}");
        }

        // Mosquitto with mutual TLS, nodelay, on a free port, its log off.
        if !mosquitto_available() {
            report("local hub: telemetry -> C2D echo", &c2d);
            report("local hub: twin GET -> response", &twin);
            println!("mosquitto: not run (not installed); install it with apt-get install mosquitto");
            return;
        }
        let (cert, key) = server_cert(ws.root(), "Bench Root", tmp.path());
        let root_pem = ws.load("Bench Root").expect("root").cert_path();
        let mosquitto = mosquitto_with(tmp.path(), &root_pem, &cert, &key, "log_dest none\nmax_queued_messages 100000\n");
        let port = mosquitto.port;
        let ep = Endpoint { host: "127.0.0.1".into(), port, peer: PeerKind::Broker };
        let mut t = ConnectionTest::new(identity.clone(), ep, Flavor::Generic);
        t.extra_ca = vec![ws.load("Bench Root").expect("root").cert_der];
        t.system_roots = false;
        t.count = 50;
        t.interval = Duration::ZERO;
        t.per_message_events = false;
        run(t.clone()).await;
        t.count = count;
        let mosq = run(t).await;
        drop(mosquitto);

        println!("connection-test round trips, {count} messages each, QoS 1, one in flight, loopback:");
        report("local hub: telemetry -> C2D echo", &c2d);
        report("local hub: twin GET -> response", &twin);
        report("mosquitto 2 (nodelay): publish -> own topic", &mosq);
    });
}
