//! Fleet mode at scale, side by side in one run (release build, separate processes, as the
//! open-file limit of 20,000 per process requires):
//! - N devices (default 10,000) against the local hub (`hub serve`): hub and fleet RSS,
//!   handshakes/s during ramp-up, messages/s at steady state (1 message/s per device), then a
//!   reconnect storm: time until all are back, and failures;
//! - the same fleet against Mosquitto (use_identity_as_username, set_tcp_nodelay true), with
//!   the CPU share of broker and fleet side by side;
//! - handshakes per client CPU second: chainsmith's fleet and the Node `mqtt` package
//!   (tests/node/node_modules) connecting the same N TLS clients with the same certificates.
//!
//! Run: `cargo bench --bench fleet`; `CHAINSMITH_FLEET_DEVICES=500` runs it small,
//! `CHAINSMITH_FLEET_SECONDS=60` sets each fleet's --duration.

#![allow(clippy::unwrap_used)] // a bench that cannot set up should stop loudly
#![allow(clippy::too_many_lines)] // a bench reads top to bottom; the 150-line limit is for the product

use chainsmith::hub::{Auth, HubDevice, HubStore};
use chainsmith_test_support::broker::{
    free_port, mosquitto_available, mosquitto_with, server_cert, wait_port,
};
use chainsmith_test_support::process::KillOnDrop;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ROOT: &str = "Bench Root";

fn exe() -> &'static str {
    env!("CARGO_BIN_EXE_chainsmith")
}

fn cs(ws: &Path) -> Command {
    let mut c = Command::new(exe());
    c.arg("--workspace").arg(ws);
    c
}

/// (RSS in MB, CPU seconds) of a running process, from /proc.
fn proc_stat(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some((kb / 1024.0, ticks / 100.0))
}

/// CPU seconds of every child waited for so far.
fn children_cpu() -> f64 {
    use nix::sys::resource::{UsageWho, getrusage};
    let u = getrusage(UsageWho::RUSAGE_CHILDREN).unwrap();
    let s = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    s(u.user_time()) + s(u.system_time())
}

/// What one fleet process did, and what it and its peer cost.
struct Run {
    report: serde_json::Value,
    fleet_rss: f64,
    fleet_cpu: f64,
    peer_rss: f64,
    peer_cpu: f64,
    wall: f64,
    /// (event, seconds, fleet CPU s, peer CPU s) at start, ramped-up, storm-begin, storm-end, stopping.
    marks: Vec<(String, f64, f64, f64)>,
}

/// Run `fleet run ARGS` to its end, sampling its RSS and the peer's (pid) RSS and CPU.
fn fleet(ws: &Path, args: &[&str], report: &Path, peer: u32) -> Run {
    let cpu0 = children_cpu();
    let peer0 = proc_stat(peer).map(|s| s.1).unwrap_or(0.0);
    let t = Instant::now();
    let mut child = cs(ws)
        .args(["fleet", "run"])
        .args(args)
        .arg("--json")
        .arg("--report")
        .arg(report)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    // CPU of both processes at each phase change, read as the fleet announces it.
    let (pid, stdout) = (child.id(), child.stdout.take().unwrap());
    let marks = std::thread::spawn(move || {
        use std::io::BufRead;
        let cpu = |p: u32| proc_stat(p).map(|s| s.1).unwrap_or(f64::NAN);
        let mut marks = vec![("start".to_string(), 0.0, cpu(pid), cpu(peer))];
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            let e = v["event"].as_str().unwrap_or_default();
            if ["ramped-up", "storm-begin", "storm-end", "stopping"].contains(&e) {
                marks.push((
                    e.to_string(),
                    t.elapsed().as_secs_f64(),
                    cpu(pid),
                    cpu(peer),
                ));
            }
        }
        marks
    });
    let (mut fleet_rss, mut peer_rss) = (0f64, 0f64);
    loop {
        if let Some((r, _)) = proc_stat(child.id()) {
            fleet_rss = fleet_rss.max(r);
        }
        if let Some((r, _)) = proc_stat(peer) {
            peer_rss = peer_rss.max(r);
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let wall = t.elapsed().as_secs_f64();
    let marks = marks.join().unwrap();
    let report = serde_json::from_str(&std::fs::read_to_string(report).unwrap()).unwrap();
    Run {
        report,
        fleet_rss,
        fleet_cpu: children_cpu() - cpu0,
        peer_rss,
        peer_cpu: proc_stat(peer).map(|s| s.1).unwrap_or(0.0) - peer0,
        wall,
        marks,
    }
}

fn print_run(label: &str, peer: &str, r: &Run) {
    let j = &r.report;
    let f = |k: &str| j[k].as_f64().unwrap_or(f64::NAN);
    println!("== {label}");
    println!(
        "   devices {}  connected {}  failed {}  ({})  wall {:.1} s",
        j["devices"], j["connected"], j["failed"], j["stopped"], r.wall
    );
    println!(
        "   ramp-up {:.1} s, {:.0} handshakes/s;  steady {:.0} msg/s ({} sent, {} acked, {} without PUBACK)",
        f("ramp_up_s"),
        f("handshakes_per_s_ramp"),
        f("messages_per_s"),
        j["messages"]["sent"],
        j["messages"]["acked"],
        j["messages"]["ack_lost"]
    );
    let l = &j["latency"];
    println!(
        "   handshake p50 {} ms p99 {} ms;  PUBACK p50 {} ms p99 {} ms max {} ms",
        l["handshake"]["p50_ms"],
        l["handshake"]["p99_ms"],
        l["ack"]["p50_ms"],
        l["ack"]["p99_ms"],
        l["ack"]["max_ms"]
    );
    if let Some(s) = j.get("storm").filter(|s| !s.is_null()) {
        println!(
            "   storm: {} dropped, {} back, {} gave up, {} still reconnecting at the stop, {} retries, all back in {} s",
            s["devices"],
            s["back"],
            s["failed"],
            s["still_reconnecting"],
            s["retries"],
            s["time_to_all_back_s"]
        );
    }
    if let Some(fl) = j["failures"].as_object().filter(|m| !m.is_empty()) {
        for (k, g) in fl {
            println!("   failures {k}: {} (e.g. {})", g["count"], g["example"]);
        }
    }
    for w in r.marks.windows(2) {
        let ((_, t0, f0, p0), (to, t1, f1, p1)) = (&w[0], &w[1]);
        let phase = match to.as_str() {
            "ramped-up" => "ramp-up",
            "storm-begin" => "steady",
            "storm-end" => "storm",
            _ => "until stop",
        };
        let dt = (t1 - t0).max(1e-9);
        println!(
            "   CPU during {phase:<10} ({:>5.1} s): {peer} {:>3.0}%, fleet {:>3.0}% of one core",
            dt,
            100.0 * (p1 - p0) / dt,
            100.0 * (f1 - f0) / dt
        );
    }
    println!(
        "   RSS: {peer} {:.0} MB, fleet {:.0} MB;  CPU share: {peer} {:.0}%, fleet {:.0}% of one core ({:.1} s / {:.1} s over {:.1} s)",
        r.peer_rss,
        r.fleet_rss,
        100.0 * r.peer_cpu / r.wall,
        100.0 * r.fleet_cpu / r.wall,
        r.peer_cpu,
        r.fleet_cpu,
        r.wall
    );
}

const NODE: &str = r#"
const mqtt = require('mqtt'); const fs = require('fs');
const [host, port, list, ca, conc] = process.argv.slice(2);
const devices = fs.readFileSync(list, 'utf8').trim().split('\n').map(l => l.split('\t'));
const caPem = fs.readFileSync(ca);
let done = 0, failed = 0, inflight = 0, i = 0; const clients = [];
const t0 = process.hrtime.bigint(); const c0 = process.cpuUsage();
function check() {
  if (done + failed !== devices.length) return;
  const el = Number(process.hrtime.bigint() - t0) / 1e9; const cu = process.cpuUsage(c0);
  console.log(JSON.stringify({ connected: done, failed, elapsed_s: el, cpu_s: (cu.user + cu.system) / 1e6 }));
  for (const c of clients) c.end(true);
  setTimeout(() => process.exit(0), 300);
}
function next() {
  while (inflight < +conc && i < devices.length) {
    const [id, cert, key] = devices[i++]; inflight++;
    const c = mqtt.connect({ protocol: 'mqtts', host, port: +port, clientId: id, cert: fs.readFileSync(cert),
      key: fs.readFileSync(key), ca: caPem, rejectUnauthorized: true, reconnectPeriod: 0, connectTimeout: 10000,
      protocolVersion: 4, clean: true, keepalive: 60 });
    let settled = false;
    c.once('connect', () => { if (!settled) { settled = true; inflight--; done++; check(); next(); } });
    c.once('error', () => { if (!settled) { settled = true; inflight--; failed++; check(); next(); } });
    clients.push(c);
  }
}
next();
"#;

fn main() {
    let n: usize = std::env::var("CHAINSMITH_FLEET_DEVICES")
        .ok()
        .map(|v| v.parse().expect("CHAINSMITH_FLEET_DEVICES is a number"))
        .unwrap_or(10_000);
    assert!(
        (1..=19_000).contains(&n),
        "CHAINSMITH_FLEET_DEVICES: 1 to 19000 (one process holds at most 20,000 files)"
    );
    let secs: u64 = std::env::var("CHAINSMITH_FLEET_SECONDS")
        .ok()
        .map(|v| v.parse().expect("CHAINSMITH_FLEET_SECONDS is a number"))
        .unwrap_or(if n >= 5000 { 60 } else { 20 });
    // Children (hub, Mosquitto, Node) inherit the raised limit.
    chainsmith::fleet::raise_open_files(n as u64 + 1000).unwrap();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    let t = Instant::now();
    assert!(
        cs(&ws)
            .args(["new", "root", ROOT])
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success()
    );
    let range = format!("d-{{00001..{n:05}}}");
    assert!(
        cs(&ws)
            .args(["new", "device", &range, "--issuer", ROOT])
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success()
    );
    assert!(
        cs(&ws)
            .args(["hub", "ca", "add", ROOT, "--verified"])
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success()
    );
    let store = HubStore::open(&ws).unwrap();
    store
        .modify(|r| {
            let now = time::OffsetDateTime::now_utc();
            r.devices.extend((1..=n).map(|i| HubDevice {
                id: format!("d-{i:05}"),
                auth: Auth::Ca,
                primary: None,
                secondary: None,
                enabled: true,
                added: now,
                provisioned_by: None,
            }));
            Ok(())
        })
        .unwrap();
    println!(
        "fleet bench: {n} devices (P-256, CA-signed) made and registered in {:.1} s; {secs} s per fleet run; {} cores; load average before: {}",
        t.elapsed().as_secs_f64(),
        std::thread::available_parallelism()
            .map(|p| p.get())
            .unwrap_or(1),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let duration = format!("{secs}s");

    // 1. The local hub, in its own process.
    let port = free_port();
    let hub = KillOnDrop(
        cs(&ws)
            .args(["hub", "serve", "--log", "off", "--port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(wait_port(port), "the hub does not listen on {port}");
    let hub_idle = proc_stat(hub.0.id()).unwrap().0;
    // The fleet process's own cost (code, runtime, TLS setup): a fleet of one device, one
    // message; what a larger fleet holds beyond it is what its devices cost.
    let one = fleet(
        &ws,
        &["d-00001", "--messages", "1", "--timeout", "20s"],
        &tmp.path().join("one.json"),
        hub.0.id(),
    );
    let fleet_idle = one.fleet_rss;
    println!(
        "fleet of one device: {fleet_idle:.1} MB RSS; a device's task holds {} bytes while it waits (its session boxed beside it)",
        chainsmith::fleet::device_task_bytes()
    );
    let r = fleet(
        &ws,
        &[
            "--issuer",
            ROOT,
            "--connect-rate",
            "100000/s",
            "--rate",
            "1/s",
            "--duration",
            &duration,
            "--storm",
            "--timeout",
            "20s",
        ],
        &tmp.path().join("hub.json"),
        hub.0.id(),
    );
    print_run(
        &format!("local hub (hub serve; idle RSS {hub_idle:.0} MB)"),
        "hub",
        &r,
    );
    drop(hub);
    let hub_run = r;

    // 2. Mosquitto with the same certificates.
    if !mosquitto_available() {
        println!("== Mosquitto: not installed, skipped");
        return;
    }
    let root_pem = ws.join(format!("entities/{ROOT}/cert.pem"));
    let (cert, key) = server_cert(&ws, ROOT, tmp.path());
    // Its log off (the peer's CPU is a figure) and no cap on connections, as for the hub.
    let mosq = mosquitto_with(
        tmp.path(),
        &root_pem,
        &cert,
        &key,
        "log_dest none\nmax_connections -1\n",
    );
    let mport = mosq.port;
    let to = format!("mqtts://127.0.0.1:{mport}");
    let root_arg = root_pem.to_str().unwrap();
    let r = fleet(
        &ws,
        &[
            "--issuer",
            ROOT,
            "--to",
            &to,
            "--ca",
            root_arg,
            "--connect-rate",
            "100000/s",
            "--rate",
            "1/s",
            "--duration",
            &duration,
            "--storm",
            "--timeout",
            "20s",
        ],
        &tmp.path().join("mosquitto.json"),
        mosq.pid(),
    );
    print_run(
        "Mosquitto 2 (use_identity_as_username, set_tcp_nodelay true)",
        "mosquitto",
        &r,
    );
    side_by_side(&hub_run, &r, n, fleet_idle);

    // 3. Handshakes per client CPU second: connect all N once, chainsmith vs Node `mqtt`.
    let r = fleet(
        &ws,
        &[
            "--issuer",
            ROOT,
            "--to",
            &to,
            "--ca",
            root_arg,
            "--connect-rate",
            "100000/s",
            "--messages",
            "1",
            "--qos",
            "0",
            "--timeout",
            "20s",
        ],
        &tmp.path().join("hs.json"),
        mosq.pid(),
    );
    let cs_hs = r.report["handshakes"].as_f64().unwrap();
    let cs_per_cpu = cs_hs / r.fleet_cpu;
    let node_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node");
    let list = tmp.path().join("devices.tsv");
    let lines: Vec<String> = (1..=n)
        .map(|i| {
            let d: PathBuf = ws.join(format!("entities/d-{i:05}"));
            format!(
                "d-{i:05}\t{}\t{}",
                d.join("cert.pem").display(),
                d.join("key.pem").display()
            )
        })
        .collect();
    std::fs::write(&list, lines.join("\n")).unwrap();
    let script = tmp.path().join("node-fleet.js");
    std::fs::write(&script, NODE).unwrap();
    let cpu0 = children_cpu();
    let t = Instant::now();
    let out = Command::new("node")
        .arg(&script)
        .args(["127.0.0.1", &mport.to_string()])
        .arg(&list)
        .arg(&root_pem)
        .arg("200")
        .env("NODE_PATH", node_dir.join("node_modules"))
        .current_dir(&node_dir)
        .output();
    let node_cpu = children_cpu() - cpu0;
    match out {
        Ok(o) if o.status.success() => {
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
            let hs = v["connected"].as_f64().unwrap_or(0.0);
            let node_per_cpu = hs / node_cpu;
            println!(
                "== handshakes per client CPU second (all {n} connect once to Mosquitto, 200 in flight)"
            );
            println!(
                "   chainsmith fleet: {cs_hs:.0} handshakes, {:.1} CPU s, {:.1} s wall -> {cs_per_cpu:.0} handshakes per CPU second",
                r.fleet_cpu, r.wall
            );
            println!(
                "   Node mqtt {}: {hs:.0} handshakes ({} failed), {node_cpu:.1} CPU s, {:.1} s wall -> {node_per_cpu:.0} handshakes per CPU second",
                node_version(&node_dir),
                v["failed"],
                t.elapsed().as_secs_f64()
            );
            println!(
                "   ratio: chainsmith {:.1}x Node",
                cs_per_cpu / node_per_cpu
            );
        }
        Ok(o) => println!(
            "== Node mqtt failed: {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => println!("== Node not available ({e}), comparison skipped"),
    }
    drop(mosq);
}

/// The goals' rows, the local hub's run beside Mosquitto's, with the ratio (NaN: a figure
/// the run did not reach, such as a storm the run stopped before it ended).
fn side_by_side(hub: &Run, mosquitto: &Run, n: usize, fleet_idle: f64) {
    let f = |r: &Run, k: &str| r.report[k].as_f64().unwrap_or(f64::NAN);
    let storm = |r: &Run| {
        r.report["storm"]["time_to_all_back_s"]
            .as_f64()
            .unwrap_or(f64::NAN)
    };
    println!("== side by side");
    println!(
        "   {:<40} {:>10} {:>10} {:>7}",
        "", "local hub", "mosquitto", "ratio"
    );
    let row = |name: &str, a: f64, b: f64| {
        println!("   {name:<40} {a:>10.1} {b:>10.1} {:>7.2}", a / b);
    };
    row(
        "seconds until all connected (ramp-up)",
        f(hub, "ramp_up_s"),
        f(mosquitto, "ramp_up_s"),
    );
    row("peer RSS (MB)", hub.peer_rss, mosquitto.peer_rss);
    row("fleet RSS (MB)", hub.fleet_rss, mosquitto.fleet_rss);
    // The goal: a fleet of 10,000 in at most 250 MB, so (250 MB - a fleet of one) / 10,000
    // per device.
    let per_device = |r: &Run| (r.fleet_rss - fleet_idle) * 1024.0 / n as f64;
    row(
        "fleet KB per device ((RSS - one's) / N)",
        per_device(hub),
        per_device(mosquitto),
    );
    println!(
        "   goal: fleet RSS <= 250 MB at 10,000 devices, i.e. <= {:.1} KB per device beside a fleet of one ({fleet_idle:.1} MB)",
        (250.0 - fleet_idle) * 1024.0 / 10_000.0
    );
    row(
        "storm: seconds until all back",
        storm(hub),
        storm(mosquitto),
    );
    row(
        "storm: devices that gave up",
        hub.report["storm"]["failed"].as_f64().unwrap_or(f64::NAN),
        mosquitto.report["storm"]["failed"]
            .as_f64()
            .unwrap_or(f64::NAN),
    );
}

fn node_version(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("node_modules/mqtt/package.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["version"].as_str().map(str::to_string))
        .unwrap_or_default()
}
