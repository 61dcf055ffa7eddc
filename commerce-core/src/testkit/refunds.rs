//! The [`RefundLedger`](crate::store::RefundLedger) suite.
//!
//! Checks: `open` registers exactly what was paid (nothing refunded), is idempotent
//! with the same content and a `Conflict { Refund }` with other content, and writes
//! nothing for invalid input; partial refunds add up per line, for shipping and in
//! total, with `created_at` from the store clock, listed in recording order, and the
//! refund that completes the order says so; every way of asking for more than remains
//! (units, a line's money, shipping, an unknown SKU, another currency, nothing at all)
//! is a typed error that writes nothing; unknown orders are `NotFound { Order }`; a key
//! is recorded once per order (a replay returns it, other content is a conflict);
//! under 48 concurrent partial refunds on a multi-thread runtime exactly what was paid
//! is refunded, never more, and exactly one refund completes the order; 24 concurrent
//! replays of one key record it once; 16 concurrent opens register the order once;
//! returns priced by
//! [`quote_refund`] give back exactly what was paid.

use super::builder::{Area, StoreBuilder};
use super::check::{assert_err, concurrently, must};
use super::fixtures::{key, money, oid, sku};
use super::runner::{Case, Ctx, Env, Settings, cases, run_one_area};
use crate::error::{EntityKind, Error};
use crate::money::Currency;
use crate::refund::{
    PaidLine, PaidOrder, RefundBalance, RefundLine, RefundRequest, ShippingRefundPolicy,
    quote_refund,
};
use crate::store::RefundLedgerOutcome;

/// Runs every refund case against `builder`'s stores; panics listing the failed cases.
pub async fn test_all<B: StoreBuilder>(builder: &B) {
    test_all_with(builder, &Settings::from_env()).await;
}

/// [`test_all`] with explicit [`Settings`].
pub async fn test_all_with<B: StoreBuilder>(builder: &B, settings: &Settings) {
    run_one_area(builder, settings, Area::Refunds, cases()).await;
}

pub(crate) fn cases() -> Vec<Case> {
    cases![
        open_registers_what_was_paid,
        partial_refunds_add_up_to_what_was_paid,
        refunds_beyond_what_remains_write_nothing,
        unknown_orders_are_not_found,
        a_key_is_recorded_once_per_order,
        concurrent_partial_refunds_never_exceed_what_was_paid,
        concurrent_replays_of_one_key_record_once,
        concurrent_opens_register_once,
        quoted_returns_give_back_exactly_what_was_paid,
    ]
}

/// Line A: 5 units, paid 50.00 (tax 7.98, discount 5.00); line B: 3 units, paid 30.00
/// (tax 1.96); shipping 5.00 (tax 0.80). Total 85.00 EUR.
fn paid(order: &str) -> PaidOrder {
    PaidOrder {
        order_id: oid(order),
        currency: Currency::EUR,
        lines: vec![
            PaidLine {
                sku: sku("A"),
                quantity: 5,
                paid: money("50.00 EUR"),
                tax: money("7.98 EUR"),
                discount: money("5.00 EUR"),
            },
            PaidLine {
                sku: sku("B"),
                quantity: 3,
                paid: money("30.00 EUR"),
                tax: money("1.96 EUR"),
                discount: money("0.00 EUR"),
            },
        ],
        shipping: money("5.00 EUR"),
        shipping_tax: money("0.80 EUR"),
    }
}

fn request(order: &str, k: &str, lines: &[(&str, u32, &str)], shipping: &str) -> RefundRequest {
    RefundRequest {
        order_id: oid(order),
        key: key(k),
        lines: lines
            .iter()
            .map(|(s, q, a)| RefundLine {
                sku: sku(s),
                quantity: *q,
                amount: money(a),
            })
            .collect(),
        shipping: money(shipping),
        reason: format!("case refund {k}"),
    }
}

async fn open(ctx: &Ctx, p: &PaidOrder) -> RefundBalance {
    must!(ctx.refunds().open(p).await, "open({})", p.order_id)
}

async fn record(ctx: &Ctx, r: &RefundRequest) -> RefundLedgerOutcome {
    must!(ctx.refunds().record(r).await, "record({})", r.key)
}

async fn balance(ctx: &Ctx, order: &str) -> Option<RefundBalance> {
    must!(ctx.refunds().balance(&oid(order)).await, "balance({order})")
}

async fn keys(ctx: &Ctx, order: &str) -> Vec<String> {
    must!(ctx.refunds().refunds(&oid(order)).await, "refunds({order})")
        .into_iter()
        .map(|r| r.request.key.into_string())
        .collect()
}

/// The reference: `paid`'s balance after applying `requests` in order.
fn expected(p: &PaidOrder, requests: &[&RefundRequest]) -> RefundBalance {
    let mut b = must!(RefundBalance::new(p), "reference balance");
    for r in requests {
        must!(b.apply(r), "reference apply({})", r.key);
    }
    b
}

async fn open_registers_what_was_paid(env: Env<'_>) {
    let ctx = env.ctx().await;
    let p = paid("o-1");
    let b = open(&ctx, &p).await;
    assert_eq!(
        b,
        expected(&p, &[]),
        "open returns the balance with nothing refunded"
    );
    assert_eq!(b.total_paid, money("85.00 EUR"));
    assert_eq!(balance(&ctx, "o-1").await, Some(b.clone()));
    assert_eq!(
        must!(ctx.refunds().paid(&oid("o-1")).await, "paid"),
        Some(p.clone())
    );
    assert!(keys(&ctx, "o-1").await.is_empty());
    // Again with the same content: the current balance, refunds included.
    let r = request("o-1", "r-1", &[("A", 1, "10.00 EUR")], "0.00 EUR");
    record(&ctx, &r).await;
    assert_eq!(open(&ctx, &p).await, expected(&p, &[&r]));
    // Other content: a conflict, nothing changes.
    let mut other = p.clone();
    other.lines[0].paid = money("60.00 EUR");
    assert_err!(
        ctx.refunds().open(&other).await,
        Error::Conflict {
            kind: EntityKind::Refund,
            ..
        },
        "open with other amounts"
    );
    assert_eq!(
        must!(ctx.refunds().paid(&oid("o-1")).await, "paid"),
        Some(p.clone())
    );
    // Invalid: nothing written.
    let mut bad = paid("o-2");
    bad.lines[1].tax = money("31.00 EUR");
    assert_err!(
        ctx.refunds().open(&bad).await,
        Error::Validation { .. },
        "open with tax above the line's paid"
    );
    let mut mixed = paid("o-2");
    mixed.shipping = money("5.00 USD");
    assert_err!(
        ctx.refunds().open(&mixed).await,
        Error::CurrencyMismatch { .. },
        "open with two currencies"
    );
    assert_eq!(
        balance(&ctx, "o-2").await,
        None,
        "invalid opens write nothing"
    );
}

async fn partial_refunds_add_up_to_what_was_paid(env: Env<'_>) {
    let ctx = env.ctx().await;
    let p = paid("o-1");
    open(&ctx, &p).await;
    ctx.advance(std::time::Duration::from_secs(60));
    let r1 = request("o-1", "r-1", &[("A", 2, "20.00 EUR")], "0.00 EUR");
    let o1 = record(&ctx, &r1).await;
    assert!(o1.created && !o1.completes_order, "{o1:?}");
    assert_eq!(o1.refund.request, r1);
    assert_eq!(o1.refund.total, money("20.00 EUR"));
    assert_eq!(
        o1.refund.created_at,
        ctx.now(),
        "created_at is the store clock's now"
    );
    let r2 = request("o-1", "r-2", &[("B", 1, "10.00 EUR")], "1.00 EUR");
    let o2 = record(&ctx, &r2).await;
    assert_eq!(o2.refund.total, money("11.00 EUR"));
    assert!(!o2.completes_order);
    // A money-only adjustment (no units) on B.
    let r3 = request("o-1", "r-3", &[("B", 0, "2.50 EUR")], "0.00 EUR");
    record(&ctx, &r3).await;
    assert_eq!(
        balance(&ctx, "o-1").await,
        Some(expected(&p, &[&r1, &r2, &r3]))
    );
    let b = balance(&ctx, "o-1")
        .await
        .unwrap_or_else(|| panic!("opened"));
    assert_eq!(
        (b.lines[0].refunded_units, b.lines[1].refunded_units),
        (2, 1),
        "units returned per line"
    );
    assert_eq!(b.total_refunded, money("33.50 EUR"));
    // The rest: completes the order.
    let rest = request(
        "o-1",
        "r-4",
        &[("A", 3, "30.00 EUR"), ("B", 2, "17.50 EUR")],
        "4.00 EUR",
    );
    let o4 = record(&ctx, &rest).await;
    assert!(
        o4.created && o4.completes_order,
        "the refund that completes the order says so: {o4:?}"
    );
    let b = balance(&ctx, "o-1")
        .await
        .unwrap_or_else(|| panic!("opened"));
    assert!(b.is_fully_refunded() && b.all_units_returned(), "{b:?}");
    assert_eq!(
        keys(&ctx, "o-1").await,
        ["r-1", "r-2", "r-3", "r-4"],
        "listed in recording order"
    );
    // Nothing is left: even one cent is refused.
    assert_err!(
        ctx.refunds()
            .record(&request("o-1", "r-5", &[("A", 0, "0.01 EUR")], "0.00 EUR"))
            .await,
        Error::Validation { .. },
        "a refund after everything was refunded"
    );
}

async fn refunds_beyond_what_remains_write_nothing(env: Env<'_>) {
    let ctx = env.ctx().await;
    let p = paid("o-1");
    open(&ctx, &p).await;
    let first = request("o-1", "r-1", &[("A", 4, "40.00 EUR")], "4.00 EUR");
    record(&ctx, &first).await;
    let before = balance(&ctx, "o-1").await;
    let cases: Vec<(&str, RefundRequest, &str)> = vec![
        (
            "more units than remain (2 of 5 left: 1)",
            request("o-1", "x-1", &[("A", 2, "1.00 EUR")], "0.00 EUR"),
            "lines[0].quantity",
        ),
        (
            "more money than remains of the line (10.00 left)",
            request(
                "o-1",
                "x-2",
                &[("B", 0, "5.00 EUR"), ("A", 1, "10.01 EUR")],
                "0.00 EUR",
            ),
            "lines[1].amount",
        ),
        (
            "more units than bought in one go",
            request("o-1", "x-3", &[("B", 4, "1.00 EUR")], "0.00 EUR"),
            "lines[0].quantity",
        ),
        (
            "more shipping than remains (1.00 left)",
            request("o-1", "x-4", &[("B", 1, "1.00 EUR")], "1.01 EUR"),
            "shipping",
        ),
        (
            "a SKU the order does not have",
            request("o-1", "x-5", &[("C", 1, "1.00 EUR")], "0.00 EUR"),
            "lines[0].sku",
        ),
        (
            "nothing at all",
            request("o-1", "x-6", &[], "0.00 EUR"),
            "refund",
        ),
        (
            "a line with no units and no money",
            request("o-1", "x-7", &[("B", 0, "0.00 EUR")], "0.00 EUR"),
            "lines[0]",
        ),
        (
            "a repeated SKU",
            request(
                "o-1",
                "x-8",
                &[("B", 1, "1.00 EUR"), ("B", 1, "1.00 EUR")],
                "0.00 EUR",
            ),
            "lines[1].sku",
        ),
    ];
    for (what, r, field) in cases {
        let err = assert_err!(
            ctx.refunds().record(&r).await,
            Error::Validation { .. },
            "{what}"
        );
        match err {
            Error::Validation { field: got, .. } => {
                assert_eq!(
                    got, field,
                    "{what}: the error names the first thing that exceeds"
                )
            }
            _ => unreachable!(),
        }
        assert_eq!(
            balance(&ctx, "o-1").await,
            before,
            "{what}: nothing written"
        );
    }
    let mut usd = request("o-1", "x-9", &[("B", 1, "1.00 EUR")], "0.00 EUR");
    usd.lines[0].amount = money("1.00 USD");
    assert_err!(
        ctx.refunds().record(&usd).await,
        Error::CurrencyMismatch { .. },
        "a refund in another currency"
    );
    assert_eq!(balance(&ctx, "o-1").await, before);
    assert_eq!(keys(&ctx, "o-1").await, ["r-1"], "no refund recorded");
    // A refused key is not burnt: it can be used for a refund that fits.
    let fits = request("o-1", "x-1", &[("A", 1, "10.00 EUR")], "0.00 EUR");
    assert!(record(&ctx, &fits).await.created);
}

async fn unknown_orders_are_not_found(env: Env<'_>) {
    let ctx = env.ctx().await;
    open(&ctx, &paid("o-1")).await;
    assert_err!(
        ctx.refunds()
            .record(&request("o-9", "r-1", &[("A", 1, "1.00 EUR")], "0.00 EUR"))
            .await,
        Error::NotFound {
            kind: EntityKind::Order,
            ..
        },
        "record on an order never opened"
    );
    assert_eq!(balance(&ctx, "o-9").await, None);
    assert_eq!(must!(ctx.refunds().paid(&oid("o-9")).await, "paid"), None);
    assert!(keys(&ctx, "o-9").await.is_empty());
}

async fn a_key_is_recorded_once_per_order(env: Env<'_>) {
    let ctx = env.ctx().await;
    let p = paid("o-1");
    open(&ctx, &p).await;
    open(&ctx, &paid("o-2")).await;
    let r = request("o-1", "r-1", &[("A", 1, "10.00 EUR")], "0.00 EUR");
    let first = record(&ctx, &r).await;
    ctx.advance(std::time::Duration::from_secs(5));
    let again = record(&ctx, &r).await;
    assert!(first.created && !again.created, "{first:?} / {again:?}");
    assert_eq!(
        again.refund, first.refund,
        "a replay returns the recorded refund"
    );
    assert!(!again.completes_order);
    assert_eq!(
        balance(&ctx, "o-1").await,
        Some(expected(&p, &[&r])),
        "counted once"
    );
    let other = request("o-1", "r-1", &[("A", 2, "20.00 EUR")], "0.00 EUR");
    assert_err!(
        ctx.refunds().record(&other).await,
        Error::Conflict {
            kind: EntityKind::Refund,
            ..
        },
        "the same key with other content"
    );
    assert_eq!(balance(&ctx, "o-1").await, Some(expected(&p, &[&r])));
    // Keys are per order.
    let elsewhere = request("o-2", "r-1", &[("A", 1, "10.00 EUR")], "0.00 EUR");
    assert!(record(&ctx, &elsewhere).await.created);
    assert_eq!(keys(&ctx, "o-1").await, ["r-1"]);
}

async fn concurrent_partial_refunds_never_exceed_what_was_paid(env: Env<'_>) {
    let ctx = env.ctx().await;
    let p = paid("o-1");
    open(&ctx, &p).await;
    let refunds = ctx.refunds();
    // 16 tasks each: one unit of A (5 bought), one unit of B (3 bought), 1.00 of
    // shipping (5.00 paid). Exactly 5 + 3 + 5 can succeed.
    let outcomes = concurrently(48, |i| {
        let refunds = refunds.clone();
        let r = match i % 3 {
            0 => request(
                "o-1",
                &format!("k-{i}"),
                &[("A", 1, "10.00 EUR")],
                "0.00 EUR",
            ),
            1 => request(
                "o-1",
                &format!("k-{i}"),
                &[("B", 1, "10.00 EUR")],
                "0.00 EUR",
            ),
            _ => request("o-1", &format!("k-{i}"), &[], "1.00 EUR"),
        };
        async move { (i % 3, refunds.record(&r).await) }
    })
    .await;
    let mut won = [0usize; 3];
    let mut completed = 0;
    for (kind, outcome) in &outcomes {
        match outcome {
            Ok(o) => {
                assert!(o.created, "distinct keys are all new");
                won[*kind] += 1;
                completed += usize::from(o.completes_order);
            }
            Err(Error::Validation { .. }) => {}
            Err(e) => panic!("a refund that does not fit must be Validation, got {e:?}"),
        }
    }
    assert_eq!(
        won,
        [5, 3, 5],
        "exactly what was paid is refunded, never more"
    );
    assert_eq!(completed, 1, "exactly one refund completes the order");
    let b = balance(&ctx, "o-1")
        .await
        .unwrap_or_else(|| panic!("opened"));
    assert_eq!(b.total_refunded, b.total_paid);
    assert_eq!(
        (b.lines[0].refunded_units, b.lines[1].refunded_units),
        (5, 3)
    );
    assert_eq!(b.shipping_refunded, money("5.00 EUR"));
    assert_eq!(keys(&ctx, "o-1").await.len(), 13, "one refund per success");
}

async fn concurrent_replays_of_one_key_record_once(env: Env<'_>) {
    let ctx = env.ctx().await;
    let p = paid("o-1");
    open(&ctx, &p).await;
    let refunds = ctx.refunds();
    let r = request("o-1", "once", &[("A", 2, "20.00 EUR")], "1.00 EUR");
    let outcomes = concurrently(24, |_| {
        let (refunds, r) = (refunds.clone(), r.clone());
        async move { refunds.record(&r).await }
    })
    .await;
    let mut created = 0;
    for o in outcomes {
        let o = must!(o, "a replay of one key");
        assert_eq!(o.refund.request, r);
        created += usize::from(o.created);
    }
    assert_eq!(created, 1, "exactly one call records the refund");
    assert_eq!(balance(&ctx, "o-1").await, Some(expected(&p, &[&r])));
    assert_eq!(keys(&ctx, "o-1").await, ["once"]);
}

async fn concurrent_opens_register_once(env: Env<'_>) {
    let ctx = env.ctx().await;
    let p = paid("o-1");
    let refunds = ctx.refunds();
    let outcomes = concurrently(16, |_| {
        let (refunds, p) = (refunds.clone(), p.clone());
        async move { refunds.open(&p).await }
    })
    .await;
    for b in outcomes {
        assert_eq!(
            must!(b, "one of 16 concurrent opens"),
            expected(&p, &[]),
            "every concurrent open returns the same fresh balance"
        );
    }
    assert_eq!(
        must!(ctx.refunds().paid(&oid("o-1")).await, "paid"),
        Some(p.clone())
    );
    // The lines were registered once: refunding every unit still fits exactly.
    let all = request(
        "o-1",
        "all",
        &[("A", 5, "50.00 EUR"), ("B", 3, "30.00 EUR")],
        "5.00 EUR",
    );
    assert!(record(&ctx, &all).await.completes_order);
}

async fn quoted_returns_give_back_exactly_what_was_paid(env: Env<'_>) {
    let ctx = env.ctx().await;
    let p = paid("o-1");
    open(&ctx, &p).await;
    let steps: [&[(&str, u32)]; 4] = [&[("A", 2)], &[("B", 1)], &[("A", 3), ("B", 1)], &[("B", 1)]];
    let mut last = None;
    for (n, units) in steps.iter().enumerate() {
        let b = balance(&ctx, "o-1")
            .await
            .unwrap_or_else(|| panic!("opened"));
        let units: Vec<_> = units.iter().map(|(s, u)| (sku(s), *u)).collect();
        let quote = must!(
            quote_refund(&p, &b, &units, ShippingRefundPolicy::Proportional),
            "quote step {n}"
        );
        let r = quote.into_request(oid("o-1"), key(&format!("q-{n}")), "returned");
        last = Some(record(&ctx, &r).await);
    }
    let b = balance(&ctx, "o-1")
        .await
        .unwrap_or_else(|| panic!("opened"));
    assert_eq!(
        b.total_refunded,
        money("85.00 EUR"),
        "every cent, shipping included"
    );
    assert!(b.all_units_returned());
    assert!(last.is_some_and(|o| o.completes_order));
}
