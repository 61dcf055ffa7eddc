//! Recommendations and the product page.
//!
//! * `recommend`: top-10 "also bought" ([`Recommender::also_bought`]: co-purchase
//!   top-K, cart and out-of-stock products left out, best sellers for cold starts) for
//!   anchors drawn with the same skew as purchases, so hot products with many partners
//!   are asked most. Target: p99 under 2 ms.
//! * `product-page`: [`ProductPages::load`] by slug (product, variants, live stock,
//!   prices, 10 blended recommendations, half the shoppers signed in with a history),
//!   once with the real recommender and once with one that hangs; the hung run must
//!   keep p99 under the page deadline. Target: p99 under 20 ms (PostgreSQL + Redis).
//!
//! Setup: `--products N` products (default 100,000; 2,000 with `--quick`), one past
//! order per product with a skewed, clustered basket (1 to 6 products), recorded
//! through the co-purchase store; every tenth product is out of stock.
//!
//! Backends: `memory` only for now. `postgres` (co-purchase counts, catalog and
//! inventory in PostgreSQL, the product cache in Redis) is added when the
//! commerce-postgres and commerce-redis adapters land.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use commerce_core::catalog::{CategoryPath, CategoryTree, Product, Slug};
use commerce_core::id::{CustomerId, LocationId, ProductId};
use commerce_core::memory::MemoryEngine;
use commerce_core::page::{MemoryProductCache, PageConfig, PageRequest, ProductPages};
use commerce_core::recommend::{
    Basket, Interaction, InteractionKind, MemoryCoPurchase, MemoryHistory, ProductRecommender,
    RecommendRequest, Recommendations, Recommender,
};
use commerce_core::resilience::OmissionReason;
use commerce_core::sample::SampleCatalog;
use commerce_core::store::search::{SearchHit, SearchQuery, SearchResults, Suggestion};
use commerce_core::store::{
    CatalogStore, CatalogStoreExt, CoPurchaseStore, HistoryStore, InventoryStore, SearchIndex,
};
use futures::FutureExt;

use super::Scenario;
use crate::harness::{BenchResult, Outcome, Report, Settings, round1, round3, run_closed_loop};

pub(super) fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "recommend",
            about: "top-10 also-bought (co-purchase, cart/stock filters, cold-start fallback)",
            run: |s| recommend(s).boxed(),
        },
        Scenario {
            name: "product-page",
            about: "product page by slug with recommendations; then with the recommender hung",
            run: |s| product_page(s).boxed(),
        },
    ]
}

/// SplitMix64.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A product index in `0..n`, skewed towards low indices (a few best sellers).
fn skewed(h: u64, n: u64) -> u64 {
    let u = (h >> 11) as f64 / (1u64 << 53) as f64;
    ((u * u * u) * n as f64) as u64 % n.max(1)
}

/// Order `o`'s products: a skewed first product and up to 5 partners from its
/// neighbourhood (accessories of the same "bundle"), sometimes a best seller.
fn basket_of(o: u64, n: u64) -> Vec<u64> {
    let h = mix(o);
    let first = skewed(h, n);
    let size = 1 + (mix(h) % 6);
    let mut out = vec![first];
    for k in 1..size {
        let hk = mix(h ^ k);
        let partner = if hk % 5 == 0 {
            skewed(mix(hk), n)
        } else {
            (first + 1 + hk % 12) % n
        };
        out.push(partner);
    }
    out
}

struct Shop {
    engine: MemoryEngine,
    counts: Arc<MemoryCoPurchase>,
    history: Arc<MemoryHistory>,
    slugs: Vec<Slug>,
    products: u64,
    record_orders_per_sec: f64,
    load_seconds: f64,
}

async fn memory_shop(settings: &Settings) -> BenchResult<Shop> {
    let backend = settings.backend_or("memory");
    if backend != "memory" {
        return Err(format!(
            "backend {backend:?} is not available for this scenario yet (memory only; \
             postgres/redis come with the commerce-postgres and commerce-redis adapters)"
        )
        .into());
    }
    let started = Instant::now();
    let n = settings.products_or(100_000, 2_000).max(10);
    let engine = MemoryEngine::new();
    let sample = SampleCatalog::new(&CategoryTree::generated(), 42);
    let main = LocationId::new("main")?;
    let mut slugs = Vec::with_capacity(n as usize);
    for i in 0..n {
        let product = engine.catalog.create_product(sample.product(i)).await?;
        slugs.push(product.slug.clone());
        if i % 10 != 3 {
            engine
                .inventory
                .restock(&SampleCatalog::sku(i, 0), &main, 1_000, "bench")
                .await?;
        }
    }
    let counts = Arc::new(MemoryCoPurchase::new());
    let record_start = Instant::now();
    for o in 0..n {
        let products = basket_of(o, n).into_iter().map(SampleCatalog::product_id);
        counts
            .record(&Basket::new(
                commerce_core::id::OrderId::new(format!("o{o}"))?,
                products,
            ))
            .await?;
    }
    let record_orders_per_sec = n as f64 / record_start.elapsed().as_secs_f64().max(1e-9);
    // Half the shoppers have looked at a few products.
    let history = Arc::new(MemoryHistory::new());
    let now = engine.clock.now();
    for c in 0..1_000u64 {
        let customer = CustomerId::new(format!("c{c}"))?;
        for k in 0..5 {
            let id = SampleCatalog::product_id(skewed(mix(c * 31 + k), n));
            if let Some(p) = engine.catalog.get_product(&id).await? {
                history
                    .record(
                        &customer,
                        &Interaction::new(&p, InteractionKind::Viewed, now),
                    )
                    .await?;
            }
        }
    }
    Ok(Shop {
        engine,
        counts,
        history,
        slugs,
        products: n,
        record_orders_per_sec,
        load_seconds: started.elapsed().as_secs_f64(),
    })
}

async fn recommend(settings: Settings) -> BenchResult<Vec<Report>> {
    let shop = memory_shop(&settings).await?;
    let recommender = Arc::new(Recommender::new(
        shop.counts.clone(),
        shop.engine.catalog.clone(),
        shop.engine.inventory.clone(),
        shop.engine.clock.clone(),
    ));
    let n = shop.products;
    let concurrency = settings.concurrency_or(8);
    let r = recommender.clone();
    let result = run_closed_loop(concurrency, settings.seconds_or(10.0), move |task, i| {
        let r = r.clone();
        // Each request is its own task, as in a server: the load loops then yield to
        // the scheduler (in-memory stores never do), so timers keep firing.
        let request = tokio::spawn(async move {
            let h = mix((task as u64) << 40 ^ i);
            let anchor = SampleCatalog::product_id(skewed(h, n));
            // A cart of 0 to 2 products.
            let cart: Vec<ProductId> = (0..mix(h) % 3)
                .map(|k| SampleCatalog::product_id(skewed(mix(h ^ (k + 7)), n)))
                .collect();
            match r.also_bought(&anchor, &cart, 10).await {
                Ok(recs) if recs.len() == 10 => Outcome::Ok,
                Ok(_) => Outcome::Rejected,
                Err(_) => Outcome::Error,
            }
        });
        async move { request.await.unwrap_or(Outcome::Error) }
    })
    .await;
    Ok(vec![
        result
            .report("recommend", "memory")
            .field("products", n)
            .field("orders", n)
            .field("concurrency", concurrency)
            .field("k", 10)
            .field("target_p99_ms", 2.0)
            .field("record_orders_per_sec", round1(shop.record_orders_per_sec))
            .field("setup_seconds", round3(shop.load_seconds)),
    ])
}

/// A recommender that never answers.
#[derive(Debug)]
struct Hung;

#[async_trait]
impl ProductRecommender for Hung {
    async fn recommend(&self, _: &RecommendRequest) -> commerce_core::Result<Recommendations> {
        std::future::pending().await
    }
}

/// Content similarity stand-in until commerce-search is wired here: the products next
/// to it in its category. Only `similar` is meaningful.
#[derive(Debug)]
struct CategoryNeighbours {
    by_category: HashMap<CategoryPath, Vec<SearchHit>>,
    category_of: HashMap<ProductId, (CategoryPath, usize)>,
}

impl CategoryNeighbours {
    async fn build(engine: &MemoryEngine, n: u64) -> BenchResult<Self> {
        let mut by_category: HashMap<CategoryPath, Vec<SearchHit>> = HashMap::new();
        let mut category_of = HashMap::new();
        for i in 0..n {
            let id = SampleCatalog::product_id(i);
            if let Some(p) = engine.catalog.get_product(&id).await? {
                let list = by_category.entry(p.category.clone()).or_default();
                category_of.insert(id.clone(), (p.category.clone(), list.len()));
                list.push(SearchHit {
                    product_id: p.id.clone(),
                    slug: p.slug.clone(),
                    title: p.title.clone(),
                    brand: p.brand.clone(),
                    category: p.category.clone(),
                    price: p.min_price(),
                    rating: p.rating,
                    score: 1.0,
                    snippet: None,
                });
            }
        }
        Ok(CategoryNeighbours {
            by_category,
            category_of,
        })
    }
}

#[async_trait]
impl SearchIndex for CategoryNeighbours {
    async fn upsert(&self, _: &[Product]) -> commerce_core::Result<()> {
        Ok(())
    }
    async fn remove(&self, _: &[ProductId]) -> commerce_core::Result<()> {
        Ok(())
    }
    async fn refresh(&self) -> commerce_core::Result<()> {
        Ok(())
    }
    async fn search(&self, _: &SearchQuery) -> commerce_core::Result<SearchResults> {
        Ok(SearchResults::default())
    }
    async fn autocomplete(&self, _: &str, _: u32) -> commerce_core::Result<Vec<Suggestion>> {
        Ok(Vec::new())
    }
    async fn similar(&self, id: &ProductId, limit: u32) -> commerce_core::Result<Vec<SearchHit>> {
        let Some((category, at)) = self.category_of.get(id) else {
            return Ok(Vec::new());
        };
        let Some(list) = self.by_category.get(category) else {
            return Ok(Vec::new());
        };
        Ok(list
            .iter()
            .skip(at.saturating_sub(limit as usize / 2))
            .filter(|h| &h.product_id != id)
            .take(limit as usize)
            .cloned()
            .collect())
    }
    async fn count(&self) -> commerce_core::Result<u64> {
        Ok(self.category_of.len() as u64)
    }
}

async fn product_page(settings: Settings) -> BenchResult<Vec<Report>> {
    let shop = Arc::new(memory_shop(&settings).await?);
    let n = shop.products;
    let index = Arc::new(CategoryNeighbours::build(&shop.engine, n).await?);
    let recommender = Recommender::new(
        shop.counts.clone(),
        shop.engine.catalog.clone(),
        shop.engine.inventory.clone(),
        shop.engine.clock.clone(),
    )
    .with_search(index)
    .with_history(shop.history.clone());
    let cache = Arc::new(MemoryProductCache::new(
        shop.engine.clock.clone(),
        Duration::from_secs(30),
        100_000,
    ));
    let base = ProductPages::new(
        shop.engine.catalog.clone(),
        shop.engine.inventory.clone(),
        shop.engine.clock.clone(),
    )
    .with_cache(cache)
    .with_view_tracking(shop.history.clone());
    let deadline = PageConfig::default().deadline;
    let concurrency = settings.concurrency_or(16);
    let seconds = settings.seconds_or(10.0);
    let mut reports = Vec::new();
    for (label, pages) in [
        (
            "healthy",
            base.clone().with_recommender(Arc::new(recommender)),
        ),
        ("hung", base.clone().with_recommender(Arc::new(Hung))),
    ] {
        let pages = Arc::new(pages);
        let omitted = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let timed_out = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (p, s, o, t) = (
            pages.clone(),
            shop.clone(),
            omitted.clone(),
            timed_out.clone(),
        );
        let result = run_closed_loop(concurrency, seconds, move |task, i| {
            let (pages, shop, omitted, timed_out) = (p.clone(), s.clone(), o.clone(), t.clone());
            let request = tokio::spawn(async move {
                let h = mix((task as u64) << 40 ^ i ^ 0xABCD);
                let idx = skewed(h, n) as usize;
                let mut req = PageRequest::by_slug(shop.slugs[idx].clone());
                if h % 2 == 0 {
                    req.customer = CustomerId::new(format!("c{}", mix(h) % 1_000)).ok();
                }
                match pages.load(&req).await {
                    Ok(page) => {
                        if !page.omitted.is_empty() {
                            omitted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        if page
                            .omitted
                            .iter()
                            .any(|o| matches!(o.reason, OmissionReason::TimedOut { .. }))
                        {
                            timed_out.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        Outcome::Ok
                    }
                    Err(_) => Outcome::Error,
                }
            });
            async move { request.await.unwrap_or(Outcome::Error) }
        })
        .await;
        let pages_done = result.ops.max(1) as f64;
        let p99 = result.latencies.quantile_ms(0.99);
        reports.push(
            result
                .report("product-page", "memory")
                .field("recommender", label)
                .field("products", n)
                .field("orders", n)
                .field("concurrency", concurrency)
                .field("deadline_ms", deadline.as_millis() as u64)
                .field("max_ms", round3(result.latencies.quantile_ms(1.0)))
                .field("p99_under_deadline", p99 < deadline.as_secs_f64() * 1000.0)
                .field(
                    "omitted_rate",
                    round3(omitted.load(std::sync::atomic::Ordering::Relaxed) as f64 / pages_done),
                )
                .field(
                    "timed_out",
                    timed_out.load(std::sync::atomic::Ordering::Relaxed),
                )
                .field("target_p99_ms", 20.0)
                .field("similar", "category-neighbours stand-in"),
        );
    }
    Ok(reports)
}
