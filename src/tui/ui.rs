//! Drawing: a pure function of [`App`], generic over the backend (tests use `TestBackend`).
//! No file or network I/O happens here.

use super::app::App;
use super::dialog;
use super::help::{FooterKey, render_help};
pub use super::layout::tab_ranges;
use super::layout::{MIN_HEIGHT, MIN_WIDTH, Tab, areas};
use super::theme::Level;
use super::widgets::elide_left;
use ratatui::Frame;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

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
        Tab::Connect if app.fleet.shown => super::fleet::render(
            f,
            a.body,
            &app.fleet,
            &app.connect.target,
            app.connect.transport,
            app.theme,
        ),
        Tab::Connect => super::connect::render(f, a.body, &app.connect, app.theme, app.spinner),
        Tab::Guide => super::guide::render(
            f,
            a.body,
            &app.guide,
            &app.pki.rows,
            app.pki.loaded,
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

/// The keys that act on the screen shown (the footer names no key that does nothing there).
fn footer_keys(app: &App) -> &'static [FooterKey] {
    match app.tab {
        Tab::Pki => super::pki::FOOTER_KEYS,
        Tab::Hub if app.hub.cloud == super::hub::Cloud::Aws => super::hub::AWS_FOOTER_KEYS,
        Tab::Hub => super::hub::FOOTER_KEYS,
        Tab::Connect if app.fleet.shown => super::fleet::FOOTER_KEYS,
        Tab::Connect => super::connect::FOOTER_KEYS,
        Tab::Guide => super::guide::FOOTER_KEYS,
    }
}

/// The footer for a terminal `width` columns wide: the screen's keys, `?` and `q`, and on
/// the PKI tab the workspace (the tree's title counts the entities). Every key is always
/// named: where its words do not fit, shorter ones are used, then the keys alone. The
/// workspace path is shown whole where it fits beside the words (the read time gives way
/// first), else shortened from the left (`…/share/chainsmith`), never cut at its end.
fn footer(app: &App, width: usize) -> String {
    let keys = footer_keys(app);
    // Long words, short words, short words closer together (the Hub tab's nine keys at 80
    // columns), keys alone.
    let words = |tier: usize| -> String {
        let sep = match tier {
            0 => " · ",
            2 => " ",
            _ => "  ",
        };
        let mut text = keys
            .iter()
            .map(|(k, long, short)| match tier {
                0 => format!("{k} {long}"),
                1 | 2 => format!("{k} {short}"),
                _ => k.to_string(),
            })
            .collect::<Vec<_>>()
            .join(sep);
        text.push_str(" · ? help · q quit");
        text
    };
    let fits = |s: &String| s.chars().count() <= width;
    let keys_only = || (0..4).map(words).find(fits).unwrap_or_else(|| words(3));
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

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::buffer::Buffer;
    use ratatui::layout::Rect;

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
