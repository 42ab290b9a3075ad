//! Run one test again in a child process of this same test binary, under a wrapper that changes
//! its world: its own network namespace (the Azure SDKs can only dial port 8883, which a local
//! Mosquitto often holds), or a system clock a year ahead (proof that nothing depends on the
//! date). The child is `current_exe() FILTER --exact --nocapture` with an environment variable
//! naming the test, so the test body knows it is inside and runs.
//!
//! When the wrapper cannot work here (no user namespaces, no `faketime`), the test is skipped
//! with the reason written straight to stderr, past libtest's capture: never silently.
#![allow(dead_code)] // each area uses a different part

use std::io::Write;
use std::process::Command;

/// Set in the child to the name of the test it was started for.
const INSIDE: &str = "CHAINSMITH_TEST_ISOLATED";

/// True in the child that was started for `test`.
pub fn inside(test: &str) -> bool {
    std::env::var(INSIDE).as_deref() == Ok(test)
}

/// Say why a test did not run, where the user sees it even when the test "passes".
pub fn skip(test: &str, why: &str) {
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
}

/// `unshare` arguments for a new network namespace: as root a plain one, otherwise inside a
/// user namespace that maps us to root.
fn unshare() -> Vec<&'static str> {
    if rustix::process::geteuid().is_root() {
        vec!["unshare", "-n"]
    } else {
        vec!["unshare", "-rn"]
    }
}

/// Run `test` (its full path, e.g. `hub_sdk::azure_python_sdk_full_round`) in its own network
/// namespace with only loopback up, where 127.0.0.1:8883 is always free. Returns true when the
/// caller is that child and should run its body; false in the parent, after the child passed
/// (a failing child fails the parent) or after a printed skip.
pub fn in_own_netns(test: &str) -> bool {
    if inside(test) {
        return true;
    }
    let wrap = unshare();
    let probe = Command::new(wrap[0])
        .args(&wrap[1..])
        .args(["sh", "-c", "ip link set lo up"])
        .output();
    match probe {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            skip(
                test,
                &format!(
                    "needs its own network namespace for port 8883, and `{} sh -c 'ip link set lo up'` failed: {}",
                    wrap.join(" "),
                    String::from_utf8_lossy(&o.stderr).trim()
                ),
            );
            return false;
        }
        Err(e) => {
            skip(
                test,
                &format!("needs `unshare` (util-linux) for its own network namespace: {e}"),
            );
            return false;
        }
    }
    let mut cmd = Command::new(wrap[0]);
    cmd.args(&wrap[1..])
        .args(["sh", "-c", "ip link set lo up && exec \"$0\" \"$@\""]);
    let out = child(cmd, test, &[test], true);
    check(test, &out, Some(1));
    false
}

/// `program` under `/etc/hosts` replaced by one that resolves each of `names` to 127.0.0.1,
/// for the process and its children only (a mount namespace of its own, as
/// `unshare -m sh -c 'mount --bind HOSTS /etc/hosts && exec PROGRAM'`): a sample that dials
/// Azure's names (`global.azure-devices-provisioning.net`) reaches the local hub unmodified.
/// Only inside [`in_own_netns`] (there the test is root in its namespace, so it may mount).
/// `hosts_file` is where the replacement is written; it must outlive the command.
pub fn with_hosts(hosts_file: &std::path::Path, names: &[&str], program: &str) -> Command {
    let mut hosts = String::from("127.0.0.1 localhost\n::1 localhost\n");
    for n in names {
        hosts.push_str(&format!("127.0.0.1 {n}\n"));
    }
    std::fs::write(hosts_file, hosts).expect("writing the hosts file");
    let mut cmd = Command::new("unshare");
    cmd.args([
        "-m",
        "sh",
        "-c",
        "mount --bind \"$0\" /etc/hosts && exec \"$@\"",
    ])
    .arg(hosts_file)
    .arg(program);
    cmd
}

/// Run the tests matching any of `filters` in a child whose system clock is `days` ahead
/// (libfaketime; monotonic time is left alone so timeouts behave), with `env` added. Returns
/// false, like [`in_own_netns`], after the child passed or after a printed skip; true in the child.
pub fn with_clock_ahead(test: &str, filters: &[&str], days: u32, env: &[(&str, String)]) -> bool {
    if inside(test) {
        return true;
    }
    if let Some(outer) = std::env::var_os("FAKETIME") {
        // libfaketime does not nest: an inner offset replaces the outer one.
        skip(
            test,
            &format!(
                "already running under faketime (FAKETIME={}); an inner offset would replace it",
                outer.to_string_lossy()
            ),
        );
        return false;
    }
    let probe = Command::new("faketime")
        .args(["-f", &format!("+{days}d"), "true"])
        .output();
    if !matches!(&probe, Ok(o) if o.status.success()) {
        let why = format!(
            "needs `faketime` (Debian package faketime) to move the clock: {}",
            match probe {
                Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
                Err(e) => e.to_string(),
            }
        );
        // CI installs it (.ci/run): there a missing faketime is a broken setup, not a skip.
        assert!(std::env::var_os("CI").is_none(), "{why}");
        skip(test, &why);
        return false;
    }
    let mut cmd = Command::new("faketime");
    cmd.args(["-f", &format!("+{days}d")])
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = child(cmd, test, filters, false);
    check(test, &out, None);
    false
}

/// This test binary again, under `cmd` (a wrapper that execs its arguments), running `filters`.
fn child(mut cmd: Command, test: &str, filters: &[&str], exact: bool) -> std::process::Output {
    let exe = std::env::current_exe().expect("the test binary's path");
    cmd.arg(exe).args(filters);
    if exact {
        cmd.arg("--exact");
    }
    cmd.args(["--nocapture", "--test-threads=2"])
        .env(INSIDE, test)
        // A snapshot that differs must fail, never leave a .snap.new behind.
        .env("INSTA_UPDATE", "no");
    cmd.output().expect("starting the test binary again")
}

/// The child passed, and ran what it was meant to (a misspelt name would run nothing and pass).
fn check(test: &str, out: &std::process::Output, exactly: Option<usize>) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Shown with the failure; libtest swallows it when the test passes.
    println!("--- child stdout\n{stdout}\n--- child stderr\n{stderr}");
    assert!(
        out.status.success(),
        "{test} failed in the child ({})",
        out.status
    );
    let passed: usize = stdout
        .lines()
        .find_map(|l| l.strip_prefix("test result: ok. "))
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    match exactly {
        Some(n) => assert_eq!(passed, n, "{test}: the child ran {passed} tests"),
        None => assert!(passed > 1, "{test}: the child ran {passed} tests"),
    }
}
