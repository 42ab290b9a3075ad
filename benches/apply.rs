//! `chainsmith apply` speed and memory, end to end through the release binary, against an
//! OpenSSL shell script in the style of certGen.sh (one `openssl` process per step).
//!
//! Run: `cargo bench --bench apply` (cargo builds the release binary it runs).
//! CHAINSMITH_BENCH_N (devices, default 10000), CHAINSMITH_BENCH_OPENSSL_N (devices the
//! OpenSSL script makes, default 200; its per-device time is extrapolated to N),
//! CHAINSMITH_BENCH_DIR (where the workspace goes; default the temp dir, i.e. the disk).

#![allow(clippy::unwrap_used)] // a bench that cannot set up should stop loudly
#![allow(clippy::too_many_lines)] // a bench reads top to bottom; the 150-line limit is for the product

use chainsmith_test_support::figures::{Usage, env_usize, measured};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn apply(ws: &Path, spec: &Path) -> Usage {
    measured(
        Command::new(env!("CARGO_BIN_EXE_chainsmith"))
            .arg("--workspace")
            .arg(ws)
            .arg("apply")
            .arg(spec),
    )
}

fn sh(script: &str, dir: &Path) -> Duration {
    let t = Instant::now();
    let out = Command::new("bash")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .unwrap();
    chainsmith_test_support::process::assert_success(&out);
    t.elapsed()
}

fn tree_spec(n: usize, key: &str) -> String {
    let half = n / 2;
    format!(
        "[[ca]]\nname = \"root\"\n\n[[ca]]\nname = \"inter-a\"\nparent = \"root\"\n\n[[ca]]\nname = \"inter-b\"\nparent = \"root\"\n\n\
         [[device]]\nid = \"dev-a-{{{:06}..{:06}}}\"\nissuer = \"inter-a\"\nkey = \"{key}\"\n\n\
         [[device]]\nid = \"dev-b-{{{:06}..{:06}}}\"\nissuer = \"inter-b\"\nkey = \"{key}\"\n",
        1,
        half,
        1,
        n - half
    )
}

fn main() {
    let n = env_usize("CHAINSMITH_BENCH_N", 10_000);
    let n_ssl = env_usize("CHAINSMITH_BENCH_OPENSSL_N", 200);
    let base = std::env::var("CHAINSMITH_BENCH_DIR")
        .unwrap_or_else(|_| std::env::temp_dir().display().to_string());
    let tmp = tempfile::tempdir_in(&base).unwrap();
    let spec = tmp.path().join("tree.toml");
    std::fs::write(&spec, tree_spec(n, "ec-p256")).unwrap();
    println!(
        "apply bench: 1 root, 2 intermediates, {n} EC P-256 devices; workspace under {base} (set CHAINSMITH_BENCH_DIR to choose)"
    );

    let ws = tmp.path().join("ws");
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "machine: {cores} cores, load average {} (wall figures shrink when other work shares the cores; CPU figures do not)",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let first = apply(&ws, &spec);
    let ours = n as f64 / first.wall.as_secs_f64();
    println!(
        "first apply (empty workspace): {:.2} s wall, {:.2} s CPU = {ours:.0} devices/s; peak RSS {:.1} MB (ru_maxrss of the apply process)",
        first.wall.as_secs_f64(),
        first.cpu.as_secs_f64(),
        first.max_rss_mb
    );
    let ours_cpu = n as f64 / (first.cpu.as_secs_f64() / cores as f64);
    println!(
        "  CPU-bound rate with all {cores} cores to itself: {n} / ({:.2} s CPU / {cores}) = {ours_cpu:.0} devices/s",
        first.cpu.as_secs_f64()
    );
    let second = apply(&ws, &spec);
    println!(
        "second apply (unchanged spec): {:.3} s wall",
        second.wall.as_secs_f64(),
    );

    // A file-system control on tmpfs: what is chainsmith's cost and what is the disk's.
    if Path::new("/dev/shm").is_dir() {
        let shm = tempfile::tempdir_in("/dev/shm").unwrap();
        let u = apply(&shm.path().join("ws"), &spec);
        println!(
            "control on tmpfs: first apply {:.2} s wall = {:.0} devices/s",
            u.wall.as_secs_f64(),
            n as f64 / u.wall.as_secs_f64()
        );
    }

    // certGen.sh style: root and intermediates, then per device `openssl ecparam` (key),
    // `openssl req` (CSR) and `openssl x509 -req` (sign): one process per step.
    let d = tmp.path().join("openssl");
    std::fs::create_dir_all(&d).unwrap();
    let setup = "set -e
        ext=$'[v3_ca]\\nbasicConstraints=critical,CA:true\\nkeyUsage=critical,keyCertSign,cRLSign\\n[v3_dev]\\nbasicConstraints=critical,CA:false\\nkeyUsage=digitalSignature,keyEncipherment\\nextendedKeyUsage=clientAuth\\n'
        printf '%s' \"$ext\" > ext.cnf
        openssl ecparam -name prime256v1 -genkey -noout -out root.key
        openssl req -new -x509 -key root.key -subj /CN=root -days 3650 -sha256 -out root.pem
        for i in a b; do
          openssl ecparam -name prime256v1 -genkey -noout -out inter-$i.key
          openssl req -new -key inter-$i.key -subj /CN=inter-$i -out inter-$i.csr
          openssl x509 -req -in inter-$i.csr -CA root.pem -CAkey root.key -CAcreateserial -days 1825 -sha256 -extfile ext.cnf -extensions v3_ca -out inter-$i.pem 2>/dev/null
        done";
    sh(setup, &d);
    let script = format!(
        "set -e; for i in $(seq 1 {n_ssl}); do
           openssl ecparam -name prime256v1 -genkey -noout -out d$i.key
           openssl req -new -key d$i.key -subj /CN=dev-$i -out d$i.csr
           openssl x509 -req -in d$i.csr -CA inter-a.pem -CAkey inter-a.key -CAcreateserial -days 365 -sha256 -extfile ext.cnf -extensions v3_dev -out d$i.pem 2>/dev/null
         done"
    );
    let u_ssl = measured(Command::new("bash").arg("-c").arg(&script).current_dir(&d));
    let t_ssl = u_ssl.wall;
    let per_dev = t_ssl.as_secs_f64() / n_ssl as f64;
    let theirs = 1.0 / per_dev;
    println!(
        "openssl script (certGen.sh style, 3 processes per device): {n_ssl} devices in {:.2} s = {theirs:.1} devices/s; extrapolated to {n}: {:.0} s",
        t_ssl.as_secs_f64(),
        per_dev * n as f64
    );
    println!(
        "ratio (wall, same run): chainsmith apply is {:.0}x the OpenSSL script",
        ours / theirs
    );
    let ssl_cpu_per_dev = u_ssl.cpu.as_secs_f64() / n_ssl as f64;
    let ours_cpu_per_dev = first.cpu.as_secs_f64() / n as f64;
    println!(
        "ratio (CPU time per device, load-independent): openssl script {:.1} ms, chainsmith {:.3} ms = {:.0}x; on {cores} cores in parallel vs the script's one-at-a-time loop: {:.0}x",
        ssl_cpu_per_dev * 1e3,
        ours_cpu_per_dev * 1e3,
        ssl_cpu_per_dev / ours_cpu_per_dev,
        ssl_cpu_per_dev / ours_cpu_per_dev * cores as f64
    );

    // RSA-2048: key generation dominates; CPU time over wall time shows how many cores worked.
    let rsa_spec = tmp.path().join("rsa.toml");
    std::fs::write(&rsa_spec, tree_spec(100, "rsa-2048")).unwrap();
    let u = apply(&tmp.path().join("rsa"), &rsa_spec);
    println!(
        "100 RSA-2048 devices: {:.2} s wall, {:.2} s CPU: {:.2} cores busy on average ({cores} available)",
        u.wall.as_secs_f64(),
        u.cpu.as_secs_f64(),
        u.cpu.as_secs_f64() / u.wall.as_secs_f64(),
    );
    // The same on one thread: the wall-time ratio is what the second core bought.
    let one = measured(
        Command::new(env!("CARGO_BIN_EXE_chainsmith"))
            .env("RAYON_NUM_THREADS", "1")
            .arg("--workspace")
            .arg(tmp.path().join("rsa1"))
            .arg("apply")
            .arg(&rsa_spec),
    );
    println!(
        "100 RSA-2048 devices on 1 thread (RAYON_NUM_THREADS=1): {:.2} s wall, {:.2} s CPU; all cores vs one: {:.2}x faster",
        one.wall.as_secs_f64(),
        one.cpu.as_secs_f64(),
        one.wall.as_secs_f64() / u.wall.as_secs_f64()
    );
}
