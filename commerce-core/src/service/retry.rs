//! Retrying one step with jittered backoff, and bounding a call by a timeout.

use std::future::Future;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::store::RetryPolicy;

impl RetryPolicy {
    /// The delay after failed attempt number `attempt` with full jitter: uniformly random
    /// in `0..=`[`delay_after`](RetryPolicy::delay_after)`(attempt)`, so that many workers
    /// failing together (a database blip) do not all retry at the same instant.
    ///
    /// The randomness comes from the operating system; should it fail, the delay is the
    /// un-jittered [`delay_after`](RetryPolicy::delay_after).
    ///
    /// ```
    /// use commerce_core::store::RetryPolicy;
    ///
    /// let p = RetryPolicy::default();
    /// let d = p.jittered_delay_after(3);
    /// assert!(d <= p.delay_after(3));
    /// ```
    pub fn jittered_delay_after(&self, attempt: u32) -> Duration {
        let cap = self.delay_after(attempt);
        match getrandom::u64() {
            Ok(random) => full_jitter(cap, random),
            Err(_) => cap,
        }
    }
}

/// `random / 2^64` of `cap`: uniform in `0..=cap` for a uniform `random` (caps beyond
/// 2^64 ns, 584 years, count as 584 years).
fn full_jitter(cap: Duration, random: u64) -> Duration {
    // At most 2^64 * 2^64 below: no overflow.
    let nanos = cap.as_nanos().min(u128::from(u64::MAX));
    let pick = (u128::from(random) * (nanos + 1)) >> 64;
    let secs = u64::try_from(pick / 1_000_000_000).unwrap_or(u64::MAX);
    // The remainder is below 10^9, so it fits.
    let subsec = (pick % 1_000_000_000) as u32;
    Duration::new(secs, subsec).min(cap)
}

impl RetryPolicy {
    /// Runs `attempt(n)` (`n` failed attempts so far: 0 on the first try) until it
    /// succeeds, fails with a non-retryable error, has been tried `max_attempts` times,
    /// or `deadline` has passed, sleeping [`RetryPolicy::jittered_delay_after`] between
    /// attempts. Only [`Error::is_retryable`] errors are retried; each retry is counted
    /// in [`STEP_RETRIES`](crate::telemetry::STEP_RETRIES) with `step = what`. The one
    /// retry loop of the library: the pipeline's steps, the bulk loader and the
    /// examples' own steps all go through it.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    /// use commerce_core::Error;
    /// use commerce_core::store::RetryPolicy;
    ///
    /// let policy = RetryPolicy {
    ///     max_attempts: 5,
    ///     base_delay: Duration::from_millis(1),
    ///     max_delay: Duration::from_millis(4),
    /// };
    /// // Fails twice with a retryable error, then succeeds.
    /// let answer = policy
    ///     .run("example", None, |failed| async move {
    ///         if failed < 2 { Err(Error::retryable("blip", std::fmt::Error)) } else { Ok(failed) }
    ///     })
    ///     .await;
    /// assert_eq!(answer.unwrap(), 2);
    /// // A permanent error is returned at once.
    /// let mut calls = 0;
    /// let refused: Result<(), _> = policy
    ///     .run("example", None, |_| { calls += 1; async { Err(Error::validation("x", "bad")) } })
    ///     .await;
    /// assert!(refused.is_err());
    /// assert_eq!(calls, 1);
    /// # }
    /// ```
    pub async fn run<T, F, Fut>(
        &self,
        what: &'static str,
        deadline: Option<std::time::Instant>,
        mut attempt: F,
    ) -> Result<T>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let attempts = self.max_attempts.max(1);
        let mut failed = 0u32;
        loop {
            match attempt(failed).await {
                Ok(v) => return Ok(v),
                Err(e)
                    if e.is_retryable()
                        && failed.saturating_add(1) < attempts
                        && deadline.is_none_or(|d| std::time::Instant::now() < d) =>
                {
                    failed += 1;
                    let delay = self.jittered_delay_after(failed);
                    tracing::debug!(step = what, attempt = failed, ?delay, error = %e, "retrying");
                    metrics::counter!(crate::telemetry::STEP_RETRIES, "step" => what).increment(1);
                    tokio::time::sleep(delay).await;
                }
                Err(e) => {
                    if e.is_retryable() {
                        tracing::warn!(step = what, attempts = failed + 1, error = %e, "giving up for now");
                    }
                    return Err(e);
                }
            }
        }
    }
}

/// [`RetryPolicy::run`] without a deadline, for a closure that ignores the count.
pub(crate) async fn retry<T, F, Fut>(
    policy: &RetryPolicy,
    what: &'static str,
    mut f: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    policy.run(what, None, |_| f()).await
}

/// `fut`, or a retryable backend error once `limit` has passed.
pub(crate) async fn with_timeout<T>(
    limit: Duration,
    what: &str,
    fut: impl Future<Output = Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r,
        Err(_) => Err(Error::backend(
            true,
            format!("{what} timed out after {limit:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn fast(attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts: attempts,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        }
    }

    #[tokio::test]
    async fn retries_only_retryable_errors_and_stops_at_the_limit() {
        let calls = AtomicU32::new(0);
        let r: Result<()> = retry(&fast(3), "x", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(Error::backend(true, "down"))
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 3);

        calls.store(0, Ordering::SeqCst);
        let r: Result<()> = retry(&fast(3), "x", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(Error::validation("f", "bad"))
        })
        .await;
        assert!(matches!(r, Err(Error::Validation { .. })));
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        calls.store(0, Ordering::SeqCst);
        let r = retry(&fast(5), "x", || async {
            if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                Err(Error::backend(true, "blip"))
            } else {
                Ok(7)
            }
        })
        .await;
        assert_eq!(r.ok(), Some(7));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn each_retry_is_counted_by_step() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(async {
                    let calls = AtomicU32::new(0);
                    let r = retry(&fast(5), "charge", || async {
                        if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                            Err(Error::backend(true, "blip"))
                        } else {
                            Ok(())
                        }
                    })
                    .await;
                    assert!(r.is_ok());
                })
        });
        let text = handle.render();
        assert!(
            text.lines()
                .any(|l| l == r#"commerce_pipeline_step_retries_total{step="charge"} 2"#),
            "{text}"
        );
    }

    #[test]
    fn jittered_delays_differ_and_stay_within_the_exponential_cap() {
        let policy = RetryPolicy::default();
        for attempt in [1, 3, 8, 40] {
            let cap = policy.delay_after(attempt);
            let delays: Vec<Duration> = (0..200)
                .map(|_| policy.jittered_delay_after(attempt))
                .collect();
            assert!(
                delays.iter().all(|d| *d <= cap),
                "attempt {attempt}: above {cap:?}"
            );
            let distinct: std::collections::HashSet<_> = delays.iter().collect();
            assert!(
                distinct.len() > 150,
                "attempt {attempt}: only {} distinct delays of 200",
                distinct.len()
            );
            // Spread over the range, not bunched at the cap (lockstep) or at zero.
            assert!(
                delays.iter().any(|d| *d < cap / 4),
                "attempt {attempt}: none low"
            );
            assert!(
                delays.iter().any(|d| *d > cap / 4 * 3),
                "attempt {attempt}: none high"
            );
        }
    }

    #[test]
    fn full_jitter_maps_the_random_range_onto_zero_to_cap() {
        let cap = Duration::from_secs(30);
        assert_eq!(full_jitter(cap, 0), Duration::ZERO);
        assert_eq!(full_jitter(cap, u64::MAX), cap);
        let half = full_jitter(cap, u64::MAX / 2);
        assert!(half > Duration::from_millis(14_999) && half < Duration::from_millis(15_001));
        assert_eq!(full_jitter(Duration::ZERO, u64::MAX), Duration::ZERO);
        let huge = Duration::MAX;
        assert!(full_jitter(huge, u64::MAX) <= huge);
    }

    #[tokio::test]
    async fn a_timeout_is_a_retryable_error() {
        let r: Result<()> = with_timeout(Duration::from_millis(5), "slow call", async {
            std::future::pending::<()>().await;
            Ok(())
        })
        .await;
        let e = r.expect_err("timed out");
        assert!(e.is_retryable());
        assert!(e.to_string().contains("slow call timed out"));
    }
}
