//! The Redis GCRA limiter on one Redis server and on the cluster.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use commerce_core::Error;
use commerce_core::ratelimit::{RateLimits, RateQuota};
use commerce_core::resilience::{Admission, LimitedAction, UserRateLimit};
use commerce_redis::{RedisBackend, RedisRateLimiter};

async fn bursts_then_limits(redis: RedisBackend) {
    let quota = RateQuota::per_period(Duration::from_secs(3600), 5).expect("quota");
    let limiter = RedisRateLimiter::new(
        redis.clone(),
        RateLimits::new(quota).with(LimitedAction::Checkout, quota.with_burst(1).expect("q")),
    );
    for n in 0..5 {
        assert_eq!(
            limiter
                .admit(LimitedAction::Search, "user:1")
                .await
                .expect("admit"),
            Admission::Admitted,
            "request {n} is within the burst"
        );
    }
    match limiter
        .admit(LimitedAction::Search, "user:1")
        .await
        .expect("admit")
    {
        Admission::Limited { retry_after } => {
            // 5 an hour: one every 12 minutes.
            assert!(retry_after > Duration::from_secs(600), "{retry_after:?}");
            assert!(retry_after <= Duration::from_secs(720), "{retry_after:?}");
        }
        Admission::Admitted => panic!("the sixth request must be limited"),
    }
    assert_eq!(
        limiter
            .admit(LimitedAction::Search, "ip:10.0.0.1")
            .await
            .expect("admit"),
        Admission::Admitted,
        "another key has its own bucket"
    );
    assert_eq!(
        limiter
            .admit(LimitedAction::Checkout, "user:1")
            .await
            .expect("admit"),
        Admission::Admitted,
        "another action has its own bucket"
    );
    assert!(matches!(
        limiter
            .admit(LimitedAction::Checkout, "user:1")
            .await
            .expect("admit"),
        Admission::Limited { .. }
    ));
    assert!(matches!(
        limiter.admit(LimitedAction::Search, "").await,
        Err(Error::Validation { .. })
    ));
    assert!(matches!(
        limiter.admit(LimitedAction::Search, &"k".repeat(300)).await,
        Err(Error::Validation { .. })
    ));
}

async fn concurrent_callers_never_exceed_the_limit(redis: RedisBackend) {
    let quota = RateQuota::per_period(Duration::from_secs(3600), 20).expect("quota");
    let limiter = Arc::new(RedisRateLimiter::new(redis, RateLimits::new(quota)));
    let admitted = Arc::new(AtomicU32::new(0));
    let tasks: Vec<_> = (0..300)
        .map(|_| {
            let (limiter, admitted) = (limiter.clone(), admitted.clone());
            tokio::spawn(async move {
                if limiter
                    .admit(LimitedAction::Checkout, "api-key:hot")
                    .await
                    .expect("admit")
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
    assert_eq!(admitted.load(Ordering::SeqCst), 20, "exactly the burst");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gcra_on_single_redis_and_cluster() {
    for redis in [common::single("rl").await, common::cluster("rl").await] {
        bursts_then_limits(redis.clone()).await;
        concurrent_callers_never_exceed_the_limit(redis.clone()).await;
        redis.delete_all().await.expect("cleanup");
    }
}
