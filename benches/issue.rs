//! Issuing speed, end to end through the CLI, against an OpenSSL shell loop in the style of
//! the Azure C SDK's certGen.sh (one `openssl req` + one `openssl x509` per device).
//!
//! Run: `cargo bench --bench issue` (N devices; set CHAINSMITH_BENCH_N to change, default 10000).
//! The OpenSSL loop issues the same N (about six minutes at ~30/s); CHAINSMITH_BENCH_OPENSSL_N
//! times a smaller sample instead, and the output then says the rate is from a sample.
//! Also: one RSA-4096 root, and `list` over a 100,000-entity workspace (CHAINSMITH_BENCH_LIST_N).

#![allow(clippy::unwrap_used)] // a bench that cannot set up should stop loudly
#![allow(clippy::too_many_lines)] // a bench reads top to bottom; the 150-line limit is for the product

use chainsmith_test_support::figures::env_usize;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

fn run(ws: &Path, args: &[&str]) -> std::time::Duration {
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_chainsmith"))
        .env("CHAINSMITH_WORKSPACE", ws)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    t.elapsed()
}

fn sh(script: &str, dir: &Path) {
    let out = Command::new("bash")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .unwrap();
    chainsmith_test_support::process::assert_success(&out);
}

fn main() {
    let n = env_usize("CHAINSMITH_BENCH_N", 10_000);
    let n_ssl = env_usize("CHAINSMITH_BENCH_OPENSSL_N", n);
    let n_list = env_usize("CHAINSMITH_BENCH_LIST_N", 100_000);
    // A file-system control: the same batch on tmpfs shows what is chainsmith's own cost and
    // what is the disk's (ext4 inode allocation slows down after many recent deletions).
    if Path::new("/dev/shm").is_dir() {
        let shm = tempfile::tempdir_in("/dev/shm").unwrap();
        let ws = shm.path().join("ws");
        run(&ws, &["new", "root", "root"]);
        let t = run(
            &ws,
            &[
                "new",
                "device",
                &format!("dev-{{{:06}..{:06}}}", 1, n),
                "--issuer",
                "root",
            ],
        );
        println!(
            "control on tmpfs: {n} devices in {:.2} s = {:.0} certificates/s",
            t.as_secs_f64(),
            n as f64 / t.as_secs_f64()
        );
    }
    let tmp = tempfile::tempdir_in(
        std::env::var("CHAINSMITH_BENCH_DIR")
            .unwrap_or_else(|_| std::env::temp_dir().display().to_string()),
    )
    .unwrap();
    println!(
        "workspace on {} (set CHAINSMITH_BENCH_DIR to choose the disk)",
        tmp.path().display()
    );
    let ws = tmp.path().join("ws");

    run(&ws, &["new", "root", "root"]);
    run(&ws, &["new", "intermediate", "inter", "--issuer", "root"]);
    let range = format!("dev-{{{:06}..{:06}}}", 1, n);
    let t = run(&ws, &["new", "device", &range, "--issuer", "inter"]);
    let ours = n as f64 / t.as_secs_f64();
    println!(
        "chainsmith: {n} EC P-256 device certificates in {:.2} s = {ours:.0} certificates/s (CLI, end to end, synced)",
        t.as_secs_f64()
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
    let t0 = Instant::now();
    sh(&script, &d);
    let t_ssl = t0.elapsed();
    let theirs = n_ssl as f64 / t_ssl.as_secs_f64();
    println!(
        "openssl script (certGen.sh style): {n_ssl} devices in {:.2} s = {theirs:.1} certificates/s",
        t_ssl.as_secs_f64()
    );
    println!(
        "ratio: chainsmith is {:.0}x the OpenSSL script",
        ours / theirs
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
