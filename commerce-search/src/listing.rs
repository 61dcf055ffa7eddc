//! Category listings served from the search index: a category page (a subtree, with
//! filters, a sort, keyset or offset paging and facet counts) is a [`SearchQuery`]
//! without text.
//!
//! **How it is answered**: from the index's *listing views* (one per segment, built
//! once and held in memory, about 35 bytes per product; see
//! [`TantivyConfig::listing_views`](crate::TantivyConfig::listing_views)): the products
//! grouped by category, price ascending within a group, and the segment's products in
//! popularity, newest and price order. The facet counts (brand, child category, price
//! bucket, rating) and the total are one pass over the subtree's groups in contiguous
//! arrays (a price range is a binary search per group); the page is the first matches
//! found walking the requested order from the cursor (a large subtree matches within
//! the first few hundred positions), or, for a small subtree, a heap over its
//! matches. Neither reads a row or a stored document per matching product; only the
//! 24 hits of the page are read. Listings with attribute filters or facets, or with
//! personalisation, use the general collector.
//!
//! **Staleness**: the views are exact for the segments they belong to (deletions are
//! read at query time), so a listing shows the index as of its last commit, which
//! follows the catalog through [`SearchSync`](crate::SearchSync): a product change
//! appears after the sync's wake-up, the re-read and a commit: documented bound 2 s
//! (the `search-lag` benchmark measured p99 734 ms, max 941 ms under 1,000 product
//! writes/s). A large new segment (after a merge) gets its view built in the
//! background; until then listings take the collector (correct, slower). Stock on a
//! listing is the in-stock flag as of that moment; the product page and checkout read
//! live stock.

use commerce_core::catalog::CategoryPath;
use commerce_core::money::{Currency, Money};
use commerce_core::store::search::{FacetRequest, SearchFilters, SearchQuery, SortOrder};

/// Products per listing page unless set otherwise.
pub const PAGE_SIZE: u32 = 24;

/// Upper bounds (major units) of the price buckets a listing counts.
pub const PRICE_BUCKETS: [i64; 4] = [50, 100, 250, 500];

/// The query of a category listing: every active product under `category`, in `sort`
/// order (`Relevance` without text is the most popular first), [`PAGE_SIZE`] per page,
/// with counts per brand, child category, price bucket ([`PRICE_BUCKETS`] in
/// `currency`) and rating. Add filters on [`SearchQuery::filters`]; page with
/// [`SearchQuery::cursor`] (keyset: page 1,000 costs what page 1 does) or
/// [`SearchQuery::offset`].
///
/// ```
/// use commerce_core::catalog::{CategoryPath, CategoryTree};
/// use commerce_core::money::Currency;
/// use commerce_core::sample::SampleCatalog;
/// use commerce_core::store::SearchIndex;
/// use commerce_core::store::search::SortOrder;
/// use commerce_search::{TantivySearch, listing};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let index = TantivySearch::in_ram()?;
/// let sample = SampleCatalog::new(&CategoryTree::generated(), 3);
/// let products: Vec<_> = (0..300).map(|i| commerce_search::sample_product(&sample, i)).collect();
/// index.upsert(&products).await?;
/// index.refresh().await?;
///
/// let root = products[0].category.ancestors().last().cloned().unwrap_or_else(|| products[0].category.clone());
/// let mut query = listing::category_listing(root.clone(), SortOrder::PriceAscending, Currency::USD);
/// let first = index.search(&query).await?;
/// assert!(first.hits.iter().all(|h| root.contains(&h.category)));
/// let cents = |h: &commerce_core::store::search::SearchHit| h.price.to_minor_units();
/// assert!(first.hits.windows(2).all(|w| cents(&w[0]) <= cents(&w[1])));
/// let counted: u64 = first.facets.categories.iter().map(|c| c.count).sum();
/// assert_eq!(counted, first.total);
/// query.cursor = first.next_cursor.clone();
/// let second = index.search(&query).await?;
/// let last = first.hits.last().map(cents).unwrap_or(0);
/// assert!(second.hits.iter().all(|h| cents(h) >= last));
/// # Ok::<(), commerce_core::Error>(()) }).unwrap();
/// ```
pub fn category_listing(
    category: CategoryPath,
    sort: SortOrder,
    currency: Currency,
) -> SearchQuery {
    SearchQuery {
        text: String::new(),
        filters: SearchFilters {
            category: Some(category),
            ..SearchFilters::default()
        },
        facets: FacetRequest {
            brands: true,
            categories: true,
            price_buckets: PRICE_BUCKETS
                .iter()
                .filter_map(|&major| {
                    let minor = major.checked_mul(10i64.pow(currency.minor_units()))?;
                    Money::from_minor_units(minor, currency).ok()
                })
                .collect(),
            ratings: true,
            attributes: Vec::new(),
        },
        sort,
        limit: PAGE_SIZE,
        typo_tolerance: false,
        ..SearchQuery::default()
    }
}
