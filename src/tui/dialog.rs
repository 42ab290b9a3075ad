//! Dialogs over the PKI tab: the "new" form, the verification code, delete confirmation.
//! Validation calls the same `pki`/`ops` functions as the CLI, so the messages are the same.

use super::command::CreateRequest;
use super::theme::{SPINNER, Theme};
use crate::ops::{self, CaRequest, DeviceRequest, ValidityArg};
use crate::pki::issue::Profile;
use crate::pki::{Eku, KeyAlg, Target, Validity, identity};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Frame;
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};
use std::path::PathBuf;

/// What the "new" form (`n`) makes: its Kind field, which also decides the other fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NewKind {
    /// A self-signed root CA.
    Root,
    /// A CA issued by a workspace CA.
    Intermediate,
    /// A device certificate issued by a workspace CA (Azure's "X.509 CA signed").
    Device,
    /// A device certificate signed by its own key (Azure's "X.509 self-signed", registered
    /// by thumbprint).
    SelfSignedDevice,
}

impl NewKind {
    /// The kinds in the order ←/→ cycles them.
    const ALL: [NewKind; 4] = [
        NewKind::Root,
        NewKind::Intermediate,
        NewKind::Device,
        NewKind::SelfSignedDevice,
    ];
    /// The Kind field's text.
    fn label(self) -> &'static str {
        match self {
            NewKind::Root => "root CA",
            NewKind::Intermediate => "intermediate CA",
            NewKind::Device => "device (CA-signed)",
            NewKind::SelfSignedDevice => "device (self-signed)",
        }
    }
    fn profile(self) -> Profile {
        match self {
            NewKind::Root => Profile::Root { pathlen: None },
            NewKind::Intermediate => Profile::Intermediate { pathlen: None },
            NewKind::Device | NewKind::SelfSignedDevice => Profile::Device {
                eku: Eku::Client,
                sans: vec![],
            },
        }
    }
}

/// The rows of the "new" form; which appear depends on the kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Kind,
    Name,
    Issuer,
    Key,
    Days,
    Pathlen,
    Eku,
    Target,
}

impl Field {
    fn label(self) -> &'static str {
        match self {
            Field::Kind => "Kind",
            Field::Name => "Name",
            Field::Issuer => "Issuer",
            Field::Key => "Key",
            Field::Days => "Days",
            Field::Pathlen => "Pathlen",
            Field::Eku => "EKU",
            Field::Target => "Id rules",
        }
    }
    fn is_choice(self) -> bool {
        matches!(
            self,
            Field::Kind | Field::Issuer | Field::Key | Field::Eku | Field::Target
        )
    }
}

const EKUS: [Eku; 2] = [Eku::Client, Eku::ClientServer];

/// The "new" form (`n` on the PKI tab): a root, intermediate or device, checked as the user
/// types with the CLI's own validation.
#[derive(Clone, Debug)]
pub struct NewForm {
    /// What the form makes.
    pub kind: NewKind,
    /// The CA's name, or the device id or range (`dev-{001..100}`).
    name: String,
    /// CAs that can issue (have a key): the Issuer field's choices.
    pub cas: Vec<String>,
    /// The chosen issuer: an index into `cas`.
    pub issuer: usize,
    /// The Key field: an index into [`KeyAlg::ALL`].
    key: usize,
    /// The Days field as typed (validity in days).
    days: String,
    /// The Pathlen field as typed (0-255; empty: unconstrained for a root, the issuer's
    /// minus one below it).
    pathlen: String,
    /// The EKU field: an index into `EKUS`.
    eku: usize,
    /// The Id rules field: an index into [`Target::ALL`].
    target: usize,
    /// The focused row: an index into [`NewForm::fields`].
    focus: usize,
    /// Why the form cannot be submitted as it is (shown under the fields).
    pub error: Option<String>,
    /// What is allowed but worth knowing (a key Azure does not document, an unusual id).
    warnings: Vec<String>,
    /// Key generation running: the form waits, the UI does not.
    pub busy: Option<String>,
    /// "Now" by the app's clock when the form opened: the window the days are checked from.
    pub now: time::OffsetDateTime,
}

impl NewForm {
    /// A form for `kind`, its Issuer field on `preferred_issuer` when that CA can issue
    /// (the PKI tab's selection), else the first of `cas`; `now` is the app's clock.
    pub(crate) fn new(
        kind: NewKind,
        cas: Vec<String>,
        preferred_issuer: Option<&str>,
        now: time::OffsetDateTime,
    ) -> NewForm {
        let issuer = preferred_issuer
            .and_then(|p| cas.iter().position(|c| c == p))
            .unwrap_or(0);
        let mut f = NewForm {
            kind,
            name: String::new(),
            cas,
            issuer,
            key: 0,
            days: String::new(),
            pathlen: String::new(),
            eku: 0,
            target: 0,
            focus: 1,
            error: None,
            warnings: vec![],
            busy: None,
            now,
        };
        f.set_kind(kind);
        f
    }

    fn set_kind(&mut self, kind: NewKind) {
        self.kind = kind;
        self.days = Validity::default_days(&kind.profile()).to_string();
        self.focus = self.focus.min(self.fields().len() - 1);
        self.validate_inline();
    }

    /// The rows the form's kind shows, in order.
    fn fields(&self) -> Vec<Field> {
        match self.kind {
            NewKind::Root => vec![
                Field::Kind,
                Field::Name,
                Field::Key,
                Field::Days,
                Field::Pathlen,
            ],
            NewKind::Intermediate => vec![
                Field::Kind,
                Field::Name,
                Field::Issuer,
                Field::Key,
                Field::Days,
                Field::Pathlen,
            ],
            NewKind::Device => vec![
                Field::Kind,
                Field::Name,
                Field::Issuer,
                Field::Key,
                Field::Days,
                Field::Eku,
                Field::Target,
            ],
            NewKind::SelfSignedDevice => vec![
                Field::Kind,
                Field::Name,
                Field::Key,
                Field::Days,
                Field::Eku,
                Field::Target,
            ],
        }
    }

    fn focused(&self) -> Field {
        self.fields()[self.focus]
    }

    fn value(&self, f: Field) -> String {
        match f {
            Field::Kind => self.kind.label().into(),
            Field::Name => self.name.clone(),
            Field::Issuer => self
                .cas
                .get(self.issuer)
                .cloned()
                .unwrap_or_else(|| "(no CA with a key: make a root first)".into()),
            Field::Key => KeyAlg::ALL[self.key].as_str().into(),
            Field::Days => self.days.clone(),
            Field::Pathlen => {
                if self.pathlen.is_empty() {
                    match self.kind {
                        NewKind::Root => "(unconstrained)".into(),
                        _ => "(issuer's minus one)".into(),
                    }
                } else {
                    self.pathlen.clone()
                }
            }
            Field::Eku => EKUS[self.eku].as_str().into(),
            Field::Target => Target::ALL[self.target].as_str().into(),
        }
    }

    fn cycle(&mut self, f: Field, d: isize) {
        fn step(i: usize, n: usize, d: isize) -> usize {
            if n == 0 {
                0
            } else {
                (i as isize + d).rem_euclid(n as isize) as usize
            }
        }
        match f {
            Field::Kind => {
                let i = NewKind::ALL
                    .iter()
                    .position(|k| *k == self.kind)
                    .unwrap_or(0);
                self.set_kind(NewKind::ALL[step(i, 4, d)]);
            }
            Field::Issuer => self.issuer = step(self.issuer, self.cas.len(), d),
            Field::Key => self.key = step(self.key, KeyAlg::ALL.len(), d),
            Field::Eku => self.eku = step(self.eku, EKUS.len(), d),
            Field::Target => self.target = step(self.target, Target::ALL.len(), d),
            _ => {}
        }
    }

    fn text_mut(&mut self, f: Field) -> Option<&mut String> {
        match f {
            Field::Name => Some(&mut self.name),
            Field::Days => Some(&mut self.days),
            Field::Pathlen => Some(&mut self.pathlen),
            _ => None,
        }
    }

    /// Check the form now, as the user types; errors show under the fields.
    fn validate_inline(&mut self) {
        if self.name.is_empty() {
            self.error = None;
            self.warnings.clear();
            return;
        }
        match self.request() {
            Ok((_, w)) => {
                self.error = None;
                self.warnings = w;
            }
            Err(e) => {
                self.error = Some(e);
                self.warnings.clear();
            }
        }
    }

    /// The request the form describes, checked with the CLI's own functions.
    fn request(&self) -> Result<(CreateRequest, Vec<String>), String> {
        let key = KeyAlg::ALL[self.key];
        let mut warnings: Vec<String> = key.warning().map(str::to_string).into_iter().collect();
        let days: u32 = self.days.trim().parse().map_err(|_| {
            format!(
                "days \"{}\" is not a whole number; give the validity in days, e.g. 365",
                self.days
            )
        })?;
        let validity = ValidityArg::days(days);
        validity
            .resolve(&self.kind.profile(), self.now)
            .map_err(|e| super::forms::error_text(&e))?;
        let pathlen = if self.pathlen.trim().is_empty() {
            None
        } else {
            Some(self.pathlen.trim().parse::<u8>().map_err(|_| {
                format!("pathlen \"{}\" is not a number from 0 to 255; it counts the CA levels allowed below this one", self.pathlen)
            })?)
        };
        let issuer = match self.kind {
            NewKind::Intermediate | NewKind::Device => {
                Some(self.cas.get(self.issuer).cloned().ok_or(
                    "no CA with a private key to issue from; make a root first (n, kind root CA)",
                )?)
            }
            _ => None,
        };
        let req = match self.kind {
            NewKind::Root | NewKind::Intermediate => {
                identity::check_entity_name(&self.name)
                    .map_err(|e| super::forms::error_text(&e))?;
                if issuer.as_deref() == Some(self.name.as_str()) {
                    return Err(format!(
                        "\"{}\" cannot issue itself; pick its parent CA in the Issuer field",
                        self.name
                    ));
                }
                CreateRequest::Ca(CaRequest {
                    name: self.name.clone(),
                    cn: None,
                    subject: None,
                    key,
                    validity,
                    pathlen,
                    issuer,
                    force: false,
                })
            }
            NewKind::Device | NewKind::SelfSignedDevice => {
                let target = Target::ALL[self.target];
                let (_, w) = ops::expand_ids(std::slice::from_ref(&self.name), target)
                    .map_err(|e| super::forms::error_text(&e))?;
                warnings.extend(w);
                CreateRequest::Devices(DeviceRequest {
                    ids: vec![self.name.clone()],
                    issuer,
                    key: Some(key),
                    validity,
                    eku: EKUS[self.eku],
                    sans: vec![],
                    target,
                    slot: None,
                    force: false,
                })
            }
        };
        Ok((req, warnings))
    }

    /// A key in the form; [`FormOutcome::Submit`] when the user submits a valid form.
    pub(crate) fn key(&mut self, k: KeyEvent) -> FormOutcome {
        let field = self.focused();
        let n = self.fields().len();
        match k.code {
            KeyCode::Esc => return FormOutcome::Cancel,
            KeyCode::Enter => {
                if self.busy.is_some() {
                    return FormOutcome::Stay;
                }
                return match self.request() {
                    Ok((req, _)) => FormOutcome::Submit(req),
                    Err(e) => {
                        self.error = Some(e);
                        FormOutcome::Stay
                    }
                };
            }
            KeyCode::Tab | KeyCode::Down => self.focus = (self.focus + 1) % n,
            KeyCode::BackTab | KeyCode::Up => self.focus = (self.focus + n - 1) % n,
            KeyCode::Left if field.is_choice() => self.cycle(field, -1),
            KeyCode::Right | KeyCode::Char(' ') if field.is_choice() => self.cycle(field, 1),
            KeyCode::Backspace => {
                if let Some(s) = self.text_mut(field) {
                    s.pop();
                }
            }
            KeyCode::Char(c) if !k.modifiers.contains(KeyModifiers::CONTROL) => {
                if let Some(s) = self.text_mut(field) {
                    s.push(c);
                }
            }
            _ => {}
        }
        self.validate_inline();
        FormOutcome::Stay
    }

    /// Pasted text goes into the focused text field (trimmed: a pasted id has no newline).
    pub(crate) fn paste(&mut self, text: &str) {
        let field = self.focused();
        if let Some(s) = self.text_mut(field) {
            s.push_str(text.trim());
        }
        self.validate_inline();
    }
}

/// What a key in the "new" form asks of the app.
pub(crate) enum FormOutcome {
    /// Nothing for the app: the form handled it (or the request is not valid yet).
    Stay,
    /// Esc: close the form.
    Cancel,
    /// Enter on a valid form: create this.
    Submit(CreateRequest),
}

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
