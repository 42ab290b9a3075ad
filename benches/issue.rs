//! Issuing speed, end to end through the release binary, in one run: `new device` over a range,
//! `apply` of a spec with the same devices, and an OpenSSL shell loop in the style of the Azure C
//! SDK's certGen.sh (one `openssl req` + one `openssl x509` per device), each with its wall rate
//! and its CPU time (user + system, from wait4) per certificate, and the ratios between them.
//!
//! Run: `cargo bench --bench issue`. Knobs: CHAINSMITH_BENCH_N (devices, default 10000),
//! CHAINSMITH_BENCH_DIR (where the workspaces go; default /dev/shm, tmpfs, so the figures are
//! chainsmith's own and not the disk's; give a directory on disk to see the disk),
//! CHAINSMITH_BENCH_OPENSSL_N (devices the OpenSSL loop makes, default 200; its per-device
//! figures are from that sample), CHAINSMITH_BENCH_LIST_N (entities for `list`, default 100000).
//! Also: one RSA-4096 root, a second batch into the full workspace, and `list`.

#![allow(clippy::unwrap_used)] // a bench that cannot set up should stop loudly
#![allow(clippy::too_many_lines)] // a bench reads top to bottom; the 150-line limit is for the product

use chainsmith_test_support::figures::{Usage, env_usize, measured};
use std::path::Path;
use std::process::Command;

fn run(ws: &Path, args: &[&str]) -> std::time::Duration {
    chainsmith(ws, args).wall
}

fn chainsmith(ws: &Path, args: &[&str]) -> Usage {
    measured(
        Command::new(env!("CARGO_BIN_EXE_chainsmith"))
            .env("CHAINSMITH_WORKSPACE", ws)
            .args(args),
    )
}

fn sh(script: &str, dir: &Path) -> Usage {
    measured(Command::new("bash").arg("-c").arg(script).current_dir(dir))
}

/// One row of the comparison: certificates a second (wall) and CPU µs per certificate.
struct Row {
    what: &'static str,
    per_s: f64,
    cpu_us: f64,
}

impl Row {
    fn of(what: &'static str, n: usize, u: &Usage) -> Row {
        Row {
            what,
            per_s: n as f64 / u.wall.as_secs_f64(),
            cpu_us: u.cpu.as_secs_f64() * 1e6 / n as f64,
        }
    }
}

/// CPU time of the calling thread so far.
fn thread_cpu() -> std::time::Duration {
    use nix::sys::resource::{UsageWho, getrusage};
    use nix::sys::time::TimeValLike;
    let u = getrusage(UsageWho::RUSAGE_THREAD).unwrap();
    let us = |t: nix::sys::time::TimeVal| t.num_microseconds().unsigned_abs();
    std::time::Duration::from_micros(us(u.user_time()) + us(u.system_time()))
}

/// CPU µs per entity of only the system calls `new device` must make for one (a staging
/// directory, three files of a device's sizes, one rename into place), in the fewest calls.
fn files_floor_us(dir: &Path, n: usize) -> f64 {
    use rustix::fs::{Mode, OFlags, RenameFlags};
    let (staging, entities) = (dir.join("staging"), dir.join("entities"));
    std::fs::create_dir_all(&staging).unwrap();
    std::fs::create_dir_all(&entities).unwrap();
    let open =
        |p: &Path| rustix::fs::open(p, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
    let (s, e) = (open(&staging), open(&entities));
    let files = [
        ("key.pem", 246, 0o600),
        ("cert.pem", 630, 0o644),
        ("meta.toml", 442, 0o644),
    ];
    let bytes = vec![b'x'; 1024];
    let t = thread_cpu();
    for i in 0..n {
        let d = format!("s{i}");
        rustix::fs::mkdirat(&s, d.as_str(), Mode::from_raw_mode(0o700)).unwrap();
        for (name, len, mode) in files {
            let fd = rustix::fs::openat(
                &s,
                format!("{d}/{name}").as_str(),
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
                Mode::from_raw_mode(mode),
            )
            .unwrap();
            rustix::io::write(&fd, &bytes[..len]).unwrap();
        }
        rustix::fs::renameat_with(
            &s,
            d.as_str(),
            &e,
            format!("e{i}").as_str(),
            RenameFlags::NOREPLACE,
        )
        .unwrap();
    }
    let us = (thread_cpu() - t).as_secs_f64() * 1e6 / n as f64;
    std::fs::remove_dir_all(dir).unwrap();
    us
}

/// CPU µs per device of the cryptography alone, in aws-lc as chainsmith calls it: a fresh
/// P-256 key, its PKCS#8 encoding for key.pem, and one ECDSA signature over a
/// certificate-sized message (the CA's).
fn crypto_floor_us(n: usize) -> f64 {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
    let rng = SystemRandom::new();
    let ca = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
    let tbs = [0x5a_u8; 420];
    let t = thread_cpu();
    for _ in 0..n {
        let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
        let pkcs8 = key.to_pkcs8v1().unwrap();
        let sig = ca.sign(&rng, &tbs).unwrap();
        std::hint::black_box((pkcs8, sig));
    }
    (thread_cpu() - t).as_secs_f64() * 1e6 / n as f64
}

fn main() {
    let n = env_usize("CHAINSMITH_BENCH_N", 10_000);
    let n_ssl = env_usize("CHAINSMITH_BENCH_OPENSSL_N", 200);
    let n_list = env_usize("CHAINSMITH_BENCH_LIST_N", 100_000);
    let base = std::env::var("CHAINSMITH_BENCH_DIR").unwrap_or_else(|_| {
        if Path::new("/dev/shm").is_dir() {
            "/dev/shm".into()
        } else {
            std::env::temp_dir().display().to_string()
        }
    });
    let tmp = tempfile::tempdir_in(&base).unwrap();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "issue bench: {n} EC P-256 devices under an intermediate; workspaces under {base} (CHAINSMITH_BENCH_DIR); load average {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let ws = tmp.path().join("ws");

    // `new device` over a range.
    run(&ws, &["new", "root", "root"]);
    run(&ws, &["new", "intermediate", "inter", "--issuer", "root"]);
    let range = format!("dev-{{{:06}..{:06}}}", 1, n);
    let new_device = chainsmith(&ws, &["new", "device", &range, "--issuer", "inter"]);

    // `apply` of the same devices under the same shape of tree, into an empty workspace.
    let spec = tmp.path().join("tree.toml");
    std::fs::write(
        &spec,
        format!(
            "[[ca]]\nname = \"root\"\n\n[[ca]]\nname = \"inter\"\nparent = \"root\"\n\n\
             [[device]]\nid = \"dev-{{{:06}..{:06}}}\"\nissuer = \"inter\"\nkey = \"ec-p256\"\n",
            1, n
        ),
    )
    .unwrap();
    let apply = chainsmith(
        &tmp.path().join("applied"),
        &["apply", spec.to_str().unwrap()],
    );

    // certGen.sh style: per device one `openssl req -newkey` and one `openssl x509 -req`.
    let d = tmp.path().join("openssl");
    std::fs::create_dir_all(&d).unwrap();
    sh(
        "openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -subj /CN=ca -days 30 2>/dev/null",
        &d,
    );
    let script = format!(
        "for i in $(seq 1 {n_ssl}); do \
           openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout d$i.key -out d$i.csr -subj /CN=dev-$i 2>/dev/null; \
           openssl x509 -req -in d$i.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out d$i.pem -days 30 -sha256 2>/dev/null; \
         done"
    );
    let openssl = sh(&script, &d);

    let rows = [
        Row::of("chainsmith new device", n, &new_device),
        Row::of("chainsmith apply", n, &apply),
        Row::of("openssl loop (certGen.sh)", n_ssl, &openssl),
    ];
    let ssl = &rows[2];
    println!(
        "{:<27} {:>9} {:>14} {:>16} {:>16}",
        "", "certs/s", "CPU µs/cert", "vs openssl wall", "vs openssl CPU"
    );
    for r in &rows {
        println!(
            "{:<27} {:>9.0} {:>14.1} {:>15.0}x {:>15.0}x",
            r.what,
            r.per_s,
            r.cpu_us,
            r.per_s / ssl.per_s,
            ssl.cpu_us / r.cpu_us
        );
    }
    println!(
        "new device / apply: {:.2}x the rate (wall), {:.2}x the CPU per certificate (openssl from a sample of {n_ssl})",
        rows[0].per_s / rows[1].per_s,
        rows[0].cpu_us / rows[1].cpu_us
    );
    let files = files_floor_us(&tmp.path().join("floor"), n.min(20_000));
    let crypto = crypto_floor_us(n.min(5_000));
    println!(
        "floor on this machine, one thread, CPU µs per device: the entity's files {files:.1} (a directory, \
         key.pem, cert.pem and meta.toml of the same sizes, renamed into place) + the cryptography {crypto:.1} \
         (aws-lc: a P-256 key, its PKCS#8, one ECDSA signature) = {:.1}; new device is {:.1} above it",
        files + crypto,
        rows[0].cpu_us - files - crypto
    );

    let t = run(&ws, &["new", "root", "big", "--key", "rsa-4096"]);
    println!(
        "one RSA-4096 root: {:.2} s (process start to synced files)",
        t.as_secs_f64()
    );

    // Issuing does not slow down with workspace size: a second batch into the now-full workspace.
    let range2 = format!("late-{{{:06}..{:06}}}", 1, n);
    let t = run(&ws, &["new", "device", &range2, "--issuer", "inter"]);
    println!(
        "second batch of {n} into a workspace of {} entities: {:.0} certificates/s",
        n + 3,
        n as f64 / t.as_secs_f64()
    );

    // list over a large workspace.
    let big = tmp.path().join("big");
    run(&big, &["new", "root", "r"]);
    let mut made = 0;
    while made < n_list {
        let k = (n_list - made).min(50_000);
        run(
            &big,
            &[
                "new",
                "device",
                &format!("d{}-{{{:06}..{:06}}}", made, 1, k),
                "--issuer",
                "r",
            ],
        );
        made += k;
    }
    // warm the cache once, then time
    run(&big, &["list"]);
    let t = run(&big, &["list"]);
    println!(
        "list of {} entities: {:.2} s (text)",
        n_list + 1,
        t.as_secs_f64()
    );
    let t = run(&big, &["list", "--json"]);
    println!(
        "list --json of {} entities: {:.2} s",
        n_list + 1,
        t.as_secs_f64()
    );
}
