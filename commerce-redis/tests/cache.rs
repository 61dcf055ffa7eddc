//! The product cache: read-through, one loader per key, negative caching, invalidation
//! from the events; on one Redis server and on the cluster.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use commerce_core::Result;
use commerce_core::catalog::{Category, CategoryPath, NewProduct, Product, Slug};
use commerce_core::id::{ConsumerName, ProductId, SellerId, Sku};
use commerce_core::memory::MemoryEngine;
use commerce_core::store::{CatalogStore, CatalogStoreExt, Page, ProductQuery};
use commerce_redis::{CacheConfig, CacheInvalidator, CachedCatalog, RedisBackend};

/// A catalog that counts its point reads and is slow to answer them.
#[derive(Debug)]
struct Counting {
    inner: Arc<dyn CatalogStore>,
    reads: AtomicUsize,
}

impl Counting {
    async fn slow(&self) {
        self.reads.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

#[async_trait]
impl CatalogStore for Counting {
    async fn insert_product(&self, new: NewProduct, slug: Slug) -> Result<Product> {
        self.inner.insert_product(new, slug).await
    }
    async fn update_product(&self, product: Product) -> Result<Product> {
        self.inner.update_product(product).await
    }
    async fn get_product(&self, id: &ProductId) -> Result<Option<Product>> {
        self.slow().await;
        self.inner.get_product(id).await
    }
    async fn get_product_by_slug(&self, slug: &Slug) -> Result<Option<Product>> {
        self.slow().await;
        self.inner.get_product_by_slug(slug).await
    }
    async fn get_product_by_sku(&self, sku: &Sku) -> Result<Option<Product>> {
        self.slow().await;
        self.inner.get_product_by_sku(sku).await
    }
    async fn list_products(&self, query: &ProductQuery) -> Result<Page<Product, ProductId>> {
        self.inner.list_products(query).await
    }
    async fn put_categories(
        &self,
        categories: &[Category],
    ) -> Result<commerce_core::catalog::CategoryWrite> {
        self.inner.put_categories(categories).await
    }
    async fn categories(&self, root: Option<&CategoryPath>) -> Result<Vec<Category>> {
        self.inner.categories(root).await
    }
}

fn new_product(sku: &str) -> NewProduct {
    NewProduct::new(
        SellerId::new("s1").expect("id"),
        "Phone",
        CategoryPath::parse("Electronics > Phones").expect("path"),
        "Acme",
        Sku::new(sku).expect("sku"),
        "199.00 USD".parse().expect("money"),
    )
}

async fn read_through_single_flight_negative_and_invalidation(redis: RedisBackend) {
    let engine = MemoryEngine::new();
    let counting = Arc::new(Counting {
        inner: engine.catalog.clone(),
        reads: AtomicUsize::new(0),
    });
    let product = engine
        .catalog
        .create_product(new_product("PH-1"))
        .await
        .expect("insert");
    let cache = Arc::new(CachedCatalog::new(
        counting.clone(),
        redis.clone(),
        CacheConfig {
            // Generous: a loaded test machine must not turn hits into fall-throughs.
            command_timeout: std::time::Duration::from_secs(5),
            ..CacheConfig::default()
        },
    ));

    // A stampede on a cold key: one load.
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (cache, id) = (cache.clone(), product.id.clone());
            tokio::spawn(async move { cache.get_product(&id).await })
        })
        .collect();
    for t in tasks {
        let got = t.await.expect("task").expect("get");
        assert_eq!(got.as_ref(), Some(&product));
    }
    assert_eq!(
        counting.reads.load(Ordering::SeqCst),
        1,
        "one loader per key"
    );

    // Hits by id, slug and SKU.
    let before = counting.reads.load(Ordering::SeqCst);
    for _ in 0..10 {
        assert_eq!(
            cache.get_product(&product.id).await.expect("get"),
            Some(product.clone())
        );
        assert_eq!(
            cache
                .get_product_by_slug(&product.slug)
                .await
                .expect("slug"),
            Some(product.clone())
        );
        assert_eq!(
            cache
                .get_product_by_sku(&Sku::new("PH-1").expect("sku"))
                .await
                .expect("sku"),
            Some(product.clone())
        );
    }
    assert_eq!(counting.reads.load(Ordering::SeqCst), before, "all hits");

    // Negative caching, stampede included.
    let missing = ProductId::new("nope").expect("id");
    let before = counting.reads.load(Ordering::SeqCst);
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (cache, id) = (cache.clone(), missing.clone());
            tokio::spawn(async move { cache.get_product(&id).await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.expect("task").expect("get"), None);
    }
    assert_eq!(cache.get_product(&missing).await.expect("get"), None);
    assert_eq!(
        counting.reads.load(Ordering::SeqCst),
        before + 1,
        "a miss is cached"
    );

    // A change made behind the cache's back: stale until the invalidator runs.
    let mut changed = product.clone();
    changed.title = "Phone 2".into();
    let changed = engine
        .catalog
        .update_product(changed)
        .await
        .expect("update");
    assert_eq!(
        cache
            .get_product(&product.id)
            .await
            .expect("get")
            .map(|p| p.version),
        Some(product.version),
        "the cache serves its copy until invalidated"
    );
    let invalidator = CacheInvalidator::new(
        cache.clone(),
        engine.events.clone(),
        ConsumerName::new("cache-test").expect("name"),
    );
    let n = invalidator
        .run_once(Duration::from_millis(10))
        .await
        .expect("invalidate");
    assert!(n >= 1, "the ProductChanged events were applied");
    assert_eq!(
        cache.get_product(&product.id).await.expect("get"),
        Some(changed.clone())
    );
    assert_eq!(
        cache
            .get_product_by_slug(&changed.slug)
            .await
            .expect("slug"),
        Some(changed.clone())
    );

    // The same in the background: the spawned invalidator picks up a change behind the
    // cache's back without being polled, and reports it when shut down.
    let task = CacheInvalidator::new(
        cache.clone(),
        engine.events.clone(),
        ConsumerName::new("cache-test-spawned").expect("name"),
    )
    .spawn(Duration::from_millis(20));
    let mut behind = changed.clone();
    behind.title = "Phone 2b".into();
    let behind = engine.catalog.update_product(behind).await.expect("update");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while cache.get_product(&product.id).await.expect("get").as_ref() != Some(&behind) {
        assert!(
            std::time::Instant::now() < deadline,
            "the spawned invalidator never invalidated the changed product"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let invalidated = task.shutdown().await.expect("shutdown");
    assert!(
        invalidated >= 1,
        "the spawned invalidator counted {invalidated}"
    );
    let changed = behind;

    // Writes through the cache are visible at once.
    let mut again = changed.clone();
    again.title = "Phone 3".into();
    let again = cache.update_product(again).await.expect("update");
    assert_eq!(
        cache.get_product(&product.id).await.expect("get"),
        Some(again)
    );

    // A negative entry does not hide a product created through the cache.
    let sku2 = Sku::new("PH-2").expect("sku");
    assert_eq!(cache.get_product_by_sku(&sku2).await.expect("sku"), None);
    let created = cache
        .create_product(new_product("PH-2"))
        .await
        .expect("create");
    assert_eq!(
        cache.get_product_by_sku(&sku2).await.expect("sku"),
        Some(created)
    );
}

async fn as_a_product_cache(redis: RedisBackend) {
    use commerce_core::browse::{ProductCache, ProductKey};
    let engine = MemoryEngine::new();
    let cache = CachedCatalog::new(engine.catalog.clone(), redis, CacheConfig::default());
    let v1 = engine
        .catalog
        .create_product(new_product("PC-1"))
        .await
        .expect("insert");
    let by_id = ProductKey::Id(v1.id.clone());
    let by_slug = ProductKey::Slug(v1.slug.clone());
    assert_eq!(
        ProductCache::get(&cache, &by_id).await.expect("get"),
        None,
        "a miss"
    );
    cache.put(&v1).await.expect("put");
    assert_eq!(
        ProductCache::get(&cache, &by_id).await.expect("get"),
        Some(v1.clone())
    );
    assert_eq!(
        ProductCache::get(&cache, &by_slug).await.expect("get"),
        Some(v1.clone())
    );
    let mut v2 = v1.clone();
    v2.version += 1;
    v2.title = "Newer".into();
    cache.put(&v2).await.expect("put v2");
    cache.put(&v1).await.expect("put v1 again");
    assert_eq!(
        ProductCache::get(&cache, &by_id).await.expect("get"),
        Some(v2.clone()),
        "an older version never replaces a newer one"
    );
    ProductCache::invalidate(&cache, &v1.id)
        .await
        .expect("invalidate");
    assert_eq!(ProductCache::get(&cache, &by_id).await.expect("get"), None);
    assert_eq!(
        ProductCache::get(&cache, &by_slug).await.expect("get"),
        None
    );
    cache.put(&v1).await.expect("put after invalidate");
    assert_eq!(
        ProductCache::get(&cache, &by_slug).await.expect("get"),
        Some(v1)
    );
}

/// Batch reads: misses are read from the wrapped store once, then served from Redis
/// (one pipeline), and an update is seen at once.
async fn batch_reads_fill_then_hit(redis: RedisBackend) {
    let engine = MemoryEngine::new();
    let counting = Arc::new(Counting {
        inner: engine.catalog.clone(),
        reads: AtomicUsize::new(0),
    });
    let cache = CachedCatalog::new(
        counting.clone(),
        redis.clone(),
        CacheConfig {
            command_timeout: std::time::Duration::from_secs(5),
            ..CacheConfig::default()
        },
    );
    let mut ids = Vec::new();
    for i in 0..5 {
        let mut new = new_product(&format!("B-{i}"));
        new.id = Some(ProductId::new(format!("batch-{i}")).expect("id"));
        // Straight into the wrapped store: cold in Redis.
        ids.push(engine.catalog.create_product(new).await.expect("insert").id);
    }
    let missing = ProductId::new("batch-none").expect("id");
    let mut asked = vec![ids[3].clone(), missing.clone()];
    asked.extend(ids.iter().cloned());
    let expected: Vec<Product> = {
        let mut out = Vec::new();
        for id in [&ids[3], &ids[0], &ids[1], &ids[2], &ids[4]] {
            out.push(
                engine
                    .catalog
                    .get_product(id)
                    .await
                    .expect("read")
                    .expect("there"),
            );
        }
        out
    };

    let before = counting.reads.load(Ordering::SeqCst);
    assert_eq!(cache.get_products(&asked).await.expect("batch"), expected);
    assert_eq!(
        counting.reads.load(Ordering::SeqCst) - before,
        6,
        "each distinct miss read once (5 products and the missing one)"
    );
    let before = counting.reads.load(Ordering::SeqCst);
    assert_eq!(cache.get_products(&asked).await.expect("batch"), expected);
    assert_eq!(
        counting.reads.load(Ordering::SeqCst),
        before,
        "all hits, the missing one included"
    );

    // An update through the cache invalidates: the next batch reads it again.
    let mut changed = expected[0].clone();
    changed.title = "Phone, renamed".into();
    let changed = cache.update_product(changed).await.expect("update");
    let again = cache.get_products(&asked).await.expect("batch");
    assert_eq!(again[0], changed);
    assert_eq!(again[1..], expected[1..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cached_catalog_on_single_redis_and_cluster() {
    for redis in [
        common::single("cache").await,
        common::cluster("cache").await,
    ] {
        read_through_single_flight_negative_and_invalidation(redis.clone()).await;
        as_a_product_cache(redis.clone()).await;
        batch_reads_fill_then_hit(redis.clone()).await;
        redis.delete_all().await.expect("cleanup");
    }
}
