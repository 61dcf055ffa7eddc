//! The search contract: full text with filters, facets, sorting, autocomplete and
//! similar products. Search may lag the source of truth (it is fed from the event log);
//! each implementation documents its visibility delay.

use std::collections::BTreeMap;
use std::fmt::Debug;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::catalog::{CategoryPath, Product, Rating, Slug};
use crate::error::Result;
use crate::id::ProductId;
use crate::money::Money;

/// How results are ordered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SortOrder {
    /// Best match first (BM25 with field boosts, then personalisation).
    #[default]
    Relevance,
    /// Cheapest first (by the lowest variant price).
    PriceAscending,
    /// Most expensive first.
    PriceDescending,
    /// Most recently created first.
    Newest,
    /// Most popular first.
    Popularity,
}

/// A price range; either end may be open. Inclusive at both ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceRange {
    /// Lowest price.
    pub min: Option<Money>,
    /// Highest price.
    pub max: Option<Money>,
}

/// Filters; all of them must hold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SearchFilters {
    /// The category or anything under it.
    pub category: Option<CategoryPath>,
    /// Any of these brands (empty: any brand).
    pub brands: Vec<String>,
    /// Price range on the lowest variant price.
    pub price: PriceRange,
    /// At least this rating.
    pub min_rating: Option<Rating>,
    /// Attribute equalities (`("color", "Black")`), on the product or any variant.
    pub attributes: Vec<(String, String)>,
    /// Only products with a variant in stock.
    pub in_stock_only: bool,
}

/// Which facet counts to compute for the current query.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FacetRequest {
    /// Counts per brand.
    pub brands: bool,
    /// Counts per child of the current category filter (per root without one).
    pub categories: bool,
    /// Upper bounds of price buckets, ascending: `[50, 100]` gives `<50`, `50-100`,
    /// `>=100`.
    pub price_buckets: Vec<Money>,
    /// Counts per rating bucket (`4+`, `3+`, `2+`, `1+`).
    pub ratings: bool,
    /// Counts per value of these attributes.
    pub attributes: Vec<String>,
}

/// A user's affinity to brands and categories (from order history), used to re-rank.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Affinity {
    /// Brand weights, 0 to 1.
    pub brands: BTreeMap<String, f32>,
    /// Category weights, 0 to 1; a weight applies to the whole subtree.
    pub categories: BTreeMap<CategoryPath, f32>,
}

/// A search request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchQuery {
    /// What the user typed; never an error, syntax characters are text. Empty matches
    /// everything (browse).
    pub text: String,
    /// Filters.
    pub filters: SearchFilters,
    /// Facets to count.
    pub facets: FacetRequest,
    /// Ordering.
    pub sort: SortOrder,
    /// Results to skip (for page numbers).
    pub offset: u32,
    /// Results to return, 1 to 100.
    pub limit: u32,
    /// Continue after this cursor (from [`SearchResults::next_cursor`]) instead of an
    /// offset; stays fast deep into the results.
    pub cursor: Option<String>,
    /// Allow typos (on by default).
    pub typo_tolerance: bool,
    /// Return highlighted snippets.
    pub highlight: bool,
    /// Re-rank by this user's affinity.
    pub personalization: Option<Affinity>,
}

impl Default for SearchQuery {
    fn default() -> Self {
        SearchQuery {
            text: String::new(),
            filters: SearchFilters::default(),
            facets: FacetRequest::default(),
            sort: SortOrder::Relevance,
            offset: 0,
            limit: 10,
            cursor: None,
            typo_tolerance: true,
            highlight: false,
            personalization: None,
        }
    }
}

impl SearchQuery {
    /// A full-text query with defaults.
    pub fn text(text: impl Into<String>) -> Self {
        SearchQuery {
            text: text.into(),
            ..Self::default()
        }
    }
}

/// One result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchHit {
    /// The product.
    pub product_id: ProductId,
    /// Its slug.
    pub slug: Slug,
    /// Its title.
    pub title: String,
    /// Its brand.
    pub brand: String,
    /// Its category.
    pub category: CategoryPath,
    /// Its lowest variant price.
    pub price: Money,
    /// Its rating.
    pub rating: Option<Rating>,
    /// The ranking score (comparable within one result set only).
    pub score: f32,
    /// A snippet with matches wrapped in `<mark>`...`</mark>`, when asked for.
    pub snippet: Option<String>,
}

/// A facet value and its count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FacetCount {
    /// The value (brand, category path, attribute value, bucket label).
    pub value: String,
    /// Matching products.
    pub count: u64,
}

/// Facet counts for the current query.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facets {
    /// Per brand, most frequent first.
    pub brands: Vec<FacetCount>,
    /// Per child category.
    pub categories: Vec<FacetCount>,
    /// Per price bucket, in bucket order.
    pub prices: Vec<FacetCount>,
    /// Per rating bucket.
    pub ratings: Vec<FacetCount>,
    /// Per attribute, per value.
    pub attributes: BTreeMap<String, Vec<FacetCount>>,
}

/// The answer to a [`SearchQuery`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SearchResults {
    /// Matching products in total.
    pub total: u64,
    /// This page.
    pub hits: Vec<SearchHit>,
    /// Facet counts.
    pub facets: Facets,
    /// Pass as [`SearchQuery::cursor`] for the next page.
    pub next_cursor: Option<String>,
}

/// An autocomplete suggestion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Suggestion {
    /// The text to show.
    pub text: String,
    /// Where it came from.
    pub kind: SuggestionKind,
    /// Ranking weight.
    pub score: f32,
}

/// The source of a [`Suggestion`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuggestionKind {
    /// A product title.
    Title,
    /// A brand.
    Brand,
    /// A category.
    Category,
}

/// A product search index.
///
/// # To ensure correctness
/// * Only `ACTIVE` products are returned; upserting a product in another status
///   removes it from the results.
/// * Writes become visible by the implementation's documented delay (or after
///   [`SearchIndex::refresh`]).
/// * A query string is never an error.
#[async_trait]
pub trait SearchIndex: Send + Sync + Debug + 'static {
    /// Indexes (or re-indexes) products; non-active ones are removed.
    async fn upsert(&self, products: &[Product]) -> Result<()>;

    /// Removes products.
    async fn remove(&self, ids: &[ProductId]) -> Result<()>;

    /// Makes every write so far visible to searches.
    async fn refresh(&self) -> Result<()>;

    /// Runs a query.
    async fn search(&self, query: &SearchQuery) -> Result<SearchResults>;

    /// Suggestions for what the user is typing (prefix-matched).
    async fn autocomplete(&self, prefix: &str, limit: u32) -> Result<Vec<Suggestion>>;

    /// Products similar in content (title, attributes, category) to `id`, excluding it.
    async fn similar(&self, id: &ProductId, limit: u32) -> Result<Vec<SearchHit>>;

    /// Number of searchable products.
    async fn count(&self) -> Result<u64>;
}
