//! A circuit breaker on the injected [`Clock`].

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::clock::{self, Clock, Timestamp};

/// When a [`CircuitBreaker`] trips and how long it stays open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakerConfig {
    /// Consecutive failures that trip a closed breaker (at least 1).
    pub failure_threshold: u32,
    /// How long a tripped breaker rejects calls before it lets one probe through.
    pub cool_down: Duration,
    /// A failed probe doubles the cool-down, up to this.
    pub max_cool_down: Duration,
}

impl Default for BreakerConfig {
    /// Trip after 5 consecutive failures; cool down 5 s, doubling up to 60 s.
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 5,
            cool_down: Duration::from_secs(5),
            max_cool_down: Duration::from_secs(60),
        }
    }
}

/// The state of a breaker, as observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum BreakerState {
    /// Calls go through; `failures` consecutive ones have failed so far.
    Closed {
        /// Consecutive failures.
        failures: u32,
    },
    /// Calls are rejected until `until`, then one probe is let through.
    Open {
        /// End of the cool-down.
        until: Timestamp,
    },
    /// A probe may go (or is under way); its outcome closes or re-opens the breaker.
    HalfOpen {
        /// Whether the probe is under way (further calls are rejected meanwhile).
        probing: bool,
    },
}

/// Counters since the breaker was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakerStats {
    /// Calls let through.
    pub admitted: u64,
    /// Calls rejected while open or probing.
    pub rejected: u64,
    /// Calls reported as failed.
    pub failures: u64,
    /// Times the breaker opened (from closed or after a failed probe).
    pub trips: u64,
}

#[derive(Debug)]
enum Phase {
    Closed,
    Open { until: Timestamp },
    HalfOpen { probing: bool },
}

#[derive(Debug)]
struct Inner {
    phase: Phase,
    failures: u32,
    cool_down: Duration,
    stats: BreakerStats,
}

/// A circuit breaker: after `failure_threshold` consecutive failures it rejects calls
/// for a cool-down, then lets **one** probe through (half-open); the probe's success
/// closes it, its failure re-opens it for twice as long (up to `max_cool_down`).
///
/// Time comes from the injected [`Clock`], so tests move a
/// [`ManualClock`](crate::clock::ManualClock) instead of sleeping. A call asks for a
/// [`Permit`] and reports its outcome on it; a permit dropped without an outcome (the
/// caller was cancelled) changes nothing except freeing the probe slot.
///
/// Hand-written rather than taken from `failsafe`: that crate reads
/// `std::time::Instant` directly (no injectable clock) and lets every call through
/// while half-open, where one probe is wanted under peak load.
///
/// ```
/// use std::{sync::Arc, time::Duration};
/// use commerce_core::clock::ManualClock;
/// use commerce_core::resilience::{BreakerConfig, BreakerState, CircuitBreaker};
///
/// let clock = Arc::new(ManualClock::default());
/// let config = BreakerConfig { failure_threshold: 2, cool_down: Duration::from_secs(5), ..Default::default() };
/// let breaker = CircuitBreaker::new("recommendations", config, clock.clone());
///
/// breaker.try_acquire().unwrap().failure();
/// breaker.try_acquire().unwrap().failure();
/// assert!(matches!(breaker.state(), BreakerState::Open { .. }));
/// assert!(breaker.try_acquire().is_none());
///
/// clock.advance(Duration::from_secs(5));
/// let probe = breaker.try_acquire().expect("one probe after the cool-down");
/// assert!(breaker.try_acquire().is_none(), "only one probe at a time");
/// probe.success();
/// assert_eq!(breaker.state(), BreakerState::Closed { failures: 0 });
/// ```
pub struct CircuitBreaker {
    name: String,
    config: BreakerConfig,
    clock: Arc<dyn Clock>,
    inner: Mutex<Inner>,
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("name", &self.name)
            .field("config", &self.config)
            .field("state", &self.state())
            .finish()
    }
}

impl CircuitBreaker {
    /// A closed breaker named `name` (used in logs).
    pub fn new(name: impl Into<String>, config: BreakerConfig, clock: Arc<dyn Clock>) -> Self {
        let config = BreakerConfig {
            failure_threshold: config.failure_threshold.max(1),
            max_cool_down: config.max_cool_down.max(config.cool_down),
            ..config
        };
        CircuitBreaker {
            name: name.into(),
            clock,
            inner: Mutex::new(Inner {
                phase: Phase::Closed,
                failures: 0,
                cool_down: config.cool_down,
                stats: BreakerStats::default(),
            }),
            config,
        }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its configuration.
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current state (an open breaker whose cool-down has passed shows as
    /// half-open).
    pub fn state(&self) -> BreakerState {
        let now = self.clock.now();
        let inner = self.lock();
        match inner.phase {
            Phase::Closed => BreakerState::Closed {
                failures: inner.failures,
            },
            Phase::Open { until } if now < until => BreakerState::Open { until },
            Phase::Open { .. } => BreakerState::HalfOpen { probing: false },
            Phase::HalfOpen { probing } => BreakerState::HalfOpen { probing },
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> BreakerStats {
        self.lock().stats
    }

    /// Asks to make a call: `None` when the breaker is open, or half-open with its
    /// probe under way.
    pub fn try_acquire(&self) -> Option<Permit<'_>> {
        let now = self.clock.now();
        let mut inner = self.lock();
        let probe = match inner.phase {
            Phase::Closed => false,
            Phase::Open { until } if now < until => {
                inner.stats.rejected += 1;
                return None;
            }
            Phase::Open { .. } | Phase::HalfOpen { probing: false } => {
                if matches!(inner.phase, Phase::Open { .. }) {
                    self.transitioned("half_open");
                }
                inner.phase = Phase::HalfOpen { probing: true };
                true
            }
            Phase::HalfOpen { probing: true } => {
                inner.stats.rejected += 1;
                return None;
            }
        };
        inner.stats.admitted += 1;
        Some(Permit {
            breaker: self,
            probe,
            reported: false,
        })
    }

    /// Counts a state change ([`crate::telemetry::BREAKER_TRANSITIONS`]).
    fn transitioned(&self, to: &'static str) {
        metrics::counter!(crate::telemetry::BREAKER_TRANSITIONS, "breaker" => self.name.clone(), "to" => to)
            .increment(1);
    }

    fn open(&self, inner: &mut Inner, cool_down: Duration) {
        inner.cool_down = cool_down;
        inner.phase = Phase::Open {
            until: clock::add(self.clock.now(), cool_down),
        };
        inner.stats.trips += 1;
        self.transitioned("open");
        warn!(breaker = %self.name, cool_down_ms = cool_down.as_millis() as u64, "circuit breaker opened");
    }

    fn report(&self, probe: bool, ok: bool) {
        let mut inner = self.lock();
        if !ok {
            inner.stats.failures += 1;
        }
        match (&inner.phase, probe, ok) {
            (Phase::HalfOpen { .. }, true, true) => {
                inner.phase = Phase::Closed;
                inner.failures = 0;
                inner.cool_down = self.config.cool_down;
                self.transitioned("closed");
                info!(breaker = %self.name, "circuit breaker closed after a successful probe");
            }
            (Phase::HalfOpen { .. }, true, false) => {
                let next = (inner.cool_down * 2).min(self.config.max_cool_down);
                self.open(&mut inner, next);
            }
            (Phase::Closed, false, true) => inner.failures = 0,
            (Phase::Closed, false, false) => {
                inner.failures += 1;
                if inner.failures >= self.config.failure_threshold {
                    inner.failures = 0;
                    self.open(&mut inner, self.config.cool_down);
                }
            }
            // Outcomes of calls admitted before the state changed say nothing new.
            _ => {}
        }
    }

    fn abandon(&self, probe: bool) {
        if probe {
            let mut inner = self.lock();
            if let Phase::HalfOpen { probing } = &mut inner.phase {
                *probing = false;
            }
        }
    }
}

/// Leave to make one call through a [`CircuitBreaker`]; report how it went.
#[derive(Debug)]
#[must_use = "report the outcome with success() or failure()"]
pub struct Permit<'a> {
    breaker: &'a CircuitBreaker,
    probe: bool,
    reported: bool,
}

impl Permit<'_> {
    /// Whether this call is the half-open probe.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// The call succeeded.
    pub fn success(mut self) {
        self.reported = true;
        self.breaker.report(self.probe, true);
    }

    /// The call failed (an error or a timeout).
    pub fn failure(mut self) {
        self.reported = true;
        self.breaker.report(self.probe, false);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.reported {
            self.breaker.abandon(self.probe);
        }
    }
}
