//! [`RedisRateLimiter`]: a distributed GCRA limiter, one script and one round trip per
//! decision.

use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use commerce_core::Result;
use commerce_core::ratelimit::{RateLimits, validate_key};
use commerce_core::resilience::{Admission, LimitedAction, UserRateLimit};
use redis::Script;

use crate::backend::RedisBackend;
use crate::error::map;

static GCRA: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/gcra.lua")));

/// Per-user (or per-IP, per-API-key) rate limits shared by every node of a host: the
/// generic cell rate algorithm in one Lua script, timed by the Redis server's clock so
/// nodes with skewed clocks agree. One key per action and caller
/// (`<prefix>:rl:{<action>:<key>}`), expiring once its bucket is full again.
///
/// Prefix keys by kind (`user:42`, `ip:203.0.113.7`, `key:ab12`) so they never share a
/// bucket. Keys longer than [`MAX_KEY_LEN`](commerce_core::ratelimit::MAX_KEY_LEN) are
/// refused with a validation error.
///
/// ```no_run
/// # async fn demo() -> commerce_core::Result<()> {
/// use std::time::Duration;
/// use commerce_core::ratelimit::{RateLimits, RateQuota};
/// use commerce_core::resilience::{Admission, LimitedAction, UserRateLimit};
/// use commerce_redis::{RedisConfig, RedisRateLimiter};
///
/// let redis = RedisConfig::single("redis://127.0.0.1:6379").connect().await?;
/// let limits = RateLimits::new(RateQuota::per_period(Duration::from_secs(1), 20)?);
/// let limiter = RedisRateLimiter::new(redis, limits);
/// match limiter.admit(LimitedAction::Search, "ip:203.0.113.7").await? {
///     Admission::Admitted => { /* serve */ }
///     Admission::Limited { retry_after } => { /* 429, Retry-After: retry_after */ }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RedisRateLimiter {
    redis: RedisBackend,
    limits: RateLimits,
}

impl RedisRateLimiter {
    /// A limiter enforcing `limits` on `redis`.
    pub fn new(redis: RedisBackend, limits: RateLimits) -> Self {
        RedisRateLimiter { redis, limits }
    }
}

#[async_trait]
impl UserRateLimit for RedisRateLimiter {
    #[tracing::instrument(level = "debug", skip_all, fields(action = action.as_str()), err(level = "debug"))]
    async fn admit(&self, action: LimitedAction, user: &str) -> Result<Admission> {
        validate_key(user)?;
        let quota = self.limits.quota(action).validated()?;
        let interval = u64::try_from(quota.replenish_one_per.as_micros()).unwrap_or(u64::MAX);
        let mut conn = self.redis.conn();
        let wait: u64 = GCRA
            .key(self.redis.key("rl", &format!("{}:{user}", action.as_str())))
            .arg(interval)
            .arg(quota.burst)
            .invoke_async(&mut conn)
            .await
            .map_err(map)?;
        commerce_core::telemetry::record_rate_limit("redis", action.as_str(), wait == 0);
        Ok(if wait == 0 {
            Admission::Admitted
        } else {
            Admission::Limited {
                retry_after: Duration::from_micros(wait),
            }
        })
    }
}
