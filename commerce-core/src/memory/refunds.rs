//! The in-memory [`RefundLedger`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::lock;
use crate::clock::Clock;
use crate::error::{EntityKind, Error, Result};
use crate::id::{IdempotencyKey, OrderId};
use crate::refund::{PaidOrder, Refund, RefundBalance, RefundRequest};
use crate::store::{RefundLedger, RefundLedgerOutcome};

#[derive(Debug)]
struct Ledger {
    paid: PaidOrder,
    balance: RefundBalance,
    refunds: Vec<Refund>,
    by_key: HashMap<IdempotencyKey, usize>,
}

/// [`RefundLedger`] in process: one mutex over every order's ledger, so each check and
/// write is one atomic step.
#[derive(Debug)]
pub struct MemoryRefunds {
    clock: Arc<dyn Clock>,
    ledgers: Mutex<HashMap<OrderId, Ledger>>,
}

impl MemoryRefunds {
    /// An empty ledger reading time from `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        MemoryRefunds {
            clock,
            ledgers: Mutex::new(HashMap::new()),
        }
    }
}

#[async_trait]
impl RefundLedger for MemoryRefunds {
    async fn open(&self, paid: &PaidOrder) -> Result<RefundBalance> {
        let balance = RefundBalance::new(paid)?;
        let mut ledgers = lock(&self.ledgers);
        if let Some(existing) = ledgers.get(&paid.order_id) {
            if &existing.paid != paid {
                return Err(Error::conflict(
                    EntityKind::Refund,
                    format!("order {} was opened with other amounts", paid.order_id),
                ));
            }
            return Ok(existing.balance.clone());
        }
        ledgers.insert(
            paid.order_id.clone(),
            Ledger {
                paid: paid.clone(),
                balance: balance.clone(),
                refunds: Vec::new(),
                by_key: HashMap::new(),
            },
        );
        Ok(balance)
    }

    async fn record(&self, request: &RefundRequest) -> Result<RefundLedgerOutcome> {
        request.validate()?;
        let now = self.clock.now();
        let mut ledgers = lock(&self.ledgers);
        let ledger = ledgers
            .get_mut(&request.order_id)
            .ok_or_else(|| Error::not_found(EntityKind::Order, &request.order_id))?;
        if let Some(&i) = ledger.by_key.get(&request.key) {
            let refund = &ledger.refunds[i];
            if !refund.request.same_as(request) {
                return Err(Error::conflict(
                    EntityKind::Refund,
                    format!("refund key {} was used with other content", request.key),
                ));
            }
            return Ok(RefundLedgerOutcome {
                refund: refund.clone(),
                created: false,
                completes_order: false,
            });
        }
        // Check and apply on a copy: nothing changes unless all of it succeeds.
        let mut balance = ledger.balance.clone();
        balance.apply(request)?;
        let refund = Refund {
            request: request.clone(),
            total: request.total(balance.currency)?,
            created_at: now,
        };
        let completes_order = !ledger.balance.is_fully_refunded() && balance.is_fully_refunded();
        ledger.balance = balance;
        ledger
            .by_key
            .insert(request.key.clone(), ledger.refunds.len());
        ledger.refunds.push(refund.clone());
        Ok(RefundLedgerOutcome {
            refund,
            created: true,
            completes_order,
        })
    }

    async fn balance(&self, order: &OrderId) -> Result<Option<RefundBalance>> {
        Ok(lock(&self.ledgers).get(order).map(|l| l.balance.clone()))
    }

    async fn paid(&self, order: &OrderId) -> Result<Option<PaidOrder>> {
        Ok(lock(&self.ledgers).get(order).map(|l| l.paid.clone()))
    }

    async fn refunds(&self, order: &OrderId) -> Result<Vec<Refund>> {
        Ok(lock(&self.ledgers)
            .get(order)
            .map(|l| l.refunds.clone())
            .unwrap_or_default())
    }
}
