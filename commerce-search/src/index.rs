//! [`TantivySearch`]: the [`SearchIndex`] on tantivy.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use commerce_core::catalog::{CategoryPath, Product, Rating, Slug};
use commerce_core::id::ProductId;
use commerce_core::money::{Currency, Money};
use commerce_core::store::SearchIndex;
use commerce_core::store::search::{
    FacetCount, Facets, MAX_SIMILAR, MAX_SUGGESTIONS, SearchHit, SearchQuery, SearchResults,
    Suggestion,
};
use commerce_core::{Error, Result};
use tantivy::collector::{Collector, TopDocs};
use tantivy::directory::MmapDirectory;
use tantivy::query::{
    Bm25StatisticsProvider, BooleanQuery, BoostQuery, MoreLikeThisQuery, Occur, Query, TermQuery,
};
use tantivy::schema::{Facet, IndexRecordOption, OwnedValue, Value};
use tantivy::snippet::SnippetGenerator;
use tantivy::{DocAddress, Index, IndexReader, IndexWriter, ReloadPolicy, Searcher, Term};
use tantivy::{TantivyDocument, TantivyError};

use crate::collect::{ColumnCache, Gather, Gathered, SortKey};
use crate::conjunction::DenseTerms;
use crate::query::{
    Boosts, ScoreFloor, TextOptions, filter_queries, full_query, text_query, words,
};
use crate::schema::{ANALYZER, Fields, analyzer, key_of, schema};
use crate::suggest::{Change, SuggestDoc, Suggestions};
use crate::view::{Ask, Views};

/// The adapter's own errors, mapped to [`commerce_core::Error`] at the boundary.
#[derive(Debug, thiserror::Error)]
enum SearchError {
    #[error("tantivy: {0}")]
    Tantivy(#[from] TantivyError),
    #[error("opening the index directory: {0}")]
    Directory(#[from] tantivy::directory::error::OpenDirectoryError),
    #[error("background task: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

impl From<SearchError> for Error {
    fn from(e: SearchError) -> Self {
        let retryable = match &e {
            // Lock held by another writer, or an I/O hiccup: may clear up.
            SearchError::Tantivy(TantivyError::LockFailure(..))
            | SearchError::Tantivy(TantivyError::IoError(_))
            | SearchError::Io(_) => true,
            _ => false,
        };
        if retryable {
            Error::retryable("search index", e)
        } else {
            Error::permanent("search index", e)
        }
    }
}

fn err(e: impl Into<SearchError>) -> Error {
    Error::from(e.into())
}

/// Settings of a [`TantivySearch`].
#[derive(Debug, Clone, PartialEq)]
pub struct TantivyConfig {
    /// Commit pending writes this often in the background (`None`: only on
    /// [`SearchIndex::refresh`]). This is the visibility delay of a write, plus the
    /// commit itself (milliseconds for a small batch). Default 500 ms.
    pub commit_interval: Option<Duration>,
    /// Indexing threads (default: the available cores, at most 4).
    pub writer_threads: usize,
    /// Indexing memory budget in bytes, shared by the threads (default 256 MB; at least
    /// 15 MB per thread).
    pub writer_memory: usize,
    /// Field boosts.
    pub boosts: Boosts,
    /// Typo variants of a word are looked for only when the word as typed is in fewer
    /// than this many products' title, brand or category (default 50): a word that is
    /// common as typed is taken as meant (its typo variants would rank below its exact
    /// matches anyway), which keeps fuzzy matching off the hot path of ordinary queries.
    pub typo_df_cutoff: u64,
    /// Answer category listings (no text; see [`crate::listing`]) from the in-memory
    /// listing views (default `true`; about 35 bytes per product): `false` answers them
    /// with the collector over the subtree's postings, whose cost grows with the
    /// subtree.
    pub listing_views: bool,
}

impl Default for TantivyConfig {
    fn default() -> Self {
        TantivyConfig {
            commit_interval: Some(Duration::from_millis(500)),
            writer_threads: std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(4),
            writer_memory: 256 << 20,
            boosts: Boosts::default(),
            typo_df_cutoff: 50,
            listing_views: true,
        }
    }
}

#[derive(Debug, Default)]
struct Pending {
    changes: Vec<Change>,
}

struct Inner {
    index: Index,
    fields: Fields,
    reader: IndexReader,
    /// Writes (`add_document`, `delete_term`) take it shared; a commit exclusively.
    writer: RwLock<IndexWriter>,
    pending: Mutex<Pending>,
    dirty: AtomicBool,
    /// Shared by the shards of a [`ShardedSearch`](crate::ShardedSearch).
    suggestions: Arc<Suggestions>,
    /// `(shard, shards)` when this index is one shard of several.
    shard: Option<(u64, u64)>,
    columns: Arc<ColumnCache>,
    /// Bitsets of the words in a large share of a segment (see [`crate::conjunction`]).
    dense: Arc<DenseTerms>,
    /// Listing views by segment.
    views: Arc<Views>,
    config: TantivyConfig,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TantivySearch")
            .field("docs", &self.reader.searcher().num_docs())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The product search index on tantivy: on disk ([`TantivySearch::open_or_create`]) or
/// in memory ([`TantivySearch::in_ram`]).
///
/// * **Visibility**: writes are committed in the background every
///   [`TantivyConfig::commit_interval`] (default 500 ms) and on [`SearchIndex::refresh`];
///   a change is searchable within that interval plus the commit time.
/// * **Durability**: a commit is durable; after a crash the index reopens with every
///   committed document, and what was pending since the last commit is lost (replay it
///   from the event log: [`SearchSync`](crate::SearchSync) commits its checkpoint only
///   after a refresh).
/// * **Paging**: `offset` keeps `offset + limit` documents in a heap while scanning the
///   matches (O(matches · log(offset + limit))); a cursor
///   ([`SearchResults::next_cursor`]) keeps only `limit`, so page 1,000 costs what
///   page 1 does.
/// * Mixed currencies: a price filter or price bucket compares minor units, and a price
///   filter only matches products in its own currency.
///
/// ```
/// use commerce_core::catalog::CategoryTree;
/// use commerce_core::sample::SampleCatalog;
/// use commerce_core::store::{SearchIndex, search::SearchQuery};
/// use commerce_search::TantivySearch;
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let index = TantivySearch::in_ram()?;
/// let sample = SampleCatalog::new(&CategoryTree::generated(), 1);
/// let products: Vec<_> = (0..100)
///     .map(|i| commerce_search::sample_product(&sample, i))
///     .collect();
/// index.upsert(&products).await?;
/// index.refresh().await?;
/// let found = index.search(&SearchQuery::text(&products[0].brand)).await?;
/// assert!(found.total > 0);
/// # Ok::<(), commerce_core::Error>(()) }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct TantivySearch {
    inner: Arc<Inner>,
}

impl TantivySearch {
    /// An index in memory with the default settings.
    pub fn in_ram() -> Result<Self> {
        Self::in_ram_with(TantivyConfig::default())
    }

    /// An index in memory.
    pub fn in_ram_with(config: TantivyConfig) -> Result<Self> {
        let (schema, _) = schema();
        Self::from_index(Index::create_in_ram(schema), config, Arc::default(), None)
    }

    /// Opens the index in `dir`, creating the directory and the index if needed.
    pub fn open_or_create(dir: impl AsRef<Path>) -> Result<Self> {
        Self::open_or_create_with(dir, TantivyConfig::default())
    }

    /// Opens the index in `dir` with `config`, creating it if needed.
    pub fn open_or_create_with(dir: impl AsRef<Path>, config: TantivyConfig) -> Result<Self> {
        std::fs::create_dir_all(dir.as_ref()).map_err(err)?;
        let directory = MmapDirectory::open(dir.as_ref()).map_err(err)?;
        let index = crate::schema::open_or_create(directory).map_err(err)?;
        Self::from_index(index, config, Arc::default(), None)
    }

    /// One shard of a [`ShardedSearch`](crate::ShardedSearch): in `dir` (else in
    /// memory), feeding the shared autocomplete store.
    pub(crate) fn shard(
        dir: Option<&Path>,
        config: TantivyConfig,
        suggestions: Arc<Suggestions>,
        shard: (u64, u64),
    ) -> Result<Self> {
        let index = match dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(err)?;
                let directory = MmapDirectory::open(dir).map_err(err)?;
                crate::schema::open_or_create(directory).map_err(err)?
            }
            None => Index::create_in_ram(schema().0),
        };
        Self::from_index(index, config, suggestions, Some(shard))
    }

    fn from_index(
        index: Index,
        config: TantivyConfig,
        suggestions: Arc<Suggestions>,
        shard: Option<(u64, u64)>,
    ) -> Result<Self> {
        index.tokenizers().register(ANALYZER, analyzer());
        let fields = Fields::from_schema(&index.schema()).map_err(err)?;
        let threads = config.writer_threads.max(1);
        let memory = config.writer_memory.max(threads * (16 << 20));
        let writer = index
            .writer_with_num_threads(threads, memory)
            .map_err(err)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(err)?;
        let inner = Arc::new(Inner {
            index,
            fields,
            reader,
            writer: RwLock::new(writer),
            pending: Mutex::new(Pending::default()),
            dirty: AtomicBool::new(false),
            suggestions,
            shard,
            columns: Arc::default(),
            dense: Arc::default(),
            views: Arc::default(),
            config,
        });
        inner.load_suggestions().map_err(err)?;
        if let Some(every) = inner.config.commit_interval {
            let weak = Arc::downgrade(&inner);
            std::thread::Builder::new()
                .name("search-commit".into())
                .spawn(move || committer(weak, every))
                .map_err(err)?;
        }
        Ok(TantivySearch { inner })
    }

    /// The tantivy index (for direct queries; see [`crate::schema::names`]).
    pub fn index(&self) -> &Index {
        &self.inner.index
    }

    /// The schema's fields.
    pub fn fields(&self) -> &Fields {
        &self.inner.fields
    }

    /// A searcher on the last refreshed state.
    pub fn searcher(&self) -> Searcher {
        self.inner.reader.searcher()
    }

    /// Bytes the index takes (on disk, or in memory for [`TantivySearch::in_ram`]).
    pub fn size_bytes(&self) -> Result<u64> {
        let usage = self.searcher().space_usage().map_err(err)?;
        Ok(usage.total().get_bytes())
    }

    /// Builds the listing views of every segment now (they are otherwise built on
    /// demand, a large segment's in the background while listings use the slower
    /// collector): call after a bulk load or [`TantivySearch::compact`] so the first
    /// category listings are fast. Returns the bytes the views hold.
    pub fn prepare_listings(&self) -> Result<u64> {
        let searcher = self.inner.reader.searcher();
        self.inner
            .views
            .get(&searcher, &self.inner.fields, true)
            .map_err(err)?;
        Ok(self.inner.views.bytes())
    }

    /// Number of distinct autocomplete suggestions held in memory.
    pub fn suggestion_count(&self) -> usize {
        self.inner.suggestions.len()
    }

    /// Removes every document (visible at the next commit; searches see the old state
    /// until then). Used by [`rebuild`](crate::rebuild).
    pub fn clear(&self) -> Result<()> {
        let w = self.inner.writer.read().unwrap_or_else(|e| e.into_inner());
        w.delete_all_documents().map_err(err)?;
        self.inner.push(Change::Clear(self.inner.shard));
        Ok(())
    }

    /// Commits and reloads synchronously (what [`SearchIndex::refresh`] runs on a
    /// blocking thread).
    pub fn commit(&self) -> Result<()> {
        self.inner.commit().map_err(err)
    }

    /// Commits, then merges every segment into one and waits for it (after a bulk
    /// [`rebuild`](crate::rebuild): fewer segments, faster queries). Writes wait
    /// meanwhile; searches go on.
    pub fn compact(&self) -> Result<()> {
        self.inner.commit().map_err(err)?;
        let mut w = self.inner.writer.write().unwrap_or_else(|e| e.into_inner());
        // Background merges may hold some segments; with the writer held no new ones
        // appear, so they finish and the merge of everything goes through.
        let mut attempts = 0;
        loop {
            let ids = self.inner.index.searchable_segment_ids().map_err(err)?;
            if ids.len() <= 1 {
                break;
            }
            match w.merge(&ids).wait() {
                Ok(_) => break,
                Err(TantivyError::InvalidArgument(_)) if attempts < 600 => {
                    attempts += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => return Err(err(e)),
            }
        }
        drop(w);
        self.inner.reader.reload().map_err(err)?;
        self.inner.columns.clear();
        self.inner.views.retain(&self.inner.reader.searcher());
        Ok(())
    }

    /// Adds products known not to be in the index (a bulk load into an empty index, or
    /// after [`TantivySearch::clear`]) without the delete-by-id an upsert issues for
    /// each product; faster, but a product already indexed would then be found twice.
    /// Non-active products are skipped. Visible at the next commit.
    pub fn insert_new(&self, products: &[Product]) -> Result<()> {
        self.write(products, false)
    }

    fn write(&self, products: &[Product], replace: bool) -> Result<()> {
        let inner = &self.inner;
        let w = inner.writer.read().unwrap_or_else(|e| e.into_inner());
        let mut changes = Vec::with_capacity(products.len());
        for p in products {
            if replace {
                w.delete_term(Term::from_field_text(inner.fields.id, p.id.as_str()));
            }
            if p.is_active() {
                w.add_document(inner.fields.document(p)).map_err(err)?;
                changes.push(Change::Upsert(
                    key_of(p.id.as_str()),
                    SuggestDoc {
                        title: p.title.as_str().into(),
                        brand: p.brand.as_str().into(),
                        category: p.category.as_str().into(),
                        popularity: p.popularity,
                    },
                ));
            } else {
                changes.push(Change::Remove(key_of(p.id.as_str())));
            }
        }
        inner
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .changes
            .extend(changes);
        inner.dirty.store(true, Ordering::Release);
        Ok(())
    }

    fn hit(
        &self,
        searcher: &Searcher,
        key: &SortKey,
        addr: DocAddress,
    ) -> Result<(SearchHit, TantivyDocument)> {
        let f = &self.inner.fields;
        let doc: TantivyDocument = searcher.doc(addr).map_err(err)?;
        let text = |field| {
            doc.get_first(field)
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        };
        let num = |field| doc.get_first(field).and_then(|v| v.as_u64()).unwrap_or(0);
        let bad = |what: &str| {
            Error::permanent("search index", format!("stored document has a bad {what}"))
        };
        let currency = Currency::parse(&text(f.currency)).map_err(|_| bad("currency"))?;
        let price =
            Money::from_minor_units(i64::try_from(num(f.price)).unwrap_or(i64::MAX), currency)
                .map_err(|_| bad("price"))?;
        let rating = match num(f.rating) {
            0 => None,
            r => Rating::from_tenths(u8::try_from(r - 1).unwrap_or(u8::MAX)).ok(),
        };
        let hit = SearchHit {
            product_id: ProductId::new(text(f.id)).map_err(|_| bad("id"))?,
            slug: Slug::new(text(f.slug)).map_err(|_| bad("slug"))?,
            title: text(f.title),
            brand: text(f.brand),
            category: CategoryPath::parse(&text(f.category_path)).map_err(|_| bad("category"))?,
            price,
            rating,
            score: key.primary as f32,
            snippet: None,
        };
        Ok((hit, doc))
    }

    fn search_sync(&self, q: &SearchQuery) -> Result<SearchResults> {
        search_shards(std::slice::from_ref(self), q)
    }

    fn similar_sync(&self, id: &ProductId, limit: u32) -> Result<Vec<SearchHit>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        match self.similar_query(id)? {
            Some(query) => Ok(self
                .similar_on(&query, limit)?
                .into_iter()
                .map(|(_, h)| h)
                .collect()),
            None => Ok(Vec::new()),
        }
    }

    /// The "more like this" query of a product held by this index (`None` when it is
    /// not here).
    pub(crate) fn similar_query(&self, id: &ProductId) -> Result<Option<BooleanQuery>> {
        let f = &self.inner.fields;
        let searcher = self.inner.reader.searcher();
        let id_term = Term::from_field_text(f.id, id.as_str());
        let found = searcher
            .search(
                &TermQuery::new(id_term.clone(), IndexRecordOption::Basic),
                &TopDocs::with_limit(1).order_by_score(),
            )
            .map_err(err)?;
        let Some((_, addr)) = found.first() else {
            return Ok(None);
        };
        let doc: TantivyDocument = searcher.doc(*addr).map_err(err)?;
        let get = |field| {
            doc.get_first(field)
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        };
        let category = get(f.category_path);
        let mut attrs = Vec::new();
        // Attribute values from the fast column (not stored).
        let seg = searcher.segment_reader(addr.segment_ord);
        if let Some(col) = seg
            .fast_fields()
            .str(crate::schema::names::ATTR)
            .map_err(err)?
        {
            for ord in col.term_ords(addr.doc_id) {
                let mut kv = String::new();
                col.ord_to_str(ord, &mut kv).map_err(err)?;
                if let Some((_, v)) = kv.split_once('=') {
                    if v.chars().any(char::is_alphabetic) && v != "true" && v != "false" {
                        attrs.push(OwnedValue::Str(v.to_owned()));
                    }
                }
            }
        }
        let mlt = MoreLikeThisQuery::builder()
            .with_min_doc_frequency(1)
            .with_min_term_frequency(1)
            .with_min_word_length(2)
            .with_max_query_terms(16)
            .with_document_fields(vec![
                (f.title, vec![OwnedValue::Str(get(f.title))]),
                (f.attrs_text, attrs),
            ]);
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![
            (Occur::Should, Box::new(mlt)),
            (
                Occur::MustNot,
                Box::new(TermQuery::new(id_term, IndexRecordOption::Basic)),
            ),
        ];
        if let Ok(path) = CategoryPath::parse(&category) {
            // Same category first, then the same parent.
            clauses.push((
                Occur::Should,
                Box::new(BoostQuery::new(
                    Box::new(TermQuery::new(
                        Term::from_facet(f.category, &Facet::from_path(path.segments())),
                        IndexRecordOption::Basic,
                    )),
                    5.0,
                )),
            ));
            if let Some(parent) = path.parent() {
                clauses.push((
                    Occur::Should,
                    Box::new(BoostQuery::new(
                        Box::new(TermQuery::new(
                            Term::from_facet(f.category, &Facet::from_path(parent.segments())),
                            IndexRecordOption::Basic,
                        )),
                        2.0,
                    )),
                ));
            }
        }
        Ok(Some(BooleanQuery::new(clauses)))
    }

    /// The best `limit` matches of a "more like this" query here, with their scores.
    pub(crate) fn similar_on(
        &self,
        query: &dyn Query,
        limit: u32,
    ) -> Result<Vec<(f32, SearchHit)>> {
        let searcher = self.inner.reader.searcher();
        let top = searcher
            .search(
                query,
                &TopDocs::with_limit(limit.clamp(1, MAX_SIMILAR) as usize).order_by_score(),
            )
            .map_err(err)?;
        top.into_iter()
            .map(|(score, addr)| {
                let key = SortKey {
                    primary: f64::from(score),
                    secondary: 0,
                    tie: 0,
                };
                self.hit(&searcher, &key, addr).map(|(h, _)| (score, h))
            })
            .collect()
    }
}

/// BM25 statistics summed over every shard, so that a document scores the same in a
/// shard as it would in one index holding every shard's documents (what a
/// distributed search engine's "DFS" phase does). Document frequencies are cached for
/// the query.
struct GlobalStats<'a> {
    searchers: &'a [Searcher],
    doc_freqs: Mutex<HashMap<Term, u64>>,
}

impl Bm25StatisticsProvider for GlobalStats<'_> {
    fn total_num_tokens(&self, field: tantivy::schema::Field) -> tantivy::Result<u64> {
        let mut n = 0;
        for s in self.searchers {
            n += Bm25StatisticsProvider::total_num_tokens(s, field)?;
        }
        Ok(n)
    }

    fn total_num_docs(&self) -> tantivy::Result<u64> {
        let mut n = 0;
        for s in self.searchers {
            n += Bm25StatisticsProvider::total_num_docs(s)?;
        }
        Ok(n)
    }

    fn doc_freq(&self, term: &Term) -> tantivy::Result<u64> {
        if let Some(&n) = self
            .doc_freqs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(term)
        {
            return Ok(n);
        }
        let mut n = 0;
        for s in self.searchers {
            n += s.doc_freq(term)?;
        }
        self.doc_freqs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(term.clone(), n);
        Ok(n)
    }
}

/// A document of the merged top: its sort key, its shard, its address there.
type ShardHit = (SortKey, usize, DocAddress);

/// Runs `query` with `gather` on every shard (in parallel when there are several) and
/// merges the results: totals and facet counts add up, the top documents are merged
/// by their sort key (each shard kept its own best `gather.top`, so the merged best
/// `top` are the global best).
fn gather_shards(
    shards: &[TantivySearch],
    searchers: &[Searcher],
    stats: &GlobalStats<'_>,
    query: &dyn Query,
    gather: &Gather,
) -> Result<(Gathered, Vec<ShardHit>)> {
    let run = |i: usize| -> Result<Gathered> {
        let g = Gather {
            columns: shards[i].inner.columns.clone(),
            ..gather.clone()
        };
        if shards.len() == 1 {
            searchers[i].search(query, &g).map_err(err)
        } else {
            searchers[i]
                .search_with_statistics_provider(query, &g, stats)
                .map_err(err)
        }
    };
    let parts: Vec<Result<Gathered>> = if shards.len() == 1 {
        vec![run(0)]
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = (1..shards.len())
                .map(|i| scope.spawn(move || run(i)))
                .collect();
            let mut parts = vec![run(0)];
            for h in handles {
                parts.push(h.join().unwrap_or_else(|_| {
                    Err(Error::permanent(
                        "search index",
                        "a shard's search panicked",
                    ))
                }));
            }
            parts
        })
    };
    merge_parts(parts, gather)
}

/// Adds up the shards' totals and facet counts and merges their tops.
fn merge_parts(parts: Vec<Result<Gathered>>, gather: &Gather) -> Result<(Gathered, Vec<ShardHit>)> {
    let mut merged = Gathered {
        prices: vec![0; gather.price_bounds.len() + usize::from(!gather.price_bounds.is_empty())],
        ..Gathered::default()
    };
    let mut top = Vec::new();
    for (i, part) in parts.into_iter().enumerate() {
        let g = part?;
        merged.total += g.total;
        top.extend(g.top.into_iter().map(|(k, a)| (k, i, a)));
        for (k, v) in g.brands {
            *merged.brands.entry(k).or_default() += v;
        }
        for (k, v) in g.categories {
            *merged.categories.entry(k).or_default() += v;
        }
        for (k, v) in g.attributes {
            *merged.attributes.entry(k).or_default() += v;
        }
        for (o, v) in merged.prices.iter_mut().zip(g.prices) {
            *o += v;
        }
        for (o, v) in merged.ratings.iter_mut().zip(g.ratings) {
            *o += v;
        }
    }
    top.sort_by(|a, b| b.0.cmp(&a.0));
    top.truncate(gather.top);
    Ok((merged, top))
}

/// A category listing from the shards' listing views (see [`crate::view`]); `None`
/// when a shard's views are not ready yet.
fn listing_shards(
    shards: &[TantivySearch],
    searchers: &[Searcher],
    q: &SearchQuery,
    gather: &Gather,
) -> Result<Option<(Gathered, Vec<ShardHit>)>> {
    let mut views = Vec::with_capacity(shards.len());
    for (shard, searcher) in shards.iter().zip(searchers) {
        match shard
            .inner
            .views
            .get(searcher, &shard.inner.fields, false)
            .map_err(err)?
        {
            Some(v) => views.push(v),
            None => return Ok(None),
        }
    }
    let ask = Ask {
        q,
        top: gather.top,
        after: gather.after,
        price_bounds: &gather.price_bounds,
    };
    let run = |i: usize| -> Result<Gathered> {
        let parts = searchers[i]
            .segment_readers()
            .iter()
            .zip(&views[i])
            .enumerate()
            .map(|(ord, (reader, view))| view.listing(ord as u32, reader, &ask).map_err(err))
            .collect::<Result<Vec<Gathered>>>()?;
        gather.merge_fruits(parts).map_err(err)
    };
    let parts: Vec<Result<Gathered>> = if shards.len() == 1 {
        vec![run(0)]
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = (1..shards.len())
                .map(|i| scope.spawn(move || run(i)))
                .collect();
            let mut parts = vec![run(0)];
            for h in handles {
                parts.push(h.join().unwrap_or_else(|_| {
                    Err(Error::permanent(
                        "search index",
                        "a shard's listing panicked",
                    ))
                }));
            }
            parts
        })
    };
    merge_parts(parts, gather).map(Some)
}

/// A search over one or several shards (each holding a disjoint part of the products).
pub(crate) fn search_shards(shards: &[TantivySearch], q: &SearchQuery) -> Result<SearchResults> {
    q.validate()?;
    let after = match q.cursor.as_deref() {
        Some(text) => Some(SortKey::decode(text).ok_or_else(|| {
            Error::validation("cursor", "not a cursor of this index (from next_cursor)")
        })?),
        None => None,
    };
    let Some(first) = shards.first() else {
        return Ok(SearchResults::default());
    };
    let inner = &first.inner;
    let f = &inner.fields;
    let searchers: Vec<Searcher> = shards.iter().map(|s| s.inner.reader.searcher()).collect();
    let stats = GlobalStats {
        searchers: &searchers,
        doc_freqs: Mutex::default(),
    };
    let ws = words(&q.text);
    let prefix_last = !q.text.ends_with(char::is_whitespace);
    let max_docs: u64 = searchers
        .iter()
        .flat_map(|s| s.segment_readers())
        .map(|r| u64::from(r.max_doc()))
        .sum();
    // Deleted documents count in both: a term in every slot is in every live document.
    let everywhere = |t: &Term| stats.doc_freq(t).is_ok_and(|n| n >= max_docs);
    let filters = || filter_queries(f, &q.filters, &everywhere);
    let limit = q.limit as usize;
    let offset = if after.is_some() {
        0
    } else {
        q.offset as usize
    };
    let price_bounds: Vec<u64> = q
        .facets
        .price_buckets
        .iter()
        .map(|m| m.to_minor_units().max(0) as u64)
        .collect();
    let floor = Arc::new(ScoreFloor::default());
    let gather = Gather {
        sort: q.sort,
        top: offset.saturating_add(limit),
        after,
        brands: q.facets.brands,
        categories: q.facets.categories,
        price_bounds,
        ratings: q.facets.ratings,
        attributes: q.facets.attributes.clone(),
        affinity: q.personalization.clone().map(Arc::new),
        columns: inner.columns.clone(),
        floor: Some(floor.clone()),
    };
    let mut opts = TextOptions {
        typos: q.typo_tolerance,
        prefix_last,
        all_words: true,
    };
    let typo_ok: Vec<bool> = ws
        .iter()
        .map(|w| {
            let df: u64 = [f.title, f.brand_text, f.category_text]
                .iter()
                .map(|&field| {
                    stats
                        .doc_freq(&Term::from_field_text(field, &w.term))
                        .unwrap_or(0)
                })
                .sum();
            df < inner.config.typo_df_cutoff
        })
        .collect();
    let listed = if ws.is_empty() && inner.config.listing_views && crate::view::applies(q) {
        listing_shards(shards, &searchers, q, &gather)?
    } else {
        None
    };
    let text_of = |opts| {
        text_query(
            f,
            &inner.config.boosts,
            &ws,
            &typo_ok,
            opts,
            &inner.dense,
            &floor,
        )
    };
    let mut text = text_of(opts);
    let (mut gathered, mut top) = match listed {
        Some(found) => found,
        None => gather_shards(
            shards,
            &searchers,
            &stats,
            &*full_query(text.as_ref().map(|t| t.box_clone()), filters()),
            &gather,
        )?,
    };
    // Also on pages after a cursor: `total` counts every match whatever the cursor, so
    // a query that fell back on its first page falls back on every page.
    if gathered.total == 0 && ws.len() > 1 {
        // No product has every word: rank those with the most of them.
        opts.all_words = false;
        text = text_of(opts);
        (gathered, top) = gather_shards(
            shards,
            &searchers,
            &stats,
            &*full_query(text.as_ref().map(|t| t.box_clone()), filters()),
            &gather,
        )?;
    }
    let page: Vec<ShardHit> = top.iter().skip(offset).copied().collect();
    let snippets = if q.highlight && !ws.is_empty() {
        let terms: BTreeMap<String, f32> = ws.iter().map(|w| (w.term.clone(), 1.0)).collect();
        let title = SnippetGenerator::new(terms.clone(), analyzer(), f.title, 200);
        let description = SnippetGenerator::new(terms, analyzer(), f.description, 160);
        Some((title, description))
    } else {
        None
    };
    let mut hits = Vec::with_capacity(page.len());
    for (key, shard, addr) in &page {
        let (mut hit, doc) = shards[*shard].hit(&searchers[*shard], key, *addr)?;
        if let Some((title, description)) = &snippets {
            let mut s = title.snippet_from_doc(&doc);
            if s.highlighted().is_empty() {
                let d = description.snippet_from_doc(&doc);
                if !d.highlighted().is_empty() {
                    s = d;
                }
            }
            s.set_snippet_prefix_postfix("<mark>", "</mark>");
            hit.snippet = Some(s.to_html());
        }
        hits.push(hit);
    }
    let next_cursor = if page.len() == limit && (offset + limit) < gathered.total as usize {
        page.last().map(|(k, _, _)| k.encode())
    } else {
        None
    };
    let facets = facets(q, &mut gathered);
    Ok(SearchResults {
        total: gathered.total,
        hits,
        facets,
        next_cursor,
    })
}

/// The facet counts of a query from what was gathered.
fn facets(q: &SearchQuery, g: &mut Gathered) -> Facets {
    let mut facets = Facets::default();
    let sorted = |m: HashMap<String, u64>| {
        let mut v: Vec<FacetCount> = m
            .into_iter()
            .map(|(value, count)| FacetCount { value, count })
            .collect();
        v.sort_by(|a, b| b.count.cmp(&a.count).then(a.value.cmp(&b.value)));
        v
    };
    if q.facets.brands {
        facets.brands = sorted(std::mem::take(&mut g.brands));
    }
    if q.facets.categories {
        let depth = q.filters.category.as_ref().map_or(1, |c| c.depth() + 1);
        let mut m: HashMap<String, u64> = HashMap::new();
        for (path, n) in g.categories.drain() {
            let mut level = String::new();
            for (i, seg) in path.split(CategoryPath::SEPARATOR).enumerate() {
                if i > 0 {
                    level.push_str(CategoryPath::SEPARATOR);
                }
                level.push_str(seg);
                if i + 1 == depth {
                    *m.entry(level.clone()).or_default() += n;
                    break;
                }
            }
        }
        facets.categories = sorted(m);
    }
    if !q.facets.price_buckets.is_empty() {
        let b = &q.facets.price_buckets;
        facets.prices = g
            .prices
            .iter()
            .enumerate()
            .map(|(i, &count)| {
                let value = if i == 0 {
                    format!("<{}", b[0].amount())
                } else if i == b.len() {
                    format!(">={}", b[i - 1].amount())
                } else {
                    format!("{}-{}", b[i - 1].amount(), b[i].amount())
                };
                FacetCount { value, count }
            })
            .collect();
    }
    if q.facets.ratings {
        facets.ratings = ["4+", "3+", "2+", "1+"]
            .iter()
            .zip(g.ratings)
            .map(|(l, count)| FacetCount {
                value: (*l).to_owned(),
                count,
            })
            .collect();
    }
    for name in &q.facets.attributes {
        let mut m = HashMap::new();
        for (kv, n) in &g.attributes {
            if let Some((k, v)) = kv.split_once('=') {
                if k == name {
                    m.insert(v.to_owned(), *n);
                }
            }
        }
        facets.attributes.insert(name.clone(), sorted(m));
    }
    facets
}

impl Inner {
    fn push(&self, change: Change) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .changes
            .push(change);
        self.dirty.store(true, Ordering::Release);
    }

    /// Commits, reloads, applies the autocomplete changes (their lists are re-sorted
    /// at most once a second, or at once after a bulk load).
    fn commit(&self) -> std::result::Result<(), SearchError> {
        let mut w = self.writer.write().unwrap_or_else(|e| e.into_inner());
        self.dirty.store(false, Ordering::Release);
        let changes = std::mem::take(
            &mut self
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .changes,
        );
        if let Err(e) = w.commit() {
            // Keep the changes for the next attempt.
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            let later = std::mem::replace(&mut p.changes, changes);
            p.changes.extend(later);
            self.dirty.store(true, Ordering::Release);
            return Err(e.into());
        }
        drop(w);
        self.reader.reload()?;
        self.columns.clear();
        self.views.retain(&self.reader.searcher());
        self.suggestions.apply(changes);
        // Lookups are exact without a sort (they read the unsorted tails whole); the
        // sort only keeps them fast, so a refresh does not force it.
        self.suggestions.maintain(false);
        Ok(())
    }

    /// Fills the autocomplete store from the committed documents (on open).
    fn load_suggestions(&self) -> std::result::Result<(), SearchError> {
        let searcher = self.reader.searcher();
        let mut changes = Vec::new();
        for seg in searcher.segment_readers() {
            let store = seg.get_store_reader(64)?;
            for doc_id in seg.doc_ids_alive() {
                let doc: TantivyDocument = store.get(doc_id)?;
                let text = |field| {
                    doc.get_first(field)
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default()
                };
                changes.push(Change::Upsert(
                    key_of(&text(self.fields.id)),
                    SuggestDoc {
                        title: text(self.fields.title).into(),
                        brand: text(self.fields.brand).into(),
                        category: text(self.fields.category_path).into(),
                        popularity: doc
                            .get_first(self.fields.popularity)
                            .and_then(|v| v.as_u64())
                            .unwrap_or(0),
                    },
                ));
            }
        }
        self.suggestions.apply(changes);
        self.suggestions.maintain(true);
        Ok(())
    }
}

fn committer(inner: Weak<Inner>, every: Duration) {
    loop {
        std::thread::sleep(every);
        let Some(inner) = inner.upgrade() else {
            return;
        };
        if !inner.dirty.load(Ordering::Acquire) {
            inner.suggestions.maintain(false);
        } else {
            if let Err(e) = inner.commit() {
                tracing::warn!(error = %e, "background commit of the search index failed");
            }
        }
    }
}

#[async_trait]
impl SearchIndex for TantivySearch {
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn upsert(&self, products: &[Product]) -> Result<()> {
        self.write(products, true)
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn remove(&self, ids: &[ProductId]) -> Result<()> {
        let w = self.inner.writer.read().unwrap_or_else(|e| e.into_inner());
        for id in ids {
            w.delete_term(Term::from_field_text(self.inner.fields.id, id.as_str()));
        }
        drop(w);
        for id in ids {
            self.inner.push(Change::Remove(key_of(id.as_str())));
        }
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn refresh(&self) -> Result<()> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.commit())
            .await
            .map_err(err)?
            .map_err(Error::from)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(text = %query.text), err(level = "debug"))]
    async fn search(&self, query: &SearchQuery) -> Result<SearchResults> {
        timed("search", || self.search_sync(query))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(prefix = %prefix, limit))]
    async fn autocomplete(&self, prefix: &str, limit: u32) -> Result<Vec<Suggestion>> {
        timed("suggest", || {
            Ok(self
                .inner
                .suggestions
                .lookup(prefix, limit.min(MAX_SUGGESTIONS) as usize))
        })
    }

    #[tracing::instrument(level = "debug", skip_all, fields(product_id = %id, limit), err(level = "debug"))]
    async fn similar(&self, id: &ProductId, limit: u32) -> Result<Vec<SearchHit>> {
        timed("similar", || self.similar_sync(id, limit))
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn count(&self) -> Result<u64> {
        Ok(self.inner.reader.searcher().num_docs())
    }
}

/// Runs `f`, recording its latency in [`commerce_core::telemetry::SEARCH_DURATION`].
fn timed<T>(kind: &'static str, f: impl FnOnce() -> T) -> T {
    let started = std::time::Instant::now();
    let out = f();
    metrics::histogram!(commerce_core::telemetry::SEARCH_DURATION, "kind" => kind)
        .record(started.elapsed().as_secs_f64());
    out
}
