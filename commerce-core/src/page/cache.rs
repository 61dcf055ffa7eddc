//! The product cache in front of the catalog: a non-essential part of the page.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::catalog::{Product, Slug};
use crate::clock::{self, Clock, Timestamp};
use crate::error::Result;
use crate::id::ProductId;

/// How a page names its product.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "by", content = "value", rename_all = "snake_case")]
pub enum ProductKey {
    /// By id.
    Id(ProductId),
    /// By URL slug.
    Slug(Slug),
}

impl ProductKey {
    /// Whether `product` is the one this key names.
    pub fn matches(&self, product: &Product) -> bool {
        match self {
            ProductKey::Id(id) => &product.id == id,
            ProductKey::Slug(slug) => &product.slug == slug,
        }
    }
}

impl std::fmt::Display for ProductKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProductKey::Id(id) => write!(f, "{id}"),
            ProductKey::Slug(slug) => write!(f, "{slug}"),
        }
    }
}

/// A read-through cache of products (Redis in production, [`MemoryProductCache`] in
/// process).
///
/// A cache may serve a product up to its time-to-live after a change; prices shown from
/// it may lag that long, while checkout always prices from the catalog.
///
/// # To ensure correctness
/// * `get` returns only a product that `key` names ([`ProductKey::matches`]), never one
///   past its time-to-live.
/// * `put` never replaces a cached product with an older version of it.
/// * `invalidate` removes the product under every key; later `get`s miss until the
///   next `put`.
#[async_trait]
pub trait ProductCache: Send + Sync + Debug + 'static {
    /// The cached product, if any.
    async fn get(&self, key: &ProductKey) -> Result<Option<Product>>;

    /// Caches `product` under its id and slug.
    async fn put(&self, product: &Product) -> Result<()>;

    /// Forgets the product.
    async fn invalidate(&self, id: &ProductId) -> Result<()>;
}

#[derive(Debug, Default)]
struct CacheState {
    by_id: HashMap<ProductId, (Product, Timestamp)>,
    by_slug: HashMap<Slug, ProductId>,
}

/// An in-process [`ProductCache`] with a time-to-live (by the injected clock) and a
/// capacity; when full, expired entries go first, then arbitrary ones.
#[derive(Debug)]
pub struct MemoryProductCache {
    clock: Arc<dyn Clock>,
    ttl: Duration,
    capacity: usize,
    state: Mutex<CacheState>,
}

impl MemoryProductCache {
    /// A cache keeping up to `capacity` products for `ttl` each.
    pub fn new(clock: Arc<dyn Clock>, ttl: Duration, capacity: usize) -> Self {
        MemoryProductCache {
            clock,
            ttl,
            capacity: capacity.max(1),
            state: Mutex::new(CacheState::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, CacheState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Number of products held (expired ones included until evicted).
    pub fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn remove(state: &mut CacheState, id: &ProductId) {
    if let Some((p, _)) = state.by_id.remove(id) {
        if state.by_slug.get(&p.slug) == Some(id) {
            state.by_slug.remove(&p.slug);
        }
    }
}

#[async_trait]
impl ProductCache for MemoryProductCache {
    async fn get(&self, key: &ProductKey) -> Result<Option<Product>> {
        let now = self.clock.now();
        let state = self.lock();
        let id = match key {
            ProductKey::Id(id) => Some(id),
            ProductKey::Slug(slug) => state.by_slug.get(slug),
        };
        Ok(id
            .and_then(|id| state.by_id.get(id))
            .filter(|(p, expires)| now < *expires && key.matches(p))
            .map(|(p, _)| p.clone()))
    }

    async fn put(&self, product: &Product) -> Result<()> {
        let now = self.clock.now();
        let mut state = self.lock();
        if let Some((cached, expires)) = state.by_id.get(&product.id) {
            if cached.version > product.version && now < *expires {
                return Ok(());
            }
        }
        remove(&mut state, &product.id);
        if state.by_id.len() >= self.capacity {
            let expired: Vec<ProductId> = state
                .by_id
                .iter()
                .filter(|(_, (_, e))| *e <= now)
                .map(|(id, _)| id.clone())
                .collect();
            for id in &expired {
                remove(&mut state, id);
            }
            while state.by_id.len() >= self.capacity {
                let Some(id) = state.by_id.keys().next().cloned() else {
                    break;
                };
                remove(&mut state, &id);
            }
        }
        state
            .by_slug
            .insert(product.slug.clone(), product.id.clone());
        state.by_id.insert(
            product.id.clone(),
            (product.clone(), clock::add(now, self.ttl)),
        );
        Ok(())
    }

    async fn invalidate(&self, id: &ProductId) -> Result<()> {
        remove(&mut self.lock(), id);
        Ok(())
    }
}
