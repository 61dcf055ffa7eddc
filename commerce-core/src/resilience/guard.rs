//! A guard around one non-essential part: a deadline plus a circuit breaker, and the
//! [`Omission`] it reports when the part is left out.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::debug;

use super::breaker::{BreakerConfig, CircuitBreaker};
use crate::clock::Clock;
use crate::error::{Error, Result};

/// A non-essential part of a response that may be left out.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Section {
    /// Live availability per SKU (the page then shows it as unknown; checkout still
    /// reserves atomically, so nothing is oversold).
    Availability,
    /// The product cache (the catalog is read instead).
    Cache,
    /// The recommendations block as a whole.
    Recommendations,
    /// "Customers who bought this also bought" (co-purchase counts).
    AlsoBought,
    /// Content-based similar products (the search index).
    Similar,
    /// The popularity fallback.
    Popular,
    /// Re-ranking by the shopper's history.
    Personalization,
    /// Recording the page view in the shopper's history.
    ViewTracking,
    /// The per-user rate limiter (when it fails, requests are let through).
    RateLimit,
    /// A host-defined part (reviews, Q&A, ...).
    Other(String),
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Section::Availability => "availability",
            Section::Cache => "cache",
            Section::Recommendations => "recommendations",
            Section::AlsoBought => "also_bought",
            Section::Similar => "similar",
            Section::Popular => "popular",
            Section::Personalization => "personalization",
            Section::ViewTracking => "view_tracking",
            Section::RateLimit => "rate_limit",
            Section::Other(name) => name,
        };
        f.write_str(name)
    }
}

/// Why a section was left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum OmissionReason {
    /// It did not answer within its deadline and was cancelled.
    TimedOut {
        /// The deadline it had, milliseconds.
        after_ms: u64,
    },
    /// Its circuit breaker is open (it failed repeatedly); it was not called.
    CircuitOpen,
    /// It answered with an error.
    Failed {
        /// The error, as text.
        message: String,
    },
    /// The response's overall deadline left no time for it; it was not called.
    NoTimeLeft,
}

/// A section left out of a response, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Omission {
    /// What was left out.
    pub section: Section,
    /// Why.
    #[serde(flatten)]
    pub reason: OmissionReason,
}

impl fmt::Display for Omission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.reason {
            OmissionReason::TimedOut { after_ms } => {
                write!(f, "{} timed out after {after_ms} ms", self.section)
            }
            OmissionReason::CircuitOpen => write!(f, "{}: circuit open", self.section),
            OmissionReason::Failed { message } => write!(f, "{} failed: {message}", self.section),
            OmissionReason::NoTimeLeft => write!(f, "{}: no time left", self.section),
        }
    }
}

/// Whether an error is the backend failing (counts against the breaker) rather than a
/// decision such as not-found or invalid input.
fn is_failure(e: &Error) -> bool {
    matches!(e, Error::Backend { .. })
}

/// A deadline and a circuit breaker around one non-essential section.
///
/// [`Guard::run`] calls the section only if the breaker admits it, cancels it at the
/// deadline, and reports a timeout or a backend error to the breaker as a failure;
/// either way the caller gets the value or an [`Omission`] to report, on time.
///
/// ```
/// use std::{sync::Arc, time::Duration};
/// use commerce_core::clock::SystemClock;
/// use commerce_core::resilience::{BreakerConfig, Guard, OmissionReason, Section};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap().block_on(async {
/// let guard = Guard::new(Section::Similar, Duration::from_millis(30),
///                        BreakerConfig::default(), Arc::new(SystemClock));
/// let slow = async {
///     tokio::time::sleep(Duration::from_secs(10)).await;
///     Ok::<_, commerce_core::Error>(vec![1, 2, 3])
/// };
/// let omitted = guard.run(slow).await.unwrap_err();
/// assert_eq!(omitted.reason, OmissionReason::TimedOut { after_ms: 30 });
/// assert_eq!(guard.run(async { Ok(7) }).await.unwrap(), 7);
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct Guard {
    section: Section,
    deadline: Duration,
    breaker: Arc<CircuitBreaker>,
}

impl Guard {
    /// A guard with its own breaker.
    pub fn new(
        section: Section,
        deadline: Duration,
        config: BreakerConfig,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let breaker = Arc::new(CircuitBreaker::new(section.to_string(), config, clock));
        Guard {
            section,
            deadline,
            breaker,
        }
    }

    /// A guard sharing `breaker` (several call sites of one backend).
    pub fn with_breaker(
        section: Section,
        deadline: Duration,
        breaker: Arc<CircuitBreaker>,
    ) -> Self {
        Guard {
            section,
            deadline,
            breaker,
        }
    }

    /// The section it guards.
    pub fn section(&self) -> &Section {
        &self.section
    }

    /// Its deadline.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// Its breaker.
    pub fn breaker(&self) -> &Arc<CircuitBreaker> {
        &self.breaker
    }

    /// An omission of this guard's section.
    pub fn omission(&self, reason: OmissionReason) -> Omission {
        Omission {
            section: self.section.clone(),
            reason,
        }
    }

    /// Counts a left-out call ([`crate::telemetry::GUARD_REJECTIONS`]).
    fn rejected(&self, reason: &'static str) {
        metrics::counter!(crate::telemetry::GUARD_REJECTIONS, "section" => self.section.to_string(), "reason" => reason)
            .increment(1);
    }

    /// Runs `call` within the guard's deadline.
    pub async fn run<T>(&self, call: impl Future<Output = Result<T>>) -> Result<T, Omission> {
        self.run_within(self.deadline, call).await
    }

    /// Runs `call` within the guard's deadline or `budget`, whichever is shorter (the
    /// time left of an enclosing deadline). A zero budget does not call it at all.
    pub async fn run_within<T>(
        &self,
        budget: Duration,
        call: impl Future<Output = Result<T>>,
    ) -> Result<T, Omission> {
        let deadline = self.deadline.min(budget);
        if deadline.is_zero() {
            self.rejected("no_time_left");
            return Err(self.omission(OmissionReason::NoTimeLeft));
        }
        let Some(permit) = self.breaker.try_acquire() else {
            debug!(section = %self.section, "skipped: circuit open");
            self.rejected("circuit_open");
            return Err(self.omission(OmissionReason::CircuitOpen));
        };
        match tokio::time::timeout(deadline, call).await {
            Ok(Ok(value)) => {
                permit.success();
                Ok(value)
            }
            Ok(Err(e)) => {
                if is_failure(&e) {
                    permit.failure();
                } else {
                    permit.success();
                }
                debug!(section = %self.section, error = %e, "omitted: failed");
                self.rejected("failed");
                Err(self.omission(OmissionReason::Failed {
                    message: e.to_string(),
                }))
            }
            Err(_) => {
                permit.failure();
                self.rejected("timed_out");
                debug!(section = %self.section, deadline_ms = deadline.as_millis() as u64, "omitted: timed out");
                Err(self.omission(OmissionReason::TimedOut {
                    after_ms: deadline.as_millis() as u64,
                }))
            }
        }
    }
}
