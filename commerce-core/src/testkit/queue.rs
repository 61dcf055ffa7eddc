//! The [`OrderQueue`](crate::store::OrderQueue) suite.
//!
//! Checks: claims come oldest first with attempt 1 and `lease_until = now + visibility`;
//! a leased job is invisible until its lease ends and is then claimed again as the next
//! attempt (a crashed worker loses it); a stale `ack`/`fail` is `Conflict { Job }` and
//! changes nothing; `ack` deletes; `fail` retries at a time within
//! `now ..= now + delay_after(attempt)` (jittered: jobs failing together get spread
//! times) with the error carried to the next claim, and dead-letters at `max_attempts` (also when
//! earlier attempts were lost to expired leases); `stats` counts ready, delayed, leased
//! and dead jobs; limits are validated; concurrent claimers never get the same job
//! and together drain the queue.

use std::collections::BTreeSet;
use std::time::Duration;

use super::builder::{Area, StoreBuilder};
use super::check::{assert_err, concurrently, must};
use super::fixtures::oid;
use super::runner::{Case, Ctx, Env, Settings, cases, run_one_area};
use crate::error::{EntityKind, Error};
use crate::id::JobId;
use crate::store::{QueueStats, QueuedJob, RetryOutcome, RetryPolicy};

/// Runs every queue case against `builder`'s stores; panics listing the failed cases.
pub async fn test_all<B: StoreBuilder>(builder: &B) {
    test_all_with(builder, &Settings::from_env()).await;
}

/// [`test_all`] with explicit [`Settings`].
pub async fn test_all_with<B: StoreBuilder>(builder: &B, settings: &Settings) {
    run_one_area(builder, settings, Area::Queue, cases()).await;
}

pub(crate) fn cases() -> Vec<Case> {
    cases![
        claims_come_oldest_first_with_a_lease,
        a_lapsed_lease_is_claimed_again,
        stale_ack_and_fail_are_conflicts,
        fail_retries_after_the_backoff,
        retries_of_jobs_failing_together_are_spread,
        the_last_attempt_is_dead_lettered,
        lapsed_leases_count_as_attempts,
        stats_count_jobs_by_state,
        limits_are_validated,
        concurrent_claimers_never_share_a_job,
    ]
}

const VISIBILITY: Duration = Duration::from_secs(30);

async fn enqueue(ctx: &Ctx, n: usize) -> Vec<JobId> {
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(must!(
            ctx.queue().enqueue(&oid(&format!("o-{i:03}"))).await,
            "enqueue"
        ));
    }
    ids
}

async fn claim(ctx: &Ctx, limit: u32) -> Vec<QueuedJob> {
    must!(ctx.queue().claim(limit, VISIBILITY).await, "claim({limit})")
}

async fn stats(ctx: &Ctx) -> QueueStats {
    must!(ctx.queue().stats().await, "stats")
}

async fn claims_come_oldest_first_with_a_lease(env: Env<'_>) {
    let ctx = env.ctx().await;
    let t0 = ctx.now();
    let ids = enqueue(&ctx, 3).await;
    assert_eq!(
        ids.iter().collect::<BTreeSet<_>>().len(),
        3,
        "enqueue returns distinct ids"
    );
    ctx.advance(Duration::from_secs(1));
    let now = ctx.now();
    let jobs = claim(&ctx, 2).await;
    assert_eq!(
        jobs.iter()
            .map(|j| (j.order_id.clone(), j.attempt))
            .collect::<Vec<_>>(),
        vec![(oid("o-000"), 1), (oid("o-001"), 1)],
        "claim returns the oldest jobs first, as attempt 1"
    );
    for j in &jobs {
        assert_eq!(
            j.lease_until,
            now + chrono::Duration::seconds(30),
            "lease_until = now + visibility"
        );
        assert_eq!(j.enqueued_at, t0);
        assert_eq!(j.last_error, None);
    }
    let rest = claim(&ctx, 10).await;
    assert_eq!(
        rest.iter().map(|j| j.order_id.clone()).collect::<Vec<_>>(),
        vec![oid("o-002")],
        "a leased job is not claimable"
    );
    assert!(claim(&ctx, 10).await.is_empty());
    must!(ctx.queue().ack(&jobs[0]).await, "ack");
    ctx.advance(VISIBILITY);
    let again: Vec<_> = claim(&ctx, 10)
        .await
        .into_iter()
        .map(|j| j.order_id)
        .collect();
    assert_eq!(
        again,
        vec![oid("o-001"), oid("o-002")],
        "an acked job is gone; unacked ones come back after their lease"
    );
}

async fn a_lapsed_lease_is_claimed_again(env: Env<'_>) {
    let ctx = env.ctx().await;
    enqueue(&ctx, 1).await;
    let first = claim(&ctx, 1).await.remove(0);
    ctx.advance(VISIBILITY - Duration::from_secs(1));
    assert!(
        claim(&ctx, 1).await.is_empty(),
        "claimable before the lease ended"
    );
    ctx.advance(Duration::from_secs(1));
    let second = claim(&ctx, 1).await;
    assert_eq!(
        second.len(),
        1,
        "a job whose lease ended is claimable again"
    );
    assert_eq!(
        (second[0].id, second[0].attempt),
        (first.id, 2),
        "the new claim is the next attempt"
    );
    must!(ctx.queue().ack(&second[0]).await, "ack the second claim");
    assert_eq!(stats(&ctx).await, QueueStats::default());
}

async fn stale_ack_and_fail_are_conflicts(env: Env<'_>) {
    let ctx = env.ctx().await;
    let queue = ctx.queue();
    enqueue(&ctx, 1).await;
    let stale = claim(&ctx, 1).await.remove(0);
    ctx.advance(VISIBILITY);
    let current = claim(&ctx, 1).await.remove(0);
    let before = stats(&ctx).await;
    assert_err!(
        queue.ack(&stale).await,
        Error::Conflict {
            kind: EntityKind::Job,
            ..
        },
        "ack of a claim whose lease lapsed and was re-claimed"
    );
    assert_err!(
        queue.fail(&stale, "boom", &RetryPolicy::default()).await,
        Error::Conflict {
            kind: EntityKind::Job,
            ..
        },
        "fail of a stale claim"
    );
    assert_eq!(
        stats(&ctx).await,
        before,
        "a stale ack/fail changed the queue"
    );
    must!(queue.ack(&current).await, "ack of the current claim");
    assert_err!(
        queue.ack(&current).await,
        Error::Conflict {
            kind: EntityKind::Job,
            ..
        },
        "ack of a job already acked"
    );
    assert_eq!(stats(&ctx).await, QueueStats::default());
}

async fn fail_retries_after_the_backoff(env: Env<'_>) {
    let ctx = env.ctx().await;
    let queue = ctx.queue();
    let policy = RetryPolicy {
        max_attempts: 5,
        base_delay: Duration::from_secs(10),
        max_delay: Duration::from_secs(25),
    };
    enqueue(&ctx, 1).await;
    for attempt in 1..=3u32 {
        let job = claim(&ctx, 1).await.remove(0);
        assert_eq!(job.attempt, attempt);
        if attempt > 1 {
            assert_eq!(
                job.last_error.as_deref(),
                Some(format!("failure {}", attempt - 1).as_str()),
                "a claim carries the previous attempt's error"
            );
        }
        let now = ctx.now();
        let outcome = must!(
            queue
                .fail(&job, &format!("failure {attempt}"), &policy)
                .await,
            "fail"
        );
        let cap = policy.delay_after(attempt);
        let RetryOutcome::Retrying { at } = outcome else {
            panic!("attempt {attempt} of 5 is retried, got {outcome:?}");
        };
        assert!(
            at >= now && at <= crate::clock::add(now, cap),
            "attempt {attempt} retries within now ..= now + delay_after({attempt}) = {cap:?}, got {:?} after now",
            at - now
        );
        assert_eq!(stats(&ctx).await.delayed, u64::from(at > now));
        let delay = (at - now).to_std().unwrap_or_default();
        if delay >= Duration::from_millis(2) {
            ctx.advance(delay - Duration::from_millis(1));
            assert!(
                claim(&ctx, 1).await.is_empty(),
                "claimable before its retry time"
            );
            ctx.advance(Duration::from_millis(1));
        } else {
            ctx.advance(delay);
        }
    }
    assert_eq!(claim(&ctx, 1).await[0].attempt, 4);
}

/// Ten jobs failing at the same instant are not all retried at the same instant (full
/// jitter), and each retry time is within `now ..= now + delay_after(1)`.
async fn retries_of_jobs_failing_together_are_spread(env: Env<'_>) {
    let ctx = env.ctx().await;
    let queue = ctx.queue();
    let policy = RetryPolicy {
        max_attempts: 5,
        base_delay: Duration::from_secs(60),
        max_delay: Duration::from_secs(60),
    };
    enqueue(&ctx, 10).await;
    let jobs = claim(&ctx, 10).await;
    assert_eq!(jobs.len(), 10);
    let now = ctx.now();
    let mut times = BTreeSet::new();
    for job in &jobs {
        match must!(queue.fail(job, "blip", &policy).await, "fail") {
            RetryOutcome::Retrying { at } => {
                assert!(
                    at >= now && at <= now + chrono::Duration::seconds(60),
                    "retry time {:?} after now is outside 0 ..= 60 s",
                    at - now
                );
                times.insert(at);
            }
            other => panic!("attempt 1 of 5 is retried, got {other:?}"),
        }
    }
    // Ten uniform picks in 60 s (microsecond resolution or finer) are all equal with
    // negligible probability: a store without jitter returns one time ten times.
    assert!(
        times.len() >= 5,
        "only {} distinct retry times for 10 jobs failing together: no jitter",
        times.len()
    );
    ctx.advance(Duration::from_secs(60));
    assert_eq!(
        claim(&ctx, 20).await.len(),
        10,
        "all claimable after the cap"
    );
}

async fn the_last_attempt_is_dead_lettered(env: Env<'_>) {
    let ctx = env.ctx().await;
    let queue = ctx.queue();
    let policy = RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(1),
    };
    enqueue(&ctx, 1).await;
    for attempt in 1..=2 {
        let job = claim(&ctx, 1).await.remove(0);
        assert_eq!(job.attempt, attempt);
        assert!(
            matches!(
                must!(
                    queue.fail(&job, &format!("e{attempt}"), &policy).await,
                    "fail"
                ),
                RetryOutcome::Retrying { .. }
            ),
            "attempt {attempt} of 3 is retried"
        );
        ctx.advance(Duration::from_secs(1));
    }
    let job = claim(&ctx, 1).await.remove(0);
    assert_eq!(job.attempt, 3);
    let at = ctx.now();
    assert_eq!(
        must!(
            queue.fail(&job, "final error", &policy).await,
            "fail the last attempt"
        ),
        RetryOutcome::DeadLettered,
        "failing attempt max_attempts dead-letters the job"
    );
    let dead = must!(queue.dead_letters(10).await, "dead_letters");
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (
            dead[0].id,
            dead[0].order_id.clone(),
            dead[0].attempts,
            dead[0].last_error.as_str(),
            dead[0].at
        ),
        (job.id, oid("o-000"), 3, "final error", at),
        "the dead letter keeps the job, its attempts, the last error and the time"
    );
    ctx.advance(Duration::from_secs(3600));
    assert!(
        claim(&ctx, 10).await.is_empty(),
        "a dead job is never claimed"
    );
    assert_err!(
        queue.ack(&job).await,
        Error::Conflict { .. },
        "ack of a dead-lettered job"
    );
    assert_eq!(
        stats(&ctx).await,
        QueueStats {
            dead: 1,
            ..QueueStats::default()
        }
    );
}

async fn lapsed_leases_count_as_attempts(env: Env<'_>) {
    let ctx = env.ctx().await;
    let policy = RetryPolicy {
        max_attempts: 2,
        ..RetryPolicy::default()
    };
    enqueue(&ctx, 1).await;
    claim(&ctx, 1).await;
    ctx.advance(VISIBILITY);
    let second = claim(&ctx, 1).await.remove(0);
    assert_eq!(
        second.attempt, 2,
        "a claim after a lapsed lease is the next attempt"
    );
    assert_eq!(
        must!(
            ctx.queue().fail(&second, "crash loop", &policy).await,
            "fail"
        ),
        RetryOutcome::DeadLettered,
        "an attempt lost to a lapsed lease counts towards max_attempts"
    );
}

async fn stats_count_jobs_by_state(env: Env<'_>) {
    let ctx = env.ctx().await;
    let queue = ctx.queue();
    enqueue(&ctx, 5).await;
    assert_eq!(
        stats(&ctx).await,
        QueueStats {
            ready: 5,
            ..QueueStats::default()
        }
    );
    let jobs = claim(&ctx, 3).await;
    must!(queue.ack(&jobs[0]).await, "ack");
    let now = ctx.now();
    let outcome = must!(
        queue.fail(&jobs[1], "x", &RetryPolicy::default()).await,
        "fail"
    );
    // A jittered delay of zero (rare) makes the job ready at once.
    let delayed = u64::from(matches!(outcome, RetryOutcome::Retrying { at } if at > now));
    assert_eq!(
        stats(&ctx).await,
        QueueStats {
            ready: 3 - delayed,
            delayed,
            leased: 1,
            dead: 0
        }
    );
    ctx.advance(VISIBILITY);
    assert_eq!(
        stats(&ctx).await,
        QueueStats {
            ready: 4,
            delayed: 0,
            leased: 0,
            dead: 0
        },
        "a lapsed lease and a passed retry time make jobs ready"
    );
}

async fn limits_are_validated(env: Env<'_>) {
    let ctx = env.ctx().await;
    enqueue(&ctx, 1).await;
    assert_err!(
        ctx.queue().claim(0, VISIBILITY).await,
        Error::Validation { .. },
        "claim(0)"
    );
    assert_err!(
        ctx.queue().dead_letters(0).await,
        Error::Validation { .. },
        "dead_letters(0)"
    );
    assert_eq!(stats(&ctx).await.ready, 1, "a refused claim leased a job");
}

async fn concurrent_claimers_never_share_a_job(env: Env<'_>) {
    let ctx = env.ctx().await;
    let queue = ctx.queue();
    let n = 150;
    let ids: BTreeSet<JobId> = enqueue(&ctx, n).await.into_iter().collect();
    let total = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let claimed = concurrently(8, |w| {
        let queue = queue.clone();
        let total = total.clone();
        async move {
            let mut mine = Vec::new();
            loop {
                let jobs = queue
                    .claim(1 + (w % 4) as u32, VISIBILITY)
                    .await
                    .expect("claim");
                // More claims than jobs means a job was handed out twice: stop and report.
                let so_far = total.fetch_add(jobs.len(), std::sync::atomic::Ordering::SeqCst);
                if jobs.is_empty() || so_far > n {
                    return mine;
                }
                for j in jobs {
                    if j.id.0 % 2 == 0 {
                        queue.ack(&j).await.expect("ack");
                    }
                    mine.push(j.id);
                }
            }
        }
    })
    .await;
    let all: Vec<JobId> = claimed.into_iter().flatten().collect();
    let unique: BTreeSet<JobId> = all.iter().copied().collect();
    assert_eq!(
        all.len(),
        unique.len(),
        "two concurrent claims returned the same job"
    );
    assert_eq!(unique, ids, "the claimers together drained the queue");
    let s = stats(&ctx).await;
    assert_eq!(s.ready, 0);
    assert_eq!(
        s.leased,
        n as u64 - ids.iter().filter(|i| i.0 % 2 == 0).count() as u64
    );
}
