//! The in-process [`ProductCache`]: [`MemoryProductCache`].

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::catalog::{Product, Slug};
use crate::clock::{self, Clock, Timestamp};
use crate::error::Result;
use crate::id::ProductId;
use crate::store::{ProductCache, ProductKey};

/// One cached product and when it expires (by the injected clock).
type Entry = (Arc<Product>, Timestamp);

/// An in-process [`ProductCache`] on [`moka`]: a time-to-live by the injected clock and
/// a capacity enforced by moka's TinyLFU policy (an entry read often survives a stream
/// of entries read once; nothing is scanned on insert). Expired entries are never
/// served and are evicted first as moka ages them out.
pub struct MemoryProductCache {
    clock: Arc<dyn Clock>,
    ttl: Duration,
    by_id: moka::future::Cache<ProductId, Entry>,
    by_slug: moka::future::Cache<Slug, ProductId>,
}

impl Debug for MemoryProductCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryProductCache")
            .field("ttl", &self.ttl)
            .field("entries", &self.by_id.entry_count())
            .finish_non_exhaustive()
    }
}

impl MemoryProductCache {
    /// A cache keeping up to `capacity` products for `ttl` each.
    pub fn new(clock: Arc<dyn Clock>, ttl: Duration, capacity: usize) -> Self {
        let capacity = capacity.max(1) as u64;
        MemoryProductCache {
            clock,
            ttl,
            by_id: moka::future::Cache::new(capacity),
            by_slug: moka::future::Cache::new(capacity),
        }
    }

    /// Number of products held (expired ones included until evicted), after applying
    /// the pending evictions.
    pub async fn len(&self) -> usize {
        self.by_id.run_pending_tasks().await;
        usize::try_from(self.by_id.entry_count()).unwrap_or(usize::MAX)
    }

    /// Whether it holds nothing.
    pub async fn is_empty(&self) -> bool {
        self.len().await == 0
    }
}

#[async_trait]
impl ProductCache for MemoryProductCache {
    async fn get(&self, key: &ProductKey) -> Result<Option<Product>> {
        let now = self.clock.now();
        let id = match key {
            ProductKey::Id(id) => Some(id.clone()),
            ProductKey::Slug(slug) => self.by_slug.get(slug).await,
        };
        let found = match id {
            Some(id) => self
                .by_id
                .get(&id)
                .await
                .filter(|(p, expires)| now < *expires && key.matches(p))
                .map(|(p, _)| Product::clone(&p)),
            None => None,
        };
        crate::telemetry::record_cache("memory", found.is_some());
        Ok(found)
    }

    async fn put(&self, product: &Product) -> Result<()> {
        let now = self.clock.now();
        let fresh: Entry = (Arc::new(product.clone()), clock::add(now, self.ttl));
        // Atomic per id: a live newer version is never replaced by an older one.
        let result = self
            .by_id
            .entry(product.id.clone())
            .and_compute_with(|current| {
                let keep = current.is_some_and(|e| {
                    let (cached, expires) = e.value();
                    cached.version > product.version && now < *expires
                });
                let op = if keep {
                    moka::ops::compute::Op::Nop
                } else {
                    moka::ops::compute::Op::Put(fresh)
                };
                std::future::ready(op)
            })
            .await;
        if let moka::ops::compute::CompResult::ReplacedWith(_)
        | moka::ops::compute::CompResult::Inserted(_) = result
        {
            self.by_slug
                .insert(product.slug.clone(), product.id.clone())
                .await;
        }
        Ok(())
    }

    async fn invalidate(&self, id: &ProductId) -> Result<()> {
        if let Some((p, _)) = self.by_id.remove(id).await {
            // A slug now naming another product is left alone; `get` checks anyway.
            if self.by_slug.get(&p.slug).await.as_ref() == Some(id) {
                self.by_slug.invalidate(&p.slug).await;
            }
        }
        Ok(())
    }
}
