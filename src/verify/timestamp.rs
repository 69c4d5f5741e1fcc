//! Timestamps: their units (unix seconds, milliseconds, RFC 3339 text), and the check of a
//! signed timestamp against the tolerance. The signed payload always uses the value exactly
//! as sent; only this check reads it as a time.

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The unit of a timestamp value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TimeUnit {
    /// Unix seconds, an integer.
    #[default]
    Seconds,
    /// Unix milliseconds, an integer.
    Milliseconds,
    /// RFC 3339 / ISO 8601 date and time (`2026-12-01T00:15:24.123Z`, `…+01:00`): fractional
    /// seconds, `Z` and numeric offsets accepted (Twitch, Box, Zendesk).
    Rfc3339,
}

/// Longest timestamp text read; anything longer is refused before parsing.
const MAX_LEN: usize = 64;

/// Why a timestamp was refused. Carries no value from the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    #[error("the signed timestamp is not a valid {0} timestamp")]
    Unreadable(&'static str),
    #[error("the signed timestamp is {0}s old, beyond the tolerance of {1}s")]
    Stale(u64, u64),
    #[error("the signed timestamp is {0}s in the future, beyond the tolerance of {1}s")]
    Future(u64, u64),
}

impl TimeUnit {
    pub fn name(self) -> &'static str {
        match self {
            TimeUnit::Seconds => "unix seconds",
            TimeUnit::Milliseconds => "unix milliseconds",
            TimeUnit::Rfc3339 => "RFC 3339",
        }
    }

    /// Reads `raw` (as sent, surrounding spaces ignored) as unix seconds, rounded down.
    pub fn unix_seconds(self, raw: &str) -> Result<i64, TimestampError> {
        let raw = raw.trim();
        let bad = TimestampError::Unreadable(self.name());
        if raw.is_empty() || raw.len() > MAX_LEN {
            return Err(bad);
        }
        match self {
            TimeUnit::Seconds => raw.parse().map_err(|_| bad),
            TimeUnit::Milliseconds => raw.parse::<i64>().map(|ms| ms.div_euclid(1000)).map_err(|_| bad),
            TimeUnit::Rfc3339 => {
                // The `time` parser wants the upper-case `T` and `Z` RFC 3339 allows in
                // lower case too.
                let upper = raw.to_ascii_uppercase();
                OffsetDateTime::parse(&upper, &Rfc3339).map(|t| t.unix_timestamp()).map_err(|_| bad)
            }
        }
    }

    /// Writes `secs` the way a provider using this unit would send it (for `portcullis sign`).
    pub fn render(self, secs: u64) -> String {
        match self {
            TimeUnit::Seconds => secs.to_string(),
            TimeUnit::Milliseconds => (secs * 1000).to_string(),
            TimeUnit::Rfc3339 => i64::try_from(secs)
                .ok()
                .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
                .and_then(|t| t.format(&Rfc3339).ok())
                .unwrap_or_else(|| secs.to_string()),
        }
    }
}

/// Holds a signed timestamp `raw` to `tolerance` seconds either side of `now`.
pub fn check(raw: &str, unit: TimeUnit, now: u64, tolerance: u64) -> Result<(), TimestampError> {
    let secs = unit.unix_seconds(raw)?;
    let now = i64::try_from(now).unwrap_or(i64::MAX);
    if secs < now {
        let age = now.abs_diff(secs);
        if age > tolerance {
            return Err(TimestampError::Stale(age, tolerance));
        }
    } else {
        let ahead = secs.abs_diff(now);
        if ahead > tolerance {
            return Err(TimestampError::Future(ahead, tolerance));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_units() {
        assert_eq!(TimeUnit::Seconds.unix_seconds(" 1700000000 "), Ok(1_700_000_000));
        assert_eq!(TimeUnit::Milliseconds.unix_seconds("1700000000999"), Ok(1_700_000_000));
        assert_eq!(TimeUnit::Milliseconds.unix_seconds("-1"), Ok(-1));
        for bad in ["", "1.5", "abc", "1e9", &"9".repeat(80)] {
            assert!(TimeUnit::Seconds.unix_seconds(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rfc3339_with_fractions_zulu_and_offsets() {
        let u = TimeUnit::Rfc3339;
        assert_eq!(u.unix_seconds("2023-11-14T22:13:20Z"), Ok(1_700_000_000));
        assert_eq!(u.unix_seconds("2023-11-14T22:13:20.123456789Z"), Ok(1_700_000_000));
        assert_eq!(u.unix_seconds("2023-11-14t22:13:20.5z"), Ok(1_700_000_000));
        assert_eq!(u.unix_seconds("2023-11-15T00:13:20+02:00"), Ok(1_700_000_000));
        assert_eq!(u.unix_seconds("2023-11-14T14:13:20-08:00"), Ok(1_700_000_000));
        // RFC 3339 section 5.6 lets a space stand for the `T`.
        assert_eq!(u.unix_seconds("2023-11-14 22:13:20Z"), Ok(1_700_000_000));
        assert_eq!(u.render(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn rfc3339_refusals() {
        let u = TimeUnit::Rfc3339;
        for bad in [
            "1700000000",
            "2023-11-14",
            "2023-11-14T22:13:20",
            "2023-13-14T22:13:20Z",
            "2023-11-14T22:13:20+2",
            "2023-11-14T22:13:20Zjunk",
            "",
        ] {
            assert_eq!(u.unix_seconds(bad), Err(TimestampError::Unreadable("RFC 3339")), "{bad:?}");
        }
    }

    #[test]
    fn tolerance_both_ways() {
        let u = TimeUnit::Rfc3339;
        assert_eq!(check("2023-11-14T22:13:20Z", u, 1_700_000_300, 300), Ok(()));
        assert_eq!(
            check("2023-11-14T22:13:20Z", u, 1_700_000_301, 300),
            Err(TimestampError::Stale(301, 300))
        );
        assert_eq!(
            check("2023-11-14T22:13:20Z", u, 1_699_999_000, 300),
            Err(TimestampError::Future(1000, 300))
        );
        assert_eq!(check("1700000000", TimeUnit::Seconds, 1_700_000_000, 0), Ok(()));
    }
}
