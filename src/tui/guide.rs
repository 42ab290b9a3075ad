//! The guided workshop: the seed tutorial as steps, each checked against the real workspace
//! (not a button press), with its what-and-why and the equivalent `openssl` and `az` commands.
//! Lesson texts live in `assets/guide/` and are compiled in.

use super::theme::Theme;
use crate::ops::TreeRow;
use crate::store::Kind;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};

/// Width of the step list on a terminal `width` columns wide (the mouse handler needs it
/// too): titles when there is room, else only the marks and numbers, so the lesson keeps
/// 55 columns on a 60-column terminal.
pub fn list_width(width: u16) -> u16 {
    if width >= 100 { 40 } else { 5 }
}

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
    // The certificate comes before the registration: `a` on the Hub tab registers the device
    // selected on the PKI tab, so the id is picked once, as the certificate's CN.
    Step {
        id: "device",
        text: include_str!("../../assets/guide/05-device.txt"),
        needs: Needs::Workspace,
    },
    Step {
        id: "register",
        text: include_str!("../../assets/guide/06-register.txt"),
        needs: Needs::Hub,
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

/// Each command of a lesson section as one line (joining `\` continuations).
pub fn commands(section: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in section.lines() {
        match line.trim_end().strip_suffix('\\') {
            Some(head) => {
                cur.push_str(head.trim_end());
                cur.push(' ');
            }
            None => {
                cur.push_str(line.trim());
                out.push(std::mem::take(&mut cur));
            }
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out.retain(|c| !c.is_empty());
    out
}

/// The shell words of a command, quotes kept (split at spaces outside quotes and `<(...)`).
pub fn shell_words(cmd: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let (mut quote, mut depth) = (None::<char>, 0u32);
    for c in cmd.chars() {
        match (quote, c) {
            (Some(q), _) if c == q => quote = None,
            (None, '"' | '\'') => quote = Some(c),
            (None, '(') => depth += 1,
            (None, ')') => depth = depth.saturating_sub(1),
            (None, ' ') if depth == 0 => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

/// A command laid out for `width` columns so that what is shown can be pasted: lines break
/// between arguments and end with ` \`, continuation lines are indented; a comment wraps as
/// comment lines. (A word wider than the pane still gets a line of its own.)
pub fn wrap_command(cmd: &str, width: usize) -> Vec<String> {
    if let Some(text) = cmd.strip_prefix('#') {
        return super::ui::wrap_words(text, width.saturating_sub(2).max(10))
            .into_iter()
            .map(|l| format!("# {l}"))
            .collect();
    }
    let mut lines: Vec<String> = Vec::new();
    // (indent, text) of the line being filled; continuation lines are indented by two
    // unless a long word needs the room.
    let mut line: (usize, String) = (0, String::new());
    for w in shell_words(cmd) {
        let wlen = w.chars().count();
        // Keep room for the trailing backslash a break would add.
        if !line.1.is_empty() && line.0 + line.1.chars().count() + 1 + wlen + 2 > width {
            lines.push(format!("{}{} \\", " ".repeat(line.0), line.1));
            line = (if 2 + wlen + 2 > width { 0 } else { 2 }, String::new());
        }
        if !line.1.is_empty() {
            line.1.push(' ');
        }
        line.1.push_str(&w);
    }
    lines.push(format!("{}{}", " ".repeat(line.0), line.1));
    lines
}

/// The commands of a lesson section as text to paste (what `y` / `Y` copy).
pub fn section_text(section: &str) -> String {
    commands(section).into_iter().map(|c| c + "\n").collect()
}

/// The guide tab: its steps, each marked from the PKI tab's rows and `facts`, and the
/// selected step's text.
pub fn render(
    f: &mut Frame,
    area: Rect,
    g: &GuideState,
    pki: &super::pki::PkiState,
    facts: &Facts,
    t: Theme,
) {
    let list_w = list_width(area.width);
    let compact = list_w < 40;
    let [list, body] =
        Layout::horizontal([Constraint::Length(list_w), Constraint::Min(20)]).areas(area);
    let mut lines = Vec::new();
    for (i, s) in STEPS.iter().enumerate() {
        let (sym, style) = match status(s, &pki.rows, facts) {
            StepStatus::Done(_) => ("✓", t.ok()),
            StepStatus::Todo => ("·", t.accent()),
            StepStatus::Unavailable(_) => ("⧗", t.dim()),
        };
        let label = if compact {
            format!("{}", i + 1)
        } else {
            format!("{}. {}", i + 1, s.lesson().title)
        };
        let mut line = Line::from(vec![
            Span::styled(format!("{sym} "), style),
            Span::raw(label),
        ]);
        if i == g.selected {
            line = line.style(t.selected());
        }
        lines.push(line);
    }
    let title = match (pki.loaded, compact) {
        (_, true) => "",
        (true, false) => " Workshop ",
        (false, false) => " Workshop (reading the workspace…) ",
    };
    f.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title(Span::styled(title, t.title())),
        ),
        list,
    );

    let step = &STEPS[g.selected.min(STEPS.len() - 1)];
    let l = step.lesson();
    let mut out = vec![Line::styled(l.title.to_string(), t.title())];
    out.push(match status(step, &pki.rows, facts) {
        StepStatus::Done(d) => Line::styled(format!("✓ done: {d}"), t.ok()),
        StepStatus::Todo => {
            Line::styled("· not done yet: the check reads your workspace", t.accent())
        }
        StepStatus::Unavailable(w) => Line::styled(format!("⧗ {w}"), t.warn()),
    });
    out.push(Line::raw(""));
    out.push(Line::raw(l.why.to_string()));
    // Commands are laid out here, not by the paragraph's wrap, so every shown line pastes.
    let inner = body.width.saturating_sub(2) as usize;
    for (head, section) in [
        ("With openssl · y copies", l.openssl),
        ("With the Azure CLI · Y copies", l.az),
    ] {
        out.push(Line::raw(""));
        out.push(Line::styled(head, t.title()));
        for cmd in commands(section) {
            out.extend(
                wrap_command(&cmd, inner)
                    .into_iter()
                    .map(|s| Line::styled(s, t.accent())),
            );
        }
    }
    f.render_widget(
        Paragraph::new(out)
            .wrap(Wrap { trim: false })
            .scroll((g.scroll, 0))
            .block(Block::default().borders(Borders::ALL).title(Span::styled(
                format!(" Step {} of {} ", g.selected + 1, STEPS.len()),
                t.title(),
            ))),
        body,
    );
}
