//! The seam for per-user rate limits on the hot paths (search, checkout):
//! [`UserRateLimit`]. Quotas and the in-process limiter are in
//! [`ratelimit`](crate::ratelimit).
//!
//! The services here take an optional `Arc<dyn UserRateLimit>`. A limiter that fails or
//! is slow is treated like any other non-essential part: it is guarded, and a request
//! it cannot judge is let through (failing open), with the omission reported.

use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;

/// What is being limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LimitedAction {
    /// A search request.
    Search,
    /// A checkout attempt.
    Checkout,
}

impl LimitedAction {
    /// The lower-case name (a key prefix for a limiter).
    pub fn as_str(self) -> &'static str {
        match self {
            LimitedAction::Search => "search",
            LimitedAction::Checkout => "checkout",
        }
    }
}

/// A limiter's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Admission {
    /// Go ahead.
    Admitted,
    /// Too many requests; try again after `retry_after`.
    Limited {
        /// When the next request would be admitted.
        retry_after: Duration,
    },
}

/// Per-user rate limits (one bucket per action and user key).
///
/// Implement this for the crate's rate limiter (in-process or Redis GCRA) to plug it
/// into [`SearchPages`](crate::browse::SearchPages) and the checkout path.
#[async_trait]
pub trait UserRateLimit: Send + Sync + Debug + 'static {
    /// Takes one unit from `user`'s budget for `action`, or says when to come back.
    async fn admit(&self, action: LimitedAction, user: &str) -> Result<Admission>;
}
