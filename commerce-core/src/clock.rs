//! Time, injected: every store and service that needs "now" asks a [`Clock`], so tests
//! move a [`ManualClock`] instead of sleeping.
//!
//! ```
//! use std::time::Duration;
//! use commerce_core::clock::{Clock, ManualClock};
//!
//! let clock = ManualClock::new(ManualClock::EPOCH);
//! let before = clock.now();
//! clock.advance(Duration::from_secs(15 * 60));
//! assert_eq!((clock.now() - before).num_minutes(), 15);
//! ```

use std::fmt::Debug;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

/// A point in time, UTC.
pub type Timestamp = DateTime<Utc>;

/// A source of the current time.
pub trait Clock: Send + Sync + Debug + 'static {
    /// The current time. Successive calls never go backwards.
    fn now(&self) -> Timestamp;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Utc::now()
    }
}

/// A clock that only moves when told to.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<Timestamp>,
}

impl ManualClock {
    /// A fixed, recognisable starting point for tests: 2030-01-01T00:00:00Z.
    pub const EPOCH: i64 = 1_893_456_000;

    /// A clock set to `unix_seconds`.
    pub fn new(unix_seconds: i64) -> Self {
        let start = Utc
            .timestamp_opt(unix_seconds, 0)
            .single()
            .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
        ManualClock {
            now: Mutex::new(start),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let by = chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX);
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        *now = now.checked_add_signed(by).unwrap_or(*now);
    }

    /// Sets the clock; ignored if `to` is earlier than the current time.
    pub fn set(&self, to: Timestamp) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        if to > *now {
            *now = to;
        }
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock::new(Self::EPOCH)
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `at + d`, saturating at the largest representable time.
pub fn add(at: Timestamp, d: Duration) -> Timestamp {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| at.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_never_goes_backwards() {
        let c = ManualClock::default();
        let t0 = c.now();
        c.set(t0 - chrono::Duration::seconds(10));
        assert_eq!(c.now(), t0);
        c.advance(Duration::from_millis(1500));
        assert_eq!((c.now() - t0).num_milliseconds(), 1500);
        assert_eq!(add(t0, Duration::MAX), DateTime::<Utc>::MAX_UTC);
    }
}
