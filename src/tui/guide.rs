//! The guided workshop: three tracks of steps, each checked against the real workspace (not a
//! button press), with its what-and-why and the equivalent commands. The first track follows
//! the seed IoT Hub tutorial (`openssl` and `az iot hub`), the second the IoT Central X.509
//! guide through DPS (`chainsmith` and `az iot dps`), the third AWS IoT Core's CA registration
//! and just-in-time provisioning through the local AWS IoT Core (`chainsmith` and `aws iot`).
//! Lesson texts live in `assets/guide/` and are compiled in.

mod aws;
pub use aws::{AWS_EXPORT_DIR, AWS_STEPS, AwsCa, AwsFacts, aws_facts};

use super::command::Command;
use super::help::FooterKey;
use super::request::Request;
use super::theme::Level;
use super::theme::Theme;
use crate::ops::TreeRow;
use crate::store::Kind;
use crossterm::event::{KeyCode, KeyEvent};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};

/// The keys the footer names on the Guide tab: (keys, what they do, the same in a word).
pub(crate) const FOOTER_KEYS: &[FooterKey] = &[
    ("↑↓", "step", "step"),
    ("J K", "scroll", "scroll"),
    ("y", "copy", "copy"),
    ("t", "track", "track"),
];

/// Width of the step list on a terminal `width` columns wide (the mouse handler needs it
/// too). From 80 columns (the default terminal) the list has titles, shortened with "…"
/// where they do not fit, in two fifths of the width (at 120 columns and more, as much as the
/// longest title needs), as long as the lesson keeps room for its longest command word on
/// one line (so every command shown pastes); below 80 only the marks and numbers, so the
/// lesson keeps 55 columns on a 60-column terminal.
pub(crate) fn list_width(width: u16) -> u16 {
    const COMPACT: u16 = 5;
    if width < 80 {
        return COMPACT;
    }
    let (longest_title, longest_word) = *LESSON_WIDTHS.get_or_init(lesson_widths);
    // The title, its number ("11. "), the mark ("✓ ") and the borders.
    let full = longest_title + 4 + 2 + 2;
    let list = if width >= 120 {
        full.min(width / 2)
    } else {
        (width * 2 / 5).min(full)
    };
    // The word, the " \" a continued line ends with, and the borders.
    let list = list.min(width.saturating_sub(longest_word + 2 + 2));
    if list < 20 { COMPACT } else { list }
}

/// (longest step title, longest word of any lesson's commands), in columns.
static LESSON_WIDTHS: std::sync::OnceLock<(u16, u16)> = std::sync::OnceLock::new();

fn lesson_widths() -> (u16, u16) {
    let lessons: Vec<Lesson> = STEPS
        .iter()
        .chain(CENTRAL_STEPS.iter())
        .map(GuideStep::lesson)
        .collect();
    let title = lessons.iter().map(|l| l.title.chars().count()).max();
    let word = lessons
        .iter()
        .flat_map(|l| commands(l.openssl).into_iter().chain(commands(l.az)))
        .flat_map(|c| shell_words(&c))
        .map(|w| w.chars().count())
        .max();
    (title.unwrap_or(0) as u16, word.unwrap_or(0) as u16)
}

/// Which tutorial the guide follows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Track {
    /// The seed IoT Hub tutorial: a CA chain registered on the hub.
    #[default]
    Hub,
    /// The IoT Central X.509 guide: every device provisions through DPS.
    Central,
    /// AWS IoT Core: a CA registered with its registration code, JITP, the shadow.
    Aws,
}

impl Track {
    /// The track's steps, in the order the user does them.
    pub(crate) fn steps(self) -> &'static [GuideStep] {
        match self {
            Track::Hub => &STEPS,
            Track::Central => &CENTRAL_STEPS,
            Track::Aws => &AWS_STEPS,
        }
    }

    /// The track `t` switches to: each in turn.
    pub(crate) fn next(self) -> Track {
        match self {
            Track::Hub => Track::Central,
            Track::Central => Track::Aws,
            Track::Aws => Track::Hub,
        }
    }

    /// The track's name in the step list's title and the status line.
    pub(crate) fn title(self) -> &'static str {
        match self {
            Track::Hub => "IoT Hub",
            Track::Central => "IoT Central (DPS)",
            Track::Aws => "AWS IoT Core (JITP)",
        }
    }

    /// The tool of a lesson's first command section.
    pub(crate) fn tool(self) -> &'static str {
        match self {
            Track::Hub => "openssl",
            Track::Central | Track::Aws => "chainsmith",
        }
    }

    /// The cloud's own CLI, whose commands are a lesson's second section: its name in the
    /// pane and its command word in the text report.
    pub(crate) fn cloud_cli(self) -> (&'static str, &'static str) {
        match self {
            Track::Hub | Track::Central => ("Azure CLI", "az"),
            Track::Aws => ("AWS CLI", "aws"),
        }
    }
}

/// The device the IoT Central guide provisions through its enrollment group.
const CENTRAL_DEVICE: &str = "sample-device-01";
/// The IoT Central guide's self-signed devices: the individual enrollment's two certificates.
const CENTRAL_SELF_SIGNED: [&str; 2] = ["mytestselfcertprimary", "mytestselfcertsecondary"];

/// One step of a guide track: its lesson text (parsed into a [`Lesson`]), checked by
/// [`status`] under its id.
pub struct GuideStep {
    /// The step's stable name (`root`, `hub-ca`, `c-group`): what [`status`] checks and
    /// `guide --json` reports.
    pub id: &'static str,
    /// The lesson file from `assets/guide/`: title line, why, then `--- openssl` (or
    /// `--- chainsmith`) and `--- az` (or `--- aws`) command sections.
    text: &'static str,
}

/// The IoT Hub track: the seed tutorial from a root CA to disabling a device.
pub const STEPS: [GuideStep; 9] = [
    GuideStep {
        id: "root",
        text: include_str!("../../assets/guide/01-root.txt"),
    },
    GuideStep {
        id: "intermediate",
        text: include_str!("../../assets/guide/02-intermediate.txt"),
    },
    GuideStep {
        id: "hub-ca",
        text: include_str!("../../assets/guide/03-hub-ca.txt"),
    },
    GuideStep {
        id: "verify",
        text: include_str!("../../assets/guide/04-verify.txt"),
    },
    // The certificate comes before the registration: `a` on the Hub tab registers the device
    // selected on the PKI tab, so the id is picked once, as the certificate's CN.
    GuideStep {
        id: "device",
        text: include_str!("../../assets/guide/05-device.txt"),
    },
    GuideStep {
        id: "register",
        text: include_str!("../../assets/guide/06-register.txt"),
    },
    GuideStep {
        id: "connect",
        text: include_str!("../../assets/guide/07-connect.txt"),
    },
    GuideStep {
        id: "renew",
        text: include_str!("../../assets/guide/08-renew.txt"),
    },
    GuideStep {
        id: "disable",
        text: include_str!("../../assets/guide/09-disable.txt"),
    },
];

/// The IoT Central guide through the local DPS: group enrollment, individual enrollment, and
/// rolling the group's certificates.
pub const CENTRAL_STEPS: [GuideStep; 11] = [
    GuideStep {
        id: "c-root",
        text: include_str!("../../assets/guide/central-01-root.txt"),
    },
    GuideStep {
        id: "c-device",
        text: include_str!("../../assets/guide/central-02-device.txt"),
    },
    GuideStep {
        id: "c-verify",
        text: include_str!("../../assets/guide/central-03-verify.txt"),
    },
    GuideStep {
        id: "c-group",
        text: include_str!("../../assets/guide/central-04-group.txt"),
    },
    GuideStep {
        id: "c-provision",
        text: include_str!("../../assets/guide/central-05-provision.txt"),
    },
    GuideStep {
        id: "c-telemetry",
        text: include_str!("../../assets/guide/central-06-telemetry.txt"),
    },
    GuideStep {
        id: "c-selfsigned",
        text: include_str!("../../assets/guide/central-07-selfsigned.txt"),
    },
    GuideStep {
        id: "c-enroll",
        text: include_str!("../../assets/guide/central-08-enroll.txt"),
    },
    GuideStep {
        id: "c-individual",
        text: include_str!("../../assets/guide/central-09-individual.txt"),
    },
    GuideStep {
        id: "c-secondary",
        text: include_str!("../../assets/guide/central-10-secondary.txt"),
    },
    GuideStep {
        id: "c-roll",
        text: include_str!("../../assets/guide/central-11-roll.txt"),
    },
];

/// A lesson split into its parts.
pub struct Lesson<'a> {
    /// The step's title (the file's first line).
    pub title: &'a str,
    /// What the step does and why, in prose; it names the TUI key that does it.
    pub why: &'a str,
    /// The first command section: `openssl` (IoT Hub track) or `chainsmith` (Central track).
    pub openssl: &'a str,
    /// The cloud CLI's commands that do the same against the real cloud (`az`, or `aws` on
    /// the AWS track).
    pub az: &'a str,
}

impl GuideStep {
    /// The step's text split into title, why and the two command sections.
    pub fn lesson(&self) -> Lesson<'static> {
        let (head, rest) = self
            .text
            .split_once("\n--- openssl\n")
            .or_else(|| self.text.split_once("\n--- chainsmith\n"))
            .unwrap_or((self.text, ""));
        let (openssl, az) = rest
            .split_once("--- az\n")
            .or_else(|| rest.split_once("--- aws\n"))
            .unwrap_or((rest, ""));
        let (title, why) = head.split_once('\n').unwrap_or((head, ""));
        Lesson {
            title,
            why: why.trim(),
            openssl: openssl.trim_end(),
            az: az.trim_end(),
        }
    }
}

/// Whether a guide step is done, as the workspace and the hub show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepStatus {
    /// Done: what shows it ("root \"my-root\"").
    Done(String),
    /// Not done yet.
    Todo,
}

/// What the guide knows beyond the workspace's entities: the local hub's registry, the
/// last connection test's outcome, which devices were renewed, and the local DPS's state.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Facts {
    /// The hub's CAs: (name, verified).
    pub hub_cas: Vec<(String, bool)>,
    /// The hub's devices: (id, enabled).
    pub hub_devices: Vec<(String, bool)>,
    /// Devices whose connection test passed, from either face (the workspace's record,
    /// [`crate::mqtt::record`], and this session's Connect tab), oldest first.
    pub connected: Vec<String>,
    /// Devices with a renewal in their history.
    pub renewed: Vec<String>,
    /// The local DPS (`dps.json`, read through the engine).
    pub dps: crate::hub::dps::DpsState,
    /// The local AWS IoT Core (`WS/aws/`, read through its registry) and the AWS export.
    pub aws: AwsFacts,
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
    if let Ok(st) = crate::hub::HubStore::open(ws.root()).and_then(|s| s.dps_load()) {
        f.dps = st;
    }
    f.renewed = renewed(ws, rows);
    f.connected = passed_devices(ws.root());
    f.aws = aws_facts(ws, &guide_dir());
    f
}

/// The directory the AWS track's export is looked for in: where chainsmith runs.
pub(crate) fn guide_dir() -> std::path::PathBuf {
    std::env::current_dir().unwrap_or_default()
}

/// The devices the workspace's record says passed a connection test, oldest first.
pub(crate) fn passed_devices(ws_root: &std::path::Path) -> Vec<String> {
    crate::mqtt::record::passed(ws_root)
        .into_iter()
        .map(|p| p.device)
        .collect()
}

/// Devices with at least one past certificate (checked for the first 2,000 devices).
pub(crate) fn renewed(ws: &crate::store::Workspace, rows: &[TreeRow]) -> Vec<String> {
    rows.iter()
        .filter(|r| r.meta.kind == Kind::Device)
        .take(2000)
        .filter(|r| crate::ops::lifecycle::history(ws, &r.meta.name).is_ok_and(|h| !h.is_empty()))
        .map(|r| r.meta.name.clone())
        .collect()
}

/// Check a step from the workspace's entities and the facts.
pub fn status(step: &GuideStep, rows: &[TreeRow], facts: &Facts) -> StepStatus {
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
            .last()
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
        id if id.starts_with("a-") => aws::aws_status(id, rows, &facts.aws),
        id => central_status(id, rows, facts),
    };
    found.map(StepStatus::Done).unwrap_or(StepStatus::Todo)
}

/// The Central track's checks: workspace entities and the local DPS's state.
fn central_status(id: &str, rows: &[TreeRow], facts: &Facts) -> Option<String> {
    let dps = &facts.dps;
    let device = |name: &str| {
        rows.iter()
            .find(|r| r.meta.kind == Kind::Device && r.meta.name == name)
    };
    // A CA's DPS entry (names may repeat: one entry per certificate): verified, and when added.
    let dps_ca = |name: &str| {
        dps.cas
            .iter()
            .filter(|c| c.name == name)
            .max_by_key(|c| (c.verified, c.added))
    };
    let verified = |name: &str| dps_ca(name).is_some_and(|c| c.verified);
    let assigned = |by: &'static str| {
        dps.registrations
            .iter()
            .filter(move |r| r.status == "assigned" && r.enrollment.starts_with(by))
    };
    match id {
        "c-root" => rows
            .iter()
            .find(|r| r.meta.kind == Kind::Root && r.meta.has_key)
            .map(|r| format!("root \"{}\"", r.meta.name)),
        "c-device" => device(CENTRAL_DEVICE)
            .filter(|r| !r.meta.self_signed && r.meta.issuer.is_some())
            .map(|r| {
                format!(
                    "device \"{CENTRAL_DEVICE}\" issued by \"{}\"",
                    r.meta.issuer.as_deref().unwrap_or("?")
                )
            }),
        "c-verify" => dps
            .cas
            .iter()
            .find(|c| c.verified)
            .map(|c| format!("CA \"{}\" is Verified in DPS", c.name)),
        "c-group" => dps
            .groups
            .iter()
            .find(|g| g.settings.enabled && verified(&g.primary))
            .map(|g| {
                format!(
                    "enrollment group \"{}\" (primary CA \"{}\", Verified)",
                    g.name, g.primary
                )
            }),
        "c-provision" => assigned("group ")
            .find(|r| r.registration_id == CENTRAL_DEVICE)
            .map(|r| {
                format!(
                    "\"{}\" assigned to {} by {}",
                    r.registration_id, r.assigned_hub, r.enrollment
                )
            }),
        "c-telemetry" => facts.connected.iter().rev().find_map(|d| {
            dps.registrations
                .iter()
                .any(|r| r.status == "assigned" && &r.device_id == d)
                .then(|| {
                    format!("\"{d}\" (provisioned by DPS) connected and its messages came back")
                })
        }),
        "c-selfsigned" => CENTRAL_SELF_SIGNED
            .iter()
            .all(|n| device(n).is_some_and(|r| r.meta.self_signed))
            .then(|| {
                format!(
                    "self-signed devices \"{}\" and \"{}\"",
                    CENTRAL_SELF_SIGNED[0], CENTRAL_SELF_SIGNED[1]
                )
            }),
        "c-enroll" => dps
            .individuals
            .iter()
            .find(|i| i.settings.enabled && i.primary.is_some())
            .map(|i| {
                format!(
                    "individual enrollment \"{}\" ({})",
                    i.registration_id,
                    if i.secondary.is_some() {
                        "primary and secondary thumbprints"
                    } else {
                        "primary thumbprint only"
                    }
                )
            }),
        "c-individual" => assigned("individual ").next().map(|r| {
            format!(
                "\"{}\" assigned to {} by its individual enrollment",
                r.registration_id, r.assigned_hub
            )
        }),
        "c-secondary" => dps
            .groups
            .iter()
            .find_map(|g| g.secondary.as_ref().filter(|s| verified(s)).map(|s| (g, s)))
            .map(|(g, s)| {
                format!(
                    "enrollment group \"{}\" has secondary CA \"{s}\" (Verified)",
                    g.name
                )
            }),
        // Rolled: the group's primary is now a CA that DPS took in after the group was made
        // (the secondary promoted, or a new primary), and it is Verified.
        "c-roll" => dps.groups.iter().find_map(|g| {
            dps_ca(&g.primary)
                .filter(|c| c.verified && c.added > g.settings.added)
                .map(|_| {
                    format!(
                        "enrollment group \"{}\" rolled to primary CA \"{}\"",
                        g.name, g.primary
                    )
                })
        }),
        _ => None,
    }
}

/// What the Guide tab shows and remembers.
#[derive(Clone, Debug, Default)]
pub struct GuideState {
    /// The tutorial followed (`t` switches).
    pub track: Track,
    /// The step shown: an index into the track's steps.
    pub selected: usize,
    /// First line of the step's text shown (`J`/`K`).
    pub(crate) scroll: u16,
    /// Devices with a renewal in their history (read in the background).
    pub(crate) renewed: Vec<String>,
    /// Devices whose connection test passed, as the workspace's record says (read in the
    /// background; a test run with `chainsmith connect` counts too).
    pub(crate) passed: Vec<String>,
    /// The user picked a step (↑↓, a click): until then the guide shows the first step not
    /// done yet, following the workspace as steps get done.
    pub(crate) picked: bool,
    /// The local AWS IoT Core's state (read in the background).
    pub(crate) aws: AwsFacts,
    /// When the hub registry and renewals were last read (re-read while the tab is shown).
    pub(crate) last_facts: Option<time::OffsetDateTime>,
}

impl GuideState {
    /// A key on the Guide tab: ↑↓ pick a step, `J`/`K` scroll its text, `t` switches track,
    /// `y`/`Y` copy the step's commands.
    pub(crate) fn key(&mut self, k: KeyEvent) -> Option<Request> {
        match k.code {
            KeyCode::Up | KeyCode::Char('k') => {
                self.selected = self.selected.saturating_sub(1);
                self.scroll = 0;
                self.picked = true;
            }
            KeyCode::Down | KeyCode::Char('j') => {
                let n = self.track.steps().len();
                self.selected = (self.selected + 1).min(n - 1);
                self.scroll = 0;
                self.picked = true;
            }
            // The other tutorial: its steps start from the first.
            KeyCode::Char('t') => {
                self.track = self.track.next();
                self.selected = 0;
                self.scroll = 0;
                self.picked = false;
                return Some(Request::Say(
                    Level::Ok,
                    format!("guide: the {} track", self.track.title()),
                ));
            }
            KeyCode::Char('J') => self.scroll = self.scroll.saturating_add(1),
            KeyCode::Char('K') => self.scroll = self.scroll.saturating_sub(1),
            // Copy the step's commands whole: what the pane shows wraps to its width.
            KeyCode::Char(c @ ('y' | 'Y')) => {
                let steps = self.track.steps();
                let n = self.selected.min(steps.len() - 1);
                let l = steps[n].lesson();
                let (what, section) = if c == 'y' {
                    (self.track.tool(), l.openssl)
                } else {
                    (self.track.cloud_cli().0, l.az)
                };
                return Some(Request::SayAndRun(
                    Level::Ok,
                    format!(
                        "step {}'s {what} commands sent to the clipboard (OSC 52)",
                        n + 1
                    ),
                    Command::Copy(section_text(section)),
                ));
            }
            _ => {}
        }
        None
    }

    /// A click on row `row` of the step list picks that step.
    pub(crate) fn click_row(&mut self, row: usize) {
        if row < self.track.steps().len() {
            self.selected = row;
            self.scroll = 0;
            self.picked = true;
        }
    }
}

/// The step the guide opens at: the first not done yet (the last when all are done).
pub(crate) fn first_unfinished(track: Track, rows: &[TreeRow], facts: &Facts) -> usize {
    let steps = track.steps();
    steps
        .iter()
        .position(|s| status(s, rows, facts) == StepStatus::Todo)
        .unwrap_or(steps.len() - 1)
}

/// A track of the guide as plain text, for `chainsmith guide --text [--central]`.
pub(crate) fn text_report(track: Track, rows: &[TreeRow], facts: &Facts) -> String {
    let mut out = String::new();
    for (i, s) in track.steps().iter().enumerate() {
        let l = s.lesson();
        let st = status(s, rows, facts);
        let (mark, note) = match &st {
            StepStatus::Done(d) => ("✓", format!("done: {d}")),
            StepStatus::Todo => ("·", "to do".to_string()),
        };
        out.push_str(&format!(
            "{mark} {}. {} ({note})\n   {}\n",
            i + 1,
            l.title,
            l.why
        ));
        out.push_str(&format!("   {}:\n", track.tool()));
        for line in l.openssl.lines() {
            out.push_str(&format!("     {line}\n"));
        }
        out.push_str(&format!("   {}:\n", track.cloud_cli().1));
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
fn wrap_command(cmd: &str, width: usize) -> Vec<String> {
    if let Some(text) = cmd.strip_prefix('#') {
        return super::widgets::wrap_whole_words(text, width.saturating_sub(2).max(10))
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
pub(crate) fn render(
    f: &mut Frame,
    area: Rect,
    g: &GuideState,
    rows: &[TreeRow],
    loaded: bool,
    facts: &Facts,
    t: Theme,
) {
    let list_w = list_width(area.width);
    // Marks and numbers only: the list is too narrow for any title.
    let compact = list_w < 20;
    let [list, body] =
        Layout::horizontal([Constraint::Length(list_w), Constraint::Min(20)]).areas(area);
    let steps = g.track.steps();
    let mut lines = Vec::new();
    for (i, s) in steps.iter().enumerate() {
        let (sym, style) = match status(s, rows, facts) {
            StepStatus::Done(_) => ("✓", t.ok()),
            StepStatus::Todo => ("·", t.accent()),
        };
        let label = if compact {
            format!("{}", i + 1)
        } else {
            // Cut with "…" to the list's width (borders and mark off): a cut title says so.
            let room = list_w.saturating_sub(4) as usize;
            super::widgets::elide_right(&format!("{}. {}", i + 1, s.lesson().title), room)
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
    let title = match (loaded, compact) {
        (_, true) => String::new(),
        // The first track keeps its plain title; the second names itself.
        (true, false) if g.track == Track::Hub => " Workshop ".to_string(),
        (true, false) => format!(" Workshop · {} ", g.track.title()),
        (false, false) => " Workshop (reading the workspace…) ".to_string(),
    };
    f.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title(Span::styled(title, t.title())),
        ),
        list,
    );

    let step = &steps[g.selected.min(steps.len() - 1)];
    let l = step.lesson();
    let mut out = vec![Line::styled(l.title.to_string(), t.title())];
    out.push(match status(step, rows, facts) {
        StepStatus::Done(d) => Line::styled(format!("✓ done: {d}"), t.ok()),
        StepStatus::Todo => {
            Line::styled("· not done yet: the check reads your workspace", t.accent())
        }
    });
    out.push(Line::raw(""));
    out.push(Line::raw(l.why.to_string()));
    // Commands are laid out here, not by the paragraph's wrap, so every shown line pastes.
    let inner = body.width.saturating_sub(2) as usize;
    let first = format!("With {} · y copies", g.track.tool());
    let second = format!("With the {} · Y copies", g.track.cloud_cli().0);
    for (head, section) in [(first.as_str(), l.openssl), (second.as_str(), l.az)] {
        out.push(Line::raw(""));
        out.push(Line::styled(head.to_string(), t.title()));
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
                format!(" Step {} of {} ", g.selected + 1, steps.len()),
                t.title(),
            ))),
        body,
    );
}
