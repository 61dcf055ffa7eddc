use std::fmt::Debug;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::id::{CustomerId, IdempotencyKey, OrderId};
use crate::order::{NewOrder, Order, OrderStatus, StatusChange, Transition};
use crate::store::Page;

/// What [`OrderStore::create_order`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CreateOutcome {
    /// A new order was stored.
    Created(Order),
    /// An order with the same idempotency key existed; it is returned unchanged.
    Existing(Order),
}

impl CreateOutcome {
    /// The order, new or existing.
    pub fn order(&self) -> &Order {
        match self {
            CreateOutcome::Created(o) | CreateOutcome::Existing(o) => o,
        }
    }

    /// The order, new or existing.
    pub fn into_order(self) -> Order {
        match self {
            CreateOutcome::Created(o) | CreateOutcome::Existing(o) => o,
        }
    }

    /// Whether this call created it.
    pub fn is_created(&self) -> bool {
        matches!(self, CreateOutcome::Created(_))
    }
}

/// An order listing, keyset-paginated by order id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderQuery {
    /// Only orders in this status.
    pub status: Option<OrderStatus>,
    /// Only this customer's orders.
    pub customer_id: Option<CustomerId>,
    /// Start after this id.
    pub after: Option<OrderId>,
    /// Page size, 1 to [`MAX_PAGE_SIZE`](super::MAX_PAGE_SIZE).
    pub limit: u32,
}

/// Orders, their status machine and their history.
#[async_trait]
pub trait OrderStore: Send + Sync + Debug + 'static {
    /// Creates the order described by `new` in status `CREATED` (see
    /// [`NewOrder::into_order`]), or returns the order that already has its
    /// idempotency key.
    ///
    /// # To ensure correctness
    /// * **Exactly one order per idempotency key**, under any number of concurrent
    ///   calls (a unique index, not a read-then-write). A key held by an order of a
    ///   different customer, or by an order with another basket
    ///   ([`Order::basket`]: other SKUs or quantities), is `Conflict { kind: Order }`
    ///   and writes nothing.
    /// * Validation errors write nothing.
    /// * The order, its first history entry (`None -> CREATED`, reason `"created"`) and
    ///   an `OrderCreated` event are written atomically.
    async fn create_order(&self, new: NewOrder) -> Result<CreateOutcome>;

    /// The order with `id`.
    async fn get_order(&self, id: &OrderId) -> Result<Option<Order>>;

    /// The order created under `key`.
    async fn get_order_by_key(&self, key: &IdempotencyKey) -> Result<Option<Order>>;

    /// Moves the order from `change.from` to `change.to` as a compare-and-set.
    ///
    /// # To ensure correctness
    /// * Illegal by the status table: `InvalidTransition { entity: Order }`, nothing
    ///   written.
    /// * If the stored status is not `change.from`: `Conflict { kind: Order }`, nothing
    ///   written; of two workers racing to advance an order, exactly one wins.
    /// * On success `version` grows by one, `updated_at` is now, `payment_ref` is set
    ///   if given, and the history entry and an `OrderStatusChanged` event are written
    ///   atomically with the change.
    /// * Unknown id: `NotFound { kind: Order }`.
    async fn transition(&self, id: &OrderId, change: &Transition) -> Result<Order>;

    /// The order's history, oldest first, starting with its creation.
    async fn history(&self, id: &OrderId) -> Result<Vec<StatusChange>>;

    /// Orders matching `query`, in ascending id order after `query.after`.
    async fn list_orders(&self, query: &OrderQuery) -> Result<Page<Order, OrderId>>;
}
