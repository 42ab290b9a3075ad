//! Where things go on the screen: the tabs along the top row, the body, the status line, the
//! PKI tab's two panes. Drawing and mouse hit-testing both read it; it draws nothing.

use ratatui::layout::{Constraint, Layout, Rect};
use std::ops::Range;

/// The four screens along the top row, chosen with `1`–`4` or a click.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tab {
    /// `1`: the certificate tree and the selected entity's details.
    Pki,
    /// `2`: the in-process local hub, its registry, DPS and event log.
    Hub,
    /// `3`: the connection test of one device (or the Fleet view, `f`).
    Connect,
    /// `4`: the guided workshop, each step checked against the workspace.
    Guide,
}

impl Tab {
    /// The tabs in the order of the top row and of the keys `1`–`4`.
    pub(crate) const ALL: [Tab; 4] = [Tab::Pki, Tab::Hub, Tab::Connect, Tab::Guide];
    /// The title on the top row, with its key: "1 PKI".
    pub(crate) fn title(self) -> &'static str {
        match self {
            Tab::Pki => "1 PKI",
            Tab::Hub => "2 Hub",
            Tab::Connect => "3 Connect",
            Tab::Guide => "4 Guide",
        }
    }
}

/// The narrowest terminal the screens are laid out for, in columns; below it (or below
/// [`MIN_HEIGHT`]) only a "terminal too small" notice is drawn.
pub(crate) const MIN_WIDTH: u16 = 60;

/// The shortest terminal the screens are laid out for, in rows.
pub(crate) const MIN_HEIGHT: u16 = 15;

/// Where everything goes, for drawing and for mouse hit-testing alike.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Areas {
    /// The top row: the tab titles.
    pub(crate) tabs: Rect,
    /// Everything between the tab row and the status line (a tab's screen, dialogs).
    pub(crate) body: Rect,
    /// The bottom row: the status line or the keys of the tab.
    pub(crate) status: Rect,
    /// The PKI tab's tree pane (the left two fifths of the body, at least 28 columns).
    pub(crate) tree: Rect,
    /// The PKI tab's details pane (the rest of the body).
    pub(crate) details: Rect,
}

/// The layout for a terminal of (columns, rows).
pub(crate) fn areas((w, h): (u16, u16)) -> Areas {
    let full = Rect::new(0, 0, w, h);
    let [tabs, body, status] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(full);
    let tree_w = (w * 2 / 5).max(28).min(w);
    let [tree, details] =
        Layout::horizontal([Constraint::Length(tree_w), Constraint::Min(0)]).areas(body);
    Areas {
        tabs,
        body,
        status,
        tree,
        details,
    }
}

/// The columns each tab title covers on the top row.
pub fn tab_ranges() -> Vec<(Tab, Range<u16>)> {
    let mut x = 0u16;
    Tab::ALL
        .iter()
        .map(|t| {
            let w = t.title().chars().count() as u16 + 2;
            let r = x..x + w;
            x += w + 1;
            (*t, r)
        })
        .collect()
}
