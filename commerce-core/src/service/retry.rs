//! Retrying one step with backoff, and bounding a call by a timeout.

use std::future::Future;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::store::RetryPolicy;

/// Runs `f` until it succeeds, fails with a non-retryable error, or has been tried
/// `policy.max_attempts` times, sleeping [`RetryPolicy::delay_after`] between attempts.
/// Only [`Error::is_retryable`] errors are retried.
pub(crate) async fn retry<T, F, Fut>(policy: &RetryPolicy, what: &str, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let attempts = policy.max_attempts.max(1);
    let mut attempt = 1;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_retryable() && attempt < attempts => {
                let delay = policy.delay_after(attempt);
                tracing::debug!(step = what, attempt, ?delay, error = %e, "retrying");
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            Err(e) => {
                if e.is_retryable() {
                    tracing::warn!(step = what, attempts, error = %e, "giving up for now");
                }
                return Err(e);
            }
        }
    }
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
