//! Issue 11, item 5: what hostile input costs, in figures.
//!
//! 1. A flood of 1,000 TLS connections without a client certificate, each starting a 255 KB
//!    CONNECT, against `chainsmith hub serve` (its own process, so RSS is the hub's alone):
//!    the hub's RSS before, at its peak during, and 10 s after the flood, and the PUBACK
//!    latency of a legitimate device publishing every 10 ms throughout. Then a slow flood:
//!    1,000 connections that each send 4 KB of a CONNECT and hold it (the pre-auth cap bites).
//! 2. `chainsmith inspect` of bundles of 1k, 2k, 4k and 8k certificates (was quadratic:
//!    1.4 / 3.6 / 17.6 / 77 s).
//! 3. `chainsmith inspect --password` of a 2 KB PFX whose MAC asks for 2^31 - 1 iterations
//!    (was minutes).
//!
//! 4. Issue 21: the hub's idle RSS beside its peak under each flood of items 6-8, each against
//!    its own `hub serve` with AMQP and WebSockets on: idle TCP sockets on the AMQP port from
//!    several peers (a device from 127.0.0.1 must still publish), an AMQP attach flood on one
//!    connection, a WebSocket ping flood that never reads, and a DPS session flood.
//!
//! `cargo bench --bench bounds` (release); `-- floods` for part 4 only. Knobs: BOUNDS_FLOOD
//! (1000), BOUNDS_FLOOD_KB (255); part 4: BOUNDS_IDLE_PEERS (8) × BOUNDS_IDLE_PER_PEER (300)
//! sockets, BOUNDS_ATTACHES (80000), BOUNDS_PINGS (8000000), BOUNDS_DPS (1000).
//! The floods target only 127.0.0.x.

#![allow(clippy::unwrap_used)] // a bench that cannot set up should stop loudly
#![allow(clippy::too_many_lines)] // a bench reads top to bottom; the 150-line limit is for the product

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chainsmith::export::pfx::{self, PfxProfile};
use chainsmith::hub::Auth;
use chainsmith::ops::ValidityArg;
use chainsmith::pki::issue::{self, IssueSpec};
use chainsmith::pki::{KeyAlg, Profile, Validity, subject};
use chainsmith_test_support::broker::free_port;
use chainsmith_test_support::der_edit;
use chainsmith_test_support::figures::{env_usize, percentile, status_mb};
use chainsmith_test_support::hub_util::{Client, Fixture, publish_acked, username, varint};
use chainsmith_test_support::process::KillOnDrop;
use chainsmith_test_support::workspace::self_signed_device;

/// `slow`: instead of a 255 KB CONNECT, announce one of 8,000 bytes (under the cap), send
/// 4 KB of it and hold: these stay until the 10 s CONNECT deadline, so the cap on
/// connections waiting to authenticate is what bounds them.
fn flood(slow: bool) {
    let n = env_usize("BOUNDS_FLOOD", 1000);
    let kb = env_usize("BOUNDS_FLOOD_KB", 255);
    let fx = Fixture::new();
    fx.store.add_ca("root", true).unwrap();
    fx.device("good", Some("line2"), ValidityArg::default());
    fx.register("good", Auth::Ca, None);
    let port = free_port();
    let hub = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_chainsmith"))
            .env("CHAINSMITH_WORKSPACE", fx.root())
            .args(["hub", "serve", "--port", &port.to_string(), "--log", "off"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = hub.0.id();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let good_cfg = fx.tls(Some(&fx.identity(&["good", "line2"])));
        let (mut good, ack) = Client::connect(addr, good_cfg, "good", Some(&username("good")))
            .await
            .unwrap();
        assert!(ack.is_some(), "the good device connects");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let rss_before = status_mb(pid, "VmRSS:");

        // The legitimate device publishes every 10 ms while the flood runs.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let good_task = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let (mut lat, mut lost) = (Vec::new(), 0usize);
                let mut pkid = 1u16;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let t = Instant::now();
                    if publish_acked(&mut good, "devices/good/messages/events/", b"{}", pkid).await {
                        lat.push(t.elapsed().as_secs_f64() * 1000.0);
                    } else {
                        lost += 1;
                        break;
                    }
                    pkid = pkid.wrapping_add(1).max(1);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                (lat, lost)
            })
        };

        // The flood: no client certificate, a CONNECT announcing `kb` KB, then all of it
        // but the last byte, then hold the connection open.
        let flood_start = Instant::now();
        let sem = Arc::new(tokio::sync::Semaphore::new(128));
        let mut tasks = Vec::new();
        for _ in 0..n {
            let cfg = fx.tls(None);
            let sem = sem.clone();
            tasks.push(tokio::spawn(async move {
                let permit = sem.acquire_owned().await.unwrap();
                let Ok(mut c) = Client::tls(addr, cfg).await else {
                    return (false, None);
                };
                drop(permit);
                let (body, send) = if slow {
                    (8000, 4096)
                } else {
                    (kb * 1024, kb * 1024 - 1)
                };
                let mut bytes = vec![0x10];
                bytes.extend(varint(body));
                bytes.extend(vec![0u8; send]);
                let sent_all = c.send_raw(&bytes).await.is_ok();
                // Hold it until the hub closes it or 12 s pass.
                let closed = c.closed_within(Duration::from_secs(12)).await;
                (sent_all, Some(closed))
            }));
        }
        // Sample the hub's RSS while the flood runs.
        let sampler = tokio::spawn(async move {
            let mut peak = 0f64;
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(14) {
                peak = peak.max(status_mb(pid, "VmRSS:"));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            peak
        });
        let (mut tls_failed, mut closed_by_hub, mut held) = (0usize, 0usize, 0usize);
        for t in tasks {
            match t.await.unwrap() {
                (_, None) => tls_failed += 1,
                (_, Some(true)) => closed_by_hub += 1,
                (_, Some(false)) => held += 1,
            }
        }
        let flood_secs = flood_start.elapsed().as_secs_f64();
        let peak = sampler.await.unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (mut lat, lost) = good_task.await.unwrap();
        let rss_end = status_mb(pid, "VmRSS:");
        tokio::time::sleep(Duration::from_secs(10)).await;
        let rss_after = status_mb(pid, "VmRSS:");
        let hwm = status_mb(pid, "VmHWM:");

        if slow {
            println!(
                "slow flood: {n} TLS connections without a client certificate, each 4 KB into an 8,000-byte CONNECT, held (127.0.0.1)"
            );
        } else {
            println!(
                "flood: {n} TLS connections without a client certificate, each a {kb} KB CONNECT (127.0.0.1)"
            );
        }
        println!("  hub RSS before                 {rss_before:>8.1} MB");
        println!("  hub RSS peak during (sampled)  {peak:>8.1} MB   (VmHWM {hwm:.1} MB)");
        println!("  hub RSS when the flood ended   {rss_end:>8.1} MB");
        println!("  hub RSS 10 s after             {rss_after:>8.1} MB");
        println!(
            "  flood connections: {closed_by_hub} closed by the hub, {held} held past 12 s, {tls_failed} closed before TLS completed ({flood_secs:.1} s)"
        );
        println!(
            "  good device during the flood: {} PUBACKs, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, lost {lost}",
            lat.len(),
            percentile(&mut lat, 0.50),
            percentile(&mut lat, 0.99),
            percentile(&mut lat, 1.0)
        );
    });
    drop(hub);
}

fn bundle(ws: &std::path::Path, n: usize) -> std::path::PathBuf {
    // One key for all (key generation is not what is measured); distinct subjects.
    let key = KeyAlg::EcP256.generate().unwrap();
    let mut pem = String::new();
    for i in 0..n {
        let spec = IssueSpec {
            subject: subject::cn_only(&format!("bundle-{i:05}")).unwrap(),
            profile: Profile::Device {
                eku: Default::default(),
                sans: vec![],
            },
            validity: Validity::days(365),
        };
        pem.push_str(&issue::issue_with_key(&spec, &key, None).unwrap().cert_pem);
    }
    let p = ws.join(format!("bundle-{n}.pem"));
    std::fs::write(&p, pem).unwrap();
    p
}

fn run_cli(dir: &std::path::Path, args: &[&str]) -> (f64, bool) {
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_chainsmith"))
        .env("CHAINSMITH_WORKSPACE", dir.join("ws"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    (t.elapsed().as_secs_f64(), out.status.success())
}

fn inspect_and_pfx() {
    let dir = tempfile::tempdir().unwrap();
    println!("inspect of a PEM bundle of self-signed certificates (text output, whole process):");
    for n in [1000usize, 2000, 4000, 8000] {
        let p = bundle(dir.path(), n);
        let (secs, ok) = run_cli(dir.path(), &["inspect", p.to_str().unwrap()]);
        let (jsecs, jok) = run_cli(dir.path(), &["--json", "inspect", p.to_str().unwrap()]);
        println!(
            "  {n:>5} certificates: {secs:>6.2} s text, {jsecs:>6.2} s --json{}",
            if ok && jok { "" } else { "  (FAILED)" }
        );
    }

    let (cert_der, _, key) = self_signed_device("pfx-dev");
    let good = pfx::build(PfxProfile::Modern, "pw", "x", &cert_der, &key, &[]).unwrap();
    let evil = der_edit::stall_pfx_mac(&good);
    std::fs::write(dir.path().join("evil.pfx"), &evil).unwrap();
    std::fs::write(dir.path().join("good.pfx"), &good).unwrap();
    let (secs, ok) = run_cli(dir.path(), &["inspect", "evil.pfx", "--password", "pw"]);
    println!(
        "PFX of {} bytes with 2^31-1 MAC iterations: `inspect --password` refused in {:.3} s (exit {})",
        evil.len(),
        secs,
        if ok { "0, NOT refused" } else { "1" }
    );
    let (gsecs, _) = run_cli(dir.path(), &["inspect", "good.pfx", "--password", "pw"]);
    println!("  (the same file with OpenSSL's 2048 iterations opens in {gsecs:.3} s)");
}

/// A `hub serve` with AMQP and WebSockets on free ports; its pid, ports and control socket.
struct Served {
    proc: KillOnDrop,
    mqtt: SocketAddr,
    amqp: SocketAddr,
    ws: SocketAddr,
    control: std::path::PathBuf,
}

fn serve(fx: &Fixture) -> Served {
    let (p, a, w) = (free_port(), free_port(), free_port());
    let proc = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_chainsmith"))
            .env("CHAINSMITH_WORKSPACE", fx.root())
            .args(["hub", "serve", "--log", "off"])
            .args(["--port", &p.to_string()])
            .args(["--amqp-port", &a.to_string(), "--ws-port", &w.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let at = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    Served {
        proc,
        mqtt: at(p),
        amqp: at(a),
        ws: at(w),
        control: fx.store.control_path(),
    }
}

impl Served {
    fn rss(&self) -> f64 {
        status_mb(self.proc.0.id(), "VmRSS:")
    }
    async fn load(&self) -> chainsmith::hub::server::HubLoad {
        chainsmith::hub::control::status(&self.control)
            .await
            .map(|s| s.load)
            .unwrap_or_default()
    }
    async fn ready(&self) {
        for _ in 0..400 {
            if chainsmith::hub::control::status(&self.control)
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("hub serve did not start");
    }
}

/// Sample `pid`'s RSS every 20 ms until `done` is set; the peak.
fn sample_peak(pid: u32, done: Arc<std::sync::atomic::AtomicBool>) -> tokio::task::JoinHandle<f64> {
    tokio::spawn(async move {
        let mut peak = 0f64;
        while !done.load(std::sync::atomic::Ordering::Relaxed) {
            peak = peak.max(status_mb(pid, "VmRSS:"));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        peak.max(status_mb(pid, "VmRSS:"))
    })
}

async fn tcp_from(from: [u8; 4], to: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    let s = tokio::net::TcpSocket::new_v4()?;
    s.bind(SocketAddr::from((from, 0)))?;
    s.connect(to).await
}

async fn good_publishes(fx: &Fixture, addr: SocketAddr) -> bool {
    let cfg = fx.tls(Some(&fx.identity(&["good", "line2"])));
    match Client::connect(addr, cfg, "good", Some(&username("good"))).await {
        Ok((mut c, Some(a))) if a.code == rumqttc::mqttbytes::v4::ConnectReturnCode::Success => {
            publish_acked(&mut c, "devices/good/messages/events/", b"{}", 1).await
        }
        _ => false,
    }
}

fn floods() {
    let fx = Fixture::new();
    fx.store.add_ca("root", true).unwrap();
    fx.device("good", Some("line2"), ValidityArg::default());
    fx.register("good", Auth::Ca, None);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let flag = || Arc::new(std::sync::atomic::AtomicBool::new(false));
    println!(
        "floods of issue 21 (hub serve with MQTT, AMQP and WebSockets; RSS of the hub process):"
    );
    rt.block_on(async {
        // 1. Idle sockets, no TLS started: from one peer (the issue's attack), then from more
        // peers than the total holds (four peers' shares fill it).
        let per = env_usize("BOUNDS_IDLE_PER_PEER", 300);
        for peers in [1, env_usize("BOUNDS_IDLE_PEERS", 8)] {
        let hub = serve(&fx);
        hub.ready().await;
        let idle = hub.rss();
        let done = flag();
        let peak = sample_peak(hub.proc.0.id(), done.clone());
        let mut held = Vec::new();
        for p in 0..peers {
            for _ in 0..per {
                if let Ok(s) = tcp_from([127, 0, 2, 10 + p as u8], hub.amqp).await {
                    held.push(s);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let load = hub.load().await;
        let good = good_publishes(&fx, hub.mqtt).await;
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        println!(
            "  idle sockets: {peers} peers x {per} on the AMQP port: idle {idle:.1} MB, peak {:.1} MB; hub holds {} from {} peers; a device on 8883 {}",
            peak.await.unwrap(),
            load.unauthenticated,
            load.unauthenticated_peers,
            if good { "publishes" } else { "is LOCKED OUT" }
        );
        drop(held);
        drop(hub);
        }

        // 2. AMQP attach flood on one authenticated connection.
        let attaches = env_usize("BOUNDS_ATTACHES", 80_000);
        let hub = serve(&fx);
        hub.ready().await;
        let idle = hub.rss();
        let done = flag();
        let peak = sample_peak(hub.proc.0.id(), done.clone());
        let tcp = tokio::net::TcpStream::connect(hub.amqp).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(fx.tls(Some(&fx.identity(&["good", "line2"]))))
            .connect(rustls::pki_types::ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        let mut conn = fe2o3_amqp::Connection::builder()
            .container_id("flood")
            .hostname("localhost")
            .open_with_stream(tls)
            .await
            .unwrap();
        let mut session = fe2o3_amqp::Session::begin(&mut conn).await.unwrap();
        let t = Instant::now();
        let (mut attached, mut refused) = (Vec::new(), 0usize);
        for i in 0..attaches {
            if t.elapsed() > Duration::from_secs(env_usize("BOUNDS_ATTACH_SECS", 30) as u64) {
                break;
            }
            match tokio::time::timeout(
                Duration::from_secs(5),
                fe2o3_amqp::Sender::attach(&mut session, format!("l{i}"), "/devices/good/messages/events"),
            )
            .await
            {
                Ok(Ok(s)) if attached.len() < chainsmith::hub::server::MAX_LINKS_PER_CONNECTION => {
                    attached.push(s)
                }
                Ok(Ok(mut s)) => {
                    // Attached, then detached by the hub: take the detach.
                    let _ = tokio::time::timeout(Duration::from_millis(50), s.on_detach()).await;
                    refused += 1;
                }
                Ok(Err(_)) => refused += 1,
                Err(_) => break,
            }
        }
        let during = hub.load().await.amqp_links;
        let secs = t.elapsed().as_secs_f64();
        let tried = attached.len() + refused;
        drop(attached);
        let _ = session.end().await;
        let _ = conn.close().await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let peak = peak.await.unwrap();
        let (after, links_after) = (hub.rss(), hub.load().await.amqp_links);
        println!(
            "  AMQP attach flood: {tried} attaches on one connection ({secs:.1} s): idle {idle:.1} MB, peak {peak:.1} MB, 2 s after close {after:.1} MB; links held {during} (refused {refused}), after close {links_after}"
        );
        drop(hub);

        // 3. WebSocket ping flood, never reading.
        let pings = env_usize("BOUNDS_PINGS", 8_000_000);
        let hub = serve(&fx);
        hub.ready().await;
        let idle = hub.rss();
        let done = flag();
        let peak = sample_peak(hub.proc.0.id(), done.clone());
        let tcp = tokio::net::TcpStream::connect(hub.ws).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(fx.tls(None))
            .connect(rustls::pki_types::ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = "wss://localhost/$iothub/websocket".into_client_request().unwrap();
        req.headers_mut().insert("sec-websocket-protocol", "mqtt".parse().unwrap());
        let (mut ws, _) = tokio_tungstenite::client_async(req, tls).await.unwrap();
        use futures::SinkExt;
        let ping = tokio_tungstenite::tungstenite::Bytes::from(vec![7u8; 125]);
        let t = Instant::now();
        let mut sent = 0usize;
        while sent < pings {
            if ws.feed(tokio_tungstenite::tungstenite::Message::Ping(ping.clone())).await.is_err() {
                break;
            }
            sent += 1;
            if sent % 1024 == 0 && ws.flush().await.is_err() {
                break;
            }
        }
        let secs = t.elapsed().as_secs_f64();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        println!(
            "  WebSocket ping flood: {sent} pings of 125 bytes, none read ({secs:.1} s, {}): idle {idle:.1} MB, peak {:.1} MB",
            if sent < pings { "closed by the hub" } else { "NOT closed" },
            peak.await.unwrap()
        );
        drop(ws);
        drop(hub);

        // 4. DPS session flood: any certificate opens one.
        let n = env_usize("BOUNDS_DPS", 1000);
        let hub = serve(&fx);
        hub.ready().await;
        let idle = hub.rss();
        let done = flag();
        let peak = sample_peak(hub.proc.0.id(), done.clone());
        let scope = fx.store.dps_id_scope().unwrap();
        let cfg = fx.tls(Some(&fx.identity(&["good", "line2"])));
        let (mut open, mut refused) = (Vec::new(), 0usize);
        for i in 0..n {
            let Ok(tcp) = tcp_from([127, 0, 3, 10 + (i % 4) as u8], hub.mqtt).await else {
                refused += 1;
                continue;
            };
            let Ok(tls) = tokio_rustls::TlsConnector::from(cfg.clone())
                .connect(rustls::pki_types::ServerName::try_from("localhost").unwrap(), tcp)
                .await
            else {
                refused += 1;
                continue;
            };
            let mut c = Client::from_stream(tls);
            let rid = format!("r{i}");
            let mut connect = rumqttc::mqttbytes::v4::Connect::new(rid.as_str());
            connect.keep_alive = 1200;
            connect.set_login(
                chainsmith::azure::dps::username(&scope, &rid, chainsmith::azure::dps::API_VERSION),
                "",
            );
            let _ = c.send(&rumqttc::mqttbytes::v4::Packet::Connect(connect)).await;
            match c.recv(Duration::from_secs(5)).await {
                Some(rumqttc::mqttbytes::v4::Packet::ConnAck(a))
                    if a.code == rumqttc::mqttbytes::v4::ConnectReturnCode::Success =>
                {
                    open.push(c)
                }
                _ => refused += 1,
            }
        }
        let load = hub.load().await;
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        println!(
            "  DPS session flood: {n} sessions from 4 peers: idle {idle:.1} MB, peak {:.1} MB; hub holds {} (refused {refused})",
            peak.await.unwrap(),
            load.dps_sessions
        );
        drop(open);
        drop(hub);
    });
}

fn main() {
    let only = std::env::args().nth(1).filter(|a| !a.starts_with('-'));
    if only.as_deref().is_none_or(|o| o == "flood") {
        flood(false);
        flood(true);
    }
    if only.as_deref().is_none_or(|o| o == "inspect") {
        inspect_and_pfx();
    }
    if only.as_deref().is_none_or(|o| o == "floods") {
        floods();
    }
}
