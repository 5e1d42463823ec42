//! Time is a parameter: every component that needs "now" receives a [`Clock`], so expiry and
//! retention can be tested without sleeping. This is the only module allowed to read the
//! system clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> OffsetDateTime;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the one sanctioned read of the system clock
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that only moves when told to; for tests.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn at_unix(seconds: i64) -> Self {
        Self(Arc::new(AtomicI64::new(seconds)))
    }

    /// Moves the clock on by `seconds`; returns the new time in Unix seconds.
    pub fn advance(&self, seconds: i64) -> i64 {
        self.0.fetch_add(seconds, Ordering::SeqCst) + seconds
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(self.0.load(Ordering::SeqCst))
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }
}

/// The wall clock moved by a number of seconds read from a file at every reading (missing or
/// unreadable: not moved). For tests of what happens after hours or days (grace periods,
/// expiry) against a running server; debug builds only take it (see `holdfast serve`).
#[derive(Debug, Clone)]
pub struct OffsetFileClock(pub std::path::PathBuf);

impl OffsetFileClock {
    /// The offset now in the file, in whole seconds.
    pub fn offset(&self) -> i64 {
        std::fs::read_to_string(&self.0)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Clock for OffsetFileClock {
    fn now(&self) -> OffsetDateTime {
        SystemClock.now() + time::Duration::seconds(self.offset())
    }
}

/// Timestamps are stored and returned as RFC 3339 UTC text with microseconds, a fixed width
/// so that they sort as strings.
pub fn format_timestamp(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

pub fn parse_timestamp(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_fixed_width_and_round_trip() {
        let c = ManualClock::at_unix(1_700_000_000);
        let s = format_timestamp(c.now());
        assert_eq!(s, "2023-11-14T22:13:20.000000Z");
        assert_eq!(parse_timestamp(&s), Some(c.now()));
    }

    #[test]
    fn the_offset_clock_moves_by_its_file() {
        let dir = std::env::temp_dir().join(format!("hf-clock-{}", std::process::id()));
        let c = OffsetFileClock(dir.clone());
        assert_eq!(c.offset(), 0, "no file: not moved");
        std::fs::write(&dir, "86400\n").unwrap();
        assert_eq!(c.offset(), 86_400);
        let ahead = c.now() - SystemClock.now();
        assert!((ahead.whole_seconds() - 86_400).abs() <= 1, "{ahead}");
        std::fs::write(&dir, "soon").unwrap();
        assert_eq!(c.offset(), 0, "not a number: not moved");
        std::fs::remove_file(&dir).unwrap();
    }
}
