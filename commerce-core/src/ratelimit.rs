//! Rate-limit quotas and the in-process limiter for single-node hosts.
//!
//! A [`RateQuota`] is a GCRA quota: a sustained rate (one request per
//! `replenish_one_per`) and a burst (how many requests may arrive at once after a
//! quiet period). [`RateLimits`] gives each [`LimitedAction`] its quota.
//! [`InProcessRateLimiter`] enforces them in this process with the `governor` crate;
//! hosts running several nodes use a shared limiter (the Redis GCRA limiter of
//! `commerce-redis`) behind the same [`UserRateLimit`] trait.
//!
//! The `user` key of [`UserRateLimit::admit`] is whatever identifies the caller: a user
//! id, an IP address or an API key (prefix it, e.g. `ip:203.0.113.7`, so kinds never
//! share a bucket).
//!
//! ```
//! use std::time::Duration;
//! use commerce_core::ratelimit::{InProcessRateLimiter, RateLimits, RateQuota};
//! use commerce_core::resilience::{Admission, LimitedAction, UserRateLimit};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let quota = RateQuota::per_period(Duration::from_secs(60), 3)?; // 3 a minute, burst 3
//! let limiter = InProcessRateLimiter::new(RateLimits::new(quota));
//! for _ in 0..3 {
//!     assert_eq!(limiter.admit(LimitedAction::Search, "user:1").await?, Admission::Admitted);
//! }
//! let Admission::Limited { retry_after } = limiter.admit(LimitedAction::Search, "user:1").await? else {
//!     panic!("the fourth request in a minute must be limited");
//! };
//! assert!(retry_after > Duration::from_secs(10) && retry_after <= Duration::from_secs(20));
//! // Another user has its own bucket.
//! assert_eq!(limiter.admit(LimitedAction::Search, "user:2").await?, Admission::Admitted);
//! # Ok::<(), commerce_core::Error>(()) }).unwrap();
//! ```

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroU32;
use std::time::Duration;

use async_trait::async_trait;
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
pub use crate::store::{Admission, LimitedAction, UserRateLimit};

/// Longest accepted limiter key (`user` of [`UserRateLimit::admit`]), in bytes.
pub const MAX_KEY_LEN: usize = 256;

/// A GCRA quota: one request per `replenish_one_per` sustained, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateQuota {
    /// Requests admitted at once after a quiet period (at least 1).
    pub burst: u32,
    /// Time that earns one more request.
    pub replenish_one_per: Duration,
}

impl RateQuota {
    /// `count` requests per `period`, all of which may come as one burst.
    pub fn per_period(period: Duration, count: u32) -> Result<Self> {
        if count == 0 {
            return Err(Error::validation(
                "count",
                "at least one request per period",
            ));
        }
        RateQuota {
            burst: count,
            replenish_one_per: period / count,
        }
        .validated()
    }

    /// The same rate with another burst.
    pub fn with_burst(self, burst: u32) -> Result<Self> {
        RateQuota { burst, ..self }.validated()
    }

    /// Checks the quota: a burst of at least 1, an interval of at least 1 µs.
    pub fn validated(self) -> Result<Self> {
        if self.burst == 0 {
            return Err(Error::validation("burst", "must be at least 1"));
        }
        if self.replenish_one_per < Duration::from_micros(1) {
            return Err(Error::validation(
                "replenish_one_per",
                "must be at least 1 µs",
            ));
        }
        Ok(self)
    }

    fn to_governor(self) -> Result<Quota> {
        let burst = NonZeroU32::new(self.burst)
            .ok_or_else(|| Error::validation("burst", "must be at least 1"))?;
        Quota::with_period(self.replenish_one_per)
            .map(|q| q.allow_burst(burst))
            .ok_or_else(|| Error::validation("replenish_one_per", "must not be zero"))
    }
}

/// A quota per action, with a default for the others.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimits {
    default: RateQuota,
    per_action: HashMap<LimitedAction, RateQuota>,
}

impl RateLimits {
    /// `default` for every action.
    pub fn new(default: RateQuota) -> Self {
        RateLimits {
            default,
            per_action: HashMap::new(),
        }
    }

    /// `quota` for `action`.
    pub fn with(mut self, action: LimitedAction, quota: RateQuota) -> Self {
        self.per_action.insert(action, quota);
        self
    }

    /// The quota of `action`.
    pub fn quota(&self, action: LimitedAction) -> RateQuota {
        self.per_action
            .get(&action)
            .copied()
            .unwrap_or(self.default)
    }
}

/// Checks a limiter key: 1 to [`MAX_KEY_LEN`] bytes.
pub fn validate_key(user: &str) -> Result<()> {
    if user.is_empty() || user.len() > MAX_KEY_LEN {
        return Err(Error::validation(
            "user",
            format!("a rate-limit key is 1 to {MAX_KEY_LEN} bytes"),
        ));
    }
    Ok(())
}

/// The in-process [`UserRateLimit`] (GCRA, `governor`): exact within one process, one
/// bucket per action and key. Memory grows with the number of keys seen; call
/// [`InProcessRateLimiter::purge`] now and then to drop buckets that are full again.
pub struct InProcessRateLimiter {
    limits: RateLimits,
    limiters: HashMap<LimitedAction, DefaultKeyedRateLimiter<String>>,
    fallback: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
}

impl fmt::Debug for InProcessRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InProcessRateLimiter")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl InProcessRateLimiter {
    /// A limiter enforcing `limits`. An invalid quota is replaced by one request per
    /// second (use [`RateQuota::validated`] to refuse it earlier).
    pub fn new(limits: RateLimits) -> Self {
        let clock = DefaultClock::default();
        let fallback_quota = Quota::per_second(NonZeroU32::MIN);
        let make = |q: RateQuota| {
            DefaultKeyedRateLimiter::dashmap_with_clock(
                q.to_governor().unwrap_or(fallback_quota),
                clock.clone(),
            )
        };
        let limiters = [LimitedAction::Search, LimitedAction::Checkout]
            .into_iter()
            .map(|a| (a, make(limits.quota(a))))
            .collect();
        InProcessRateLimiter {
            fallback: make(limits.default),
            limits,
            limiters,
            clock,
        }
    }

    /// Drops the buckets of keys that have not been limited recently.
    pub fn purge(&self) {
        for l in self.limiters.values() {
            l.retain_recent();
        }
        self.fallback.retain_recent();
    }

    /// The decision, synchronously.
    pub fn check(&self, action: LimitedAction, user: &str) -> Result<Admission> {
        validate_key(user)?;
        let limiter = self.limiters.get(&action).unwrap_or(&self.fallback);
        let admission = match limiter.check_key(&user.to_owned()) {
            Ok(()) => Admission::Admitted,
            Err(not_until) => Admission::Limited {
                retry_after: not_until.wait_time_from(self.clock.now()),
            },
        };
        crate::telemetry::record_rate_limit(
            "in_process",
            action.as_str(),
            admission == Admission::Admitted,
        );
        Ok(admission)
    }
}

#[async_trait]
impl UserRateLimit for InProcessRateLimiter {
    async fn admit(&self, action: LimitedAction, user: &str) -> Result<Admission> {
        self.check(action, user)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[test]
    fn bursts_then_limits_per_key_and_action() {
        let quota = RateQuota::per_period(Duration::from_secs(3600), 5).expect("valid");
        let limiter = InProcessRateLimiter::new(
            RateLimits::new(quota)
                .with(LimitedAction::Checkout, quota.with_burst(1).expect("valid")),
        );
        for _ in 0..5 {
            assert_eq!(
                limiter.check(LimitedAction::Search, "u").expect("ok"),
                Admission::Admitted
            );
        }
        match limiter.check(LimitedAction::Search, "u").expect("ok") {
            Admission::Limited { retry_after } => {
                assert!(retry_after > Duration::from_secs(600));
                assert!(retry_after <= Duration::from_secs(720));
            }
            Admission::Admitted => panic!("the sixth request must be limited"),
        }
        assert_eq!(
            limiter.check(LimitedAction::Checkout, "u").expect("ok"),
            Admission::Admitted
        );
        assert!(matches!(
            limiter.check(LimitedAction::Checkout, "u").expect("ok"),
            Admission::Limited { .. }
        ));
        assert!(limiter.check(LimitedAction::Search, "").is_err());
        assert!(
            limiter
                .check(LimitedAction::Search, &"x".repeat(MAX_KEY_LEN + 1))
                .is_err()
        );
        assert!(RateQuota::per_period(Duration::from_secs(1), 0).is_err());
        assert!(quota.with_burst(0).is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_callers_never_exceed_the_burst() {
        let quota = RateQuota::per_period(Duration::from_secs(3600), 25).expect("valid");
        let limiter = Arc::new(InProcessRateLimiter::new(RateLimits::new(quota)));
        let admitted = Arc::new(AtomicU32::new(0));
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                let (limiter, admitted) = (limiter.clone(), admitted.clone());
                tokio::spawn(async move {
                    if limiter
                        .admit(LimitedAction::Search, "hot-user")
                        .await
                        .expect("ok")
                        == Admission::Admitted
                    {
                        admitted.fetch_add(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("task");
        }
        assert_eq!(admitted.load(Ordering::SeqCst), 25);
    }
}
