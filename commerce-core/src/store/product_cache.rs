//! The product cache in front of the catalog (a non-essential part of the product
//! page): [`ProductCache`].

use std::fmt::Debug;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::catalog::{Product, Slug};
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

/// A read-through cache of products (Redis in production, [`MemoryProductCache`](crate::memory::MemoryProductCache) in
/// process).
///
/// A cache may serve a product up to its time-to-live after a change; prices shown from
/// it may lag that long, while checkout always prices from the catalog.
///
/// # To ensure correctness
/// * `get` returns only a product that `key` names ([`ProductKey::matches`]): a key
///   never put, or whose product was renamed away from it, is `None`, never another
///   product. A slug names the product last put with it.
/// * `get` never returns an entry at or past its time-to-live, counted from the `put`
///   that cached it; an expired entry counts as absent. Below its capacity, a cache
///   serves what was put until then.
/// * `put` caches the product under its id and its slug. It never replaces a cached
///   product with an older version of it (such a `put` changes nothing, its
///   time-to-live included); a `put` of the same or a newer version replaces it and
///   restarts its time-to-live. Concurrent `put`s of one product leave the newest.
/// * `invalidate` removes the product under every key; later `get`s miss until the
///   next `put`, which is cached whatever its version (the invalidated version is not
///   remembered). Invalidating a product that is not cached succeeds and changes
///   nothing.
/// * `get` only reads: a miss does not load or fill anything.
/// * Errors are the backend's (a cache server unreachable is a retryable
///   [`Error::Backend`](crate::Error::Backend)); callers treat the cache as non-essential.
///
/// The conformance kit's `product_cache` area (`testkit::product_cache`, feature
/// `testkit`) checks each of these sentences.
#[async_trait]
pub trait ProductCache: Send + Sync + Debug + 'static {
    /// The cached product `key` names, if any (`None` on a miss).
    async fn get(&self, key: &ProductKey) -> Result<Option<Product>>;

    /// Caches `product` under its id and slug, unless a newer version is cached.
    async fn put(&self, product: &Product) -> Result<()>;

    /// Forgets the product under every key (nothing to do if it is not cached).
    async fn invalidate(&self, id: &ProductId) -> Result<()>;
}
