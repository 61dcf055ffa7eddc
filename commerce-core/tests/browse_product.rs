//! The product page: complete when all is well, on time and honest about what is
//! missing when parts fail or hang.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use commerce_core::browse::{
    MemoryProductCache, ProductCache, ProductKey, ProductPageConfig, ProductPageRequest,
    ProductPages, StockStatus,
};
use commerce_core::catalog::{Product, ProductStatus, Slug};
use commerce_core::clock::ManualClock;
use commerce_core::id::{CustomerId, ProductId};
use commerce_core::memory::MemoryEngine;
use commerce_core::recommend::{
    Basket, MemoryCoPurchase, MemoryHistory, ProductRecommender, ProductSummary, RecommendRequest,
    Recommendation, Recommendations, Recommender,
};
use commerce_core::resilience::{BreakerConfig, BreakerState, OmissionReason, Section};
use commerce_core::store::{CatalogStore, CoPurchaseStore, HistoryStore};
use commerce_core::testkit::faults::{Faults, Faulty, Latency, Rule};
use commerce_core::{Error, Result};
use common::{Fault, Stock, add_product, add_product_with, oid, pid};

/// A recommender that answers with fixed products, or misbehaves; counts calls.
#[derive(Debug)]
struct Scripted {
    answer: Vec<Product>,
    fault: std::sync::Mutex<Fault>,
    calls: AtomicU64,
    last: std::sync::Mutex<Option<RecommendRequest>>,
}

impl Scripted {
    fn new(answer: Vec<Product>, fault: Fault) -> Arc<Self> {
        Arc::new(Scripted {
            answer,
            fault: std::sync::Mutex::new(fault),
            calls: AtomicU64::new(0),
            last: std::sync::Mutex::new(None),
        })
    }

    fn set(&self, fault: Fault) {
        *self.fault.lock().unwrap() = fault;
    }

    fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl ProductRecommender for Scripted {
    async fn recommend(&self, request: &RecommendRequest) -> Result<Recommendations> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        *self.last.lock().unwrap() = Some(request.clone());
        let fault = *self.fault.lock().unwrap();
        match fault {
            Fault::None => {}
            Fault::Fail => return Err(Error::backend(true, "recommender down")),
            Fault::Hang => std::future::pending::<()>().await,
            Fault::Sleep(d) => tokio::time::sleep(d).await,
        }
        Ok(Recommendations {
            items: self
                .answer
                .iter()
                .map(|p| Recommendation {
                    product: ProductSummary::from(p),
                    score: 1.0,
                    sources: vec![],
                })
                .collect(),
            omitted: vec![],
        })
    }
}

async fn shop(engine: &MemoryEngine) -> Product {
    let phone = add_product_with(
        engine,
        "phone",
        "Acme",
        "Phones > Smartphones",
        Stock::Units(7),
        ProductStatus::Active,
        true,
    )
    .await;
    add_product(engine, "case", "Acme", "Phones > Cases", Stock::Units(3)).await;
    add_product(engine, "strap", "Acme", "Phones > Straps", Stock::Backorder).await;
    add_product(engine, "cable", "Volt", "Phones > Cables", Stock::Units(3)).await;
    phone
}

fn pages(engine: &MemoryEngine) -> ProductPages {
    ProductPages::new(
        engine.catalog.clone(),
        engine.inventory.clone(),
        engine.clock.clone(),
    )
}

fn ids(page: &commerce_core::browse::ProductPage) -> Vec<&str> {
    page.recommendations
        .iter()
        .map(|r| r.product.product_id.as_str())
        .collect()
}

#[tokio::test]
async fn a_complete_page() {
    let engine = MemoryEngine::new();
    let phone = shop(&engine).await;
    let counts = Arc::new(MemoryCoPurchase::new());
    for (i, b) in [["phone", "case", "strap"], ["phone", "cable", "case"]]
        .iter()
        .enumerate()
    {
        counts
            .record(&Basket::new(
                oid(&format!("o{i}")),
                b.iter().map(|p| pid(p)),
            ))
            .await
            .unwrap();
    }
    let recommender = Recommender::new(
        counts,
        engine.catalog.clone(),
        engine.inventory.clone(),
        engine.clock.clone(),
    );
    let pages = pages(&engine).with_recommender(Arc::new(recommender));

    let page = pages
        .load(&ProductPageRequest::by_slug(phone.slug.clone()))
        .await
        .unwrap();
    assert!(page.omitted.is_empty(), "{:?}", page.omitted);
    assert_eq!(page.product.id, phone.id);
    assert_eq!(page.variants.len(), 2);
    assert_eq!(
        page.variants[0].stock,
        StockStatus::InStock { available: 7 }
    );
    assert_eq!(page.variants[1].stock, StockStatus::OutOfStock);
    assert_eq!(page.price_from, "20.00 USD".parse().unwrap());
    assert_eq!(page.price_to, "35.00 USD".parse().unwrap());
    assert_eq!(ids(&page), ["case", "cable", "strap"]);
    assert!(!page.from_cache);

    // By id, with the case in the cart.
    let mut req = ProductPageRequest::by_id(phone.id.clone());
    req.cart = vec![pid("case")];
    let page = pages.load(&req).await.unwrap();
    assert_eq!(ids(&page), ["cable", "strap"]);

    let strap = pages
        .load(&ProductPageRequest::by_id(pid("strap")))
        .await
        .unwrap();
    assert_eq!(strap.variants[0].stock, StockStatus::Backorder);

    let json = serde_json::to_value(&page).unwrap();
    assert!(json["elapsed"].is_number());
    assert_eq!(json["variants"][0]["stock"]["status"], "in_stock");
}

#[tokio::test]
async fn unknown_and_unpublished_products_are_not_found() {
    let engine = MemoryEngine::new();
    shop(&engine).await;
    add_product_with(
        &engine,
        "secret",
        "Acme",
        "Phones > Smartphones",
        Stock::Units(1),
        ProductStatus::Draft,
        false,
    )
    .await;
    let pages = pages(&engine);
    for req in [
        ProductPageRequest::by_slug(Slug::new("no-such-thing").unwrap()),
        ProductPageRequest::by_id(pid("secret")),
    ] {
        assert!(matches!(
            pages.load(&req).await,
            Err(Error::NotFound { .. })
        ));
    }
}

#[tokio::test(start_paused = true)]
async fn a_slow_recommender_is_cut_off_at_its_deadline() {
    let engine = MemoryEngine::new();
    let phone = shop(&engine).await;
    let slow = Scripted::new(vec![], Fault::Sleep(Duration::from_secs(10)));
    let pages = pages(&engine).with_recommender(slow.clone());
    let start = tokio::time::Instant::now();
    let page = pages
        .load(&ProductPageRequest::by_id(phone.id.clone()))
        .await
        .unwrap();
    // Paused time: exactly the recommendations deadline passed, not the 10 s.
    assert_eq!(start.elapsed(), Duration::from_millis(80));
    assert_eq!(page.elapsed, Duration::from_millis(80));
    assert_eq!(page.omitted.len(), 1);
    assert_eq!(page.omitted[0].section, Section::Recommendations);
    assert_eq!(
        page.omitted[0].reason,
        OmissionReason::TimedOut { after_ms: 80 }
    );
    assert!(page.recommendations.is_empty());
    // The essential parts are all there.
    assert_eq!(
        page.variants[0].stock,
        StockStatus::InStock { available: 7 }
    );
    assert_eq!(slow.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_page_deadline_caps_every_section() {
    let engine = MemoryEngine::new();
    let phone = shop(&engine).await;
    let config = ProductPageConfig {
        deadline: Duration::from_millis(60),
        ..Default::default()
    };
    let pages = pages(&engine)
        .with_recommender(Scripted::new(vec![], Fault::Hang))
        .with_config(config);
    let page = pages
        .load(&ProductPageRequest::by_id(phone.id))
        .await
        .unwrap();
    assert_eq!(page.elapsed, Duration::from_millis(60));
    assert_eq!(
        page.omitted[0].reason,
        OmissionReason::TimedOut { after_ms: 60 }
    );
}

#[tokio::test]
async fn a_failing_recommender_trips_its_breaker_and_recovers_after_the_cool_down() {
    let clock = Arc::new(ManualClock::default());
    let engine = MemoryEngine::with_clock(clock.clone());
    let phone = shop(&engine).await;
    let case = common::product(&engine, "case").await;
    let recs = Scripted::new(vec![case], Fault::Fail);
    let config = ProductPageConfig {
        breaker: BreakerConfig {
            failure_threshold: 3,
            cool_down: Duration::from_secs(5),
            max_cool_down: Duration::from_secs(5),
        },
        ..Default::default()
    };
    let pages = pages(&engine)
        .with_recommender(recs.clone())
        .with_config(config);
    let req = ProductPageRequest::by_id(phone.id.clone());
    for _ in 0..3 {
        let page = pages.load(&req).await.unwrap();
        assert!(matches!(
            page.omitted[0].reason,
            OmissionReason::Failed { .. }
        ));
    }
    assert_eq!(recs.calls(), 3);
    let breaker = pages.guard(&Section::Recommendations).unwrap().breaker();
    assert!(matches!(breaker.state(), BreakerState::Open { .. }));

    // Open: the recommender is not called; the page says why it has none.
    recs.set(Fault::None);
    let page = pages.load(&req).await.unwrap();
    assert_eq!(page.omitted[0].reason, OmissionReason::CircuitOpen);
    assert_eq!(recs.calls(), 3);

    // After the cool-down one probe goes through, succeeds, and closes the breaker.
    clock.advance(Duration::from_secs(5));
    let page = pages.load(&req).await.unwrap();
    assert!(page.omitted.is_empty());
    assert_eq!(ids(&page), ["case"]);
    assert_eq!(breaker.state(), BreakerState::Closed { failures: 0 });
    let page = pages.load(&req).await.unwrap();
    assert!(page.omitted.is_empty());
    assert_eq!(recs.calls(), 5);
}

/// 64 concurrent page loads on 4 threads with a recommender that never answers: every
/// page comes back, without recommendations, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hung_recommender_under_concurrent_load() {
    let engine = MemoryEngine::new();
    let phone = shop(&engine).await;
    let hung = Scripted::new(vec![], Fault::Hang);
    let config = ProductPageConfig {
        deadline: Duration::from_millis(500),
        recommendations_deadline: Duration::from_millis(30),
        ..Default::default()
    };
    let pages = Arc::new(
        pages(&engine)
            .with_recommender(hung.clone())
            .with_config(config),
    );
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let pages = pages.clone();
        let slug = phone.slug.clone();
        tasks.push(tokio::spawn(async move {
            pages.load(&ProductPageRequest::by_slug(slug)).await
        }));
    }
    let all = tokio::time::timeout(Duration::from_secs(30), futures::future::join_all(tasks))
        .await
        .expect("no page hangs");
    let mut timed_out = 0;
    for page in all {
        let page = page.unwrap().unwrap();
        assert_eq!(page.omitted.len(), 1);
        assert_eq!(page.omitted[0].section, Section::Recommendations);
        match page.omitted[0].reason {
            OmissionReason::TimedOut { after_ms } => {
                assert_eq!(after_ms, 30);
                timed_out += 1;
            }
            OmissionReason::CircuitOpen => {}
            ref other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            page.variants[0].stock,
            StockStatus::InStock { available: 7 }
        );
    }
    // Once 5 had timed out the breaker opened; the rest did not wait at all.
    assert!(timed_out >= 5, "{timed_out}");
    assert_eq!(hung.calls(), timed_out);
}

#[tokio::test(start_paused = true)]
async fn slow_inventory_leaves_availability_unknown() {
    let engine = MemoryEngine::new();
    let phone = shop(&engine).await;
    let faults = Faults::new();
    faults.add(
        Rule::delay(Latency::fixed(Duration::from_secs(1)))
            .on("stock")
            .on("stocks"),
    );
    let inventory = Faulty::new(engine.inventory.clone(), faults.clone());
    let pages = ProductPages::new(engine.catalog.clone(), inventory, engine.clock.clone());
    let page = pages
        .load(&ProductPageRequest::by_id(phone.id))
        .await
        .unwrap();
    assert!(
        page.variants
            .iter()
            .all(|v| v.stock == StockStatus::Unknown)
    );
    assert_eq!(page.omitted[0].section, Section::Availability);
    assert_eq!(page.elapsed, Duration::from_millis(50));
}

#[tokio::test(start_paused = true)]
async fn a_hung_catalog_fails_the_page_at_its_deadline() {
    let engine = MemoryEngine::new();
    let phone = shop(&engine).await;
    let faults = Faults::new();
    faults.add(
        Rule::hang()
            .on("get_product")
            .on("get_products")
            .on("get_product_by_slug"),
    );
    let catalog = Faulty::new(engine.catalog.clone(), faults.clone());
    let pages = ProductPages::new(catalog, engine.inventory.clone(), engine.clock.clone());
    let start = tokio::time::Instant::now();
    let err = pages
        .load(&ProductPageRequest::by_id(phone.id))
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert_eq!(start.elapsed(), Duration::from_millis(200));
}

/// A cache that fails or hangs on demand.
#[derive(Debug)]
struct BrokenCache(Fault);

#[async_trait]
impl ProductCache for BrokenCache {
    async fn get(&self, _: &ProductKey) -> Result<Option<Product>> {
        match self.0 {
            Fault::Hang => std::future::pending().await,
            _ => Err(Error::backend(true, "cache down")),
        }
    }
    async fn put(&self, _: &Product) -> Result<()> {
        Err(Error::backend(true, "cache down"))
    }
    async fn invalidate(&self, _: &ProductId) -> Result<()> {
        Err(Error::backend(true, "cache down"))
    }
}

#[tokio::test]
async fn the_cache_serves_repeat_pages_and_its_failure_only_costs_a_catalog_read() {
    let engine = MemoryEngine::new();
    let phone = shop(&engine).await;
    let cache = Arc::new(MemoryProductCache::new(
        engine.clock.clone(),
        Duration::from_secs(30),
        100,
    ));
    let pages = pages(&engine).with_cache(cache.clone());
    let req = ProductPageRequest::by_slug(phone.slug.clone());
    assert!(!pages.load(&req).await.unwrap().from_cache);
    let page = pages.load(&req).await.unwrap();
    assert!(page.from_cache);
    assert!(page.omitted.is_empty());
    assert!(
        pages
            .load(&ProductPageRequest::by_id(phone.id.clone()))
            .await
            .unwrap()
            .from_cache
    );

    for fault in [Fault::Fail, Fault::Hang] {
        let broken = pages.clone().with_cache(Arc::new(BrokenCache(fault)));
        let page = broken.load(&req).await.unwrap();
        assert!(!page.from_cache);
        assert_eq!(page.product.id, phone.id);
        assert_eq!(page.omitted.len(), 1, "{:?}", page.omitted);
        assert_eq!(page.omitted[0].section, Section::Cache);
    }
}

#[tokio::test]
async fn the_memory_cache_expires_keeps_the_newest_version_and_follows_slugs() {
    let clock = Arc::new(ManualClock::default());
    let engine = MemoryEngine::with_clock(clock.clone());
    let phone = shop(&engine).await;
    let cache = MemoryProductCache::new(clock.clone(), Duration::from_secs(30), 2);
    cache.put(&phone).await.unwrap();
    let by_slug = ProductKey::Slug(phone.slug.clone());
    assert_eq!(cache.get(&by_slug).await.unwrap().unwrap().id, phone.id);

    // A newer version wins over a late put of an older one.
    let mut newer = phone.clone();
    newer.title = "Phone 2".into();
    newer.slug = Slug::new("phone-2").unwrap();
    newer.version += 1;
    cache.put(&newer).await.unwrap();
    cache.put(&phone).await.unwrap();
    let key = ProductKey::Id(phone.id.clone());
    assert_eq!(
        cache.get(&key).await.unwrap().unwrap().version,
        newer.version
    );
    // The old slug no longer names it.
    assert!(cache.get(&by_slug).await.unwrap().is_none());
    assert!(
        cache
            .get(&ProductKey::Slug(newer.slug.clone()))
            .await
            .unwrap()
            .is_some()
    );

    clock.advance(Duration::from_secs(30));
    assert!(cache.get(&key).await.unwrap().is_none(), "expired");

    // Capacity 2.
    for id in ["case", "strap", "cable"] {
        cache
            .put(&common::product(&engine, id).await)
            .await
            .unwrap();
    }
    assert_eq!(cache.len().await, 2);
    cache.invalidate(&pid("cable")).await.unwrap();
    assert!(
        cache
            .get(&ProductKey::Id(pid("cable")))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn the_memory_cache_keeps_a_hot_product_through_a_stream_of_one_time_reads() {
    let clock = Arc::new(ManualClock::default());
    let engine = MemoryEngine::with_clock(clock.clone());
    let phone = shop(&engine).await;
    let cache = MemoryProductCache::new(clock.clone(), Duration::from_secs(3600), 8);
    cache.put(&phone).await.unwrap();
    let hot = ProductKey::Id(phone.id.clone());
    for _ in 0..20 {
        assert!(cache.get(&hot).await.unwrap().is_some());
    }
    for i in 0..100 {
        let mut cold = phone.clone();
        cold.id = pid(&format!("cold-{i}"));
        cold.slug = Slug::new(format!("cold-{i}")).unwrap();
        cache.put(&cold).await.unwrap();
        cache.get(&ProductKey::Id(cold.id.clone())).await.unwrap();
        // The hot product keeps being read while the one-time products stream by.
        cache.get(&hot).await.unwrap();
    }
    assert!(cache.len().await <= 8, "the capacity holds");
    assert!(
        cache.get(&hot).await.unwrap().is_some(),
        "a product read on every page is not evicted by products read once"
    );
}

#[tokio::test]
async fn views_of_signed_in_shoppers_are_tracked() {
    let engine = MemoryEngine::new();
    let phone = shop(&engine).await;
    let history = Arc::new(MemoryHistory::new());
    let recs = Scripted::new(vec![], Fault::None);
    let pages = pages(&engine)
        .with_view_tracking(history.clone())
        .with_recommender(recs.clone());
    let me = CustomerId::new("me").unwrap();
    let mut req = ProductPageRequest::by_id(phone.id.clone());
    req.customer = Some(me.clone());
    let page = pages.load(&req).await.unwrap();
    assert!(page.omitted.is_empty());
    let seen = history.recent(&me, 10).await.unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].product_id, phone.id);
    // The recommender was asked for this shopper, around this product.
    let asked = recs.last.lock().unwrap().clone().unwrap();
    assert_eq!(asked.customer, Some(me));
    assert_eq!(asked.anchors, vec![phone.id.clone()]);
    // Anonymous pages track nothing.
    pages
        .load(&ProductPageRequest::by_id(phone.id))
        .await
        .unwrap();
    assert_eq!(
        history
            .recent(&CustomerId::new("me").unwrap(), 10)
            .await
            .unwrap()
            .len(),
        1
    );
    let _ = engine.catalog.get_product(&pid("phone")).await.unwrap();
}
