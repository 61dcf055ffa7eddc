//! Conformance checks for [`CoPurchaseStore`] and [`HistoryStore`] implementations
//! (`testkit` feature), plus the brute-force model they are checked against.
//!
//! Each check takes a fresh, empty store and panics with a message on the first
//! violation of the contract. An adapter's test suite calls them on a multi-thread
//! Tokio runtime (the concurrency check spawns tasks):
//!
//! ```
//! use std::sync::Arc;
//! use commerce_core::recommend::{MemoryCoPurchase, MemoryHistory, conformance};
//!
//! # tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap().block_on(async {
//! conformance::co_purchase_contract(|| async { Arc::new(MemoryCoPurchase::new()) }).await;
//! conformance::history_contract(Arc::new(MemoryHistory::new())).await;
//! # });
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;

use chrono::Duration as ChronoDuration;

use super::basket::{Basket, MAX_PAIRED_PRODUCTS, ProductCount, RecordOutcome};
use super::history::{HISTORY_CAPACITY, Interaction, InteractionKind};
use crate::catalog::CategoryPath;
use crate::clock::{Clock, ManualClock};
use crate::error::Error;
use crate::id::{CustomerId, OrderId, ProductId};
use crate::store::{CoPurchaseStore, HistoryStore};

/// The brute-force reference: keeps the distinct baskets and counts by scanning them.
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

/// Asserts that `store` answers every query as the model does.
pub async fn assert_matches(store: &dyn CoPurchaseStore, model: &BruteForce) {
    let products = model.products();
    for x in &products {
        let got = store
            .also_bought(x, 1000)
            .await
            .expect("also_bought succeeds");
        assert_eq!(got, model.also_bought(x, 1000), "also_bought({x})");
        let top3 = store.also_bought(x, 3).await.expect("also_bought succeeds");
        assert_eq!(top3, model.also_bought(x, 3), "also_bought({x}, 3)");
    }
    let got = store.popular(1000).await.expect("popular succeeds");
    assert_eq!(got, model.popular(1000), "popular");
    assert_eq!(
        store.orders_recorded().await.expect("orders_recorded"),
        model.orders(),
        "orders_recorded"
    );
}

fn pid(s: &str) -> ProductId {
    ProductId::new(s).expect("valid product id")
}

fn oid(s: &str) -> OrderId {
    OrderId::new(s).expect("valid order id")
}

/// Runs every co-purchase check, each on a fresh store from `new_store`.
pub async fn co_purchase_contract<S, F, Fut>(new_store: F)
where
    S: CoPurchaseStore,
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<S>>,
{
    co_purchase_basics(new_store().await.as_ref()).await;
    co_purchase_cap(new_store().await.as_ref()).await;
    co_purchase_concurrent(new_store().await).await;
}

/// Recording, idempotency, rankings and ties, validation.
pub async fn co_purchase_basics(store: &dyn CoPurchaseStore) {
    let mut model = BruteForce::new();
    assert!(
        store
            .also_bought(&pid("nothing"), 5)
            .await
            .expect("unknown product is fine")
            .is_empty()
    );
    assert!(store.popular(5).await.expect("popular").is_empty());
    let baskets = [
        Basket::new(oid("o1"), [pid("a"), pid("b"), pid("c")]),
        Basket::new(oid("o2"), [pid("a"), pid("c")]),
        Basket::new(oid("o3"), [pid("c"), pid("d"), pid("c")]),
        Basket::new(oid("o4"), [pid("e")]),
        Basket::new(oid("o5"), []),
    ];
    for b in &baskets {
        assert_eq!(
            store.record(b).await.expect("record"),
            model.record(b),
            "record {}",
            b.order_id()
        );
    }
    // A redelivery, even with other content, changes nothing.
    let replay = Basket::new(oid("o1"), [pid("x"), pid("y")]);
    assert_eq!(
        store.record(&replay).await.expect("record"),
        RecordOutcome::Duplicate
    );
    // Several at once: one outcome each, in order; repeats within the call count once.
    let more = [
        Basket::new(oid("o6"), [pid("a"), pid("e")]),
        Basket::new(oid("o6"), [pid("a"), pid("e")]),
        Basket::new(oid("o2"), [pid("a"), pid("c")]),
    ];
    let outcomes = store.record_all(&more).await.expect("record_all");
    assert_eq!(
        outcomes,
        [
            RecordOutcome::Recorded,
            RecordOutcome::Duplicate,
            RecordOutcome::Duplicate
        ]
    );
    model.record(&more[0]);
    assert_matches(store, &model).await;
    let a = store.also_bought(&pid("a"), 10).await.expect("also_bought");
    let ids: Vec<&str> = a.iter().map(|c| c.product_id.as_str()).collect();
    assert_eq!(
        ids,
        ["c", "b", "e"],
        "count descending, then id; never itself"
    );
    for bad in [0, crate::store::MAX_PAGE_SIZE + 1] {
        assert!(matches!(
            store.also_bought(&pid("a"), bad).await,
            Err(Error::Validation { .. })
        ));
        assert!(matches!(
            store.popular(bad).await,
            Err(Error::Validation { .. })
        ));
    }
}

/// Only the first [`MAX_PAIRED_PRODUCTS`] products of a basket are paired.
pub async fn co_purchase_cap(store: &dyn CoPurchaseStore) {
    let many: Vec<ProductId> = (0..MAX_PAIRED_PRODUCTS + 10)
        .map(|i| pid(&format!("m{i:03}")))
        .collect();
    let basket = Basket::new(oid("big"), many.clone());
    store.record(&basket).await.expect("record");
    let first = store
        .also_bought(&many[0], 1000)
        .await
        .expect("also_bought");
    assert_eq!(first.len(), MAX_PAIRED_PRODUCTS - 1);
    let last = store
        .also_bought(&many[MAX_PAIRED_PRODUCTS + 5], 1000)
        .await
        .expect("also_bought");
    assert!(last.is_empty(), "unpaired products get no pairs");
    let popular = store.popular(1000).await.expect("popular");
    assert_eq!(
        popular.len(),
        many.len(),
        "every product counts for popularity"
    );
}

/// Many tasks record overlapping baskets, each several times, at once; the counts are
/// exactly those of the distinct baskets.
pub async fn co_purchase_concurrent<S: CoPurchaseStore>(store: Arc<S>) {
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
    let mut tasks = Vec::new();
    for t in 0..8usize {
        let store = store.clone();
        let mine: Vec<Basket> = baskets
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 4 == t % 4)
            .map(|(_, b)| b.clone())
            .collect();
        tasks.push(tokio::spawn(async move {
            let mut recorded = 0u64;
            for b in mine {
                if store.record(&b).await.expect("record") == RecordOutcome::Recorded {
                    recorded += 1;
                }
            }
            recorded
        }));
    }
    let mut recorded = 0;
    for t in tasks {
        recorded += t.await.expect("task");
    }
    // Each basket was offered by two tasks; exactly one of them recorded it.
    assert_eq!(recorded, baskets.len() as u64, "one Recorded per order");
    assert_matches(store.as_ref(), &model).await;
}

/// Runs every history check on `store` (fresh and empty).
pub async fn history_contract(store: Arc<dyn HistoryStore>) {
    let clock = ManualClock::default();
    let me = CustomerId::new("hist-me").expect("valid");
    let other = CustomerId::new("hist-other").expect("valid");
    let category = CategoryPath::parse("A > B").expect("valid");
    let seen = |i: usize, kind, at| Interaction {
        product_id: pid(&format!("h{i}")),
        brand: "Brand".into(),
        category: category.clone(),
        kind,
        at,
    };
    assert!(store.recent(&me, 10).await.expect("recent").is_empty());
    let t0 = clock.now();
    for i in 0..HISTORY_CAPACITY + 20 {
        let at = t0 + ChronoDuration::seconds(i as i64);
        store
            .record(&me, &seen(i, InteractionKind::Viewed, at))
            .await
            .expect("record");
    }
    // A replay of a kept interaction changes nothing.
    let last = seen(
        HISTORY_CAPACITY + 19,
        InteractionKind::Viewed,
        t0 + ChronoDuration::seconds((HISTORY_CAPACITY + 19) as i64),
    );
    store.record(&me, &last).await.expect("record");
    // Equal times: the later recorded comes first.
    let tie = seen(
        999,
        InteractionKind::Bought,
        t0 + ChronoDuration::seconds((HISTORY_CAPACITY + 19) as i64),
    );
    store.record(&me, &tie).await.expect("record");
    // An older interaction recorded late sorts by its time.
    store
        .record(&other, &seen(1, InteractionKind::Carted, t0))
        .await
        .expect("record");

    let recent = store.recent(&me, 1000).await.expect("recent");
    assert!(
        recent.len() >= HISTORY_CAPACITY,
        "keeps at least the capacity"
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
        recent
            .iter()
            .filter(|i| i.product_id == last.product_id)
            .count(),
        1,
        "replays are not kept twice"
    );
    assert_eq!(store.recent(&me, 3).await.expect("recent").len(), 3);
    let theirs = store.recent(&other, 10).await.expect("recent");
    assert_eq!(theirs.len(), 1, "histories are per shopper");
    assert!(matches!(
        store.recent(&me, 0).await,
        Err(Error::Validation { .. })
    ));
}
