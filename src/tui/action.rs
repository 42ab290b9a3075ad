//! Everything that can happen to the app (keys, mouse, resize, ticks, background results) is
//! an [`Action`]; everything the app asks the loop to do is a `Command` (see `command`).

use crate::ops::{Created, Report, TreeRow};
use crossterm::event::{KeyEvent, MouseEvent};
use std::time::Duration;
use time::OffsetDateTime;

/// One thing that happened, in the order the loop saw it: the user's input, the clock, or
/// the result of a `Command` that ran in the background. [`super::App::update`] takes
/// each in turn.
#[derive(Debug)]
pub enum Action {
    /// The user pressed or released a key (`update` acts on presses only).
    Key(KeyEvent),
    /// The user clicked or turned the wheel: tabs, tree rows and guide steps are clickable.
    Mouse(MouseEvent),
    /// The user pasted text (bracketed paste): it goes into the focused text field.
    Paste(String),
    /// The terminal is now this many columns and rows.
    Resize(u16, u16),
    /// The clock moved (the loop's tick); spinners advance, "days left" follow.
    Tick(OffsetDateTime),
    /// The workspace list was read (in the background).
    Listed {
        /// Every entity, in tree order (issuers before what they issued).
        rows: Vec<TreeRow>,
        /// Entities whose files could not be read; the PKI tab counts them in its status line.
        damaged: usize,
        /// How long the read took; the PKI footer shows it, and the guide's re-read interval
        /// grows with it.
        took: Duration,
    },
    /// The workspace could not be read at all: the message the tree pane shows instead.
    ListFailed(String),
    /// `ops::report` for one entity finished.
    ReportLoaded {
        /// The entity the report is for (the selection may have moved on since).
        name: String,
        /// The report, or why it could not be made (shown in the details pane).
        report: Result<Box<Report>, String>,
    },
    /// A new root / intermediate / device finished (key generation and all).
    Created(Result<Created, String>),
    /// A verification certificate was made: the result and its PEM text.
    Verified(Result<(Created, String), String>),
    /// A delete the user confirmed with `y` finished.
    Deleted {
        /// The entity that was deleted.
        name: String,
        /// Done, or why not (shown in the status line).
        result: Result<(), String>,
    },
    /// An export / import / renew / revoke finished: the lines to show (files written, notes).
    FormDone(Result<Vec<String>, String>),
    /// Devices with a renewal in their history (for the guide).
    Renewed(Vec<String>),
    /// Devices whose connection test passed, from the workspace's record (for the guide).
    Passed(Vec<String>),
    /// The local AWS IoT Core's state and the AWS export, as the guide's AWS track checks them.
    GuideAws(Box<super::guide::AwsFacts>),
    /// From the in-process local hub (see `hub`).
    Hub(super::hub::HubAction),
    /// From the connection test engine (see `connect`).
    Connect(super::connect::ConnectAction),
    /// The Fleet view's run.
    Fleet(super::fleet::FleetAction),
}
