//! The [`OrderSteps`] suite: an adapter's fused steps against
//! [`ComposedSteps`] (the separate store calls) on fresh stores of the same adapter.
//!
//! Checks: the same script of steps (reserve from one and from two locations, out of
//! stock, a SKU never stocked, a reservation released before its step, payment, a
//! reservation that lapsed during payment, retries of finished steps) leaves the same
//! orders (status, version, payment reference), history (reasons included),
//! reservations, stock levels, ledger and events with both; a finished step retried
//! returns its result and writes nothing; bad input and wrong states are typed errors
//! that write nothing; 40 concurrent buyers of 10 units get exactly 10 reservations and
//! 8 concurrent runs of one order's step reserve it once; 30 concurrent reserve steps
//! (which an adapter may group into batches) write what the same steps one by one
//! write, up to the order in which they ran.

use std::sync::Arc;
use std::time::Duration;

use super::builder::{Area, StoreBuilder};
use super::check::{assert_err, concurrently, must};
use super::fixtures::{loc, new_order, oid, sku};
use super::runner::{Case, Ctx, Env, Settings, cases, run_one_area};
use crate::error::{EntityKind, Error};
use crate::id::OrderId;
use crate::inventory::ReservationRequest;
use crate::order::{NewOrder, Order, OrderStatus};
use crate::store::{ComposedSteps, CreateOutcome, OrderSteps, StepOutcome};

/// Runs every steps case against `builder`'s stores; panics listing the failed cases.
pub async fn test_all<B: StoreBuilder>(builder: &B) {
    test_all_with(builder, &Settings::from_env()).await;
}

/// [`test_all`] with explicit [`Settings`].
pub async fn test_all_with<B: StoreBuilder>(builder: &B, settings: &Settings) {
    run_one_area(builder, settings, Area::Steps, cases()).await;
}

pub(crate) fn cases() -> Vec<Case> {
    cases![
        fused_steps_write_what_the_separate_calls_write,
        a_finished_step_retried_returns_its_result_and_writes_nothing,
        bad_input_and_wrong_states_write_nothing,
        concurrent_buyers_never_oversell,
        concurrent_runs_of_one_step_reserve_once,
        concurrent_reservations_write_what_one_by_one_writes,
    ]
}

const TTL: Duration = Duration::from_secs(900);

async fn create(ctx: &Ctx, new: NewOrder) -> Order {
    match must!(ctx.orders().create_order(new).await, "create_order") {
        CreateOutcome::Created(o) => o,
        CreateOutcome::Existing(o) => panic!("create_order: expected Created, got {o:?}"),
    }
}

/// A step's result as comparable text: the order's status and version, or the error
/// kind (messages may differ between engines).
fn summary(r: &crate::Result<StepOutcome>) -> String {
    match r {
        Ok(o) => format!(
            "Ok({} v{} ref={:?} reservation={:?})",
            o.order.status,
            o.order.version,
            o.order.payment_ref,
            o.reservation.as_ref().map(|r| r.state)
        ),
        Err(Error::Conflict { kind, .. }) => format!("Conflict({kind:?})"),
        Err(Error::NotFound { kind, .. }) => format!("NotFound({kind:?})"),
        Err(Error::Validation { field, .. }) => format!("Validation({field})"),
        Err(Error::InvalidTransition { entity, .. }) => format!("InvalidTransition({entity:?})"),
        Err(e) => format!("Err({e})"),
    }
}

/// Whether a snapshot keeps the order in which things were written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Written {
    /// As written: for steps run one after another.
    InOrder,
    /// Sorted, without the order ids a concurrent run may hand out differently (which
    /// orders a split location served, ledger and event order).
    AnyOrder,
}

/// Everything the steps may have written, as text: orders with their history,
/// reservations, stock and ledger of `skus`, and the events.
async fn snapshot(ctx: &Ctx, orders: &[OrderId], skus: &[&str], written: Written) -> Vec<String> {
    let sorted = written == Written::AnyOrder;
    let mut per_order = Vec::new();
    for id in orders {
        let order = must!(ctx.orders().get_order(id).await, "get_order({id})");
        let name = if sorted { "order" } else { id.as_str() };
        let mut block = vec![format!(
            "order {name}: {:?}",
            order.map(|o| (o.status, o.version, o.payment_ref, o.updated_at))
        )];
        if let Ok(history) = ctx.orders().history(id).await {
            for c in history {
                block.push(format!(
                    "  history {:?} -> {} at {}: {}",
                    c.from, c.to, c.at, c.reason
                ));
            }
        }
        let r = must!(ctx.inventory().reservation(id).await, "reservation({id})");
        block.push(format!(
            "  reservation {:?}",
            r.map(|r| (
                r.state,
                r.lines,
                r.allocations,
                r.created_at,
                r.expires_at,
                r.closed_at,
                r.reason
            ))
        ));
        per_order.push(block);
    }
    if sorted {
        per_order.sort();
    }
    let mut out: Vec<String> = per_order.into_iter().flatten().collect();
    for s in skus {
        let stock = must!(ctx.inventory().stock(&sku(s)).await, "stock({s})");
        out.push(format!("stock {s}: {:?}", stock.levels));
        let movements = must!(
            ctx.inventory().movements(&sku(s), 0, 1000).await,
            "movements({s})"
        );
        let mut lines: Vec<String> = movements
            .into_iter()
            .map(|m| {
                let order = if sorted { None } else { m.order_id };
                format!(
                    "  movement {:?} {:?} {} order={:?} at {} reason={:?}",
                    m.kind, m.location, m.quantity, order, m.at, m.reason
                )
            })
            .collect();
        if sorted {
            lines.sort();
        }
        out.extend(lines);
    }
    let mut events: Vec<String> = ctx
        .events_since(crate::id::EventId(0))
        .await
        .into_iter()
        .map(|e| format!("event {e:?}"))
        .collect();
    if sorted {
        events.sort();
    }
    out.extend(events);
    out
}

/// Asserts that two snapshots are the same, line by line.
fn assert_same_writes(got: &[String], want: &[String], what: &str) {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g, w, "line {i} of what {what} wrote differs");
    }
    assert_eq!(
        got.len(),
        want.len(),
        "{what} wrote a different number of things"
    );
}

/// The script, run with `steps` on `ctx`: returns each step's result.
async fn script(ctx: &Ctx, steps: &dyn OrderSteps) -> (Vec<String>, Vec<OrderId>) {
    let inv = ctx.inventory();
    let (a, b) = (sku("STEP-A"), sku("STEP-B"));
    must!(inv.restock(&a, &loc("wh-1"), 5, "in").await, "restock");
    must!(inv.restock(&a, &loc("wh-2"), 3, "in").await, "restock");
    must!(inv.restock(&b, &loc("wh-1"), 2, "in").await, "restock");
    let mut results = Vec::new();
    let mut ids = Vec::new();
    let order = |k: &str, lines: &[(&str, u32, &str)]| {
        let mut new = new_order(k, "steps-customer", lines);
        new.id = Some(oid(&format!("o-{k}")));
        async move { create(ctx, new).await }
    };
    // Two locations and two SKUs, then paid.
    let o1 = order(
        "k1",
        &[("STEP-A", 6, "1.00 USD"), ("STEP-B", 1, "2.00 USD")],
    )
    .await;
    // Short: 2 of A left.
    let o2 = order("k2", &[("STEP-A", 5, "1.00 USD")]).await;
    // A SKU never stocked.
    let o3 = order("k3", &[("STEP-NONE", 1, "1.00 USD")]).await;
    // Reserved, lapses during payment.
    let o4 = order("k4", &[("STEP-B", 1, "2.00 USD")]).await;
    // Its reservation released before its step.
    let o5 = order("k5", &[("STEP-A", 1, "1.00 USD")]).await;
    ctx.advance(Duration::from_secs(1));
    results.push(summary(&steps.reserve_order(&o1, TTL).await));
    results.push(summary(&steps.reserve_order(&o2, TTL).await));
    results.push(summary(&steps.reserve_order(&o3, TTL).await));
    results.push(summary(
        &steps.reserve_order(&o4, Duration::from_secs(60)).await,
    ));
    let direct = ReservationRequest::new(o5.id.clone(), [(sku("STEP-A"), 1)]);
    must!(inv.reserve(&direct).await, "reserve o5 directly");
    must!(
        inv.release(&o5.id, "changed their mind").await,
        "release o5"
    );
    results.push(summary(&steps.reserve_order(&o5, TTL).await));
    ctx.advance(Duration::from_secs(2));
    results.push(summary(&steps.confirm_payment(&o1, "pay-1").await));
    ctx.advance(Duration::from_secs(120));
    must!(inv.release_expired(ctx.now(), 100).await, "release_expired");
    results.push(summary(&steps.confirm_payment(&o4, "pay-4").await));
    // Retries of finished steps, and a second payment reference.
    results.push(summary(&steps.confirm_payment(&o1, "pay-1").await));
    results.push(summary(&steps.confirm_payment(&o1, "pay-other").await));
    results.push(summary(&steps.reserve_order(&o1, TTL).await));
    ids.extend([o1.id, o2.id, o3.id, o4.id, o5.id]);
    (results, ids)
}

fn composed(ctx: &Ctx) -> ComposedSteps {
    ComposedSteps::new(ctx.inventory(), ctx.orders())
}

async fn fused_steps_write_what_the_separate_calls_write(env: Env<'_>) {
    let fused = env.ctx().await;
    let (fused_results, ids) = script(&fused, &*fused.steps()).await;
    let reference = env.ctx().await;
    let (reference_results, _) = script(&reference, &composed(&reference)).await;
    assert_eq!(
        fused_results, reference_results,
        "each step must answer as the separate store calls do"
    );
    assert!(
        fused_results[0].starts_with("Ok(PAYMENT_PENDING v2")
            && fused_results[1].starts_with("Ok(CANCELLED v2")
            && fused_results[2].starts_with("Ok(CANCELLED v2")
            && fused_results[4].starts_with("Ok(CANCELLED v2")
            && fused_results[5].starts_with("Ok(PAYMENT_CONFIRMED v3")
            && fused_results[6].starts_with("Ok(CANCELLED v3")
            && fused_results[8] == "Conflict(Order)"
            && fused_results[9] == "Conflict(Order)",
        "unexpected step results: {fused_results:#?}"
    );
    let skus = ["STEP-A", "STEP-B"];
    let got = snapshot(&fused, &ids, &skus, Written::InOrder).await;
    let want = snapshot(&reference, &ids, &skus, Written::InOrder).await;
    assert_same_writes(&got, &want, "the fused steps (against the separate calls)");
    let audit = must!(fused.inventory().audit().await, "audit");
    assert!(audit.is_empty(), "audit after the steps: {audit:?}");
}

async fn a_finished_step_retried_returns_its_result_and_writes_nothing(env: Env<'_>) {
    let ctx = env.ctx().await;
    let steps = ctx.steps();
    must!(
        ctx.inventory()
            .restock(&sku("R-1"), &loc("wh-1"), 3, "in")
            .await,
        "restock"
    );
    let order = create(&ctx, new_order("r1", "c", &[("R-1", 2, "3.00 USD")])).await;
    let reserved = must!(steps.reserve_order(&order, TTL).await, "reserve_order");
    let mark = ctx.event_mark().await;
    let again = must!(
        steps.reserve_order(&order, TTL).await,
        "reserve_order retried"
    );
    assert_eq!(
        again.order, reserved.order,
        "a retried reserve returns the order as stored"
    );
    assert_eq!(
        ctx.events_since(mark).await,
        vec![],
        "a retried reserve writes no event"
    );
    let paid = must!(
        steps.confirm_payment(&order, "pay-r1").await,
        "confirm_payment"
    );
    assert_eq!(paid.order.status, OrderStatus::PaymentConfirmed);
    assert_eq!(paid.order.payment_ref.as_deref(), Some("pay-r1"));
    let mark = ctx.event_mark().await;
    let history = must!(ctx.orders().history(&order.id).await, "history").len();
    let replay = must!(
        steps.confirm_payment(&order, "pay-r1").await,
        "confirm_payment retried after it succeeded (a lost acknowledgement)"
    );
    assert_eq!(replay.order, paid.order, "the retry returns the same order");
    assert_eq!(
        ctx.events_since(mark).await,
        vec![],
        "the retry writes no event"
    );
    assert_eq!(
        must!(ctx.orders().history(&order.id).await, "history").len(),
        history,
        "the retry writes no history"
    );
    assert_err!(
        steps.confirm_payment(&order, "pay-other").await,
        Error::Conflict {
            kind: EntityKind::Order,
            ..
        },
        "confirm_payment with another payment reference"
    );
    let stock = must!(ctx.inventory().stock(&sku("R-1")).await, "stock");
    assert_eq!((stock.available(), stock.sold()), (1, 2), "sold once");
}

async fn bad_input_and_wrong_states_write_nothing(env: Env<'_>) {
    let ctx = env.ctx().await;
    let steps = ctx.steps();
    must!(
        ctx.inventory()
            .restock(&sku("B-1"), &loc("wh-1"), 3, "in")
            .await,
        "restock"
    );
    let order = create(&ctx, new_order("b1", "c", &[("B-1", 1, "3.00 USD")])).await;
    let mark = ctx.event_mark().await;
    for ttl in [
        Duration::ZERO,
        Duration::from_secs(8 * 24 * 3600),
        Duration::MAX,
    ] {
        assert_err!(
            steps.reserve_order(&order, ttl).await,
            Error::Validation { .. },
            "reserve_order with ttl {ttl:?}"
        );
    }
    assert_err!(
        steps.confirm_payment(&order, "pay").await,
        Error::Conflict {
            kind: EntityKind::Order,
            ..
        },
        "confirm_payment of a CREATED order"
    );
    assert_err!(
        steps.confirm_payment(&order, "").await,
        Error::Validation { .. },
        "confirm_payment with an empty payment reference"
    );
    let mut ghost = order.clone();
    ghost.id = OrderId::new("no-such-order").unwrap_or_else(|e| panic!("{e}"));
    assert_err!(
        steps.reserve_order(&ghost, TTL).await,
        Error::NotFound {
            kind: EntityKind::Order,
            ..
        },
        "reserve_order of an unknown order"
    );
    assert_eq!(
        ctx.events_since(mark).await,
        vec![],
        "bad input writes nothing"
    );
    let stored = must!(ctx.orders().get_order(&order.id).await, "get_order");
    assert_eq!(
        stored.map(|o| (o.status, o.version)),
        Some((OrderStatus::Created, 1))
    );
    assert_eq!(
        must!(ctx.inventory().reservation(&order.id).await, "reservation"),
        None
    );
}

async fn concurrent_buyers_never_oversell(env: Env<'_>) {
    let ctx = env.ctx().await;
    must!(
        ctx.inventory()
            .restock(&sku("HOT"), &loc("wh-1"), 10, "in")
            .await,
        "restock"
    );
    let mut orders = Vec::new();
    for i in 0..40 {
        orders.push(
            create(
                &ctx,
                new_order(&format!("hot-{i}"), "c", &[("HOT", 1, "9.00 USD")]),
            )
            .await,
        );
    }
    let orders = Arc::new(orders);
    let steps = ctx.steps();
    let reserved = concurrently(40, |i| {
        let (steps, orders) = (steps.clone(), orders.clone());
        async move { steps.reserve_order(&orders[i], TTL).await }
    })
    .await;
    let mut pending = Vec::new();
    for (i, r) in reserved.into_iter().enumerate() {
        let out = must!(r, "reserve_order of buyer {i}");
        match out.order.status {
            OrderStatus::PaymentPending => pending.push(i),
            OrderStatus::Cancelled => {}
            other => panic!("buyer {i}: unexpected {other}"),
        }
    }
    assert_eq!(pending.len(), 10, "exactly the 10 units are reserved");
    let paid = concurrently(pending.len(), |j| {
        let (steps, orders, i) = (steps.clone(), orders.clone(), pending[j]);
        async move { steps.confirm_payment(&orders[i], &format!("pay-{i}")).await }
    })
    .await;
    for r in paid {
        assert_eq!(
            must!(r, "confirm_payment").order.status,
            OrderStatus::PaymentConfirmed
        );
    }
    let stock = must!(ctx.inventory().stock(&sku("HOT")).await, "stock");
    assert_eq!(
        (stock.available(), stock.reserved(), stock.sold()),
        (0, 0, 10)
    );
    let audit = must!(ctx.inventory().audit().await, "audit");
    assert!(audit.is_empty(), "{audit:?}");
}

async fn concurrent_runs_of_one_step_reserve_once(env: Env<'_>) {
    let ctx = env.ctx().await;
    must!(
        ctx.inventory()
            .restock(&sku("ONE"), &loc("wh-1"), 5, "in")
            .await,
        "restock"
    );
    let order = Arc::new(create(&ctx, new_order("one", "c", &[("ONE", 2, "9.00 USD")])).await);
    let steps = ctx.steps();
    let runs = concurrently(8, |_| {
        let (steps, order) = (steps.clone(), order.clone());
        async move { steps.reserve_order(&order, TTL).await }
    })
    .await;
    for r in runs {
        match r {
            Ok(out) => assert_eq!(out.order.status, OrderStatus::PaymentPending),
            Err(Error::Conflict {
                kind: EntityKind::Order,
                ..
            }) => {}
            Err(e) => panic!("a concurrent run failed: {e}"),
        }
    }
    let history = must!(ctx.orders().history(&order.id).await, "history");
    assert_eq!(
        history.len(),
        2,
        "one CREATED -> PAYMENT_PENDING entry: {history:?}"
    );
    let stock = must!(ctx.inventory().stock(&sku("ONE")).await, "stock");
    assert_eq!(
        (stock.available(), stock.reserved()),
        (3, 2),
        "reserved once"
    );
}

/// Stock and 30 orders: 12 that one location cannot serve together (split over two),
/// 14 that their first locations serve, 2 of a SKU never stocked, 2 with two lines.
async fn batch_script(ctx: &Ctx, concurrent: bool) -> Vec<OrderId> {
    let inv = ctx.inventory();
    for (s, l, q) in [
        ("BATCH-A", "wh-1", 10),
        ("BATCH-A", "wh-2", 100),
        ("BATCH-B", "wh-1", 60),
        ("BATCH-B", "wh-2", 5),
        ("BATCH-D", "wh-2", 9),
    ] {
        must!(inv.restock(&sku(s), &loc(l), q, "in").await, "restock");
    }
    let mut lines: Vec<Vec<(&str, u32, &str)>> = Vec::new();
    for _ in 0..12 {
        lines.push(vec![("BATCH-A", 2, "1.00 USD"), ("BATCH-B", 1, "2.00 USD")]);
    }
    for _ in 0..14 {
        lines.push(vec![("BATCH-B", 3, "2.00 USD")]);
    }
    for _ in 0..2 {
        lines.push(vec![("BATCH-NONE", 1, "1.00 USD")]);
    }
    for _ in 0..2 {
        lines.push(vec![("BATCH-D", 4, "1.00 USD"), ("BATCH-B", 1, "2.00 USD")]);
    }
    let mut orders = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let mut new = new_order(&format!("batch-{i}"), "batch-customer", l);
        new.id = Some(oid(&format!("o-batch-{i}")));
        orders.push(create(ctx, new).await);
    }
    ctx.advance(Duration::from_secs(1));
    let ids = orders.iter().map(|o| o.id.clone()).collect();
    let results = if concurrent {
        let (steps, orders) = (ctx.steps(), Arc::new(orders));
        concurrently(orders.len(), |i| {
            let (steps, orders) = (steps.clone(), orders.clone());
            async move { steps.reserve_order(&orders[i], TTL).await }
        })
        .await
    } else {
        let steps = composed(ctx);
        let mut out = Vec::new();
        for o in &orders {
            out.push(steps.reserve_order(o, TTL).await);
        }
        out
    };
    for (i, r) in results.into_iter().enumerate() {
        let out = must!(r, "reserve_order of order {i}");
        let want = if (26..28).contains(&i) {
            OrderStatus::Cancelled
        } else {
            OrderStatus::PaymentPending
        };
        assert_eq!(out.order.status, want, "order {i} after its reserve step");
    }
    ids
}

async fn concurrent_reservations_write_what_one_by_one_writes(env: Env<'_>) {
    let fused = env.ctx().await;
    let ids = batch_script(&fused, true).await;
    let reference = env.ctx().await;
    batch_script(&reference, false).await;
    let skus = ["BATCH-A", "BATCH-B", "BATCH-D"];
    let got = snapshot(&fused, &ids, &skus, Written::AnyOrder).await;
    let want = snapshot(&reference, &ids, &skus, Written::AnyOrder).await;
    assert_same_writes(&got, &want, "the concurrent steps (against one by one)");
    let audit = must!(fused.inventory().audit().await, "audit");
    assert!(audit.is_empty(), "audit after the steps: {audit:?}");
}
