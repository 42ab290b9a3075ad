//! Colours and symbols. Every status has a symbol as well as a colour, so the screen reads the
//! same with `NO_COLOR` set; only the terminal's own foreground/background and the eight named
//! colours are used, so it stays readable on light and dark backgrounds.

use crate::store::Kind;
use ratatui::style::{Color, Modifier, Style};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Theme {
    pub color: bool,
}

impl Theme {
    /// Colour unless `NO_COLOR` is set to a non-empty value (<https://no-color.org>).
    pub fn from_env() -> Theme {
        Theme {
            color: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        }
    }

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

    pub fn ok(self) -> Style {
        self.fg(Color::Green)
    }
    pub fn warn(self) -> Style {
        self.fg(Color::Yellow)
    }
    pub fn bad(self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }
    pub fn accent(self) -> Style {
        self.fg(Color::Cyan)
    }
    pub fn verification(self) -> Style {
        self.fg(Color::Magenta)
    }
    pub fn dim(self) -> Style {
        Style::new().add_modifier(Modifier::DIM)
    }
    pub fn title(self) -> Style {
        Style::new().add_modifier(Modifier::BOLD)
    }
    /// The selected row: reverse video works on every background.
    pub fn selected(self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED)
    }
    pub fn key(self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    /// The symbol and style of a certificate status ("valid", "expired", "revoked", "not yet valid").
    pub fn status(self, status: &str) -> (&'static str, Style) {
        match status {
            "valid" => ("✓", self.ok()),
            "expired" => ("✗", self.bad()),
            "revoked" => ("⊘", self.bad()),
            _ => ("◷", self.warn()),
        }
    }
}

/// The symbol of an entity kind in the tree.
pub fn kind_symbol(kind: Kind, self_signed: bool) -> &'static str {
    match kind {
        Kind::Root => "◆",
        Kind::Intermediate => "◇",
        Kind::Device if self_signed => "○",
        Kind::Device => "•",
        Kind::Verification => "✎",
    }
}

pub const SPINNER: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];
