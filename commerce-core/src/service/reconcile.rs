//! Reconciliation across orders, reservations and payments: an operator's report of
//! what disagrees, e.g. a paid order whose stock was never sold, or money kept for a
//! cancelled order. It reads only; fixing is a human decision.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::payment::Capture;
use crate::clock::Timestamp;
use crate::error::Result;
use crate::id::OrderId;
use crate::inventory::ReservationState;
use crate::money::Money;
use crate::order::{Order, OrderStatus};
use crate::store::{InventoryStore, MAX_PAGE_SIZE, OrderQuery, OrderStore};

/// One disagreement found by [`reconcile`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Discrepancy {
    /// A paid order (payment confirmed, preparing, shipped, delivered) whose reservation
    /// is not confirmed: no stock was sold for it (`reservation` is its state, `None`
    /// when it has none).
    PaidWithoutSoldStock {
        /// The order.
        order_id: OrderId,
        /// Its status.
        status: OrderStatus,
        /// Its reservation's state.
        reservation: Option<ReservationState>,
    },
    /// A cancelled or refunded order whose reservation still holds or sold stock
    /// (active or confirmed).
    ClosedOrderHoldsStock {
        /// The order.
        order_id: OrderId,
        /// Its status.
        status: OrderStatus,
        /// Its reservation's state.
        reservation: ReservationState,
    },
    /// A captured payment, not refunded, on a cancelled or refunded order.
    CapturedOnClosedOrder {
        /// The order.
        order_id: OrderId,
        /// Its status.
        status: OrderStatus,
        /// The payment.
        payment_ref: String,
        /// The amount kept.
        amount: Money,
    },
    /// A paid order without a captured payment.
    PaidWithoutCapture {
        /// The order.
        order_id: OrderId,
        /// Its status.
        status: OrderStatus,
    },
    /// A payment captured for a different amount than the order's total.
    AmountMismatch {
        /// The order.
        order_id: OrderId,
        /// The payment.
        payment_ref: String,
        /// What was captured.
        captured: Money,
        /// The order's total.
        total: Money,
    },
    /// A payment for an order that does not exist.
    CaptureWithoutOrder {
        /// The order id the payment names.
        order_id: OrderId,
        /// The payment.
        payment_ref: String,
    },
}

/// What [`reconcile`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileReport {
    /// Orders compared.
    pub orders_checked: u64,
    /// Orders skipped because they changed at or after `settled_before` (in flight).
    pub orders_in_flight: u64,
    /// What disagrees, by order id.
    pub discrepancies: Vec<Discrepancy>,
}

impl ReconcileReport {
    /// Whether everything agrees.
    pub fn is_clean(&self) -> bool {
        self.discrepancies.is_empty()
    }
}

/// Compares every order with its reservation and with `captures` (the payment
/// provider's settled captures, e.g. from its report) and lists what disagrees.
///
/// Orders updated at or after `settled_before` are skipped: an order in the middle of
/// the pipeline legitimately disagrees for a moment (pass a time a few minutes ago).
/// Captures of skipped orders are not reported as orphans. Reads every order page by
/// page: a job for quiet hours, not a request.
pub async fn reconcile(
    orders: &dyn OrderStore,
    inventory: &dyn InventoryStore,
    captures: &[Capture],
    settled_before: Timestamp,
) -> Result<ReconcileReport> {
    let mut by_order: BTreeMap<&OrderId, Vec<&Capture>> = BTreeMap::new();
    for c in captures {
        by_order.entry(&c.order_id).or_default().push(c);
    }
    let mut report = ReconcileReport::default();
    let mut seen: BTreeSet<OrderId> = BTreeSet::new();
    let mut query = OrderQuery {
        limit: MAX_PAGE_SIZE,
        ..OrderQuery::default()
    };
    loop {
        let page = orders.list_orders(&query).await?;
        for order in &page.items {
            seen.insert(order.id.clone());
            if order.updated_at >= settled_before {
                report.orders_in_flight += 1;
                continue;
            }
            report.orders_checked += 1;
            let paid = by_order
                .get(&order.id)
                .map(Vec::as_slice)
                .unwrap_or_default();
            check_order(order, inventory, paid, &mut report.discrepancies).await?;
        }
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    for c in captures {
        if !seen.contains(&c.order_id) {
            report.discrepancies.push(Discrepancy::CaptureWithoutOrder {
                order_id: c.order_id.clone(),
                payment_ref: c.payment_ref.clone(),
            });
        }
    }
    Ok(report)
}

async fn check_order(
    order: &Order,
    inventory: &dyn InventoryStore,
    captures: &[&Capture],
    out: &mut Vec<Discrepancy>,
) -> Result<()> {
    let status = order.status;
    let closed = matches!(status, OrderStatus::Cancelled | OrderStatus::Refunded);
    let reservation = inventory.reservation(&order.id).await?.map(|r| r.state);
    if status.is_paid() && reservation != Some(ReservationState::Confirmed) {
        out.push(Discrepancy::PaidWithoutSoldStock {
            order_id: order.id.clone(),
            status,
            reservation,
        });
    }
    if closed {
        if let Some(state @ (ReservationState::Active | ReservationState::Confirmed)) = reservation
        {
            out.push(Discrepancy::ClosedOrderHoldsStock {
                order_id: order.id.clone(),
                status,
                reservation: state,
            });
        }
    }
    let kept: Vec<&&Capture> = captures.iter().filter(|c| !c.refunded).collect();
    if status.is_paid() && kept.is_empty() {
        out.push(Discrepancy::PaidWithoutCapture {
            order_id: order.id.clone(),
            status,
        });
    }
    for c in kept {
        if closed {
            out.push(Discrepancy::CapturedOnClosedOrder {
                order_id: order.id.clone(),
                status,
                payment_ref: c.payment_ref.clone(),
                amount: c.amount,
            });
        } else if c.amount != order.totals.total {
            out.push(Discrepancy::AmountMismatch {
                order_id: order.id.clone(),
                payment_ref: c.payment_ref.clone(),
                captured: c.amount,
                total: order.totals.total,
            });
        }
    }
    Ok(())
}
