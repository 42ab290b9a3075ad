//! The local hub under load, against Mosquitto with the same certificates, in one run.
//!
//! 1,000 devices with EC P-256 certificates connect over mTLS (handshakes/s), stay connected
//! (peak RSS of the broker process), send 20 QoS 1 messages each as fast as PUBACKs come back
//! (messages/s), then a paced phase at 2,000 msg/s measures PUBACK latency p50/p99.
//! Both brokers run as separate processes (`chainsmith hub serve --log off`, `mosquitto -c`),
//! so RSS is theirs alone. `cargo bench --bench hub` (release).
//! Knobs: HUB_BENCH_DEVICES (1000), HUB_BENCH_MESSAGES (20), HUB_BENCH_RATE (2000).

#![allow(clippy::unwrap_used)] // a bench that cannot set up should stop loudly
#![allow(clippy::too_many_lines)] // a bench reads top to bottom; the 150-line limit is for the product

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use chainsmith::hub::{Auth, HubDevice};
use chainsmith::ops::{self, DeviceRequest, ValidityArg};
use chainsmith::pki::KeyAlg;
use chainsmith::pki::issue::San;
use chainsmith_test_support::broker::{free_port, mosquitto_with, server_cert_with};
use chainsmith_test_support::figures::{env_usize, percentile, status_mb};
use chainsmith_test_support::hub_util::{self, Client, Fixture, Identity, client_config};
use chainsmith_test_support::process::KillOnDrop;
use rumqttc::mqttbytes::v4::{Packet, Publish};
use rumqttc::mqttbytes::{self, QoS};
use tokio::io::AsyncWriteExt;

async fn wait_port(addr: SocketAddr) {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("nothing listens on {addr}");
}

#[derive(Default, Debug)]
struct Figures {
    handshakes_per_s: f64,
    messages_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    paced_rate: f64,
    rss_idle_mb: f64,
    rss_connected_mb: f64,
    anon_connected_mb: f64,
    kb_per_connection: f64,
    peak_rss_mb: f64,
    failures: usize,
}

struct Conn {
    c: Client,
    id: String,
}

async fn run_load(
    addr: SocketAddr,
    configs: &[(String, Arc<rustls::ClientConfig>)],
    messages: usize,
    rate: usize,
    pid: u32,
) -> Figures {
    let mut f = Figures {
        rss_idle_mb: status_mb(pid, "VmRSS:"),
        ..Figures::default()
    };
    // Phase 1: handshakes (TLS + CONNECT/CONNACK), 64 in flight.
    let start = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(64));
    let mut tasks = Vec::with_capacity(configs.len());
    for (id, cfg) in configs.iter().cloned() {
        let sem = sem.clone();
        tasks.push(tokio::spawn(async move {
            let _p = sem.acquire_owned().await.unwrap();
            let user = hub_util::username(&id);
            match Client::connect(addr, cfg, &id, Some(&user)).await {
                Ok((c, Some(a))) if a.code == mqttbytes::v4::ConnectReturnCode::Success => {
                    Some(Conn { c, id })
                }
                _ => None,
            }
        }));
    }
    let mut conns = Vec::with_capacity(configs.len());
    for t in tasks {
        match t.await.unwrap() {
            Some(c) => conns.push(c),
            None => f.failures += 1,
        }
    }
    f.handshakes_per_s = conns.len() as f64 / start.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(300)).await;
    f.rss_connected_mb = status_mb(pid, "VmRSS:");
    f.anon_connected_mb = status_mb(pid, "RssAnon:");
    f.kb_per_connection = (f.rss_connected_mb - f.rss_idle_mb) * 1024.0 / conns.len().max(1) as f64;

    // Phase 2: throughput; every device sends its messages pipelined, waits for all PUBACKs.
    let payload = br#"{"deviceId":"x","messageId":0,"temperature":27,"humidity":71}"#.to_vec();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for mut conn in conns {
        let payload = payload.clone();
        tasks.push(tokio::spawn(async move {
            let topic = format!("devices/{}/messages/events/temperatureAlert=false", conn.id);
            let mut out = BytesMut::new();
            for i in 0..messages {
                let mut p = Publish::new(topic.as_str(), QoS::AtLeastOnce, payload.clone());
                p.pkid = (i + 1) as u16;
                p.write(&mut out).unwrap();
            }
            conn.c.send_raw(&out).await.ok()?;
            let mut acked = 0;
            while acked < messages {
                match conn.c.recv(Duration::from_secs(30)).await {
                    Some(Packet::PubAck(_)) => acked += 1,
                    Some(_) => {}
                    None => return None,
                }
            }
            Some(conn)
        }));
    }
    let mut conns = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Some(c) => conns.push(c),
            None => f.failures += 1,
        }
    }
    f.messages_per_s = (conns.len() * messages) as f64 / start.elapsed().as_secs_f64();

    // Phase 3: paced at `rate` msg/s over all devices, one message in flight per device;
    // latency = write → PUBACK.
    let n = conns.len().max(1);
    let per_device_interval = Duration::from_secs_f64(n as f64 / rate as f64);
    // Enough rounds for ~5 s of paced load.
    let rounds = ((5 * rate) / n).clamp(2, 50);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (i, mut conn) in conns.into_iter().enumerate() {
        let payload = payload.clone();
        let offset = per_device_interval.mul_f64(i as f64 / n as f64);
        tasks.push(tokio::spawn(async move {
            let topic = format!("devices/{}/messages/events/", conn.id);
            let mut lat = Vec::with_capacity(rounds);
            let t0 = tokio::time::Instant::now() + offset;
            for r in 0..rounds {
                tokio::time::sleep_until(t0 + per_device_interval * r as u32).await;
                let mut p = Publish::new(topic.as_str(), QoS::AtLeastOnce, payload.clone());
                p.pkid = 1000 + r as u16;
                let mut out = BytesMut::new();
                p.write(&mut out).unwrap();
                let sent = Instant::now();
                conn.c.stream.write_all(&out).await.ok()?;
                loop {
                    match conn.c.recv(Duration::from_secs(10)).await {
                        Some(Packet::PubAck(a)) if a.pkid == 1000 + r as u16 => break,
                        Some(_) => {}
                        None => return None,
                    }
                }
                lat.push(sent.elapsed().as_secs_f64() * 1000.0);
            }
            Some((conn, lat))
        }));
    }
    let mut lats = Vec::new();
    let mut conns = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Some((c, l)) => {
                lats.extend(l);
                conns.push(c);
            }
            None => f.failures += 1,
        }
    }
    f.paced_rate = lats.len() as f64 / start.elapsed().as_secs_f64();
    f.p50_ms = percentile(&mut lats, 0.50);
    f.p99_ms = percentile(&mut lats, 0.99);
    for mut c in conns {
        let _ = c.c.stream.shutdown().await;
    }
    f.peak_rss_mb = status_mb(pid, "VmHWM:");
    f
}

fn main() {
    let devices = env_usize("HUB_BENCH_DEVICES", 1000);
    let messages = env_usize("HUB_BENCH_MESSAGES", 20);
    let rate = env_usize("HUB_BENCH_RATE", 2000);
    println!(
        "hub bench: {devices} devices (EC P-256, CA-signed, chain leaf+intermediate), {messages} QoS 1 messages each, paced phase at {rate} msg/s; load average {}",
        load_average()
    );

    // Certificates and registry, made before any timing.
    let t = Instant::now();
    let fx = Fixture::new();
    fx.store.add_ca("root", true).unwrap();
    let ids: Vec<String> = (1..=devices).map(|i| format!("bench-{i:05}")).collect();
    let req = DeviceRequest {
        ids: ids.clone(),
        issuer: Some("line2".into()),
        key: Some(KeyAlg::EcP256),
        validity: ValidityArg::default(),
        ..Default::default()
    };
    ops::new_devices(&fx.ws, &req).unwrap();
    fx.store
        .modify(|r| {
            for id in &ids {
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
    let identities: Vec<(String, Identity)> = ids
        .iter()
        .map(|id| (id.clone(), fx.identity(&[id, "line2"])))
        .collect();
    println!(
        "setup: {} certificates in {:.1} s",
        devices,
        t.elapsed().as_secs_f64()
    );

    // Mosquitto's server certificate, from the workspace root (clients trust that root); the
    // client checks the name "localhost".
    let (mq_cert, mq_key) = server_cert_with(
        fx.root(),
        "root",
        fx.dir.path(),
        vec![
            San::Dns("localhost".into()),
            San::Ip("127.0.0.1".parse().unwrap()),
        ],
    );
    let root_pem = fx.ws.load("root").unwrap().cert_pem;
    let root_pem_path = fx.ws.dir_of("root").unwrap().join("cert.pem");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    // --- chainsmith hub
    let hub_port = free_port();
    let hub = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_chainsmith"))
            .env("CHAINSMITH_WORKSPACE", fx.root())
            .args([
                "hub",
                "serve",
                "--port",
                &hub_port.to_string(),
                "--log",
                "off",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let hub_trust = std::fs::read(fx.trust_file()).unwrap();
    let hub_configs: Vec<(String, Arc<rustls::ClientConfig>)> = identities
        .iter()
        .map(|(id, ident)| (id.clone(), client_config(&hub_trust, Some(ident))))
        .collect();
    let hub_addr: SocketAddr = format!("127.0.0.1:{hub_port}").parse().unwrap();
    let hub_fig = rt.block_on(async {
        wait_port(hub_addr).await;
        run_load(hub_addr, &hub_configs, messages, rate, hub.0.id()).await
    });
    drop(hub);

    // --- Mosquitto, mTLS with the same device certificates, no limits and no log
    let mq = mosquitto_with(
        fx.dir.path(),
        &root_pem_path,
        &mq_cert,
        &mq_key,
        "max_inflight_messages 0\nmax_queued_messages 0\nlog_dest none\n",
    );
    let mq_port = mq.port;
    let mq_configs: Vec<(String, Arc<rustls::ClientConfig>)> = identities
        .iter()
        .map(|(id, ident)| (id.clone(), client_config(root_pem.as_bytes(), Some(ident))))
        .collect();
    let mq_addr: SocketAddr = format!("127.0.0.1:{mq_port}").parse().unwrap();
    let mq_fig =
        rt.block_on(async { run_load(mq_addr, &mq_configs, messages, rate, mq.pid()).await });
    drop(mq);

    println!();
    println!(
        "{:<34} {:>14} {:>14} {:>8}",
        "", "chainsmith hub", "mosquitto", "ratio"
    );
    let row = |name: &str, a: f64, b: f64| {
        println!("{name:<34} {a:>14.1} {b:>14.1} {:>8.2}", a / b);
    };
    row(
        "handshakes/s",
        hub_fig.handshakes_per_s,
        mq_fig.handshakes_per_s,
    );
    row(
        "messages/s (QoS 1, pipelined)",
        hub_fig.messages_per_s,
        mq_fig.messages_per_s,
    );
    row(
        "paced rate achieved (msg/s)",
        hub_fig.paced_rate,
        mq_fig.paced_rate,
    );
    // Latencies in µs: a tenth of a millisecond is too coarse to tell 0.14 from 0.15 ms.
    row(
        "PUBACK p50 µs (paced)",
        hub_fig.p50_ms * 1000.0,
        mq_fig.p50_ms * 1000.0,
    );
    row(
        "PUBACK p99 µs (paced)",
        hub_fig.p99_ms * 1000.0,
        mq_fig.p99_ms * 1000.0,
    );
    row("RSS idle (MB)", hub_fig.rss_idle_mb, mq_fig.rss_idle_mb);
    row(
        "RSS with all connected (MB)",
        hub_fig.rss_connected_mb,
        mq_fig.rss_connected_mb,
    );
    // RSS counts the program's own pages read from its file (code, tables); the anonymous
    // part is the heap and stacks the connections cost.
    row(
        "of which anonymous (MB)",
        hub_fig.anon_connected_mb,
        mq_fig.anon_connected_mb,
    );
    row(
        "KB per connection (connected - idle)",
        hub_fig.kb_per_connection,
        mq_fig.kb_per_connection,
    );
    row("peak RSS (MB)", hub_fig.peak_rss_mb, mq_fig.peak_rss_mb);
    println!(
        "{:<34} {:>14} {:>14}",
        "failed devices", hub_fig.failures, mq_fig.failures
    );
    println!("load average at the end: {}", load_average());
}

/// The 1, 5 and 15 minute load averages: the machine is shared, and a figure means little
/// without the load it was measured under.
fn load_average() -> String {
    let l = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}
