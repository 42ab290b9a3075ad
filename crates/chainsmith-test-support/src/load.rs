//! The broker benches' load, shared by `benches/hub.rs` (the local IoT Hub) and `benches/aws.rs`
//! (the local AWS IoT Core), each against Mosquitto with the same device certificates: the
//! same phases, the same figures, the same table, so the two benches' ratios mean the same.
//!
//! Phase 1 opens every device's mTLS connection and MQTT session, 64 in flight
//! (handshakes/s), then reads the broker's RSS with all connected; phase 2 has every device
//! send its QoS 1 messages pipelined and wait for all PUBACKs (messages/s); phase 3 paces
//! one message in flight per device at a total rate and times write → PUBACK (p50/p99).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{ConnectReturnCode, Packet, Publish};
use tokio::io::AsyncWriteExt;

use chainsmith_pki::ops::{self, DeviceRequest, ValidityArg};
use chainsmith_pki::pki::KeyAlg;
use chainsmith_pki::pki::issue::San;

use crate::broker::{free_port, mosquitto_with, server_cert_with};
use crate::figures::{percentile, status_mb};
use crate::hub_util::{Client, Fixture, Identity, client_config};
use crate::process::KillOnDrop;

/// Wait until something accepts TCP connections on `addr` (5 s at most, then panic).
pub async fn wait_listening(addr: SocketAddr) {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("nothing listens on {addr}");
}

/// What one broker measured.
#[derive(Default, Debug)]
pub struct Figures {
    /// Phase 1: TLS + CONNECT/CONNACK completed per second.
    pub handshakes_per_s: f64,
    /// Phase 2: QoS 1 messages acknowledged per second, pipelined.
    pub messages_per_s: f64,
    /// Phase 3: write → PUBACK, median, ms.
    pub p50_ms: f64,
    /// Phase 3: write → PUBACK, 99th percentile, ms.
    pub p99_ms: f64,
    /// Phase 3: the rate achieved (msg/s).
    pub paced_rate: f64,
    /// The broker's RSS before any connection (MB).
    pub rss_idle_mb: f64,
    /// The broker's RSS with every device connected (MB).
    pub rss_connected_mb: f64,
    /// Of which anonymous pages: heap and stacks (MB).
    pub anon_connected_mb: f64,
    /// (connected - idle) / connections, KB.
    pub kb_per_connection: f64,
    /// The broker's peak RSS at the end (MB).
    pub peak_rss_mb: f64,
    /// Devices that failed a phase (refused, closed, timed out).
    pub failures: usize,
}

/// What the devices send, and how.
pub struct Load {
    /// QoS 1 messages per device in phase 2.
    pub messages: usize,
    /// Phase 3's total rate over all devices (msg/s).
    pub rate: usize,
    /// The topic a device publishes to in phase 2.
    pub bulk_topic: fn(&str) -> String,
    /// The topic a device publishes to in phase 3.
    pub paced_topic: fn(&str) -> String,
    /// The MQTT user name a device sends, if any.
    pub username: Option<fn(&str) -> String>,
}

struct Conn {
    c: Client,
    id: String,
}

/// The three phases against the broker at `addr` (process `pid`, for its memory), each
/// device `(client id, TLS config presenting its certificate)`.
pub async fn run_load(
    addr: SocketAddr,
    configs: &[(String, Arc<rustls::ClientConfig>)],
    load: &Load,
    pid: u32,
) -> Figures {
    // Idle is read once the broker has settled after it started listening: a server may give
    // back its start's memory right after it binds (`hub serve` does, issue 25).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut f = Figures {
        rss_idle_mb: status_mb(pid, "VmRSS:"),
        ..Figures::default()
    };
    let conns = connect_all(addr, configs, load, &mut f).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    f.rss_connected_mb = status_mb(pid, "VmRSS:");
    f.anon_connected_mb = status_mb(pid, "RssAnon:");
    f.kb_per_connection = (f.rss_connected_mb - f.rss_idle_mb) * 1024.0 / conns.len().max(1) as f64;
    let conns = pipelined(conns, load, &mut f).await;
    let conns = paced(conns, load, &mut f).await;
    for mut c in conns {
        let _ = c.c.stream.shutdown().await;
    }
    f.peak_rss_mb = status_mb(pid, "VmHWM:");
    f
}

/// Phase 1: handshakes (TLS + CONNECT/CONNACK), 64 in flight.
async fn connect_all(
    addr: SocketAddr,
    configs: &[(String, Arc<rustls::ClientConfig>)],
    load: &Load,
    f: &mut Figures,
) -> Vec<Conn> {
    let start = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(64));
    let mut tasks = Vec::with_capacity(configs.len());
    for (id, cfg) in configs.iter().cloned() {
        let sem = sem.clone();
        let user = load.username.map(|u| u(&id));
        tasks.push(tokio::spawn(async move {
            let _p = sem.acquire_owned().await.expect("semaphore");
            match Client::connect(addr, cfg, &id, user.as_deref()).await {
                Ok((c, Some(a))) if a.code == ConnectReturnCode::Success => Some(Conn { c, id }),
                _ => None,
            }
        }));
    }
    let conns = collect(tasks, f).await;
    f.handshakes_per_s = conns.len() as f64 / start.elapsed().as_secs_f64();
    conns
}

/// The tasks' devices still going; the others counted as failures.
async fn collect<T>(tasks: Vec<tokio::task::JoinHandle<Option<T>>>, f: &mut Figures) -> Vec<T> {
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        match t.await.expect("device task") {
            Some(c) => out.push(c),
            None => f.failures += 1,
        }
    }
    out
}

const PAYLOAD: &[u8] = br#"{"deviceId":"x","messageId":0,"temperature":27,"humidity":71}"#;

/// Phase 2: every device sends its messages pipelined, then waits for all PUBACKs.
async fn pipelined(conns: Vec<Conn>, load: &Load, f: &mut Figures) -> Vec<Conn> {
    let messages = load.messages;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for mut conn in conns {
        let topic = (load.bulk_topic)(&conn.id);
        tasks.push(tokio::spawn(async move {
            let mut out = BytesMut::new();
            for i in 0..messages {
                let mut p = Publish::new(topic.as_str(), QoS::AtLeastOnce, PAYLOAD.to_vec());
                p.pkid = (i + 1) as u16;
                p.write(&mut out).ok()?;
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
    let conns = collect(tasks, f).await;
    f.messages_per_s = (conns.len() * messages) as f64 / start.elapsed().as_secs_f64();
    conns
}

/// Phase 3: paced at `rate` msg/s over all devices, one message in flight per device;
/// latency = write → PUBACK.
async fn paced(conns: Vec<Conn>, load: &Load, f: &mut Figures) -> Vec<Conn> {
    let n = conns.len().max(1);
    let per_device_interval = Duration::from_secs_f64(n as f64 / load.rate as f64);
    // Enough rounds for ~5 s of paced load.
    let rounds = ((5 * load.rate) / n).clamp(2, 50);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (i, mut conn) in conns.into_iter().enumerate() {
        let topic = (load.paced_topic)(&conn.id);
        let offset = per_device_interval.mul_f64(i as f64 / n as f64);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(rounds);
            let t0 = tokio::time::Instant::now() + offset;
            for r in 0..rounds {
                tokio::time::sleep_until(t0 + per_device_interval * r as u32).await;
                let pkid = 1000 + r as u16;
                let mut p = Publish::new(topic.as_str(), QoS::AtLeastOnce, PAYLOAD.to_vec());
                p.pkid = pkid;
                let mut out = BytesMut::new();
                p.write(&mut out).ok()?;
                let sent = Instant::now();
                conn.c.stream.write_all(&out).await.ok()?;
                loop {
                    match conn.c.recv(Duration::from_secs(10)).await {
                        Some(Packet::PubAck(a)) if a.pkid == pkid => break,
                        Some(_) => {}
                        None => return None,
                    }
                }
                lat.push(sent.elapsed().as_secs_f64() * 1000.0);
            }
            Some((conn, lat))
        }));
    }
    let done = collect(tasks, f).await;
    let mut lats = Vec::new();
    let mut conns = Vec::with_capacity(done.len());
    for (c, l) in done {
        lats.extend(l);
        conns.push(c);
    }
    f.paced_rate = lats.len() as f64 / start.elapsed().as_secs_f64();
    f.p50_ms = percentile(&mut lats, 0.50);
    f.p99_ms = percentile(&mut lats, 0.99);
    conns
}

/// `n` devices `bench-00001`… with EC P-256 certificates under the fixture's intermediate
/// "line2", and what each presents (leaf + intermediate).
pub fn bench_devices(fx: &Fixture, n: usize) -> Vec<(String, Identity)> {
    let ids: Vec<String> = (1..=n).map(|i| format!("bench-{i:05}")).collect();
    let req = DeviceRequest {
        ids: ids.clone(),
        issuer: Some("line2".into()),
        key: Some(KeyAlg::EcP256),
        validity: ValidityArg::default(),
        ..Default::default()
    };
    ops::new_devices(&fx.ws, &req).expect("bench devices");
    ids.into_iter()
        .map(|id| {
            let identity = fx.identity(&[&id, "line2"]);
            (id, identity)
        })
        .collect()
}

/// A multi-threaded runtime on two workers: the load generator's share of the machine.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// The load against `bin ARGS… --port PORT` (a chainsmith server, its own process so RSS is
/// its alone) on workspace `ws`, its devices trusting the PEM at `trust` (read once it
/// listens: the server may make it on start).
pub fn served_figures(
    rt: &tokio::runtime::Runtime,
    bin: &str,
    ws: &Path,
    args: &[&str],
    trust: &Path,
    identities: &[(String, Identity)],
    load: &Load,
) -> Figures {
    let port = free_port();
    let child = KillOnDrop(
        Command::new(bin)
            .env("CHAINSMITH_WORKSPACE", ws)
            .args(args)
            .args(["--port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the server starts"),
    );
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    rt.block_on(async {
        wait_listening(addr).await;
        let trust = std::fs::read(trust).expect("the server's trust PEM");
        let configs = configs(&trust, identities);
        run_load(addr, &configs, load, child.0.id()).await
    })
}

/// The load against Mosquitto with mutual TLS, trusting the fixture's root (so the same
/// device chains), its server certificate from that root for "localhost"; no in-flight or
/// queue limits and no log.
pub fn mosquitto_figures(
    rt: &tokio::runtime::Runtime,
    fx: &Fixture,
    identities: &[(String, Identity)],
    load: &Load,
) -> Figures {
    let (cert, key) = server_cert_with(
        fx.root(),
        "root",
        fx.dir.path(),
        vec![San::Dns("localhost".into()), San::Ip([127, 0, 0, 1].into())],
    );
    let root_pem = fx.ws.load("root").expect("root").cert_pem;
    let root_pem_path = fx.ws.dir_of("root").expect("root").join("cert.pem");
    let mq = mosquitto_with(
        fx.dir.path(),
        &root_pem_path,
        &cert,
        &key,
        "max_inflight_messages 0\nmax_queued_messages 0\nlog_dest none\n",
    );
    let addr: SocketAddr = ([127, 0, 0, 1], mq.port).into();
    let configs = configs(root_pem.as_bytes(), identities);
    rt.block_on(run_load(addr, &configs, load, mq.pid()))
}

fn configs(
    trust_pem: &[u8],
    identities: &[(String, Identity)],
) -> Vec<(String, Arc<rustls::ClientConfig>)> {
    identities
        .iter()
        .map(|(id, ident)| (id.clone(), client_config(trust_pem, Some(ident))))
        .collect()
}

/// The table of two brokers' figures, `ours` beside Mosquitto's with the ratio ours/theirs.
pub fn print_table(ours_name: &str, ours: &Figures, mq: &Figures) {
    println!();
    println!(
        "{:<34} {:>16} {:>14} {:>8}",
        "", ours_name, "mosquitto", "ratio"
    );
    let row = |name: &str, a: f64, b: f64| {
        println!("{name:<34} {a:>16.1} {b:>14.1} {:>8.2}", a / b);
    };
    row("handshakes/s", ours.handshakes_per_s, mq.handshakes_per_s);
    row(
        "messages/s (QoS 1, pipelined)",
        ours.messages_per_s,
        mq.messages_per_s,
    );
    row(
        "paced rate achieved (msg/s)",
        ours.paced_rate,
        mq.paced_rate,
    );
    // Latencies in µs: a tenth of a millisecond is too coarse to tell 0.14 from 0.15 ms.
    row(
        "PUBACK p50 µs (paced)",
        ours.p50_ms * 1000.0,
        mq.p50_ms * 1000.0,
    );
    row(
        "PUBACK p99 µs (paced)",
        ours.p99_ms * 1000.0,
        mq.p99_ms * 1000.0,
    );
    row("RSS idle (MB)", ours.rss_idle_mb, mq.rss_idle_mb);
    row(
        "RSS with all connected (MB)",
        ours.rss_connected_mb,
        mq.rss_connected_mb,
    );
    // RSS counts the program's own pages read from its file (code, tables); the anonymous
    // part is the heap and stacks the connections cost.
    row(
        "of which anonymous (MB)",
        ours.anon_connected_mb,
        mq.anon_connected_mb,
    );
    row(
        "KB per connection (connected - idle)",
        ours.kb_per_connection,
        mq.kb_per_connection,
    );
    row("peak RSS (MB)", ours.peak_rss_mb, mq.peak_rss_mb);
    println!(
        "{:<34} {:>16} {:>14}",
        "failed devices", ours.failures, mq.failures
    );
}

/// The 1, 5 and 15 minute load averages: the machine is shared, and a figure means little
/// without the load it was measured under.
pub fn load_average() -> String {
    let l = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}
