//! The [`EventLog`](crate::store::EventLog) suite.
//!
//! Checks: `append` returns strictly increasing ids and `read` returns the events in id
//! order with their append time; paging by `after`/`limit`; limit validation;
//! checkpoints are per consumer, start at 0 and never go back; `poll` reads after the
//! checkpoint; `wait_for_events` returns at once when events exist and is woken by a
//! later append; `prune` deletes only events older than `before` that every consumer
//! with a checkpoint has committed, and ids are never reused afterwards; under
//! concurrent appends a consumer following its cursor sees every event exactly once,
//! in increasing id order (no gaps).

use std::collections::BTreeSet;
use std::time::Duration;

use super::builder::{Area, StoreBuilder};
use super::check::{assert_err, concurrently, join, must};
use super::fixtures::{cust, oid};
use super::runner::{Case, Ctx, Env, Settings, cases, read_all_after, run_one_area};
use crate::error::Error;
use crate::event::DomainEvent;
use crate::id::{ConsumerName, EventId};
use crate::store::EventLogExt;

/// Runs every event-log case against `builder`'s stores; panics listing the failed
/// cases.
pub async fn test_all<B: StoreBuilder>(builder: &B) {
    test_all_with(builder, &Settings::from_env()).await;
}

/// [`test_all`] with explicit [`Settings`].
pub async fn test_all_with<B: StoreBuilder>(builder: &B, settings: &Settings) {
    run_one_area(builder, settings, Area::Events, cases()).await;
}

pub(crate) fn cases() -> Vec<Case> {
    cases![
        append_assigns_increasing_ids,
        read_pages_in_id_order,
        checkpoints_are_per_consumer_and_monotonic,
        poll_reads_after_the_checkpoint,
        wait_for_events_sees_earlier_and_later_appends,
        prune_respects_checkpoints_and_time,
        ids_are_never_reused_after_prune,
        concurrent_appends_are_read_without_gaps,
    ]
}

fn event(n: usize) -> DomainEvent {
    DomainEvent::OrderCreated {
        order_id: oid(&format!("o-{n}")),
        customer_id: cust("c1"),
    }
}

fn consumer(name: &str) -> ConsumerName {
    ConsumerName::new(name).expect("valid consumer name")
}

async fn append(ctx: &Ctx, from: usize, n: usize) -> Vec<EventId> {
    let ids = must!(
        ctx.events()
            .append((from..from + n).map(event).collect())
            .await,
        "append({n} events)"
    );
    assert_eq!(ids.len(), n, "append returns one id per event");
    ids
}

async fn append_assigns_increasing_ids(env: Env<'_>) {
    let ctx = env.ctx().await;
    let t0 = ctx.now();
    let first = append(&ctx, 0, 3).await;
    ctx.advance(Duration::from_secs(5));
    let second = append(&ctx, 3, 2).await;
    let ids: Vec<EventId> = first.iter().chain(&second).copied().collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]) && ids[0] > EventId(0),
        "ids must be positive and strictly increasing across appends: {ids:?}"
    );
    let read = read_all_after(&*ctx.events(), EventId(0)).await;
    assert_eq!(
        read.iter().map(|e| e.id).collect::<Vec<_>>(),
        ids,
        "read returns every appended event, in id order"
    );
    assert_eq!(
        read.iter().map(|e| e.event.clone()).collect::<Vec<_>>(),
        (0..5).map(event).collect::<Vec<_>>(),
        "read returns the events in append order"
    );
    assert!(
        read[..3].iter().all(|e| e.at == t0) && read[3..].iter().all(|e| e.at == ctx.now()),
        "each event carries the store clock's time of its append"
    );
    assert_eq!(
        must!(ctx.events().append(vec![]).await, "empty append"),
        vec![]
    );
}

async fn read_pages_in_id_order(env: Env<'_>) {
    let ctx = env.ctx().await;
    let log = ctx.events();
    let ids = append(&ctx, 0, 10).await;
    let page = must!(log.read(EventId(0), 4).await, "read(0, 4)");
    assert_eq!(page.iter().map(|e| e.id).collect::<Vec<_>>(), ids[..4]);
    let page = must!(log.read(ids[3], 4).await, "read(4th, 4)");
    assert_eq!(
        page.iter().map(|e| e.id).collect::<Vec<_>>(),
        ids[4..8],
        "read(after, limit) starts after `after`"
    );
    assert!(must!(log.read(ids[9], 100).await, "read after the last").is_empty());
    assert_eq!(
        must!(log.read(EventId(ids[2].0), 1000).await, "read(3rd)").len(),
        7
    );
    assert_err!(
        log.read(EventId(0), 0).await,
        Error::Validation { .. },
        "read with limit 0"
    );
}

async fn checkpoints_are_per_consumer_and_monotonic(env: Env<'_>) {
    let ctx = env.ctx().await;
    let log = ctx.events();
    let ids = append(&ctx, 0, 6).await;
    let (a, b) = (consumer("search-index"), consumer("mailer"));
    assert_eq!(must!(log.checkpoint(&a).await, "checkpoint"), EventId(0));
    must!(log.commit(&a, ids[4]).await, "commit");
    assert_eq!(must!(log.checkpoint(&a).await, "checkpoint"), ids[4]);
    must!(log.commit(&a, ids[1]).await, "commit lower");
    assert_eq!(
        must!(log.checkpoint(&a).await, "checkpoint"),
        ids[4],
        "a commit below the checkpoint is ignored"
    );
    assert_eq!(
        must!(log.checkpoint(&b).await, "checkpoint"),
        EventId(0),
        "checkpoints are per consumer"
    );
    must!(log.commit(&b, ids[0]).await, "commit b");
    assert_eq!(must!(log.checkpoint(&b).await, "checkpoint"), ids[0]);
    assert_eq!(must!(log.checkpoint(&a).await, "checkpoint"), ids[4]);
}

async fn poll_reads_after_the_checkpoint(env: Env<'_>) {
    let ctx = env.ctx().await;
    let log = ctx.events();
    let ids = append(&ctx, 0, 5).await;
    let c = consumer("projector");
    let got = must!(log.poll(&c, 2).await, "poll");
    assert_eq!(got.iter().map(|e| e.id).collect::<Vec<_>>(), ids[..2]);
    must!(log.commit(&c, ids[1]).await, "commit");
    let got = must!(log.poll(&c, 100).await, "poll");
    assert_eq!(got.iter().map(|e| e.id).collect::<Vec<_>>(), ids[2..]);
    must!(log.commit(&c, ids[4]).await, "commit");
    assert!(must!(log.poll(&c, 100).await, "poll").is_empty());
}

async fn wait_for_events_sees_earlier_and_later_appends(env: Env<'_>) {
    let ctx = env.ctx().await;
    let log = ctx.events();
    let ids = append(&ctx, 0, 2).await;
    assert!(
        must!(
            log.wait_for_events(EventId(0), Duration::from_secs(30))
                .await,
            "wait"
        ),
        "wait_for_events must return true at once when events after `after` exist"
    );
    let last = ids[1];
    let waiter = {
        let log = log.clone();
        tokio::spawn(async move { log.wait_for_events(last, Duration::from_secs(30)).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    append(&ctx, 2, 1).await;
    let woken = tokio::time::timeout(Duration::from_secs(20), join(waiter, "the waiter")).await;
    match woken {
        Ok(Ok(true)) => {}
        Ok(other) => {
            panic!("a waiter must be woken by a later append and return true, got {other:?}")
        }
        Err(_) => panic!("a waiter (30 s timeout) was not woken 20 s after an append"),
    }
}

async fn prune_respects_checkpoints_and_time(env: Env<'_>) {
    let ctx = env.ctx().await;
    let log = ctx.events();
    let old = append(&ctx, 0, 3).await;
    ctx.advance(Duration::from_secs(10));
    let t1 = ctx.now();
    let new = append(&ctx, 3, 3).await;
    let ids: Vec<EventId> = old.iter().chain(&new).copied().collect();
    let (a, b) = (consumer("a"), consumer("b"));
    must!(log.commit(&a, ids[4]).await, "commit a");
    must!(log.commit(&b, ids[1]).await, "commit b");
    let later = t1 + chrono::Duration::seconds(1);
    let remaining = |from: usize| ids[from..].to_vec();
    assert_eq!(
        must!(log.prune(later).await, "prune"),
        2,
        "prune deletes only events every consumer committed (b is at the 2nd)"
    );
    let left: Vec<EventId> = read_all_after(&*log, EventId(0))
        .await
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(left, remaining(2));
    must!(log.commit(&b, ids[5]).await, "commit b");
    assert_eq!(
        must!(log.prune(t1).await, "prune before t1"),
        1,
        "prune deletes only events appended before `before` (the 3rd; the others are at t1)"
    );
    assert_eq!(
        must!(log.prune(later).await, "prune"),
        2,
        "then up to a's checkpoint (the 5th)"
    );
    let left: Vec<EventId> = read_all_after(&*log, EventId(0))
        .await
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(left, remaining(5));
    assert_eq!(must!(log.prune(later).await, "prune again"), 0);
}

async fn ids_are_never_reused_after_prune(env: Env<'_>) {
    let ctx = env.ctx().await;
    let log = ctx.events();
    let before = append(&ctx, 0, 4).await;
    ctx.advance(Duration::from_secs(1));
    // No consumer has a checkpoint: everything older than `now` may go.
    assert_eq!(must!(log.prune(ctx.now()).await, "prune"), 4);
    assert!(read_all_after(&*log, EventId(0)).await.is_empty());
    let after = append(&ctx, 4, 2).await;
    assert!(
        after[0] > before[3],
        "ids after a prune must stay above every id ever handed out: {after:?} vs {before:?}"
    );
}

async fn concurrent_appends_are_read_without_gaps(env: Env<'_>) {
    let ctx = env.ctx().await;
    let log = ctx.events();
    let writers = 8usize;
    let batches = 12usize;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let log = log.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut cursor = EventId(0);
            let mut seen = Vec::new();
            loop {
                let finished = done.load(std::sync::atomic::Ordering::SeqCst);
                let page = log.read(cursor, 7).await.expect("read");
                for e in &page {
                    assert!(e.id > cursor, "read returned {} after {cursor}", e.id);
                    cursor = e.id;
                    seen.push(e.id);
                }
                if finished && page.is_empty() {
                    return seen;
                }
                tokio::task::yield_now().await;
            }
        })
    };
    let appended = concurrently(writers, |w| {
        let log = log.clone();
        async move {
            let mut mine = Vec::new();
            for b in 0..batches {
                let n = 1 + (w + b) % 3;
                let events = (0..n).map(|k| event(w * 1000 + b * 10 + k)).collect();
                mine.extend(log.append(events).await.expect("append"));
            }
            mine
        }
    })
    .await;
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = join(reader, "the reader").await;
    let appended: BTreeSet<EventId> = appended.into_iter().flatten().collect();
    let seen_set: BTreeSet<EventId> = seen.iter().copied().collect();
    assert_eq!(seen.len(), seen_set.len(), "the reader saw an event twice");
    let missing: Vec<&EventId> = appended.difference(&seen_set).collect();
    assert!(
        missing.is_empty(),
        "a reader following its cursor during concurrent appends skipped {missing:?}: read must never \
         return an id while a smaller one can still commit (no gaps)"
    );
    assert_eq!(seen_set, appended);
}
