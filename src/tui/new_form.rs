//! The "new" form (`n` on the PKI tab): a root, an intermediate or devices, its fields
//! following its kind. Validation calls the same `pki`/`ops` functions as the CLI, so the
//! messages are the same.

use super::command::CreateRequest;
use crate::ops::{self, CaRequest, DeviceRequest, ValidityArg};
use crate::pki::issue::Profile;
use crate::pki::{Eku, KeyAlg, Target, Validity, identity};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

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
pub(crate) enum Field {
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
    pub(crate) fn label(self) -> &'static str {
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
    pub(crate) fn is_choice(self) -> bool {
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
    pub(crate) name: String,
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
    pub(crate) focus: usize,
    /// Why the form cannot be submitted as it is (shown under the fields).
    pub error: Option<String>,
    /// What is allowed but worth knowing (a key Azure does not document, an unusual id).
    pub(crate) warnings: Vec<String>,
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
    pub(crate) fn fields(&self) -> Vec<Field> {
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

    pub(crate) fn value(&self, f: Field) -> String {
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
