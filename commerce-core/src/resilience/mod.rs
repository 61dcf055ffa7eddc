//! Graceful degradation: circuit breakers, deadlines, and the record of what was left
//! out.
//!
//! A response such as a product page has **essential** parts (the product, its
//! variants and prices) and **non-essential** ones (recommendations, the cache,
//! search enrichment, view tracking). Every non-essential part runs inside a [`Guard`]:
//! a deadline (`tokio::time::timeout`, which cancels the part) and a
//! [`CircuitBreaker`] (which stops calling a part that keeps failing, then probes it
//! once per cool-down). A part that fails, is slow, or is switched off by its breaker
//! is left out and reported as an [`Omission`]; the response still goes out on time.
//! Checkout depends on none of these parts.
//!
//! ```
//! use std::{sync::Arc, time::Duration};
//! use commerce_core::clock::ManualClock;
//! use commerce_core::resilience::{BreakerConfig, Guard, OmissionReason, Section};
//! use commerce_core::Error;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let clock = Arc::new(ManualClock::default());
//! let config = BreakerConfig { failure_threshold: 3, cool_down: Duration::from_secs(10), ..Default::default() };
//! let guard = Guard::new(Section::AlsoBought, Duration::from_millis(50), config, clock.clone());
//!
//! let down = || async { Err::<(), _>(Error::backend(true, "connection refused")) };
//! for _ in 0..3 {
//!     assert!(matches!(guard.run(down()).await.unwrap_err().reason, OmissionReason::Failed { .. }));
//! }
//! // Tripped: the part is not even called for the cool-down.
//! assert_eq!(guard.run(down()).await.unwrap_err().reason, OmissionReason::CircuitOpen);
//! clock.advance(Duration::from_secs(10));
//! // After the cool-down one probe goes through; it succeeds and closes the breaker.
//! assert_eq!(guard.run(async { Ok(42) }).await.unwrap(), 42);
//! # });
//! ```

mod breaker;
mod guard;

pub use breaker::{BreakerConfig, BreakerState, BreakerStats, CircuitBreaker, Permit};
pub use guard::{Guard, Omission, OmissionReason, Section};
// The rate-limit contract lives with the others, in `store`; quotas and the in-process
// limiter in `ratelimit`.
pub use crate::store::{Admission, LimitedAction, UserRateLimit};
