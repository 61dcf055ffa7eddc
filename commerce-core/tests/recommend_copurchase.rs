//! Co-purchase counts against a brute-force count over the same orders.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use commerce_core::Error;
use commerce_core::id::{OrderId, ProductId};
use commerce_core::recommend::{
    Basket, MAX_PAIRED_PRODUCTS, MemoryCoPurchase, ProductCount, RecordOutcome,
};
use commerce_core::store::CoPurchaseStore;
use common::{oid, pid};
use proptest::prelude::*;

/// One delivered event: an order id and the raw product ids of its lines (repeats
/// allowed, as several SKUs of one product are).
type Delivery = (u8, Vec<u8>);

/// Counts straight from the raw lines, by the documented rules: the first delivery of
/// an order id counts; products are deduplicated in line order; the first
/// `MAX_PAIRED_PRODUCTS` are paired; every distinct product counts for popularity.
struct Brute {
    pairs: HashMap<(String, String), u64>,
    popularity: HashMap<String, u64>,
    orders: u64,
}

fn product_name(n: u8) -> String {
    format!("p{n:03}")
}

fn brute(deliveries: &[Delivery]) -> Brute {
    let mut first: Vec<&Delivery> = Vec::new();
    for d in deliveries {
        if !first.iter().any(|f| f.0 == d.0) {
            first.push(d);
        }
    }
    let mut b = Brute {
        pairs: HashMap::new(),
        popularity: HashMap::new(),
        orders: first.len() as u64,
    };
    for (_, lines) in first {
        let mut distinct: Vec<String> = Vec::new();
        for &l in lines {
            let name = product_name(l);
            if !distinct.contains(&name) {
                distinct.push(name);
            }
        }
        for p in &distinct {
            *b.popularity.entry(p.clone()).or_default() += 1;
        }
        let paired = &distinct[..distinct.len().min(MAX_PAIRED_PRODUCTS)];
        for x in paired {
            for y in paired {
                if x != y {
                    *b.pairs.entry((x.clone(), y.clone())).or_default() += 1;
                }
            }
        }
    }
    b
}

fn ranked(mut v: Vec<ProductCount>, limit: usize) -> Vec<ProductCount> {
    v.sort_by(ProductCount::rank_cmp);
    v.truncate(limit);
    v
}

fn basket((order, lines): &Delivery) -> Basket {
    Basket::new(
        oid(&format!("o{order}")),
        lines.iter().map(|&l| pid(&product_name(l))),
    )
}

async fn check(store: &dyn CoPurchaseStore, expected: &Brute, products: &BTreeSet<String>) {
    for x in products {
        let want: Vec<ProductCount> = products
            .iter()
            .filter_map(|y| {
                expected
                    .pairs
                    .get(&(x.clone(), y.clone()))
                    .map(|&count| ProductCount {
                        product_id: pid(y),
                        count,
                    })
            })
            .collect();
        for limit in [1usize, 5, 1000] {
            let got = store.also_bought(&pid(x), limit as u32).await.unwrap();
            assert_eq!(
                got,
                ranked(want.clone(), limit),
                "also_bought({x}, {limit})"
            );
        }
    }
    let want: Vec<ProductCount> = expected
        .popularity
        .iter()
        .map(|(p, &count)| ProductCount {
            product_id: pid(p),
            count,
        })
        .collect();
    assert_eq!(store.popular(1000).await.unwrap(), ranked(want, 1000));
    assert_eq!(store.orders_recorded().await.unwrap(), expected.orders);
}

fn deliveries() -> impl Strategy<Value = Vec<Delivery>> {
    let small = (0u8..12, prop::collection::vec(0u8..15, 0..7));
    // Now and then an order over the pairing cap.
    let big = (0u8..12, prop::collection::vec(0u8..80, 45..90));
    prop::collection::vec(prop_oneof![8 => small, 1 => big], 0..25)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any sequence of deliveries (with redeliveries of the same order id, possibly
    /// with other content) gives exactly the brute-force counts, and the same counts
    /// in any delivery order.
    #[test]
    fn counts_match_a_brute_force_count(deliveries in deliveries()) {
        runtime().block_on(async {
            let expected = brute(&deliveries);
            let products: BTreeSet<String> =
                deliveries.iter().flat_map(|(_, l)| l.iter().map(|&n| product_name(n))).collect();

            let store = MemoryCoPurchase::new();
            let mut seen = BTreeSet::new();
            for d in &deliveries {
                let outcome = store.record(&basket(d)).await.unwrap();
                let first = seen.insert(d.0);
                assert_eq!(outcome == RecordOutcome::Recorded, first, "order o{}", d.0);
            }
            check(&store, &expected, &products).await;

            // Reversed delivery: the first delivery per order now differs, so compare
            // with the brute force of the reversed sequence.
            let reversed: Vec<Delivery> = deliveries.iter().rev().cloned().collect();
            let store = MemoryCoPurchase::new();
            for d in &reversed {
                store.record(&basket(d)).await.unwrap();
            }
            check(&store, &brute(&reversed), &products).await;
        });
    }
}

/// Every basket delivered 16 times by 16 concurrent tasks: each order is recorded once
/// and the counts are the brute-force ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicate_concurrent_delivery_counts_each_order_once() {
    let deliveries: Vec<Delivery> = (0..120u32)
        .map(|i| {
            let lines = (0..(1 + i % 6))
                .map(|k| ((i * 5 + k * 7) % 31) as u8)
                .collect();
            (i as u8, lines)
        })
        .collect();
    // Order ids are u8: keep them distinct.
    assert!(deliveries.len() < 256);
    let expected = brute(&deliveries);
    let products: BTreeSet<String> = deliveries
        .iter()
        .flat_map(|(_, l)| l.iter().map(|&n| product_name(n)))
        .collect();
    let store = Arc::new(MemoryCoPurchase::new());
    let deliveries = Arc::new(deliveries);
    let mut tasks = Vec::new();
    for t in 0..16usize {
        let store = store.clone();
        let deliveries = deliveries.clone();
        tasks.push(tokio::spawn(async move {
            let mut recorded = 0u64;
            // Each task walks the orders from a different starting point.
            for k in 0..deliveries.len() {
                let d = &deliveries[(k + t * 7) % deliveries.len()];
                if store.record(&basket(d)).await.unwrap() == RecordOutcome::Recorded {
                    recorded += 1;
                }
                tokio::task::yield_now().await;
            }
            recorded
        }));
    }
    let mut recorded = 0;
    for t in tasks {
        recorded += t.await.unwrap();
    }
    assert_eq!(recorded, deliveries.len() as u64);
    check(store.as_ref(), &expected, &products).await;
}

#[tokio::test]
async fn limits_are_validated_and_unknown_products_are_empty() {
    let store = MemoryCoPurchase::new();
    store
        .record(&Basket::new(oid("o1"), [pid("a"), pid("b")]))
        .await
        .unwrap();
    assert!(matches!(
        store.also_bought(&pid("a"), 0).await,
        Err(Error::Validation { .. })
    ));
    assert!(matches!(
        store.popular(1001).await,
        Err(Error::Validation { .. })
    ));
    assert!(store.also_bought(&pid("zz"), 5).await.unwrap().is_empty());
    let basket = Basket::new(OrderId::new("empty").unwrap(), Vec::<ProductId>::new());
    assert!(basket.is_empty());
    assert_eq!(
        store.record(&basket).await.unwrap(),
        RecordOutcome::Recorded
    );
    assert_eq!(
        store.record(&basket).await.unwrap(),
        RecordOutcome::Duplicate
    );
    assert_eq!(store.orders_recorded().await.unwrap(), 2);
}

#[cfg(feature = "testkit")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_memory_stores_pass_the_conformance_kit() {
    use commerce_core::testkit::{self, MemoryBuilder};
    testkit::recommend::test_all(&MemoryBuilder).await;
}

/// The co-purchase area on a [`CachedCoPurchase`] over the memory store.
#[cfg(feature = "testkit")]
#[derive(Debug)]
struct CachedBuilder;

#[cfg(feature = "testkit")]
#[async_trait::async_trait]
impl commerce_core::testkit::StoreBuilder for CachedBuilder {
    async fn build(
        &self,
        _clock: Arc<commerce_core::clock::ManualClock>,
    ) -> commerce_core::Result<commerce_core::testkit::StoresUnderTest> {
        use commerce_core::recommend::CachedCoPurchase;
        Ok(
            commerce_core::testkit::StoresUnderTest::new().with_co_purchase(Arc::new(
                CachedCoPurchase::new(
                    Arc::new(MemoryCoPurchase::new()),
                    std::time::Duration::from_secs(600),
                    10_000,
                ),
            )),
        )
    }
}

#[cfg(feature = "testkit")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cached_store_passes_the_conformance_kit() {
    commerce_core::testkit::recommend::test_all(&CachedBuilder).await;
}

/// Counts the rankings read from the wrapped store.
#[derive(Debug, Default)]
struct Counting {
    inner: MemoryCoPurchase,
    reads: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl CoPurchaseStore for Counting {
    async fn record(&self, basket: &Basket) -> commerce_core::Result<RecordOutcome> {
        self.inner.record(basket).await
    }
    async fn also_bought(
        &self,
        product: &ProductId,
        limit: u32,
    ) -> commerce_core::Result<Vec<commerce_core::recommend::ProductCount>> {
        self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.also_bought(product, limit).await
    }
    async fn popular(
        &self,
        limit: u32,
    ) -> commerce_core::Result<Vec<commerce_core::recommend::ProductCount>> {
        self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.popular(limit).await
    }
    async fn orders_recorded(&self) -> commerce_core::Result<u64> {
        self.inner.orders_recorded().await
    }
}

#[tokio::test]
async fn the_cached_store_serves_rankings_from_memory_until_a_recording_or_the_ttl() {
    use commerce_core::recommend::CachedCoPurchase;
    use std::sync::atomic::Ordering::SeqCst;
    let inner = Arc::new(Counting::default());
    let ttl = std::time::Duration::from_millis(300);
    let cached = CachedCoPurchase::new(inner.clone(), ttl, 1_000);
    let basket =
        |o: &str, ps: &[&str]| Basket::new(OrderId::new(o).unwrap(), ps.iter().map(|p| pid(p)));
    cached
        .record(&basket("o1", &["a", "b", "c"]))
        .await
        .unwrap();
    cached.record(&basket("o2", &["a", "b"])).await.unwrap();

    let first = cached.also_bought(&pid("a"), 1).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(cached.also_bought(&pid("a"), 1).await.unwrap(), first);
    assert_eq!(
        inner.reads.load(SeqCst),
        1,
        "the second read from the cache"
    );
    // A longer ranking than the cached one had room for is read again...
    let top = cached.also_bought(&pid("a"), 10).await.unwrap();
    assert_eq!(top, inner.inner.also_bought(&pid("a"), 10).await.unwrap());
    assert_eq!(top.len(), 2);
    assert_eq!(inner.reads.load(SeqCst), 2);
    // ...but not once the cached one is whole (2 partners, 10 asked), nor a prefix.
    assert_eq!(cached.also_bought(&pid("a"), 20).await.unwrap(), top);
    assert_eq!(cached.also_bought(&pid("a"), 1).await.unwrap(), top[..1]);
    assert_eq!(inner.reads.load(SeqCst), 2);
    let popular = cached.popular(5).await.unwrap();
    cached.popular(5).await.unwrap();
    assert_eq!(inner.reads.load(SeqCst), 3);

    // Recording through the cache drops the rankings of the basket's products.
    cached.record(&basket("o3", &["a", "c"])).await.unwrap();
    let after = cached.also_bought(&pid("a"), 10).await.unwrap();
    assert_eq!(after, inner.inner.also_bought(&pid("a"), 10).await.unwrap());
    assert_ne!(after, top, "c now ties b with two orders");
    assert_ne!(cached.popular(5).await.unwrap(), popular);
    assert_eq!(inner.reads.load(SeqCst), 5);

    // Recorded elsewhere (straight into the wrapped store): seen after the TTL.
    inner.record(&basket("o4", &["a", "d"])).await.unwrap();
    inner.record(&basket("o5", &["a", "d"])).await.unwrap();
    inner.record(&basket("o6", &["a", "d"])).await.unwrap();
    assert_eq!(
        cached.also_bought(&pid("a"), 10).await.unwrap(),
        after,
        "within the TTL"
    );
    tokio::time::sleep(ttl * 2).await;
    let fresh = cached.also_bought(&pid("a"), 10).await.unwrap();
    assert_eq!(fresh[0].product_id, pid("d"), "after the TTL: {fresh:?}");
    assert!(
        cached.also_bought(&pid("a"), 0).await.is_err(),
        "limits are checked"
    );
}
