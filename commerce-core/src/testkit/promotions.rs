//! The [`PromotionStore`](crate::store::PromotionStore) suite.
//!
//! Checks: promotions round-trip, are immutable (`Conflict { Promotion }` for another
//! definition under the same id) and invalid ones (bad percentages, amounts in another
//! currency, discounts larger than the orders they apply to, ended windows) write
//! nothing; code batches are all or nothing (`Conflict { Coupon }` when any code exists,
//! also for overlapping batches), and lookups classify hostile, unknown and known codes;
//! `reserve` validates before writing (discounts larger than the order, currencies,
//! codes, customers, windows), is idempotent per order, holds total uses, the budget,
//! single-use codes and per-customer uses in the documented order, and gives them back
//! on `release` and expiry; `confirm`/`release`/`extend` transitions and their
//! idempotency; `release_expired` at the boundary, with a limit, and exactly once with
//! concurrent reapers.
//!
//! Concurrency: hundreds of tasks race to reserve and confirm one shared code limited to
//! 100 uses (then one limited by its budget): exactly the limit is confirmed, never more.
//!
//! Model-based: random histories of reserve / confirm / release / extend /
//! `release_expired` / clock moves over three promotions (a shared code with total uses
//! and a budget, an automatic promotion limited per customer, single-use codes with a
//! budget) run against a fresh store and a small model written from the contract; every
//! outcome and every promotion's usage must match after every step. A failure panics
//! with the seed (`COMMERCE_TESTKIT_SEED` replays it) and the shrunk history.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use proptest::prelude::*;
use rust_decimal::Decimal;

use super::builder::{Area, StoreBuilder};
use super::check::{assert_err, concurrently, must};
use super::fixtures::{cust, money, oid, promotion_id};
use super::model::search;
use super::runner::{Case, Ctx, Env, Settings, cases, run_one_area};
use crate::clock::{self, Timestamp};
use crate::error::{EntityKind, Error, Result};
use crate::id::{OrderId, PromotionId};
use crate::money::{Currency, Money};
use crate::promotion::{
    Action, CodeBatch, CodeLookup, Condition, CouponCode, Limits, Promotion, PromotionUsage,
    Redemption, RedemptionLine, RedemptionRequest, RedemptionState, Target, Unavailable,
};

/// Runs every promotion case (including the concurrent and model-based tests) against
/// `builder`'s stores; panics listing the failed cases.
pub async fn test_all<B: StoreBuilder>(builder: &B) {
    test_all_with(builder, &Settings::from_env()).await;
}

/// [`test_all`] with explicit [`Settings`].
pub async fn test_all_with<B: StoreBuilder>(builder: &B, settings: &Settings) {
    run_one_area(builder, settings, Area::Promotions, cases()).await;
}

pub(crate) fn cases() -> Vec<Case> {
    cases![
        promotions_round_trip_and_are_immutable,
        invalid_promotions_write_nothing,
        automatic_offers_are_the_active_automatic_promotions,
        code_batches_are_all_or_nothing,
        lookups_classify_hostile_unknown_and_known_codes,
        reserve_holds_and_counts,
        invalid_reserves_write_nothing,
        reserve_is_idempotent_per_order,
        total_uses_and_budget_hold_and_come_back,
        single_use_codes_and_customer_limits_hold,
        confirm_and_release_transitions,
        extend_moves_the_expiry_of_active_redemptions,
        release_expired_releases_exactly_the_due_redemptions,
        concurrent_reapers_release_each_redemption_once,
        a_rush_on_a_100_use_code_confirms_exactly_100,
        a_rush_on_a_budget_never_exceeds_it,
        sequential_histories_match_the_model,
    ]
}

fn code(s: &str) -> CouponCode {
    CouponCode::parse(s).unwrap_or_else(|e| panic!("test code {s:?}: {e}"))
}

fn amount_off(id: &str, amount: &str) -> Promotion {
    Promotion::new(
        promotion_id(id),
        format!("{amount} off"),
        Currency::USD,
        Action::AmountOff {
            amount: money(amount),
            target: Target::Order,
        },
    )
}

fn limits(total: Option<u64>, per_customer: Option<u32>, budget: Option<&str>) -> Limits {
    Limits {
        total_uses: total,
        uses_per_customer: per_customer,
        budget: budget.map(money),
    }
}

async fn create(ctx: &Ctx, p: &Promotion) -> Promotion {
    must!(
        ctx.promotions().create_promotion(p).await,
        "create_promotion({})",
        p.id
    )
}

/// A code promotion `id` with the shared code `code_text` and `limits`.
async fn coded(ctx: &Ctx, id: &str, code_text: &str, l: Limits) -> Promotion {
    let p = create(ctx, &amount_off(id, "5.00 USD").with_code().with_limits(l)).await;
    must!(
        ctx.promotions()
            .add_codes(&p.id, &CodeBatch::shared(code(code_text)))
            .await,
        "add_codes({id}, {code_text})"
    );
    p
}

fn line(promotion: &str, code_text: Option<&str>, amount: &str) -> RedemptionLine {
    RedemptionLine {
        promotion_id: promotion_id(promotion),
        code: code_text.map(code),
        amount: money(amount),
    }
}

fn request(order: &str, customer: Option<&str>, lines: Vec<RedemptionLine>) -> RedemptionRequest {
    RedemptionRequest::new(oid(order), customer.map(cust), money("100.00 USD"), lines)
}

async fn usage(ctx: &Ctx, id: &str) -> PromotionUsage {
    must!(
        ctx.promotions().usage(&promotion_id(id)).await,
        "usage({id})"
    )
}

fn assert_usage(u: &PromotionUsage, uses: u64, confirmed: u64, spent: &str, what: &str) {
    assert!(
        u.uses == uses && u.confirmed_uses == confirmed && u.spent == money(spent),
        "{what}: expected {uses} uses ({confirmed} confirmed) holding {spent}, got {u:?}"
    );
}

fn is_unavailable(e: &Error, reason: Unavailable) -> bool {
    matches!(e, Error::PromotionUnavailable { reason: r, .. } if *r == reason)
}

async fn promotions_round_trip_and_are_immutable(env: Env<'_>) {
    let ctx = env.ctx().await;
    let store = ctx.promotions();
    let p = amount_off("p1", "5.00 USD")
        .with_condition(Condition::MinSubtotal {
            amount: money("20.00 USD"),
        })
        .with_window(Some(ctx.now()), None)
        .with_limits(limits(Some(10), Some(1), Some("50.00 USD")))
        .exclusive()
        .with_priority(3);
    let created = create(&ctx, &p).await;
    assert_eq!(created, p, "create_promotion returns the promotion");
    let read = must!(store.promotion(&p.id).await, "promotion(p1)");
    assert_eq!(read.as_ref(), Some(&p), "promotion(p1) after create");
    let again = must!(
        store.create_promotion(&p).await,
        "create the same promotion again"
    );
    assert_eq!(again, p, "creating an identical promotion is idempotent");
    let mut other = p.clone();
    other.priority = 4;
    assert_err!(
        store.create_promotion(&other).await,
        Error::Conflict {
            kind: EntityKind::Promotion,
            ..
        },
        "another definition under the same id"
    );
    let read = must!(store.promotion(&p.id).await, "promotion(p1)");
    assert_eq!(
        read.as_ref(),
        Some(&p),
        "the conflicting create changed nothing"
    );
    assert_eq!(
        must!(
            store.promotion(&promotion_id("nope")).await,
            "promotion(nope)"
        ),
        None
    );
    assert_usage(
        &usage(&ctx, "p1").await,
        0,
        0,
        "0.00 USD",
        "a new promotion",
    );
    assert_err!(
        store.usage(&promotion_id("nope")).await,
        Error::NotFound {
            kind: EntityKind::Promotion,
            ..
        },
        "usage of an unknown promotion"
    );
}

async fn invalid_promotions_write_nothing(env: Env<'_>) {
    let ctx = env.ctx().await;
    let store = ctx.promotions();
    let now = ctx.now();
    let pct = |id: &str, p: i64| {
        Promotion::new(
            promotion_id(id),
            "pct",
            Currency::USD,
            Action::PercentOff {
                percent: Decimal::from(p),
                target: Target::Order,
            },
        )
    };
    let bad = [
        pct("negative", -10),
        pct("over", 150),
        amount_off("euro", "5.00 EUR"),
        amount_off("big", "50.00 USD").with_condition(Condition::MinSubtotal {
            amount: money("20.00 USD"),
        }),
        amount_off("ended", "1.00 USD").with_window(None, Some(now)),
        amount_off("window", "1.00 USD").with_window(Some(now), Some(now)),
        amount_off("budget", "1.00 USD").with_limits(limits(None, None, Some("-1.00 USD"))),
        amount_off("budget-eur", "1.00 USD").with_limits(limits(None, None, Some("1.00 EUR"))),
        amount_off("zero-uses", "1.00 USD").with_limits(limits(Some(0), None, None)),
    ];
    for p in &bad {
        match store.create_promotion(p).await {
            Err(Error::Validation { .. } | Error::CurrencyMismatch { .. }) => {}
            other => panic!(
                "create_promotion({}): expected Validation, got {other:?}",
                p.id
            ),
        }
        let read = must!(store.promotion(&p.id).await, "promotion({})", p.id);
        assert!(read.is_none(), "the invalid promotion {} was stored", p.id);
    }
}

async fn automatic_offers_are_the_active_automatic_promotions(env: Env<'_>) {
    let ctx = env.ctx().await;
    let store = ctx.promotions();
    let now = ctx.now();
    let hour = chrono::Duration::hours(1);
    create(
        &ctx,
        &amount_off("a-now", "1.00 USD").with_limits(limits(Some(1), None, None)),
    )
    .await;
    create(
        &ctx,
        &amount_off("b-later", "1.00 USD").with_window(Some(now + hour), None),
    )
    .await;
    create(
        &ctx,
        &amount_off("c-ending", "1.00 USD").with_window(None, Some(now + hour)),
    )
    .await;
    create(&ctx, &amount_off("d-code", "1.00 USD").with_code()).await;
    let ids = |offers: &[crate::promotion::Offer]| -> Vec<String> {
        offers.iter().map(|o| o.promotion.id.to_string()).collect()
    };
    let offers = must!(store.automatic_offers(now).await, "automatic_offers(now)");
    assert_eq!(ids(&offers), ["a-now", "c-ending"], "offers at now");
    assert!(
        offers.iter().all(|o| !o.exhausted),
        "nothing used yet: {offers:?}"
    );
    let later = must!(
        store.automatic_offers(now + hour * 2).await,
        "automatic_offers(now + 2h)"
    );
    assert_eq!(ids(&later), ["a-now", "b-later"], "offers in two hours");
    must!(
        store
            .reserve(&request("o-1", None, vec![line("a-now", None, "1.00 USD")]))
            .await,
        "reserve the single use of a-now"
    );
    let offers = must!(store.automatic_offers(now).await, "automatic_offers(now)");
    assert!(
        offers[0].exhausted && !offers[1].exhausted,
        "a-now is used up, c-ending is not: {offers:?}"
    );
}

async fn code_batches_are_all_or_nothing(env: Env<'_>) {
    let ctx = env.ctx().await;
    let store = ctx.promotions();
    let p = create(&ctx, &amount_off("p", "1.00 USD").with_code()).await;
    let q = create(&ctx, &amount_off("q", "1.00 USD").with_code()).await;
    let auto = create(&ctx, &amount_off("auto", "1.00 USD")).await;
    let first = CodeBatch::single_use(vec![code("AAA-1"), code("AAA-2"), code("AAA-3")])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(must!(store.add_codes(&p.id, &first).await, "add_codes"), 3);
    // Overlapping batch, on another promotion: nothing of it is added.
    let overlap = CodeBatch::single_use(vec![code("BBB-1"), code("AAA-3"), code("BBB-2")])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_err!(
        store.add_codes(&q.id, &overlap).await,
        Error::Conflict {
            kind: EntityKind::Coupon,
            ..
        },
        "a batch overlapping an existing code"
    );
    let looked = must!(
        store
            .lookup_codes(&["BBB-1".into(), "BBB-2".into(), "AAA-3".into()])
            .await,
        "lookup_codes"
    );
    assert!(
        matches!(&looked[0], CodeLookup::Unknown { .. })
            && matches!(&looked[1], CodeLookup::Unknown { .. })
            && matches!(&looked[2], CodeLookup::Found { promotion, .. } if promotion.id == p.id),
        "the refused batch added nothing and AAA-3 still belongs to p: {looked:?}"
    );
    assert_err!(
        store
            .add_codes(&auto.id, &CodeBatch::shared(code("AUTO")))
            .await,
        Error::Validation { .. },
        "codes on an automatic promotion"
    );
    assert_err!(
        store
            .add_codes(
                &promotion_id("missing"),
                &CodeBatch::shared(code("MISSING"))
            )
            .await,
        Error::NotFound {
            kind: EntityKind::Promotion,
            ..
        },
        "codes on an unknown promotion"
    );
    let dup = CodeBatch {
        codes: vec![code("DUP-1"), code("DUP-1")],
        single_use: true,
    };
    assert_err!(
        store.add_codes(&p.id, &dup).await,
        Error::Validation { .. },
        "a batch repeating a code"
    );
    // Two overlapping batches racing: exactly one wins.
    let a = CodeBatch::single_use((0..50).map(|i| code(&format!("RACE-{i}"))).collect())
        .unwrap_or_else(|e| panic!("{e}"));
    let b = CodeBatch::single_use((40..90).map(|i| code(&format!("RACE-{i}"))).collect())
        .unwrap_or_else(|e| panic!("{e}"));
    let batches = [a, b];
    let outcomes = concurrently(2, |i| {
        let store = store.clone();
        let batch = batches[i].clone();
        let id = if i == 0 { p.id.clone() } else { q.id.clone() };
        async move { store.add_codes(&id, &batch).await }
    })
    .await;
    let won = outcomes.iter().filter(|o| o.is_ok()).count();
    assert!(
        won == 1
            && outcomes
                .iter()
                .all(|o| o.is_ok() || o.as_ref().is_err_and(Error::is_conflict)),
        "two overlapping batches at once: exactly one is added, got {outcomes:?}"
    );
    let texts: Vec<String> = (0..90).map(|i| format!("RACE-{i}")).collect();
    let mut known = 0;
    for chunk in texts.chunks(20) {
        let looked = must!(store.lookup_codes(chunk).await, "lookup_codes");
        known += looked
            .iter()
            .filter(|l| matches!(l, CodeLookup::Found { .. }))
            .count();
    }
    assert_eq!(known, 50, "exactly the winning batch's 50 codes exist");
}

async fn lookups_classify_hostile_unknown_and_known_codes(env: Env<'_>) {
    let ctx = env.ctx().await;
    let store = ctx.promotions();
    coded(&ctx, "p", "SAVE-10", Limits::default()).await;
    let hostile = format!("x' OR '1'='1{}", "A".repeat(200));
    let texts = vec![
        " save-10 ".to_owned(),
        "NOPE".to_owned(),
        hostile.clone(),
        "SAVE\u{0}10".to_owned(),
        "<script>".to_owned(),
    ];
    let looked = must!(store.lookup_codes(&texts).await, "lookup_codes");
    assert_eq!(looked.len(), 5, "one answer per code");
    assert!(
        matches!(&looked[0], CodeLookup::Found { code, promotion, exhausted: false }
            if code.as_str() == "SAVE-10" && promotion.id.as_str() == "p"),
        "a known code typed in lower case with spaces: {:?}",
        looked[0]
    );
    assert!(
        matches!(&looked[1], CodeLookup::Unknown { .. }),
        "{:?}",
        looked[1]
    );
    for l in &looked[2..] {
        match l {
            CodeLookup::Malformed { given } => assert!(given.chars().count() <= 64),
            other => panic!("a hostile code must be Malformed, got {other:?}"),
        }
    }
    let many: Vec<String> = (0..21).map(|i| format!("C-{i}")).collect();
    assert_err!(
        store.lookup_codes(&many).await,
        Error::Validation { .. },
        "21 codes in one lookup"
    );
}

async fn reserve_holds_and_counts(env: Env<'_>) {
    let ctx = env.ctx().await;
    let store = ctx.promotions();
    coded(&ctx, "p", "SAVE", Limits::default()).await;
    create(&ctx, &amount_off("auto", "1.00 USD")).await;
    let mut req = request(
        "o-1",
        Some("c-1"),
        vec![
            line("p", Some("save"), "5.00 USD"),
            line("auto", None, "1.00 USD"),
        ],
    );
    req.ttl = Duration::from_secs(600);
    let r = must!(store.reserve(&req).await, "reserve(o-1)");
    assert_eq!(r.state, RedemptionState::Active);
    assert_eq!(
        r.expires_at,
        clock::add(ctx.now(), Duration::from_secs(600))
    );
    let ids: Vec<&str> = r.lines.iter().map(|l| l.promotion_id.as_str()).collect();
    assert_eq!(ids, ["auto", "p"], "lines are sorted by promotion id");
    assert_eq!(r.customer_id, Some(cust("c-1")));
    let read = must!(store.redemption(&oid("o-1")).await, "redemption(o-1)");
    assert_eq!(
        read.as_ref(),
        Some(&r),
        "redemption(o-1) reads what reserve returned"
    );
    assert_usage(&usage(&ctx, "p").await, 1, 0, "5.00 USD", "p after o-1");
    assert_usage(
        &usage(&ctx, "auto").await,
        1,
        0,
        "1.00 USD",
        "auto after o-1",
    );
    assert_eq!(
        must!(store.redemption(&oid("o-x")).await, "redemption(o-x)"),
        None
    );
}

async fn invalid_reserves_write_nothing(env: Env<'_>) {
    let ctx = env.ctx().await;
    let store = ctx.promotions();
    coded(&ctx, "p", "SAVE", limits(None, Some(1), None)).await;
    coded(&ctx, "q", "OTHER", Limits::default()).await;
    let hour = chrono::Duration::hours(1);
    create(
        &ctx,
        &amount_off("later", "1.00 USD").with_window(Some(ctx.now() + hour), None),
    )
    .await;
    let c = Some("c-1");
    let mut too_big = request("o-1", c, vec![line("p", Some("SAVE"), "5.00 USD")]);
    too_big.order_total = money("4.99 USD");
    let mut zero_ttl = request("o-1", c, vec![line("p", Some("SAVE"), "5.00 USD")]);
    zero_ttl.ttl = Duration::ZERO;
    type Expect = fn(&Error) -> bool;
    let cases: Vec<(&str, RedemptionRequest, Expect)> = vec![
        ("a discount larger than the order", too_big, |e| {
            matches!(e, Error::Validation { .. })
        }),
        ("a zero TTL", zero_ttl, |e| {
            matches!(e, Error::Validation { .. })
        }),
        ("no lines", request("o-1", c, vec![]), |e| {
            matches!(e, Error::Validation { .. })
        }),
        (
            "a negative amount",
            request("o-1", c, vec![line("p", Some("SAVE"), "-1.00 USD")]),
            |e| matches!(e, Error::Validation { .. }),
        ),
        (
            "an amount in another currency",
            request("o-1", c, vec![line("p", Some("SAVE"), "1.00 EUR")]),
            |e| matches!(e, Error::CurrencyMismatch { .. }),
        ),
        (
            "a promotion twice",
            request(
                "o-1",
                c,
                vec![
                    line("p", Some("SAVE"), "1.00 USD"),
                    line("p", Some("SAVE"), "1.00 USD"),
                ],
            ),
            |e| matches!(e, Error::Validation { .. }),
        ),
        (
            "an unknown promotion",
            request("o-1", c, vec![line("nope", None, "1.00 USD")]),
            |e| {
                matches!(
                    e,
                    Error::NotFound {
                        kind: EntityKind::Promotion,
                        ..
                    }
                )
            },
        ),
        (
            "a code promotion without its code",
            request("o-1", c, vec![line("p", None, "1.00 USD")]),
            |e| matches!(e, Error::Validation { .. }),
        ),
        (
            "another promotion's code",
            request("o-1", c, vec![line("p", Some("OTHER"), "1.00 USD")]),
            |e| {
                matches!(
                    e,
                    Error::NotFound {
                        kind: EntityKind::Coupon,
                        ..
                    }
                )
            },
        ),
        (
            "a per-customer limit without a customer",
            request("o-1", None, vec![line("p", Some("SAVE"), "1.00 USD")]),
            |e| matches!(e, Error::Validation { .. }),
        ),
        (
            "a promotion whose window has not started",
            request(
                "o-1",
                c,
                vec![
                    line("q", Some("OTHER"), "1.00 USD"),
                    line("later", None, "1.00 USD"),
                ],
            ),
            |e| is_unavailable(e, Unavailable::NotActive),
        ),
    ];
    for (what, req, expected) in cases {
        match store.reserve(&req).await {
            Err(e) if expected(&e) => {}
            other => panic!("reserve with {what}: unexpected outcome {other:?}"),
        }
        assert_eq!(
            must!(store.redemption(&oid("o-1")).await, "redemption(o-1)"),
            None,
            "reserve with {what} wrote a redemption"
        );
    }
    assert_usage(
        &usage(&ctx, "p").await,
        0,
        0,
        "0.00 USD",
        "p after refused reserves",
    );
    assert_usage(
        &usage(&ctx, "q").await,
        0,
        0,
        "0.00 USD",
        "q after refused reserves",
    );
    // The customer's single use is still free.
    must!(
        store
            .reserve(&request(
                "o-1",
                c,
                vec![line("p", Some("SAVE"), "5.00 USD")]
            ))
            .await,
        "a valid reserve after the refused ones"
    );
}

async fn reserve_is_idempotent_per_order(env: Env<'_>) {
    let ctx = env.ctx().await;
    let store = ctx.promotions();
    coded(&ctx, "p", "SAVE", limits(Some(5), None, None)).await;
    let req = request(
        "o-1",
        Some("c-1"),
        vec![line("p", Some("SAVE"), "5.00 USD")],
    );
    let first = must!(store.reserve(&req).await, "reserve(o-1)");
    ctx.advance(Duration::from_secs(30));
    let again = must!(store.reserve(&req).await, "reserve(o-1) again");
    assert_eq!(
        again, first,
        "a repeated reserve returns the redemption unchanged"
    );
    let other = request(
        "o-1",
        Some("c-1"),
        vec![line("p", Some("SAVE"), "4.00 USD")],
    );
    assert_err!(
        store.reserve(&other).await,
        Error::Conflict {
            kind: EntityKind::Redemption,
            ..
        },
        "the same order with other amounts"
    );
    assert_usage(&usage(&ctx, "p").await, 1, 0, "5.00 USD", "after repeats");
    // Concurrent repeats of one new order hold once.
    let req2 = request("o-2", None, vec![line("p", Some("SAVE"), "5.00 USD")]);
    let outcomes = concurrently(8, |_| {
        let store = store.clone();
        let req2 = req2.clone();
        async move { store.reserve(&req2).await }
    })
    .await;
    assert!(outcomes.iter().all(|o| o.is_ok()), "{outcomes:?}");
    assert_usage(
        &usage(&ctx, "p").await,
        2,
        0,
        "10.00 USD",
        "after concurrent repeats",
    );
    // Released stays released for the same request.
    must!(
        store.release(&oid("o-2"), "cancelled").await,
        "release(o-2)"
    );
    let r = must!(store.reserve(&req2).await, "reserve(o-2) after release");
    assert_eq!(r.state, RedemptionState::Released);
    assert_usage(
        &usage(&ctx, "p").await,
        1,
        0,
        "5.00 USD",
        "after release and repeat",
    );
}

async fn total_uses_and_budget_hold_and_come_back(env: Env<'_>) {
    let ctx = env.ctx().await;
    let store = ctx.promotions();
    coded(&ctx, "uses", "USES", limits(Some(2), None, None)).await;
    coded(
        &ctx,
        "money",
        "MONEY",
        limits(None, None, Some("10.00 USD")),
    )
    .await;
    let r = |o: &str, l: RedemptionLine| request(o, None, vec![l]);
    for o in ["u-1", "u-2"] {
        must!(
            store
                .reserve(&r(o, line("uses", Some("USES"), "1.00 USD")))
                .await,
            "reserve {o}"
        );
    }
    let e = assert_err!(
        store
            .reserve(&r("u-3", line("uses", Some("USES"), "1.00 USD")))
            .await,
        Error::PromotionUnavailable { .. },
        "a third use of a 2-use promotion"
    );
    assert!(is_unavailable(&e, Unavailable::TotalUses), "{e:?}");
    must!(
        store.release(&oid("u-1"), "payment failed").await,
        "release(u-1)"
    );
    must!(
        store
            .reserve(&r("u-3", line("uses", Some("USES"), "1.00 USD")))
            .await,
        "a released use can be taken again"
    );
    assert_usage(&usage(&ctx, "uses").await, 2, 0, "2.00 USD", "uses");

    must!(
        store
            .reserve(&r("m-1", line("money", Some("MONEY"), "6.00 USD")))
            .await,
        "m-1"
    );
    let e = assert_err!(
        store
            .reserve(&r("m-2", line("money", Some("MONEY"), "4.01 USD")))
            .await,
        Error::PromotionUnavailable { .. },
        "over the budget by a cent"
    );
    assert!(is_unavailable(&e, Unavailable::Budget), "{e:?}");
    must!(
        store
            .reserve(&r("m-2", line("money", Some("MONEY"), "4.00 USD")))
            .await,
        "exactly the rest of the budget"
    );
    assert_usage(
        &usage(&ctx, "money").await,
        2,
        0,
        "10.00 USD",
        "budget spent",
    );
    // All or nothing across promotions: the budget refuses, so no use is taken either.
    must!(
        store.release(&oid("u-2"), "cancelled").await,
        "release(u-2)"
    );
    let both = request(
        "both",
        None,
        vec![
            line("uses", Some("USES"), "1.00 USD"),
            line("money", Some("MONEY"), "0.01 USD"),
        ],
    );
    let e = assert_err!(
        store.reserve(&both).await,
        Error::PromotionUnavailable { .. },
        "two promotions, the second over budget"
    );
    assert!(is_unavailable(&e, Unavailable::Budget), "{e:?}");
    assert_usage(
        &usage(&ctx, "uses").await,
        1,
        0,
        "1.00 USD",
        "nothing taken",
    );
}

async fn single_use_codes_and_customer_limits_hold(env: Env<'_>) {
    let ctx = env.ctx().await;
    let store = ctx.promotions();
    let p = create(&ctx, &amount_off("batch", "5.00 USD").with_code()).await;
    let batch =
        CodeBatch::single_use(vec![code("ONE-1"), code("ONE-2")]).unwrap_or_else(|e| panic!("{e}"));
    must!(store.add_codes(&p.id, &batch).await, "add_codes");
    must!(
        store
            .reserve(&request(
                "o-1",
                None,
                vec![line("batch", Some("ONE-1"), "5.00 USD")]
            ))
            .await,
        "o-1 takes ONE-1"
    );
    let e = assert_err!(
        store
            .reserve(&request(
                "o-2",
                None,
                vec![line("batch", Some("ONE-1"), "5.00 USD")]
            ))
            .await,
        Error::PromotionUnavailable { .. },
        "ONE-1 again"
    );
    assert!(is_unavailable(&e, Unavailable::CodeUsed), "{e:?}");
    let looked = must!(
        store.lookup_codes(&["ONE-1".into(), "ONE-2".into()]).await,
        "lookup"
    );
    assert!(
        matches!(
            looked[0],
            CodeLookup::Found {
                exhausted: true,
                ..
            }
        ) && matches!(
            looked[1],
            CodeLookup::Found {
                exhausted: false,
                ..
            }
        ),
        "{looked:?}"
    );
    must!(
        store
            .reserve(&request(
                "o-2",
                None,
                vec![line("batch", Some("ONE-2"), "5.00 USD")]
            ))
            .await,
        "o-2 takes ONE-2"
    );
    must!(
        store.release(&oid("o-1"), "cancelled").await,
        "release(o-1)"
    );
    must!(
        store
            .reserve(&request(
                "o-3",
                None,
                vec![line("batch", Some("ONE-1"), "5.00 USD")]
            ))
            .await,
        "ONE-1 is free again after o-1 was released"
    );

    coded(&ctx, "welcome", "WELCOME", limits(None, Some(1), None)).await;
    let w = |o: &str, c: &str| {
        request(
            o,
            Some(c),
            vec![line("welcome", Some("WELCOME"), "5.00 USD")],
        )
    };
    must!(store.reserve(&w("w-1", "alice")).await, "alice's first use");
    must!(store.reserve(&w("w-2", "bob")).await, "bob's first use");
    let e = assert_err!(
        store.reserve(&w("w-3", "alice")).await,
        Error::PromotionUnavailable { .. },
        "alice's second use"
    );
    assert!(is_unavailable(&e, Unavailable::CustomerUses), "{e:?}");
    must!(
        store.release(&oid("w-1"), "cancelled").await,
        "release(w-1)"
    );
    must!(
        store.reserve(&w("w-3", "alice")).await,
        "alice again after her release"
    );
}

async fn confirm_and_release_transitions(env: Env<'_>) {
    let ctx = env.ctx().await;
    let store = ctx.promotions();
    coded(&ctx, "p", "SAVE", Limits::default()).await;
    let r = |o: &str| request(o, None, vec![line("p", Some("SAVE"), "5.00 USD")]);
    must!(store.reserve(&r("o-1")).await, "reserve(o-1)");
    must!(store.reserve(&r("o-2")).await, "reserve(o-2)");
    let c = must!(store.confirm(&oid("o-1")).await, "confirm(o-1)");
    assert_eq!(c.state, RedemptionState::Confirmed);
    let again = must!(store.confirm(&oid("o-1")).await, "confirm(o-1) again");
    assert_eq!(again, c, "confirm is idempotent");
    assert_err!(
        store.release(&oid("o-1"), "x").await,
        Error::InvalidTransition {
            entity: EntityKind::Redemption,
            ..
        },
        "release of a confirmed redemption"
    );
    let rel = must!(
        store.release(&oid("o-2"), "payment failed").await,
        "release(o-2)"
    );
    assert_eq!(rel.state, RedemptionState::Released);
    assert_eq!(rel.reason.as_deref(), Some("payment failed"));
    let again = must!(
        store.release(&oid("o-2"), "again").await,
        "release(o-2) again"
    );
    assert_eq!(
        again, rel,
        "release is idempotent and keeps the first reason"
    );
    assert_err!(
        store.confirm(&oid("o-2")).await,
        Error::InvalidTransition {
            entity: EntityKind::Redemption,
            ..
        },
        "confirm of a released redemption"
    );
    for (what, result) in [
        ("confirm", store.confirm(&oid("nope")).await),
        ("release", store.release(&oid("nope"), "x").await),
    ] {
        assert_err!(
            result,
            Error::NotFound {
                kind: EntityKind::Redemption,
                ..
            },
            "{what} of an unknown order"
        );
    }
    assert_err!(
        store.release(&oid("o-1"), &"x".repeat(501)).await,
        Error::Validation { .. },
        "a 501-character reason"
    );
    assert_usage(
        &usage(&ctx, "p").await,
        1,
        1,
        "5.00 USD",
        "one confirmed, one released",
    );
    // A confirmed redemption is not reaped.
    ctx.advance(Duration::from_secs(3600));
    let reaped = must!(
        store.release_expired(ctx.now(), 100).await,
        "release_expired"
    );
    assert!(reaped.is_empty(), "reaped {reaped:?}");
    // An expired but unreaped redemption may still be confirmed.
    must!(store.reserve(&r("o-3")).await, "reserve(o-3)");
    ctx.advance(Duration::from_secs(3600));
    let c = must!(
        store.confirm(&oid("o-3")).await,
        "confirm(o-3) after its expiry"
    );
    assert_eq!(c.state, RedemptionState::Confirmed);
    assert_usage(&usage(&ctx, "p").await, 2, 2, "10.00 USD", "two confirmed");
}

async fn extend_moves_the_expiry_of_active_redemptions(env: Env<'_>) {
    let ctx = env.ctx().await;
    let store = ctx.promotions();
    coded(&ctx, "p", "SAVE", Limits::default()).await;
    let mut req = request("o-1", None, vec![line("p", Some("SAVE"), "5.00 USD")]);
    req.ttl = Duration::from_secs(60);
    must!(store.reserve(&req).await, "reserve(o-1)");
    ctx.advance(Duration::from_secs(50));
    let r = must!(
        store.extend(&oid("o-1"), Duration::from_secs(300)).await,
        "extend(o-1)"
    );
    assert_eq!(
        r.expires_at,
        clock::add(ctx.now(), Duration::from_secs(300))
    );
    ctx.advance(Duration::from_secs(100));
    let reaped = must!(
        store.release_expired(ctx.now(), 10).await,
        "release_expired"
    );
    assert!(
        reaped.is_empty(),
        "the extended redemption was reaped: {reaped:?}"
    );
    ctx.advance(Duration::from_secs(200));
    assert_err!(
        store.extend(&oid("o-1"), Duration::from_secs(60)).await,
        Error::InvalidTransition {
            entity: EntityKind::Redemption,
            ..
        },
        "extend after the expiry"
    );
    assert_err!(
        store.extend(&oid("o-1"), Duration::ZERO).await,
        Error::Validation { .. },
        "a zero TTL"
    );
    assert_err!(
        store.extend(&oid("nope"), Duration::from_secs(60)).await,
        Error::NotFound {
            kind: EntityKind::Redemption,
            ..
        },
        "extend of an unknown order"
    );
    must!(
        store.release(&oid("o-1"), "cancelled").await,
        "release(o-1)"
    );
    assert_err!(
        store.extend(&oid("o-1"), Duration::from_secs(60)).await,
        Error::InvalidTransition {
            entity: EntityKind::Redemption,
            ..
        },
        "extend of a released redemption"
    );
}

async fn release_expired_releases_exactly_the_due_redemptions(env: Env<'_>) {
    let ctx = env.ctx().await;
    let store = ctx.promotions();
    coded(
        &ctx,
        "p",
        "SAVE",
        limits(Some(100), None, Some("100.00 USD")),
    )
    .await;
    for i in 0..5u64 {
        let mut req = request(
            &format!("o-{i}"),
            None,
            vec![line("p", Some("SAVE"), "1.00 USD")],
        );
        req.ttl = Duration::from_secs(60 * (i + 1));
        must!(store.reserve(&req).await, "reserve(o-{i})");
    }
    let start = ctx.now();
    let at = |secs: u64| clock::add(start, Duration::from_secs(secs));
    let none = must!(
        store.release_expired(at(59), 10).await,
        "release_expired(59 s)"
    );
    assert!(none.is_empty(), "nothing is due at 59 s: {none:?}");
    let due = must!(
        store.release_expired(at(120), 10).await,
        "release_expired(120 s)"
    );
    let ids: BTreeSet<String> = due.iter().map(|r| r.order_id.to_string()).collect();
    assert_eq!(
        ids,
        BTreeSet::from(["o-0".to_owned(), "o-1".to_owned()]),
        "exactly the redemptions with expires_at <= now (inclusive boundary)"
    );
    assert!(
        due.iter()
            .all(|r| r.state == RedemptionState::Released && r.reason.as_deref() == Some("expired")),
        "{due:?}"
    );
    let limited = must!(
        store.release_expired(at(3600), 2).await,
        "release_expired(limit 2)"
    );
    assert_eq!(limited.len(), 2, "the limit caps a call");
    let rest = must!(
        store.release_expired(at(3600), 10).await,
        "release_expired(rest)"
    );
    assert_eq!(rest.len(), 1, "the last due redemption");
    assert_usage(&usage(&ctx, "p").await, 0, 0, "0.00 USD", "all expired");
    assert_err!(
        store.release_expired(at(3600), 0).await,
        Error::Validation { .. },
        "limit 0"
    );
}

async fn concurrent_reapers_release_each_redemption_once(env: Env<'_>) {
    let ctx = env.ctx().await;
    let store = ctx.promotions();
    coded(
        &ctx,
        "p",
        "SAVE",
        limits(Some(1000), None, Some("1000.00 USD")),
    )
    .await;
    let n = 60;
    for i in 0..n {
        let req = request(
            &format!("o-{i:03}"),
            None,
            vec![line("p", Some("SAVE"), "1.00 USD")],
        );
        must!(store.reserve(&req).await, "reserve(o-{i})");
    }
    ctx.advance(Duration::from_secs(3600));
    let now = ctx.now();
    let batches = concurrently(6, |_| {
        let store = store.clone();
        async move {
            let mut mine = Vec::new();
            for _ in 0..100 {
                let batch = store
                    .release_expired(now, 7)
                    .await
                    .expect("release_expired");
                if batch.is_empty() {
                    break;
                }
                mine.extend(batch.into_iter().map(|r| r.order_id));
            }
            mine
        }
    })
    .await;
    let all: Vec<OrderId> = batches.into_iter().flatten().collect();
    let distinct: BTreeSet<&OrderId> = all.iter().collect();
    assert_eq!(
        all.len(),
        n,
        "every expired redemption released once, got {}",
        all.len()
    );
    assert_eq!(distinct.len(), n, "no redemption released by two reapers");
    assert_usage(
        &usage(&ctx, "p").await,
        0,
        0,
        "0.00 USD",
        "after the reapers",
    );
}

/// `tasks` orders race to reserve and confirm `promotion`'s shared code; returns how
/// many were confirmed and checks every refusal was the expected limit.
async fn rush(
    ctx: &Ctx,
    promotion: &str,
    code_text: &str,
    tasks: usize,
    amount: &str,
    limit: Unavailable,
) -> u64 {
    let store = ctx.promotions();
    let outcomes = concurrently(tasks, |i| {
        let store = store.clone();
        let req = request(
            &format!("rush-{i:05}"),
            Some(&format!("c-{i}")),
            vec![line(promotion, Some(code_text), amount)],
        );
        async move {
            match store.reserve(&req).await {
                Ok(_) => store.confirm(&req.order_id).await.map(|_| true),
                Err(e) if is_unavailable(&e, limit) => Ok(false),
                Err(e) => Err(e),
            }
        }
    })
    .await;
    let mut confirmed = 0;
    for (i, o) in outcomes.into_iter().enumerate() {
        match o {
            Ok(true) => confirmed += 1,
            Ok(false) => {}
            Err(e) => panic!("rush task {i}: unexpected error {e} ({e:?})"),
        }
    }
    confirmed
}

async fn a_rush_on_a_100_use_code_confirms_exactly_100(env: Env<'_>) {
    let ctx = env.ctx().await;
    coded(&ctx, "rush", "RUSH", limits(Some(100), None, None)).await;
    let confirmed = rush(
        &ctx,
        "rush",
        "RUSH",
        400,
        "5.00 USD",
        Unavailable::TotalUses,
    )
    .await;
    assert_eq!(confirmed, 100, "400 orders raced for 100 uses");
    assert_usage(
        &usage(&ctx, "rush").await,
        100,
        100,
        "500.00 USD",
        "after the rush",
    );
}

async fn a_rush_on_a_budget_never_exceeds_it(env: Env<'_>) {
    let ctx = env.ctx().await;
    coded(
        &ctx,
        "budget",
        "BUDGET",
        limits(Some(1000), None, Some("250.00 USD")),
    )
    .await;
    let confirmed = rush(
        &ctx,
        "budget",
        "BUDGET",
        200,
        "5.00 USD",
        Unavailable::Budget,
    )
    .await;
    assert_eq!(confirmed, 50, "a 250.00 budget holds 50 discounts of 5.00");
    assert_usage(
        &usage(&ctx, "budget").await,
        50,
        50,
        "250.00 USD",
        "after the rush",
    );
}

// ---------------------------------------------------------------------------------
// The model-based test.

const ORDERS: usize = 6;

#[derive(Debug, Clone)]
enum Op {
    /// Order `order` of customer `customer` reserves the chosen promotions.
    Reserve {
        order: usize,
        customer: Option<usize>,
        shared: Option<i64>,
        automatic: Option<i64>,
        single: Option<(usize, i64)>,
        ttl_secs: u64,
    },
    Confirm(usize),
    Release(usize),
    Extend(usize, u64),
    ReleaseExpired(u32),
    Advance(u64),
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let cents = || prop::option::of(0i64..700);
    prop_oneof![
        4 => (0..ORDERS, prop::option::of(0usize..3), cents(), cents(), prop::option::of((0usize..2, 0i64..700)), 30u64..600)
            .prop_map(|(order, customer, shared, automatic, single, ttl_secs)| Op::Reserve {
                order, customer, shared, automatic, single, ttl_secs
            }),
        2 => (0..ORDERS).prop_map(Op::Confirm),
        2 => (0..ORDERS).prop_map(Op::Release),
        1 => (0..ORDERS, 30u64..600).prop_map(|(o, t)| Op::Extend(o, t)),
        1 => (1u32..4).prop_map(Op::ReleaseExpired),
        1 => (1u64..400).prop_map(Op::Advance),
    ]
}

#[derive(Clone)]
struct History(Vec<Op>);

impl fmt::Debug for History {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, op) in self.0.iter().enumerate() {
            writeln!(f, "  {i:2}: {op:?}")?;
        }
        Ok(())
    }
}

fn usd(cents: i64) -> Money {
    Money::from_minor_units(cents, Currency::USD).unwrap_or_else(|e| panic!("{e}"))
}

/// The promotions of every history: `shared` (code SHARED, 2 uses, 12.00 budget),
/// `auto` (automatic, once per customer), `single` (codes ONE-0 and ONE-1, single use,
/// 8.00 budget).
fn model_promotions() -> Vec<(Promotion, Option<CodeBatch>)> {
    vec![
        (
            amount_off("auto", "1.00 USD").with_limits(limits(None, Some(1), None)),
            None,
        ),
        (
            amount_off("shared", "1.00 USD")
                .with_code()
                .with_limits(limits(Some(2), None, Some("12.00 USD"))),
            Some(CodeBatch::shared(code("SHARED"))),
        ),
        (
            amount_off("single", "1.00 USD")
                .with_code()
                .with_limits(limits(None, None, Some("8.00 USD"))),
            Some(CodeBatch {
                codes: vec![code("ONE-0"), code("ONE-1")],
                single_use: true,
            }),
        ),
    ]
}

fn reserve_request(op: &Op) -> Option<RedemptionRequest> {
    let Op::Reserve {
        order,
        customer,
        shared,
        automatic,
        single,
        ttl_secs,
    } = op
    else {
        return None;
    };
    let mut lines = Vec::new();
    if let Some(c) = automatic {
        lines.push(RedemptionLine {
            promotion_id: promotion_id("auto"),
            code: None,
            amount: usd(*c),
        });
    }
    if let Some(c) = shared {
        lines.push(RedemptionLine {
            promotion_id: promotion_id("shared"),
            code: Some(code("SHARED")),
            amount: usd(*c),
        });
    }
    if let Some((k, c)) = single {
        lines.push(RedemptionLine {
            promotion_id: promotion_id("single"),
            code: Some(code(&format!("ONE-{k}"))),
            amount: usd(*c),
        });
    }
    let mut req = RedemptionRequest::new(
        oid(&format!("o-{order}")),
        customer.map(|c| cust(&format!("c-{c}"))),
        usd(2000),
        lines,
    );
    req.ttl = Duration::from_secs(*ttl_secs);
    Some(req)
}

/// An outcome, compared between the store and the model.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    One(Redemption),
    Many(Vec<Redemption>),
    Err(String),
}

fn kind(e: &Error) -> String {
    match e {
        Error::NotFound { kind, .. } => format!("NotFound({kind})"),
        Error::Conflict { kind, .. } => format!("Conflict({kind})"),
        Error::InvalidTransition { entity, from, to } => {
            format!("InvalidTransition({entity}: {from} -> {to})")
        }
        Error::Validation { field, .. } => format!("Validation({field})"),
        Error::PromotionUnavailable { promotion, reason } => {
            format!("Unavailable({promotion}: {reason:?})")
        }
        other => format!("{other:?}"),
    }
}

fn outcome(r: Result<Redemption>) -> Outcome {
    match r {
        Ok(r) => Outcome::One(r),
        Err(e) => Outcome::Err(kind(&e)),
    }
}

/// The model: redemptions, and per promotion the uses and amount held; per code its
/// holder; per (promotion, customer) the uses held.
#[derive(Debug, Default)]
struct Model {
    redemptions: BTreeMap<OrderId, Redemption>,
}

impl Model {
    fn live(&self) -> impl Iterator<Item = &Redemption> {
        self.redemptions
            .values()
            .filter(|r| r.state != RedemptionState::Released)
    }

    fn usage(&self, id: &PromotionId) -> (u64, u64, i64, i64) {
        let mut u = (0, 0, 0, 0);
        for r in self.live() {
            for l in r.lines.iter().filter(|l| &l.promotion_id == id) {
                u.0 += 1;
                u.2 += l.amount.to_minor_units();
                if r.state == RedemptionState::Confirmed {
                    u.1 += 1;
                    u.3 += l.amount.to_minor_units();
                }
            }
        }
        u
    }

    fn reserve(
        &mut self,
        req: &RedemptionRequest,
        now: Timestamp,
        promos: &[(Promotion, Option<CodeBatch>)],
    ) -> Result<Redemption> {
        let lines = req.normalized_lines()?;
        if let Some(r) = self.redemptions.get(&req.order_id) {
            return if r.same_request(&req.customer_id, &req.order_total, &lines) {
                Ok(r.clone())
            } else {
                Err(Error::conflict(EntityKind::Redemption, "other lines"))
            };
        }
        let find = |id: &PromotionId| promos.iter().find(|(p, _)| &p.id == id);
        for l in &lines {
            let found = find(&l.promotion_id);
            let owner = l.code.as_ref().and_then(|c| {
                promos
                    .iter()
                    .find(|(_, b)| b.as_ref().is_some_and(|b| b.codes.contains(c)))
                    .map(|(p, _)| &p.id)
            });
            crate::promotion::check_line(
                found.map(|(p, _)| p),
                l,
                owner,
                req.customer_id.as_ref(),
                now,
            )?;
        }
        let unavailable = |p: &PromotionId, reason| Error::PromotionUnavailable {
            promotion: p.to_string(),
            reason,
        };
        for l in &lines {
            let (p, _) = find(&l.promotion_id).unwrap_or_else(|| unreachable!());
            let (uses, _, spent, _) = self.usage(&p.id);
            if p.limits.total_uses.is_some_and(|t| uses >= t) {
                return Err(unavailable(&p.id, Unavailable::TotalUses));
            }
            if p.limits
                .budget
                .is_some_and(|b| spent + l.amount.to_minor_units() > b.to_minor_units())
            {
                return Err(unavailable(&p.id, Unavailable::Budget));
            }
        }
        let mut coded: Vec<&RedemptionLine> = lines.iter().filter(|l| l.code.is_some()).collect();
        coded.sort_by(|a, b| a.code.cmp(&b.code));
        for l in coded {
            let single = find(&l.promotion_id)
                .is_some_and(|(_, b)| b.as_ref().is_some_and(|b| b.single_use));
            let held = self
                .live()
                .any(|r| r.lines.iter().any(|x| x.code == l.code));
            if single && held {
                return Err(unavailable(&l.promotion_id, Unavailable::CodeUsed));
            }
        }
        if let Some(c) = &req.customer_id {
            for l in &lines {
                let (p, _) = find(&l.promotion_id).unwrap_or_else(|| unreachable!());
                let held = self
                    .live()
                    .filter(|r| r.customer_id.as_ref() == Some(c))
                    .filter(|r| r.lines.iter().any(|x| x.promotion_id == p.id))
                    .count() as u64;
                if p.limits
                    .uses_per_customer
                    .is_some_and(|n| held >= u64::from(n))
                {
                    return Err(unavailable(&p.id, Unavailable::CustomerUses));
                }
            }
        }
        let r = Redemption {
            order_id: req.order_id.clone(),
            customer_id: req.customer_id.clone(),
            order_total: req.order_total,
            lines,
            state: RedemptionState::Active,
            expires_at: clock::add(now, req.ttl),
            reason: None,
        };
        self.redemptions.insert(r.order_id.clone(), r.clone());
        Ok(r)
    }

    fn get(&mut self, o: &OrderId) -> Result<&mut Redemption> {
        self.redemptions
            .get_mut(o)
            .ok_or_else(|| Error::not_found(EntityKind::Redemption, o))
    }

    fn apply(
        &mut self,
        op: &Op,
        now: Timestamp,
        promos: &[(Promotion, Option<CodeBatch>)],
    ) -> Outcome {
        let order = |i: &usize| oid(&format!("o-{i}"));
        match op {
            Op::Reserve { .. } => {
                let req = reserve_request(op).unwrap_or_else(|| unreachable!());
                outcome(self.reserve(&req, now, promos))
            }
            Op::Confirm(i) => outcome(self.get(&order(i)).and_then(|r| match r.state {
                RedemptionState::Released => Err(Error::invalid_transition(
                    EntityKind::Redemption,
                    r.state,
                    RedemptionState::Confirmed,
                )),
                _ => {
                    r.state = RedemptionState::Confirmed;
                    Ok(r.clone())
                }
            })),
            Op::Release(i) => outcome(self.get(&order(i)).and_then(|r| match r.state {
                RedemptionState::Confirmed => Err(Error::invalid_transition(
                    EntityKind::Redemption,
                    r.state,
                    RedemptionState::Released,
                )),
                RedemptionState::Released => Ok(r.clone()),
                RedemptionState::Active => {
                    r.state = RedemptionState::Released;
                    r.reason = Some("cancelled".into());
                    Ok(r.clone())
                }
            })),
            Op::Extend(i, secs) => outcome(self.get(&order(i)).and_then(|r| {
                if r.state != RedemptionState::Active {
                    Err(Error::invalid_transition(
                        EntityKind::Redemption,
                        r.state,
                        RedemptionState::Active,
                    ))
                } else if r.expires_at <= now {
                    Err(Error::invalid_transition(
                        EntityKind::Redemption,
                        "expired",
                        RedemptionState::Active,
                    ))
                } else {
                    r.expires_at = clock::add(now, Duration::from_secs(*secs));
                    Ok(r.clone())
                }
            })),
            Op::ReleaseExpired(_) | Op::Advance(_) => unreachable!("handled by the runner"),
        }
    }
}

async fn run_history(env: Env<'_>, history: &History) -> std::result::Result<(), String> {
    let ctx = env.ctx().await;
    let store = ctx.promotions();
    let promos = model_promotions();
    for (p, batch) in &promos {
        store
            .create_promotion(p)
            .await
            .map_err(|e| format!("setup: {e}"))?;
        if let Some(b) = batch {
            store
                .add_codes(&p.id, b)
                .await
                .map_err(|e| format!("setup: {e}"))?;
        }
    }
    let mut model = Model::default();
    let mut trace = String::new();
    for (step, op) in history.0.iter().enumerate() {
        let now = ctx.now();
        let (got, want) = match op {
            Op::Advance(secs) => {
                ctx.advance(Duration::from_secs(*secs));
                (Outcome::Many(vec![]), Outcome::Many(vec![]))
            }
            Op::ReleaseExpired(limit) => {
                let got = match store.release_expired(now, *limit).await {
                    Ok(mut v) => {
                        v.sort_by(|a, b| a.order_id.cmp(&b.order_id));
                        Outcome::Many(v)
                    }
                    Err(e) => Outcome::Err(kind(&e)),
                };
                // The contract leaves the choice among due redemptions open: check the
                // store's are due and active in the model, then follow it.
                let mut want = Vec::new();
                if let Outcome::Many(v) = &got {
                    for r in v {
                        match model.redemptions.get_mut(&r.order_id) {
                            Some(m)
                                if m.state == RedemptionState::Active && m.expires_at <= now =>
                            {
                                m.state = RedemptionState::Released;
                                m.reason = Some("expired".into());
                                want.push(m.clone());
                            }
                            other => {
                                return Err(format!(
                                    "{trace}step {step}: release_expired returned {r:?}, which the model has as {other:?}"
                                ));
                            }
                        }
                    }
                    let due = model
                        .redemptions
                        .values()
                        .filter(|m| m.state == RedemptionState::Active && m.expires_at <= now)
                        .count();
                    if v.len() < *limit as usize && due > 0 {
                        return Err(format!(
                            "{trace}step {step}: release_expired(limit {limit}) returned {} while {due} more are due",
                            v.len()
                        ));
                    }
                }
                (got, Outcome::Many(want))
            }
            Op::Reserve { .. } => {
                let req = reserve_request(op).unwrap_or_else(|| unreachable!());
                (
                    outcome(store.reserve(&req).await),
                    model.apply(op, now, &promos),
                )
            }
            Op::Confirm(i) => (
                outcome(store.confirm(&oid(&format!("o-{i}"))).await),
                model.apply(op, now, &promos),
            ),
            Op::Release(i) => (
                outcome(store.release(&oid(&format!("o-{i}")), "cancelled").await),
                model.apply(op, now, &promos),
            ),
            Op::Extend(i, secs) => (
                outcome(
                    store
                        .extend(&oid(&format!("o-{i}")), Duration::from_secs(*secs))
                        .await,
                ),
                model.apply(op, now, &promos),
            ),
        };
        trace.push_str(&format!("step {step}: {op:?} -> {got:?}\n"));
        if got != want {
            return Err(format!(
                "{trace}step {step}: the store answered {got:?}, the model {want:?}"
            ));
        }
        for (p, _) in &promos {
            let u = store
                .usage(&p.id)
                .await
                .map_err(|e| format!("usage: {e}"))?;
            let (uses, confirmed, spent, confirmed_spent) = model.usage(&p.id);
            let want = PromotionUsage {
                promotion_id: p.id.clone(),
                uses,
                confirmed_uses: confirmed,
                spent: usd(spent),
                confirmed_spent: usd(confirmed_spent),
            };
            if u != want {
                return Err(format!(
                    "{trace}after step {step}: usage of {} is {u:?}, the model says {want:?}",
                    p.id
                ));
            }
        }
    }
    Ok(())
}

async fn sequential_histories_match_the_model(env: Env<'_>) {
    let cases = env.settings().cases;
    search(
        env,
        "the promotions model-based test",
        cases,
        512,
        prop::collection::vec(op_strategy(), 1..40).prop_map(History),
        |env, history| Box::pin(async move { run_history(env, &history).await }),
    );
}
