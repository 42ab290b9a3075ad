//! "Now" is an input. Every engine function that compares a certificate's dates with the present
//! (days left, expired, lint, `list --expiring`, the TUI) asks the workspace's [`Clock`], so a
//! test or a reproducible run can fix the time instead of depending on the day it runs.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Environment variable the CLI reads to fix its clock (RFC 3339, e.g. `2026-06-01T12:00:00Z`).
/// For tests and reproducible output; without it the system clock is used.
pub(crate) const ENV: &str = "CHAINSMITH_NOW";

/// Where "now" comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Clock {
    /// The system clock.
    #[default]
    System,
    /// Always this instant.
    Fixed(OffsetDateTime),
    /// `start`, then running on from the moment `since`: a long-lived session (the TUI) on a
    /// fixed clock still sees time pass, so its periodic refreshes go on.
    Running {
        /// The time the clock started at.
        start: OffsetDateTime,
        /// The moment it started.
        since: std::time::Instant,
    },
}

impl Clock {
    /// The current time by this clock.
    pub fn now(&self) -> OffsetDateTime {
        match self {
            Clock::System => OffsetDateTime::now_utc(),
            Clock::Fixed(t) => *t,
            Clock::Running { start, since } => *start + since.elapsed(),
        }
    }

    /// This clock for a long-lived session: a fixed clock starts running from its instant.
    pub fn running(self) -> Clock {
        match self {
            Clock::Fixed(start) => Clock::Running {
                start,
                since: std::time::Instant::now(),
            },
            other => other,
        }
    }

    /// The clock `CHAINSMITH_NOW` asks for, or the system clock when it is unset.
    pub fn from_env() -> Result<Clock, ClockError> {
        match std::env::var(ENV) {
            Err(std::env::VarError::NotPresent) => Ok(Clock::System),
            Ok(v) if v.is_empty() => Ok(Clock::System),
            Ok(v) => OffsetDateTime::parse(&v, &Rfc3339)
                .map(Clock::Fixed)
                .map_err(|_| ClockError::NotRfc3339(v)),
            Err(std::env::VarError::NotUnicode(_)) => Err(ClockError::NotUtf8),
        }
    }
}

/// A `CHAINSMITH_NOW` that names no time.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClockError {
    /// The value (as given) is not an RFC 3339 time.
    #[error("{ENV}=\"{}\" is not an RFC 3339 time; give e.g. 2026-06-01T12:00:00Z or unset it", .0.escape_debug())]
    NotRfc3339(String),
    /// The value is not UTF-8.
    #[error("{ENV} is not UTF-8; give an RFC 3339 time or unset it")]
    NotUtf8,
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn fixed_never_moves_and_system_does_not_stand_still() {
        let t = datetime!(2026-06-01 12:00:00 UTC);
        let c = Clock::Fixed(t);
        assert_eq!(c.now(), t);
        assert_eq!(c.now(), t);
        assert!(Clock::System.now() > datetime!(2024-01-01 0:00 UTC));
        let r = c.running();
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert!(r.now() > t && r.now() < t + time::Duration::minutes(1));
    }
}
