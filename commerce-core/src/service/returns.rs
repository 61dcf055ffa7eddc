//! Returns: some units of some lines come back, are restocked (or written off) and
//! refunded, never more than was paid.
//!
//! [`ReturnsService::process`] takes one [`ReturnRequest`] through these steps:
//!
//! 1. **request**: the order must have shipped (SHIPPED, DELIVERED or
//!    PARTIALLY_REFUNDED; else `InvalidTransition { entity: Order }`), every SKU must
//!    be a line of it and the units at most those not yet returned (`Validation`);
//!    the refund is priced by [`quote_refund`] with the service's
//!    [`ShippingRefundPolicy`] (what the units paid, including their share of
//!    discounts and tax).
//! 2. **guard**: the refund is recorded in the [`RefundLedger`] (opened from the order
//!    if the pipeline has not done it yet). The ledger's check-and-write is atomic:
//!    racing returns never refund more units or money than were paid; the loser gets
//!    `Validation` and nothing is written.
//! 3. **receive and restock**: the returned units are put back at the chosen location
//!    with [`InventoryStore::restock`] (a `Restocked` movement in the SKU's ledger,
//!    reason `return <order> <key>`), or written off (nothing moves: the units stay
//!    sold).
//! 4. **refund**: the payment gateway gives the amount back with
//!    [`PaymentGateway::refund_partial`], keyed `refund:<order>:<key>` (idempotent).
//! 5. **history**: the order moves to PARTIALLY_REFUNDED with a reason naming the
//!    return's key, units, disposition and amount (one history entry per return), and
//!    to REFUNDED with the return after which everything paid was refunded.
//!
//! **Retries**: a request is idempotent per `(order, key)`. Replaying a key whose
//! refund was recorded re-asks the gateway (same refund key, so money moves once) and
//! writes the history entries that are missing; it does **not** restock again. So a
//! process that dies between steps 2 and 3 leaves those units unrestocked (never
//! restocked twice): the replay reports `restocked: false` and they can be restocked
//! by hand. The same key with other units is `Conflict { kind: Refund }`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{EntityKind, Error, Result};
use crate::id::{IdempotencyKey, LocationId, OrderId, Sku};
use crate::order::{Order, OrderStatus, Transition};
use crate::refund::{
    PaidOrder, Refund, RefundBalance, RefundQuote, ShippingRefundPolicy, quote_refund,
};
use crate::service::Stores;
use crate::service::payment::{PartialRefund, PartialRefundRequest, PaymentGateway, payment_key};
use crate::store::{InventoryStore, OrderStore, RefundLedger};

/// What happens to returned units.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Disposition {
    /// Back on sale at this location.
    Restock {
        /// Where they go.
        location: LocationId,
    },
    /// Damaged or not resellable: they stay out of stock.
    WriteOff,
}

/// Units of one line coming back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnLine {
    /// The order line's variant.
    pub sku: Sku,
    /// Units, at least 1.
    pub quantity: u32,
}

/// A return of some units of some lines of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnRequest {
    /// The order.
    pub order_id: OrderId,
    /// Makes the return retry-safe, unique per order (the ledger's refund key).
    pub key: IdempotencyKey,
    /// The units, 1 to 250 distinct SKUs.
    pub lines: Vec<ReturnLine>,
    /// What happens to them.
    pub disposition: Disposition,
    /// Why, at most 200 characters.
    pub reason: String,
}

/// What [`ReturnsService::process`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnOutcome {
    /// The order after the return.
    pub order: Order,
    /// The refund as the ledger recorded it.
    pub refund: Refund,
    /// The gateway's refund (`None` when the refund was of zero).
    pub gateway: Option<PartialRefund>,
    /// Whether this call recorded the refund (`false`: a replay of the key).
    pub created: bool,
    /// Whether this call restocked the units.
    pub restocked: bool,
    /// The ledger's totals after the return.
    pub balance: RefundBalance,
}

/// Most attempts at writing the order's history entries when other returns of the
/// same order keep winning the compare-and-set (or are still writing theirs).
const MAX_ROUNDS: usize = 16;

/// Partial returns and refunds; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct ReturnsService {
    orders: Arc<dyn OrderStore>,
    inventory: Arc<dyn InventoryStore>,
    ledger: Arc<dyn RefundLedger>,
    payments: Arc<dyn PaymentGateway>,
    policy: ShippingRefundPolicy,
}

impl ReturnsService {
    /// Returns over `stores`' orders and inventory, guarded by `ledger`, refunded
    /// through `payments`; shipping is refunded with the last unit
    /// ([`ShippingRefundPolicy::WithLastUnit`]).
    pub fn new(
        stores: &Stores,
        ledger: Arc<dyn RefundLedger>,
        payments: Arc<dyn PaymentGateway>,
    ) -> Self {
        ReturnsService {
            orders: stores.orders.clone(),
            inventory: stores.inventory.clone(),
            ledger,
            payments,
            policy: ShippingRefundPolicy::WithLastUnit,
        }
    }

    /// Refunds shipping by `policy` instead.
    pub fn with_shipping_policy(mut self, policy: ShippingRefundPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// What returning `lines` of `order_id` would refund now (nothing is written,
    /// except opening the ledger of a paid order not opened yet).
    pub async fn quote(&self, order_id: &OrderId, lines: &[ReturnLine]) -> Result<RefundQuote> {
        let order = self.shipped_order(order_id).await?;
        let (paid, balance) = self.open(&order).await?;
        quote_refund(&paid, &balance, &units(lines), self.policy)
    }

    /// Takes `request` through the steps of the [module docs](self).
    ///
    /// Errors (nothing written): unknown order `NotFound { kind: Order }`; an order
    /// that has not shipped `InvalidTransition { entity: Order }`; SKUs not in the
    /// order, more units than remain, an empty or malformed request `Validation`; a
    /// racing return that took the units first `Validation` from the ledger's guard;
    /// the key reused for other units `Conflict { kind: Refund }`.
    pub async fn process(&self, request: &ReturnRequest) -> Result<ReturnOutcome> {
        validate(request)?;
        let refund_key =
            IdempotencyKey::new(format!("refund:{}:{}", request.order_id, request.key))
                .map_err(|_| Error::validation("key", "too long together with the order id"))?;
        let order = self
            .orders
            .get_order(&request.order_id)
            .await?
            .ok_or_else(|| Error::not_found(EntityKind::Order, &request.order_id))?;
        let earlier = self
            .ledger
            .refunds(&order.id)
            .await?
            .into_iter()
            .find(|r| r.request.key == request.key);
        // A replay may find the order REFUNDED by its own last return.
        let replay_of_refunded = order.status == OrderStatus::Refunded && earlier.is_some();
        if !order.status.is_shipped() && !replay_of_refunded {
            return Err(not_shipped(&order));
        }
        let (paid, balance) = self.open(&order).await?;
        let (refund, created) = match earlier {
            Some(r) => (r, false),
            None => {
                let quote = quote_refund(&paid, &balance, &units(&request.lines), self.policy)?;
                let asked = quote.into_request(
                    order.id.clone(),
                    request.key.clone(),
                    request.reason.clone(),
                );
                let outcome = self.ledger.record(&asked).await?;
                (outcome.refund, outcome.created)
            }
        };
        let same_units = refund.request.lines.len() == request.lines.len()
            && refund
                .request
                .lines
                .iter()
                .zip(&request.lines)
                .all(|(a, b)| a.sku == b.sku && a.quantity == b.quantity);
        if !same_units {
            return Err(Error::conflict(
                EntityKind::Refund,
                format!("return key {} was used for other units", request.key),
            ));
        }

        let reason = format!("return {} {}", order.id, request.key);
        let mut restocked = false;
        if created {
            if let Disposition::Restock { location } = &request.disposition {
                for l in &request.lines {
                    self.inventory
                        .restock(&l.sku, location, l.quantity, &reason)
                        .await?;
                }
                restocked = true;
            }
        }

        let gateway = if refund.total.is_zero() {
            None
        } else {
            Some(
                self.payments
                    .refund_partial(&PartialRefundRequest {
                        charge_key: payment_key(&order.id)?,
                        refund_key,
                        amount: refund.total,
                        reason: request.reason.clone(),
                    })
                    .await?,
            )
        };

        let balance = self
            .ledger
            .balance(&order.id)
            .await?
            .ok_or_else(|| Error::not_found(EntityKind::Order, &order.id))?;
        let order = self
            .record_history(request, &refund, gateway.as_ref(), &balance)
            .await?;
        Ok(ReturnOutcome {
            order,
            refund,
            gateway,
            created,
            restocked,
            balance,
        })
    }

    /// The order, if it has shipped.
    async fn shipped_order(&self, id: &OrderId) -> Result<Order> {
        let order = self
            .orders
            .get_order(id)
            .await?
            .ok_or_else(|| Error::not_found(EntityKind::Order, id))?;
        if !order.status.is_shipped() {
            return Err(not_shipped(&order));
        }
        Ok(order)
    }

    /// What the order paid and its balance, opening the ledger if needed.
    async fn open(&self, order: &Order) -> Result<(PaidOrder, RefundBalance)> {
        if let (Some(paid), Some(balance)) = (
            self.ledger.paid(&order.id).await?,
            self.ledger.balance(&order.id).await?,
        ) {
            return Ok((paid, balance));
        }
        let paid = PaidOrder::from_order(order)?;
        let balance = self.ledger.open(&paid).await?;
        Ok((paid, balance))
    }

    /// Writes the return's PARTIALLY_REFUNDED entry (once per key) and, when
    /// everything is refunded, the REFUNDED one; other returns of the order racing
    /// this one are waited out by compare-and-set retries.
    async fn record_history(
        &self,
        request: &ReturnRequest,
        refund: &Refund,
        gateway: Option<&PartialRefund>,
        balance: &RefundBalance,
    ) -> Result<Order> {
        let tag = format!("return {}:", request.key);
        let units: Vec<String> = request
            .lines
            .iter()
            .map(|l| format!("{} x {}", l.quantity, l.sku))
            .collect();
        let disposition = match &request.disposition {
            Disposition::Restock { location } => format!("restocked at {location}"),
            Disposition::WriteOff => "written off".to_owned(),
        };
        let reference = gateway.map_or(String::new(), |g| format!(" ({})", g.refund_ref));
        let note = format!(
            "{tag} received {}; {disposition}; refunded {}{reference}",
            units.join(", "),
            refund.total
        );
        let note: String = note.chars().take(500).collect();
        for _ in 0..MAX_ROUNDS {
            let order = self
                .orders
                .get_order(&request.order_id)
                .await?
                .ok_or_else(|| Error::not_found(EntityKind::Order, &request.order_id))?;
            let written = self
                .orders
                .history(&order.id)
                .await?
                .iter()
                .any(|c| c.reason.starts_with(&tag));
            let change = match order.status {
                OrderStatus::Refunded => return Ok(order),
                _ if !written => {
                    Transition::new(order.status, OrderStatus::PartiallyRefunded, note.clone())
                }
                OrderStatus::PartiallyRefunded if balance.is_fully_refunded() => {
                    // REFUNDED is terminal: only once every recorded return has its
                    // entry (a racing return still writing its own is waited for; one
                    // that died completes the order when it is replayed).
                    if !self.every_return_written(&order.id).await? {
                        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                        continue;
                    }
                    Transition::new(
                        order.status,
                        OrderStatus::Refunded,
                        "refunded: everything paid was refunded by returns",
                    )
                }
                _ => return Ok(order),
            };
            match self.orders.transition(&order.id, &change).await {
                Ok(_) => continue,
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(e),
            }
        }
        // Still waiting for another return's entry: the order stays PARTIALLY_REFUNDED
        // until that return is replayed.
        self.orders
            .get_order(&request.order_id)
            .await?
            .ok_or_else(|| Error::not_found(EntityKind::Order, &request.order_id))
    }

    async fn every_return_written(&self, order: &OrderId) -> Result<bool> {
        let history = self.orders.history(order).await?;
        Ok(self.ledger.refunds(order).await?.iter().all(|r| {
            let tag = format!("return {}:", r.request.key);
            history.iter().any(|c| c.reason.starts_with(&tag))
        }))
    }
}

fn not_shipped(order: &Order) -> Error {
    Error::invalid_transition(
        EntityKind::Order,
        order.status,
        OrderStatus::PartiallyRefunded,
    )
}

fn units(lines: &[ReturnLine]) -> Vec<(Sku, u32)> {
    lines.iter().map(|l| (l.sku.clone(), l.quantity)).collect()
}

fn validate(request: &ReturnRequest) -> Result<()> {
    if request.lines.is_empty() || request.lines.len() > crate::order::MAX_ORDER_LINES {
        return Err(Error::validation("lines", "1 to 250 lines"));
    }
    for (i, l) in request.lines.iter().enumerate() {
        if l.quantity == 0 {
            return Err(Error::validation(
                format!("lines[{i}].quantity"),
                "must be at least 1",
            ));
        }
    }
    if request.reason.chars().count() > 200 || request.reason.chars().any(char::is_control) {
        return Err(Error::validation(
            "reason",
            "at most 200 characters, no control characters",
        ));
    }
    Ok(())
}
