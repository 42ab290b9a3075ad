//! The PKI tab: the hierarchy on the left, the selected entity's report on the right.
//!
//! The list can hold 100,000 rows: it is read in the background, filtered into a vector of
//! indices, and only the rows in view are turned into text. Reports come from `ops::report`
//! in the background, one at a time (the newest selection replaces a queued one), and are cached.

use super::command::Command;
use super::dialog::{Dialog, NewForm, NewKind, VerifyDialog};
use super::forms::Form;
use super::help::FooterKey;
use super::request::Request;
use super::theme::{Theme, kind_symbol};
use crate::ops::{Report, TreeRow};
use crate::store::Kind;
use crossterm::event::{KeyCode, KeyEvent};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;
use time::OffsetDateTime;

/// The keys the footer names on the PKI tab: (keys, what they do, the same in a word).
pub(crate) const FOOTER_KEYS: &[FooterKey] = &[
    ("n", "new", "new"),
    ("v", "verify", "verify"),
    ("e", "export", "export"),
    ("c", "connect", "connect"),
    ("d", "delete", "delete"),
    ("/", "filter", "filter"),
];

/// Reports kept in memory; the cache is cleared when it grows past this.
const REPORT_CACHE: usize = 256;

/// What the PKI tab shows and remembers: the whole tree, the filter, the selection and the
/// reports already built.
#[derive(Debug, Default)]
pub struct PkiState {
    /// Every entity in tree order (issuers before what they issued).
    pub rows: Vec<TreeRow>,
    /// The first read finished (until then the tree shows a spinner).
    pub(crate) loaded: bool,
    /// Why the workspace could not be read, shown in the tree pane.
    pub(crate) load_error: Option<String>,
    /// How long the last read took, shown in the footer.
    pub load_took: Option<Duration>,
    /// How many entities the last read skipped because their files could not be read.
    pub(crate) damaged: usize,
    /// Indices into `rows` that pass the filter, in tree order.
    pub visible: Vec<usize>,
    /// Index into `visible`.
    pub selected: usize,
    /// First row of `visible` shown in the tree pane.
    pub offset: usize,
    /// The filter text (`/`): a case-insensitive part of a name or CN.
    pub(crate) filter: String,
    /// The filter is being typed: keys go to it.
    pub filtering: bool,
    /// The entity selected when `/` was pressed: Esc on the filter goes back to it.
    pub(crate) before_filter: Option<String>,
    /// Reports by entity name (or why one could not be made), at most 256 (then
    /// cleared to make room).
    pub reports: HashMap<String, Result<Box<Report>, String>>,
    /// The entity whose report is being built.
    pub report_inflight: Option<String>,
    /// The entity whose report is wanted next (only the newest wish is kept).
    pub report_queued: Option<String>,
    /// First line of the details pane shown (`J`/`K`, the wheel).
    pub detail_scroll: u16,
    /// After a change, select this entity once the list is read again.
    pub(crate) reselect: Option<String>,
}

impl PkiState {
    /// The selected entity's row (None when the tree is empty or nothing matches the filter).
    pub(crate) fn selected_row(&self) -> Option<&TreeRow> {
        self.visible
            .get(self.selected)
            .and_then(|&i| self.rows.get(i))
    }

    /// The selected entity's name.
    pub fn selected_name(&self) -> Option<String> {
        self.selected_row().map(|r| r.meta.name.clone())
    }

    /// A new read of the workspace: the selection stays on the same entity (or moves to
    /// `reselect`), the reports are built again.
    pub(crate) fn set_rows(&mut self, rows: Vec<TreeRow>) {
        let keep = self.reselect.take().or_else(|| self.selected_name());
        self.rows = rows;
        self.loaded = true;
        self.reports.clear();
        self.apply_filter();
        if let Some(name) = keep {
            self.select_name(&name);
        }
    }

    /// Select the entity `name` when it is in view of the filter (else the selection stays).
    pub(crate) fn select_name(&mut self, name: &str) {
        if let Some(pos) = self
            .visible
            .iter()
            .position(|&i| self.rows[i].meta.name == name)
        {
            self.selected = pos;
        }
    }

    /// Recompute `visible` from the filter (case-insensitive, on name and CN).
    pub(crate) fn apply_filter(&mut self) {
        let keep = self.selected_name();
        let needle = self.filter.to_lowercase();
        self.visible = if needle.is_empty() {
            (0..self.rows.len()).collect()
        } else {
            self.rows
                .iter()
                .enumerate()
                .filter(|(_, r)| {
                    r.meta.name.to_lowercase().contains(&needle)
                        || r.meta.cn.to_lowercase().contains(&needle)
                })
                .map(|(i, _)| i)
                .collect()
        };
        // The selected entity stays selected while it matches; else the first match is.
        self.selected = keep
            .and_then(|name| {
                self.visible
                    .iter()
                    .position(|&i| self.rows[i].meta.name == name)
            })
            .unwrap_or(0);
        self.offset = self.offset.min(self.selected);
    }

    /// Move the selection by `delta` rows and keep it inside a pane `height` rows tall.
    pub(crate) fn move_by(&mut self, delta: isize, height: usize) {
        if self.visible.is_empty() {
            return;
        }
        let last = self.visible.len() - 1;
        self.selected = (self.selected as isize + delta).clamp(0, last as isize) as usize;
        self.scroll_into_view(height);
        self.detail_scroll = 0;
    }

    /// Scroll the tree pane (`height` rows tall) so the selection is in view.
    /// The offset is also pulled back so the pane is full: after a filter shrinks the list,
    /// an offset from the long list would leave the matches above the pane.
    pub(crate) fn scroll_into_view(&mut self, height: usize) {
        let height = height.max(1);
        self.offset = self.offset.min(self.visible.len().saturating_sub(height));
        if self.selected < self.offset {
            self.offset = self.selected;
        } else if self.selected >= self.offset + height {
            self.offset = self.selected + 1 - height;
        }
    }

    /// The report job to start for the selection, if any: one in flight at a time, the newest
    /// wish replaces a queued one.
    pub fn want_report(&mut self) -> Option<String> {
        let name = self.selected_name()?;
        if self.reports.contains_key(&name) {
            return None;
        }
        if self.report_inflight.is_some() {
            if self.report_inflight.as_deref() != Some(name.as_str()) {
                self.report_queued = Some(name);
            }
            return None;
        }
        self.report_inflight = Some(name.clone());
        Some(name)
    }

    /// A report arrived; returns the next one to load, if the selection moved meanwhile.
    pub(crate) fn report_loaded(
        &mut self,
        name: String,
        report: Result<Box<Report>, String>,
    ) -> Option<String> {
        if self.reports.len() >= REPORT_CACHE {
            self.reports.clear();
        }
        self.reports.insert(name, report);
        self.report_inflight = None;
        self.report_queued = None;
        self.want_report()
    }

    /// How many certificates in the tree `name` issued (the delete dialog warns about them).
    pub(crate) fn children_of(&self, name: &str) -> usize {
        self.rows
            .iter()
            .filter(|r| r.meta.issuer.as_deref() == Some(name))
            .count()
    }
}

/// What the PKI tab's keys need from the app besides the tab's own state.
pub(crate) struct PkiKeyContext<'a> {
    /// Rows of the tree pane in view (paging and keeping the selection visible).
    pub(crate) height: usize,
    /// The app's clock: the "new" form checks validity from it.
    pub(crate) now: OffsetDateTime,
    /// The workspace directory: the export form writes under it by default.
    pub(crate) ws_root: &'a Path,
}

impl PkiState {
    /// The filter (`/`) is being typed: every key goes to it, even `q` and the tab keys.
    pub(crate) fn takes_every_key(&self) -> bool {
        self.filtering
    }

    /// A key on the PKI tab: the filter while it is typed, else move, scroll, and the keys
    /// that open a dialog (`n v d i e r x`) or test a device (`c`).
    pub(crate) fn key(&mut self, k: KeyEvent, cx: &PkiKeyContext) -> Option<Request> {
        if self.filtering {
            return self.filter_key(k, cx);
        }
        let h = cx.height;
        let page = h.max(1) as isize;
        match k.code {
            KeyCode::Up | KeyCode::Char('k') => self.move_by(-1, h),
            KeyCode::Down | KeyCode::Char('j') => self.move_by(1, h),
            KeyCode::PageUp => self.move_by(-page, h),
            KeyCode::PageDown => self.move_by(page, h),
            KeyCode::Home => self.move_by(isize::MIN / 2, h),
            KeyCode::End => self.move_by(isize::MAX / 2, h),
            KeyCode::Char('J') => self.detail_scroll = self.detail_scroll.saturating_add(1),
            KeyCode::Char('K') => self.detail_scroll = self.detail_scroll.saturating_sub(1),
            KeyCode::Char('/') => {
                self.filtering = true;
                self.before_filter = self.selected_name();
                return None;
            }
            KeyCode::Esc if !self.filter.is_empty() => {
                self.filter.clear();
                self.apply_filter();
            }
            KeyCode::Char('n') => {
                let cas = self.issuing_cas();
                let sel = self
                    .selected_row()
                    .filter(|r| r.meta.kind.is_ca())
                    .map(|r| r.meta.name.clone());
                let kind = if cas.is_empty() {
                    NewKind::Root
                } else if sel.is_some() {
                    NewKind::Device
                } else {
                    NewKind::Root
                };
                let form = NewForm::new(kind, cas, sel.as_deref(), cx.now);
                return Some(Request::Open(Dialog::New(form)));
            }
            KeyCode::Char('v') => {
                return Some(match self.selected_row() {
                    Some(r) if r.meta.kind.is_ca() && r.meta.has_key => {
                        Request::Open(Dialog::Verify(VerifyDialog::new(r.meta.name.clone())))
                    }
                    Some(r) => Request::warn(format!(
                        "v makes a verification certificate for a CA; \"{}\" is a {}{}: select a root or intermediate with its key",
                        r.meta.name,
                        r.meta.kind.as_str(),
                        if r.meta.kind.is_ca() {
                            " without its private key"
                        } else {
                            ""
                        }
                    )),
                    None => Request::warn("select a CA first (make one with n)"),
                });
            }
            KeyCode::Char('d') => {
                let name = self.selected_name()?;
                let children = self.children_of(&name);
                return Some(Request::Open(Dialog::ConfirmDelete { name, children }));
            }
            KeyCode::Char('c') => {
                return Some(match self.selected_row() {
                    Some(r) if r.meta.kind == Kind::Device => Request::Test(r.meta.name.clone()),
                    _ => Request::warn("c connects a device: select a device first"),
                });
            }
            KeyCode::Char('i') => return Some(Request::Open(Dialog::Form(Form::import()))),
            KeyCode::Char(c @ ('e' | 'r' | 'x')) => {
                return Some(match self.selected_name() {
                    Some(name) => Request::Open(Dialog::Form(match c {
                        'e' => Form::export(&name, cx.ws_root),
                        'r' => Form::renew(&name),
                        _ => Form::revoke(&name),
                    })),
                    None => Request::warn("select a certificate first"),
                });
            }
            _ => return None,
        }
        self.want_report()
            .map(|n| Request::Run(Command::LoadReport(n)))
    }

    /// A key while the filter is typed: Enter keeps it, Esc undoes it, ↑↓ leave it and move.
    fn filter_key(&mut self, k: KeyEvent, cx: &PkiKeyContext) -> Option<Request> {
        match k.code {
            KeyCode::Esc => {
                self.filtering = false;
                self.filter.clear();
                self.apply_filter();
                // Esc undoes the filter: the selection goes back where it was before `/`.
                if let Some(name) = self.before_filter.take() {
                    self.select_name(&name);
                }
            }
            KeyCode::Enter => {
                self.filtering = false;
                self.before_filter = None;
            }
            KeyCode::Backspace => {
                self.filter.pop();
            }
            KeyCode::Char(c) => self.filter.push(c),
            KeyCode::Up | KeyCode::Down => {
                self.filtering = false;
                return self.key(k, cx);
            }
            _ => return None,
        }
        self.apply_filter();
        self.scroll_into_view(cx.height);
        self.want_report()
            .map(|n| Request::Run(Command::LoadReport(n)))
    }

    /// Text pasted while the filter is typed joins it.
    pub(crate) fn paste_filter(&mut self, text: &str, height: usize) {
        self.filter.push_str(text.trim());
        self.apply_filter();
        self.scroll_into_view(height);
    }

    /// CAs that can issue: roots and intermediates with their key.
    fn issuing_cas(&self) -> Vec<String> {
        self.rows
            .iter()
            .filter(|r| r.meta.kind.is_ca() && r.meta.has_key)
            .map(|r| r.meta.name.clone())
            .collect()
    }

    /// A click on row `row` of the tree (0 = the first row in view) selects it.
    pub(crate) fn click_row(&mut self, row: usize) -> Option<Request> {
        let pos = self.offset + row;
        if pos >= self.visible.len() {
            return None;
        }
        self.selected = pos;
        self.detail_scroll = 0;
        self.want_report()
            .map(|n| Request::Run(Command::LoadReport(n)))
    }
}

/// The certificate tree of the PKI tab; `spinner` is the frame counter of the busy spinner.
/// Only the rows in view are formatted.
pub(crate) fn render_tree(f: &mut Frame, area: Rect, p: &PkiState, t: Theme, spinner: usize) {
    let height = area.height.saturating_sub(2) as usize;
    let title = if p.filtering || !p.filter.is_empty() {
        format!(
            " Tree · filter /{}{} · {}/{} ",
            p.filter,
            if p.filtering { "▏" } else { "" },
            p.visible.len(),
            p.rows.len()
        )
    } else {
        format!(" Tree · {} ", p.rows.len())
    };
    let mut lines: Vec<Line> = Vec::with_capacity(height);
    if !p.loaded {
        let spin = super::theme::SPINNER[spinner % super::theme::SPINNER.len()];
        lines.push(Line::raw(format!("{spin} reading the workspace…")));
    } else if let Some(e) = &p.load_error {
        lines.push(Line::styled(format!("✗ {e}"), t.bad()));
    } else if p.rows.is_empty() {
        lines.push(Line::raw("The workspace is empty."));
        lines.push(Line::raw("Press n to make a root CA,"));
        lines.push(Line::raw("or g for the guided workshop."));
    } else if p.visible.is_empty() {
        lines.push(Line::raw(format!("nothing matches \"{}\"", p.filter)));
    }
    let width = area.width.saturating_sub(2) as usize;
    for (pos, &i) in p.visible.iter().enumerate().skip(p.offset).take(height) {
        let r = &p.rows[i];
        lines.push(tree_line(t, r, pos == p.selected, width));
    }
    let block = Block::default()
        .borders(Borders::ALL)
        .title(Span::styled(title, t.title()));
    f.render_widget(Paragraph::new(lines).block(block), area);
}

fn tree_line(t: Theme, r: &TreeRow, selected: bool, width: usize) -> Line<'static> {
    let indent = "  ".repeat(r.depth.min(8));
    let kind_style = match r.meta.kind {
        Kind::Verification => t.verification(),
        Kind::Root | Kind::Intermediate => t.accent(),
        Kind::Device => ratatui::style::Style::new(),
    };
    let (sym, style) = t.status(r.status);
    let mut spans = vec![
        Span::raw(indent),
        Span::styled(
            format!("{} ", kind_symbol(r.meta.kind, r.meta.self_signed)),
            kind_style,
        ),
        Span::raw(r.meta.name.clone()),
        Span::raw(" "),
        Span::styled(sym, style),
    ];
    if r.status != "valid" {
        spans.push(Span::styled(format!(" {}", r.status), style));
    }
    if r.meta.kind == Kind::Verification {
        spans.push(Span::styled(" verification", t.verification()));
    }
    let mut line = Line::from(spans);
    if selected {
        let used: usize = line.width();
        line.spans
            .push(Span::raw(" ".repeat(width.saturating_sub(used))));
        line = line.style(t.selected());
    }
    line
}

/// The details pane of the PKI tab for the selected entity, with days left counted from `now`.
pub(crate) fn render_details(
    f: &mut Frame,
    area: Rect,
    p: &PkiState,
    t: Theme,
    spinner: usize,
    now: OffsetDateTime,
) {
    let block = Block::default()
        .borders(Borders::ALL)
        .title(Span::styled(" Details ", t.title()));
    let lines = match p.selected_row() {
        None => vec![Line::raw("Nothing selected.")],
        Some(row) => match p.reports.get(&row.meta.name) {
            None => {
                let spin = super::theme::SPINNER[spinner % super::theme::SPINNER.len()];
                vec![Line::raw(format!("{spin} checking {}…", row.meta.name))]
            }
            Some(Err(e)) => vec![Line::styled(format!("✗ {e}"), t.bad())],
            Some(Ok(r)) => details_lines(t, r, now, area.width.saturating_sub(2)),
        },
    };
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .scroll((p.detail_scroll, 0))
            .block(block),
        area,
    );
}

/// A labelled value; continuation lines are indented under the value, not the label.
fn field(t: Theme, width: u16, name: &str, value: impl Into<String>) -> Vec<Line<'static>> {
    // Certificate text: escaped before wrapping, so the widths are those of what is shown.
    let value = crate::text::escape_controls(&value.into()).into_owned();
    super::widgets::wrap_cutting_words(&value, (width as usize).saturating_sub(12))
        .into_iter()
        .enumerate()
        .map(|(i, part)| {
            let label = if i == 0 {
                format!("{name:<12}")
            } else {
                " ".repeat(12)
            };
            Line::from(vec![Span::styled(label, t.title()), Span::raw(part)])
        })
        .collect()
}

/// A bar of the time left, `width` cells wide: full when new, empty when expired; with the
/// fraction left (0.0 to 1.0).
fn time_bar(
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    now: OffsetDateTime,
    width: usize,
) -> (String, f64) {
    let total = (not_after - not_before).as_seconds_f64().max(1.0);
    let left = ((not_after - now).as_seconds_f64() / total).clamp(0.0, 1.0);
    let filled = (left * width as f64).round() as usize;
    (
        format!(
            "{}{}",
            "█".repeat(filled),
            "░".repeat(width.saturating_sub(filled))
        ),
        left,
    )
}

/// The details of one entity's report as lines `width` columns wide: fields, time left,
/// extensions, thumbprints, chain check, lint findings and files.
fn details_lines(t: Theme, r: &Report, now: OffsetDateTime, width: u16) -> Vec<Line<'static>> {
    let m = &r.meta;
    let c = &r.certificate;
    let mut out = Vec::new();
    let (sym, style) = t.status(m.status(now));
    out.push(Line::from(vec![
        Span::styled(
            format!("{} {} ", kind_symbol(m.kind, m.self_signed), m.name),
            t.title(),
        ),
        Span::raw(format!(
            "({}{})  ",
            m.kind.as_str(),
            if m.self_signed { ", self-signed" } else { "" }
        )),
        Span::styled(format!("{sym} {}", m.status(now)), style),
    ]));
    out.extend(field(t, width, "Subject", c.subject.clone()));
    out.extend(field(t, width, "Issuer", c.issuer.clone()));
    out.extend(field(t, width, "Serial", c.serial.clone()));
    out.extend(field(t, width, "Not before", c.not_before.clone()));
    out.extend(field(t, width, "Not after", c.not_after.clone()));
    let bar_width = (width as usize).saturating_sub(30).clamp(6, 30);
    let (bar, frac) = time_bar(m.not_before, m.not_after, now, bar_width);
    let days = m.days_left(now);
    let bar_style = if frac <= 0.0 {
        t.bad()
    } else if frac < 0.1 {
        t.warn()
    } else {
        t.ok()
    };
    out.push(Line::from(vec![
        Span::styled(format!("{:<12}", "Time left"), t.title()),
        Span::styled(bar, bar_style),
        Span::raw(format!(" {days} days ({:.0}%)", frac * 100.0)),
    ]));
    out.extend(field(
        t,
        width,
        "Key",
        format!(
            "{} ({} bits), signed {}",
            c.key.algorithm, c.key.bits, c.signature_algorithm
        ),
    ));
    if let Some(code) = &m.code {
        out.extend(field(t, width, "Code", code.clone()));
    }
    if let Some(target) = m.target {
        out.extend(field(t, width, "Target", target.as_str()));
    }
    out.push(Line::styled("Extensions", t.title()));
    for e in &c.extensions {
        let text = format!(
            "{}{}: {}",
            e.name,
            if e.critical { " (critical)" } else { "" },
            e.value
        );
        let text = crate::text::escape_controls(&text);
        for (i, part) in
            super::widgets::wrap_cutting_words(&text, (width as usize).saturating_sub(4))
                .into_iter()
                .enumerate()
        {
            out.push(Line::raw(format!(
                "{}{part}",
                if i == 0 { "  " } else { "    " }
            )));
        }
    }
    out.extend(field(t, width, "SHA-1", c.sha1.clone()));
    out.extend(field(t, width, "SHA-256", c.sha256.clone()));
    let chain = r.chain.join(" → ");
    if r.chain_check.ok {
        out.push(Line::from(vec![
            Span::styled(format!("{:<12}", "Chain"), t.title()),
            Span::styled("✓ ", t.ok()),
            Span::raw(format!("verifies: {chain}")),
        ]));
    } else {
        out.push(Line::from(vec![
            Span::styled(format!("{:<12}", "Chain"), t.title()),
            Span::styled(
                format!(
                    "✗ {}",
                    crate::text::escape_controls(
                        r.chain_check.error.as_deref().unwrap_or_default()
                    )
                ),
                t.bad(),
            ),
            Span::raw(format!("  ({chain})")),
        ]));
    }
    if r.lint.is_empty() {
        out.push(Line::from(vec![
            Span::styled(format!("{:<12}", "Lint"), t.title()),
            Span::styled("✓ ", t.ok()),
            Span::raw("no findings"),
        ]));
    } else {
        out.push(Line::styled("Lint", t.title()));
        for fnd in &r.lint {
            let (sym, style) = match fnd.severity {
                crate::pki::lint::Severity::Error => ("✗", t.bad()),
                crate::pki::lint::Severity::Warning => ("!", t.warn()),
                crate::pki::lint::Severity::Info => ("i", t.accent()),
            };
            out.push(Line::from(vec![
                Span::styled(format!("  {sym} {} ", fnd.severity.as_str()), style),
                Span::raw(format!(
                    "{}: {}",
                    fnd.code,
                    crate::text::escape_controls(&fnd.message)
                )),
            ]));
        }
    }
    out.push(Line::styled("Files", t.title()));
    out.push(Line::raw(format!("  cert  {}", r.paths.cert.display())));
    if let Some(k) = &r.paths.key {
        out.push(Line::raw(format!("  key   {}", k.display())));
    }
    out.push(Line::raw(format!("  meta  {}", r.paths.meta.display())));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_bar_is_full_when_new_and_empty_when_expired() {
        let nb = time::macros::datetime!(2026-01-01 0:00 UTC);
        let na = time::macros::datetime!(2026-01-11 0:00 UTC);
        assert_eq!(time_bar(nb, na, nb, 10).0, "██████████");
        assert_eq!(
            time_bar(nb, na, time::macros::datetime!(2026-01-06 0:00 UTC), 10).0,
            "█████░░░░░"
        );
        assert_eq!(
            time_bar(nb, na, time::macros::datetime!(2027-01-01 0:00 UTC), 10),
            ("░░░░░░░░░░".to_string(), 0.0)
        );
    }
}
