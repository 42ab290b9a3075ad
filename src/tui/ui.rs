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
        None if app.hub.filtering && app.tab == Tab::Hub => Line::styled(
            "type part of a device id · Enter keeps it · Esc clears it",
            t.dim(),
        ),
        None if app.fleet.editing && app.tab == Tab::Connect => Line::styled(
            "type device ids or ranges, spaces between · Enter runs · Esc keeps them",
            t.dim(),
        ),
        None => Line::styled(footer(app, a.status.width as usize), t.dim()),
    };
    f.render_widget(Paragraph::new(status), a.status);

    if let Some(d) = &app.dialog {
        dialog::render(f, a.body, d, app.theme, app.spinner);
    }
    if app.help {
        render_help(f, area, app.help_scroll, app.theme);
    }
}

/// One key of a footer: the keys, what they do, and the same in a word for narrow terminals.
type FooterKey = (&'static str, &'static str, &'static str);

/// The keys that act on the screen shown (the footer names no key that does nothing there).
fn footer_keys(app: &App) -> &'static [FooterKey] {
    match app.tab {
        Tab::Pki => &[
            ("n", "new", "new"),
            ("v", "verify", "verify"),
            ("e", "export", "export"),
            ("c", "connect", "connect"),
            ("d", "delete", "delete"),
            ("/", "filter", "filter"),
        ],
        Tab::Hub => &[
            ("s", "start/stop", "hub"),
            ("p", "port", "port"),
            ("v V", "prove hub/DPS", "prove"),
            ("a", "register", "add"),
            ("o", "on/off", "on/off"),
            ("G", "DPS group", "group"),
            ("e", "enroll", "enroll"),
        ],
        Tab::Connect if app.fleet.shown => &[
            ("r", "type devices", "devices"),
            ("Enter", "run", "run"),
            ("s", "stop", "stop"),
            ("f", "single test", "single"),
        ],
        Tab::Connect => &[
            ("Enter", "run", "run"),
            ("t", "target", "target"),
            ("f", "fleet", "fleet"),
        ],
        Tab::Guide => &[
            ("↑↓", "step", "step"),
            ("J K", "scroll", "scroll"),
            ("y", "copy", "copy"),
            ("t", "track", "track"),
        ],
    }
}

/// The footer for a terminal `width` columns wide: the screen's keys, `?` and `q`, and on
/// the PKI tab the workspace (the tree's title counts the entities). Every key is always
/// named: where its words do not fit, shorter ones are used, then the keys alone. The
/// workspace path is shown whole where it fits beside the words (the read time gives way
/// first), else shortened from the left (`…/share/chainsmith`), never cut at its end.
fn footer(app: &App, width: usize) -> String {
    let keys = footer_keys(app);
    let words = |tier: usize| -> String {
        let sep = if tier == 0 { " · " } else { "  " };
        let mut text = keys
            .iter()
            .map(|(k, long, short)| match tier {
                0 => format!("{k} {long}"),
                1 => format!("{k} {short}"),
                _ => k.to_string(),
            })
            .collect::<Vec<_>>()
            .join(sep);
        text.push_str(" · ? help · q quit");
        text
    };
    let fits = |s: &String| s.chars().count() <= width;
    let keys_only = || (0..3).map(words).find(fits).unwrap_or_else(|| words(2));
    if app.tab != Tab::Pki {
        return keys_only();
    }
    let path = app.ws_root.display().to_string();
    let took = app
        .pki
        .load_took
        .map(|d| format!(" · read in {} ms", d.as_millis()))
        .unwrap_or_default();
    for tier in 0..2 {
        for extra in [took.as_str(), ""] {
            let text = format!("{}{extra} · {path}", words(tier));
            if fits(&text) {
                return text;
            }
        }
    }
    // The shortest a path is worth showing: "…" and its last directory or two.
    const PATH_MIN: usize = 16;
    for tier in 0..2 {
        let head = words(tier);
        let room = width.saturating_sub(head.chars().count() + 3);
        if room >= PATH_MIN {
            return format!("{head} · {}", elide_left(&path, room));
        }
    }
    keys_only()
}

/// `text` cut to `width` columns from the left, marked with "…": the end of a path is the
/// part that names it.
pub(crate) fn elide_left(text: &str, width: usize) -> String {
    let n = text.chars().count();
    if n <= width {
        return text.to_string();
    }
    let keep: String = text.chars().skip(n - width.saturating_sub(1)).collect();
    format!("…{keep}")
}

/// `text` cut to `width` columns from the right, marked with "…".
pub(crate) fn elide_right(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let keep: String = text.chars().take(width.saturating_sub(1)).collect();
    format!("{keep}…")
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

/// Word wrap with a hanging indent: lines after the first start with `indent` spaces. The
/// spaces inside a line are kept as they are (a step list pads its names into a column),
/// except where a line breaks.
pub(crate) fn wrap_hanging(text: &str, width: usize, indent: usize) -> Vec<String> {
    let width = width.max(indent + 10);
    let mut out: Vec<String> = Vec::new();
    let mut line = String::new();
    for token in words_with_spaces(text) {
        let lead = if out.is_empty() { 0 } else { indent };
        let word = token.trim_end().chars().count();
        if !line.trim().is_empty() && lead + line.chars().count() + word > width {
            out.push(format!("{}{}", " ".repeat(lead), line.trim_end()));
            line.clear();
        }
        if line.is_empty() && !out.is_empty() {
            line.push_str(token.trim_start());
        } else {
            line.push_str(&token);
        }
    }
    let lead = if out.is_empty() { 0 } else { indent };
    out.push(format!("{}{}", " ".repeat(lead), line.trim_end()));
    out
}

/// `text` as words, each with the spaces that follow it (other whitespace shown as spaces);
/// spaces before the first word make a token of their own.
fn words_with_spaces(text: &str) -> Vec<String> {
    let mut tokens: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut in_space = false;
    for c in text.chars() {
        let space = c.is_whitespace();
        if !space && in_space && !cur.is_empty() {
            tokens.push(std::mem::take(&mut cur));
        }
        in_space = space;
        cur.push(if space { ' ' } else { c });
    }
    if !cur.is_empty() {
        tokens.push(cur);
    }
    tokens
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

    /// Text a screen forgot to escape, in cells as a widget may leave it (ratatui 0.30 drops
    /// controls from spans, but a cell's symbol is set by any widget, as is): the last pass
    /// shows them escaped.
    #[test]
    fn cells_holding_controls_are_escaped() {
        let mut buf = Buffer::empty(Rect::new(0, 0, 40, 1));
        Line::raw("a").render(buf.area, &mut buf);
        for (x, sym) in [
            "\x1b", "]", "0", ";", "t", "\x07", "\u{9b}", "\u{202e}", "é",
        ]
        .iter()
        .enumerate()
        {
            buf[(1 + x as u16, 0)].set_symbol(sym);
        }
        assert!(buf.content.iter().any(|c| c.symbol().contains('\x1b')));
        escape_cells(&mut buf);
        let shown: String = buf.content.iter().map(|c| c.symbol()).collect();
        assert!(!shown.chars().any(crate::text::is_unsafe), "{shown:?}");
        assert!(shown.starts_with("a\\e]0;t\\a"), "{shown:?}");
        assert!(shown.contains('é'), "{shown:?}");
    }
}
