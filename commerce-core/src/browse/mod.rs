//! Storefront read paths assembled under a latency budget: the product page and the
//! shopper's search.
//!
//! A page has essential parts (the product, its variants and prices; the search
//! results) and non-essential ones (live availability, recommendations, the cache,
//! view tracking, personalisation, the rate limiter). The non-essential parts run
//! concurrently, each inside a [`Guard`](crate::resilience::Guard) whose deadline never
//! passes the page's, and the page lists what it had to leave out
//! ([`ProductPage::omitted`]). Checkout uses none of this.
//!
//! See [`ProductPages`] for a runnable example with a recommender that hangs.

mod product;
mod search;

// The contract lives with the others, in `store`.
pub use crate::store::{ProductCache, ProductKey};
// The in-process engine lives with the others, in `memory`.
pub use crate::memory::MemoryProductCache;
pub use product::{
    ProductPage, ProductPageConfig, ProductPageRequest, ProductPages, StockStatus, VariantView,
};
pub use search::{SearchPage, SearchPageConfig, SearchPages, SearchResponse};

pub use crate::resilience::{Omission, OmissionReason, Section};
