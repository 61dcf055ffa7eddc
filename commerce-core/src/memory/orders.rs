use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tracing::instrument;

use super::{MemoryEventLog, lock};
use crate::clock::Clock;
use crate::error::{EntityKind, Error, Result};
use crate::event::DomainEvent;
use crate::id::{IdempotencyKey, OrderId};
use crate::order::{NewOrder, Order, StatusChange, Transition};
use crate::store::{CreateOutcome, OrderQuery, OrderStore, Page, check_limit};

#[derive(Debug, Default)]
struct State {
    orders: BTreeMap<OrderId, Order>,
    by_key: HashMap<IdempotencyKey, OrderId>,
    history: HashMap<OrderId, Vec<StatusChange>>,
}

/// The in-memory [`OrderStore`].
#[derive(Debug)]
pub struct MemoryOrders {
    clock: Arc<dyn Clock>,
    events: Arc<MemoryEventLog>,
    state: Mutex<State>,
}

impl MemoryOrders {
    /// An empty order store.
    pub fn new(clock: Arc<dyn Clock>, events: Arc<MemoryEventLog>) -> Self {
        MemoryOrders {
            clock,
            events,
            state: Mutex::new(State::default()),
        }
    }
}

#[async_trait]
impl OrderStore for MemoryOrders {
    #[instrument(level = "debug", skip_all, fields(key = %new.idempotency_key), err(level = "debug"))]
    async fn create_order(&self, new: NewOrder) -> Result<CreateOutcome> {
        let order = new.into_order(self.clock.now())?;
        let mut state = lock(&self.state);
        if let Some(existing) = state
            .by_key
            .get(&order.idempotency_key)
            .and_then(|id| state.orders.get(id))
        {
            if existing.customer_id != order.customer_id {
                return Err(Error::conflict(
                    EntityKind::Order,
                    "the idempotency key belongs to another customer's order",
                ));
            }
            if existing.basket() != order.basket() {
                return Err(Error::conflict(
                    EntityKind::Order,
                    "the idempotency key was used for another basket",
                ));
            }
            return Ok(CreateOutcome::Existing(existing.clone()));
        }
        if state.orders.contains_key(&order.id) {
            return Err(Error::conflict(
                EntityKind::Order,
                format!("order {} exists", order.id),
            ));
        }
        state
            .by_key
            .insert(order.idempotency_key.clone(), order.id.clone());
        state.history.insert(
            order.id.clone(),
            vec![StatusChange {
                from: None,
                to: order.status,
                reason: "created".into(),
                at: order.created_at,
            }],
        );
        state.orders.insert(order.id.clone(), order.clone());
        self.events.push([DomainEvent::OrderCreated {
            order_id: order.id.clone(),
            customer_id: order.customer_id.clone(),
        }]);
        Ok(CreateOutcome::Created(order))
    }

    async fn get_order(&self, id: &OrderId) -> Result<Option<Order>> {
        Ok(lock(&self.state).orders.get(id).cloned())
    }

    async fn get_order_by_key(&self, key: &IdempotencyKey) -> Result<Option<Order>> {
        let state = lock(&self.state);
        Ok(state
            .by_key
            .get(key)
            .and_then(|id| state.orders.get(id))
            .cloned())
    }

    #[instrument(level = "debug", skip(self), fields(from = %change.from, to = %change.to), err(level = "debug"))]
    async fn transition(&self, id: &OrderId, change: &Transition) -> Result<Order> {
        change.validate()?;
        let now = self.clock.now();
        let mut state = lock(&self.state);
        let order = state
            .orders
            .get_mut(id)
            .ok_or_else(|| Error::not_found(EntityKind::Order, id))?;
        if order.status != change.from {
            return Err(Error::conflict(
                EntityKind::Order,
                format!("order {id} is {}, not {}", order.status, change.from),
            ));
        }
        order.status = change.to;
        order.version += 1;
        order.updated_at = now.max(order.updated_at);
        if let Some(r) = &change.payment_ref {
            order.payment_ref = Some(r.clone());
        }
        let order = order.clone();
        state
            .history
            .entry(id.clone())
            .or_default()
            .push(StatusChange {
                from: Some(change.from),
                to: change.to,
                reason: change.reason.clone(),
                at: order.updated_at,
            });
        self.events.push([DomainEvent::OrderStatusChanged {
            order_id: id.clone(),
            from: change.from,
            to: change.to,
        }]);
        Ok(order)
    }

    async fn history(&self, id: &OrderId) -> Result<Vec<StatusChange>> {
        lock(&self.state)
            .history
            .get(id)
            .cloned()
            .ok_or_else(|| Error::not_found(EntityKind::Order, id))
    }

    async fn list_orders(&self, query: &OrderQuery) -> Result<Page<Order, OrderId>> {
        let limit = check_limit(query.limit)?;
        let state = lock(&self.state);
        let start = match &query.after {
            Some(a) => std::ops::Bound::Excluded(a.clone()),
            None => std::ops::Bound::Unbounded,
        };
        let mut items: Vec<Order> = state
            .orders
            .range((start, std::ops::Bound::Unbounded))
            .map(|(_, o)| o)
            .filter(|o| query.status.is_none_or(|s| s == o.status))
            .filter(|o| {
                query
                    .customer_id
                    .as_ref()
                    .is_none_or(|c| c == &o.customer_id)
            })
            .take(limit + 1)
            .cloned()
            .collect();
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|o| o.id.clone())
        } else {
            None
        };
        Ok(Page { items, next })
    }
}
