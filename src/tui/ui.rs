//! Drawing: a pure function of [`App`], generic over the backend (tests use `TestBackend`).
//! No file or network I/O happens here.

use super::app::{App, KEYMAP, Level, Tab};
use super::dialog;
use super::theme::Theme;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};
use std::ops::Range;

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

/// Draw the whole screen for `app`'s state; text that would drive the terminal (control or
/// bidi characters) is shown escaped.
pub fn render(f: &mut Frame, app: &App) {
    draw(f, app);
    escape_cells(f.buffer_mut());
}

/// The last word before a frame reaches the terminal. Screens escape certificate and peer text
/// where it becomes a span (so widths are right); a cell that still holds a control or bidi
/// character (text a screen did not escape) shows it escaped instead of the terminal obeying it.
fn escape_cells(buf: &mut ratatui::buffer::Buffer) {
    for cell in buf.content.iter_mut() {
        if cell.symbol().chars().any(crate::text::is_unsafe) {
            let shown = crate::text::escape_controls(cell.symbol()).into_owned();
            cell.set_symbol(&shown);
        }
    }
}

fn draw(f: &mut Frame, app: &App) {
    let area = f.area();
    let t = app.theme;
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let msg = vec![
            Line::styled("terminal too small", t.bad()),
            Line::raw(format!(
                "{}×{} here; chainsmith needs at least {MIN_WIDTH}×{MIN_HEIGHT}.",
                area.width, area.height
            )),
            Line::raw("Enlarge the window, or press q to quit."),
        ];
        f.render_widget(Paragraph::new(msg).wrap(Wrap { trim: true }), area);
        return;
    }
    let a = areas((area.width, area.height));

    let mut spans = Vec::new();
    for (i, tab) in Tab::ALL.iter().enumerate() {
        if i > 0 {
            spans.push(Span::styled("│", t.dim()));
        }
        let style = if *tab == app.tab {
            t.selected().add_modifier(ratatui::style::Modifier::BOLD)
        } else {
            t.dim()
        };
        spans.push(Span::styled(format!(" {} ", tab.title()), style));
    }
    spans.push(Span::styled("  chainsmith · ? help", t.dim()));
    f.render_widget(Paragraph::new(Line::from(spans)), a.tabs);

    match app.tab {
        Tab::Pki => {
            super::pki::render_tree(f, a.tree, &app.pki, app.theme, app.spinner);
            super::pki::render_details(f, a.details, &app.pki, app.theme, app.spinner, app.now);
        }
        Tab::Hub => super::hub::render(f, a.body, &app.hub, app.theme),
        Tab::Connect if app.fleet.shown => {
            // The fleet speaks MQTT over TLS only: say so where another Protocol is chosen.
            let target = match app.connect.transport {
                crate::mqtt::Transport::Mqtt => app.connect.target.label(),
                other => format!(
                    "{} over mqtt (the fleet's only protocol; {} is for the single test)",
                    app.connect.target.label(),
                    other.as_str()
                ),
            };
            super::fleet::render(f, a.body, &app.fleet, &target, app.theme)
        }
        Tab::Connect => super::connect::render(f, a.body, &app.connect, app.theme, app.spinner),
        Tab::Guide => super::guide::render(
            f,
            a.body,
            &app.guide,
            &app.pki,
            &app.guide_facts(),
            app.theme,
        ),
    }

    let status = match &app.status {
        Some((level, text)) => {
            let (sym, style) = match level {
                Level::Info => ("·", t.dim()),
                Level::Ok => ("✓", t.ok()),
                Level::Warn => ("!", t.warn()),
                Level::Error => ("✗", t.bad()),
            };
            Line::from(vec![
                Span::styled(format!("{sym} "), style),
                Span::raw(text.clone()),
            ])
        }
        // A dialog or the filter takes the keys: the tab's keys do nothing meanwhile.
        None if app.dialog.is_some() => Line::styled(
            "the dialog lists its keys · Esc closes it · Ctrl-C quits",
            t.dim(),
        ),
        None if app.pki.filtering && app.tab == Tab::Pki => Line::styled(
            "type to filter · Enter keeps it · Esc clears it · ↑↓ move",
            t.dim(),
        ),
        None => {
            let mut text = format!("{} · ? help · q quit", footer_keys(app.tab));
            if app.tab == Tab::Pki {
                let took = app
                    .pki
                    .load_took
                    .map(|d| format!(" · read in {} ms", d.as_millis()))
                    .unwrap_or_default();
                text.push_str(&format!(
                    " · {} entities{took} · {}",
                    app.pki.rows.len(),
                    app.ws_root.display()
                ));
            }
            Line::styled(text, t.dim())
        }
    };
    f.render_widget(Paragraph::new(status), a.status);

    if let Some(d) = &app.dialog {
        dialog::render(f, a.body, d, app.theme, app.spinner);
    }
    if app.help {
        render_help(f, area, app.help_scroll, app.theme);
    }
}

/// The keys that act on `tab` (the footer names no key that does nothing there).
fn footer_keys(tab: Tab) -> &'static str {
    match tab {
        Tab::Pki => "n new · v verify · e export · c connect · d delete · / filter",
        Tab::Hub => {
            "s start/stop · p port · v V prove hub/DPS · a register · o on/off · G DPS group · e enroll"
        }
        Tab::Connect => "Enter run · t target · f fleet",
        Tab::Guide => "↑↓ step · J K scroll · y copy · t track",
    }
}

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

/// Greedy word wrap for prose and commands: breaks at whitespace and keeps every word whole
/// (a word longer than the width gets a line of its own, so a path stays one piece to copy).
pub(crate) fn wrap_whole_words(text: &str, width: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let w = word.chars().count();
        if !line.is_empty() && line.chars().count() + 1 + w > width {
            out.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() || out.is_empty() {
        out.push(line);
    }
    out
}

/// Wrap for certificate values: never wider than `width` columns (at least 8), broken at
/// spaces where it can and anywhere in a longer word (a hex serial, a key); every space is
/// kept, since two spaces in a certificate's text are not one.
pub(crate) fn wrap_cutting_words(text: &str, width: usize) -> Vec<String> {
    let width = width.max(8);
    let mut lines = vec![String::new()];
    for word in text.split(' ') {
        let cur = lines.last_mut().expect("one line");
        let cur_len = cur.chars().count();
        let wlen = word.chars().count();
        if cur_len > 0 && cur_len + 1 + wlen <= width {
            cur.push(' ');
            cur.push_str(word);
            continue;
        }
        if cur_len > 0 {
            lines.push(String::new());
        }
        let chars: Vec<char> = word.chars().collect();
        for (i, chunk) in chars.chunks(width).enumerate() {
            if i > 0 {
                lines.push(String::new());
            }
            lines.last_mut().expect("one line").extend(chunk);
        }
    }
    lines
}

/// Word wrap with a hanging indent: lines after the first start with `indent` spaces.
pub(crate) fn wrap_hanging(text: &str, width: usize, indent: usize) -> Vec<String> {
    let width = width.max(indent + 10);
    let mut out: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let lead = if out.is_empty() { 0 } else { indent };
        if !line.is_empty() && lead + line.chars().count() + 1 + word.chars().count() > width {
            out.push(format!("{}{line}", " ".repeat(lead)));
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    let lead = if out.is_empty() { 0 } else { indent };
    out.push(format!("{}{line}", " ".repeat(lead)));
    out
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
fn render_help(f: &mut Frame, area: Rect, scroll: u16, t: Theme) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::buffer::Buffer;

    /// Prose keeps a long word whole on its own line; a certificate value is cut to the width
    /// and keeps its spaces.
    #[test]
    fn whole_words_for_prose_cut_words_for_certificate_values() {
        let text = "serial 0123456789ABCDEF0123 end";
        assert_eq!(
            wrap_whole_words(text, 10),
            vec!["serial", "0123456789ABCDEF0123", "end"]
        );
        assert_eq!(
            wrap_cutting_words(text, 10),
            vec!["serial", "0123456789", "ABCDEF0123", "end"]
        );
        assert_eq!(
            wrap_cutting_words("ECDSA P-256 (256 bits), signed ecdsa-with-SHA256", 24),
            vec!["ECDSA P-256 (256 bits),", "signed ecdsa-with-SHA256"]
        );
        assert_eq!(wrap_whole_words("a  b\nc", 10), vec!["a b c"]);
        assert_eq!(wrap_cutting_words("CN=a  b", 10), vec!["CN=a  b"]);
        assert_eq!(wrap_cutting_words("", 10), vec![""]);
        assert_eq!(wrap_whole_words("", 10), vec![""]);
    }
    use ratatui::widgets::Widget;

    /// Text a screen forgot to escape: a span renders controls into cells as they are (ratatui
    /// filters them only in `set_string`); the last pass shows them escaped.
    #[test]
    fn cells_holding_controls_are_escaped() {
        let mut buf = Buffer::empty(Rect::new(0, 0, 40, 1));
        Line::raw("a\x1b]0;t\x07\u{9b}\u{202e}é").render(buf.area, &mut buf);
        assert!(buf.content.iter().any(|c| c.symbol().contains('\x1b')));
        escape_cells(&mut buf);
        let shown: String = buf.content.iter().map(|c| c.symbol()).collect();
        assert!(!shown.chars().any(crate::text::is_unsafe), "{shown:?}");
        assert!(shown.starts_with("a\\e]0;t\\a"), "{shown:?}");
        assert!(shown.contains('é'), "{shown:?}");
    }
}
