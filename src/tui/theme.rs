//! Colours and symbols. Every status has a symbol as well as a colour, so the screen reads the
//! same with `NO_COLOR` set; only the terminal's own foreground/background and the eight named
//! colours are used, so it stays readable on light and dark backgrounds.

use crate::store::Kind;
use ratatui::style::{Color, Modifier, Style};

/// The styles every screen draws with: one value passed to each renderer, so colour is a
/// single switch (tests draw with [`Theme::plain`] so snapshots hold no colour codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Theme {
    /// Draw in colour; off, only bold, dim and reverse video mark things (`NO_COLOR`).
    pub color: bool,
}

impl Theme {
    /// Colour unless `NO_COLOR` is set to a non-empty value (<https://no-color.org>).
    pub fn from_env() -> Theme {
        Theme {
            color: !no_color_env(),
        }
    }

    /// As `--color` says: `always` draws in colour even with `NO_COLOR` set (the flag is the
    /// more specific wish), `never` never does, `auto` follows [`Theme::from_env`] (the TUI
    /// only ever runs on a terminal, so there is nothing else to look at).
    pub fn for_choice(choice: clap::ColorChoice) -> Theme {
        match choice {
            clap::ColorChoice::Always => Theme { color: true },
            clap::ColorChoice::Never => Theme::plain(),
            clap::ColorChoice::Auto => Theme::from_env(),
        }
    }

    /// No colour at all, whatever the environment says: what tests and snapshots draw with.
    pub fn plain() -> Theme {
        Theme { color: false }
    }

    fn fg(self, c: Color) -> Style {
        if self.color {
            Style::new().fg(c)
        } else {
            Style::new()
        }
    }

    /// Success: a valid certificate, a passed step, a verified CA (green).
    pub(crate) fn ok(self) -> Style {
        self.fg(Color::Green)
    }
    /// Needs attention but is not broken: unverified, not yet valid, a running job (yellow).
    pub(crate) fn warn(self) -> Style {
        self.fg(Color::Yellow)
    }
    /// Failure: expired, revoked, refused, an error line (bold red).
    pub(crate) fn bad(self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }
    /// What to act on or read next: CA names in the tree, commands, to-do steps (cyan).
    pub(crate) fn accent(self) -> Style {
        self.fg(Color::Cyan)
    }
    /// Verification certificates in the tree, so they stand apart from devices (magenta).
    pub(crate) fn verification(self) -> Style {
        self.fg(Color::Magenta)
    }
    /// Hints and key lists: present but quiet.
    pub(crate) fn dim(self) -> Style {
        Style::new().add_modifier(Modifier::DIM)
    }
    /// Block titles and field labels.
    pub(crate) fn title(self) -> Style {
        Style::new().add_modifier(Modifier::BOLD)
    }
    /// The selected row: reverse video works on every background.
    pub(crate) fn selected(self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED)
    }
    /// A key the user can press, in prompts and the help overlay (bold cyan).
    pub(crate) fn key(self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    /// The symbol and style of a certificate status ("valid", "expired", "revoked", "not yet valid").
    pub(crate) fn status(self, status: &str) -> (&'static str, Style) {
        match status {
            "valid" => ("✓", self.ok()),
            "expired" => ("✗", self.bad()),
            "revoked" => ("⊘", self.bad()),
            _ => ("◷", self.warn()),
        }
    }
}

/// `NO_COLOR` set to anything but the empty string (<https://no-color.org>): the TUI's theme
/// and the CLI's `--color auto` both ask this.
pub fn no_color_env() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// The symbol of an entity kind in the tree.
pub(crate) fn kind_symbol(kind: Kind, self_signed: bool) -> &'static str {
    match kind {
        Kind::Root => "◆",
        Kind::Intermediate => "◇",
        Kind::Device if self_signed => "○",
        Kind::Device => "•",
        Kind::Verification => "✎",
    }
}

/// The busy spinner's frames; renderers pick one by the app's tick counter.
pub(crate) const SPINNER: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

/// How the status line marks its message (a symbol as well as a colour).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Something is under way or worth knowing (`·`).
    Info,
    /// What the user asked for was done (`✓`).
    Ok,
    /// Not done, and why: nothing selected, a job already running (`!`).
    Warn,
    /// An engine call failed; the message says what to do (`✗`).
    Error,
}
