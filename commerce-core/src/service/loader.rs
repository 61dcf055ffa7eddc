//! Bulk loading a catalog and its initial stock, riding out lost connections.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::catalog::{NewProduct, Product, Slug};
use crate::error::{Error, Result};
use crate::id::{ProductId, Sku};
use crate::inventory::{Restock, StockLevel};
use crate::service::Stores;
use crate::store::{CatalogStore, InventoryStore, InventoryStoreExt, MAX_PAGE_SIZE, RetryPolicy};

/// Loads products and their initial stock in batches
/// ([`CatalogStore::insert_products`], [`InventoryStore::restock_many`]), retrying
/// retryable failures (a lost connection, a failover, a pool timeout) with jittered
/// backoff until a deadline, without ever writing a batch twice.
///
/// A failed attempt may still have committed (only its answer was lost), so before it
/// retries, the loader reads back what the attempt would have written: the products by
/// id (a batch is atomic, so all of them or none), or the first level of a stock batch.
/// That is why [`stock_new_levels`](Self::stock_new_levels) is for levels that do not
/// exist yet (an initial load): a batch whose first level already exists counts as
/// committed.
///
/// ```
/// # use commerce_core::{catalog::*, id::*, inventory::Restock, memory::MemoryEngine};
/// # use commerce_core::service::{CatalogLoader, Stores};
/// # tokio_test_block_on(async {
/// let stores = Stores::memory(&MemoryEngine::new());
/// let loader = CatalogLoader::new(&stores);
/// let new = NewProduct::new(
///     SellerId::new("s1")?, "Phone", CategoryPath::parse("Electronics > Phones")?,
///     "Acme", Sku::new("PH-1")?, "199.00 USD".parse()?,
/// );
/// let stored = loader.insert_products(vec![(new, Slug::new("phone")?)]).await?;
/// let stock = vec![Restock::new(Sku::new("PH-1")?, LocationId::new("main")?, 40, "initial")];
/// loader.stock_new_levels(&stock).await?;
/// assert_eq!(stored[0].slug.as_str(), "phone");
/// # Ok::<(), commerce_core::Error>(()) });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f) }
/// ```
#[derive(Debug, Clone)]
pub struct CatalogLoader {
    catalog: Arc<dyn CatalogStore>,
    inventory: Arc<dyn InventoryStore>,
    backoff: RetryPolicy,
    deadline: Duration,
}

impl CatalogLoader {
    /// A loader over `stores`' catalog and inventory: retries for up to 60 s per batch,
    /// backing off from 10 ms to 1 s.
    pub fn new(stores: &Stores) -> Self {
        CatalogLoader {
            catalog: stores.catalog.clone(),
            inventory: stores.inventory.clone(),
            backoff: RetryPolicy {
                max_attempts: u32::MAX,
                base_delay: Duration::from_millis(10),
                max_delay: Duration::from_secs(1),
            },
            deadline: Duration::from_secs(60),
        }
    }

    /// Retries a batch for at most `deadline`, with `backoff` between attempts (its
    /// `max_attempts` bounds the attempts too).
    pub fn with_retry(mut self, backoff: RetryPolicy, deadline: Duration) -> Self {
        self.backoff = backoff;
        self.deadline = deadline;
        self
    }

    /// Inserts a batch of products (at most [`MAX_PAGE_SIZE`]) as
    /// [`CatalogStore::insert_products`] does, giving each product without an id a fresh
    /// one first so that a retry can tell whether an earlier attempt committed. Returns
    /// the products as stored; errors that are not retryable (a conflict, invalid
    /// input) are returned at once.
    pub async fn insert_products(
        &self,
        mut batch: Vec<(NewProduct, Slug)>,
    ) -> Result<Vec<Product>> {
        let ids: Vec<ProductId> = batch
            .iter_mut()
            .map(|(new, _)| new.id.get_or_insert_with(ProductId::generate).clone())
            .collect();
        self.retrying(|retried| {
            let batch = batch.clone();
            let ids = &ids;
            async move {
                if retried && !ids.is_empty() {
                    let stored = self.catalog.get_products(ids).await?;
                    if stored.len() == ids.len() {
                        return Ok(stored);
                    }
                    if !stored.is_empty() {
                        return Err(Error::backend(
                            false,
                            "a retried product batch is partly stored: the catalog store's \
                             insert_products is not atomic",
                        ));
                    }
                }
                self.catalog.insert_products(batch).await
            }
        })
        .await
    }

    /// Receives the initial stock of levels that do not exist yet, in batches of
    /// [`MAX_PAGE_SIZE`] ([`InventoryStore::restock_many`]); returns every level after
    /// its item, in order. A retried batch whose first level exists counts as committed
    /// (its levels are then read back, not received twice).
    pub async fn stock_new_levels(&self, items: &[Restock]) -> Result<Vec<StockLevel>> {
        let mut out = Vec::with_capacity(items.len());
        for chunk in items.chunks(MAX_PAGE_SIZE as usize) {
            let levels = self
                .retrying(|retried| async move {
                    if retried {
                        if let Some(levels) = self.committed_levels(chunk).await? {
                            return Ok(levels);
                        }
                    }
                    self.inventory.restock_many(chunk).await
                })
                .await?;
            out.extend(levels);
        }
        Ok(out)
    }

    /// The levels of `chunk` if an earlier attempt committed it (its first level
    /// exists), else `None`. The levels read back are the current ones.
    async fn committed_levels(&self, chunk: &[Restock]) -> Result<Option<Vec<StockLevel>>> {
        let Some(first) = chunk.first() else {
            return Ok(Some(Vec::new()));
        };
        let stock = self.inventory.stock(&first.sku).await?;
        if !stock.levels.iter().any(|l| l.location == first.location) {
            return Ok(None);
        }
        // The rest of the chunk in one batch read, not one round trip per item.
        let skus: Vec<Sku> = chunk.iter().map(|i| i.sku.clone()).collect();
        let stocks = self.inventory.stocks_in_batches(&skus).await?;
        let mut out = Vec::with_capacity(chunk.len());
        for item in chunk {
            let level = stocks
                .iter()
                .filter(|s| s.sku == item.sku)
                .flat_map(|s| s.levels.iter())
                .find(|l| l.location == item.location)
                .cloned()
                .ok_or_else(|| {
                    Error::backend(
                        false,
                        "a retried stock batch is partly stored: the inventory store's \
                         restock_many is not atomic",
                    )
                })?;
            out.push(level);
        }
        Ok(Some(out))
    }

    async fn retrying<T, F, Fut>(&self, mut attempt: F) -> Result<T>
    where
        F: FnMut(bool) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let deadline = Instant::now() + self.deadline;
        self.backoff
            .run("bulk load", Some(deadline), |failed| attempt(failed > 0))
            .await
    }
}
