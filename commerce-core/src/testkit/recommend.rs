//! The recommendation suites: [`CoPurchaseStore`] (area `co_purchase`) against a
//! brute-force count, and [`HistoryStore`] (area `history`).
//!
//! Checks, co-purchase: an empty store ranks nothing; recording is exactly once per
//! order id (a redelivery with other content, a repeat within one `record_all`, are
//! `Duplicate` and count nothing) and the counts then equal the brute-force count
//! ([`BruteForce`]) for every product at limits 3 and 1000; rankings are by count
//! descending then id, never the product itself; a limit of 0 or above
//! [`MAX_PAGE_SIZE`](crate::store::MAX_PAGE_SIZE) is `Validation`; only the first
//! [`MAX_PAIRED_PRODUCTS`] products of a basket are paired while every product counts
//! for popularity; 8 tasks recording 200 overlapping baskets at once record each order
//! exactly once, with the brute-force counts.
//!
//! Checks, history: a shopper without history has none; `recent` is newest first (equal
//! times: the later recorded first; an old interaction recorded late sorts by its
//! time), keeps at least [`HISTORY_CAPACITY`], holds a replayed interaction once,
//! returns at most `limit`, never another shopper's; a limit of 0 is `Validation`.
//!
//! ```
//! use commerce_core::testkit::{self, MemoryBuilder};
//!
//! # tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap().block_on(async {
//! // Both areas, or whichever of the two the builder provides.
//! testkit::recommend::test_all(&MemoryBuilder).await;
//! # });
//! ```

use std::collections::{BTreeMap, BTreeSet};

use chrono::Duration as ChronoDuration;

use super::builder::{Area, StoreBuilder};
use super::check::{assert_err, concurrently, must};
use super::fixtures::{cust, oid, path, pid};
use super::runner::{Case, Env, Report, Settings, cases, probe, run_area};
use crate::activity::{
    Basket, HISTORY_CAPACITY, Interaction, InteractionKind, MAX_PAIRED_PRODUCTS, ProductCount,
    RecordOutcome,
};
use crate::error::Error;
use crate::id::{OrderId, ProductId};
use crate::store::{CoPurchaseStore, HistoryStore};

/// Runs the co-purchase and history cases against `builder`'s stores (whichever of the
/// two it provides; at least one); panics listing the failed cases.
pub async fn test_all<B: StoreBuilder>(builder: &B) {
    test_all_with(builder, &Settings::from_env()).await;
}

/// [`test_all`] with explicit [`Settings`].
pub async fn test_all_with<B: StoreBuilder>(builder: &B, settings: &Settings) {
    let areas = probe(builder).await;
    assert!(
        areas.contains(&Area::CoPurchase) || areas.contains(&Area::History),
        "the builder provides neither a CoPurchaseStore nor a HistoryStore (it provides \
         {areas:?})"
    );
    let mut report = Report::default();
    for (area, cases) in [
        (Area::CoPurchase, co_purchase_cases()),
        (Area::History, history_cases()),
    ] {
        if areas.contains(&area) {
            run_area(builder, settings, area, &cases, &mut report).await;
        } else {
            report.not_provided.push(area);
        }
    }
    // A failure is printed once, by the panic of `assert_passed`.
    if report.failed.is_empty() {
        eprintln!("{report}");
    }
    report.assert_passed();
}

pub(crate) fn co_purchase_cases() -> Vec<Case> {
    cases![
        recording_is_once_per_order_and_counts_match_a_brute_force_count,
        only_the_first_products_of_a_basket_are_paired,
        concurrent_recordings_count_each_order_once,
    ]
}

pub(crate) fn history_cases() -> Vec<Case> {
    cases![
        recent_is_newest_first_and_keeps_the_capacity,
        a_replayed_interaction_is_kept_once,
        histories_are_per_shopper_and_limits_are_checked,
    ]
}

/// The brute-force reference of [`CoPurchaseStore`]: keeps the distinct baskets and
/// counts by scanning them.
#[derive(Debug, Clone, Default)]
pub struct BruteForce {
    baskets: BTreeMap<OrderId, Basket>,
}

impl BruteForce {
    /// An empty model.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `basket` unless its order was recorded before.
    pub fn record(&mut self, basket: &Basket) -> RecordOutcome {
        if self.baskets.contains_key(basket.order_id()) {
            return RecordOutcome::Duplicate;
        }
        self.baskets
            .insert(basket.order_id().clone(), basket.clone());
        RecordOutcome::Recorded
    }

    /// Every product in any basket.
    pub fn products(&self) -> BTreeSet<ProductId> {
        self.baskets
            .values()
            .flat_map(|b| b.products().iter().cloned())
            .collect()
    }

    /// Baskets whose paired products hold both `x` and `y`.
    pub fn pair(&self, x: &ProductId, y: &ProductId) -> u64 {
        if x == y {
            return 0;
        }
        self.baskets
            .values()
            .filter(|b| b.paired().contains(x) && b.paired().contains(y))
            .count() as u64
    }

    /// Baskets holding `x`.
    pub fn popularity(&self, x: &ProductId) -> u64 {
        self.baskets
            .values()
            .filter(|b| b.products().contains(x))
            .count() as u64
    }

    /// The expected `also_bought(x, limit)`.
    pub fn also_bought(&self, x: &ProductId, limit: usize) -> Vec<ProductCount> {
        let mut v: Vec<ProductCount> = self
            .products()
            .into_iter()
            .map(|y| ProductCount {
                count: self.pair(x, &y),
                product_id: y,
            })
            .filter(|c| c.count > 0)
            .collect();
        v.sort_by(ProductCount::rank_cmp);
        v.truncate(limit);
        v
    }

    /// The expected `popular(limit)`.
    pub fn popular(&self, limit: usize) -> Vec<ProductCount> {
        let mut v: Vec<ProductCount> = self
            .products()
            .into_iter()
            .map(|y| ProductCount {
                count: self.popularity(&y),
                product_id: y,
            })
            .collect();
        v.sort_by(ProductCount::rank_cmp);
        v.truncate(limit);
        v
    }

    /// Number of distinct orders.
    pub fn orders(&self) -> u64 {
        self.baskets.len() as u64
    }
}

/// Asserts that `store` answers every query as the model does: `also_bought` of every
/// product at limits 1000 and 3, `popular(1000)` and `orders_recorded`.
pub async fn assert_matches(store: &dyn CoPurchaseStore, model: &BruteForce) {
    for x in &model.products() {
        let got = must!(store.also_bought(x, 1000).await, "also_bought({x}, 1000)");
        assert_eq!(got, model.also_bought(x, 1000), "also_bought({x}, 1000)");
        let top3 = must!(store.also_bought(x, 3).await, "also_bought({x}, 3)");
        assert_eq!(top3, model.also_bought(x, 3), "also_bought({x}, 3)");
    }
    let got = must!(store.popular(1000).await, "popular(1000)");
    assert_eq!(got, model.popular(1000), "popular(1000)");
    assert_eq!(
        must!(store.orders_recorded().await, "orders_recorded"),
        model.orders(),
        "orders_recorded"
    );
}

async fn record(store: &dyn CoPurchaseStore, basket: &Basket) -> RecordOutcome {
    must!(store.record(basket).await, "record({})", basket.order_id())
}

async fn recording_is_once_per_order_and_counts_match_a_brute_force_count(env: Env<'_>) {
    let ctx = env.ctx().await;
    let store = ctx.co_purchase();
    let store = &*store;
    let mut model = BruteForce::new();
    assert_eq!(
        must!(store.also_bought(&pid("nothing"), 5).await, "also_bought"),
        vec![],
        "an unknown product has no partners"
    );
    assert_eq!(
        must!(store.popular(5).await, "popular"),
        vec![],
        "an empty store has no best sellers"
    );
    let baskets = [
        Basket::new(oid("o1"), [pid("a"), pid("b"), pid("c")]),
        Basket::new(oid("o2"), [pid("a"), pid("c")]),
        Basket::new(oid("o3"), [pid("c"), pid("d"), pid("c")]),
        Basket::new(oid("o4"), [pid("e")]),
        Basket::new(oid("o5"), []),
    ];
    for b in &baskets {
        assert_eq!(
            record(store, b).await,
            model.record(b),
            "record {}",
            b.order_id()
        );
    }
    // A redelivery, even with other content, changes nothing.
    let replay = Basket::new(oid("o1"), [pid("x"), pid("y")]);
    assert_eq!(
        record(store, &replay).await,
        RecordOutcome::Duplicate,
        "a redelivery of o1 with other content"
    );
    // Several at once: one outcome each, in order; repeats within the call count once.
    let more = [
        Basket::new(oid("o6"), [pid("a"), pid("e")]),
        Basket::new(oid("o6"), [pid("a"), pid("e")]),
        Basket::new(oid("o2"), [pid("a"), pid("c")]),
    ];
    let outcomes = must!(store.record_all(&more).await, "record_all");
    assert_eq!(
        outcomes,
        [
            RecordOutcome::Recorded,
            RecordOutcome::Duplicate,
            RecordOutcome::Duplicate
        ],
        "record_all: one outcome per basket, in order"
    );
    model.record(&more[0]);
    assert_matches(store, &model).await;
    let a = must!(store.also_bought(&pid("a"), 10).await, "also_bought(a)");
    let ids: Vec<&str> = a.iter().map(|c| c.product_id.as_str()).collect();
    assert_eq!(
        ids,
        ["c", "b", "e"],
        "count descending, then id; never itself"
    );
    for bad in [0, crate::store::MAX_PAGE_SIZE + 1] {
        assert_err!(
            store.also_bought(&pid("a"), bad).await,
            Error::Validation { .. },
            "also_bought with limit {bad}"
        );
        assert_err!(
            store.popular(bad).await,
            Error::Validation { .. },
            "popular with limit {bad}"
        );
    }
}

async fn only_the_first_products_of_a_basket_are_paired(env: Env<'_>) {
    let ctx = env.ctx().await;
    let store = ctx.co_purchase();
    let many: Vec<ProductId> = (0..MAX_PAIRED_PRODUCTS + 10)
        .map(|i| pid(&format!("m{i:03}")))
        .collect();
    let basket = Basket::new(oid("big"), many.clone());
    record(&*store, &basket).await;
    let first = must!(store.also_bought(&many[0], 1000).await, "also_bought");
    assert_eq!(
        first.len(),
        MAX_PAIRED_PRODUCTS - 1,
        "the first product pairs with the other paired ones"
    );
    let last = must!(
        store
            .also_bought(&many[MAX_PAIRED_PRODUCTS + 5], 1000)
            .await,
        "also_bought"
    );
    assert!(last.is_empty(), "unpaired products get no pairs: {last:?}");
    let popular = must!(store.popular(1000).await, "popular");
    assert_eq!(
        popular.len(),
        many.len(),
        "every product counts for popularity"
    );
}

/// Many tasks record overlapping baskets, each several times, at once; the counts are
/// exactly those of the distinct baskets.
async fn concurrent_recordings_count_each_order_once(env: Env<'_>) {
    let ctx = env.ctx().await;
    let store = ctx.co_purchase();
    let baskets: Vec<Basket> = (0..200u32)
        .map(|i| {
            let items = (0..(2 + i % 5)).map(|k| pid(&format!("c{}", (i * 7 + k * 3) % 23)));
            Basket::new(oid(&format!("co{i}")), items)
        })
        .collect();
    let mut model = BruteForce::new();
    for b in &baskets {
        model.record(b);
    }
    let baskets = std::sync::Arc::new(baskets);
    let recorded = concurrently(8, |t| {
        let (store, baskets) = (store.clone(), baskets.clone());
        async move {
            let mut recorded = 0u64;
            for (_, b) in baskets.iter().enumerate().filter(|(i, _)| i % 4 == t % 4) {
                if must!(store.record(b).await, "record({})", b.order_id())
                    == RecordOutcome::Recorded
                {
                    recorded += 1;
                }
            }
            recorded
        }
    })
    .await;
    // Each basket was offered by two tasks; exactly one of them recorded it.
    assert_eq!(
        recorded.iter().sum::<u64>(),
        baskets.len() as u64,
        "one Recorded per order"
    );
    assert_matches(&*store, &model).await;
}

/// What the history cases record for "me": `HISTORY_CAPACITY + 20` views a second
/// apart, a replay of the last one, and a purchase at the same time as the last view;
/// for "other", one old interaction. Returns (the tie, the last view).
async fn fill_history(
    store: &dyn HistoryStore,
    t0: crate::clock::Timestamp,
) -> (Interaction, Interaction) {
    let seen = |i: usize, kind, at| Interaction {
        product_id: pid(&format!("h{i}")),
        brand: "Brand".into(),
        category: path("A > B"),
        kind,
        at,
    };
    for i in 0..HISTORY_CAPACITY + 20 {
        let at = t0 + ChronoDuration::seconds(i as i64);
        must!(
            store
                .record(&cust("hist-me"), &seen(i, InteractionKind::Viewed, at))
                .await,
            "record view {i}"
        );
    }
    // A replay of a kept interaction changes nothing.
    let last = seen(
        HISTORY_CAPACITY + 19,
        InteractionKind::Viewed,
        t0 + ChronoDuration::seconds((HISTORY_CAPACITY + 19) as i64),
    );
    must!(store.record(&cust("hist-me"), &last).await, "record replay");
    // Equal times: the later recorded comes first.
    let tie = seen(
        999,
        InteractionKind::Bought,
        t0 + ChronoDuration::seconds((HISTORY_CAPACITY + 19) as i64),
    );
    must!(store.record(&cust("hist-me"), &tie).await, "record tie");
    // An older interaction recorded late sorts by its time.
    must!(
        store
            .record(&cust("hist-other"), &seen(1, InteractionKind::Carted, t0))
            .await,
        "record other"
    );
    (tie, last)
}

async fn recent_is_newest_first_and_keeps_the_capacity(env: Env<'_>) {
    let ctx = env.ctx().await;
    let store = ctx.history();
    assert_eq!(
        must!(store.recent(&cust("hist-me"), 10).await, "recent"),
        vec![],
        "no history yet"
    );
    let (tie, last) = fill_history(&*store, ctx.now()).await;
    let recent = must!(store.recent(&cust("hist-me"), 1000).await, "recent");
    assert!(
        recent.len() >= HISTORY_CAPACITY,
        "keeps at least the capacity ({HISTORY_CAPACITY}), kept {}",
        recent.len()
    );
    assert_eq!(
        recent[0], tie,
        "newest first; ties in reverse recording order"
    );
    assert_eq!(recent[1], last);
    assert!(
        recent.windows(2).all(|w| w[0].at >= w[1].at),
        "newest first"
    );
    assert_eq!(
        must!(store.recent(&cust("hist-me"), 3).await, "recent").len(),
        3,
        "at most limit"
    );
}

async fn a_replayed_interaction_is_kept_once(env: Env<'_>) {
    let ctx = env.ctx().await;
    let store = ctx.history();
    let (_, last) = fill_history(&*store, ctx.now()).await;
    must!(store.record(&cust("hist-me"), &last).await, "record replay");
    let recent = must!(store.recent(&cust("hist-me"), 1000).await, "recent");
    assert_eq!(
        recent
            .iter()
            .filter(|i| i.product_id == last.product_id)
            .count(),
        1,
        "replays are not kept twice"
    );
}

async fn histories_are_per_shopper_and_limits_are_checked(env: Env<'_>) {
    let ctx = env.ctx().await;
    let store = ctx.history();
    fill_history(&*store, ctx.now()).await;
    let theirs = must!(store.recent(&cust("hist-other"), 10).await, "recent");
    assert_eq!(theirs.len(), 1, "histories are per shopper: {theirs:?}");
    assert_eq!(theirs[0].product_id, pid("h1"));
    assert_err!(
        store.recent(&cust("hist-me"), 0).await,
        Error::Validation { .. },
        "recent with limit 0"
    );
}
