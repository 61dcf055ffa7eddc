//! Embedded product search for the commerce crates, on [tantivy](https://docs.rs/tantivy):
//! commerce-core's [`SearchIndex`](commerce_core::store::SearchIndex) with BM25 and field
//! boosts, filters, facet counts, sorting, cursor paging, highlighted snippets, typo
//! tolerance, autocomplete, similar products and personalised re-ranking; kept in step
//! with the catalog by [`SearchSync`] (from the event log) and [`rebuild`].
//!
//! ```
//! use commerce_core::catalog::CategoryTree;
//! use commerce_core::sample::SampleCatalog;
//! use commerce_core::store::SearchIndex;
//! use commerce_core::store::search::{FacetRequest, SearchQuery};
//! use commerce_search::TantivySearch;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let index = TantivySearch::in_ram()?; // or TantivySearch::open_or_create("data/search")
//! let sample = SampleCatalog::new(&CategoryTree::generated(), 7);
//! let products: Vec<_> = (0..500).map(|i| commerce_search::sample_product(&sample, i)).collect();
//! index.upsert(&products).await?;
//! index.refresh().await?; // or wait for the background commit (500 ms)
//!
//! let mut query = SearchQuery::text("samsnug"); // a typo
//! query.facets = FacetRequest { brands: true, ratings: true, ..FacetRequest::default() };
//! let results = index.search(&query).await?;
//! assert!(results.hits.iter().all(|h| h.brand == "Samsung"));
//! assert_eq!(results.facets.brands[0].value, "Samsung");
//!
//! let suggestions = index.autocomplete("sam", 5).await?;
//! assert_eq!(suggestions[0].text, "Samsung");
//! # Ok::<(), commerce_core::Error>(()) }).unwrap();
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod collect;
mod conjunction;
mod index;
pub mod listing;
pub mod query;
pub mod schema;
mod shard;
mod suggest;
mod sync;
mod view;

pub use index::{TantivyConfig, TantivySearch};
pub use query::{Boosts, allowed_typos};
pub use shard::ShardedSearch;
pub use sync::{SearchSync, rebuild};
pub use tantivy;

use commerce_core::catalog::{Product, Slug};
use commerce_core::clock::{Clock, SystemClock};
use commerce_core::sample::SampleCatalog;

/// Product `i` of a [`SampleCatalog`] as a stored [`Product`] (slug from the title,
/// timestamped now); for examples, tests and benchmarks.
pub fn sample_product(sample: &SampleCatalog, i: u64) -> Product {
    let new = sample.product(i);
    let slug = Slug::from_title(&format!("{} {i}", new.title));
    let now = SystemClock.now();
    match new.clone().into_product(slug, now) {
        Ok(p) => p,
        // The sample generator only makes valid products; keep a typed fallback anyway.
        Err(_) => panic_free_fallback(new, now),
    }
}

fn panic_free_fallback(
    new: commerce_core::catalog::NewProduct,
    now: commerce_core::clock::Timestamp,
) -> Product {
    Product {
        id: new.id.unwrap_or_else(|| SampleCatalog::product_id(0)),
        seller_id: new.seller_id,
        title: new.title,
        slug: Slug::from_title("product"),
        description: new.description,
        category: new.category,
        brand: new.brand,
        base_price: new.base_price,
        images: new.images,
        variants: new.variants,
        attributes: new.attributes,
        status: new.status,
        rating: new.rating,
        review_count: new.review_count,
        popularity: new.popularity,
        version: 1,
        created_at: now,
        updated_at: now,
    }
}
