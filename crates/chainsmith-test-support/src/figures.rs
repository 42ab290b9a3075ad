//! The benches' knobs and figures: numbers from the environment, percentiles, a process's
//! memory from `/proc`, a child's wall and CPU time.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The number in the environment variable `name`, or `default` when it is unset or not a
/// number (a bench's knob).
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The `p` quantile (0.0 to 1.0) of `v`, nearest rank; NaN for no samples. Sorts `v`.
pub fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// A memory field of `/proc/PID/status` (`"VmRSS:"`, the resident set; `"VmHWM:"`, its peak)
/// in MB; NaN when the process or the field is gone.
pub fn status_mb(pid: u32, field: &str) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// Wall time and a child's own resource usage (wait4), so the figures are of that process only.
pub struct Usage {
    /// From spawn to exit.
    pub wall: Duration,
    /// User plus system CPU time of the child and what it waited for.
    pub cpu: Duration,
    /// The largest peak RSS of any child waited for so far, in MB: exact for the first run of
    /// a bench, an upper bound after it.
    pub max_rss_mb: f64,
}

/// Run `cmd` (standard output discarded) to its end, which must be success, and measure it.
pub fn measured(cmd: &mut Command) -> Usage {
    use nix::sys::resource::{UsageWho, getrusage};
    use nix::sys::time::TimeValLike;
    let children = || getrusage(UsageWho::RUSAGE_CHILDREN).expect("getrusage");
    let before = children();
    let t = Instant::now();
    let status = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .status()
        .expect("the command starts");
    let wall = t.elapsed();
    assert!(status.success(), "{cmd:?} failed");
    let after = children();
    let tv = |t: nix::sys::time::TimeVal| Duration::from_micros(t.num_microseconds() as u64);
    Usage {
        wall,
        // The CPU of every child waited for so far, minus what it was before this one.
        cpu: (tv(after.user_time()) + tv(after.system_time()))
            - (tv(before.user_time()) + tv(before.system_time())),
        max_rss_mb: after.max_rss() as f64 / 1024.0,
    }
}
