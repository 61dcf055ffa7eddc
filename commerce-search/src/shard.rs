//! [`ShardedSearch`]: the [`SearchIndex`] over N tantivy shards, products spread by id.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use commerce_core::catalog::Product;
use commerce_core::id::ProductId;
use commerce_core::store::SearchIndex;
use commerce_core::store::search::{SearchHit, SearchQuery, SearchResults, Suggestion};
use commerce_core::{Error, Result};

use crate::index::{TantivyConfig, TantivySearch, search_shards};
use crate::schema::key_of;
use crate::suggest::Suggestions;

/// The product index split into N shards by product id (the [`key_of`] hash modulo N),
/// answering as one index: scatter-gather.
///
/// * **Search**: the query runs on every shard in parallel with BM25 statistics summed
///   over all shards, so scores, the global top `offset + limit`, totals and facet
///   counts are exactly those of one index holding every product (a test checks it on
///   random catalogs). Cursors work across shards (the sort key is global).
/// * **Autocomplete**: one in-memory store fed by every shard (a product lives in one
///   shard), so suggestions are exactly those of one index.
/// * **Similar products**: each shard's best, merged by score (scores use each shard's
///   own statistics: close to, not exactly, one index's order).
/// * Writes go to the product's shard; visibility and durability are each shard's
///   ([`TantivySearch`]). Reopening needs the same number of shards.
///
/// ```
/// use commerce_core::catalog::CategoryTree;
/// use commerce_core::sample::SampleCatalog;
/// use commerce_core::store::{SearchIndex, search::SearchQuery};
/// use commerce_search::{TantivyConfig, ShardedSearch};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let index = ShardedSearch::in_ram(4, TantivyConfig::default())?;
/// let sample = SampleCatalog::new(&CategoryTree::generated(), 1);
/// let products: Vec<_> = (0..200)
///     .map(|i| commerce_search::sample_product(&sample, i))
///     .collect();
/// index.upsert(&products).await?;
/// index.refresh().await?;
/// assert_eq!(index.count().await?, 200);
/// let found = index.search(&SearchQuery::text(&products[0].brand)).await?;
/// assert!(found.total > 0);
/// # Ok::<(), commerce_core::Error>(()) }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct ShardedSearch {
    shards: Vec<TantivySearch>,
    suggestions: Arc<Suggestions>,
}

impl ShardedSearch {
    /// `shards` indexes in memory (at least 1).
    pub fn in_ram(shards: usize, config: TantivyConfig) -> Result<Self> {
        Self::build(None, shards, config)
    }

    /// Opens (or creates) `shards` indexes in `dir/shard-0` .. `dir/shard-{N-1}`.
    pub fn open_or_create(
        dir: impl AsRef<Path>,
        shards: usize,
        config: TantivyConfig,
    ) -> Result<Self> {
        Self::build(Some(dir.as_ref()), shards, config)
    }

    fn build(dir: Option<&Path>, shards: usize, config: TantivyConfig) -> Result<Self> {
        if shards == 0 {
            return Err(Error::validation("shards", "at least one shard"));
        }
        let suggestions = Arc::new(Suggestions::default());
        let n = shards as u64;
        let shards = (0..n)
            .map(|i| {
                let path = dir.map(|d| d.join(format!("shard-{i}")));
                TantivySearch::shard(path.as_deref(), config.clone(), suggestions.clone(), (i, n))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(ShardedSearch {
            shards,
            suggestions,
        })
    }

    /// The shards.
    pub fn shards(&self) -> &[TantivySearch] {
        &self.shards
    }

    /// The shard holding product `id`.
    pub fn shard_of(&self, id: &ProductId) -> usize {
        (key_of(id.as_str()) % self.shards.len() as u64) as usize
    }

    fn split<'a, T>(&self, items: &'a [T], id: impl Fn(&T) -> &ProductId) -> Vec<Vec<&'a T>> {
        let mut parts: Vec<Vec<&T>> = vec![Vec::new(); self.shards.len()];
        for item in items {
            parts[self.shard_of(id(item))].push(item);
        }
        parts
    }

    /// [`TantivySearch::insert_new`] on each product's shard.
    pub fn insert_new(&self, products: &[Product]) -> Result<()> {
        for (shard, part) in self.shards.iter().zip(self.split(products, |p| &p.id)) {
            if !part.is_empty() {
                let part: Vec<Product> = part.into_iter().cloned().collect();
                shard.insert_new(&part)?;
            }
        }
        Ok(())
    }

    /// [`TantivySearch::commit`] on every shard.
    pub fn commit(&self) -> Result<()> {
        self.shards.iter().try_for_each(TantivySearch::commit)
    }

    /// [`TantivySearch::compact`] on every shard.
    pub fn compact(&self) -> Result<()> {
        self.shards.iter().try_for_each(TantivySearch::compact)
    }

    /// [`TantivySearch::clear`] on every shard.
    pub fn clear(&self) -> Result<()> {
        self.shards.iter().try_for_each(TantivySearch::clear)
    }

    /// [`TantivySearch::prepare_listings`] on every shard; the bytes all views hold.
    pub fn prepare_listings(&self) -> Result<u64> {
        let mut n = 0;
        for s in &self.shards {
            n += s.prepare_listings()?;
        }
        Ok(n)
    }

    /// Bytes all shards take.
    pub fn size_bytes(&self) -> Result<u64> {
        let mut n = 0;
        for s in &self.shards {
            n += s.size_bytes()?;
        }
        Ok(n)
    }

    /// Number of distinct autocomplete suggestions held in memory.
    pub fn suggestion_count(&self) -> usize {
        self.suggestions.len()
    }
}

#[async_trait]
impl SearchIndex for ShardedSearch {
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn upsert(&self, products: &[Product]) -> Result<()> {
        for (shard, part) in self.shards.iter().zip(self.split(products, |p| &p.id)) {
            if !part.is_empty() {
                let part: Vec<Product> = part.into_iter().cloned().collect();
                shard.upsert(&part).await?;
            }
        }
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn remove(&self, ids: &[ProductId]) -> Result<()> {
        for (shard, part) in self.shards.iter().zip(self.split(ids, |id| id)) {
            if !part.is_empty() {
                let part: Vec<ProductId> = part.into_iter().cloned().collect();
                shard.remove(&part).await?;
            }
        }
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn refresh(&self) -> Result<()> {
        let shards = self.shards.clone();
        tokio::task::spawn_blocking(move || shards.iter().try_for_each(TantivySearch::commit))
            .await
            .map_err(|e| Error::permanent("search index", e))?
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn search(&self, query: &SearchQuery) -> Result<SearchResults> {
        search_shards(&self.shards, query)
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn autocomplete(&self, prefix: &str, limit: u32) -> Result<Vec<Suggestion>> {
        Ok(self.suggestions.lookup(
            prefix,
            limit.min(commerce_core::store::search::MAX_SUGGESTIONS) as usize,
        ))
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn similar(&self, id: &ProductId, limit: u32) -> Result<Vec<SearchHit>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let Some(query) = self.shards[self.shard_of(id)].similar_query(id)? else {
            return Ok(Vec::new());
        };
        let mut all = Vec::new();
        for s in &self.shards {
            all.extend(s.similar_on(&query, limit)?);
        }
        all.sort_by(|a, b| b.0.total_cmp(&a.0));
        all.truncate(limit.min(commerce_core::store::search::MAX_SIMILAR) as usize);
        Ok(all.into_iter().map(|(_, h)| h).collect())
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn count(&self) -> Result<u64> {
        let mut n = 0;
        for s in &self.shards {
            n += s.count().await?;
        }
        Ok(n)
    }
}
