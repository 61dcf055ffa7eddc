//! [`PromotionStore`] in memory: one mutex, every limit checked and taken in the same
//! critical section.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::lock;
use crate::clock::{self, Clock, Timestamp};
use crate::error::{EntityKind, Error, Result};
use crate::id::{CustomerId, OrderId, PromotionId};
use crate::money::Money;
use crate::promotion::{
    CodeBatch, CodeLookup, CouponCode, MAX_CODES, Offer, Promotion, PromotionUsage, Redemption,
    RedemptionLine, RedemptionRequest, RedemptionState, Trigger, Unavailable, WindowState,
    check_line, check_reason, check_ttl,
};
use crate::store::{PromotionStore, check_limit};

#[derive(Debug, Default, Clone, Copy)]
struct Counter {
    uses: u64,
    confirmed_uses: u64,
    spent: i64,
    confirmed_spent: i64,
}

#[derive(Debug, Clone)]
struct CodeEntry {
    promotion_id: PromotionId,
    single_use: bool,
    holder: Option<OrderId>,
}

#[derive(Debug, Default)]
struct State {
    promotions: BTreeMap<PromotionId, Promotion>,
    counters: HashMap<PromotionId, Counter>,
    customer_uses: HashMap<(PromotionId, CustomerId), u64>,
    codes: HashMap<CouponCode, CodeEntry>,
    redemptions: HashMap<OrderId, Redemption>,
    /// Active redemptions by expiry.
    expiry: BTreeSet<(Timestamp, OrderId)>,
}

impl State {
    fn counter(&self, id: &PromotionId) -> Counter {
        self.counters.get(id).copied().unwrap_or_default()
    }

    fn exhausted(&self, p: &Promotion) -> bool {
        let c = self.counter(&p.id);
        p.limits.total_uses.is_some_and(|t| c.uses >= t)
            || p.limits
                .budget
                .is_some_and(|b| c.spent >= b.to_minor_units())
    }

    /// Gives back what an active redemption held.
    fn give_back(&mut self, r: &Redemption) {
        for line in &r.lines {
            let c = self.counters.entry(line.promotion_id.clone()).or_default();
            c.uses = c.uses.saturating_sub(1);
            c.spent -= line.amount.to_minor_units();
            let entry = line.code.as_ref().and_then(|c| self.codes.get_mut(c));
            if let Some(entry) = entry.filter(|e| e.holder.as_ref() == Some(&r.order_id)) {
                entry.holder = None;
            }
            let key = r
                .customer_id
                .as_ref()
                .map(|c| (line.promotion_id.clone(), c.clone()));
            if let Some(n) = key.and_then(|k| self.customer_uses.get_mut(&k)) {
                *n = n.saturating_sub(1);
            }
        }
    }

    fn release(&mut self, order_id: &OrderId, reason: &str) -> Option<Redemption> {
        let r = self.redemptions.get(order_id)?.clone();
        if r.state != RedemptionState::Active {
            return None;
        }
        self.give_back(&r);
        self.expiry.remove(&(r.expires_at, order_id.clone()));
        let entry = self.redemptions.get_mut(order_id)?;
        entry.state = RedemptionState::Released;
        entry.reason = Some(reason.to_owned());
        Some(entry.clone())
    }
}

/// The in-memory [`PromotionStore`].
///
/// ```
/// use std::sync::Arc;
/// use commerce_core::{clock::SystemClock, memory::MemoryPromotions, store::PromotionStore};
/// use commerce_core::promotion::*;
/// use commerce_core::{Currency, id::*};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let store = MemoryPromotions::new(Arc::new(SystemClock));
/// let promo = Promotion::new(
///     PromotionId::new("launch")?, "5.00 off", Currency::USD,
///     Action::AmountOff { amount: "5.00 USD".parse()?, target: Target::Order },
/// )
/// .with_code()
/// .with_limits(Limits { total_uses: Some(1), ..Limits::default() });
/// store.create_promotion(&promo).await?;
/// store.add_codes(&promo.id, &CodeBatch::shared(CouponCode::parse("LAUNCH")?)).await?;
///
/// let line = RedemptionLine {
///     promotion_id: promo.id.clone(),
///     code: Some(CouponCode::parse("LAUNCH")?),
///     amount: "5.00 USD".parse()?,
/// };
/// let order = |id| RedemptionRequest::new(
///     OrderId::new(id).unwrap(), None, "30.00 USD".parse().unwrap(), vec![line.clone()]);
/// store.reserve(&order("o-1")).await?;
/// // The single use is held: a second order is refused.
/// assert!(matches!(
///     store.reserve(&order("o-2")).await,
///     Err(commerce_core::Error::PromotionUnavailable { reason: Unavailable::TotalUses, .. })
/// ));
/// store.release(&OrderId::new("o-1")?, "payment failed").await?;
/// store.reserve(&order("o-2")).await?;
/// # Ok::<(), commerce_core::Error>(()) }).unwrap();
/// ```
#[derive(Debug)]
pub struct MemoryPromotions {
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
}

impl MemoryPromotions {
    /// An empty store reading time from `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        MemoryPromotions {
            clock,
            state: Mutex::new(State::default()),
        }
    }
}

fn cut(text: &str) -> String {
    text.chars().take(64).collect()
}

fn unavailable(p: &PromotionId, reason: Unavailable) -> Error {
    Error::PromotionUnavailable {
        promotion: p.to_string(),
        reason,
    }
}

fn not_found(order_id: &OrderId) -> Error {
    Error::not_found(EntityKind::Redemption, order_id)
}

#[async_trait]
impl PromotionStore for MemoryPromotions {
    async fn create_promotion(&self, promotion: &Promotion) -> Result<Promotion> {
        promotion.validate_at(self.clock.now())?;
        let mut s = lock(&self.state);
        match s.promotions.get(&promotion.id) {
            Some(existing) if existing == promotion => Ok(existing.clone()),
            Some(_) => Err(Error::conflict(
                EntityKind::Promotion,
                format!("promotion {} exists with another definition", promotion.id),
            )),
            None => {
                s.promotions.insert(promotion.id.clone(), promotion.clone());
                Ok(promotion.clone())
            }
        }
    }

    async fn promotion(&self, id: &PromotionId) -> Result<Option<Promotion>> {
        Ok(lock(&self.state).promotions.get(id).cloned())
    }

    async fn automatic_offers(&self, now: Timestamp) -> Result<Vec<Offer>> {
        let s = lock(&self.state);
        Ok(s.promotions
            .values()
            .filter(|p| {
                p.trigger == Trigger::Automatic && p.window_state(now) == WindowState::Active
            })
            .map(|p| Offer {
                promotion: p.clone(),
                exhausted: s.exhausted(p),
            })
            .collect())
    }

    async fn add_codes(&self, promotion_id: &PromotionId, batch: &CodeBatch) -> Result<u64> {
        batch.validate()?;
        let mut s = lock(&self.state);
        let p = s
            .promotions
            .get(promotion_id)
            .ok_or_else(|| Error::not_found(EntityKind::Promotion, promotion_id))?;
        if p.trigger != Trigger::Code {
            return Err(Error::validation(
                "promotion_id",
                format!("promotion {promotion_id} is automatic and takes no codes"),
            ));
        }
        if let Some(taken) = batch.codes.iter().find(|c| s.codes.contains_key(*c)) {
            return Err(Error::conflict(
                EntityKind::Coupon,
                format!("code {taken} already exists; no code of the batch was added"),
            ));
        }
        for code in &batch.codes {
            s.codes.insert(
                code.clone(),
                CodeEntry {
                    promotion_id: promotion_id.clone(),
                    single_use: batch.single_use,
                    holder: None,
                },
            );
        }
        Ok(batch.codes.len() as u64)
    }

    async fn lookup_codes(&self, codes: &[String]) -> Result<Vec<CodeLookup>> {
        if codes.len() > MAX_CODES {
            return Err(Error::validation(
                "codes",
                format!("at most {MAX_CODES} codes"),
            ));
        }
        let s = lock(&self.state);
        Ok(codes
            .iter()
            .map(|text| {
                let Ok(code) = CouponCode::parse(text) else {
                    return CodeLookup::Malformed { given: cut(text) };
                };
                let Some(entry) = s.codes.get(&code) else {
                    return CodeLookup::Unknown { code };
                };
                let Some(promotion) = s.promotions.get(&entry.promotion_id) else {
                    return CodeLookup::Unknown { code };
                };
                CodeLookup::Found {
                    exhausted: (entry.single_use && entry.holder.is_some())
                        || s.exhausted(promotion),
                    code,
                    promotion: Box::new(promotion.clone()),
                }
            })
            .collect())
    }

    async fn reserve(&self, request: &RedemptionRequest) -> Result<Redemption> {
        let lines = request.normalized_lines()?;
        let now = self.clock.now();
        let mut s = lock(&self.state);
        if let Some(existing) = s.redemptions.get(&request.order_id) {
            if existing.same_request(&request.customer_id, &request.order_total, &lines) {
                return Ok(existing.clone());
            }
            return Err(Error::conflict(
                EntityKind::Redemption,
                format!("order {} already holds other promotions", request.order_id),
            ));
        }
        for line in &lines {
            let owner = line
                .code
                .as_ref()
                .and_then(|c| s.codes.get(c))
                .map(|e| &e.promotion_id);
            check_line(
                s.promotions.get(&line.promotion_id),
                line,
                owner,
                request.customer_id.as_ref(),
                now,
            )?;
        }
        // The limits, in the documented order; nothing is taken until all pass.
        for line in &lines {
            let p = &s.promotions[&line.promotion_id];
            let c = s.counter(&p.id);
            if p.limits.total_uses.is_some_and(|t| c.uses >= t) {
                return Err(unavailable(&p.id, Unavailable::TotalUses));
            }
            if p.limits
                .budget
                .is_some_and(|b| c.spent + line.amount.to_minor_units() > b.to_minor_units())
            {
                return Err(unavailable(&p.id, Unavailable::Budget));
            }
        }
        let mut coded: Vec<&RedemptionLine> = lines.iter().filter(|l| l.code.is_some()).collect();
        coded.sort_by(|a, b| a.code.cmp(&b.code));
        for line in &coded {
            let entry = line.code.as_ref().and_then(|c| s.codes.get(c));
            if entry.is_some_and(|e| e.single_use && e.holder.is_some()) {
                return Err(unavailable(&line.promotion_id, Unavailable::CodeUsed));
            }
        }
        if let Some(customer) = &request.customer_id {
            for line in &lines {
                let p = &s.promotions[&line.promotion_id];
                let held = s
                    .customer_uses
                    .get(&(p.id.clone(), customer.clone()))
                    .copied()
                    .unwrap_or(0);
                if p.limits
                    .uses_per_customer
                    .is_some_and(|limit| held >= u64::from(limit))
                {
                    return Err(unavailable(&p.id, Unavailable::CustomerUses));
                }
            }
        }
        for line in &lines {
            let c = s.counters.entry(line.promotion_id.clone()).or_default();
            c.uses += 1;
            c.spent += line.amount.to_minor_units();
            let entry = line.code.as_ref().and_then(|c| s.codes.get_mut(c));
            if let Some(entry) = entry.filter(|e| e.single_use) {
                entry.holder = Some(request.order_id.clone());
            }
            if let Some(customer) = &request.customer_id {
                *s.customer_uses
                    .entry((line.promotion_id.clone(), customer.clone()))
                    .or_default() += 1;
            }
        }
        let redemption = Redemption {
            order_id: request.order_id.clone(),
            customer_id: request.customer_id.clone(),
            order_total: request.order_total,
            lines,
            state: RedemptionState::Active,
            expires_at: clock::add(now, request.ttl),
            reason: None,
        };
        s.expiry
            .insert((redemption.expires_at, redemption.order_id.clone()));
        s.redemptions
            .insert(redemption.order_id.clone(), redemption.clone());
        Ok(redemption)
    }

    async fn extend(&self, order_id: &OrderId, ttl: Duration) -> Result<Redemption> {
        check_ttl(ttl)?;
        let now = self.clock.now();
        let mut s = lock(&self.state);
        let r = s
            .redemptions
            .get(order_id)
            .ok_or_else(|| not_found(order_id))?;
        if r.state != RedemptionState::Active {
            return Err(Error::invalid_transition(
                EntityKind::Redemption,
                r.state,
                RedemptionState::Active,
            ));
        }
        if r.expires_at <= now {
            return Err(Error::invalid_transition(
                EntityKind::Redemption,
                "expired",
                RedemptionState::Active,
            ));
        }
        let old = r.expires_at;
        let new = clock::add(now, ttl);
        s.expiry.remove(&(old, order_id.clone()));
        s.expiry.insert((new, order_id.clone()));
        let r = s
            .redemptions
            .get_mut(order_id)
            .ok_or_else(|| not_found(order_id))?;
        r.expires_at = new;
        Ok(r.clone())
    }

    async fn confirm(&self, order_id: &OrderId) -> Result<Redemption> {
        let mut s = lock(&self.state);
        let r = s
            .redemptions
            .get(order_id)
            .ok_or_else(|| not_found(order_id))?
            .clone();
        match r.state {
            RedemptionState::Confirmed => Ok(r),
            RedemptionState::Released => Err(Error::invalid_transition(
                EntityKind::Redemption,
                r.state,
                RedemptionState::Confirmed,
            )),
            RedemptionState::Active => {
                for line in &r.lines {
                    let c = s.counters.entry(line.promotion_id.clone()).or_default();
                    c.confirmed_uses += 1;
                    c.confirmed_spent += line.amount.to_minor_units();
                }
                s.expiry.remove(&(r.expires_at, order_id.clone()));
                let r = s
                    .redemptions
                    .get_mut(order_id)
                    .ok_or_else(|| not_found(order_id))?;
                r.state = RedemptionState::Confirmed;
                Ok(r.clone())
            }
        }
    }

    async fn release(&self, order_id: &OrderId, reason: &str) -> Result<Redemption> {
        check_reason(reason)?;
        let mut s = lock(&self.state);
        let r = s
            .redemptions
            .get(order_id)
            .ok_or_else(|| not_found(order_id))?
            .clone();
        match r.state {
            RedemptionState::Released => Ok(r),
            RedemptionState::Confirmed => Err(Error::invalid_transition(
                EntityKind::Redemption,
                r.state,
                RedemptionState::Released,
            )),
            RedemptionState::Active => s
                .release(order_id, reason)
                .ok_or_else(|| not_found(order_id)),
        }
    }

    async fn release_expired(&self, now: Timestamp, limit: u32) -> Result<Vec<Redemption>> {
        let limit = check_limit(limit)?;
        let mut s = lock(&self.state);
        let due: Vec<OrderId> = s
            .expiry
            .iter()
            .take_while(|(at, _)| *at <= now)
            .take(limit)
            .map(|(_, o)| o.clone())
            .collect();
        Ok(due.iter().filter_map(|o| s.release(o, "expired")).collect())
    }

    async fn redemption(&self, order_id: &OrderId) -> Result<Option<Redemption>> {
        Ok(lock(&self.state).redemptions.get(order_id).cloned())
    }

    async fn usage(&self, promotion_id: &PromotionId) -> Result<PromotionUsage> {
        let s = lock(&self.state);
        let p = s
            .promotions
            .get(promotion_id)
            .ok_or_else(|| Error::not_found(EntityKind::Promotion, promotion_id))?;
        let c = s.counter(promotion_id);
        Ok(PromotionUsage {
            promotion_id: promotion_id.clone(),
            uses: c.uses,
            confirmed_uses: c.confirmed_uses,
            spent: Money::from_minor_units(c.spent, p.currency)?,
            confirmed_spent: Money::from_minor_units(c.confirmed_spent, p.currency)?,
        })
    }
}
