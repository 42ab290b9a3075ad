//! DPS's REST API on the hub's 443 listener (issue 22, item 1): the official Node SDK's
//! `azure-iot-provisioning-device-http` registers through a group enrollment and the device
//! then sends telemetry; raw HTTPS requests over TLS check each answer as DPS gives it (202
//! with `Retry-After`, 200, DPS's error bodies and statuses), the 404 for other paths, the
//! body limit, the DPS session budget, and that silent, slow and flooding connections are
//! closed within the pre-authentication window. The WebSocket upgrades on the same listener
//! are covered by `transport_robust`, `transport_sdk` and `hub_floods`.

use crate::dps_protocol::group;
use crate::isolated;
use chainsmith_test_support::hub_util::{Fixture, Identity};

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use chainsmith::azure::dps as wire;
use chainsmith::hub::server::{CONNECT_TIMEOUT, HubLoad, MAX_DPS_SESSIONS_PER_PEER};
use chainsmith::hub::{Hub, HubConfig, HubEvent, HubHandle};
use chainsmith::ops::ValidityArg;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;

/// A device `dev-1` under `line2`, and DPS's group on the root.
fn fixture() -> (Fixture, String) {
    let fx = Fixture::new();
    fx.device("dev-1", Some("line2"), ValidityArg::default());
    chainsmith::hub::dps_prove(&fx.store, "root").unwrap();
    fx.store.dps_add_group(group("G", "root")).unwrap();
    let scope = fx.store.dps_id_scope().unwrap();
    (fx, scope)
}

async fn hub(fx: &Fixture) -> HubHandle {
    Hub::start(
        fx.root(),
        HubConfig {
            port: 0,
            websocket_port: Some(0),
            // The workspace's clock: a fixture fixed in time makes a hub fixed in time.
            clock: fx.ws.clock(),
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

/// One HTTP response as read off the wire.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// An HTTP/1.1 client over one TLS connection, written for the test (no client library: the
/// test sends exactly the bytes it means, malformed ones included).
struct Http {
    stream: TlsStream<TcpStream>,
    buf: Vec<u8>,
}

impl Http {
    async fn connect(addr: SocketAddr, fx: &Fixture, id: Option<&Identity>) -> Http {
        Http::connect_from([127, 0, 0, 1], addr, fx, id).await
    }

    async fn connect_from(
        from: [u8; 4],
        addr: SocketAddr,
        fx: &Fixture,
        id: Option<&Identity>,
    ) -> Http {
        let s = TcpSocket::new_v4().unwrap();
        s.bind(SocketAddr::new(IpAddr::from(from), 0)).unwrap();
        let tcp = s.connect(addr).await.unwrap();
        let stream = tokio_rustls::TlsConnector::from(fx.tls(id))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        Http {
            stream,
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
        self.stream.flush().await.unwrap();
    }

    /// Send a request as the Node SDK does (its headers), read the answer.
    async fn call(&mut self, method: &str, path: &str, body: &str) -> Resp {
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\nContent-Type: application/json; charset=utf-8\r\nUser-Agent: test\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.send(req.as_bytes()).await;
        self.response().await.expect("an answer")
    }

    /// The next response, or None when the hub closed first.
    async fn response(&mut self) -> Option<Resp> {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).to_string();
                let mut lines = head.split("\r\n");
                let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
                let headers: Vec<(String, String)> = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                    .collect();
                let len: usize = headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                    .map_or(0, |(_, v)| v.parse().unwrap());
                while self.buf.len() < end + 4 + len {
                    self.read_more().await?;
                }
                let body = self.buf[end + 4..end + 4 + len].to_vec();
                self.buf.drain(..end + 4 + len);
                return Some(Resp {
                    status,
                    headers,
                    body,
                });
            }
            self.read_more().await?;
        }
    }

    async fn read_more(&mut self) -> Option<()> {
        let mut b = [0u8; 4096];
        match tokio::time::timeout(Duration::from_secs(15), self.stream.read(&mut b)).await {
            Ok(Ok(n)) if n > 0 => {
                self.buf.extend_from_slice(&b[..n]);
                Some(())
            }
            _ => None,
        }
    }

    /// True when the hub closes the connection within `wait` (reading what it still sends).
    async fn closed_within(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let mut b = [0u8; 4096];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut b)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => {}
                Err(_) => return false,
            }
        }
    }
}

fn register_body(regid: &str) -> String {
    serde_json::json!({ "registrationId": regid, "payload": { "modelId": "dtmi:x;1" } }).to_string()
}

/// DPS's error body: (errorCode, message).
fn dps_error(r: &Resp) -> (u64, String) {
    let v = r.json();
    assert!(
        v["trackingId"].is_string() && v["timestampUtc"].is_string(),
        "{v}"
    );
    (
        v["errorCode"].as_u64().unwrap(),
        v["message"].as_str().unwrap().to_string(),
    )
}

async fn load_reaches(hub: &HubHandle, what: &str, ok: impl Fn(&HubLoad) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    while !ok(&hub.load()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: the hub's load stayed at {:?}",
            hub.load()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn dropped(events: &mut tokio::sync::broadcast::Receiver<HubEvent>) -> Vec<String> {
    let mut out = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let HubEvent::Dropped { reason, .. } = e {
            out.push(reason);
        }
    }
    out
}

/// The Node SDK's Http provisioning transport registers `node-http-1` through a group on
/// 443, then the Node device client connects over MQTT to the assigned hub and sends one
/// message the hub receives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_sdk_registers_over_https_then_sends_telemetry() {
    if !isolated::in_own_netns("dps_https::node_sdk_registers_over_https_then_sends_telemetry") {
        return;
    }
    let fx = Fixture::new();
    fx.device("node-http-1", Some("line2"), ValidityArg::default());
    chainsmith::hub::dps_prove(&fx.store, "root").unwrap();
    fx.store.dps_add_group(group("NodeGroup", "root")).unwrap();
    let scope = fx.store.dps_id_scope().unwrap();
    let hub = Hub::start(
        fx.root(),
        HubConfig {
            port: 8883,
            websocket_port: Some(443),
            clock: fx.ws.clock(),
            ..Default::default()
        },
    )
    .await
    .expect("8883 and 443 are free in this network namespace");
    let mut events = hub.events();
    let lines = crate::dps_sdk::node_dps_device(&fx, "node-http-1", &scope, "http").await;
    let stdout = format!("{lines:?}");
    assert_eq!(lines[0]["step"], "registered", "{stdout}");
    assert_eq!(lines[0]["assignedHub"], "localhost");
    assert_eq!(lines[0]["deviceId"], "node-http-1");
    assert_eq!(lines.last().unwrap()["step"], "sent", "{stdout}");
    let (mut assigned, mut telemetry) = (false, 0);
    while let Ok(e) = events.try_recv() {
        match e {
            HubEvent::DpsAssigned {
                registration_id, ..
            } if registration_id == "node-http-1" => assigned = true,
            HubEvent::Telemetry { device, .. } if device == "node-http-1" => telemetry += 1,
            _ => {}
        }
    }
    assert!(assigned, "DPS assigned the device over HTTPS");
    assert_eq!(telemetry, 1);
    hub.shutdown().await;
}

/// Register and poll over one kept-alive connection, as the SDKs do: 202 `assigning` with
/// `Retry-After` and DPS's content type, then 200 `assigned`; an unknown operation is 404
/// with DPS's body; the session slot is held while the connection is open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_then_poll_over_one_connection() {
    let (fx, scope) = fixture();
    let hub = hub(&fx).await;
    let addr = hub.websocket_addr.unwrap();
    let id = fx.identity(&["dev-1", "line2"]);
    let mut c = Http::connect(addr, &fx, Some(&id)).await;
    let put = wire::register_path(&scope, "dev-1", wire::API_VERSION);
    let r = c.call("PUT", &put, &register_body("dev-1")).await;
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(r.header("retry-after"), Some("1"));
    let v = r.json();
    assert_eq!(v["status"], "assigning");
    let op = v["operationId"].as_str().unwrap().to_string();
    assert_eq!(hub.load().dps_sessions, 1, "a DPS session held");
    assert_eq!(
        hub.load().unauthenticated,
        0,
        "its pre-auth slot given back"
    );

    let get = wire::operation_path(&scope, "dev-1", &op, wire::API_VERSION);
    // The Node SDK sends `{}` with its GET.
    let r = c.call("GET", &get, "{}").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["status"], "assigned");
    assert_eq!(v["registrationState"]["deviceId"], "dev-1");
    assert_eq!(v["registrationState"]["assignedHub"], "localhost");
    // DPS returns a payload only from a custom allocation; the device's own is not echoed.
    assert_eq!(v["registrationState"].get("payload"), None, "{v}");
    assert!(fx.store.device("dev-1").is_ok(), "created in the hub");

    let unknown = wire::operation_path(&scope, "dev-1", "4.nope", wire::API_VERSION);
    let r = c.call("GET", &unknown, "").await;
    assert_eq!(r.status, 404);
    let (code, msg) = dps_error(&r);
    assert_eq!(code, 404202);
    assert!(msg.contains("no operation \"4.nope\""), "{msg}");
    drop(c);
    load_reaches(&hub, "the DPS slot given back", |l| l.dps_sessions == 0).await;
    hub.shutdown().await;
}

/// An operation answers only the certificate that registered (hostile pass): another device's
/// certificate, or any self-signed one, naming the registration and its operation id in the
/// path is told 404 as for an unknown operation, while the owner still reads its state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_certificate_cannot_poll_a_registrations_operation() {
    let (fx, scope) = fixture();
    fx.device("dev-2", Some("line2"), ValidityArg::default());
    fx.device("rogue", None, ValidityArg::default());
    let hub = hub(&fx).await;
    let addr = hub.websocket_addr.unwrap();
    let owner = fx.identity(&["dev-1", "line2"]);
    let mut c = Http::connect(addr, &fx, Some(&owner)).await;
    let put = wire::register_path(&scope, "dev-1", wire::API_VERSION);
    let r = c.call("PUT", &put, &register_body("dev-1")).await;
    assert_eq!(r.status, 202, "{}", r.text());
    let op = r.json()["operationId"].as_str().unwrap().to_string();

    for (who, id) in [
        ("dev-2", fx.identity(&["dev-2", "line2"])),
        ("rogue", fx.identity(&["rogue"])),
    ] {
        for spelled in ["dev-1", "DEV-1"] {
            let get = wire::operation_path(&scope, spelled, &op, wire::API_VERSION);
            let mut other = Http::connect(addr, &fx, Some(&id)).await;
            let r = other.call("GET", &get, "").await;
            assert_eq!(
                r.status,
                404,
                "{who} read {spelled}'s operation: {}",
                r.text()
            );
            assert!(!r.text().contains("registrationState"), "{}", r.text());
            let (code, _) = dps_error(&r);
            assert_eq!(code, 404202);
        }
    }
    let get = wire::operation_path(&scope, "dev-1", &op, wire::API_VERSION);
    let r = c.call("GET", &get, "").await;
    assert_eq!(r.status, 200, "the owner still polls: {}", r.text());
    assert_eq!(r.json()["registrationState"]["deviceId"], "dev-1");
    hub.shutdown().await;
}

/// Every refusal in DPS's words and status: no client certificate, another ID scope, an
/// api-version the local DPS does not speak, a path naming another registration than the
/// body, a registration id DPS would not take, an undecodable path; and the 404 for a path
/// the hub does not serve, the 405 for a DPS path with the other method.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_come_in_dps_words() {
    let (fx, scope) = fixture();
    fx.device("dev-2", Some("line2"), ValidityArg::default());
    let hub = hub(&fx).await;
    let mut events = hub.events();
    let addr = hub.websocket_addr.unwrap();
    let id = fx.identity(&["dev-1", "line2"]);
    let put = |regid: &str, api: &str| wire::register_path(&scope, regid, api);

    // No client certificate: 401, DPS's sentence.
    let mut anon = Http::connect(addr, &fx, None).await;
    let r = anon
        .call(
            "PUT",
            &put("dev-1", wire::API_VERSION),
            &register_body("dev-1"),
        )
        .await;
    assert_eq!(r.status, 401);
    let (code, msg) = dps_error(&r);
    assert_eq!(code, 401002);
    assert!(msg.contains("no client certificate"), "{msg}");
    assert_eq!(
        hub.load().dps_sessions,
        0,
        "a refused request holds no session"
    );

    let mut c = Http::connect(addr, &fx, Some(&id)).await;
    let cases: Vec<(String, String, u16, u64, &str)> = vec![
        (
            wire::register_path("0ne00000000", "dev-1", wire::API_VERSION),
            register_body("dev-1"),
            401,
            401002,
            "is not this DPS's",
        ),
        (
            put("dev-1", "2016-01-01"),
            register_body("dev-1"),
            400,
            400004,
            "api-version \"2016-01-01\" is not one the local DPS speaks",
        ),
        (
            put("dev-1", wire::API_VERSION),
            register_body("dev-2"),
            400,
            400004,
            "the register body names \"dev-2\" but the connection is for \"dev-1\"",
        ),
        (
            put("bad id!", wire::API_VERSION),
            register_body("bad id!"),
            400,
            400004,
            "registration bad id!",
        ),
        (
            format!(
                "/{scope}/registrations/dev%zz/register?api-version={}",
                wire::API_VERSION
            ),
            register_body("dev-1"),
            400,
            400004,
            "bad %-escape",
        ),
    ];
    for (path, body, status, code, needle) in cases {
        let r = c.call("PUT", &path, &body).await;
        assert_eq!(r.status, status, "{path}: {}", r.text());
        assert_eq!(
            r.header("content-type"),
            Some("application/json; charset=utf-8")
        );
        let (got, msg) = dps_error(&r);
        assert_eq!(got, code, "{path}: {msg}");
        assert!(msg.contains(needle), "{path}: {msg}");
    }
    assert!(fx.store.device("dev-1").is_err(), "nothing was registered");

    // Not a path the hub serves: 404 with the one line naming what it does serve.
    let r = c.call("GET", "/api/health", "").await;
    assert_eq!(r.status, 404);
    assert!(r.text().contains("/$iothub/websocket"), "{}", r.text());
    assert!(r.text().contains("/registrations/"), "{}", r.text());
    // A DPS path with the other method: 405 and the method it takes.
    let r = c.call("GET", &put("dev-1", wire::API_VERSION), "").await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("PUT"));
    // The connection served them all and is still open.
    let r = c
        .call(
            "PUT",
            &put("dev-1", wire::API_VERSION),
            &register_body("dev-1"),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text());
    let refused: Vec<String> = std::iter::from_fn(|| events.try_recv().ok())
        .filter_map(|e| match e {
            HubEvent::DpsRefused { kind, .. } => Some(kind),
            _ => None,
        })
        .collect();
    for kind in [
        "no-certificate",
        "dps-id-scope",
        "dps-api-version",
        "registration-id-mismatch",
        "bad-registration-id",
        "bad-request",
    ] {
        assert!(refused.iter().any(|k| k == kind), "{kind} in {refused:?}");
    }
    hub.shutdown().await;
}

/// A body over the limit is answered 413 in DPS's words and the connection closed, whether
/// it announces its length or streams it chunked; the hub serves the next connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_is_413_and_the_connection_closes() {
    use chainsmith::hub::dps::{MAX_BODY_BYTES, MAX_PAYLOAD_BYTES};
    let (fx, scope) = fixture();
    let hub = hub(&fx).await;
    let addr = hub.websocket_addr.unwrap();
    let id = fx.identity(&["dev-1", "line2"]);
    let put = wire::register_path(&scope, "dev-1", wire::API_VERSION);
    // Announced: refused before a byte of it is read.
    let mut c = Http::connect(addr, &fx, Some(&id)).await;
    let head = format!(
        "PUT {put} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\n\r\n"
    );
    c.send(head.as_bytes()).await;
    let r = c.response().await.unwrap();
    assert_eq!(r.status, 413);
    assert_eq!(r.header("connection"), Some("close"));
    let (code, msg) = dps_error(&r);
    assert_eq!(code, 413000);
    assert!(msg.contains("KiB"), "{msg}");
    assert!(c.closed_within(Duration::from_secs(5)).await);
    // Chunked, no length: cut at the limit.
    let mut c = Http::connect(addr, &fx, Some(&id)).await;
    let head = format!(
        "PUT {put} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    c.send(head.as_bytes()).await;
    let chunk = format!("{:x}\r\n{}\r\n", 8192, "x".repeat(8192));
    // One chunk past the limit, so the hub has read all that was sent when it answers.
    for _ in 0..=(MAX_BODY_BYTES / 8192 + 1) {
        if c.stream.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = c.stream.flush().await;
    assert_eq!(c.response().await.map(|r| r.status), Some(413));
    assert!(c.closed_within(Duration::from_secs(5)).await);
    // A body just under the limit is read and judged: not DPS's JSON, 400.
    let mut c = Http::connect(addr, &fx, Some(&id)).await;
    let r = c.call("PUT", &put, &"y".repeat(MAX_PAYLOAD_BYTES)).await;
    assert_eq!(r.status, 400);
    assert!(dps_error(&r).1.contains("not DPS's JSON"));
    hub.shutdown().await;
}

/// A connection that sends nothing, one that sends its headers a byte a second (slowloris),
/// one idle after an answer and one that floods headers: each closed within the
/// pre-authentication window (the flood at once, with 431), its slot given back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_slow_and_flooding_connections_are_closed_in_time() {
    let (fx, scope) = fixture();
    let hub = hub(&fx).await;
    let mut events = hub.events();
    let addr = hub.websocket_addr.unwrap();
    let id = fx.identity(&["dev-1", "line2"]);
    let window = CONNECT_TIMEOUT + Duration::from_secs(3);

    let silent = async {
        let mut c = Http::connect(addr, &fx, Some(&id)).await;
        let t = tokio::time::Instant::now();
        assert!(c.closed_within(window).await, "silent connection open");
        t.elapsed()
    };
    let slow = async {
        let mut c = Http::connect(addr, &fx, Some(&id)).await;
        let t = tokio::time::Instant::now();
        let head = b"GET /$iothub/websocket HTTP/1.1\r\nHost: localhost\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        // A byte every half second: the head is never whole within the window.
        for b in head {
            if c.stream.write_all(&[*b]).await.is_err() || c.stream.flush().await.is_err() {
                break;
            }
            if c.closed_within(Duration::from_millis(500)).await {
                return t.elapsed();
            }
        }
        assert!(c.closed_within(window).await, "slow connection open");
        t.elapsed()
    };
    let idle = async {
        let mut c = Http::connect(addr, &fx, Some(&id)).await;
        let get = wire::operation_path(&scope, "dev-1", "4.x", wire::API_VERSION);
        assert_eq!(c.call("GET", &get, "").await.status, 404);
        let t = tokio::time::Instant::now();
        assert!(c.closed_within(window).await, "idle connection open");
        t.elapsed()
    };
    let flood = async {
        let mut c = Http::connect(addr, &fx, Some(&id)).await;
        let mut head = b"GET / HTTP/1.1\r\nHost: localhost\r\n".to_vec();
        for i in 0..2000 {
            head.extend_from_slice(format!("X-Flood-{i}: {}\r\n", "z".repeat(40)).as_bytes());
        }
        let t = tokio::time::Instant::now();
        let _ = c.stream.write_all(&head).await;
        let status = c.response().await.map(|r| r.status);
        assert!(c.closed_within(Duration::from_secs(5)).await, "flood open");
        (status, t.elapsed())
    };
    let (silent, slow, idle, (flood_status, flood)) = tokio::join!(silent, slow, idle, flood);
    eprintln!("closed after: silent {silent:?}, slow {slow:?}, idle {idle:?}, flood {flood:?}");
    for (what, took) in [("silent", silent), ("slow", slow), ("idle", idle)] {
        assert!(
            took >= CONNECT_TIMEOUT - Duration::from_secs(1) && took <= window,
            "{what} closed after {took:?}"
        );
    }
    assert_eq!(flood_status, Some(431));
    assert!(
        flood < Duration::from_secs(3),
        "flood closed after {flood:?}"
    );
    load_reaches(&hub, "every slot given back", |l| {
        l.unauthenticated == 0 && l.dps_sessions == 0
    })
    .await;
    let dropped = dropped(&mut events);
    assert!(
        dropped
            .iter()
            .any(|r| r.contains("no HTTP request") && r.contains("within 10 s")),
        "{dropped:?}"
    );
    assert!(dropped.iter().any(|r| r.contains("431")), "{dropped:?}");
    hub.shutdown().await;
}

/// HTTPS requests charge the DPS session budget as MQTT sessions do: a peer holding its share
/// of DPS connections gets 429 with `Retry-After` on the next, which the SDKs retry; another
/// peer is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_dps_requests_are_budgeted_per_peer() {
    let (fx, scope) = fixture();
    let hub = hub(&fx).await;
    let addr = hub.websocket_addr.unwrap();
    let id = fx.identity(&["dev-1", "line2"]);
    let get = wire::operation_path(&scope, "dev-1", "4.x", wire::API_VERSION);
    // All at once: each is a full mTLS handshake (the hub sends no resumption tickets), and one
    // after the other they took longer than the 10 s an idle connection is given for its next
    // request, so the first ones were closed before the last were open.
    let held = futures::future::join_all((0..MAX_DPS_SESSIONS_PER_PEER).map(|_| async {
        let mut c = Http::connect_from([127, 0, 0, 2], addr, &fx, Some(&id)).await;
        assert_eq!(c.call("GET", &get, "").await.status, 404);
        c
    }))
    .await;
    assert_eq!(hub.load().dps_sessions, MAX_DPS_SESSIONS_PER_PEER);
    let mut c = Http::connect_from([127, 0, 0, 2], addr, &fx, Some(&id)).await;
    let r = c.call("GET", &get, "").await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("1"));
    let (code, msg) = dps_error(&r);
    assert_eq!(code, 429001);
    assert!(msg.contains("DPS sessions"), "{msg}");
    assert!(c.closed_within(Duration::from_secs(5)).await);
    // Another address is served meanwhile.
    let mut other = Http::connect(addr, &fx, Some(&id)).await;
    assert_eq!(other.call("GET", &get, "").await.status, 404);
    drop(held);
    drop(other);
    load_reaches(&hub, "the DPS slots given back", |l| l.dps_sessions == 0).await;
    hub.shutdown().await;
}
