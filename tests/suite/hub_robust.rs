//! Bad clients never take the hub down: garbage, TLS hello then silence, oversized packets,
//! vanishing mid-publish, a reconnect storm, random and mutated packets. A good device keeps
//! publishing (and getting PUBACKs) throughout, and no session leaks.

use chainsmith_test_support::hub_util;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use chainsmith::hub::{Auth, HubEvent};
use chainsmith::ops::ValidityArg;
use hub_util::{Client, Fixture, publish_acked, username};
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{Connect, ConnectReturnCode, Packet, Publish, Subscribe};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A small deterministic PRNG (xorshift), so failures replay.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn encode(p: &Packet) -> Vec<u8> {
    let mut out = BytesMut::new();
    let _ = match p {
        Packet::Connect(c) => c.write(&mut out),
        Packet::Publish(x) => x.write(&mut out),
        Packet::Subscribe(x) => x.write(&mut out),
        _ => unreachable!(),
    };
    out.to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_clients_never_stop_good_ones() {
    // The leak check counts this process's file descriptors: run alone in a child process,
    // where no other test of the suite opens any.
    if !crate::isolated::in_own_netns("hub_robust::bad_clients_never_stop_good_ones") {
        return;
    }
    let fx = Fixture::new();
    fx.store.add_ca("root", true).unwrap();
    for id in ["good", "fuzz", "storm"] {
        fx.device(id, Some("line2"), ValidityArg::default());
        fx.register(id, Auth::Ca, None);
    }
    let hub = chainsmith_test_support::hub_util::start_hub(fx.root()).await;
    let addr = hub.addr;
    let mut ev = hub.events();

    // The good device publishes every 20 ms until told to stop; every message must be acked.
    let good_cfg = fx.tls(Some(&fx.identity(&["good", "line2"])));
    let (mut good, ack) = Client::connect(addr, good_cfg, "good", Some(&username("good")))
        .await
        .unwrap();
    assert!(ack.is_some());
    let fds_before = open_fds();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let good_task = {
        let (stop, sent) = (stop.clone(), sent.clone());
        tokio::spawn(async move {
            let mut pkid = 1u16;
            while !stop.load(Ordering::Relaxed) {
                let ok = publish_acked(
                    &mut good,
                    "devices/good/messages/events/k=v",
                    b"alive",
                    pkid,
                )
                .await;
                assert!(
                    ok,
                    "good device lost its PUBACK after {} messages",
                    sent.load(Ordering::Relaxed)
                );
                sent.fetch_add(1, Ordering::Relaxed);
                pkid = pkid.wrapping_add(1).max(1);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            good // kept open: it must still be connected at the end
        })
    };

    // 1. Garbage on the raw TCP port (not TLS).
    for n in [1usize, 5, 300, 70_000] {
        let mut t = TcpStream::connect(addr).await.unwrap();
        let junk: Vec<u8> = (0..n).map(|i| (i * 7 + 3) as u8).collect();
        let _ = t.write_all(&junk).await;
        drop(t);
    }

    // 2. TLS hello and then silence: closed 10 s after connecting (checked below, in parallel).
    let silent_cfg = fx.tls(Some(&fx.identity(&["fuzz", "line2"])));
    let silent = tokio::spawn({
        let cfg = silent_cfg.clone();
        async move {
            let start = std::time::Instant::now();
            let mut c = Client::tls(addr, cfg).await.unwrap();
            let closed = c.closed_within(Duration::from_secs(15)).await;
            (closed, start.elapsed())
        }
    });
    // A bare TCP connection that never says hello is closed too.
    let bare = tokio::spawn(async move {
        let mut t = TcpStream::connect(addr).await.unwrap();
        let mut b = [0u8; 16];
        tokio::time::timeout(
            Duration::from_secs(15),
            tokio::io::AsyncReadExt::read(&mut t, &mut b),
        )
        .await
        .map(|r| matches!(r, Ok(0) | Err(_)))
        .unwrap_or(false)
    });

    // 3. Garbage inside TLS instead of CONNECT; an oversized declared length; a wrong first packet.
    for bytes in [
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        vec![0x10, 0xff, 0xff, 0xff, 0x7f], // CONNECT of 256 MB
        vec![0x30, 0xff, 0xff, 0xff, 0xff, 0x01], // malformed remaining length
        encode(&Packet::Publish(Publish::new(
            "x",
            QoS::AtMostOnce,
            b"y".to_vec(),
        ))),
    ] {
        let mut c = Client::tls(addr, silent_cfg.clone()).await.unwrap();
        let _ = c.send_raw(&bytes).await;
        assert!(c.closed_within(Duration::from_secs(5)).await, "{bytes:?}");
    }

    // 4. Authenticated, then an oversized PUBLISH header, and a client vanishing mid-publish.
    let fuzz_connect = |id: &str| {
        let mut c = Connect::new(id);
        c.keep_alive = 30;
        c.set_login(username(id), "");
        encode(&Packet::Connect(c))
    };
    {
        let (mut c, ack) =
            Client::connect(addr, silent_cfg.clone(), "fuzz", Some(&username("fuzz")))
                .await
                .unwrap();
        assert!(ack.is_some());
        c.send_raw(&[0x32, 0xff, 0xff, 0xff, 0x7f]).await.unwrap();
        assert!(c.closed_within(Duration::from_secs(5)).await);
        let (mut c, _) = Client::connect(addr, silent_cfg.clone(), "fuzz", Some(&username("fuzz")))
            .await
            .unwrap();
        let whole = encode(&Packet::Publish(Publish::new(
            "devices/fuzz/messages/events/",
            QoS::AtMostOnce,
            vec![1u8; 50_000],
        )));
        c.send_raw(&whole[..20_000]).await.unwrap();
        drop(c); // gone, mid-publish
    }

    // 5. Random and mutated packets, valid CONNECT first (so they reach the session code) or not.
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let templates: Vec<Vec<u8>> = vec![
        encode(&Packet::Publish({
            let mut p = Publish::new(
                "devices/fuzz/messages/events/a=b&%24.ct=x",
                QoS::AtLeastOnce,
                b"{}".to_vec(),
            );
            p.pkid = 3;
            p
        })),
        encode(&Packet::Publish(Publish::new(
            "$iothub/twin/GET/?$rid=1",
            QoS::AtMostOnce,
            Vec::new(),
        ))),
        encode(&Packet::Publish(Publish::new(
            "$iothub/twin/PATCH/properties/reported/?$rid=2",
            QoS::AtMostOnce,
            b"{\"a\":1}".to_vec(),
        ))),
        encode(&Packet::Subscribe({
            let mut s = Subscribe::new("devices/fuzz/messages/devicebound/#", QoS::AtLeastOnce);
            s.pkid = 4;
            s
        })),
        vec![0xc0, 0x00], // PINGREQ
        fuzz_connect("fuzz"),
    ];
    let mut cases = Vec::new();
    for i in 0..120 {
        let mut bytes = Vec::new();
        for _ in 0..1 + rng.below(4) {
            let mut t = templates[rng.below(templates.len())].clone();
            match rng.below(4) {
                0 => {
                    for _ in 0..1 + rng.below(4) {
                        let at = rng.below(t.len());
                        t[at] = rng.next() as u8;
                    }
                }
                1 => t.truncate(rng.below(t.len()) + 1),
                2 => t = (0..rng.below(200) + 1).map(|_| rng.next() as u8).collect(),
                _ => {}
            }
            bytes.extend(t);
        }
        cases.push((i % 2 == 0, bytes));
    }
    let mut tasks = Vec::new();
    for chunk in cases.chunks(10) {
        for (authenticate, bytes) in chunk.iter().cloned() {
            let cfg = silent_cfg.clone();
            let first = fuzz_connect("fuzz");
            tasks.push(tokio::spawn(async move {
                let Ok(mut c) = Client::tls(addr, cfg).await else {
                    return;
                };
                if authenticate {
                    let _ = c.send_raw(&first).await;
                }
                let _ = c.send_raw(&bytes).await;
                let _ = c.closed_within(Duration::from_millis(300)).await;
            }));
        }
        for t in tasks.drain(..) {
            t.await.unwrap();
        }
    }

    // 6. A reconnect storm: 60 connections of one device at once, then all vanish.
    let storm_cfg = fx.tls(Some(&fx.identity(&["storm", "line2"])));
    let mut storm = Vec::new();
    for _ in 0..60 {
        let cfg = storm_cfg.clone();
        storm.push(tokio::spawn(async move {
            Client::connect(addr, cfg, "storm", Some(&username("storm")))
                .await
                .ok()
        }));
    }
    let mut held = Vec::new();
    for s in storm {
        if let Some((c, Some(_))) = s.await.unwrap() {
            held.push(c);
        }
    }
    assert!(!held.is_empty());
    drop(held);

    let (closed, after) = silent.await.unwrap();
    assert!(
        closed,
        "a TLS client that never sent CONNECT was not closed"
    );
    assert!(
        after >= Duration::from_secs(9),
        "closed too early: {after:?}"
    );
    assert!(
        bare.await.unwrap(),
        "a TCP client that never started TLS was not closed"
    );

    // The good device never missed a PUBACK and is still connected.
    stop.store(true, Ordering::Relaxed);
    let _good = good_task.await.unwrap();
    assert!(
        sent.load(Ordering::Relaxed) > 50,
        "good device sent only {}",
        sent.load(Ordering::Relaxed)
    );
    // No leaked sessions: only the good device remains once the dust settles.
    let t0 = std::time::Instant::now();
    while hub.connected() != vec!["good".to_string()] && t0.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(hub.connected(), vec!["good".to_string()]);
    // No leaked sockets either (hub and clients share this process).
    let t0 = std::time::Instant::now();
    while open_fds() > fds_before + 2 && t0.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        open_fds() <= fds_before + 2,
        "fds {} -> {}",
        fds_before,
        open_fds()
    );
    // And the hub said why it dropped the silent client.
    let mut saw_timeout = false;
    while let Ok(e) = ev.try_recv() {
        if let HubEvent::Dropped { reason, .. } = e {
            saw_timeout |= reason.contains("10 s");
        }
    }
    assert!(saw_timeout);
    hub.shutdown().await;
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Issue 25: once it listens, `hub serve` gives back the pages of its own code that starting
/// touched (`chainsmith_server::memory::page_out_startup_code`, whose unit test shows the pages
/// go) and serves on as before: a device connects, stays idle a while, then sends a 256 KB
/// message (IoT Hub's device-to-cloud limit) and a small one, and both are acknowledged.
#[test]
fn hub_serve_gives_back_its_startup_code_and_serves_on() {
    use std::io::BufRead;
    let fx = Fixture::new();
    fx.store.add_ca("root", true).unwrap();
    fx.device("d1", Some("line2"), ValidityArg::default());
    fx.register("d1", Auth::Ca, None);
    let port = chainsmith_test_support::broker::free_port();
    let mut serve = chainsmith_test_support::process::KillOnDrop(
        std::process::Command::new(env!("CARGO_BIN_EXE_chainsmith"))
            .env("CHAINSMITH_WORKSPACE", fx.root())
            .args(["hub", "serve", "--log", "off", "--port", &port.to_string()])
            .args(["--amqp-port", "0", "--ws-port", "0"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut out = std::io::BufReader::new(serve.0.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert!(first.contains("listening on"), "{first}");

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let trust = std::fs::read(fx.trust_file()).unwrap();
        let cfg = hub_util::client_config(&trust, Some(&fx.identity(&["d1", "line2"])));
        let addr = ([127, 0, 0, 1], port).into();
        let (mut c, ack) = Client::connect(addr, cfg, "d1", Some(&username("d1")))
            .await
            .unwrap();
        assert!(ack.is_some_and(|a| a.code == ConnectReturnCode::Success));
        tokio::time::sleep(Duration::from_millis(500)).await;
        let topic = "devices/d1/messages/events/";
        assert!(publish_acked(&mut c, topic, &vec![b'a'; 256 * 1024], 1).await);
        assert!(publish_acked(&mut c, topic, b"small", 2).await);
    });
}
