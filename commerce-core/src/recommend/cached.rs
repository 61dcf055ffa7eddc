//! [`CachedCoPurchase`]: an in-process cache of co-purchase rankings.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use moka::future::Cache;

use crate::activity::{Basket, ProductCount, RecordOutcome};
use crate::error::Result;
use crate::id::ProductId;
use crate::store::{CoPurchaseStore, check_limit};

/// A ranking as cached: the longest list asked for so far and the limit it was asked
/// with (a shorter limit is served by its prefix, since rankings are total orders).
type Ranking = (u32, Arc<Vec<ProductCount>>);

/// An in-process cache in front of any [`CoPurchaseStore`]: "also bought" rankings per
/// product and the best sellers, kept for a time-to-live.
///
/// Co-purchase counts summarise months of orders, so a ranking a minute old is as good
/// as a fresh one, and reading it from memory takes a round trip off every
/// recommendation. **Lag bound**: a ranking read through this cache reflects every
/// order recorded more than `ttl` ago. Orders recorded through this same instance also
/// drop the cached rankings of their products and the best sellers, so a read that
/// starts after the recording returns sees it. Recording always goes to the wrapped
/// store, so exactly-once counting is the wrapped store's.
///
/// The cache holds at most `capacity` rankings (least-recently-used first out, as
/// decided by [`moka`]); its time-to-live is wall-clock time, not the injected
/// [`Clock`](crate::clock::Clock).
///
/// ```
/// use std::{sync::Arc, time::Duration};
/// use commerce_core::id::{OrderId, ProductId};
/// use commerce_core::recommend::{Basket, CachedCoPurchase, MemoryCoPurchase};
/// use commerce_core::store::CoPurchaseStore;
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let p = |s: &str| ProductId::new(s).unwrap();
/// let counts = CachedCoPurchase::new(Arc::new(MemoryCoPurchase::new()), Duration::from_secs(60), 100_000);
/// counts.record(&Basket::new(OrderId::new("o1")?, [p("phone"), p("case")])).await?;
/// let top = counts.also_bought(&p("phone"), 10).await?; // read from the store, then cached
/// assert_eq!(top[0].product_id, p("case"));
/// assert_eq!(counts.also_bought(&p("phone"), 1).await?, top[..1]); // from the cache
/// # Ok::<(), commerce_core::Error>(()) }).unwrap();
/// ```
#[derive(Clone)]
pub struct CachedCoPurchase {
    inner: Arc<dyn CoPurchaseStore>,
    also_bought: Cache<ProductId, Ranking>,
    popular: Cache<(), Ranking>,
    ttl: Duration,
}

impl fmt::Debug for CachedCoPurchase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedCoPurchase")
            .field("inner", &self.inner)
            .field("ttl", &self.ttl)
            .field("cached_rankings", &self.also_bought.entry_count())
            .finish()
    }
}

impl CachedCoPurchase {
    /// Caches `inner`'s rankings for `ttl`, at most `capacity` of them.
    pub fn new(inner: Arc<dyn CoPurchaseStore>, ttl: Duration, capacity: u64) -> Self {
        CachedCoPurchase {
            inner,
            also_bought: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .build(),
            popular: Cache::builder().max_capacity(1).time_to_live(ttl).build(),
            ttl,
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<dyn CoPurchaseStore> {
        &self.inner
    }

    /// The time-to-live (the lag bound for orders recorded elsewhere).
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Drops the cached rankings of `basket`'s products and the best sellers.
    async fn forget(&self, basket: &Basket) {
        for p in basket.products() {
            self.also_bought.invalidate(p).await;
        }
        self.popular.invalidate(&()).await;
    }
}

/// The first `limit` of a cached ranking, if it was asked with at least that limit (or
/// is shorter than what was asked: then it is the whole ranking).
fn prefix(cached: Option<Ranking>, limit: u32) -> Option<Vec<ProductCount>> {
    let (asked, list) = cached?;
    let whole = (list.len() as u64) < u64::from(asked);
    (asked >= limit || whole).then(|| list.iter().take(limit as usize).cloned().collect())
}

#[async_trait]
impl CoPurchaseStore for CachedCoPurchase {
    async fn record(&self, basket: &Basket) -> Result<RecordOutcome> {
        let outcome = self.inner.record(basket).await?;
        self.forget(basket).await;
        Ok(outcome)
    }

    async fn record_all(&self, baskets: &[Basket]) -> Result<Vec<RecordOutcome>> {
        let outcomes = self.inner.record_all(baskets).await;
        // Also after an error: some baskets may have been recorded.
        for basket in baskets {
            self.forget(basket).await;
        }
        outcomes
    }

    async fn also_bought(&self, product: &ProductId, limit: u32) -> Result<Vec<ProductCount>> {
        check_limit(limit)?;
        if let Some(hit) = prefix(self.also_bought.get(product).await, limit) {
            return Ok(hit);
        }
        let list = self.inner.also_bought(product, limit).await?;
        self.also_bought
            .insert(product.clone(), (limit, Arc::new(list.clone())))
            .await;
        Ok(list)
    }

    async fn popular(&self, limit: u32) -> Result<Vec<ProductCount>> {
        check_limit(limit)?;
        if let Some(hit) = prefix(self.popular.get(&()).await, limit) {
            return Ok(hit);
        }
        let list = self.inner.popular(limit).await?;
        self.popular
            .insert((), (limit, Arc::new(list.clone())))
            .await;
        Ok(list)
    }

    async fn orders_recorded(&self) -> Result<u64> {
        self.inner.orders_recorded().await
    }
}
