//! Circuit breakers and guards: trip, reject, cool down, probe once, recover.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use commerce_core::Error;
use commerce_core::clock::{Clock, ManualClock};
use commerce_core::resilience::{
    BreakerConfig, BreakerState, CircuitBreaker, Guard, OmissionReason, Section,
};
use proptest::prelude::*;

fn config(threshold: u32, cool: u64, max: u64) -> BreakerConfig {
    BreakerConfig {
        failure_threshold: threshold,
        cool_down: Duration::from_secs(cool),
        max_cool_down: Duration::from_secs(max),
    }
}

fn breaker(threshold: u32, cool: u64, max: u64) -> (Arc<ManualClock>, CircuitBreaker) {
    let clock = Arc::new(ManualClock::default());
    let b = CircuitBreaker::new("test", config(threshold, cool, max), clock.clone());
    (clock, b)
}

fn is_open(b: &CircuitBreaker) -> bool {
    matches!(b.state(), BreakerState::Open { .. })
}

#[test]
fn trips_after_consecutive_failures_only() {
    let (_, b) = breaker(3, 10, 60);
    for _ in 0..2 {
        b.try_acquire().unwrap().failure();
    }
    b.try_acquire().unwrap().success();
    for _ in 0..2 {
        b.try_acquire().unwrap().failure();
    }
    assert_eq!(b.state(), BreakerState::Closed { failures: 2 });
    b.try_acquire().unwrap().failure();
    assert!(is_open(&b));
    assert!(b.try_acquire().is_none());
    let stats = b.stats();
    assert_eq!((stats.trips, stats.failures, stats.rejected), (1, 5, 1));
}

#[test]
fn recovers_after_the_cool_down_through_one_probe() {
    let (clock, b) = breaker(1, 10, 60);
    b.try_acquire().unwrap().failure();
    clock.advance(Duration::from_millis(9_999));
    assert!(b.try_acquire().is_none(), "still cooling down");
    clock.advance(Duration::from_millis(1));
    assert_eq!(b.state(), BreakerState::HalfOpen { probing: false });
    let probe = b.try_acquire().expect("the probe");
    assert!(probe.is_probe());
    assert_eq!(b.state(), BreakerState::HalfOpen { probing: true });
    assert!(b.try_acquire().is_none(), "one probe at a time");
    probe.success();
    assert_eq!(b.state(), BreakerState::Closed { failures: 0 });
    for _ in 0..5 {
        let p = b.try_acquire().expect("closed again");
        assert!(!p.is_probe());
        p.success();
    }
}

#[test]
fn a_failed_probe_doubles_the_cool_down_up_to_the_cap() {
    let (clock, b) = breaker(1, 10, 25);
    let t0 = clock.now();
    b.try_acquire().unwrap().failure();
    assert_eq!(
        b.state(),
        BreakerState::Open {
            until: t0 + chrono::Duration::seconds(10)
        }
    );
    for expected in [20, 25, 25] {
        clock.advance(Duration::from_secs(30));
        let now = clock.now();
        b.try_acquire().expect("probe").failure();
        assert_eq!(
            b.state(),
            BreakerState::Open {
                until: now + chrono::Duration::seconds(expected)
            }
        );
    }
    // A successful probe resets the cool-down to the configured one.
    clock.advance(Duration::from_secs(30));
    b.try_acquire().expect("probe").success();
    let now = clock.now();
    b.try_acquire().unwrap().failure();
    assert_eq!(
        b.state(),
        BreakerState::Open {
            until: now + chrono::Duration::seconds(10)
        }
    );
}

#[test]
fn an_abandoned_probe_frees_the_slot_and_late_outcomes_change_nothing() {
    let (clock, b) = breaker(2, 5, 5);
    // A call admitted while closed...
    let slow = b.try_acquire().unwrap();
    b.try_acquire().unwrap().failure();
    b.try_acquire().unwrap().failure();
    assert!(is_open(&b));
    // ...that succeeds after the trip does not close the breaker.
    slow.success();
    assert!(is_open(&b));
    clock.advance(Duration::from_secs(5));
    let probe = b.try_acquire().unwrap();
    drop(probe);
    assert_eq!(b.state(), BreakerState::HalfOpen { probing: false });
    let probe = b.try_acquire().expect("a new probe may go");
    assert!(probe.is_probe());
    probe.success();
    assert_eq!(b.state(), BreakerState::Closed { failures: 0 });
}

/// 64 tasks on 4 threads race for the half-open slot: exactly one wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_callers_get_exactly_one_probe() {
    for round in 0..20 {
        let (clock, b) = breaker(1, 1, 1);
        let b = Arc::new(b);
        b.try_acquire().unwrap().failure();
        clock.advance(Duration::from_secs(1));
        let barrier = Arc::new(tokio::sync::Barrier::new(64));
        let probes = Arc::new(AtomicU32::new(0));
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let (b, barrier, probes) = (b.clone(), barrier.clone(), probes.clone());
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                if let Some(p) = b.try_acquire() {
                    probes.fetch_add(1, Ordering::SeqCst);
                    // Hold the slot while the others try.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    p.success();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(probes.load(Ordering::SeqCst), 1, "round {round}");
        assert_eq!(b.state(), BreakerState::Closed { failures: 0 });
        assert_eq!(b.stats().rejected, 63);
    }
}

#[derive(Debug, Clone)]
enum Op {
    Acquire,
    Succeed(usize),
    Fail(usize),
    Abandon(usize),
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Acquire),
        3 => (0usize..4).prop_map(Op::Succeed),
        4 => (0usize..4).prop_map(Op::Fail),
        1 => (0usize..4).prop_map(Op::Abandon),
        2 => (0u64..25).prop_map(Op::Advance),
    ]
}

/// The state machine as specified, written out independently.
#[derive(Debug)]
struct ModelBreaker {
    threshold: u32,
    base: u64,
    max: u64,
    now: u64,
    phase: Phase,
    failures: u32,
    cool: u64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Closed,
    Open(u64),
    Half(bool),
}

impl ModelBreaker {
    /// `Some(is_probe)` when admitted.
    fn acquire(&mut self) -> Option<bool> {
        match self.phase {
            Phase::Closed => Some(false),
            Phase::Open(until) if self.now < until => None,
            Phase::Open(_) | Phase::Half(false) => {
                self.phase = Phase::Half(true);
                Some(true)
            }
            Phase::Half(true) => None,
        }
    }

    fn report(&mut self, probe: bool, ok: bool) {
        match (self.phase, probe, ok) {
            (Phase::Half(_), true, true) => {
                self.phase = Phase::Closed;
                self.failures = 0;
                self.cool = self.base;
            }
            (Phase::Half(_), true, false) => {
                self.cool = (self.cool * 2).min(self.max);
                self.phase = Phase::Open(self.now + self.cool);
            }
            (Phase::Closed, false, true) => self.failures = 0,
            (Phase::Closed, false, false) => {
                self.failures += 1;
                if self.failures >= self.threshold {
                    self.failures = 0;
                    self.cool = self.base;
                    self.phase = Phase::Open(self.now + self.base);
                }
            }
            _ => {}
        }
    }

    fn abandon(&mut self, probe: bool) {
        if probe && matches!(self.phase, Phase::Half(_)) {
            self.phase = Phase::Half(false);
        }
    }

    fn state(&self, t0: chrono::DateTime<chrono::Utc>) -> BreakerState {
        match self.phase {
            Phase::Closed => BreakerState::Closed {
                failures: self.failures,
            },
            Phase::Open(until) if self.now < until => BreakerState::Open {
                until: t0 + chrono::Duration::seconds(until as i64),
            },
            Phase::Open(_) => BreakerState::HalfOpen { probing: false },
            Phase::Half(probing) => BreakerState::HalfOpen { probing },
        }
    }
}

proptest! {
    /// Any interleaving of calls, outcomes (in any order, including late ones and
    /// abandoned probes) and clock moves leaves the breaker where the specification
    /// says.
    #[test]
    fn the_breaker_follows_its_state_machine(
        threshold in 1u32..4,
        ops in prop::collection::vec(op(), 1..80),
    ) {
        let (clock, b) = breaker(threshold, 10, 40);
        let t0 = clock.now();
        let mut model = ModelBreaker {
            threshold, base: 10, max: 40, now: 0, phase: Phase::Closed, failures: 0, cool: 10,
        };
        let mut permits = Vec::new();
        for op in ops {
            match op {
                Op::Acquire => {
                    let got = b.try_acquire();
                    let want = model.acquire();
                    prop_assert_eq!(got.as_ref().map(|p| p.is_probe()), want);
                    if let Some(p) = got {
                        permits.push(p);
                    }
                }
                Op::Succeed(i) | Op::Fail(i) | Op::Abandon(i) if i < permits.len() => {
                    let p = permits.remove(i);
                    let probe = p.is_probe();
                    match op {
                        Op::Succeed(_) => { p.success(); model.report(probe, true); }
                        Op::Fail(_) => { p.failure(); model.report(probe, false); }
                        _ => { drop(p); model.abandon(probe); }
                    }
                }
                Op::Advance(s) => {
                    clock.advance(Duration::from_secs(s));
                    model.now += s;
                }
                _ => {}
            }
            prop_assert_eq!(b.state(), model.state(t0));
        }
    }
}

#[tokio::test(start_paused = true)]
async fn guards_cut_slow_calls_and_count_them_as_failures() {
    let clock = Arc::new(ManualClock::default());
    let guard = Guard::new(
        Section::Similar,
        Duration::from_millis(30),
        config(2, 10, 10),
        clock.clone(),
    );
    let calls = AtomicU32::new(0);
    let slow = || async {
        calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok(())
    };
    for _ in 0..2 {
        let start = tokio::time::Instant::now();
        let o = guard.run(slow()).await.unwrap_err();
        assert_eq!(o.reason, OmissionReason::TimedOut { after_ms: 30 });
        assert_eq!(start.elapsed(), Duration::from_millis(30));
    }
    // Tripped: the next call is not made at all, and returns at once.
    let start = tokio::time::Instant::now();
    let o = guard.run(slow()).await.unwrap_err();
    assert_eq!(o.reason, OmissionReason::CircuitOpen);
    assert_eq!(o.section, Section::Similar);
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // After the cool-down a healthy call closes it again.
    clock.advance(Duration::from_secs(10));
    assert_eq!(guard.run(async { Ok(5) }).await.unwrap(), 5);
    assert_eq!(
        guard.breaker().state(),
        BreakerState::Closed { failures: 0 }
    );
}

#[tokio::test]
async fn decisions_do_not_trip_and_a_spent_budget_skips_the_call() {
    let clock = Arc::new(ManualClock::default());
    let guard = Guard::new(
        Section::AlsoBought,
        Duration::from_millis(50),
        config(1, 10, 10),
        clock,
    );
    for _ in 0..5 {
        let o = guard
            .run(async { Err::<(), _>(Error::not_found(commerce_core::EntityKind::Product, "p")) })
            .await
            .unwrap_err();
        assert!(matches!(o.reason, OmissionReason::Failed { .. }));
    }
    assert_eq!(
        guard.breaker().state(),
        BreakerState::Closed { failures: 0 }
    );
    let called = AtomicU32::new(0);
    let o = guard
        .run_within(Duration::ZERO, async {
            called.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
        .await
        .unwrap_err();
    assert_eq!(o.reason, OmissionReason::NoTimeLeft);
    assert_eq!(called.load(Ordering::SeqCst), 0);
    // A backend error does trip it.
    let o = guard
        .run(async { Err::<(), _>(Error::backend(true, "down")) })
        .await
        .unwrap_err();
    assert_eq!(
        o.to_string(),
        "also_bought failed: backend error (retryable): down"
    );
    assert!(is_open(guard.breaker()));
}

/// A guarded call whose caller gives up (an outer timeout drops it) while it is the
/// half-open probe does not wedge the breaker.
#[tokio::test(start_paused = true)]
async fn a_cancelled_probe_does_not_wedge_the_breaker() {
    let clock = Arc::new(ManualClock::default());
    let guard = Guard::new(
        Section::Cache,
        Duration::from_secs(60),
        config(1, 10, 10),
        clock.clone(),
    );
    let _ = guard
        .run(async { Err::<(), _>(Error::backend(true, "down")) })
        .await;
    clock.advance(Duration::from_secs(10));
    let hung = guard.run(std::future::pending::<commerce_core::Result<()>>());
    assert!(
        tokio::time::timeout(Duration::from_millis(5), hung)
            .await
            .is_err()
    );
    assert_eq!(
        guard.breaker().state(),
        BreakerState::HalfOpen { probing: false }
    );
    assert_eq!(guard.run(async { Ok(1) }).await.unwrap(), 1);
}
