//! Recommendations: "customers who bought this also bought", similar products, best
//! sellers, and re-ranking by what the shopper did.
//!
//! * **Co-purchase counts** ([`CoPurchaseStore`], in memory [`MemoryCoPurchase`]) are
//!   kept up to date by the [`CoPurchaseUpdater`], an event-log consumer that records
//!   each order as it reaches `PAYMENT_CONFIRMED` — exactly once per order although
//!   events are delivered at least once. Per-order work is bounded
//!   ([`MAX_PAIRED_PRODUCTS`]).
//! * **Content similarity** comes from [`SearchIndex::similar`](crate::store::SearchIndex::similar).
//! * **History** ([`HistoryStore`], in memory [`MemoryHistory`]) gives a [`Profile`]:
//!   an [`Affinity`](crate::store::search::Affinity) to brands and categories (also fed
//!   to search as `SearchQuery::personalization`) and what was bought.
//! * The [`Recommender`] fuses the candidate lists by weighted reciprocal rank, leaves
//!   out the cart, unsold and out-of-stock products, and re-ranks by the profile; the
//!   formula is in [`blend`]. Each source is guarded (deadline and circuit
//!   breaker, see [`crate::resilience`]); what was left out is reported.
//!
//! ```
//! use std::sync::Arc;
//! use commerce_core::catalog::*;
//! use commerce_core::id::*;
//! use commerce_core::memory::MemoryEngine;
//! use commerce_core::recommend::*;
//! use commerce_core::store::*;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let engine = MemoryEngine::new();
//! let main = LocationId::new("main")?;
//! let add = async |id: &str, brand: &str| -> commerce_core::Result<Product> {
//!     let sku = Sku::new(format!("{id}-1"))?;
//!     let mut new = NewProduct::new(SellerId::new("s1")?, id, CategoryPath::parse("Audio > Headphones")?,
//!                                   brand, sku.clone(), "50.00 USD".parse()?);
//!     new.id = Some(ProductId::new(id)?);
//!     new.status = ProductStatus::Active;
//!     engine.inventory.restock(&sku, &main, 5, "initial").await?;
//!     engine.catalog.create_product(new).await
//! };
//! let anchor = add("anchor", "Acme").await?;
//! let sony = add("sony-buds", "Sony").await?;
//! add("bose-buds", "Bose").await?;
//!
//! // Both were bought with the anchor once; Bose wins the tie on product id...
//! let counts = Arc::new(MemoryCoPurchase::new());
//! let p = |s: &str| ProductId::new(s).unwrap();
//! counts.record(&Basket::new(OrderId::new("o1")?, [p("anchor"), p("sony-buds")])).await?;
//! counts.record(&Basket::new(OrderId::new("o2")?, [p("anchor"), p("bose-buds")])).await?;
//!
//! // ...unless the shopper has shown a taste for Sony.
//! let history = Arc::new(MemoryHistory::new());
//! let me = CustomerId::new("me")?;
//! history.record(&me, &Interaction::new(&sony, InteractionKind::Viewed, engine.clock.now())).await?;
//!
//! let recommender = Recommender::new(counts, engine.catalog.clone(), engine.inventory.clone(), engine.clock.clone())
//!     .with_history(history);
//! let request = RecommendRequest::for_product(anchor.id.clone(), 2);
//! let plain = recommender.recommend(&request).await?;
//! assert_eq!(plain.items[0].product.product_id.as_str(), "bose-buds");
//! let mine = recommender.recommend(&request.for_customer(me)).await?;
//! assert_eq!(mine.items[0].product.product_id.as_str(), "sony-buds");
//! assert!(mine.omitted.is_empty());
//! # Ok::<(), commerce_core::Error>(()) }).unwrap();
//! # use commerce_core::clock::Clock;
//! ```

pub mod blend;
mod cached;
mod history;
mod personalizer;
mod recommender;
mod updater;

// The domain types live below the contracts, in `activity`.
pub use crate::activity::{
    Basket, HISTORY_CAPACITY, Interaction, InteractionKind, MAX_PAIRED_PRODUCTS, ProductCount,
    RecordOutcome,
};
pub use blend::{BlendWeights, Candidate, RankedList, Source, fuse, personalize};
pub use cached::CachedCoPurchase;
pub use history::{AffinityConfig, Profile, affinity_score};
// The in-process engines live with the others, in `memory`.
pub use crate::memory::{MemoryCoPurchase, MemoryHistory};
pub use personalizer::Personalizer;
pub use recommender::{
    MAX_ANCHORS, MAX_RECOMMENDATIONS, ProductRecommender, ProductSummary, RecommendRequest,
    Recommendation, Recommendations, Recommender, RecommenderConfig,
};
pub use updater::{CoPurchaseUpdater, UpdateReport};

pub use crate::store::{CoPurchaseStore, HistoryStore};
