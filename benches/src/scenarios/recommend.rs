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
//! Backends (`--backend`): `memory` (default), or `postgres` (catalog, inventory,
//! co-purchase counts and histories in PostgreSQL, the product cache in Redis; default
//! 1,000,000 products and orders, kept in schema `bench_reco_<n>` for reuse).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use commerce_core::browse::{
    MemoryProductCache, ProductCache, ProductPageConfig, ProductPageRequest, ProductPages,
};
use commerce_core::catalog::{CategoryPath, CategoryTree, Product, Slug};
use commerce_core::clock::{Clock, SystemClock};
use commerce_core::id::{CustomerId, LocationId, ProductId};
use commerce_core::memory::MemoryEngine;
use commerce_core::recommend::{
    Basket, CachedCoPurchase, Interaction, InteractionKind, MemoryCoPurchase, MemoryHistory,
    ProductRecommender, RecommendRequest, Recommendations, Recommender,
};
use commerce_core::resilience::OmissionReason;
use commerce_core::sample::SampleCatalog;
use commerce_core::store::search::{SearchHit, SearchQuery, SearchResults, Suggestion};
use commerce_core::store::{
    CatalogStore, CatalogStoreExt, CoPurchaseStore, HistoryStore, InventoryStore, SearchIndex,
};
use commerce_postgres::{PgCommerce, PgConfig};
use commerce_redis::{CacheConfig, CachedCatalog, RedisConfig};
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
    backend: &'static str,
    catalog: Arc<dyn CatalogStore>,
    inventory: Arc<dyn InventoryStore>,
    clock: Arc<dyn Clock>,
    counts: Arc<dyn CoPurchaseStore>,
    history: Arc<dyn HistoryStore>,
    cache: Arc<dyn ProductCache>,
    /// The catalog the recommender reads candidates from (through the cache when there
    /// is one in Redis).
    read_catalog: Arc<dyn CatalogStore>,
    /// The in-memory engine (memory backend): the similar-products stand-in reads it.
    engine: Option<MemoryEngine>,
    /// Product `i`'s id.
    id_of: fn(u64) -> ProductId,
    slugs: Vec<Slug>,
    products: u64,
    record_orders_per_sec: f64,
    load_seconds: f64,
    reused: bool,
}

/// The shop on the backend asked for: `memory` (default) or `postgres` (catalog,
/// inventory, co-purchase counts and histories in PostgreSQL, the product cache in
/// Redis; needs `DATABASE_URL` and `REDIS_URL`).
async fn shop(settings: &Settings) -> BenchResult<Shop> {
    match settings.backend_or("memory") {
        "memory" => memory_shop(settings).await,
        "postgres" => pg_shop(settings).await,
        other => Err(format!("unknown backend {other:?} (memory or postgres)").into()),
    }
}

async fn memory_shop(settings: &Settings) -> BenchResult<Shop> {
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
    let counts: Arc<dyn CoPurchaseStore> = Arc::new(MemoryCoPurchase::new());
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
    let history: Arc<dyn HistoryStore> = Arc::new(MemoryHistory::new());
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
    let cache: Arc<dyn ProductCache> = Arc::new(MemoryProductCache::new(
        engine.clock.clone(),
        Duration::from_secs(30),
        100_000,
    ));
    Ok(Shop {
        backend: "memory",
        catalog: engine.catalog.clone(),
        inventory: engine.inventory.clone(),
        clock: engine.clock.clone(),
        counts,
        history,
        cache,
        read_catalog: engine.catalog.clone(),
        engine: Some(engine),
        id_of: SampleCatalog::product_id,
        slugs,
        products: n,
        record_orders_per_sec,
        load_seconds: started.elapsed().as_secs_f64(),
        reused: false,
    })
}

/// Product `i` of the PostgreSQL bench catalog (`load_catalog`: ids `p1..pn`).
fn pg_product_id(i: u64) -> ProductId {
    ProductId::new(format!("p{}", i + 1)).unwrap_or_else(|_| SampleCatalog::product_id(i))
}

/// `n` products (2 variants each) in PostgreSQL with stock for nine in ten, one past
/// order per product recorded in the co-purchase tables, 1,000 shoppers' histories;
/// the product cache in Redis. Reuses schema `bench_reco_<n>` when it is complete.
async fn pg_shop(settings: &Settings) -> BenchResult<Shop> {
    let started = Instant::now();
    let n = settings.products_or(1_000_000, 2_000).max(10);
    let redis_url = settings.require_redis_url()?.to_owned();
    let pool = super::postgres::pool(settings, 32).await?;
    let schema = format!("bench_reco_{n}");
    let q = |sql: String| sqlx::AssertSqlSafe(sql);
    let existing = PgCommerce::from_pool(pool.clone(), PgConfig::new().schema(&schema)?);
    let reused = existing.migrate().await.is_ok()
        && existing.co_purchase().orders_recorded().await.unwrap_or(0) == n
        && existing
            .history()
            .recent(&CustomerId::new("c0")?, 1)
            .await
            .map(|h| h.len())
            .unwrap_or(0)
            == 1;
    let mut record_orders_per_sec = 0.0;
    let pg = if reused {
        eprintln!("recommend: reusing schema {schema}");
        existing
    } else {
        let pg = super::postgres::load_catalog(&pool, &schema, n).await?;
        let s = &schema;
        for table in [
            "stock_levels",
            "stock_skus",
            "stock_movements",
            "co_purchase_orders",
            "co_purchase_popularity",
            "co_purchase_pairs",
            "shopper_history",
        ] {
            sqlx::query(q(format!("TRUNCATE \"{s}\".{table}")))
                .execute(&pool)
                .await?;
        }
        eprintln!("recommend: stocking {n} products");
        for (table, cols, vals) in [
            (
                "stock_levels",
                "sku, location, received, available",
                "'P' || g || '-1', 'main', 1000, 1000",
            ),
            ("stock_skus", "sku", "'P' || g || '-1'"),
            (
                "stock_movements",
                "sku, location, kind, quantity, reason, at",
                "'P' || g || '-1', 'main', 'received', 1000, 'bench', now()",
            ),
        ] {
            sqlx::query(q(format!(
                "INSERT INTO \"{s}\".{table} ({cols})
                 SELECT {vals} FROM generate_series(1, $1::bigint) g WHERE g % 10 <> 4"
            )))
            .bind(n as i64)
            .execute(&pool)
            .await?;
        }
        eprintln!("recommend: recording {n} past orders");
        let counts = Arc::new(pg.co_purchase());
        let record_start = Instant::now();
        let batch = 1_000u64;
        let mut tasks = Vec::new();
        for worker in 0..4u64 {
            let counts = counts.clone();
            tasks.push(tokio::spawn(async move {
                let mut from = worker * batch;
                while from < n {
                    let baskets: Vec<Basket> = (from..(from + batch).min(n))
                        .map(|o| {
                            Ok(Basket::new(
                                commerce_core::id::OrderId::new(format!("o{o}"))?,
                                basket_of(o, n).into_iter().map(pg_product_id),
                            ))
                        })
                        .collect::<commerce_core::Result<_>>()?;
                    let mut attempt = 0;
                    loop {
                        match counts.record_all(&baskets).await {
                            Ok(_) => break,
                            Err(e) if e.is_retryable() && attempt < 5 => attempt += 1,
                            Err(e) => return Err(e),
                        }
                    }
                    from += 4 * batch;
                }
                Ok::<(), commerce_core::Error>(())
            }));
        }
        for t in tasks {
            t.await??;
        }
        record_orders_per_sec = n as f64 / record_start.elapsed().as_secs_f64().max(1e-9);
        let history = pg.history();
        let now = SystemClock.now();
        for c in 0..1_000u64 {
            let customer = CustomerId::new(format!("c{c}"))?;
            for k in 0..5 {
                let id = pg_product_id(skewed(mix(c * 31 + k), n));
                if let Some(p) = pg.catalog.get_product(&id).await? {
                    history
                        .record(
                            &customer,
                            &Interaction::new(&p, InteractionKind::Viewed, now),
                        )
                        .await?;
                }
            }
        }
        sqlx::query(q(format!("ANALYZE \"{s}\".co_purchase_pairs")))
            .execute(&pool)
            .await?;
        pg
    };
    // Fresh statistics, as autovacuum would have them on a running shop.
    sqlx::query(q(format!(
        "ANALYZE \"{schema}\".stock_levels, \"{schema}\".stock_skus,
                 \"{schema}\".co_purchase_pairs, \"{schema}\".co_purchase_popularity,
                 \"{schema}\".shopper_history"
    )))
    .execute(&pool)
    .await?;
    // The bench catalog is loaded as drafts; pages and recommendations show ACTIVE only.
    sqlx::query(q(format!(
        "UPDATE \"{schema}\".products
         SET status = 'ACTIVE', body = jsonb_set(body, '{{status}}', '\"ACTIVE\"')
         WHERE status <> 'ACTIVE'"
    )))
    .execute(&pool)
    .await?;
    // One cache per data set, kept between runs like a running shop's (emptied when the
    // data set is reloaded).
    let redis = RedisConfig::single(redis_url)
        .with_prefix(format!("bench-reco-{n}"))?
        .connect()
        .await?;
    if !reused {
        redis.delete_all().await?;
    }
    let cached = Arc::new(CachedCatalog::new(
        pg.catalog.clone(),
        redis,
        CacheConfig::default(),
    ));
    let slugs = (1..=n)
        .map(|g| Slug::new(format!("product-{g}")))
        .collect::<commerce_core::Result<Vec<_>>>()?;
    Ok(Shop {
        backend: "postgres+redis",
        catalog: pg.catalog.clone(),
        inventory: pg.inventory.clone(),
        clock: Arc::new(SystemClock),
        // Rankings cached in process for a minute (the documented lag bound).
        counts: Arc::new(CachedCoPurchase::new(
            Arc::new(pg.co_purchase()),
            Duration::from_secs(60),
            1_000_000,
        )),
        history: Arc::new(pg.history()),
        cache: cached.clone(),
        read_catalog: cached,
        engine: None,
        id_of: pg_product_id,
        slugs,
        products: n,
        record_orders_per_sec,
        load_seconds: started.elapsed().as_secs_f64(),
        reused,
    })
}

async fn recommend(settings: Settings) -> BenchResult<Vec<Report>> {
    let shop = shop(&settings).await?;
    let recommender = Arc::new(Recommender::new(
        shop.counts.clone(),
        shop.read_catalog.clone(),
        shop.inventory.clone(),
        shop.clock.clone(),
    ));
    let n = shop.products;
    let id_of = shop.id_of;
    let concurrency = settings.concurrency_or(8);
    let load = move |seed: u64, r: Arc<Recommender>| {
        move |task: usize, i: u64| {
            let r = r.clone();
            // Each request is its own task, as in a server: the load loops then yield to
            // the scheduler (in-memory stores never do), so timers keep firing.
            let request = tokio::spawn(async move {
                let h = mix((task as u64) << 40 ^ i ^ seed);
                let anchor = id_of(skewed(h, n));
                // A cart of 0 to 2 products.
                let cart: Vec<ProductId> = (0..mix(h) % 3)
                    .map(|k| id_of(skewed(mix(h ^ (k + 7)), n)))
                    .collect();
                match r.also_bought(&anchor, &cart, 10).await {
                    Ok(recs) if recs.len() == 10 => Outcome::Ok,
                    Ok(_) => Outcome::Rejected,
                    Err(_) => Outcome::Error,
                }
            });
            async move { request.await.unwrap_or(Outcome::Error) }
        }
    };
    // Warm-up, unmeasured: connection pools and the product cache, as in a running shop.
    let warm_seconds = Duration::from_millis(if settings.quick { 300 } else { 3_000 });
    run_closed_loop(concurrency, warm_seconds, load(0x5EED, recommender.clone())).await;
    let result = run_closed_loop(
        concurrency,
        settings.seconds_or(10.0),
        load(0, recommender.clone()),
    )
    .await;
    Ok(vec![
        result
            .report("recommend", shop.backend)
            .field("products", n)
            .field("orders", n)
            .field("concurrency", concurrency)
            .field("k", 10)
            .field("target_p99_ms", 2.0)
            .field("record_orders_per_sec", round1(shop.record_orders_per_sec))
            .field("setup_seconds", round3(shop.load_seconds))
            .field("reused_data", shop.reused),
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
    let shop = Arc::new(shop(&settings).await?);
    let n = shop.products;
    // Fresh services (and so fresh circuit breakers) for every run.
    let index: Option<Arc<dyn SearchIndex>> = match &shop.engine {
        Some(engine) => Some(Arc::new(CategoryNeighbours::build(engine, n).await?)),
        None => None,
    };
    let similar = if index.is_some() {
        "category-neighbours stand-in"
    } else {
        "none (co-purchase and best sellers only)"
    };
    let make_recommender = || {
        let r = Recommender::new(
            shop.counts.clone(),
            shop.read_catalog.clone(),
            shop.inventory.clone(),
            shop.clock.clone(),
        )
        .with_history(shop.history.clone());
        match &index {
            Some(i) => r.with_search(i.clone()),
            None => r,
        }
    };
    let make_base = || {
        ProductPages::new(
            shop.catalog.clone(),
            shop.inventory.clone(),
            shop.clock.clone(),
        )
        .with_cache(shop.cache.clone())
        .with_view_tracking(shop.history.clone())
    };
    // Warm-up (connection pools, caches), unmeasured: a cold pool's first requests
    // would trip the breakers of the measured run.
    {
        let warm = Arc::new(make_base().with_recommender(Arc::new(make_recommender())));
        let (w, s) = (warm.clone(), shop.clone());
        let warm_seconds = Duration::from_millis(if settings.quick { 300 } else { 2_000 });
        run_closed_loop(settings.concurrency_or(16), warm_seconds, move |task, i| {
            let (pages, shop) = (w.clone(), s.clone());
            let request = tokio::spawn(async move {
                let idx = skewed(mix((task as u64) << 40 ^ i ^ 0x5EED), n) as usize;
                match pages
                    .load(&ProductPageRequest::by_slug(shop.slugs[idx].clone()))
                    .await
                {
                    Ok(_) => Outcome::Ok,
                    Err(_) => Outcome::Error,
                }
            });
            async move { request.await.unwrap_or(Outcome::Error) }
        })
        .await;
    }
    let deadline = ProductPageConfig::default().deadline;
    let concurrency = settings.concurrency_or(16);
    let seconds = settings.seconds_or(10.0);
    let mut reports = Vec::new();
    for (label, pages) in [
        (
            "healthy",
            make_base().with_recommender(Arc::new(make_recommender())),
        ),
        ("hung", make_base().with_recommender(Arc::new(Hung))),
    ] {
        let pages = Arc::new(pages);
        let omitted = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let omitted_sections: Arc<std::sync::Mutex<std::collections::BTreeMap<String, u64>>> =
            Arc::default();
        let sections_all = omitted_sections.clone();
        let timed_out = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (p, s, o, t) = (
            pages.clone(),
            shop.clone(),
            omitted.clone(),
            timed_out.clone(),
        );
        let result = run_closed_loop(concurrency, seconds, move |task, i| {
            let (pages, shop, omitted, timed_out) = (p.clone(), s.clone(), o.clone(), t.clone());
            let sections = sections_all.clone();
            let request = tokio::spawn(async move {
                let h = mix((task as u64) << 40 ^ i ^ 0xABCD);
                let idx = skewed(h, n) as usize;
                let mut req = ProductPageRequest::by_slug(shop.slugs[idx].clone());
                if h % 2 == 0 {
                    req.customer = CustomerId::new(format!("c{}", mix(h) % 1_000)).ok();
                }
                match pages.load(&req).await {
                    Ok(page) => {
                        if !page.omitted.is_empty() {
                            omitted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            if let Ok(mut by) = sections.lock() {
                                for o in &page.omitted {
                                    *by.entry(o.to_string()).or_insert(0u64) += 1;
                                }
                            }
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
                    Err(e) => {
                        static FIRST: std::sync::Once = std::sync::Once::new();
                        FIRST.call_once(|| eprintln!("product-page: first error: {e}"));
                        Outcome::Error
                    }
                }
            });
            async move { request.await.unwrap_or(Outcome::Error) }
        })
        .await;
        let pages_done = result.ops.max(1) as f64;
        let p99 = result.latencies.quantile_ms(0.99);
        reports.push(
            result
                .report("product-page", shop.backend)
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
                .field(
                    "omitted_by_section",
                    omitted_sections
                        .lock()
                        .map(|m| m.clone())
                        .unwrap_or_default(),
                )
                .field("similar", similar)
                .field("reused_data", shop.reused),
        );
    }
    Ok(reports)
}
