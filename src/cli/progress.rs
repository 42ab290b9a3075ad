//! Progress on standard error, drawn in place by indicatif, for a person at a terminal only:
//! the live line of `fleet run` ([`ProgressLine`]) and the bar of a long batch ([`WorkBar`]:
//! `new device` over a range, `apply`, `fleet export-shards`). Nothing at all when the output
//! is not a terminal, with `--json` (a JSON stream has its own progress events) or `--quiet`.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

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

/// How long a batch runs before its bar appears: a quick command never flashes one.
const BAR_DELAY: Duration = Duration::from_millis(500);

/// How often a shown bar is redrawn with no item done (a stage's last `syncfs`), so that its
/// rate and ETA stay true.
const BAR_TICK: Duration = Duration::from_millis(250);

/// The bar of a long batch: the engine's [`Progress`](crate::progress::Progress) drawn as
/// stage, bar, count, rate and ETA, once the batch has run for [`BAR_DELAY`].
pub(crate) struct WorkBar {
    /// None where nothing is drawn (not a terminal, `--json`, `--quiet`).
    bar: Option<ProgressBar>,
    started: Instant,
    shown: AtomicBool,
}

impl WorkBar {
    /// A bar for this command line: only when standard output and standard error are both
    /// terminals (output piped or redirected means a script or a log, which wants no
    /// redrawing) and neither `--json` nor `--quiet` is given.
    pub(crate) fn new(global: &super::Global) -> WorkBar {
        let wanted = !global.json
            && !global.quiet
            && std::io::stdout().is_terminal()
            && std::io::stderr().is_terminal();
        let bar = wanted.then(|| {
            // Hidden until BAR_DELAY has passed (`show_if_due`).
            let bar = ProgressBar::hidden();
            let color = super::wants_color(global.color, true);
            let template = if color {
                "{msg:>9} {wide_bar:.cyan/blue} {human_pos}/{human_len} {rate} ETA {eta}"
            } else {
                "{msg:>9} {wide_bar} {human_pos}/{human_len} {rate} ETA {eta}"
            };
            bar.set_style(
                ProgressStyle::with_template(template)
                    .expect("a static template")
                    // Whole items a second: indicatif's own {per_sec} shows four decimals.
                    .with_key(
                        "rate",
                        |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                            let _ = w.write_fmt(format_args!("{:.0}/s", s.per_sec()));
                        },
                    )
                    .progress_chars("=> "),
            );
            bar
        });
        WorkBar {
            bar,
            started: Instant::now(),
            shown: AtomicBool::new(false),
        }
    }

    /// Start drawing once the batch has run for [`BAR_DELAY`] (once only).
    fn show_if_due(&self, bar: &ProgressBar) {
        if self.shown.load(Ordering::Relaxed) || self.started.elapsed() < BAR_DELAY {
            return;
        }
        if !self.shown.swap(true, Ordering::Relaxed) {
            bar.set_draw_target(ProgressDrawTarget::stderr_with_hz(REDRAWS_PER_SECOND));
            bar.enable_steady_tick(BAR_TICK);
        }
    }
}

impl crate::progress::Progress for WorkBar {
    fn stage(&self, what: &'static str, total: u64) {
        if let Some(bar) = &self.bar {
            // Each stage has its own count, rate and ETA.
            bar.reset();
            bar.set_length(total);
            bar.set_message(what);
            self.show_if_due(bar);
        }
    }

    fn done(&self, n: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(n);
            self.show_if_due(bar);
        }
    }
}

impl Drop for WorkBar {
    /// The bar goes before the command prints what it made: the terminal keeps no trace of it.
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
