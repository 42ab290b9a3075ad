//! What a tab's key asks of the app beyond its own state: a [`Request`]. A tab changes its own
//! state itself; the status line, a dialog, another tab and the loop's side effects belong to
//! the app, so the tab hands them up instead of reaching for them.

use super::command::Command;
use super::dialog::Dialog;
use super::theme::Level;

/// What a tab's key asks of the app: the tab has already changed its own state; this is the
/// part that reaches beyond it.
#[derive(Debug)]
pub enum Request {
    /// Run this side effect in the loop (its result comes back as an action).
    Run(Command),
    /// Put this on the status line (a key that did nothing says why).
    Say(Level, String),
    /// Say this and run that: a test or a fleet starting, a step's commands copied.
    SayAndRun(Level, String, Command),
    /// Open this dialog; it takes the keys until it closes.
    Open(Dialog),
    /// Show the Connect tab with this device chosen for the test (`c` on the PKI tab).
    Test(String),
}

impl Request {
    /// A warning on the status line: the key did nothing, and this says why.
    pub(crate) fn warn(text: impl Into<String>) -> Request {
        Request::Say(Level::Warn, text.into())
    }
}
