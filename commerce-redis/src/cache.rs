//! [`CachedCatalog`]: a read-through Redis cache in front of any [`CatalogStore`], and
//! [`CacheInvalidator`], which keeps it fresh from the domain events.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use commerce_core::browse::{ProductCache, ProductKey};
use commerce_core::catalog::{Category, CategoryPath, NewProduct, Product, Slug};
use commerce_core::clock::SystemClock;
use commerce_core::event::DomainEvent;
use commerce_core::id::{ConsumerName, ProductId, Sku};
use commerce_core::resilience::{BreakerConfig, CircuitBreaker};
use commerce_core::service::BackgroundTask;
use commerce_core::store::{CatalogStore, EventLog, Page, ProductQuery, distinct_batch};
use commerce_core::{Error, Result};
use redis::Script;
use tokio::sync::Mutex as AsyncMutex;
use tracing::instrument;

use crate::backend::RedisBackend;
use crate::error::map;

static PUT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/cache_put.lua")));
static UNMARK: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/cache_unmark.lua")));
static UNLOCK: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/unlock.lua")));
static INVALIDATE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/cache_invalidate.lua")));

/// Time-to-lives and stampede settings of a [`CachedCatalog`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CacheConfig {
    /// How long a product stays cached (default 5 minutes). Prices on pages may lag a
    /// change by at most this when an invalidation is lost; checkout re-prices anyway.
    pub ttl: Duration,
    /// How long "no such product" is remembered (default 30 s).
    pub negative_ttl: Duration,
    /// How long an invalidation blocks loaders that read an older version (default 60 s).
    pub invalidation_ttl: Duration,
    /// The cross-process loader lock's lifetime (default 2 s).
    pub lock_ttl: Duration,
    /// How long a process that lost the loader lock waits for the winner's result before
    /// loading itself (default 100 ms).
    pub lock_wait: Duration,
    /// Longest wait for one cache command before the read falls through to the wrapped
    /// store (default 250 ms).
    pub command_timeout: Duration,
    /// The breaker that stops asking a failing Redis (reads go straight to the wrapped
    /// store while it is open).
    pub breaker: BreakerConfig,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            ttl: Duration::from_secs(300),
            negative_ttl: Duration::from_secs(30),
            invalidation_ttl: Duration::from_secs(60),
            lock_ttl: Duration::from_secs(2),
            lock_wait: Duration::from_millis(100),
            command_timeout: Duration::from_millis(250),
            breaker: BreakerConfig::default(),
        }
    }
}

/// What a cache lookup found.
enum Entry<T> {
    Hit(T),
    Missing,
    Miss,
}

/// A read-through cache of products on Redis that wraps any [`CatalogStore`] and is one
/// itself.
///
/// * **Reads** (`get_product`, `get_product_by_slug`, `get_product_by_sku`) come from
///   Redis; a miss loads from the wrapped store and fills the cache. A product is cached
///   under its id (`<prefix>:cat:{p:<id>}`, the JSON with its version); slugs and SKUs
///   point to the id and are checked against the product on every hit, so a stale
///   pointer is a miss, never a wrong product.
/// * **Stampedes**: one loader per key at a time — a per-key async lock in the process
///   and a short `SET NX PX` lock in Redis across processes; the others wait for its
///   result.
/// * **Negative caching**: "no such product" is cached for
///   [`CacheConfig::negative_ttl`].
/// * **Freshness**: writes through this decorator update the cache; changes made
///   elsewhere reach it through [`CacheInvalidator`] (from the `ProductChanged` events).
///   An invalidation records the new version, and a cache fill never replaces a newer
///   version, so a slow loader cannot put an old row back.
/// * **Redis down**: reads fall through to the wrapped store (the page degrades, it does
///   not fail); writes go to the wrapped store and the cache catches up by TTL.
/// * **Its own connection** when other features share Redis: commands queue on one
///   multiplexed connection, so a burst of others' commands (a flash sale's admissions)
///   can hold the cache's reads past [`CacheConfig::command_timeout`], which the
///   breaker counts as failures. Connect once more for the cache (the storefront
///   example does).
/// * Listings and categories are passed through uncached.
///
/// ```no_run
/// # async fn demo() -> commerce_core::Result<()> {
/// use std::sync::Arc;
/// use commerce_core::memory::MemoryEngine;
/// use commerce_core::store::CatalogStore;
/// use commerce_core::id::ProductId;
/// use commerce_redis::{CacheConfig, CachedCatalog, RedisConfig};
///
/// let engine = MemoryEngine::new();
/// let redis = RedisConfig::single("redis://127.0.0.1:6379").with_prefix("shop")?.connect().await?;
/// let catalog = Arc::new(CachedCatalog::new(engine.catalog.clone(), redis, CacheConfig::default()));
/// let product = catalog.get_product(&ProductId::new("p-1")?).await?;
/// # let _ = product; Ok(()) }
/// ```
pub struct CachedCatalog<S: CatalogStore + ?Sized> {
    inner: Arc<S>,
    redis: RedisBackend,
    config: CacheConfig,
    flights: Mutex<HashMap<String, Arc<AsyncMutex<()>>>>,
    breaker: CircuitBreaker,
}

impl<S: CatalogStore + ?Sized> fmt::Debug for CachedCatalog<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedCatalog")
            .field("inner", &self.inner)
            .field("redis", &self.redis)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A cached product value: `P<version>|<json>`, `N` (no such product) or an
/// invalidation marker (a miss).
fn product_entry(raw: Option<&str>, id: &ProductId) -> Entry<Product> {
    match raw {
        None => Entry::Miss,
        Some("N") => Entry::Missing,
        Some(v) if v.starts_with('P') => match v.split_once('|') {
            Some((_, json)) => match serde_json::from_str::<Product>(json) {
                Ok(p) if &p.id == id => Entry::Hit(p),
                _ => Entry::Miss,
            },
            None => Entry::Miss,
        },
        Some(_) => Entry::Miss, // an invalidation marker
    }
}

fn secs(d: Duration) -> u64 {
    d.as_secs().max(1)
}

impl<S: CatalogStore + ?Sized> CachedCatalog<S> {
    /// Caches `inner` in `redis`.
    pub fn new(inner: Arc<S>, redis: RedisBackend, config: CacheConfig) -> Self {
        CachedCatalog {
            inner,
            redis,
            config,
            flights: Mutex::new(HashMap::new()),
            breaker: CircuitBreaker::new("product-cache", config.breaker, Arc::new(SystemClock)),
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<S> {
        &self.inner
    }

    /// The breaker of the cache (open: Redis is skipped).
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// Runs one cache operation through the breaker and the command timeout.
    async fn guarded<T>(&self, op: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        let Some(permit) = self.breaker.try_acquire() else {
            return Err(Error::backend(true, "product cache: circuit open"));
        };
        match tokio::time::timeout(self.config.command_timeout, op).await {
            Ok(Ok(v)) => {
                permit.success();
                Ok(v)
            }
            Ok(Err(e)) => {
                if e.is_retryable() {
                    permit.failure();
                } else {
                    permit.success();
                }
                Err(e)
            }
            Err(_) => {
                permit.failure();
                Err(Error::backend(true, "product cache: command timed out"))
            }
        }
    }

    fn product_key(&self, id: &ProductId) -> String {
        self.redis.key("cat", &format!("p:{id}"))
    }

    fn slug_key(&self, slug: &Slug) -> String {
        self.redis.key("cat", &format!("s:{}", slug.as_str()))
    }

    fn sku_key(&self, sku: &Sku) -> String {
        self.redis.key("cat", &format!("k:{}", sku.as_str()))
    }

    fn lock_key(&self, key: &str) -> String {
        format!("{key}:lock")
    }

    async fn cached_product(&self, id: &ProductId) -> Result<Entry<Product>> {
        self.guarded(self.cached_product_raw(id)).await
    }

    async fn cached_product_raw(&self, id: &ProductId) -> Result<Entry<Product>> {
        let mut conn = self.redis.conn();
        let raw: Option<String> = redis::cmd("GET")
            .arg(self.product_key(id))
            .query_async(&mut conn)
            .await
            .map_err(map)?;
        Ok(product_entry(raw.as_deref(), id))
    }

    /// The cache entries of `ids`: one pipeline of `GET`s on a single server; on a
    /// cluster, where each product lives in its own slot and a pipeline may not cross
    /// slots, one `GET` each, all sent at once on the multiplexed connection.
    async fn cached_products_raw(&self, ids: &[&ProductId]) -> Result<Vec<Entry<Product>>> {
        let raw: Vec<Option<String>> = if self.redis.is_cluster() {
            let reads = ids.iter().map(|id| async move {
                let mut conn = self.redis.conn();
                redis::cmd("GET")
                    .arg(self.product_key(id))
                    .query_async::<Option<String>>(&mut conn)
                    .await
                    .map_err(map)
            });
            futures::future::try_join_all(reads).await?
        } else {
            let mut pipe = redis::pipe();
            for id in ids {
                pipe.cmd("GET").arg(self.product_key(id));
            }
            let mut conn = self.redis.conn();
            pipe.query_async(&mut conn).await.map_err(map)?
        };
        if raw.len() != ids.len() {
            return Err(Error::backend(
                true,
                format!(
                    "product cache: {} replies for {} keys",
                    raw.len(),
                    ids.len()
                ),
            ));
        }
        Ok(ids
            .iter()
            .zip(&raw)
            .map(|(id, raw)| product_entry(raw.as_deref(), id))
            .collect())
    }

    /// Batch read-through: cached products from one round of `GET`s, the rest from one
    /// batch read of the wrapped store, then cached (without the single-flight lock of
    /// the one-product path: a batch miss costs one wrapped read, not one per product).
    async fn products_by_ids(&self, ids: &[ProductId]) -> Result<Vec<Product>> {
        let ids = distinct_batch("ids", ids)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let entries = match self.guarded(self.cached_products_raw(&ids)).await {
            Ok(entries) => entries,
            Err(e) => {
                tracing::debug!(error = %e, "product cache unavailable, reading the catalog");
                let owned: Vec<ProductId> = ids.into_iter().cloned().collect();
                return self.inner.get_products(&owned).await;
            }
        };
        let misses: Vec<ProductId> = ids
            .iter()
            .zip(&entries)
            .filter(|(_, e)| matches!(e, Entry::Miss))
            .map(|(id, _)| (*id).clone())
            .collect();
        let mut loaded: HashMap<ProductId, Product> = HashMap::new();
        if !misses.is_empty() {
            for p in self.inner.get_products(&misses).await? {
                loaded.insert(p.id.clone(), p);
            }
            let fills = misses.iter().map(|id| async {
                let filled = match loaded.get(id) {
                    Some(p) => self.fill(p).await,
                    None => self.fill_missing(&self.product_key(id)).await,
                };
                if let Err(e) = filled {
                    tracing::debug!(error = %e, "could not fill the product cache");
                }
            });
            futures::future::join_all(fills).await;
        }
        Ok(ids
            .into_iter()
            .zip(entries)
            .filter_map(|(id, entry)| match entry {
                Entry::Hit(p) => Some(p),
                Entry::Missing => None,
                Entry::Miss => loaded.remove(id),
            })
            .collect())
    }

    async fn cached_pointer(&self, key: &str) -> Result<Entry<ProductId>> {
        self.guarded(self.cached_pointer_raw(key)).await
    }

    async fn cached_pointer_raw(&self, key: &str) -> Result<Entry<ProductId>> {
        let mut conn = self.redis.conn();
        let raw: Option<String> = redis::cmd("GET")
            .arg(key)
            .query_async(&mut conn)
            .await
            .map_err(map)?;
        Ok(match raw.as_deref() {
            None => Entry::Miss,
            Some("N") => Entry::Missing,
            Some(v) => match v.strip_prefix('I').map(ProductId::new) {
                Some(Ok(id)) => Entry::Hit(id),
                _ => Entry::Miss,
            },
        })
    }

    /// Caches `product` under its id and points its slug and SKUs to it.
    async fn fill(&self, product: &Product) -> Result<()> {
        self.guarded(self.fill_raw(product)).await
    }

    async fn fill_raw(&self, product: &Product) -> Result<()> {
        let json = serde_json::to_string(product)
            .map_err(|e| Error::permanent("serializing a product", e))?;
        let mut conn = self.redis.conn();
        PUT.key(self.product_key(&product.id))
            .arg(product.version)
            .arg(json)
            .arg(secs(self.config.ttl))
            .invoke_async::<u64>(&mut conn)
            .await
            .map_err(map)?;
        let pointer = format!("I{}", product.id);
        let ttl = secs(self.config.ttl);
        let keys = self.pointer_keys(&product.slug, product.variants.iter().map(|v| &v.sku));
        self.per_key(keys, |key| {
            let mut set = redis::cmd("SET");
            set.arg(key).arg(&pointer).arg("EX").arg(ttl);
            set
        })
        .await
    }

    /// The slug and SKU pointer keys of a product.
    fn pointer_keys<'a>(&self, slug: &Slug, skus: impl Iterator<Item = &'a Sku>) -> Vec<String> {
        let mut keys = vec![self.slug_key(slug)];
        keys.extend(skus.map(|s| self.sku_key(s)));
        keys
    }

    /// Runs `cmd` on each key: one command per key (on a cluster they live in
    /// different slots), all sent at once on the multiplexed connection.
    async fn per_key(&self, keys: Vec<String>, cmd: impl Fn(String) -> redis::Cmd) -> Result<()> {
        let runs = keys.into_iter().map(|key| {
            let cmd = cmd(key);
            let mut conn = self.redis.conn();
            async move { cmd.query_async::<()>(&mut conn).await.map_err(map) }
        });
        futures::future::try_join_all(runs).await.map(|_| ())
    }

    /// Marks product `id`'s entry stale below `version`, then drops the `pointers`
    /// (slug and SKU keys, which may hold negative entries).
    async fn forget(
        &self,
        id: Option<&ProductId>,
        version: u64,
        pointers: Vec<String>,
    ) -> Result<()> {
        if let Some(id) = id {
            let mut conn = self.redis.conn();
            INVALIDATE
                .key(self.product_key(id))
                .arg(version)
                .arg(secs(self.config.invalidation_ttl))
                .invoke_async::<u64>(&mut conn)
                .await
                .map_err(map)?;
        }
        self.per_key(pointers, |key| {
            let mut del = redis::cmd("DEL");
            del.arg(key);
            del
        })
        .await
    }

    async fn fill_missing(&self, key: &str) -> Result<()> {
        self.guarded(self.fill_missing_raw(key)).await
    }

    async fn fill_missing_raw(&self, key: &str) -> Result<()> {
        let mut conn = self.redis.conn();
        redis::cmd("SET")
            .arg(key)
            .arg("N")
            .arg("NX")
            .arg("EX")
            .arg(secs(self.config.negative_ttl))
            .query_async::<()>(&mut conn)
            .await
            .map_err(map)
    }

    /// Forgets the cached product `id` and marks versions below `version` stale; also
    /// drops the slug and SKU pointers of `current` (the product as it is now).
    pub async fn invalidate(
        &self,
        id: &ProductId,
        version: u64,
        current: Option<&Product>,
    ) -> Result<()> {
        let pointers = current
            .map(|p| self.pointer_keys(&p.slug, p.variants.iter().map(|v| &v.sku)))
            .unwrap_or_default();
        self.forget(Some(id), version, pointers).await
    }

    fn flight(&self, key: &str) -> Arc<AsyncMutex<()>> {
        let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
        if flights.len() > 10_000 {
            flights.retain(|_, m| Arc::strong_count(m) > 1);
        }
        flights.entry(key.to_owned()).or_default().clone()
    }

    /// Takes the cross-process loader lock: `Some(token)` if we hold it, `None` if
    /// another process does (or Redis does not answer, in which case there is nothing
    /// to protect and the caller loads without waiting).
    async fn try_lock(&self, key: &str) -> (Option<String>, bool) {
        let token = uuid::Uuid::new_v4().simple().to_string();
        let got = self
            .guarded(async {
                let mut conn = self.redis.conn();
                redis::cmd("SET")
                    .arg(self.lock_key(key))
                    .arg(&token)
                    .arg("NX")
                    .arg("PX")
                    .arg(self.config.lock_ttl.as_millis().max(1) as u64)
                    .query_async::<Option<String>>(&mut conn)
                    .await
                    .map_err(map)
            })
            .await;
        match got {
            Ok(Some(_)) => (Some(token), true),
            Ok(None) => (None, false),
            Err(_) => (None, true),
        }
    }

    async fn unlock(&self, key: &str, token: &str) {
        let mut conn = self.redis.conn();
        let _ = UNLOCK
            .key(self.lock_key(key))
            .arg(token)
            .invoke_async::<u64>(&mut conn)
            .await;
    }

    /// Read-through by id.
    async fn product_by_id(&self, id: &ProductId) -> Result<Option<Product>> {
        let first = self.cached_product(id).await;
        commerce_core::telemetry::record_cache(
            "redis",
            matches!(first, Ok(Entry::Hit(_) | Entry::Missing)),
        );
        match first {
            Ok(Entry::Hit(p)) => return Ok(Some(p)),
            Ok(Entry::Missing) => return Ok(None),
            Ok(Entry::Miss) => {}
            Err(e) => {
                tracing::debug!(error = %e, "product cache unavailable, reading the catalog");
                return self.inner.get_product(id).await;
            }
        }
        let key = self.product_key(id);
        let flight = self.flight(&key);
        let _one_loader = flight.lock().await;
        // The loader before us may have filled it.
        if let Ok(found) = self.cached_product(id).await {
            match found {
                Entry::Hit(p) => return Ok(Some(p)),
                Entry::Missing => return Ok(None),
                Entry::Miss => {}
            }
        }
        let (token, go) = self.try_lock(&key).await;
        if !go {
            let deadline = tokio::time::Instant::now() + self.config.lock_wait;
            while tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
                match self.cached_product(id).await {
                    Ok(Entry::Hit(p)) => return Ok(Some(p)),
                    Ok(Entry::Missing) => return Ok(None),
                    _ => {}
                }
            }
        }
        let loaded = self.inner.get_product(id).await;
        if let Ok(found) = &loaded {
            let filled = match found {
                Some(p) => self.fill(p).await,
                None => self.fill_missing(&key).await,
            };
            if let Err(e) = filled {
                tracing::debug!(error = %e, "could not fill the product cache");
            }
        }
        if let Some(token) = token {
            self.unlock(&key, &token).await;
        }
        loaded
    }

    /// Read-through by slug or SKU: the pointer, then the product (checked with `ok`).
    async fn product_by_pointer<'a, F, L>(
        &'a self,
        key: String,
        ok: impl Fn(&Product) -> bool,
        load: L,
    ) -> Result<Option<Product>>
    where
        L: Fn() -> F,
        F: std::future::Future<Output = Result<Option<Product>>> + 'a,
    {
        let check = |p: Option<Product>| p.filter(|p| ok(p));
        match self.cached_pointer(&key).await {
            Ok(Entry::Missing) => return Ok(None),
            Ok(Entry::Hit(id)) => {
                if let Some(p) = check(self.product_by_id(&id).await?) {
                    return Ok(Some(p));
                }
            }
            Ok(Entry::Miss) => {}
            Err(_) => return load().await,
        }
        let flight = self.flight(&key);
        let _one_loader = flight.lock().await;
        if let Ok(Entry::Hit(id)) = self.cached_pointer(&key).await {
            if let Ok(Entry::Hit(p)) = self.cached_product(&id).await {
                if ok(&p) {
                    return Ok(Some(p));
                }
            }
        }
        let loaded = load().await?;
        let filled = match &loaded {
            Some(p) => self.fill(p).await,
            None => self.fill_missing(&key).await,
        };
        if let Err(e) = filled {
            tracing::debug!(error = %e, "could not fill the product cache");
        }
        Ok(loaded)
    }

    async fn after_write(&self, product: &Product) {
        if let Err(e) = self.fill(product).await {
            tracing::debug!(error = %e, "could not refresh the product cache after a write");
        }
    }

    /// Before a write: readers must not be served the old version once the change (and
    /// its event) is visible, so the entry is marked stale at the coming version and
    /// negative entries of the slug and SKUs are dropped. Best effort: with Redis down
    /// the write still goes through.
    async fn before_write(
        &self,
        id: Option<&ProductId>,
        next_version: u64,
        slug: &Slug,
        skus: &[Sku],
    ) {
        let pointers = self.pointer_keys(slug, skus.iter());
        let marked = self.guarded(self.forget(id, next_version, pointers)).await;
        if let Err(e) = marked {
            tracing::debug!(error = %e, "could not mark the product cache before a write");
        }
    }
}

#[async_trait]
impl<S: CatalogStore + ?Sized> CatalogStore for CachedCatalog<S> {
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn insert_product(&self, new: NewProduct, slug: Slug) -> Result<Product> {
        let skus: Vec<Sku> = new.variants.iter().map(|v| v.sku.clone()).collect();
        self.before_write(new.id.as_ref(), 1, &slug, &skus).await;
        let product = self.inner.insert_product(new, slug).await?;
        self.after_write(&product).await;
        Ok(product)
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn insert_products(&self, mut batch: Vec<(NewProduct, Slug)>) -> Result<Vec<Product>> {
        // Marked and refreshed all at once: the commands share the multiplexed
        // connection, so a batch costs a few round trips, not two per product.
        let marks: Vec<(ProductId, Slug, Vec<Sku>)> = batch
            .iter_mut()
            .map(|(new, slug)| {
                let id = new.id.get_or_insert_with(ProductId::generate).clone();
                let skus = new.variants.iter().map(|v| v.sku.clone()).collect();
                (id, slug.clone(), skus)
            })
            .collect();
        futures::future::join_all(
            marks
                .iter()
                .map(|(id, slug, skus)| self.before_write(Some(id), 1, slug, skus)),
        )
        .await;
        let products = self.inner.insert_products(batch).await?;
        futures::future::join_all(products.iter().map(|p| self.after_write(p))).await;
        Ok(products)
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn update_product(&self, product: Product) -> Result<Product> {
        let next = product.version.saturating_add(1);
        let id = product.id.clone();
        let skus: Vec<Sku> = product.variants.iter().map(|v| v.sku.clone()).collect();
        self.before_write(Some(&id), next, &product.slug, &skus)
            .await;
        match self.inner.update_product(product).await {
            Ok(updated) => {
                self.after_write(&updated).await;
                Ok(updated)
            }
            Err(e) => {
                let mut conn = self.redis.conn();
                let _ = UNMARK
                    .key(self.product_key(&id))
                    .arg(format!("T{next}"))
                    .invoke_async::<u64>(&mut conn)
                    .await;
                Err(e)
            }
        }
    }

    #[instrument(level = "debug", skip_all, fields(product_id = %id), err(level = "debug"))]
    async fn get_product(&self, id: &ProductId) -> Result<Option<Product>> {
        self.product_by_id(id).await
    }

    #[instrument(level = "debug", skip_all, fields(count = ids.len()), err(level = "debug"))]
    async fn get_products(&self, ids: &[ProductId]) -> Result<Vec<Product>> {
        self.products_by_ids(ids).await
    }

    #[instrument(level = "debug", skip_all, fields(slug = %slug), err(level = "debug"))]
    async fn get_product_by_slug(&self, slug: &Slug) -> Result<Option<Product>> {
        self.product_by_pointer(
            self.slug_key(slug),
            |p| &p.slug == slug,
            || self.inner.get_product_by_slug(slug),
        )
        .await
    }

    #[instrument(level = "debug", skip_all, fields(sku = %sku), err(level = "debug"))]
    async fn get_product_by_sku(&self, sku: &Sku) -> Result<Option<Product>> {
        self.product_by_pointer(
            self.sku_key(sku),
            |p| p.variants.iter().any(|v| &v.sku == sku),
            || self.inner.get_product_by_sku(sku),
        )
        .await
    }

    /// Asks the store behind the cache: whether a SKU may be sold is checked where
    /// products are written, not from cached copies.
    #[instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn skus_on_sale(&self, skus: &[Sku]) -> Result<Vec<bool>> {
        self.inner.skus_on_sale(skus).await
    }

    #[instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn list_products(&self, query: &ProductQuery) -> Result<Page<Product, ProductId>> {
        self.inner.list_products(query).await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn put_categories(
        &self,
        categories: &[Category],
    ) -> Result<commerce_core::catalog::CategoryWrite> {
        self.inner.put_categories(categories).await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn categories(&self, root: Option<&CategoryPath>) -> Result<Vec<Category>> {
        self.inner.categories(root).await
    }
}

/// The same Redis entries as a [`ProductCache`] for
/// [`ProductPages::with_cache`](commerce_core::browse::ProductPages::with_cache): `get`
/// only reads (a miss is `None`), `put` fills (never over a newer version), `invalidate`
/// drops the product so that slug lookups miss too.
#[async_trait]
impl<S: CatalogStore + ?Sized> ProductCache for CachedCatalog<S> {
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn get(&self, key: &ProductKey) -> Result<Option<Product>> {
        let id = match key {
            ProductKey::Id(id) => id.clone(),
            ProductKey::Slug(slug) => match self.cached_pointer(&self.slug_key(slug)).await? {
                Entry::Hit(id) => id,
                Entry::Missing | Entry::Miss => return Ok(None),
            },
        };
        Ok(match self.cached_product(&id).await? {
            Entry::Hit(p) if key.matches(&p) => Some(p),
            _ => None,
        })
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn put(&self, product: &Product) -> Result<()> {
        self.fill(product).await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn invalidate(&self, id: &ProductId) -> Result<()> {
        let key = self.product_key(id);
        self.guarded(async {
            let mut conn = self.redis.conn();
            redis::cmd("DEL")
                .arg(key)
                .query_async::<u64>(&mut conn)
                .await
                .map(|_| ())
                .map_err(map)
        })
        .await
    }
}

/// Keeps a [`CachedCatalog`] fresh from the event log: every `ProductChanged` invalidates
/// the product (and its slug and SKU pointers). A durable consumer: it resumes from its
/// checkpoint, so no change is missed across restarts.
///
/// ```no_run
/// # async fn demo(cache: std::sync::Arc<commerce_redis::CachedCatalog<commerce_core::memory::MemoryCatalog>>,
/// #               events: std::sync::Arc<dyn commerce_core::store::EventLog>) -> commerce_core::Result<()> {
/// use commerce_core::id::ConsumerName;
/// use commerce_redis::CacheInvalidator;
///
/// let invalidator = CacheInvalidator::new(cache, events, ConsumerName::new("product-cache")?);
/// let task = invalidator.spawn(std::time::Duration::from_secs(5));
/// // ... serve ...
/// let invalidated = task.shutdown().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct CacheInvalidator<S: CatalogStore + ?Sized> {
    cache: Arc<CachedCatalog<S>>,
    events: Arc<dyn EventLog>,
    consumer: ConsumerName,
}

impl<S: CatalogStore + ?Sized> CacheInvalidator<S> {
    /// Invalidates `cache` from `events` as consumer `consumer`.
    pub fn new(
        cache: Arc<CachedCatalog<S>>,
        events: Arc<dyn EventLog>,
        consumer: ConsumerName,
    ) -> Self {
        CacheInvalidator {
            cache,
            events,
            consumer,
        }
    }

    /// Invalidates in the background until shut down, waiting on the log (up to
    /// `idle_wait` at a time) when caught up; a failed pass (Redis or the log down) is
    /// retried with backoff (up to 5 s). Returns how many products it invalidated.
    pub fn spawn(self, idle_wait: Duration) -> BackgroundTask<u64>
    where
        S: 'static,
    {
        BackgroundTask::spawn(move |mut stop| async move {
            let mut total = 0u64;
            let mut backoff = Duration::from_millis(50);
            while !stop.is_stopping() {
                let pass = tokio::select! {
                    pass = self.run_once(idle_wait) => pass,
                    _ = stop.stopped() => break,
                };
                match pass {
                    Ok(n) => {
                        total += n as u64;
                        backoff = Duration::from_millis(50);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cache invalidation failed; retrying");
                        tokio::select! {
                            _ = tokio::time::sleep(backoff) => {}
                            _ = stop.stopped() => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
            total
        })
    }

    /// Processes the events after the checkpoint (waiting up to `wait` for some if there
    /// are none) and commits; returns how many products were invalidated. A Redis error
    /// leaves the checkpoint where it was, so the batch is retried.
    pub async fn run_once(&self, wait: Duration) -> Result<usize> {
        let after = self.events.checkpoint(&self.consumer).await?;
        let mut batch = self.events.read(after, 500).await?;
        if batch.is_empty() {
            if !self.events.wait_for_events(after, wait).await? {
                return Ok(0);
            }
            batch = self.events.read(after, 500).await?;
        }
        let mut invalidated = 0;
        let mut last = after;
        for envelope in &batch {
            if let DomainEvent::ProductChanged {
                product_id,
                version,
            } = &envelope.event
            {
                let current = self.cache.inner.get_product(product_id).await?;
                self.cache
                    .invalidate(product_id, *version, current.as_ref())
                    .await?;
                invalidated += 1;
            }
            last = envelope.id;
        }
        if last != after {
            self.events.commit(&self.consumer, last).await?;
        }
        Ok(invalidated)
    }
}
