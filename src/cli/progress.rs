//! One progress line on standard error for a long command (`fleet run` today; any command
//! that runs for minutes can take it): redrawn in place on a terminal by indicatif, with the
//! command's own lines printed above it, and nothing at all when standard error is not a
//! terminal or the output is `--json` (a JSON stream has its own progress events).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// How often the line may be redrawn: often enough to look live, rare enough that a fast
/// stream of updates costs the terminal nothing.
const REDRAWS_PER_SECOND: u8 = 4;

/// The line, or nothing where there is no terminal to redraw on.
pub(crate) struct ProgressLine {
    bar: Option<ProgressBar>,
}

impl ProgressLine {
    /// A line on standard error when it is a terminal and the output is not `--json`.
    pub(crate) fn new(json: bool) -> ProgressLine {
        let bar = (!json && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(
                None,
                ProgressDrawTarget::stderr_with_hz(REDRAWS_PER_SECOND),
            );
            // The whole line is the command's text; indicatif cuts it at the terminal's width.
            bar.set_style(ProgressStyle::with_template("{wide_msg}").expect("a static template"));
            bar
        });
        ProgressLine { bar }
    }

    /// Replace the line's text; it may carry names from certificates, so it is escaped.
    pub(crate) fn set(&self, text: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(crate::text::escape_controls(text).into_owned());
        }
    }

    /// Print lines of the command's own above the progress line: the line is taken away while
    /// `print` writes, then drawn again below what it wrote.
    pub(crate) fn above<R>(&self, print: impl FnOnce() -> R) -> R {
        match &self.bar {
            Some(bar) => bar.suspend(print),
            None => print(),
        }
    }
}

impl Drop for ProgressLine {
    /// The line goes away with the command's progress: the terminal is left as it was.
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
