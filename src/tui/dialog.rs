//! Dialogs over the tabs: the "new" form, the verification code, delete confirmation, the
//! forms (export, import, renew, revoke, target, port) and messages; what their keys ask of
//! the app.

use super::command::Command;
use super::forms::{FieldKind, Form, Outcome, Purpose};
use super::new_form::FormOutcome;
pub use super::new_form::{NewForm, NewKind};
use super::target::ConnectTarget;
use super::theme::Level;
use super::theme::{SPINNER, Theme};
use crate::mqtt::Transport;
use crate::pki::identity;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Frame;
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};
use std::path::Path;
use std::path::PathBuf;

/// Typing a verification code, then the certificate made for it.
#[derive(Clone, Debug)]
pub struct VerifyDialog {
    /// The CA being proved (the PKI tab's selection when `v` was pressed).
    pub(crate) issuer: String,
    /// The code as typed or pasted.
    pub code: String,
    /// Why the code cannot be used (not hex, wrong length), shown as the user types.
    pub error: Option<String>,
    /// The code is not the shape IoT Hub shows (48 hex): made anyway, but said.
    pub(crate) warning: Option<String>,
    /// The certificate is being made.
    pub(crate) busy: bool,
    /// The certificate made for the code; the dialog then shows it instead of the code field.
    pub result: Option<VerifyResult>,
}

/// The verification certificate the dialog made, shown until the user closes it.
#[derive(Clone, Debug)]
pub struct VerifyResult {
    /// Where its PEM was written (to upload to the hub).
    pub path: PathBuf,
    /// Its name in the workspace.
    pub entity: String,
    /// The PEM text, shown and copied with `y` (OSC 52).
    pub pem: String,
    /// First PEM line shown (↑/↓ scroll).
    pub scroll: u16,
}

impl VerifyDialog {
    /// An empty code field for the CA `issuer`.
    pub(crate) fn new(issuer: String) -> Self {
        VerifyDialog {
            issuer,
            code: String::new(),
            error: None,
            warning: None,
            busy: false,
            result: None,
        }
    }

    /// Check the code as the user types: an error for what the engine would refuse, a
    /// warning for what IoT Hub would not show.
    pub(crate) fn validate_inline(&mut self) {
        self.error = if self.code.is_empty() {
            None
        } else {
            identity::check_verification_code(&self.code)
                .err()
                .map(|e| super::forms::error_text(&e))
        };
        self.warning = if self.code.is_empty() || self.error.is_some() {
            None
        } else {
            identity::verification_code_warning(&self.code)
        };
    }
}

/// Where the TUI writes verification certificates: where the engine's proof of possession does.
pub use crate::ops::verification_out;

/// The dialog open over the tabs; while one is open it takes every key.
#[derive(Clone, Debug)]
pub enum Dialog {
    /// `n`: a new root, intermediate or device.
    New(NewForm),
    /// `v` on the PKI tab: a verification certificate for a hub's code.
    Verify(VerifyDialog),
    /// `d`: delete an entity, once the user presses `y`.
    ConfirmDelete {
        /// The entity to delete.
        name: String,
        /// How many certificates it issued (they stay, but lose their issuer in the tree).
        children: usize,
    },
    /// Text to read and close (any key); "Quit?" also takes `q` to quit.
    Message {
        /// The box's title.
        title: String,
        /// The lines to show.
        text: String,
    },
    /// Export, import, renew, revoke, connect target, hub port.
    Form(super::forms::Form),
}

/// What a key in a dialog asks of the app (the dialog has already changed itself).
#[derive(Debug)]
pub(crate) enum DialogReply {
    /// The dialog stays open.
    Stay,
    /// The dialog closes.
    Close,
    /// The dialog (a result notice) closes and the key acts as if none had been open.
    CloseAndPass,
    /// The dialog stays open, busy, while the loop runs this.
    Run(Command),
    /// The dialog closes and the loop runs this (a confirmed delete).
    CloseAndRun(Command),
    /// Say this on the status line and run that (the PEM copied).
    SayAndRun(Level, String, Command),
    /// `q` answered the quit question.
    Quit,
    /// The target form chose where tests go (and over what); the dialog closes.
    Target(ConnectTarget, Transport),
    /// The port form chose the Hub tab's port; the dialog closes.
    HubPort(u16),
}

impl Dialog {
    /// A key while this dialog is open (it takes every key); `ws_root` is where a
    /// verification certificate is written.
    pub(crate) fn key(&mut self, k: KeyEvent, ws_root: &Path) -> DialogReply {
        match self {
            Dialog::New(form) => match form.key(k) {
                FormOutcome::Stay => DialogReply::Stay,
                // Closing while a key is generated is fine: the result still lands in the workspace.
                FormOutcome::Cancel => DialogReply::Close,
                FormOutcome::Submit(req) => {
                    form.busy = Some(req.describe());
                    form.error = None;
                    DialogReply::Run(Command::Create(req))
                }
            },
            Dialog::Verify(v) => v.key(k, ws_root),
            Dialog::Form(form) => match form.key(k) {
                Outcome::Stay => DialogReply::Stay,
                Outcome::Cancel => DialogReply::Close,
                // A result is a notice, not a question: the key that closes it still acts,
                // except the keys that only mean "close" (Esc, Enter).
                Outcome::Dismiss if matches!(k.code, KeyCode::Esc | KeyCode::Enter) => {
                    DialogReply::Close
                }
                Outcome::Dismiss => DialogReply::CloseAndPass,
                Outcome::Submit => submit_form(form),
            },
            Dialog::ConfirmDelete { name, .. } => match k.code {
                KeyCode::Char('y') => DialogReply::CloseAndRun(Command::Delete(name.clone())),
                KeyCode::Char('n') | KeyCode::Esc => DialogReply::Close,
                _ => DialogReply::Stay,
            },
            Dialog::Message { title, .. } if title == "Quit?" && k.code == KeyCode::Char('q') => {
                DialogReply::Quit
            }
            Dialog::Message { .. } => DialogReply::Close,
        }
    }
}

impl VerifyDialog {
    /// A key in the verification dialog: the code while it is typed, then the result's keys
    /// (`y` copies the PEM, ↑↓ scroll it).
    fn key(&mut self, k: KeyEvent, ws_root: &Path) -> DialogReply {
        if let Some(res) = &mut self.result {
            match k.code {
                KeyCode::Char('y') => {
                    let path = res.path.display().to_string();
                    return DialogReply::SayAndRun(
                        Level::Ok,
                        format!("PEM sent to the clipboard (OSC 52); the file is {path}"),
                        Command::Copy(res.pem.clone()),
                    );
                }
                KeyCode::Down | KeyCode::Char('j') => res.scroll = res.scroll.saturating_add(1),
                KeyCode::Up | KeyCode::Char('k') => res.scroll = res.scroll.saturating_sub(1),
                KeyCode::Esc | KeyCode::Enter | KeyCode::Char('q') => return DialogReply::Close,
                _ => {}
            }
            return DialogReply::Stay;
        }
        match k.code {
            KeyCode::Esc => return DialogReply::Close,
            KeyCode::Enter if !self.busy => {
                let code = self.code.trim().to_string();
                match identity::check_verification_code(&code) {
                    Ok(()) => {
                        self.busy = true;
                        self.error = None;
                        return DialogReply::Run(Command::MakeVerification {
                            issuer: self.issuer.clone(),
                            code,
                            out: verification_out(ws_root, &self.issuer),
                        });
                    }
                    Err(e) => self.error = Some(super::forms::error_text(&e)),
                }
            }
            KeyCode::Backspace => {
                self.code.pop();
                self.validate_inline();
            }
            KeyCode::Char(c) if !k.modifiers.contains(KeyModifiers::CONTROL) => {
                self.code.push(c);
                self.validate_inline();
            }
            _ => {}
        }
        DialogReply::Stay
    }
}

/// Enter on a form: the command it asks for (the form shows it busy), or the setting it
/// changes, or why not (shown in the form).
fn submit_form(form: &mut Form) -> DialogReply {
    let cmd = match &form.purpose {
        Purpose::Export { name } => match form.export_options() {
            Ok(opts) => Command::Export {
                name: name.clone(),
                opts,
            },
            Err(e) => {
                form.error = Some(e);
                return DialogReply::Stay;
            }
        },
        Purpose::Import => match form.import_request() {
            Ok(r) => Command::Import(r),
            Err(e) => {
                form.error = Some(e);
                return DialogReply::Stay;
            }
        },
        Purpose::Renew { name } => {
            let days = form.value("Days").trim();
            let days = if days.is_empty() {
                None
            } else {
                match days.parse::<u32>() {
                    Ok(d) if d > 0 => Some(d),
                    _ => {
                        form.error = Some(format!(
                            "days \"{days}\" is not a whole number above 0; leave it empty for the profile's default"
                        ));
                        return DialogReply::Stay;
                    }
                }
            };
            Command::Renew(crate::ops::lifecycle::RenewRequest {
                name: name.clone(),
                days,
                rekey: form.choice("Key") == 1,
                key: None,
                ..Default::default()
            })
        }
        Purpose::Revoke { name } => {
            let choice = |i: usize| match form.fields.get(i).map(|f| &f.kind) {
                Some(FieldKind::Choice(o, i)) => Some(o[*i]),
                _ => None,
            };
            let reason = choice(0).unwrap_or("unspecified").to_string();
            let disable_on_hub = choice(1).is_some_and(|c| c.starts_with("disable"));
            Command::Revoke {
                name: name.clone(),
                reason,
                disable_on_hub,
            }
        }
        Purpose::Target => match ConnectTarget::parse(form.value("Target")) {
            Ok(t) => {
                let transport =
                    Transport::ALL[form.choice("Protocol").min(Transport::ALL.len() - 1)];
                return DialogReply::Target(t, transport);
            }
            Err(e) => {
                form.error = Some(e);
                return DialogReply::Stay;
            }
        },
        Purpose::HubPort => match form.value("Port").trim().parse::<u16>() {
            Ok(p) => return DialogReply::HubPort(p),
            Err(_) => {
                form.error = Some(format!(
                    "port \"{}\" is not a number from 0 to 65535",
                    form.value("Port").trim()
                ));
                return DialogReply::Stay;
            }
        },
    };
    form.busy = Some(match &cmd {
        Command::Export { name, .. } => format!("exporting {name}"),
        Command::Import(r) => format!("importing {}", r.name),
        Command::Renew(r) => format!("renewing {}", r.name),
        _ => "revoking".into(),
    });
    form.error = None;
    DialogReply::Run(cmd)
}

/// A centred rectangle `w`×`h` (clamped to the area).
pub(crate) fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let [v] = Layout::vertical([Constraint::Length(h.min(area.height))])
        .flex(Flex::Center)
        .areas(area);
    let [r] = Layout::horizontal([Constraint::Length(w.min(area.width))])
        .flex(Flex::Center)
        .areas(v);
    r
}

fn frame(t: Theme, title: &str) -> Block<'static> {
    Block::default()
        .borders(Borders::ALL)
        .title(Span::styled(format!(" {title} "), t.title()))
}

/// Draw dialog `d` over `area`; `spinner` is the frame counter of the busy spinner.
pub(crate) fn render(f: &mut Frame, area: Rect, d: &Dialog, t: Theme, spinner: usize) {
    let spin = SPINNER[spinner % SPINNER.len()];
    match d {
        Dialog::New(form) => render_new(f, area, form, t, spin),
        Dialog::Verify(v) => render_verify(f, area, v, t, spin),
        Dialog::ConfirmDelete { name, children } => render_delete(f, area, name, *children, t),
        Dialog::Form(form) => render_form(f, area, form, t, spin),
        Dialog::Message { title, text } => render_message(f, area, title, text, t),
    }
}

/// The new-certificate form: its fields, then the state line (busy, error, hint or ready).
fn render_new(f: &mut Frame, area: Rect, form: &NewForm, t: Theme, spin: &str) {
    let mut lines = Vec::new();
    for (i, fl) in form.fields().iter().enumerate() {
        let focused = i == form.focus;
        let value = form.value(*fl);
        let shown = if fl.is_choice() {
            format!("‹ {value} ›")
        } else if focused {
            format!("{value}▏")
        } else {
            value
        };
        let marker = if focused { "▶ " } else { "  " };
        let style = if focused {
            t.selected()
        } else {
            ratatui::style::Style::new()
        };
        lines.push(Line::from(vec![
            Span::raw(marker),
            Span::styled(format!("{:<9}", fl.label()), t.title()),
            Span::styled(shown, style),
        ]));
    }
    lines.push(Line::raw(""));
    if let Some(b) = &form.busy {
        lines.push(Line::styled(format!("{spin} {b}…"), t.accent()));
    } else if let Some(e) = &form.error {
        lines.push(Line::styled(format!("✗ {e}"), t.bad()));
    } else if form.name.is_empty() {
        let hint = match form.kind {
            NewKind::Device | NewKind::SelfSignedDevice => {
                "type the device id (CN = id), or a range like dev-{001..100}"
            }
            _ => "type a name for the CA",
        };
        lines.push(Line::styled(format!("· {hint}"), t.dim()));
    } else {
        lines.push(Line::styled("✓ ready: Enter creates it", t.ok()));
    }
    for w in &form.warnings {
        lines.push(Line::styled(format!("! {w}"), t.warn()));
    }
    lines.push(Line::styled(
        "Tab/↑↓ field · ←→ choose · Enter create · Esc cancel",
        t.dim(),
    ));
    let h = lines.len() as u16 + 2;
    let r = centered(area, 72, h);
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(frame(t, "New certificate")),
        r,
    );
}

/// Proof of possession: the code being typed, or the certificate made for it.
fn render_verify(f: &mut Frame, area: Rect, v: &VerifyDialog, t: Theme, spin: &str) {
    let mut lines = vec![Line::from(vec![
        Span::styled("CA       ", t.title()),
        Span::raw(v.issuer.clone()),
    ])];
    match &v.result {
        None => {
            lines.push(Line::from(vec![
                Span::styled("Code     ", t.title()),
                Span::styled(format!("{}▏", v.code), t.selected()),
            ]));
            lines.push(Line::raw(""));
            if v.busy {
                lines.push(Line::styled(
                    format!("{spin} making the verification certificate…"),
                    t.accent(),
                ));
            } else if let Some(e) = &v.error {
                lines.push(Line::styled(format!("✗ {e}"), t.bad()));
            } else if let Some(w) = &v.warning {
                lines.push(Line::styled(format!("⚠ {w}"), t.warn()));
            } else {
                lines.push(Line::styled(
                    "· paste or type the code the hub shows for this CA",
                    t.dim(),
                ));
            }
            lines.push(Line::styled("Enter make certificate · Esc cancel", t.dim()));
        }
        Some(res) => {
            lines.push(Line::from(vec![
                Span::styled("Code     ", t.title()),
                Span::raw(v.code.clone()),
            ]));
            lines.push(Line::from(vec![
                Span::styled("✓ ", t.ok()),
                Span::raw("verification certificate written to"),
            ]));
            lines.push(Line::raw(format!("  {}", res.path.display())));
            lines.push(Line::raw(format!(
                "  (entity {} in the workspace)",
                res.entity
            )));
            lines.push(Line::raw(
                "Upload it to the hub to finish verifying the CA.",
            ));
            lines.push(Line::raw(""));
            for l in res.pem.lines().skip(res.scroll as usize) {
                lines.push(Line::styled(l.to_string(), t.dim()));
            }
        }
    }
    if v.result.is_some() {
        let r = centered(area, 72, area.height.saturating_sub(2));
        f.render_widget(Clear, r);
        let [body, foot] = Layout::vertical([Constraint::Min(3), Constraint::Length(1)])
            .areas(r.inner(ratatui::layout::Margin::new(1, 1)));
        f.render_widget(frame(t, "Verification certificate"), r);
        f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), body);
        f.render_widget(
            Paragraph::new(Line::styled(
                "y copy PEM (OSC 52) · ↑↓ scroll · Esc close",
                t.dim(),
            )),
            foot,
        );
    } else {
        let r = centered(area, 72, lines.len() as u16 + 4);
        f.render_widget(Clear, r);
        f.render_widget(
            Paragraph::new(lines)
                .wrap(Wrap { trim: false })
                .block(frame(t, "Verify a CA (proof of possession)")),
            r,
        );
    }
}

fn render_delete(f: &mut Frame, area: Rect, name: &str, children: usize, t: Theme) {
    let mut lines = vec![Line::raw(format!(
        "Delete \"{name}\" and its key from the workspace?"
    ))];
    if children > 0 {
        lines.push(Line::styled(
            format!(
                "! {children} certificate(s) issued by it stay, but lose their issuer in the tree"
            ),
            t.warn(),
        ));
    }
    lines.push(Line::raw(""));
    lines.push(Line::from(vec![
        Span::styled("y", t.key()),
        Span::raw(" delete   "),
        Span::styled("n", t.key()),
        Span::raw("/Esc keep"),
    ]));
    let r = centered(area, 64, lines.len() as u16 + 4);
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(frame(t, "Delete")),
        r,
    );
}

/// A generic form (export, import, renew, revoke, ...): fields, then its note, state and result.
fn render_form(f: &mut Frame, area: Rect, form: &super::forms::Form, t: Theme, spin: &str) {
    let mut lines = Vec::new();
    let inner = area.width.min(76).saturating_sub(2).max(1) as usize;
    for (i, fl) in form.fields.iter().enumerate() {
        let focused = i == form.focus && form.result.is_none();
        let style = if focused {
            t.selected()
        } else {
            ratatui::style::Style::new()
        };
        // Toggles break between options, never inside "[x] chain-in-pfx".
        let rows: Vec<String> = match &fl.kind {
            super::forms::FieldKind::Toggles(opts, _) => {
                let items: Vec<String> = opts
                    .iter()
                    .map(|(o, on)| format!("[{}] {o}", if *on { "x" } else { " " }))
                    .collect();
                let room = inner.saturating_sub(11).max(12);
                let mut rows = vec![String::new()];
                for it in items {
                    let last = rows.last_mut().expect("one row");
                    if !last.is_empty() && last.chars().count() + 1 + it.chars().count() > room {
                        rows.push(it);
                    } else {
                        if !last.is_empty() {
                            last.push(' ');
                        }
                        last.push_str(&it);
                    }
                }
                rows
            }
            super::forms::FieldKind::Text | super::forms::FieldKind::Secret if focused => {
                vec![format!("{}▏", fl.shown())]
            }
            _ => vec![fl.shown()],
        };
        for (n, row) in rows.into_iter().enumerate() {
            lines.push(Line::from(vec![
                Span::raw(if focused && n == 0 { "▶ " } else { "  " }),
                Span::styled(
                    format!("{:<9}", if n == 0 { fl.label } else { "" }),
                    t.title(),
                ),
                Span::styled(row, style),
            ]));
        }
        if focused {
            if let super::forms::FieldKind::Toggles(o, c) = &fl.kind {
                lines.push(Line::styled(
                    format!("           Space toggles {} · ←→ moves", o[*c].0),
                    t.dim(),
                ));
            }
        }
    }
    if let Some(n) = &form.note {
        lines.push(Line::styled(format!("! {n}"), t.warn()));
    }
    lines.push(Line::raw(""));
    if let Some(b) = &form.busy {
        lines.push(Line::styled(format!("{spin} {b}…"), t.accent()));
    } else if let Some(e) = &form.error {
        lines.push(Line::styled(format!("✗ {e}"), t.bad()));
    }
    if let Some(res) = &form.result {
        for r in res {
            lines.push(Line::styled(format!("✓ {r}"), t.ok()));
        }
        lines.push(Line::styled(
            "Esc/Enter close · any other key closes and acts",
            t.dim(),
        ));
    } else {
        lines.push(Line::styled(
            "Tab/↑↓ field · ←→ choose · Enter run · Esc cancel",
            t.dim(),
        ));
    }
    // Tall enough for the wrapped lines (file lists run long), at most the screen.
    let rows: usize = lines.iter().map(|l| l.width().max(1).div_ceil(inner)).sum();
    let r = centered(area, 76, rows as u16 + 2);
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(frame(t, &form.title)),
        r,
    );
}

fn render_message(f: &mut Frame, area: Rect, title: &str, text: &str, t: Theme) {
    let lines: Vec<Line> = text
        .lines()
        .map(|l| Line::raw(l.to_string()))
        .chain([Line::styled("Esc close", t.dim())])
        .collect();
    let r = centered(area, 72, lines.len() as u16 + 4);
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(frame(t, title)),
        r,
    );
}
