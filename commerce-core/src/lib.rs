//! # commerce-core
//!
//! The domain, the storage contracts and the business services of the commerce
//! crates, an in-memory engine for every contract, and (behind the `testkit` feature)
//! the conformance kit every adapter runs.
//!
//! * Domain: [`money`], [`id`], [`catalog`] (products, variants, the category tree),
//!   [`cart`], [`inventory`], [`order`], [`event`], [`promotion`] (promotions, coupon
//!   codes, the evaluator and price lists), [`activity`] (baskets and shopper
//!   interactions, what the recommendation stores record).
//! * Contracts: [`store`] — `CatalogStore`, `CartStore`, `InventoryStore`,
//!   `OrderStore`, `EventLog`, `OrderQueue`, `SearchIndex`, `CoPurchaseStore`,
//!   `HistoryStore`, `PromotionStore`.
//! * Services: [`service`] — carts, checkout, the order pipeline, queue workers, the
//!   outbox relay and the reservation reaper.
//! * Reference implementation: [`memory`].
//! * Recommendations ([`recommend`]), the storefront's read paths (product page and
//!   search page) under a latency budget ([`browse`]) and graceful degradation
//!   ([`resilience`]).
//! * Time: [`clock`], injected everywhere time matters.
//!
//! ```
//! use std::sync::Arc;
//! use commerce_core::{catalog::*, id::*, inventory::*, memory::MemoryEngine, store::*};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let engine = MemoryEngine::new();
//! let sku = Sku::new("PH-1")?;
//! let warehouse = LocationId::new("main")?;
//! engine.inventory.restock(&sku, &warehouse, 10, "initial stock").await?;
//!
//! let order = OrderId::generate();
//! let held = engine.inventory.reserve(&ReservationRequest::new(order.clone(), [(sku.clone(), 3)])).await?;
//! assert_eq!(held.state, ReservationState::Active);
//! engine.inventory.confirm(&order).await?;
//! assert_eq!(engine.inventory.available(&sku).await?, 7);
//! assert!(engine.inventory.audit().await?.is_empty());
//! # Ok::<(), commerce_core::Error>(()) }).unwrap();
//! ```

#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod activity;
pub mod address;
pub mod allocate;
pub mod browse;
pub mod cart;
pub mod catalog;
pub mod clock;
mod error;
pub mod event;
pub mod id;
pub mod inventory;
pub mod memory;
pub mod money;
pub mod order;
pub mod promotion;
pub mod ratelimit;
pub mod recommend;
pub mod refund;
pub mod resilience;
pub mod sample;
pub mod service;
pub mod shipping;
pub mod store;
pub mod tax;
pub mod telemetry;

#[cfg(feature = "testkit")]
pub mod testkit;

pub use error::{BoxError, EntityKind, Error, Result};
pub use money::{Currency, Money};
