//! The business services: carts, checkout, and the order pipeline, written only against
//! the storage contracts ([`crate::store`]) so they run unchanged on the in-memory
//! engine and on any adapter.
//!
//! # The pieces
//!
//! * [`Stores`]: one `Arc<dyn …>` per contract plus the clock; every service is built
//!   from it.
//! * [`CartService`]: add (availability check, price snapshot, same-SKU merge, limits,
//!   sliding expiry — atomically in the store), update, remove, clear; the guest to
//!   customer merge on sign-in; client-held carts ([`ClientCart`], serde JSON) priced
//!   from the catalog only, and the hybrid import of a client cart into a server cart.
//! * [`CheckoutService`]: revalidates the cart (price changes and stock per line, see
//!   [`Revalidation`]), computes totals in [`Money`](crate::Money), and creates the
//!   order under the request's idempotency key — a retried checkout returns the same
//!   order and never creates (or, downstream, charges) a second one.
//! * [`OrderPipeline`]: the event-driven state machine over
//!   [`OrderStatus`](crate::order::OrderStatus): validate, reserve, payment pending,
//!   charge, confirm, fulfilment, notify; compensation on decline, expiry,
//!   cancellation and refund. See [`pipeline`] for the table of steps. Its writes
//!   that belong together (reserve and move on; sell the stock and record the payment)
//!   go through [`Stores::steps`] ([`OrderSteps`](crate::store::OrderSteps)), which an
//!   adapter may run as one transaction and group across concurrent orders.
//! * The outside world, as traits with scriptable in-memory implementations:
//!   [`PaymentGateway`] ([`MemoryPaymentGateway`]), [`Fulfillment`]
//!   ([`MemoryFulfillment`]), [`Notifier`] ([`MemoryNotifier`]).
//! * Running it: [`OrderRelay`] turns `OrderCreated` events from the event log (the
//!   transactional outbox) into [`OrderQueue`](crate::store::OrderQueue) jobs;
//!   [`OrderWorkers`] claim jobs at a bounded concurrency (a burst waits in the queue,
//!   failures are retried with backoff, then dead-lettered); the
//!   [`ReservationReaper`] releases expired reservations and cancels their orders,
//!   safely on several nodes.
//!
//! # Guarantees, and where they come from
//!
//! | guarantee | mechanism |
//! |---|---|
//! | no lost cart update | the store applies each cart write atomically |
//! | a price from a client is never charged | every line is re-priced from the catalog |
//! | one order per checkout | [`OrderStore::create_order`](crate::store::OrderStore::create_order) is unique per idempotency key |
//! | one charge per order | one gateway key per order ([`payment_key`]); gateways dedupe on it |
//! | never oversell | stock is reserved before payment and only reserved units are sold |
//! | resumable after a crash anywhere | side effects are idempotent and precede the status that records them |
//! | no payment kept for a cancelled order | cleanup refunds the order's key, or voids it so a late charge is refused |
//!
//! # Reservation leases during payment
//!
//! Right before charging, the pipeline **extends** the reservation to now +
//! [`PipelineConfig::payment_lease`] (10 minutes by default) when less than that is
//! left, so a slow gateway does not let the stock lapse mid-payment (a reservation
//! made moments ago for 15 minutes needs no extra write). If the reservation has already expired when payment
//! starts, nothing is charged and the order is cancelled ("reservation expired before
//! payment was taken"). If it lapses and is reaped during the charge anyway (no
//! extension configured, or a charge slower than the lease), the payment is refunded
//! and the order cancelled ("reservation expired during payment").
//!
//! # When things keep failing
//!
//! Each step retries retryable failures a few times on its own
//! ([`PipelineConfig::step_retry`]); a run that still fails leaves the order where it
//! got to and its queue job is retried later with the worker's backoff
//! ([`WorkerConfig::retry`]), then dead-lettered. An order dead-lettered while waiting
//! for payment keeps its stock only until its reservation lapses: the reaper then
//! cancels it and voids its payment key. A paid order that cannot reach fulfilment
//! stays PAYMENT_CONFIRMED for an operator (paid orders are never cancelled
//! automatically).
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use commerce_core::cart::{CartLimits, CartOwner};
//! use commerce_core::catalog::{CategoryPath, NewProduct, ProductStatus};
//! use commerce_core::id::{CartId, CustomerId, IdempotencyKey, LocationId, SellerId, Sku};
//! use commerce_core::memory::MemoryEngine;
//! use commerce_core::order::OrderStatus;
//! use commerce_core::service::*;
//! use commerce_core::store::{CatalogStoreExt, InventoryStore, OrderStore};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let engine = MemoryEngine::new();
//! let stores = Stores::memory(&engine);
//!
//! // A product with 5 units in stock.
//! let sku = Sku::new("PH-1")?;
//! let mut phone = NewProduct::new(
//!     SellerId::new("s1")?, "Phone", CategoryPath::parse("Electronics > Phones")?,
//!     "Acme", sku.clone(), "199.00 USD".parse()?,
//! );
//! phone.status = ProductStatus::Active;
//! stores.catalog.create_product(phone).await?;
//! stores.inventory.restock(&sku, &LocationId::new("main")?, 5, "initial").await?;
//!
//! // A signed-in customer fills a cart and checks out.
//! let customer = CustomerId::new("alice")?;
//! let owner = CartOwner::Customer(customer.clone());
//! let cart_id = CartId::for_customer(&customer);
//! let carts = CartService::new(&stores, CartLimits::default());
//! carts.add(&cart_id, &owner, &sku, 2).await?;
//!
//! let checkout = CheckoutService::new(&stores, CheckoutConfig::default());
//! let request = CheckoutRequest::server_cart(
//!     customer, cart_id, owner, IdempotencyKey::new("checkout-1")?,
//! );
//! let order = match checkout.checkout(&request).await? {
//!     CheckoutOutcome::Placed { order, .. } => order,
//!     CheckoutOutcome::NeedsReview(review) => panic!("{review:?}"),
//! };
//! assert_eq!(order.totals.total.to_string(), "398.00 USD");
//!
//! // The pipeline takes it from CREATED to PREPARING.
//! let payments = Arc::new(MemoryPaymentGateway::new());
//! let pipeline = OrderPipeline::new(
//!     &stores, payments.clone(), Arc::new(MemoryFulfillment::new()),
//!     Arc::new(MemoryNotifier::new()), PipelineConfig::default(),
//! );
//! let order = pipeline.process(&order.id).await?;
//! assert_eq!(order.status, OrderStatus::Preparing);
//! assert_eq!(payments.captures().len(), 1);
//!
//! // A retried checkout returns the same order; processing it again charges nothing.
//! let again = checkout.checkout(&request).await?;
//! assert_eq!(again.order().map(|o| &o.id), Some(&order.id));
//! pipeline.process(&order.id).await?;
//! assert_eq!(payments.captures().len(), 1);
//!
//! let history = stores.orders.history(&order.id).await?;
//! let statuses: Vec<_> = history.iter().map(|c| c.to).collect();
//! assert_eq!(statuses, [
//!     OrderStatus::Created, OrderStatus::PaymentPending,
//!     OrderStatus::PaymentConfirmed, OrderStatus::Preparing,
//! ]);
//! # Ok::<(), commerce_core::Error>(()) }).unwrap();
//! ```

mod cart;
pub(crate) mod checkout;
mod client_cart;
mod fulfillment;
mod loader;
mod notify;
mod payment;
pub mod pipeline;
mod pricing;
mod queue_depth;
mod reaper;
mod reconcile;
mod relay;
mod retry;
pub mod returns;
mod signed_cart;
mod stores;
mod task;
mod worker;

pub use cart::CartService;
pub use checkout::{
    CartSource, CheckoutConfig, CheckoutOutcome, CheckoutPreview, CheckoutRequest, CheckoutService,
    TAX_CLASS_ATTRIBUTE,
};
pub use client_cart::{ClientCart, ClientCartItem, MAX_CLIENT_CART_BYTES};
pub use fulfillment::{Fulfillment, MemoryFulfillment};
pub use loader::CatalogLoader;
pub use notify::{MemoryNotifier, Notification, Notifier, SentNotification};
pub use payment::{
    Capture, ChargeBehavior, ChargeOutcome, ChargeRequest, MemoryPaymentGateway, PartialRefund,
    PartialRefundRequest, PaymentGateway, RefundOutcome, payment_key,
};
pub use pipeline::{OrderPipeline, PipelineConfig};
pub use pricing::{CheckedLine, LineInput, LineIssue, Revalidation};
pub use queue_depth::QueueDepthMonitor;
pub use reaper::{ReapReport, ReservationReaper};
pub use reconcile::{Discrepancy, ReconcileReport, reconcile};
pub use relay::{OrderRelay, RELAY_CONSUMER, RelayBatch};
pub use returns::{Disposition, ReturnLine, ReturnOutcome, ReturnRequest, ReturnsService};
pub use signed_cart::{CartSigner, CartSigningKey, MIN_SECRET_BYTES, SignedCartError};
pub use stores::Stores;
pub use task::{BackgroundTask, Shutdown};
pub use worker::{OrderWorkers, WorkStats, WorkerConfig};
