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

/// Most results a [`SearchQuery`] may ask for ([`SearchQuery::limit`]).
pub const MAX_SEARCH_LIMIT: u32 = 100;

/// Deepest [`SearchQuery::offset`]; deeper pages are reached with a cursor.
pub const MAX_SEARCH_OFFSET: u32 = 10_000;

/// Most suggestions [`SearchIndex::autocomplete`] returns.
pub const MAX_SUGGESTIONS: u32 = 50;

/// Most products [`SearchIndex::similar`] returns.
pub const MAX_SIMILAR: u32 = 100;

impl SearchQuery {
    /// Checks what every index rejects before searching: `limit` 1 to
    /// [`MAX_SEARCH_LIMIT`], `offset` at most [`MAX_SEARCH_OFFSET`], a price range whose
    /// ends are in one currency, price bucket bounds strictly ascending in one currency.
    /// Each problem is [`Error::Validation`](crate::Error::Validation) naming the field.
    /// The text is never checked (any text is a query); the cursor is checked by the
    /// index that made it.
    ///
    /// ```
    /// use commerce_core::store::search::SearchQuery;
    ///
    /// assert!(SearchQuery::text("anything: (at all) \"").validate().is_ok());
    /// let mut q = SearchQuery::default();
    /// q.limit = 0;
    /// assert!(q.validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<()> {
        use crate::Error;
        if self.limit == 0 || self.limit > MAX_SEARCH_LIMIT {
            return Err(Error::validation(
                "limit",
                format!("{} is not between 1 and {MAX_SEARCH_LIMIT}", self.limit),
            ));
        }
        if self.offset > MAX_SEARCH_OFFSET {
            return Err(Error::validation(
                "offset",
                format!(
                    "{} is past {MAX_SEARCH_OFFSET}: page deeper with the cursor",
                    self.offset
                ),
            ));
        }
        if let (Some(min), Some(max)) = (self.filters.price.min, self.filters.price.max) {
            if min.currency() != max.currency() {
                return Err(Error::validation(
                    "filters.price",
                    format!("{min} and {max} are in two currencies"),
                ));
            }
        }
        for pair in self.facets.price_buckets.windows(2) {
            let ascending = pair[0].currency() == pair[1].currency()
                && pair[0].to_minor_units() < pair[1].to_minor_units();
            if !ascending {
                return Err(Error::validation(
                    "facets.price_buckets",
                    format!(
                        "{} then {}: bounds must be strictly ascending, in one currency",
                        pair[0], pair[1]
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// A product search index.
///
/// # To ensure correctness
/// The conformance kit's `search` area (`testkit::search`, feature `testkit`) checks
/// each of these sentences; it calls [`refresh`](SearchIndex::refresh) after its
/// writes.
///
/// **Writes and visibility**
/// * Only `ACTIVE` products are returned (by `search`, `similar`, `autocomplete`, and
///   counted by `count`); upserting a product in another status removes it.
/// * Writes become visible by the implementation's documented delay, and at the latest
///   when [`refresh`](SearchIndex::refresh) returns.
/// * `upsert` replaces what was indexed for a product: only its last upserted version is
///   searched (by its new words and filter values, never its old ones), one hit per
///   product. `remove` of a product not indexed, and empty slices, succeed and change
///   nothing.
/// * `count` is the number of searchable products.
///
/// **Text**
/// * A query string is never an error: syntax characters are text. Text without words
///   (empty, blanks, punctuation) matches every product (browse).
/// * Words are compared case-insensitively. A product matches a word found in its
///   title, brand, category names, text attribute values or description. With several
///   words, the products holding every word; when none holds every word, those holding
///   any of them.
/// * An implementation may also match other forms of a word (stemming), and the last
///   word, unless the text ends in a blank, as the prefix of a title or brand word
///   (search as you type); with [`SearchQuery::typo_tolerance`], a word of 5 to 8
///   letters may match a title, brand or category word one edit away, 9 or more letters
///   two edits. Without typo tolerance and with a trailing blank, a word matches only as
///   above.
///
/// **Filters** (all must hold)
/// * `category`: that category or any under it ([`CategoryPath::contains`]).
/// * `brands`: the product's brand equals one of them exactly.
/// * `price`: the lowest variant price ([`Product::min_price`]) is within the range,
///   both ends inclusive, and in the range's currency; a range with a negative maximum,
///   or a minimum above the maximum, matches nothing.
/// * `min_rating`: rated at least that; unrated products never pass.
/// * `attributes`: each `(name, value)` equals the text ([`AttributeValue::to_text`])
///   of that attribute on the product or on any of its variants.
/// * `in_stock_only`: a variant with a positive `inventory_count`.
///
/// **Results**
/// * `total` counts every product matching the text and filters, whatever the page.
/// * Each hit's slug, title, brand, category, price (the lowest variant price) and
///   rating are the product's.
/// * Orders: the explicit sorts by the lowest variant price (ascending, descending),
///   creation time (newest first) and popularity (highest first); relevance puts better
///   matches first. Ties are broken in an order fixed by the implementation, the same
///   on every page.
/// * Paging by `offset` (at most [`MAX_SEARCH_OFFSET`]) and `limit` (1 to
///   [`MAX_SEARCH_LIMIT`]): consecutive pages are consecutive slices of one order, with
///   neither repeats nor gaps.
/// * `next_cursor` is `None` when the page is not full or is known to be the last;
///   otherwise it continues right after the page's last hit (`offset` is then ignored),
///   and following cursors from the first page visits every match once, in the order of
///   the sort (the page after the last may be empty). A cursor the index did not make
///   is `Validation`.
/// * Personalization re-ranks only: the same matches, total and facets as without it.
/// * With `highlight` and text, a hit whose title holds a matched word has a snippet
///   with that word wrapped in `<mark>`...`</mark>`; without `highlight`, no snippets.
///
/// **Facets** (over every match, not only the page; only those asked for)
/// * `brands`: per brand, the matches of that brand, most first, then by brand; no
///   zero counts.
/// * `categories`: per child of the category filter (per root without one), the
///   matches in that child or under it, most first, then by path; the value is the
///   child's full path. Matches directly in the filtered category are in no child.
/// * `price_buckets` `[b1, ..., bn]`: `n + 1` buckets labelled `<b1`, `b1-b2`, ...,
///   `>=bn` (by [`Money::amount`]), every one listed, zeros included; a product priced
///   `p` is in the first bucket whose upper bound is above `p` (compared in minor
///   units).
/// * `ratings`: `4+`, `3+`, `2+`, `1+`, each the matches rated at least that.
/// * `attributes`: per asked name (listed even without values), per value text, the
///   matches with that value on the product or a variant, most first, then by value.
///
/// **Autocomplete and similar products**
/// * `autocomplete` suggests titles, brands and category names of searchable products
///   (each text once per kind) in which every typed word, compared case-insensitively,
///   is the prefix of a distinct word; a typo may be forgiven. Text without words, or a
///   `limit` of 0, gives none; at most `limit` and at most [`MAX_SUGGESTIONS`].
/// * `similar` returns searchable products similar in content to `id` (title words,
///   attributes, category), never `id` itself; an unknown or unsearchable `id` gives
///   none; at most `limit` and at most [`MAX_SIMILAR`]; a `limit` of 0 gives none.
///
/// **Bad input** is [`Error::Validation`](crate::Error::Validation) and changes nothing:
/// what [`SearchQuery::validate`] rejects, and a cursor the index did not make.
///
/// [`AttributeValue::to_text`]: crate::catalog::AttributeValue::to_text
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
