//! The guided workshop: the seed tutorial as steps, each checked against the real workspace
//! (not a button press), with its what-and-why and the equivalent `openssl` and `az` commands.
//! Lesson texts live in `assets/guide/` and are compiled in.

use super::app::App;
use crate::ops::TreeRow;
use crate::store::Kind;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};

/// Width of the step list (the mouse handler needs it too).
pub const LIST_WIDTH: u16 = 40;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needs {
    Workspace,
    Hub,
    Connect,
    Renew,
}

pub struct Step {
    pub id: &'static str,
    pub text: &'static str,
    pub needs: Needs,
}

pub const STEPS: [Step; 9] = [
    Step {
        id: "root",
        text: include_str!("../../assets/guide/01-root.txt"),
        needs: Needs::Workspace,
    },
    Step {
        id: "intermediate",
        text: include_str!("../../assets/guide/02-intermediate.txt"),
        needs: Needs::Workspace,
    },
    Step {
        id: "hub-ca",
        text: include_str!("../../assets/guide/03-hub-ca.txt"),
        needs: Needs::Hub,
    },
    Step {
        id: "verify",
        text: include_str!("../../assets/guide/04-verify.txt"),
        needs: Needs::Workspace,
    },
    Step {
        id: "register",
        text: include_str!("../../assets/guide/05-register.txt"),
        needs: Needs::Hub,
    },
    Step {
        id: "device",
        text: include_str!("../../assets/guide/06-device.txt"),
        needs: Needs::Workspace,
    },
    Step {
        id: "connect",
        text: include_str!("../../assets/guide/07-connect.txt"),
        needs: Needs::Connect,
    },
    Step {
        id: "renew",
        text: include_str!("../../assets/guide/08-renew.txt"),
        needs: Needs::Renew,
    },
    Step {
        id: "disable",
        text: include_str!("../../assets/guide/09-disable.txt"),
        needs: Needs::Hub,
    },
];

/// A lesson split into its parts.
pub struct Lesson<'a> {
    pub title: &'a str,
    pub why: &'a str,
    pub openssl: &'a str,
    pub az: &'a str,
}

impl Step {
    pub fn lesson(&self) -> Lesson<'static> {
        let (head, rest) = self
            .text
            .split_once("\n--- openssl\n")
            .unwrap_or((self.text, ""));
        let (openssl, az) = rest.split_once("--- az\n").unwrap_or((rest, ""));
        let (title, why) = head.split_once('\n').unwrap_or((head, ""));
        Lesson {
            title,
            why: why.trim(),
            openssl: openssl.trim_end(),
            az: az.trim_end(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepStatus {
    Done(String),
    Todo,
    /// The step needs an engine this build does not have.
    Unavailable(&'static str),
}

/// What the guide knows beyond the workspace's entities: the local hub's registry, the
/// last connection test's outcome, and which devices were renewed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    /// The hub's CAs: (name, verified).
    pub hub_cas: Vec<(String, bool)>,
    /// The hub's devices: (id, enabled).
    pub hub_devices: Vec<(String, bool)>,
    /// The device whose connection test passed (this session).
    pub connected: Option<String>,
    /// Devices with a renewal in their history.
    pub renewed: Vec<String>,
}

/// The facts on disk: the hub registry and the devices' histories (no connection test).
pub fn facts_from_disk(ws: &crate::store::Workspace, rows: &[TreeRow]) -> Facts {
    let mut f = Facts::default();
    if let Ok(reg) = crate::hub::HubStore::open(ws.root()).and_then(|s| s.load()) {
        f.hub_cas = reg
            .cas
            .iter()
            .map(|c| (c.name.clone(), c.verified))
            .collect();
        f.hub_devices = reg
            .devices
            .iter()
            .map(|d| (d.id.clone(), d.enabled))
            .collect();
    }
    f.renewed = renewed(ws, rows);
    f
}

/// Devices with at least one past certificate (checked for the first 2,000 devices).
pub fn renewed(ws: &crate::store::Workspace, rows: &[TreeRow]) -> Vec<String> {
    rows.iter()
        .filter(|r| r.meta.kind == Kind::Device)
        .take(2000)
        .filter(|r| crate::ops::lifecycle::history(ws, &r.meta.name).is_ok_and(|h| !h.is_empty()))
        .map(|r| r.meta.name.clone())
        .collect()
}

/// Check a step from the workspace's entities and the facts.
pub fn status(step: &Step, rows: &[TreeRow], facts: &Facts) -> StepStatus {
    let find = |pred: &dyn Fn(&TreeRow) -> bool| {
        rows.iter().find(|r| pred(r)).map(|r| r.meta.name.clone())
    };
    let found = match step.id {
        "root" => {
            find(&|r| r.meta.kind == Kind::Root && r.meta.has_key).map(|n| format!("root \"{n}\""))
        }
        "intermediate" => find(&|r| r.meta.kind == Kind::Intermediate && r.meta.has_key)
            .map(|n| format!("intermediate \"{n}\"")),
        "hub-ca" => facts.hub_cas.first().map(|(n, v)| {
            format!(
                "CA \"{n}\" is in the local hub ({})",
                if *v { "Verified" } else { "Unverified" }
            )
        }),
        "verify" => facts
            .hub_cas
            .iter()
            .find(|(_, v)| *v)
            .map(|(n, _)| format!("CA \"{n}\" is Verified in the local hub"))
            .or_else(|| {
                rows.iter()
                    .find(|r| r.meta.kind == Kind::Verification)
                    .map(|r| {
                        format!(
                            "verification certificate for {} (code {})",
                            r.meta.issuer.as_deref().unwrap_or("?"),
                            r.meta.code.as_deref().unwrap_or("?")
                        )
                    })
            }),
        "register" => facts
            .hub_devices
            .first()
            .map(|(d, _)| format!("device \"{d}\" is registered in the local hub")),
        "device" => {
            find(&|r| r.meta.kind == Kind::Device && !r.meta.self_signed && r.meta.issuer.is_some())
                .map(|n| format!("device \"{n}\""))
        }
        "connect" => facts
            .connected
            .as_ref()
            .map(|d| format!("\"{d}\" connected and its messages came back")),
        "renew" => facts
            .renewed
            .first()
            .map(|d| format!("\"{d}\" was renewed (its old certificate is in its history)")),
        "disable" => facts
            .hub_devices
            .iter()
            .find(|(_, e)| !*e)
            .map(|(d, _)| format!("device \"{d}\" is disabled in the local hub")),
        _ => None,
    };
    found.map(StepStatus::Done).unwrap_or(StepStatus::Todo)
}

#[derive(Clone, Debug, Default)]
pub struct GuideState {
    pub selected: usize,
    pub scroll: u16,
    /// Devices with a renewal in their history (read in the background).
    pub renewed: Vec<String>,
    pub last_facts: Option<time::OffsetDateTime>,
}

/// The guide as plain text, for `chainsmith guide --text`.
pub fn text_report(rows: &[TreeRow], facts: &Facts) -> String {
    let mut out = String::new();
    for (i, s) in STEPS.iter().enumerate() {
        let l = s.lesson();
        let st = status(s, rows, facts);
        let (mark, note) = match &st {
            StepStatus::Done(d) => ("✓", format!("done: {d}")),
            StepStatus::Todo => ("·", "to do".to_string()),
            StepStatus::Unavailable(w) => ("⧗", (*w).to_string()),
        };
        out.push_str(&format!(
            "{mark} {}. {} ({note})\n   {}\n",
            i + 1,
            l.title,
            l.why
        ));
        out.push_str("   openssl:\n");
        for line in l.openssl.lines() {
            out.push_str(&format!("     {line}\n"));
        }
        out.push_str("   az:\n");
        for line in l.az.lines() {
            out.push_str(&format!("     {line}\n"));
        }
    }
    out
}

pub fn render(f: &mut Frame, area: Rect, app: &App) {
    let t = app.theme;
    let [list, body] =
        Layout::horizontal([Constraint::Length(LIST_WIDTH), Constraint::Min(20)]).areas(area);
    let facts = app.guide_facts();
    let mut lines = Vec::new();
    for (i, s) in STEPS.iter().enumerate() {
        let (sym, style) = match status(s, &app.pki.rows, &facts) {
            StepStatus::Done(_) => ("✓", t.ok()),
            StepStatus::Todo => ("·", t.accent()),
            StepStatus::Unavailable(_) => ("⧗", t.dim()),
        };
        let mut line = Line::from(vec![
            Span::styled(format!("{sym} "), style),
            Span::raw(format!("{}. {}", i + 1, s.lesson().title)),
        ]);
        if i == app.guide.selected {
            line = line.style(t.selected());
        }
        lines.push(line);
    }
    let title = if app.pki.loaded {
        " Workshop "
    } else {
        " Workshop (reading the workspace…) "
    };
    f.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title(Span::styled(title, t.title())),
        ),
        list,
    );

    let step = &STEPS[app.guide.selected.min(STEPS.len() - 1)];
    let l = step.lesson();
    let mut out = vec![Line::styled(l.title.to_string(), t.title())];
    out.push(match status(step, &app.pki.rows, &facts) {
        StepStatus::Done(d) => Line::styled(format!("✓ done: {d}"), t.ok()),
        StepStatus::Todo => {
            Line::styled("· not done yet: the check reads your workspace", t.accent())
        }
        StepStatus::Unavailable(w) => Line::styled(format!("⧗ {w}"), t.warn()),
    });
    out.push(Line::raw(""));
    out.push(Line::raw(l.why.to_string()));
    out.push(Line::raw(""));
    out.push(Line::styled("With openssl", t.title()));
    out.extend(
        l.openssl
            .lines()
            .map(|s| Line::styled(format!("  {s}"), t.accent())),
    );
    out.push(Line::raw(""));
    out.push(Line::styled("With the Azure CLI", t.title()));
    out.extend(
        l.az.lines()
            .map(|s| Line::styled(format!("  {s}"), t.accent())),
    );
    f.render_widget(
        Paragraph::new(out)
            .wrap(Wrap { trim: false })
            .scroll((app.guide.scroll, 0))
            .block(Block::default().borders(Borders::ALL).title(Span::styled(
                format!(" Step {} of {} ", app.guide.selected + 1, STEPS.len()),
                t.title(),
            ))),
        body,
    );
}
