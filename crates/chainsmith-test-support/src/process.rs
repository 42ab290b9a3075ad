//! Child processes a test or bench starts: killed and reaped when it ends (or panics), and
//! commands that must succeed.

use std::process::{Child, Command, Output};

/// A child process killed and reaped on drop, so that a failing test leaves no hub or broker
/// behind holding its port.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Panic with the standard error of a process that did not succeed.
pub fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Run `cmd` to its end; panic with its standard error unless it succeeded. Its output.
pub fn succeeded(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert_success(&out);
    out
}
