//! Domain events: what changed in the source of truth, appended by stores in the same
//! atomic step as the change itself (a transactional outbox), so that search indexes,
//! caches, recommendations and notifications can follow.
//!
//! Events name what changed and carry just enough to route on; a consumer that needs
//! the full state reads it from the store (which is at least as new as the event).

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::id::{CustomerId, EventId, LocationId, OrderId, ProductId, Sku};
use crate::inventory::ReservationState;
use crate::order::OrderStatus;

/// Something that happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum DomainEvent {
    /// A product was created or updated (any field, including status).
    ProductChanged {
        /// The product.
        product_id: ProductId,
        /// Its version after the change.
        version: u64,
    },
    /// A stock level changed by a restock or an adjustment.
    StockChanged {
        /// The SKU.
        sku: Sku,
        /// The location.
        location: LocationId,
        /// Units available after the change.
        available: u64,
    },
    /// A reservation was made, confirmed, released (explicitly or by expiry) or
    /// returned: one event per state change, none for an idempotent repeat or an
    /// `extend`.
    ReservationChanged {
        /// The order.
        order_id: OrderId,
        /// The new state.
        state: ReservationState,
        /// The SKUs of the reservation's normalised lines
        /// ([`Reservation::lines`](crate::inventory::Reservation::lines)): each once, in
        /// SKU order, the same on every transition, including SKUs served only by
        /// backorders.
        skus: Vec<Sku>,
    },
    /// An order was created.
    OrderCreated {
        /// The order.
        order_id: OrderId,
        /// The buyer.
        customer_id: CustomerId,
    },
    /// An order changed status.
    OrderStatusChanged {
        /// The order.
        order_id: OrderId,
        /// The previous status.
        from: OrderStatus,
        /// The new status.
        to: OrderStatus,
    },
}

impl DomainEvent {
    /// A short name for logs and metrics (`product_changed`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            DomainEvent::ProductChanged { .. } => "product_changed",
            DomainEvent::StockChanged { .. } => "stock_changed",
            DomainEvent::ReservationChanged { .. } => "reservation_changed",
            DomainEvent::OrderCreated { .. } => "order_created",
            DomainEvent::OrderStatusChanged { .. } => "order_status_changed",
        }
    }
}

/// An event as read back from an [`EventLog`](crate::store::EventLog).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventEnvelope {
    /// Position in the log; consumers dedupe on it.
    pub id: EventId,
    /// When it was appended.
    pub at: Timestamp,
    /// What happened.
    pub event: DomainEvent,
}
