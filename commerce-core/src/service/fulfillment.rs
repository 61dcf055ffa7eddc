//! Handing paid orders to the warehouse: the [`Fulfillment`] contract and an in-memory
//! implementation.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::error::{EntityKind, Error, Result};
use crate::id::OrderId;
use crate::order::Order;

/// A fulfilment service (warehouse, 3PL).
///
/// # To ensure correctness
/// * `submit` is idempotent per order id: submitting an order again returns the
///   reference of the first submission and ships nothing twice (the pipeline calls it
///   again after a crash or a lost answer).
/// * `cancel` stops a submitted order that has not shipped; it is idempotent, and
///   cancelling an order that was never submitted succeeds **and blocks it**: a later
///   `submit` of that order is `InvalidTransition { entity: Order }` (so a submit
///   racing a refund never ships a refunded order).
#[async_trait]
pub trait Fulfillment: Send + Sync + Debug + 'static {
    /// Submits a paid order; returns the fulfilment reference.
    async fn submit(&self, order: &Order) -> Result<String>;

    /// Cancels the order's fulfilment (a refund before shipping).
    async fn cancel(&self, order_id: &OrderId, reason: &str) -> Result<()>;
}

#[derive(Debug, Default)]
struct State {
    submitted: BTreeMap<OrderId, String>,
    cancelled: BTreeSet<OrderId>,
    fail_next: u32,
    calls: u64,
}

/// The in-memory [`Fulfillment`]: records submissions; can be told to fail.
#[derive(Debug, Default)]
pub struct MemoryFulfillment {
    state: Mutex<State>,
}

impl MemoryFulfillment {
    /// An empty fulfilment service.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes the next `n` calls fail with a retryable error.
    pub fn fail_next(&self, n: u32) {
        self.lock().fail_next = n;
    }

    /// The reference of `order`'s submission and whether it was cancelled.
    pub fn submission(&self, order: &OrderId) -> Option<(String, bool)> {
        let s = self.lock();
        s.submitted
            .get(order)
            .map(|r| (r.clone(), s.cancelled.contains(order)))
    }

    /// Number of distinct orders submitted.
    pub fn submitted(&self) -> usize {
        self.lock().submitted.len()
    }

    /// Number of calls received (including repeats and failures).
    pub fn calls(&self) -> u64 {
        self.lock().calls
    }

    fn check_fail(s: &mut State) -> Result<()> {
        s.calls += 1;
        if s.fail_next > 0 {
            s.fail_next -= 1;
            return Err(Error::backend(true, "fulfilment service unavailable"));
        }
        Ok(())
    }
}

#[async_trait]
impl Fulfillment for MemoryFulfillment {
    async fn submit(&self, order: &Order) -> Result<String> {
        let mut s = self.lock();
        Self::check_fail(&mut s)?;
        if s.cancelled.contains(&order.id) {
            return Err(Error::invalid_transition(
                EntityKind::Order,
                "CANCELLED",
                "SUBMITTED",
            ));
        }
        let next = s.submitted.len() + 1;
        Ok(s.submitted
            .entry(order.id.clone())
            .or_insert_with(|| format!("ful_{next:06}"))
            .clone())
    }

    async fn cancel(&self, order_id: &OrderId, _reason: &str) -> Result<()> {
        let mut s = self.lock();
        Self::check_fail(&mut s)?;
        s.cancelled.insert(order_id.clone());
        Ok(())
    }
}
