//! The key help overlay (`?`): every key, where it works and what it does, scrolled when the
//! terminal is short. A leaf under the app: it knows no tab.

use super::dialog;
use super::theme::Theme;
use super::widgets::wrap_whole_words;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};

/// One key of a footer: the keys, what they do, and the same in a word for narrow terminals.
pub(crate) type FooterKey = (&'static str, &'static str, &'static str);

/// Every key, for the help overlay and the docs: (where it works, the keys, what they do).
pub const KEYMAP: &[(&str, &str, &str)] = &[
    (
        "anywhere",
        "1 2 3 4",
        "tab: PKI, Hub, Connect, Guide (or click it)",
    ),
    ("anywhere", "g  ?", "guided workshop (tab 4), this help"),
    (
        "anywhere",
        "q  Ctrl-C",
        "quit (q asks while a hub or test runs)",
    ),
    (
        "PKI",
        "↑ ↓ j k PgUp PgDn",
        "move / page in the tree (Home End, wheel, click)",
    ),
    ("PKI", "J K", "scroll the details (wheel over them too)"),
    ("PKI", "/", "filter by name or CN (Enter keeps, Esc clears)"),
    ("PKI", "n", "new root / intermediate / device / self-signed"),
    ("PKI", "v", "verification certificate for a hub's code"),
    (
        "PKI",
        "d  c",
        "delete (asks first), connection test of a device",
    ),
    (
        "PKI",
        "e",
        "export: formats, PFX password (masked), directory",
    ),
    (
        "PKI",
        "i  r  x",
        "import, renew, revoke (Azure ignores CRLs)",
    ),
    (
        "forms",
        "Tab ↑ ↓ ← → Space",
        "field, choice, toggle a format",
    ),
    ("forms", "Enter  Esc", "run / cancel"),
    (
        "verify",
        "y",
        "copy the PEM (OSC 52); the file path is shown",
    ),
    (
        "Hub",
        "s  p  a  o  c",
        "hub start/stop, port; register, on/off; Azure|AWS",
    ),
    (
        "Hub",
        "v  V",
        "prove the PKI-selected CA to the hub / to DPS",
    ),
    (
        "Hub",
        "G  e",
        "DPS group from the PKI CA, enroll the PKI device",
    ),
    (
        "Hub",
        "↑ ↓ PgUp PgDn  /",
        "scroll the device list, filter it by id",
    ),
    (
        "Connect",
        "Enter  t  f",
        "run the test, type the target, fleet view",
    ),
    (
        "Fleet",
        "r Enter  s  f",
        "type devices and run them, stop, single test",
    ),
    ("Guide", "↑ ↓  J K", "pick a step, scroll its text"),
    (
        "Guide",
        "y  Y  t",
        "copy the step's commands (OSC 52), switch track",
    ),
];

/// Columns of the help overlay before the description: the scope, then the keys.
const HELP_SCOPE: usize = 9;

const HELP_KEYS: usize = 19;

/// The help box for a terminal of `size`: its rectangle and its inner text width.
fn help_box((w, h): (u16, u16)) -> (Rect, usize) {
    let area = Rect::new(0, 0, w, h);
    let rows = help_rows(96.min(w).saturating_sub(2) as usize).len() as u16;
    let r = dialog::centered(area, 96.min(w), (rows + 2).min(h));
    (r, r.width.saturating_sub(2) as usize)
}

/// Every key as overlay rows (scope, keys, one line of the description), the descriptions
/// wrapped at word boundaries to the width left for them.
fn help_rows(inner: usize) -> Vec<(String, String, String)> {
    let desc_w = inner.saturating_sub(HELP_SCOPE + HELP_KEYS).max(10);
    let mut rows = Vec::new();
    let mut last = "";
    for (scope, keys, what) in KEYMAP {
        let shown = if *scope != last { *scope } else { "" };
        last = scope;
        for (i, part) in wrap_whole_words(what, desc_w).into_iter().enumerate() {
            let (s, k) = if i == 0 { (shown, *keys) } else { ("", "") };
            rows.push((s.to_string(), k.to_string(), part));
        }
    }
    rows
}

/// How many help rows fit at once.
pub(crate) fn help_page(size: (u16, u16)) -> u16 {
    help_box(size).0.height.saturating_sub(2).max(1)
}

/// The last first-row the help can scroll to.
pub(crate) fn help_max_scroll(size: (u16, u16)) -> u16 {
    let (_, inner) = help_box(size);
    (help_rows(inner).len() as u16).saturating_sub(help_page(size))
}

/// The key help overlay (`?`), scrolled to row `scroll` when the terminal is too short.
pub(crate) fn render_help(f: &mut Frame, area: Rect, scroll: u16, t: Theme) {
    let (r, inner) = help_box((area.width, area.height));
    let rows = help_rows(inner);
    let page = help_page((area.width, area.height));
    let first = scroll.min(help_max_scroll((area.width, area.height)));
    let lines: Vec<Line> = rows
        .iter()
        .skip(first as usize)
        .take(page as usize)
        .map(|(scope, keys, what)| {
            Line::from(vec![
                Span::styled(format!("{scope:<HELP_SCOPE$}"), t.title()),
                Span::styled(format!("{keys:<HELP_KEYS$}"), t.key()),
                Span::raw(what.clone()),
            ])
        })
        .collect();
    let title = if rows.len() <= page as usize {
        " Keys (any key closes) ".to_string()
    } else {
        format!(
            " Keys {}–{} of {} · ↑↓ PgDn scroll · other keys close ",
            first + 1,
            (first + page).min(rows.len() as u16),
            rows.len()
        )
    };
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title(Span::styled(title, t.title())),
        ),
        r,
    );
}
