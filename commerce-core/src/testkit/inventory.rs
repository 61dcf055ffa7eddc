//! The [`InventoryStore`](crate::store::InventoryStore) suite, with the events it
//! appends and the model-based tests.
//!
//! Checks: restock/adjust counters, events (`StockChanged`) and ledger entries; invalid
//! input (zero, huge, long reasons) writes nothing; `adjust` below zero is `OutOfStock`
//! and an unknown level `NotFound { Stock }`; reservations hold exactly what was asked
//! (normalised lines, allocations, TTL from the store clock) and append
//! `ReservationChanged`; all-or-nothing with `OutOfStock` for the first short SKU in SKU
//! order; unknown SKUs; idempotency per order (sequential and concurrent) and `Conflict`
//! for different lines; never oversell under concurrency (one and several locations, a
//! flash sale); crossing multi-SKU reservations do not deadlock; the location policy;
//! opt-in backorders filled by the next restock (ledger and events of a fill, no
//! movement for backordered units); `extend` (no event, no movement); `confirm`,
//! `release` and `return_stock` with their idempotency and `InvalidTransition`s;
//! `release_expired` (boundary, limit, exactly once with concurrent reapers, racing
//! `confirm`); the ledger replays to the counters; `audit()` is empty after every case; `stocks` (the batch
//! read) answers what `stock` does, in order, and never a half-written level; events
//! (restock, adjust, reserve, confirm, release) are never readable before their change
//! and each level's and each order's come in the order of the changes;
//! `ReservationChanged.skus` names the normalised lines' SKUs on every transition.
//!
//! # Model-based tests
//! A pure, sequential model of the inventory, written from the contract and the
//! [`crate::inventory`] docs, is compared with the store.
//!
//! * **Sequential**: random histories of restock / adjust / reserve / confirm / release /
//!   return / extend / `release_expired` / clock moves run one operation at a time
//!   against a fresh store and the model. Every outcome (value, or error kind and
//!   payload), every event and the whole observable state (levels, backorders, every
//!   reservation) must match after every step; at the end `audit()` is empty and the
//!   ledger replays to the counters. Where the contract leaves a choice (which due
//!   reservations a `release_expired` call with a small limit picks) the model checks the
//!   store's choice is allowed and follows it.
//! * **Concurrent**: 4 to 8 tasks run random programs at once against one store. The
//!   interleaving is the runtime's, so the check is what must hold for every
//!   interleaving: `audit()` is empty; the ledger replays to the counters; for SKUs
//!   without backorders every counter equals what the successful operations and the
//!   final reservation states imply; every outcome is explainable by the final state;
//!   each state change appended exactly one event.
//!
//! A failure panics with the seed (`COMMERCE_TESTKIT_SEED` replays the generated
//! histories) and the shrunk history with each step's outcome.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::builder::{Area, StoreBuilder};
use super::check::{assert_err, concurrently, must};
use super::fixtures::{loc, oid, sku};
use super::model;
use super::runner::{Case, Ctx, Env, Settings, cases, run_one_area};
use crate::clock::Timestamp;
use crate::error::{EntityKind, Error};
use crate::event::DomainEvent;
use crate::id::{OrderId, Sku};
use crate::inventory::{
    Allocation, MAX_QUANTITY, MovementKind, Reservation, ReservationRequest, ReservationState,
    Restock, SkuStock, StockLevel, StockMovement, replay,
};

/// Runs every inventory case (including the model-based tests) against `builder`'s
/// stores; panics listing the failed cases.
pub async fn test_all<B: StoreBuilder>(builder: &B) {
    test_all_with(builder, &Settings::from_env()).await;
}

/// [`test_all`] with explicit [`Settings`].
pub async fn test_all_with<B: StoreBuilder>(builder: &B, settings: &Settings) {
    run_one_area(builder, settings, Area::Inventory, cases()).await;
}

pub(crate) fn cases() -> Vec<Case> {
    cases![
        restock_creates_and_grows_levels,
        bulk_restock_does_what_single_restocks_do,
        bulk_restock_of_new_and_existing_levels_returns_running_levels,
        invalid_bulk_restock_writes_nothing,
        invalid_restock_and_adjust_write_nothing,
        adjust_moves_available_and_adjusted,
        batch_stock_reads_match_single_reads,
        batch_stock_reads_see_whole_levels_under_writes,
        reserve_holds_stock_and_records_it,
        reserve_is_all_or_nothing,
        reserve_of_an_unknown_sku_is_not_found,
        reserve_rejects_invalid_requests,
        reserve_is_idempotent_per_order,
        concurrent_reserves_of_one_order_hold_once,
        concurrent_reserves_never_oversell,
        concurrent_reserves_over_locations_never_oversell,
        flash_sale_sells_exactly_the_stock,
        crossing_multi_sku_reserves_do_not_deadlock,
        reserve_follows_the_location_policy,
        backorders_are_opt_in_and_filled_by_restock,
        backordered_units_record_no_movements,
        restocks_filling_backorders_log_filled_then_received,
        reservation_events_name_the_normalised_skus,
        extend_appends_no_event_and_no_movement,
        extend_moves_the_expiry_of_active_reservations,
        confirm_sells_and_is_idempotent,
        release_gives_back_and_is_idempotent,
        return_stock_restocks_or_writes_off,
        release_expired_releases_exactly_the_due_reservations,
        release_expired_honours_its_now,
        events_never_precede_their_change_and_come_in_order,
        events_of_every_change_follow_the_ledger_in_order,
        sub_second_ttls_are_kept_exactly,
        concurrent_reapers_release_each_reservation_once,
        reaping_and_confirming_race_consistently,
        ledger_replays_to_the_counters,
        sequential_histories_match_the_model,
        concurrent_histories_conserve_stock,
    ]
}

pub(crate) fn req(order: &str, lines: &[(&str, u32)]) -> ReservationRequest {
    ReservationRequest::new(oid(order), lines.iter().map(|(s, q)| (sku(s), *q)))
}

pub(crate) fn req_ttl(order: &str, lines: &[(&str, u32)], ttl: Duration) -> ReservationRequest {
    let mut r = req(order, lines);
    r.ttl = ttl;
    r
}

async fn restock(ctx: &Ctx, s: &str, l: &str, q: u32) -> StockLevel {
    must!(
        ctx.inventory()
            .restock(&sku(s), &loc(l), q, "restock")
            .await,
        "restock({s}@{l}, {q})"
    )
}

async fn stock(ctx: &Ctx, s: &str) -> SkuStock {
    must!(ctx.inventory().stock(&sku(s)).await, "stock({s})")
}

async fn level(ctx: &Ctx, s: &str, l: &str) -> StockLevel {
    stock(ctx, s)
        .await
        .levels
        .into_iter()
        .find(|lv| lv.location.as_str() == l)
        .unwrap_or_else(|| panic!("stock({s}) has no level at {l}"))
}

/// `(received, adjusted, available, reserved, sold)` of a level.
fn counters(l: &StockLevel) -> (u64, i64, u64, u64, u64) {
    (l.received, l.adjusted, l.available, l.reserved, l.sold)
}

async fn reservation(ctx: &Ctx, o: &str) -> Option<Reservation> {
    must!(
        ctx.inventory().reservation(&oid(o)).await,
        "reservation({o})"
    )
}

async fn reserve(ctx: &Ctx, r: &ReservationRequest) -> Reservation {
    must!(ctx.inventory().reserve(r).await, "reserve({:?})", r.lines)
}

pub(crate) async fn audit_clean(ctx: &Ctx, when: &str) {
    let violations = must!(ctx.inventory().audit().await, "audit");
    assert!(
        violations.is_empty(),
        "audit() must find nothing {when}, found: {violations:#?}"
    );
}

async fn all_movements(ctx: &Ctx, s: &str) -> Vec<StockMovement> {
    let mut out = Vec::new();
    loop {
        let page = must!(
            ctx.inventory()
                .movements(&sku(s), out.len() as u64, 1000)
                .await,
            "movements({s})"
        );
        if page.is_empty() {
            return out;
        }
        assert!(
            out.len() < 1_000_000,
            "movements({s}) does not end (is offset ignored?)"
        );
        out.extend(page);
    }
}

fn res_event(o: &str, state: ReservationState, skus: &[&str]) -> DomainEvent {
    DomainEvent::ReservationChanged {
        order_id: oid(o),
        state,
        skus: skus.iter().map(|s| sku(s)).collect(),
    }
}

fn stock_event(s: &str, l: &str, available: u64) -> DomainEvent {
    DomainEvent::StockChanged {
        sku: sku(s),
        location: loc(l),
        available,
    }
}

fn alloc(s: &str, l: Option<&str>, q: u32) -> Allocation {
    Allocation {
        sku: sku(s),
        location: l.map(loc),
        quantity: q,
    }
}

fn at_plus(t: Timestamp, d: Duration) -> Timestamp {
    crate::clock::add(t, d)
}

fn item(s: &str, l: &str, q: u32) -> Restock {
    Restock::new(sku(s), loc(l), q, format!("bulk {s}@{l}"))
}

async fn bulk_restock_of_new_and_existing_levels_returns_running_levels(env: Env<'_>) {
    let ctx = env.ctx().await;
    let inv = ctx.inventory();
    must!(
        inv.restock(&sku("M"), &loc("w1"), 4, "in").await,
        "restock M"
    );
    reserve(&ctx, &req("o-m", &[("M", 1)])).await;
    // Each item, and its level right after it.
    type Row = (&'static str, &'static str, u32, (u64, i64, u64, u64, u64));
    let batches: [(&str, [Row; 4]); 2] = [
        (
            "new levels, one of them twice",
            [
                ("NA", "w1", 5, (5, 0, 5, 0, 0)),
                ("NB", "w1", 3, (3, 0, 3, 0, 0)),
                ("NA", "w2", 2, (2, 0, 2, 0, 0)),
                ("NA", "w1", 4, (9, 0, 9, 0, 0)),
            ],
        ),
        (
            "an existing level (one unit reserved) and a new one, each twice",
            [
                ("NC", "w1", 2, (2, 0, 2, 0, 0)),
                ("M", "w1", 1, (5, 0, 4, 1, 0)),
                ("NC", "w1", 3, (5, 0, 5, 0, 0)),
                ("M", "w1", 2, (7, 0, 6, 1, 0)),
            ],
        ),
    ];
    for (what, rows) in batches {
        let items: Vec<Restock> = rows.iter().map(|&(s, l, q, _)| item(s, l, q)).collect();
        let levels = must!(inv.restock_many(&items).await, "restock_many ({what})");
        let got: Vec<_> = levels
            .iter()
            .map(|l| (l.sku.to_string(), l.location.to_string(), counters(l)))
            .collect();
        let want: Vec<_> = rows
            .iter()
            .map(|&(s, l, _, c)| (s.to_owned(), l.to_owned(), c))
            .collect();
        assert_eq!(got, want, "{what}: each item's level right after it");
    }
    assert_eq!(counters(&level(&ctx, "NA", "w1").await), (9, 0, 9, 0, 0));
    assert_eq!(counters(&level(&ctx, "NC", "w1").await), (5, 0, 5, 0, 0));
    assert_eq!(counters(&level(&ctx, "M", "w1").await), (7, 0, 6, 1, 0));
    let audit = must!(inv.audit().await, "audit");
    assert!(audit.is_empty(), "audit after the bulk restocks: {audit:?}");
}

async fn bulk_restock_does_what_single_restocks_do(env: Env<'_>) {
    let ctx = env.ctx().await;
    let inv = ctx.inventory();
    // BO owes 3 confirmed backordered units: the bulk restock fills them first.
    must!(
        inv.set_backorder(&sku("BO"), true).await,
        "allow backorders"
    );
    reserve(&ctx, &req("o-1", &[("BO", 3)])).await;
    must!(inv.confirm(&oid("o-1")).await, "confirm o-1");
    let mark = ctx.event_mark().await;
    let items = [
        item("A", "w1", 5),
        item("B", "w1", 3),
        item("A", "w2", 2),
        item("A", "w1", 4),
        item("BO", "w1", 5),
    ];
    let levels = must!(inv.restock_many(&items).await, "restock_many");
    type Counters = (u64, i64, u64, u64, u64);
    let got: Vec<(String, String, Counters)> = levels
        .iter()
        .map(|l| (l.sku.to_string(), l.location.to_string(), counters(l)))
        .collect();
    let want = |s: &str, l: &str, c| (s.to_owned(), l.to_owned(), c);
    assert_eq!(
        got,
        vec![
            want("A", "w1", (5, 0, 5, 0, 0)),
            want("B", "w1", (3, 0, 3, 0, 0)),
            want("A", "w2", (2, 0, 2, 0, 0)),
            want("A", "w1", (9, 0, 9, 0, 0)),
            want("BO", "w1", (5, 0, 2, 0, 3)),
        ],
        "restock_many returns each level right after its item, in the order given, \
         filling owed backorders first"
    );
    assert_eq!(counters(&level(&ctx, "A", "w1").await), (9, 0, 9, 0, 0));
    assert_eq!(
        stock(&ctx, "BO").await.backordered,
        0,
        "the owed units were filled"
    );
    let kinds: Vec<(MovementKind, i64)> = all_movements(&ctx, "BO")
        .await
        .into_iter()
        .filter(|m| m.location.is_some())
        .map(|m| (m.kind, m.quantity))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (MovementKind::BackorderFilled, 3),
            (MovementKind::Received, 2)
        ],
        "a bulk restock records the movements a restock records"
    );
    let received: i64 = all_movements(&ctx, "A")
        .await
        .iter()
        .filter(|m| m.kind == MovementKind::Received)
        .map(|m| m.quantity)
        .sum();
    assert_eq!(received, 11, "every unit of A is in the ledger");
    let availables: Vec<(String, u64)> = ctx
        .events_since(mark)
        .await
        .into_iter()
        .filter_map(|e| match e {
            DomainEvent::StockChanged { sku, available, .. } => Some((sku.to_string(), available)),
            _ => None,
        })
        .collect();
    let expected_events: Vec<(String, u64)> = [("A", 5), ("B", 3), ("A", 2), ("A", 9), ("BO", 2)]
        .iter()
        .map(|(s, a)| ((*s).to_owned(), *a))
        .collect();
    assert_eq!(
        availables, expected_events,
        "one StockChanged per item, in order, with the level's available after it"
    );
    assert_eq!(
        must!(inv.restock_many(&[]).await, "empty restock_many"),
        vec![],
        "no items: nothing"
    );
    audit_clean(&ctx, "after a bulk restock").await;
}

async fn invalid_bulk_restock_writes_nothing(env: Env<'_>) {
    let ctx = env.ctx().await;
    let inv = ctx.inventory();
    restock(&ctx, "A", "w1", 5).await;
    let mark = ctx.event_mark().await;
    for (what, items) in [
        (
            "a zero quantity",
            vec![item("A", "w1", 1), item("B", "w1", 0)],
        ),
        (
            "too many units",
            vec![item("A", "w1", 1), item("B", "w1", MAX_QUANTITY + 1)],
        ),
        (
            "a reason over 500 characters",
            vec![
                item("A", "w1", 1),
                Restock::new(sku("B"), loc("w1"), 1, "x".repeat(501)),
            ],
        ),
        (
            "more than 1,000 items",
            (0..1001)
                .map(|i| item(&format!("S-{i}"), "w1", 1))
                .collect(),
        ),
    ] {
        assert_err!(
            inv.restock_many(&items).await,
            Error::Validation { .. },
            "restock_many with {what}"
        );
    }
    assert_eq!(counters(&level(&ctx, "A", "w1").await), (5, 0, 5, 0, 0));
    assert!(stock(&ctx, "B").await.levels.is_empty(), "B was stocked");
    assert_eq!(
        ctx.events_since(mark).await,
        vec![],
        "refused batches appended events"
    );
}

async fn restock_creates_and_grows_levels(env: Env<'_>) {
    let ctx = env.ctx().await;
    let inv = ctx.inventory();
    assert_eq!(
        stock(&ctx, "A").await,
        SkuStock {
            sku: sku("A"),
            levels: vec![],
            backorder_allowed: false,
            backordered: 0
        },
        "a SKU never stocked has no levels"
    );
    let mark = ctx.event_mark().await;
    let first = must!(
        inv.restock(&sku("A"), &loc("w1"), 7, "delivery 1").await,
        "restock"
    );
    assert_eq!(counters(&first), (7, 0, 7, 0, 0));
    let second = must!(
        inv.restock(&sku("A"), &loc("w1"), 5, "delivery 2").await,
        "restock"
    );
    assert_eq!(counters(&second), (12, 0, 12, 0, 0));
    must!(
        inv.restock(&sku("A"), &loc("w0"), 1, "delivery 3").await,
        "restock"
    );
    let s = stock(&ctx, "A").await;
    assert_eq!(
        s.levels
            .iter()
            .map(|l| l.location.as_str())
            .collect::<Vec<_>>(),
        ["w0", "w1"],
        "stock() lists one level per location, in location-id order"
    );
    assert_eq!(s.available(), 13);
    assert_eq!(
        ctx.events_since(mark).await,
        vec![
            stock_event("A", "w1", 7),
            stock_event("A", "w1", 12),
            stock_event("A", "w0", 1)
        ],
        "each restock appends StockChanged with the units available after it"
    );
    let ledger = all_movements(&ctx, "A").await;
    assert_eq!(
        ledger
            .iter()
            .map(|m| (m.kind, m.quantity, m.reason.as_deref(), m.location.clone()))
            .collect::<Vec<_>>(),
        vec![
            (
                MovementKind::Received,
                7,
                Some("delivery 1"),
                Some(loc("w1"))
            ),
            (
                MovementKind::Received,
                5,
                Some("delivery 2"),
                Some(loc("w1"))
            ),
            (
                MovementKind::Received,
                1,
                Some("delivery 3"),
                Some(loc("w0"))
            ),
        ],
        "each restock appends a Received movement with its reason"
    );
    audit_clean(&ctx, "after restocks").await;
}

async fn invalid_restock_and_adjust_write_nothing(env: Env<'_>) {
    let ctx = env.ctx().await;
    let inv = ctx.inventory();
    restock(&ctx, "A", "w1", 5).await;
    let mark = ctx.event_mark().await;
    let long = "x".repeat(501);
    for (q, reason) in [(0, "ok"), (MAX_QUANTITY + 1, "ok"), (1, long.as_str())] {
        assert_err!(
            inv.restock(&sku("A"), &loc("w1"), q, reason).await,
            Error::Validation { .. },
            "restock of {q} units with a {}-character reason",
            reason.len()
        );
        assert_err!(
            inv.restock(&sku("B"), &loc("w1"), q, reason).await,
            Error::Validation { .. },
            "restock of a new SKU with {q} units"
        );
    }
    for (delta, reason) in [
        (0, "ok"),
        (i64::from(MAX_QUANTITY) + 1, "ok"),
        (-(i64::from(MAX_QUANTITY) + 1), "ok"),
        (1, long.as_str()),
    ] {
        assert_err!(
            inv.adjust(&sku("A"), &loc("w1"), delta, reason).await,
            Error::Validation { .. },
            "adjust by {delta}"
        );
    }
    assert_eq!(counters(&level(&ctx, "A", "w1").await), (5, 0, 5, 0, 0));
    assert!(
        stock(&ctx, "B").await.levels.is_empty(),
        "a refused restock created a level"
    );
    assert_eq!(
        all_movements(&ctx, "A").await.len(),
        1,
        "a refused write added a movement"
    );
    assert!(all_movements(&ctx, "B").await.is_empty());
    assert_eq!(
        ctx.events_since(mark).await,
        vec![],
        "a refused write appended an event"
    );
    audit_clean(&ctx, "after refused writes").await;
}

async fn adjust_moves_available_and_adjusted(env: Env<'_>) {
    let ctx = env.ctx().await;
    let inv = ctx.inventory();
    restock(&ctx, "A", "w1", 10).await;
    let mark = ctx.event_mark().await;
    let l = must!(
        inv.adjust(&sku("A"), &loc("w1"), -3, "damaged").await,
        "adjust -3"
    );
    assert_eq!(
        counters(&l),
        (10, 3, 7, 0, 0),
        "adjust -3: available 7, adjusted 3"
    );
    let l = must!(
        inv.adjust(&sku("A"), &loc("w1"), 2, "found").await,
        "adjust +2"
    );
    assert_eq!(
        counters(&l),
        (10, 1, 9, 0, 0),
        "adjust +2: available 9, adjusted 1"
    );
    let err = assert_err!(
        inv.adjust(&sku("A"), &loc("w1"), -10, "too many").await,
        Error::OutOfStock { .. },
        "removing more than is available"
    );
    assert!(
        matches!(&err, Error::OutOfStock { sku: s, requested: 10, available: 9 } if s == "A"),
        "OutOfStock must name the SKU, the units asked for and those available: {err:?}"
    );
    assert_err!(
        inv.adjust(&sku("A"), &loc("w2"), 1, "unknown level").await,
        Error::NotFound {
            kind: EntityKind::Stock,
            ..
        },
        "adjust of a level that does not exist"
    );
    assert_err!(
        inv.adjust(&sku("Z"), &loc("w1"), -1, "unknown SKU").await,
        Error::NotFound {
            kind: EntityKind::Stock,
            ..
        },
        "adjust of a SKU never stocked"
    );
    assert_eq!(counters(&level(&ctx, "A", "w1").await), (10, 1, 9, 0, 0));
    assert_eq!(
        ctx.events_since(mark).await,
        vec![stock_event("A", "w1", 7), stock_event("A", "w1", 9)],
        "each successful adjust appends StockChanged; refused ones append nothing"
    );
    let ledger = all_movements(&ctx, "A").await;
    assert_eq!(
        ledger
            .iter()
            .filter(|m| m.kind == MovementKind::Adjusted)
            .map(|m| (m.quantity, m.reason.clone()))
            .collect::<Vec<_>>(),
        vec![(-3, Some("damaged".into())), (2, Some("found".into()))],
        "Adjusted movements carry the signed delta and the reason"
    );
    audit_clean(&ctx, "after adjustments").await;
}

async fn batch_stock_reads_match_single_reads(env: Env<'_>) {
    let ctx = env.ctx().await;
    let inv = ctx.inventory();
    restock(&ctx, "A", "w1", 5).await;
    restock(&ctx, "A", "w2", 7).await;
    restock(&ctx, "B", "w1", 3).await;
    must!(inv.set_backorder(&sku("C"), true).await, "set_backorder(C)");
    reserve(&ctx, &req("o-1", &[("A", 6), ("B", 1)])).await;
    must!(inv.confirm(&oid("o-1")).await, "confirm(o-1)");
    // D was never stocked; B is asked twice.
    let asked = [sku("B"), sku("D"), sku("A"), sku("B"), sku("C")];
    let batch = must!(inv.stocks(&asked).await, "stocks(B, D, A, B, C)");
    let mut expected = Vec::new();
    for s in ["B", "D", "A", "C"] {
        expected.push(stock(&ctx, s).await);
    }
    assert_eq!(
        batch, expected,
        "stocks(B, D, A, B, C) must equal stock() of B, D, A, C in that order"
    );
    assert_eq!(must!(inv.stocks(&[]).await, "stocks([])"), vec![]);
    let too_many: Vec<Sku> = (0..=crate::store::MAX_PAGE_SIZE)
        .map(|i| sku(&format!("S{i}")))
        .collect();
    assert_err!(
        inv.stocks(&too_many).await,
        Error::Validation { .. },
        "stocks of {} SKUs",
        too_many.len()
    );
    audit_clean(&ctx, "after batch stock reads").await;
}

async fn batch_stock_reads_see_whole_levels_under_writes(env: Env<'_>) {
    let ctx = env.ctx().await;
    restock(&ctx, "A", "w1", 40).await;
    restock(&ctx, "B", "w1", 40).await;
    let inv = ctx.inventory();
    // 16 buyers of A and B while 4 readers read both in batches.
    let reads = concurrently(20, |i| {
        let inv = inv.clone();
        async move {
            if i < 16 {
                let r = inv
                    .reserve(&req(&format!("o-{i}"), &[("A", 2), ("B", 1)]))
                    .await;
                must!(r, "reserve(o-{i})");
                Vec::new()
            } else {
                let mut seen = Vec::new();
                for _ in 0..10 {
                    seen.extend(must!(
                        inv.stocks(&[sku("A"), sku("B")]).await,
                        "stocks(A, B)"
                    ));
                }
                seen
            }
        }
    })
    .await;
    for s in reads.into_iter().flatten() {
        for l in &s.levels {
            let (received, adjusted, available, reserved, sold) = counters(l);
            assert_eq!(
                i128::from(available) + i128::from(reserved) + i128::from(sold),
                i128::from(received) - i128::from(adjusted),
                "a batch read returned a half-written level of {}: {l:?}",
                s.sku
            );
            assert_eq!(received, 40, "{}: received", s.sku);
        }
    }
    assert_eq!(counters(&level(&ctx, "A", "w1").await), (40, 0, 8, 32, 0));
    assert_eq!(counters(&level(&ctx, "B", "w1").await), (40, 0, 24, 16, 0));
    audit_clean(&ctx, "after batch reads under writes").await;
}

async fn reserve_holds_stock_and_records_it(env: Env<'_>) {
    let ctx = env.ctx().await;
    restock(&ctx, "A", "w1", 10).await;
    restock(&ctx, "B", "w1", 10).await;
    ctx.advance(Duration::from_secs(7));
    let now = ctx.now();
    let mark = ctx.event_mark().await;
    let request = req_ttl(
        "o-1",
        &[("B", 1), ("A", 2), ("B", 2)],
        Duration::from_secs(600),
    );
    let r = reserve(&ctx, &request).await;
    let expected = Reservation {
        order_id: oid("o-1"),
        lines: request.normalized_lines().expect("valid"),
        allocations: vec![alloc("A", Some("w1"), 2), alloc("B", Some("w1"), 3)],
        state: ReservationState::Active,
        created_at: now,
        expires_at: at_plus(now, Duration::from_secs(600)),
        closed_at: None,
        reason: None,
    };
    assert_eq!(
        r, expected,
        "reserve returns the active reservation: normalised lines, allocations, created_at = now, expires_at = now + ttl"
    );
    assert_eq!(reservation(&ctx, "o-1").await, Some(expected));
    assert_eq!(counters(&level(&ctx, "A", "w1").await), (10, 0, 8, 2, 0));
    assert_eq!(counters(&level(&ctx, "B", "w1").await), (10, 0, 7, 3, 0));
    assert_eq!(
        ctx.events_since(mark).await,
        vec![res_event("o-1", ReservationState::Active, &["A", "B"])],
        "reserve appends one ReservationChanged(ACTIVE) naming the SKUs"
    );
    let reserved: Vec<_> = all_movements(&ctx, "B")
        .await
        .into_iter()
        .filter(|m| m.kind == MovementKind::Reserved)
        .map(|m| (m.quantity, m.order_id))
        .collect();
    assert_eq!(
        reserved,
        vec![(3, Some(oid("o-1")))],
        "a Reserved movement names the order"
    );
    audit_clean(&ctx, "after a reservation").await;
}

async fn reserve_is_all_or_nothing(env: Env<'_>) {
    let ctx = env.ctx().await;
    let inv = ctx.inventory();
    restock(&ctx, "A", "w1", 10).await;
    restock(&ctx, "B", "w1", 2).await;
    restock(&ctx, "C", "w1", 1).await;
    let mark = ctx.event_mark().await;
    let before_a = all_movements(&ctx, "A").await;
    let err = assert_err!(
        inv.reserve(&req("o-1", &[("A", 5), ("B", 3)])).await,
        Error::OutOfStock { .. },
        "reserving more B than there is"
    );
    assert!(
        matches!(&err, Error::OutOfStock { sku: s, requested: 3, available: 2 } if s == "B"),
        "OutOfStock must name B, 3 requested, 2 available: {err:?}"
    );
    let err = assert_err!(
        inv.reserve(&req("o-1", &[("C", 4), ("A", 1), ("B", 9)]))
            .await,
        Error::OutOfStock { .. },
        "two short SKUs"
    );
    assert!(
        matches!(&err, Error::OutOfStock { sku: s, requested: 9, available: 2 } if s == "B"),
        "with several short SKUs, OutOfStock names the first in SKU order (B before C): {err:?}"
    );
    assert_eq!(
        counters(&level(&ctx, "A", "w1").await),
        (10, 0, 10, 0, 0),
        "A was held"
    );
    assert_eq!(
        reservation(&ctx, "o-1").await,
        None,
        "a failed reserve stored a reservation"
    );
    assert_eq!(
        all_movements(&ctx, "A").await,
        before_a,
        "a failed reserve wrote the ledger"
    );
    assert_eq!(
        ctx.events_since(mark).await,
        vec![],
        "a failed reserve appended an event"
    );
    // The order id is still free.
    reserve(&ctx, &req("o-1", &[("A", 5), ("B", 2)])).await;
    audit_clean(&ctx, "after all-or-nothing").await;
}

async fn reserve_of_an_unknown_sku_is_not_found(env: Env<'_>) {
    let ctx = env.ctx().await;
    let inv = ctx.inventory();
    restock(&ctx, "A", "w1", 10).await;
    assert_err!(
        inv.reserve(&req("o-1", &[("A", 1), ("NOPE", 1)])).await,
        Error::NotFound {
            kind: EntityKind::Stock,
            ..
        },
        "reserving a SKU with no stock record and no backorder setting"
    );
    assert_eq!(counters(&level(&ctx, "A", "w1").await), (10, 0, 10, 0, 0));
    must!(
        inv.set_backorder(&sku("KNOWN"), false).await,
        "set_backorder"
    );
    let err = assert_err!(
        inv.reserve(&req("o-2", &[("KNOWN", 1)])).await,
        Error::OutOfStock { .. },
        "reserving a SKU that has a record (set_backorder false) but no stock"
    );
    assert!(matches!(err, Error::OutOfStock { available: 0, .. }));
    audit_clean(&ctx, "after unknown SKUs").await;
}

async fn reserve_rejects_invalid_requests(env: Env<'_>) {
    let ctx = env.ctx().await;
    let inv = ctx.inventory();
    restock(&ctx, "A", "w1", 10).await;
    let mark = ctx.event_mark().await;
    let bad = [
        ("no lines", req("o-1", &[])),
        ("a zero quantity", req("o-1", &[("A", 0)])),
        ("a huge quantity", req("o-1", &[("A", MAX_QUANTITY + 1)])),
        (
            "lines summing past the maximum",
            req("o-1", &[("A", MAX_QUANTITY), ("A", 1)]),
        ),
        ("a zero ttl", req_ttl("o-1", &[("A", 1)], Duration::ZERO)),
        (
            "a ttl over 7 days",
            req_ttl("o-1", &[("A", 1)], Duration::from_secs(8 * 24 * 3600)),
        ),
    ];
    for (what, r) in bad {
        assert_err!(
            inv.reserve(&r).await,
            Error::Validation { .. },
            "reserve with {what}"
        );
    }
    assert_eq!(reservation(&ctx, "o-1").await, None);
    assert_eq!(counters(&level(&ctx, "A", "w1").await), (10, 0, 10, 0, 0));
    assert_eq!(ctx.events_since(mark).await, vec![]);
}

async fn reserve_is_idempotent_per_order(env: Env<'_>) {
    let ctx = env.ctx().await;
    let inv = ctx.inventory();
    restock(&ctx, "A", "w1", 10).await;
    restock(&ctx, "B", "w1", 10).await;
    let first = reserve(&ctx, &req("o-1", &[("A", 2), ("B", 1)])).await;
    let mark = ctx.event_mark().await;
    ctx.advance(Duration::from_secs(30));
    let again = reserve(&ctx, &req("o-1", &[("B", 1), ("A", 1), ("A", 1)])).await;
    assert_eq!(
        again, first,
        "reserving again with the same normalised lines returns the reservation unchanged"
    );
    assert_eq!(
        counters(&level(&ctx, "A", "w1").await),
        (10, 0, 8, 2, 0),
        "held twice"
    );
    assert_err!(
        inv.reserve(&req("o-1", &[("A", 3), ("B", 1)])).await,
        Error::Conflict {
            kind: EntityKind::Reservation,
            ..
        },
        "reserving for the same order with different lines"
    );
    let confirmed = must!(inv.confirm(&oid("o-1")).await, "confirm");
    assert_eq!(
        reserve(&ctx, &req("o-1", &[("A", 2), ("B", 1)])).await,
        confirmed,
        "reserving again after confirm returns the confirmed reservation"
    );
    assert_eq!(counters(&level(&ctx, "A", "w1").await), (10, 0, 8, 0, 2));
    assert_eq!(
        ctx.events_since(mark).await,
        vec![res_event("o-1", ReservationState::Confirmed, &["A", "B"])],
        "idempotent repeats append no event"
    );
    audit_clean(&ctx, "after idempotent reserves").await;
}

async fn concurrent_reserves_of_one_order_hold_once(env: Env<'_>) {
    let ctx = env.ctx().await;
    let inv = ctx.inventory();
    restock(&ctx, "A", "w1", 100).await;
    let mark = ctx.event_mark().await;
    let results = concurrently(24, |_| {
        let inv = inv.clone();
        async move { inv.reserve(&req("o-1", &[("A", 3)])).await }
    })
    .await;
    let first = must!(results[0].as_ref(), "concurrent reserve of one order").clone();
    for r in &results {
        assert_eq!(
            must!(r.as_ref(), "concurrent reserve of one order"),
            &first,
            "every concurrent reserve of one order returns the same reservation"
        );
    }
    assert_eq!(counters(&level(&ctx, "A", "w1").await), (100, 0, 97, 3, 0));
    assert_eq!(
        ctx.events_since(mark).await,
        vec![res_event("o-1", ReservationState::Active, &["A"])]
    );
    audit_clean(&ctx, "after concurrent idempotent reserves").await;
}

/// `n` concurrent reservations of `q` units of `s` for distinct orders; returns how many
/// succeeded, checking every failure is `OutOfStock` for `s`.
async fn race_reservations(ctx: &Ctx, s: &'static str, n: usize, q: u32) -> usize {
    let inv = ctx.inventory();
    let results = concurrently(n, |i| {
        let inv = inv.clone();
        async move { inv.reserve(&req(&format!("o-{i}"), &[(s, q)])).await }
    })
    .await;
    for r in &results {
        if let Err(e) = r {
            assert!(
                matches!(e, Error::OutOfStock { sku: x, requested, .. } if x == s && *requested == u64::from(q)),
                "a losing reservation must be OutOfStock for {s}, got {e:?}"
            );
        }
    }
    results.iter().filter(|r| r.is_ok()).count()
}

async fn concurrent_reserves_never_oversell(env: Env<'_>) {
    let ctx = env.ctx().await;
    restock(&ctx, "A", "w1", 100).await;
    let ok = race_reservations(&ctx, "A", 64, 2).await;
    assert_eq!(
        ok, 50,
        "64 buyers of 2 units from 100: exactly 50 must succeed"
    );
    assert_eq!(counters(&level(&ctx, "A", "w1").await), (100, 0, 0, 100, 0));
    audit_clean(&ctx, "after racing reservations").await;
}

async fn concurrent_reserves_over_locations_never_oversell(env: Env<'_>) {
    let ctx = env.ctx().await;
    for (l, q) in [("w1", 7), ("w2", 11), ("w3", 13)] {
        restock(&ctx, "A", l, q).await;
    }
    let ok = race_reservations(&ctx, "A", 40, 2).await;
    assert_eq!(
        ok, 15,
        "40 buyers of 2 units from 31 units over three locations: exactly 15 must succeed (lines may split)"
    );
    let s = stock(&ctx, "A").await;
    assert_eq!((s.available(), s.reserved()), (1, 30));
    for l in &s.levels {
        assert!(l.is_balanced(), "unbalanced level {l:?}");
    }
    audit_clean(&ctx, "after racing reservations over locations").await;
}

async fn flash_sale_sells_exactly_the_stock(env: Env<'_>) {
    let ctx = env.ctx().await;
    let inv = ctx.inventory();
    restock(&ctx, "HOT", "w1", 150).await;
    reserve(&ctx, &req("early", &[("HOT", 50)])).await;
    must!(inv.confirm(&oid("early")).await, "confirm the early order");
    let buyers = 400;
    let results = concurrently(buyers, |i| {
        let inv = inv.clone();
        async move {
            let order = format!("buyer-{i}");
            let r = inv.reserve(&req(&order, &[("HOT", 1)])).await;
            if r.is_ok() {
                inv.confirm(&oid(&order)).await.map(|_| ())
            } else {
                r.map(|_| ())
            }
        }
    })
    .await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    for r in &results {
        if let Err(e) = r {
            assert!(
                matches!(
                    e,
                    Error::OutOfStock {
                        requested: 1,
                        available: 0,
                        ..
                    }
                ),
                "a buyer who missed out must get OutOfStock(available 0), got {e:?}"
            );
        }
    }
    assert_eq!(
        ok, 100,
        "{buyers} buyers of the last 100 units: exactly 100 must succeed"
    );
    assert_eq!(
        counters(&level(&ctx, "HOT", "w1").await),
        (150, 0, 0, 0, 150)
    );
    audit_clean(&ctx, "after the flash sale").await;
}

async fn crossing_multi_sku_reserves_do_not_deadlock(env: Env<'_>) {
    let ctx = env.ctx().await;
    let inv = ctx.inventory();
    for s in ["X", "Y", "Z"] {
        restock(&ctx, s, "w1", 1000).await;
        restock(&ctx, s, "w2", 1000).await;
    }
    let orders: [&[(&str, u32)]; 4] = [
        &[("X", 1), ("Y", 1)],
        &[("Y", 1), ("X", 1)],
        &[("Z", 1), ("Y", 1), ("X", 1)],
        &[("X", 1), ("Z", 1)],
    ];
    let run = concurrently(32, |i| {
        let inv = inv.clone();
        async move {
            for k in 0..5 {
                let r = req(&format!("o-{i}-{k}"), orders[(i + k) % orders.len()]);
                inv.reserve(&r).await.expect("reserve with plenty of stock");
                if k % 2 == 0 {
                    inv.release(&r.order_id, "done").await.expect("release");
                }
            }
        }
    });
    if tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .is_err()
    {
        panic!(
            "32 tasks reserving crossing SKU sets did not finish in 60 s: deadlock? (lock in normalized_lines order)"
        );
    }
    audit_clean(&ctx, "after crossing reservations").await;
}

async fn reserve_follows_the_location_policy(env: Env<'_>) {
    let ctx = env.ctx().await;
    let inv = ctx.inventory();
    // Byte-wise id order is w-10, w-2, w-3 (not numeric).
    for (l, q) in [("w-3", 10), ("w-10", 2), ("w-2", 5)] {
        restock(&ctx, "A", l, q).await;
    }
    let r = reserve(&ctx, &req("o-1", &[("A", 5)])).await;
    assert_eq!(
        r.allocations,
        vec![alloc("A", Some("w-2"), 5)],
        "the first location in id order that covers the whole line serves it alone"
    );
    let r = reserve(&ctx, &req("o-2", &[("A", 2)])).await;
    assert_eq!(r.allocations, vec![alloc("A", Some("w-10"), 2)]);
    restock(&ctx, "A", "w-10", 3).await;
    restock(&ctx, "A", "w-2", 4).await;
    let r = reserve(&ctx, &req("o-3", &[("A", 12)])).await;
    assert_eq!(
        r.allocations,
        vec![
            alloc("A", Some("w-10"), 3),
            alloc("A", Some("w-2"), 4),
            alloc("A", Some("w-3"), 5)
        ],
        "when no location covers the line, it is split greedily in location-id order"
    );
    let err = assert_err!(
        inv.reserve(&req("o-4", &[("A", 6)])).await,
        Error::OutOfStock { .. },
        "more than all locations hold"
    );
    assert!(
        matches!(err, Error::OutOfStock { available: 5, .. }),
        "{err:?}"
    );
    audit_clean(&ctx, "after the location policy").await;
}

async fn backorders_are_opt_in_and_filled_by_restock(env: Env<'_>) {
    let ctx = env.ctx().await;
    let inv = ctx.inventory();
    must!(
        inv.set_backorder(&sku("BO"), true).await,
        "allow backorders"
    );
    let r = reserve(&ctx, &req("o-1", &[("BO", 3)])).await;
    assert_eq!(
        r.allocations,
        vec![alloc("BO", None, 3)],
        "a backorder SKU without stock allocates its units with location None"
    );
    let s = stock(&ctx, "BO").await;
    assert!(s.backorder_allowed && s.levels.is_empty());
    assert_eq!(s.backordered, 3);
    restock(&ctx, "BO", "w1", 2).await;
    let r = reserve(&ctx, &req("o-2", &[("BO", 4)])).await;
    assert_eq!(
        r.allocations,
        vec![alloc("BO", Some("w1"), 2), alloc("BO", None, 2)],
        "a short backorder line takes the stock there is and backorders the rest"
    );
    assert_eq!(stock(&ctx, "BO").await.backordered, 5);
    must!(inv.confirm(&oid("o-1")).await, "confirm o-1");
    assert_eq!(
        stock(&ctx, "BO").await.backordered,
        5,
        "confirmed backordered units stay owed"
    );
    must!(inv.release(&oid("o-2"), "cancelled").await, "release o-2");
    let s = stock(&ctx, "BO").await;
    assert_eq!(
        s.backordered, 3,
        "releasing cancels the reservation's backordered units"
    );
    assert_eq!(counters(&s.levels[0]), (2, 0, 2, 0, 0));
    let l = restock(&ctx, "BO", "w1", 5).await;
    assert_eq!(
        counters(&l),
        (7, 0, 4, 0, 3),
        "a restock first fills the owed units: received +5, sold +3, available +2"
    );
    assert_eq!(stock(&ctx, "BO").await.backordered, 0);
    audit_clean(&ctx, "after filling backorders").await;

    // A return cancels units still owed.
    reserve(&ctx, &req("o-3", &[("BO", 6)])).await;
    must!(inv.confirm(&oid("o-3")).await, "confirm o-3");
    assert_eq!(stock(&ctx, "BO").await.backordered, 2);
    must!(
        inv.return_stock(&oid("o-3"), true, "refund").await,
        "return o-3"
    );
    let s = stock(&ctx, "BO").await;
    assert_eq!(
        s.backordered, 0,
        "returning cancels the backordered units still owed"
    );
    assert_eq!(counters(&s.levels[0]), (7, 0, 4, 0, 3));
    audit_clean(&ctx, "after returning a backorder").await;

    // Backorders off again: a short line is out of stock.
    must!(
        inv.set_backorder(&sku("BO"), false).await,
        "forbid backorders"
    );
    let err = assert_err!(
        inv.reserve(&req("o-4", &[("BO", 5)])).await,
        Error::OutOfStock { .. },
        "reserving past the stock with backorders off"
    );
    assert!(
        matches!(err, Error::OutOfStock { available: 4, .. }),
        "{err:?}"
    );
    assert!(!stock(&ctx, "BO").await.backorder_allowed);
}

/// `(kind, location, quantity, order)` of a ledger entry.
type LedgerEntry = (MovementKind, Option<String>, i64, Option<String>);

/// The ledger entries of `s`, oldest first.
async fn ledger_of(ctx: &Ctx, s: &str) -> Vec<LedgerEntry> {
    all_movements(ctx, s)
        .await
        .into_iter()
        .map(|m| {
            (
                m.kind,
                m.location.map(|l| l.to_string()),
                m.quantity,
                m.order_id.map(|o| o.to_string()),
            )
        })
        .collect()
}

async fn backordered_units_record_no_movements(env: Env<'_>) {
    let ctx = env.ctx().await;
    let inv = ctx.inventory();
    must!(
        inv.set_backorder(&sku("BO"), true).await,
        "allow backorders"
    );
    restock(&ctx, "BO", "w1", 2).await;
    // Reserved, confirmed, returned: 2 units at w1 and 2 backordered.
    let r = reserve(&ctx, &req("o-1", &[("BO", 4)])).await;
    assert_eq!(
        r.allocations,
        vec![alloc("BO", Some("w1"), 2), alloc("BO", None, 2)]
    );
    must!(inv.confirm(&oid("o-1")).await, "confirm o-1");
    must!(
        inv.return_stock(&oid("o-1"), false, "damaged").await,
        "return o-1"
    );
    // Only backordered units: released, returned, expired.
    reserve(&ctx, &req("o-2", &[("BO", 3)])).await;
    must!(inv.release(&oid("o-2"), "cancelled").await, "release o-2");
    reserve(&ctx, &req("o-3", &[("BO", 1)])).await;
    must!(inv.confirm(&oid("o-3")).await, "confirm o-3");
    must!(
        inv.return_stock(&oid("o-3"), true, "refund").await,
        "return o-3"
    );
    reserve(&ctx, &req_ttl("o-4", &[("BO", 1)], Duration::from_secs(60))).await;
    ctx.advance(Duration::from_secs(61));
    let reaped = must!(inv.release_expired(ctx.now(), 100).await, "reap");
    assert_eq!(
        reaped
            .iter()
            .map(|r| r.order_id.to_string())
            .collect::<Vec<_>>(),
        vec!["o-4".to_owned()]
    );
    let w1 = Some("w1".to_owned());
    let o1 = Some("o-1".to_owned());
    assert_eq!(
        ledger_of(&ctx, "BO").await,
        vec![
            (MovementKind::Received, w1.clone(), 2, None),
            (MovementKind::Reserved, w1.clone(), 2, o1.clone()),
            (MovementKind::Sold, w1.clone(), 2, o1.clone()),
            (MovementKind::WrittenOff, w1, 2, o1),
        ],
        "backordered units record no movement when reserved, confirmed, released, \
         returned or expired: only the units at w1 are in the ledger"
    );
    assert_eq!(stock(&ctx, "BO").await.backordered, 0);
    audit_clean(&ctx, "after backorders that were never filled").await;
}

async fn restocks_filling_backorders_log_filled_then_received(env: Env<'_>) {
    let ctx = env.ctx().await;
    let inv = ctx.inventory();
    for s in ["BO", "BK"] {
        must!(inv.set_backorder(&sku(s), true).await, "allow backorders");
    }
    reserve(&ctx, &req("o-1", &[("BO", 5)])).await;
    must!(inv.confirm(&oid("o-1")).await, "confirm o-1");
    let mark = ctx.event_mark().await;
    let l = must!(
        inv.restock(&sku("BO"), &loc("w1"), 3, "delivery 1").await,
        "restock BO@w1"
    );
    assert_eq!(counters(&l), (3, 0, 0, 0, 3), "all 3 units fill backorders");
    let l = must!(
        inv.restock(&sku("BO"), &loc("w2"), 4, "delivery 2").await,
        "restock BO@w2"
    );
    assert_eq!(
        counters(&l),
        (4, 0, 2, 0, 2),
        "2 units fill, 2 are received"
    );
    let w = |l: &str| Some(l.to_owned());
    assert_eq!(
        ledger_of(&ctx, "BO").await,
        vec![
            (MovementKind::BackorderFilled, w("w1"), 3, None),
            (MovementKind::BackorderFilled, w("w2"), 2, None),
            (MovementKind::Received, w("w2"), 2, None),
        ],
        "a restock logs BackorderFilled for the filled units, then Received for the \
         rest (none when all filled), at its location and with no order"
    );
    let reasons: Vec<Option<String>> = all_movements(&ctx, "BO")
        .await
        .into_iter()
        .map(|m| m.reason)
        .collect();
    assert_eq!(
        reasons,
        vec![w("delivery 1"), w("delivery 2"), w("delivery 2")],
        "each movement of a restock carries its reason"
    );
    assert_eq!(
        ctx.events_since(mark).await,
        vec![stock_event("BO", "w1", 0), stock_event("BO", "w2", 2)],
        "one StockChanged per restock, filled or not, and no ReservationChanged"
    );
    // A bulk restock fills in the order given: the SKU's first item first.
    reserve(&ctx, &req("o-2", &[("BK", 3)])).await;
    must!(inv.confirm(&oid("o-2")).await, "confirm o-2");
    let mark = ctx.event_mark().await;
    let levels = must!(
        inv.restock_many(&[item("BK", "w2", 2), item("BK", "w1", 5)])
            .await,
        "restock_many"
    );
    assert_eq!(
        levels.iter().map(counters).collect::<Vec<_>>(),
        vec![(2, 0, 0, 0, 2), (5, 0, 4, 0, 1)],
        "the first item (w2) fills 2 owed units, the second (w1) the last one"
    );
    assert_eq!(
        ledger_of(&ctx, "BK").await,
        vec![
            (
                MovementKind::BackorderFilled,
                Some("w2".to_owned()),
                2,
                None
            ),
            (
                MovementKind::BackorderFilled,
                Some("w1".to_owned()),
                1,
                None
            ),
            (MovementKind::Received, Some("w1".to_owned()), 4, None),
        ],
        "a bulk restock logs what its restocks would, item by item in the order given"
    );
    assert_eq!(
        ctx.events_since(mark).await,
        vec![stock_event("BK", "w2", 0), stock_event("BK", "w1", 4)]
    );
    assert_eq!(stock(&ctx, "BK").await.backordered, 0);
    audit_clean(&ctx, "after restocks that filled backorders").await;
}

async fn reservation_events_name_the_normalised_skus(env: Env<'_>) {
    let ctx = env.ctx().await;
    let inv = ctx.inventory();
    restock(&ctx, "A", "w1", 10).await;
    restock(&ctx, "B", "w1", 10).await;
    // C has no stock: its units are only backordered, yet it is named too.
    must!(inv.set_backorder(&sku("C"), true).await, "allow backorders");
    let mark = ctx.event_mark().await;
    let r1 = req("o-1", &[("B", 1), ("C", 1), ("A", 2), ("B", 3)]);
    reserve(&ctx, &r1).await;
    reserve(&ctx, &r1).await;
    must!(inv.confirm(&oid("o-1")).await, "confirm o-1");
    must!(
        inv.return_stock(&oid("o-1"), true, "refund").await,
        "return o-1"
    );
    must!(
        inv.return_stock(&oid("o-1"), true, "again").await,
        "return o-1 again"
    );
    reserve(&ctx, &req("o-2", &[("C", 1), ("A", 1), ("C", 1)])).await;
    must!(inv.release(&oid("o-2"), "cancelled").await, "release o-2");
    must!(inv.release(&oid("o-2"), "again").await, "release o-2 again");
    reserve(
        &ctx,
        &req_ttl("o-3", &[("B", 1), ("A", 1)], Duration::from_secs(60)),
    )
    .await;
    ctx.advance(Duration::from_secs(61));
    must!(inv.release_expired(ctx.now(), 100).await, "reap");
    use ReservationState::{Active, Confirmed, Released, Returned};
    assert_eq!(
        ctx.events_since(mark).await,
        vec![
            res_event("o-1", Active, &["A", "B", "C"]),
            res_event("o-1", Confirmed, &["A", "B", "C"]),
            res_event("o-1", Returned, &["A", "B", "C"]),
            res_event("o-2", Active, &["A", "C"]),
            res_event("o-2", Released, &["A", "C"]),
            res_event("o-3", Active, &["A", "B"]),
            res_event("o-3", Released, &["A", "B"]),
        ],
        "ReservationChanged names the normalised lines' SKUs, each once, in SKU order, \
         on reserve, confirm, return, release and expiry; idempotent repeats append none"
    );
    audit_clean(&ctx, "after the reservation events").await;
}

async fn extend_appends_no_event_and_no_movement(env: Env<'_>) {
    let ctx = env.ctx().await;
    let inv = ctx.inventory();
    restock(&ctx, "A", "w1", 5).await;
    must!(
        inv.set_backorder(&sku("BO"), true).await,
        "allow backorders"
    );
    reserve(&ctx, &req("o-1", &[("A", 2), ("BO", 1)])).await;
    let before = (ledger_of(&ctx, "A").await, ledger_of(&ctx, "BO").await);
    let mark = ctx.event_mark().await;
    ctx.advance(Duration::from_secs(30));
    let r = must!(
        inv.extend(&oid("o-1"), Duration::from_secs(1800)).await,
        "extend"
    );
    assert_eq!(r.expires_at, at_plus(ctx.now(), Duration::from_secs(1800)));
    assert_eq!(
        ctx.events_since(mark).await,
        vec![],
        "extend appends no event"
    );
    assert_eq!(
        (ledger_of(&ctx, "A").await, ledger_of(&ctx, "BO").await),
        before,
        "extend appends no movement"
    );
    assert_eq!(counters(&level(&ctx, "A", "w1").await), (5, 0, 3, 2, 0));
    audit_clean(&ctx, "after extend").await;
}

async fn extend_moves_the_expiry_of_active_reservations(env: Env<'_>) {
    let ctx = env.ctx().await;
    let inv = ctx.inventory();
    restock(&ctx, "A", "w1", 10).await;
    let t0 = ctx.now();
    for o in ["o-1", "o-2", "o-3", "o-4"] {
        reserve(&ctx, &req_ttl(o, &[("A", 1)], Duration::from_secs(600))).await;
    }
    ctx.advance(Duration::from_secs(300));
    let t5 = ctx.now();
    let r = must!(
        inv.extend(&oid("o-1"), Duration::from_secs(1800)).await,
        "extend"
    );
    assert_eq!(
        (r.state, r.expires_at),
        (
            ReservationState::Active,
            at_plus(t5, Duration::from_secs(1800))
        ),
        "extend sets expires_at = now + ttl"
    );
    assert_eq!(reservation(&ctx, "o-1").await, Some(r.clone()));
    // A ttl outside reserve's bounds (1 ms to 7 days) is rejected and changes nothing.
    for ttl in [
        Duration::ZERO,
        Duration::from_secs(7 * 24 * 3600 + 1),
        Duration::MAX,
    ] {
        assert_err!(
            inv.extend(&oid("o-1"), ttl).await,
            Error::Validation { .. },
            "extend by {ttl:?}"
        );
    }
    assert_eq!(
        reservation(&ctx, "o-1").await,
        Some(r.clone()),
        "a rejected extend changes nothing"
    );
    must!(inv.confirm(&oid("o-2")).await, "confirm o-2");
    must!(inv.release(&oid("o-3"), "x").await, "release o-3");
    for (o, from) in [("o-2", "CONFIRMED"), ("o-3", "RELEASED")] {
        let err = assert_err!(
            inv.extend(&oid(o), Duration::from_secs(60)).await,
            Error::InvalidTransition {
                entity: EntityKind::Reservation,
                ..
            },
            "extend of a {from} reservation"
        );
        assert!(
            matches!(&err, Error::InvalidTransition { from: f, .. } if f == from),
            "the error names the state {from}: {err:?}"
        );
    }
    assert_err!(
        inv.extend(&oid("o-none"), Duration::from_secs(60)).await,
        Error::NotFound {
            kind: EntityKind::Reservation,
            ..
        },
        "extend of an unknown order"
    );
    // o-4 expires at t0 + 600; at exactly that time it can no longer be extended.
    ctx.advance(Duration::from_secs(300));
    assert_eq!(ctx.now(), at_plus(t0, Duration::from_secs(600)));
    let err = assert_err!(
        inv.extend(&oid("o-4"), Duration::from_secs(60)).await,
        Error::InvalidTransition { .. },
        "extend of an expired (not yet reaped) reservation"
    );
    assert!(
        matches!(&err, Error::InvalidTransition { from, .. } if from == "EXPIRED"),
        "{err:?}"
    );
    let reaped = must!(inv.release_expired(ctx.now(), 100).await, "release_expired");
    assert_eq!(
        reaped
            .iter()
            .map(|r| r.order_id.clone())
            .collect::<Vec<_>>(),
        vec![oid("o-4")],
        "the extended reservation must not be reaped at its old expiry"
    );
    assert_eq!(
        reservation(&ctx, "o-1").await.map(|r| r.state),
        Some(ReservationState::Active)
    );
    audit_clean(&ctx, "after extend").await;
}

async fn confirm_sells_and_is_idempotent(env: Env<'_>) {
    let ctx = env.ctx().await;
    let inv = ctx.inventory();
    restock(&ctx, "A", "w1", 10).await;
    reserve(&ctx, &req("o-1", &[("A", 3)])).await;
    ctx.advance(Duration::from_secs(10));
    let now = ctx.now();
    let mark = ctx.event_mark().await;
    let confirmed = must!(inv.confirm(&oid("o-1")).await, "confirm");
    assert_eq!(
        (confirmed.state, confirmed.closed_at),
        (ReservationState::Confirmed, Some(now)),
        "confirm closes the reservation now"
    );
    assert_eq!(counters(&level(&ctx, "A", "w1").await), (10, 0, 7, 0, 3));
    ctx.advance(Duration::from_secs(10));
    assert_eq!(
        must!(inv.confirm(&oid("o-1")).await, "confirm again"),
        confirmed,
        "confirming a confirmed reservation returns it unchanged"
    );
    assert_eq!(counters(&level(&ctx, "A", "w1").await), (10, 0, 7, 0, 3));
    assert_eq!(
        ctx.events_since(mark).await,
        vec![res_event("o-1", ReservationState::Confirmed, &["A"])],
        "one ReservationChanged(CONFIRMED), none for the repeat"
    );
    // Expired but not reaped: the units are still held, so it may be confirmed.
    reserve(&ctx, &req_ttl("o-2", &[("A", 2)], Duration::from_secs(60))).await;
    ctx.advance(Duration::from_secs(120));
    let late = must!(
        inv.confirm(&oid("o-2")).await,
        "confirm an expired, unreaped reservation"
    );
    assert_eq!(late.state, ReservationState::Confirmed);
    assert!(
        must!(inv.release_expired(ctx.now(), 100).await, "reap").is_empty(),
        "a confirmed reservation is never reaped"
    );
    reserve(&ctx, &req("o-3", &[("A", 1)])).await;
    must!(inv.release(&oid("o-3"), "changed mind").await, "release");
    let err = assert_err!(
        inv.confirm(&oid("o-3")).await,
        Error::InvalidTransition {
            entity: EntityKind::Reservation,
            ..
        },
        "confirming a released reservation"
    );
    assert!(
        matches!(&err, Error::InvalidTransition { from, .. } if from == "RELEASED"),
        "{err:?}"
    );
    assert_err!(
        inv.confirm(&oid("o-none")).await,
        Error::NotFound {
            kind: EntityKind::Reservation,
            ..
        },
        "confirming an unknown order"
    );
    assert_eq!(counters(&level(&ctx, "A", "w1").await), (10, 0, 5, 0, 5));
    audit_clean(&ctx, "after confirms").await;
}

async fn release_gives_back_and_is_idempotent(env: Env<'_>) {
    let ctx = env.ctx().await;
    let inv = ctx.inventory();
    restock(&ctx, "A", "w1", 10).await;
    reserve(&ctx, &req("o-1", &[("A", 4)])).await;
    ctx.advance(Duration::from_secs(5));
    let now = ctx.now();
    let mark = ctx.event_mark().await;
    let released = must!(
        inv.release(&oid("o-1"), "payment declined").await,
        "release"
    );
    assert_eq!(
        (
            released.state,
            released.closed_at,
            released.reason.as_deref()
        ),
        (
            ReservationState::Released,
            Some(now),
            Some("payment declined")
        ),
        "release closes the reservation now with the reason"
    );
    assert_eq!(counters(&level(&ctx, "A", "w1").await), (10, 0, 10, 0, 0));
    assert_eq!(
        must!(inv.release(&oid("o-1"), "again").await, "release again"),
        released,
        "releasing a released reservation returns it unchanged"
    );
    assert_eq!(
        counters(&level(&ctx, "A", "w1").await),
        (10, 0, 10, 0, 0),
        "released twice"
    );
    assert_eq!(
        ctx.events_since(mark).await,
        vec![res_event("o-1", ReservationState::Released, &["A"])]
    );
    reserve(&ctx, &req("o-2", &[("A", 1)])).await;
    must!(inv.confirm(&oid("o-2")).await, "confirm");
    let err = assert_err!(
        inv.release(&oid("o-2"), "too late").await,
        Error::InvalidTransition {
            entity: EntityKind::Reservation,
            ..
        },
        "releasing a confirmed reservation"
    );
    assert!(
        matches!(&err, Error::InvalidTransition { from, .. } if from == "CONFIRMED"),
        "{err:?}"
    );
    reserve(&ctx, &req("o-3", &[("A", 1)])).await;
    assert_err!(
        inv.release(&oid("o-3"), &"x".repeat(501)).await,
        Error::Validation { .. },
        "release with a 501-character reason"
    );
    assert_eq!(
        reservation(&ctx, "o-3").await.map(|r| r.state),
        Some(ReservationState::Active),
        "a refused release changed the reservation"
    );
    assert_err!(
        inv.release(&oid("o-none"), "x").await,
        Error::NotFound {
            kind: EntityKind::Reservation,
            ..
        },
        "releasing an unknown order"
    );
    audit_clean(&ctx, "after releases").await;
}

async fn return_stock_restocks_or_writes_off(env: Env<'_>) {
    let ctx = env.ctx().await;
    let inv = ctx.inventory();
    restock(&ctx, "A", "w1", 10).await;
    for (o, q) in [("o-1", 3), ("o-2", 2)] {
        reserve(&ctx, &req(o, &[("A", q)])).await;
        must!(inv.confirm(&oid(o)).await, "confirm {o}");
    }
    assert_eq!(counters(&level(&ctx, "A", "w1").await), (10, 0, 5, 0, 5));
    let mark = ctx.event_mark().await;
    let returned = must!(
        inv.return_stock(&oid("o-1"), true, "refund").await,
        "return"
    );
    assert_eq!(returned.state, ReservationState::Returned);
    assert_eq!(
        counters(&level(&ctx, "A", "w1").await),
        (10, 0, 8, 0, 2),
        "a restocking return moves sold back to available"
    );
    assert_eq!(
        must!(
            inv.return_stock(&oid("o-1"), true, "again").await,
            "return again"
        ),
        returned,
        "returning a returned reservation returns it unchanged"
    );
    must!(
        inv.return_stock(&oid("o-2"), false, "broken").await,
        "write-off return"
    );
    assert_eq!(
        counters(&level(&ctx, "A", "w1").await),
        (10, 2, 8, 0, 0),
        "a written-off return moves sold to adjusted"
    );
    assert_eq!(
        ctx.events_since(mark).await,
        vec![
            res_event("o-1", ReservationState::Returned, &["A"]),
            res_event("o-2", ReservationState::Returned, &["A"]),
        ]
    );
    let kinds: Vec<MovementKind> = all_movements(&ctx, "A")
        .await
        .iter()
        .map(|m| m.kind)
        .filter(|k| matches!(k, MovementKind::Returned | MovementKind::WrittenOff))
        .collect();
    assert_eq!(
        kinds,
        vec![MovementKind::Returned, MovementKind::WrittenOff]
    );
    reserve(&ctx, &req("o-3", &[("A", 1)])).await;
    reserve(&ctx, &req("o-4", &[("A", 1)])).await;
    must!(inv.release(&oid("o-4"), "x").await, "release");
    for (o, from) in [("o-3", "ACTIVE"), ("o-4", "RELEASED")] {
        let err = assert_err!(
            inv.return_stock(&oid(o), true, "x").await,
            Error::InvalidTransition {
                entity: EntityKind::Reservation,
                ..
            },
            "returning a {from} reservation"
        );
        assert!(
            matches!(&err, Error::InvalidTransition { from: f, .. } if f == from),
            "{err:?}"
        );
    }
    audit_clean(&ctx, "after returns").await;
}

/// Checks that the reservation a `ReservationChanged(order_id, state)` event announces
/// is already readable in that state (an `Active` event may have been overtaken by a
/// later change).
async fn reservation_behind_event(
    inv: &dyn crate::store::InventoryStore,
    order_id: &OrderId,
    state: ReservationState,
) {
    let r = inv
        .reservation(order_id)
        .await
        .expect("reservation")
        .unwrap_or_else(|| {
            panic!("ReservationChanged({order_id}, {state:?}) was readable before the reservation existed")
        });
    assert!(
        state == ReservationState::Active || r.state == state,
        "ReservationChanged({order_id}, {state:?}) was readable while the store showed {:?}",
        r.state
    );
}

/// A reader that follows the log while writers restock, reserve and confirm never sees
/// an event before its change (the stock it reads has at least the event's
/// `available`; the reservation exists in at least the event's state), and each level's
/// and each order's events come in the order of the changes.
async fn events_never_precede_their_change_and_come_in_order(env: Env<'_>) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let ctx = env.ctx().await;
    let inv = ctx.inventory();
    let events = ctx.events();
    let writers = 6usize;
    let rounds = 8u32;
    restock(&ctx, "A", "w1", 1).await;
    let mark = ctx.event_mark().await;
    let stop = Arc::new(AtomicBool::new(false));
    let observer = {
        let (inv, stop) = (inv.clone(), stop.clone());
        tokio::spawn(async move {
            let mut cursor = mark;
            let mut checked = 0usize;
            loop {
                let done = stop.load(Ordering::SeqCst);
                let page = events.read(cursor, 100).await.expect("EventLog::read");
                for e in &page {
                    cursor = e.id;
                    match &e.event {
                        DomainEvent::StockChanged { sku, available, .. } => {
                            let stock = inv.stock(sku).await.expect("stock");
                            let now = stock.available() + stock.reserved() + stock.sold();
                            assert!(
                                now >= *available,
                                "StockChanged({sku}, available {available}) was readable while the store held only {now} units (events must commit with their change)"
                            );
                            checked += 1;
                        }
                        DomainEvent::ReservationChanged {
                            order_id, state, ..
                        } => {
                            reservation_behind_event(inv.as_ref(), order_id, *state).await;
                            checked += 1;
                        }
                        _ => {}
                    }
                }
                if done && page.is_empty() {
                    return checked;
                }
                tokio::task::yield_now().await;
            }
        })
    };
    concurrently(writers, |w| {
        let inv = inv.clone();
        async move {
            for k in 0..rounds {
                inv.restock(&sku("A"), &loc("w1"), 1, "in")
                    .await
                    .expect("restock");
                let order = oid(&format!("o-{w}-{k}"));
                inv.reserve(&req(order.as_str(), &[("A", 1)]))
                    .await
                    .expect("reserve");
                inv.confirm(&order).await.expect("confirm");
            }
        }
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let n = writers * rounds as usize;
    let checked = super::check::join(observer, "the event observer").await;
    assert_eq!(checked, 3 * n, "one event per restock, reserve and confirm");
    // In order: each restock of the one level adds a unit to `available`, which others
    // take away by reserving; per order, Active comes before Confirmed.
    let mut states: BTreeMap<OrderId, Vec<ReservationState>> = BTreeMap::new();
    let mut restocks = 0;
    for e in ctx.events_since(mark).await {
        match e {
            DomainEvent::StockChanged { .. } => restocks += 1,
            DomainEvent::ReservationChanged {
                order_id, state, ..
            } => states.entry(order_id).or_default().push(state),
            _ => {}
        }
    }
    assert_eq!(restocks, n);
    assert_eq!(states.len(), n);
    for (order, seen) in states {
        assert_eq!(
            seen,
            vec![ReservationState::Active, ReservationState::Confirmed],
            "the events of {order} come in the order of its changes"
        );
    }
}

/// Writers, one per SKU and all at once, each round restock, adjust, reserve, then
/// confirm or release (alternately). A reader following the log meanwhile must find each
/// event's change already made: the SKU's ledger holds at least as many movements as
/// that SKU has had events so far (here each change is one movement and one event,
/// written together), and the reservation of a `ReservationChanged` exists, in the
/// event's state once that state is final. Afterwards each SKU's events, in log order,
/// are exactly its writer's changes in order, each `StockChanged` with the `available`
/// its call returned.
async fn events_of_every_change_follow_the_ledger_in_order(env: Env<'_>) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let ctx = env.ctx().await;
    let inv = ctx.inventory();
    let events = ctx.events();
    let writers = 6usize;
    let rounds = 6usize;
    let mark = ctx.event_mark().await;
    let stop = Arc::new(AtomicBool::new(false));
    let observer = {
        let (inv, stop) = (inv.clone(), stop.clone());
        tokio::spawn(async move {
            let mut cursor = mark;
            let mut per_sku: BTreeMap<Sku, usize> = BTreeMap::new();
            let mut checked = 0usize;
            loop {
                let done = stop.load(Ordering::SeqCst);
                let page = events.read(cursor, 100).await.expect("EventLog::read");
                for e in &page {
                    cursor = e.id;
                    let skus = match &e.event {
                        DomainEvent::StockChanged { sku, .. } => vec![sku.clone()],
                        DomainEvent::ReservationChanged {
                            order_id,
                            state,
                            skus,
                        } => {
                            reservation_behind_event(inv.as_ref(), order_id, *state).await;
                            skus.clone()
                        }
                        _ => continue,
                    };
                    for sku in skus {
                        let n = per_sku.entry(sku.clone()).or_default();
                        *n += 1;
                        let ledger = inv.movements(&sku, 0, 1000).await.expect("movements");
                        assert!(
                            ledger.len() >= *n,
                            "event {} ({:?}) was readable while the ledger of {sku} held {} movements for {n} events so far (events must commit with their change)",
                            e.id,
                            e.event,
                            ledger.len()
                        );
                    }
                    checked += 1;
                }
                if done && page.is_empty() {
                    return checked;
                }
                tokio::task::yield_now().await;
            }
        })
    };
    let expected = concurrently(writers, |w| {
        let inv = inv.clone();
        async move {
            let s = format!("E{w}");
            let (sku_w, at) = (sku(&s), loc("w1"));
            let mut out = Vec::new();
            for k in 0..rounds {
                let lv = inv.restock(&sku_w, &at, 2, "in").await.expect("restock");
                out.push(stock_event(&s, "w1", lv.available));
                let lv = inv.adjust(&sku_w, &at, -1, "shrink").await.expect("adjust");
                out.push(stock_event(&s, "w1", lv.available));
                let o = format!("o-{w}-{k}");
                inv.reserve(&req(&o, &[(s.as_str(), 1)]))
                    .await
                    .expect("reserve");
                out.push(res_event(&o, ReservationState::Active, &[s.as_str()]));
                if k % 2 == 0 {
                    inv.confirm(&oid(&o)).await.expect("confirm");
                    out.push(res_event(&o, ReservationState::Confirmed, &[s.as_str()]));
                } else {
                    inv.release(&oid(&o), "changed mind")
                        .await
                        .expect("release");
                    out.push(res_event(&o, ReservationState::Released, &[s.as_str()]));
                }
            }
            (sku_w, out)
        }
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let checked = super::check::join(observer, "the event observer").await;
    assert_eq!(checked, writers * rounds * 4, "one event per change");
    let mut seen: BTreeMap<Sku, Vec<DomainEvent>> = BTreeMap::new();
    for e in ctx.events_since(mark).await {
        let s = match &e {
            DomainEvent::StockChanged { sku, .. } => sku.clone(),
            DomainEvent::ReservationChanged { skus, .. } if skus.len() == 1 => skus[0].clone(),
            other => panic!("an event no writer caused: {other:?}"),
        };
        seen.entry(s).or_default().push(e);
    }
    for (s, changes) in expected {
        assert_eq!(
            seen.get(&s),
            Some(&changes),
            "the events of {s} must be exactly its changes, in order"
        );
    }
}

/// `release_expired(now)` decides by the `now` it is given, not by the store's clock:
/// a time ahead of the clock releases what is due then; one behind releases nothing.
async fn release_expired_honours_its_now(env: Env<'_>) {
    let ctx = env.ctx().await;
    let inv = ctx.inventory();
    restock(&ctx, "A", "w1", 10).await;
    reserve(&ctx, &req_ttl("o-1", &[("A", 1)], Duration::from_secs(60))).await;
    let t0 = ctx.now();
    ctx.advance(Duration::from_secs(120));
    assert!(
        must!(
            inv.release_expired(at_plus(t0, Duration::from_secs(30)), 10)
                .await,
            "release_expired(t0 + 30 s)"
        )
        .is_empty(),
        "release_expired(t0 + 30 s) releases nothing although the store's clock is past the expiry"
    );
    // A fresh reservation, with the clock not moved: a `now` ahead releases it.
    reserve(&ctx, &req_ttl("o-2", &[("A", 1)], Duration::from_secs(60))).await;
    let t1 = ctx.now();
    let released = must!(
        inv.release_expired(at_plus(t1, Duration::from_secs(60)), 10)
            .await,
        "release_expired(t1 + 60 s)"
    );
    let ids: BTreeSet<OrderId> = released.iter().map(|r| r.order_id.clone()).collect();
    assert_eq!(
        ids,
        BTreeSet::from([oid("o-1"), oid("o-2")]),
        "release_expired(t1 + 60 s) releases both, by the given now, with the clock at t1"
    );
}

/// TTLs below a second and with fractions of a second are kept to the millisecond: a
/// 1.5 s reservation expires 1.5 s after it was made, not at a whole second.
async fn sub_second_ttls_are_kept_exactly(env: Env<'_>) {
    let ctx = env.ctx().await;
    let inv = ctx.inventory();
    restock(&ctx, "A", "w1", 10).await;
    let t0 = ctx.now();
    let short = reserve(
        &ctx,
        &req_ttl("o-1", &[("A", 1)], Duration::from_millis(250)),
    )
    .await;
    let mid = reserve(
        &ctx,
        &req_ttl("o-2", &[("A", 1)], Duration::from_millis(1500)),
    )
    .await;
    assert_eq!(
        (short.expires_at, mid.expires_at),
        (
            at_plus(t0, Duration::from_millis(250)),
            at_plus(t0, Duration::from_millis(1500))
        ),
        "expires_at = now + ttl, to the millisecond"
    );
    let due = |ms: u64| at_plus(t0, Duration::from_millis(ms));
    let ids = |rs: Vec<crate::inventory::Reservation>| -> Vec<String> {
        rs.into_iter().map(|r| r.order_id.to_string()).collect()
    };
    assert!(
        must!(inv.release_expired(due(249), 10).await, "at 249 ms").is_empty(),
        "nothing is due 1 ms before a 250 ms TTL ends"
    );
    assert_eq!(
        ids(must!(inv.release_expired(due(250), 10).await, "at 250 ms")),
        ["o-1"],
        "a 250 ms reservation is due at 250 ms"
    );
    assert!(
        must!(inv.release_expired(due(1499), 10).await, "at 1,499 ms").is_empty(),
        "a 1.5 s reservation is not due at 1,499 ms (nor truncated to 1 s)"
    );
    assert_eq!(
        ids(must!(
            inv.release_expired(due(1500), 10).await,
            "at 1,500 ms"
        )),
        ["o-2"],
        "a 1.5 s reservation is due at 1,500 ms (not rounded up to 2 s)"
    );
}

async fn release_expired_releases_exactly_the_due_reservations(env: Env<'_>) {
    let ctx = env.ctx().await;
    let inv = ctx.inventory();
    restock(&ctx, "A", "w1", 100).await;
    let minutes = |m: u64| Duration::from_secs(60 * m);
    for (o, ttl) in [("o-1", 1), ("o-2", 2), ("o-3", 3), ("o-4", 2), ("o-5", 2)] {
        reserve(&ctx, &req_ttl(o, &[("A", 1)], minutes(ttl))).await;
    }
    must!(inv.confirm(&oid("o-4")).await, "confirm o-4");
    must!(inv.release(&oid("o-5"), "x").await, "release o-5");
    let t0 = ctx.now();
    assert!(
        must!(
            inv.release_expired(at_plus(t0, Duration::from_secs(59)), 100)
                .await,
            "early"
        )
        .is_empty(),
        "nothing is due before its expiry"
    );
    ctx.advance(minutes(2));
    let now = ctx.now();
    let mark = ctx.event_mark().await;
    let reaped = must!(inv.release_expired(now, 100).await, "release_expired");
    let ids: BTreeSet<OrderId> = reaped.iter().map(|r| r.order_id.clone()).collect();
    assert_eq!(
        ids,
        BTreeSet::from([oid("o-1"), oid("o-2")]),
        "release_expired(now) releases the active reservations with expires_at <= now (o-2 expires exactly now), not confirmed or released ones"
    );
    for r in &reaped {
        assert_eq!(
            r.state,
            ReservationState::Released,
            "reaped reservations come back released"
        );
        assert_eq!(
            reservation(&ctx, r.order_id.as_str()).await.as_ref(),
            Some(r)
        );
    }
    let events: BTreeSet<String> = ctx
        .events_since(mark)
        .await
        .iter()
        .map(|e| format!("{e:?}"))
        .collect();
    let expected: BTreeSet<String> = ["o-1", "o-2"]
        .iter()
        .map(|o| format!("{:?}", res_event(o, ReservationState::Released, &["A"])))
        .collect();
    assert_eq!(
        events, expected,
        "each reaped reservation appends ReservationChanged(RELEASED)"
    );
    assert_eq!(counters(&level(&ctx, "A", "w1").await), (100, 0, 98, 1, 1));
    // The limit bounds each call.
    for i in 0..5 {
        reserve(&ctx, &req_ttl(&format!("b-{i}"), &[("A", 1)], minutes(1))).await;
    }
    ctx.advance(minutes(1));
    let sizes: Vec<usize> = {
        let mut sizes = Vec::new();
        for _ in 0..4 {
            sizes.push(must!(inv.release_expired(ctx.now(), 2).await, "reap 2").len());
        }
        sizes
    };
    assert_eq!(
        sizes,
        vec![2, 2, 2, 0],
        "six due (five new and o-3), limit 2: calls release 2, 2, 2, then none"
    );
    assert!(must!(inv.release_expired(ctx.now(), 2).await, "reap").is_empty());
    assert_eq!(counters(&level(&ctx, "A", "w1").await), (100, 0, 99, 0, 1));
    assert_err!(
        inv.release_expired(ctx.now(), 0).await,
        Error::Validation { .. },
        "release_expired with limit 0"
    );
    audit_clean(&ctx, "after reaping").await;
}

async fn concurrent_reapers_release_each_reservation_once(env: Env<'_>) {
    let ctx = env.ctx().await;
    let inv = ctx.inventory();
    restock(&ctx, "A", "w1", 1000).await;
    restock(&ctx, "B", "w2", 1000).await;
    let n = 120;
    for i in 0..n {
        let lines: &[(&str, u32)] = if i % 3 == 0 {
            &[("A", 2), ("B", 1)]
        } else {
            &[("A", 1)]
        };
        reserve(
            &ctx,
            &req_ttl(
                &format!("o-{i:03}"),
                lines,
                Duration::from_secs(60 + i as u64),
            ),
        )
        .await;
    }
    ctx.advance(Duration::from_secs(3600));
    let now = ctx.now();
    let mark = ctx.event_mark().await;
    let total = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let batches = concurrently(6, |_| {
        let inv = inv.clone();
        let total = total.clone();
        async move {
            let mut mine = Vec::new();
            loop {
                let batch = inv.release_expired(now, 7).await.expect("release_expired");
                // More releases than reservations: stop, the assertions below report it.
                let so_far = total.fetch_add(batch.len(), std::sync::atomic::Ordering::SeqCst);
                if batch.is_empty() || so_far > n {
                    return mine;
                }
                mine.extend(batch.into_iter().map(|r| r.order_id));
            }
        }
    })
    .await;
    let all: Vec<OrderId> = batches.into_iter().flatten().collect();
    let unique: BTreeSet<OrderId> = all.iter().cloned().collect();
    assert_eq!(
        all.len(),
        unique.len(),
        "a reservation was returned by two reapers (each must be released exactly once)"
    );
    assert_eq!(
        unique.len(),
        n,
        "every expired reservation must be released"
    );
    assert_eq!(
        counters(&level(&ctx, "A", "w1").await),
        (1000, 0, 1000, 0, 0)
    );
    assert_eq!(
        counters(&level(&ctx, "B", "w2").await),
        (1000, 0, 1000, 0, 0)
    );
    let released_events = ctx
        .events_since(mark)
        .await
        .into_iter()
        .filter(|e| {
            matches!(
                e,
                DomainEvent::ReservationChanged {
                    state: ReservationState::Released,
                    ..
                }
            )
        })
        .count();
    assert_eq!(
        released_events, n,
        "one RELEASED event per reaped reservation"
    );
    audit_clean(&ctx, "after concurrent reapers").await;
}

async fn reaping_and_confirming_race_consistently(env: Env<'_>) {
    let ctx = env.ctx().await;
    let inv = ctx.inventory();
    restock(&ctx, "A", "w1", 500).await;
    let n = 80;
    for i in 0..n {
        reserve(
            &ctx,
            &req_ttl(&format!("o-{i:03}"), &[("A", 2)], Duration::from_secs(60)),
        )
        .await;
    }
    ctx.advance(Duration::from_secs(61));
    let now = ctx.now();
    let reapers = {
        let inv = inv.clone();
        tokio::spawn(async move {
            let tasks: Vec<_> = (0..3)
                .map(|_| {
                    let inv = inv.clone();
                    tokio::spawn(async move {
                        let mut mine = Vec::new();
                        loop {
                            let batch = inv.release_expired(now, 5).await.expect("release_expired");
                            if batch.is_empty() || mine.len() > n {
                                return mine;
                            }
                            mine.extend(batch.into_iter().map(|r| r.order_id));
                        }
                    })
                })
                .collect();
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await.expect("reaper"));
            }
            all
        })
    };
    let confirms = concurrently(n, |i| {
        let inv = inv.clone();
        async move { (i, inv.confirm(&oid(&format!("o-{i:03}"))).await) }
    })
    .await;
    let reaped: BTreeSet<OrderId> = super::check::join(reapers, "the reapers")
        .await
        .into_iter()
        .collect();
    let mut sold = 0;
    for (i, result) in confirms {
        let o = oid(&format!("o-{i:03}"));
        let final_state = reservation(&ctx, o.as_str()).await.map(|r| r.state);
        match result {
            Ok(r) => {
                assert_eq!(r.state, ReservationState::Confirmed);
                assert!(!reaped.contains(&o), "{o} was both confirmed and reaped");
                assert_eq!(final_state, Some(ReservationState::Confirmed));
                sold += 2;
            }
            Err(Error::InvalidTransition { from, .. }) if from == "RELEASED" => {
                assert!(
                    reaped.contains(&o),
                    "{o}: confirm saw RELEASED but no reaper returned it"
                );
                assert_eq!(final_state, Some(ReservationState::Released));
            }
            Err(e) => panic!("confirm of {o} racing a reaper: unexpected {e:?}"),
        }
    }
    assert_eq!(
        counters(&level(&ctx, "A", "w1").await),
        (500, 0, 500 - sold, 0, sold)
    );
    audit_clean(&ctx, "after reaping raced confirms").await;
}

async fn ledger_replays_to_the_counters(env: Env<'_>) {
    let ctx = env.ctx().await;
    let inv = ctx.inventory();
    for (s, l, q) in [("A", "w1", 20), ("A", "w2", 5), ("B", "w1", 9)] {
        restock(&ctx, s, l, q).await;
    }
    must!(inv.set_backorder(&sku("B"), true).await, "backorders for B");
    reserve(&ctx, &req("o-1", &[("A", 22), ("B", 2)])).await;
    reserve(&ctx, &req("o-2", &[("A", 1), ("B", 10)])).await;
    must!(inv.confirm(&oid("o-1")).await, "confirm");
    must!(inv.release(&oid("o-2"), "x").await, "release");
    must!(
        inv.adjust(&sku("A"), &loc("w1"), 1, "found").await,
        "adjust"
    );
    must!(
        inv.return_stock(&oid("o-1"), false, "broken").await,
        "return"
    );
    reserve(&ctx, &req("o-3", &[("B", 12)])).await;
    must!(inv.confirm(&oid("o-3")).await, "confirm");
    restock(&ctx, "B", "w2", 4).await;
    for s in ["A", "B"] {
        let ledger = all_movements(&ctx, s).await;
        for l in stock(&ctx, s).await.levels {
            assert_eq!(
                replay(&sku(s), &l.location, &ledger),
                l,
                "the ledger of {s} must replay to the counters at {}",
                l.location
            );
        }
        let mut paged = Vec::new();
        let mut offset = 0;
        loop {
            let page = must!(inv.movements(&sku(s), offset, 3).await, "movements page");
            assert!(page.len() <= 3);
            if page.is_empty() {
                break;
            }
            offset += page.len() as u64;
            paged.extend(page);
        }
        assert_eq!(
            paged, ledger,
            "paging movements by 3 must give the whole ledger, oldest first"
        );
    }
    assert!(
        all_movements(&ctx, "B")
            .await
            .iter()
            .any(|m| m.kind == MovementKind::BackorderFilled),
        "filling a backorder is recorded"
    );
    audit_clean(&ctx, "after a mixed history").await;
}

async fn sequential_histories_match_the_model(env: Env<'_>) {
    model::sequential(env).await;
}

async fn concurrent_histories_conserve_stock(env: Env<'_>) {
    model::concurrent(env).await;
}

/// Used by the model: every reservation of `orders`, by order.
pub(crate) async fn reservations_of(
    ctx: &Ctx,
    orders: &[OrderId],
) -> BTreeMap<OrderId, Reservation> {
    let mut out = BTreeMap::new();
    for o in orders {
        if let Some(r) = must!(ctx.inventory().reservation(o).await, "reservation({o})") {
            out.insert(o.clone(), r);
        }
    }
    out
}
