//! Small forms for the actions that only collect a few values and call one engine function:
//! export, import, renew, revoke, the connect target and the hub port. One generic form
//! (text, masked text, a choice, a set of toggles) so each is a list of fields and a purpose.

use crate::export::{ExportOptions, Format, PfxProfile};
use crate::ops::lifecycle::ImportRequest;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use std::path::{Path, PathBuf};

/// How a form field is edited and shown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum FieldKind {
    /// Typed text, shown as typed (names, paths, days, a port).
    Text,
    /// Typed masked (passwords).
    Secret,
    /// One of the options; the index is the choice.
    Choice(Vec<&'static str>, usize),
    /// Any of the options; the cursor is the option Space toggles.
    Toggles(Vec<(&'static str, bool)>, usize),
}

/// One row of a form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    /// The row's label; the form's code also finds the field by it.
    pub(crate) label: &'static str,
    /// How it is edited (and, for choices and toggles, what is chosen).
    pub(crate) kind: FieldKind,
    /// The typed text of a text or secret field (empty for choices and toggles).
    pub(crate) value: String,
}

impl Field {
    fn text(label: &'static str, value: impl Into<String>) -> Field {
        Field {
            label,
            kind: FieldKind::Text,
            value: value.into(),
        }
    }
    fn secret(label: &'static str) -> Field {
        Field {
            label,
            kind: FieldKind::Secret,
            value: String::new(),
        }
    }

    /// How the field shows: secrets as bullets, choices and toggles with their marks.
    pub fn shown(&self) -> String {
        match &self.kind {
            FieldKind::Text => self.value.clone(),
            FieldKind::Secret => "•".repeat(self.value.chars().count()),
            FieldKind::Choice(opts, i) => format!("‹ {} ›", opts[*i]),
            FieldKind::Toggles(opts, _) => opts
                .iter()
                .map(|(o, on)| format!("[{}] {o}", if *on { "x" } else { " " }))
                .collect::<Vec<_>>()
                .join(" "),
        }
    }
}

/// What the form is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// `e` on the PKI tab: export the entity `name`.
    Export { name: String },
    /// `i` on the PKI tab: import a certificate (and key) from files.
    Import,
    /// `r` on the PKI tab: renew the entity `name`.
    Renew { name: String },
    /// `x` on the PKI tab: revoke the entity `name`.
    Revoke { name: String },
    /// `t` on the Connect tab: where the connection test connects, and over what.
    Target,
    /// `p` on the Hub tab: the port the local hub listens on.
    HubPort,
}

/// A small form (export, import, renew, revoke, connect target, hub port) in a dialog.
#[derive(Clone, Debug)]
pub struct Form {
    /// What Enter does with the values.
    pub(crate) purpose: Purpose,
    /// The dialog's title ("Export dev-01").
    pub title: String,
    /// The rows, top to bottom.
    pub fields: Vec<Field>,
    /// The focused row: an index into `fields`.
    pub(crate) focus: usize,
    /// A note shown under the fields (the Azure-ignores-CRL note for revoke).
    pub note: Option<String>,
    /// Why the last Enter did not run (a missing value, or the engine's refusal).
    pub error: Option<String>,
    /// What is running since Enter ("exporting dev-01"); the form waits for it.
    pub(crate) busy: Option<String>,
    /// Lines to show once done (the files written); any key closes (see [`Outcome::Dismiss`]).
    pub result: Option<Vec<String>>,
}

/// What a key in a form asks of the app.
pub(crate) enum Outcome {
    /// Nothing: the form handled the key.
    Stay,
    /// Esc: close the form.
    Cancel,
    /// Any key once the result shows: close it, and let the key do what it does without a
    /// dialog (the result is a notice; `c` after a renew connects, `3` changes tab).
    Dismiss,
    /// Enter: run what the form is for.
    Submit,
}

/// Export formats offered, in order, with the engine's format and PFX profile.
const EXPORT_FORMATS: [&str; 8] = [
    "pem",
    "der",
    "pfx",
    "pfx-compat",
    "azure",
    "edge",
    "aws",
    "chain-in-pfx",
];

impl Form {
    fn new(purpose: Purpose, title: impl Into<String>, fields: Vec<Field>) -> Form {
        Form {
            purpose,
            title: title.into(),
            fields,
            focus: 0,
            note: None,
            error: None,
            busy: None,
            result: None,
        }
    }

    /// Export `name`: formats to toggle (PEM and chain-in-PFX on), a PFX password and the
    /// directory (the workspace's `export/NAME` by default).
    pub(crate) fn export(name: &str, ws_root: &Path) -> Form {
        let opts: Vec<(&'static str, bool)> = EXPORT_FORMATS
            .iter()
            .map(|f| (*f, matches!(*f, "pem" | "chain-in-pfx")))
            .collect();
        Form::new(
            Purpose::Export { name: name.into() },
            format!("Export {name}"),
            vec![
                Field {
                    label: "Formats",
                    kind: FieldKind::Toggles(opts, 0),
                    value: String::new(),
                },
                Field::secret("Password"),
                Field::text(
                    "To dir",
                    ws_root.join("export").join(name).display().to_string(),
                ),
            ],
        )
    }

    /// Import: the certificate file, an optional key file, a workspace name, a PFX password.
    pub(crate) fn import() -> Form {
        Form::new(
            Purpose::Import,
            "Import a certificate",
            vec![
                Field::text("File", ""),
                Field::text("Key file", ""),
                Field::text("Name", ""),
                Field::secret("Password"),
            ],
        )
    }

    /// Renew `name`: days (empty: the profile's default) and whether to keep the key.
    pub(crate) fn renew(name: &str) -> Form {
        Form::new(
            Purpose::Renew { name: name.into() },
            format!("Renew {name}"),
            vec![
                Field::text("Days", ""),
                Field {
                    label: "Key",
                    kind: FieldKind::Choice(vec!["keep (same key)", "new key"], 0),
                    value: String::new(),
                },
            ],
        )
    }

    /// Disabling the device in the hub is the default: IoT Hub and the local hub check no CRL,
    /// so disabling is what cuts a registered device off (an unregistered one is left alone,
    /// and the result says so).
    pub(crate) fn revoke(name: &str) -> Form {
        let mut f = Form::new(
            Purpose::Revoke { name: name.into() },
            format!("Revoke {name}"),
            vec![
                Field {
                    label: "Reason",
                    kind: FieldKind::Choice(
                        vec![
                            "unspecified",
                            "key-compromise",
                            "ca-compromise",
                            "affiliation-changed",
                            "superseded",
                            "cessation-of-operation",
                        ],
                        0,
                    ),
                    value: String::new(),
                },
                Field {
                    label: "On hub",
                    kind: FieldKind::Choice(vec!["disable the device", "leave it enabled"], 0),
                    value: String::new(),
                },
            ],
        );
        f.note = Some(crate::azure::HUB_DOES_NOT_CHECK_CRLS.to_string());
        f
    }

    /// The target and the transport (`mqtt`, `mqtt-ws`, `amqp`, `amqp-ws`; index into
    /// [`crate::mqtt::Transport::ALL`]).
    pub(crate) fn target(current: &str, transport: usize) -> Form {
        Form::new(
            Purpose::Target,
            "Connection target",
            vec![
                Field::text("Target", current),
                Field {
                    label: "Protocol",
                    kind: FieldKind::Choice(vec!["mqtt", "mqtt-ws", "amqp", "amqp-ws"], transport),
                    value: String::new(),
                },
            ],
        )
        .with_note("local, an IoT Hub host like MYHUB.azure-devices.net, mqtts://HOST:PORT or wss://HOST:PORT/PATH")
    }

    /// The local hub's port, starting from `current`.
    pub(crate) fn hub_port(current: u16) -> Form {
        Form::new(
            Purpose::HubPort,
            "Local hub port",
            vec![Field::text("Port", current.to_string())],
        )
        .with_note("1-65535 (IoT Hub devices use 8883); 0 picks a free port")
    }

    fn with_note(mut self, n: &str) -> Form {
        self.note = Some(n.into());
        self
    }

    /// The text typed in the field labelled `label` ("" when there is none).
    pub(crate) fn value(&self, label: &str) -> &str {
        self.fields
            .iter()
            .find(|f| f.label == label)
            .map(|f| f.value.as_str())
            .unwrap_or("")
    }

    /// The index chosen in the choice field labelled `label` (0 when there is none).
    pub(crate) fn choice(&self, label: &str) -> usize {
        match self
            .fields
            .iter()
            .find(|f| f.label == label)
            .map(|f| &f.kind)
        {
            Some(FieldKind::Choice(_, i)) => *i,
            _ => 0,
        }
    }

    /// The options switched on in the toggles field labelled `label`.
    fn toggled(&self, label: &str) -> Vec<&'static str> {
        match self
            .fields
            .iter()
            .find(|f| f.label == label)
            .map(|f| &f.kind)
        {
            Some(FieldKind::Toggles(o, _)) => {
                o.iter().filter(|(_, on)| *on).map(|(n, _)| *n).collect()
            }
            _ => vec![],
        }
    }

    /// Pasted text goes into the focused text or secret field, without a trailing newline.
    pub(crate) fn paste(&mut self, text: &str) {
        if let Some(f) = self.fields.get_mut(self.focus) {
            if matches!(f.kind, FieldKind::Text | FieldKind::Secret) {
                f.value.push_str(text.trim_end_matches(['\r', '\n']));
            }
        }
    }

    /// A key in the form: Tab/↑↓ move between fields, ←→ choose, Space toggles, Enter
    /// submits, Esc cancels; any key dismisses a form showing its result.
    pub(crate) fn key(&mut self, k: KeyEvent) -> Outcome {
        if self.result.is_some() {
            return Outcome::Dismiss;
        }
        if self.busy.is_some() {
            return if k.code == KeyCode::Esc {
                Outcome::Cancel
            } else {
                Outcome::Stay
            };
        }
        let n = self.fields.len();
        let field = &mut self.fields[self.focus];
        match k.code {
            KeyCode::Esc => return Outcome::Cancel,
            KeyCode::Enter => return Outcome::Submit,
            KeyCode::Tab | KeyCode::Down => self.focus = (self.focus + 1) % n,
            KeyCode::BackTab | KeyCode::Up => self.focus = (self.focus + n - 1) % n,
            KeyCode::Left | KeyCode::Right => {
                let fwd = k.code == KeyCode::Right;
                match &mut field.kind {
                    FieldKind::Choice(o, i) => {
                        *i = if fwd {
                            (*i + 1) % o.len()
                        } else {
                            (*i + o.len() - 1) % o.len()
                        }
                    }
                    FieldKind::Toggles(o, c) => {
                        *c = if fwd {
                            (*c + 1) % o.len()
                        } else {
                            (*c + o.len() - 1) % o.len()
                        }
                    }
                    _ => {}
                }
            }
            KeyCode::Char(' ') if matches!(field.kind, FieldKind::Toggles(..)) => {
                if let FieldKind::Toggles(o, c) = &mut field.kind {
                    o[*c].1 = !o[*c].1;
                }
            }
            KeyCode::Backspace => {
                field.value.pop();
            }
            KeyCode::Char(c) if !k.modifiers.contains(KeyModifiers::CONTROL) => {
                if matches!(field.kind, FieldKind::Text | FieldKind::Secret) {
                    field.value.push(c);
                }
            }
            _ => {}
        }
        self.error = None;
        Outcome::Stay
    }

    /// The export options the form describes, checked.
    pub(crate) fn export_options(&self) -> Result<ExportOptions, String> {
        let on = self.toggled("Formats");
        let mut formats = Vec::new();
        for (name, f) in [
            ("pem", Format::Pem),
            ("der", Format::Der),
            ("pfx", Format::Pfx),
            ("pfx-compat", Format::Pfx),
            ("azure", Format::Azure),
            ("edge", Format::Edge),
            ("aws", Format::Aws),
        ] {
            if on.contains(&name) && !formats.contains(&f) {
                formats.push(f);
            }
        }
        if formats.is_empty() {
            return Err(
                "choose at least one format (Space toggles the one under the cursor)".into(),
            );
        }
        let dir = self.value("To dir").trim();
        if dir.is_empty() {
            return Err("give a destination directory".into());
        }
        let mut o = ExportOptions::new(PathBuf::from(dir), &formats);
        let pw = self.value("Password");
        o.password = (!pw.is_empty()).then(|| pw.to_string());
        o.pfx_profile = if on.contains(&"pfx-compat") {
            PfxProfile::Compat
        } else {
            PfxProfile::Modern
        };
        o.include_chain = on.contains(&"chain-in-pfx");
        if formats.contains(&Format::Pfx) && o.password.is_none() {
            return Err("a PFX needs a password: type one (it is shown masked)".into());
        }
        Ok(o)
    }

    /// The import request the form describes, checked for the values it needs.
    pub(crate) fn import_request(&self) -> Result<ImportRequest, String> {
        let file = self.value("File").trim();
        let name = self.value("Name").trim();
        if file.is_empty() {
            return Err("give the file to import (PEM, DER or PFX)".into());
        }
        if name.is_empty() {
            return Err("give a workspace name for it".into());
        }
        let mut files = vec![PathBuf::from(file)];
        let key = self.value("Key file").trim();
        if !key.is_empty() {
            files.push(PathBuf::from(key));
        }
        let pw = self.value("Password");
        Ok(ImportRequest {
            files,
            name: name.to_string(),
            password: (!pw.is_empty()).then(|| pw.to_string()),
            force: false,
        })
    }
}

/// An engine error as the TUI shows it: the engine's message (the fix in domain words), and,
/// where the TUI can do that fix, the field or key that does it.
pub fn error_text(e: &impl crate::error::Classified) -> String {
    use crate::error::Remedy as R;
    let hint = e.remedy().and_then(|r| match r {
        R::Replace => Some("d on the PKI tab deletes the one there; or pick another name"),
        R::Password => Some("fill in the Password field"),
        R::Issuer => Some("choose another in the Issuer field"),
        R::Pathlen => Some("set the Pathlen field"),
        R::CommonName | R::Name => Some("fill in the Name field"),
        R::Validity | R::CrlDays => Some("set the Days field to 1 or more"),
        R::Rekey => Some("choose a key in the Key field for a new one"),
        R::ImportIssuer => Some("i on the PKI tab imports it"),
        R::CertificatesOnly => Some("choose pem in Formats"),
        R::Overwrite | R::OutDir => Some("choose another directory in To dir"),
        R::Workspace => Some("start chainsmith with another workspace"),
        R::RegisterDevice => Some("a on the Hub tab registers the device selected on the PKI tab"),
        R::RegisterCa | R::VerificationCertificate => {
            Some("v on the Hub tab proves the CA selected on the PKI tab")
        }
        R::StartHub => Some("s on the Hub tab starts it"),
        R::MakeRoot => Some("n on the PKI tab makes one"),
        R::IssueDevices => Some("n on the PKI tab makes devices"),
        R::ListEntities => Some("the PKI tab lists them"),
        R::OneFormat
        | R::SignCsr
        | R::PickCa
        | R::PickDevice
        | R::UnregisterCa
        | R::UnregisterDevice
        | R::Thumbprints
        | R::CopyThumbprint
        | R::NoThumbprints
        | R::HubCaFile
        | R::InitWorkspace
        | R::ShowEntity
        | R::WeakKeyFixture
        | R::Port
        | R::Shard
        | R::NewOutDir
        | R::DeviceFiles
        | R::HubTransport => None,
    });
    match hint {
        Some(h) => format!("{e} ({h})"),
        None => e.to_string(),
    }
}
