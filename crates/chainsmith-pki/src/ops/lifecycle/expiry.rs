//! Expiry windows and issuers.

use super::{ExpiryWindowError, Result};
use crate::ops::{TreeRow, tree};
use crate::pki::issue::{self};
use crate::store::Workspace;
use time::{Duration, OffsetDateTime};

/// The longest expiry window: past 9999-12-31 there is nothing left to expire.
pub const MAX_WINDOW_DAYS: i64 = 3_660_000;

/// Parse a window like `30d`, `12h`, `2w` or a bare number of days, up to
/// [`MAX_WINDOW_DAYS`] (about 10,000 years, more than X.509 time can span).
pub fn parse_window(s: &str) -> Result<Duration> {
    let t = s.trim().to_ascii_lowercase();
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    if num.is_empty() {
        return Err(ExpiryWindowError::NotANumber {
            given: s.to_string(),
        }
        .into());
    }
    // Digits only, so a failed parse means too many of them.
    let n: i64 = num.parse().unwrap_or(i64::MAX);
    let minutes_per_unit: i64 = match unit {
        "" | "d" | "day" | "days" => 24 * 60,
        "h" | "hour" | "hours" => 60,
        "w" | "week" | "weeks" => 7 * 24 * 60,
        "m" | "min" | "minutes" => 1,
        "y" | "year" | "years" => 365 * 24 * 60,
        _ => {
            return Err(ExpiryWindowError::UnknownUnit {
                given: s.to_string(),
                unit: unit.to_string(),
            }
            .into());
        }
    };
    match n.checked_mul(minutes_per_unit) {
        Some(m) if m <= MAX_WINDOW_DAYS * 24 * 60 => Ok(Duration::minutes(m)),
        _ => Err(ExpiryWindowError::TooLong {
            given: s.to_string(),
            max_days: MAX_WINDOW_DAYS,
        }
        .into()),
    }
}

/// Entities whose certificate ends within `window` from `now` (already expired included),
/// soonest first.
pub fn expiring(ws: &Workspace, window: Duration, now: OffsetDateTime) -> Result<Vec<TreeRow>> {
    let (metas, _) = ws.list()?;
    let limit = now
        .checked_add(window)
        .filter(|l| *l <= issue::LATEST)
        .ok_or_else(|| ExpiryWindowError::PastLatest {
            days: window.whole_days(),
            most: (issue::LATEST - now).whole_days().max(0),
        })?;
    let mut rows: Vec<TreeRow> = tree(metas, now)
        .into_iter()
        .filter(|r| r.meta.not_after <= limit)
        .map(|mut r| {
            r.depth = 0;
            r
        })
        .collect();
    rows.sort_by(|a, b| (a.meta.not_after, &a.meta.name).cmp(&(b.meta.not_after, &b.meta.name)));
    Ok(rows)
}
