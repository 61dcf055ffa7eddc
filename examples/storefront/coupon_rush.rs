//! The coupon rush: a coupon limited to a number of uses (100 by default) offered to a
//! crowd of buyers at once, all through the real path (cart, checkout with the code,
//! event log, queue, pipeline). Checkout applies the code while it looks available; the
//! pipeline holds the use together with the order's stock, so the orders beyond the
//! limit are cancelled ("promotion unavailable") and nothing is redeemed twice. The
//! promotion store is then asked how many uses were confirmed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use commerce_core::cart::CartOwner;
use commerce_core::id::{CartId, CustomerId, IdempotencyKey, PromotionId, Sku};
use commerce_core::order::OrderStatus;
use commerce_core::promotion::{Action, CodeBatch, CouponCode, Limits, Promotion, Target};
use commerce_core::service::{CartService, CheckoutOutcome, CheckoutRequest, CheckoutService};
use commerce_core::store::OrderStore;
use commerce_core::{Error, Result};
use rust_decimal::Decimal;
use tokio::sync::Barrier;

use crate::flash_sale::{allocate, retrying};
use crate::shop::{Shop, Waiter};

/// The longest a buyer waits for their order.
const ORDER_TIMEOUT: Duration = Duration::from_secs(60);

/// How one buyer fared.
#[derive(Debug)]
enum Outcome {
    /// Paid, with the coupon.
    Redeemed,
    /// Paid without it (checkout already saw it used up).
    PaidWithout,
    /// Cancelled by the pipeline: the last use went to someone else.
    CouponUsedUp,
    Failed(String),
}

/// The result of the rush.
#[derive(Debug)]
pub struct CouponReport {
    /// Paid orders that carry the coupon.
    pub redeemed: u64,
    /// The coupon's uses.
    pub uses: u64,
    /// Confirmed uses per the promotion store.
    pub confirmed_uses: u64,
    /// Buyers whose attempt failed otherwise.
    pub failed: usize,
}

impl CouponReport {
    /// Whether exactly the limit was redeemed, as the store also says.
    pub fn ok(&self) -> bool {
        self.redeemed == self.uses && self.confirmed_uses == self.uses && self.failed == 0
    }
}

#[allow(clippy::too_many_arguments)]
async fn buyer(
    i: usize,
    sku: Sku,
    code: String,
    carts: CartService,
    checkout: CheckoutService,
    orders: Arc<dyn OrderStore>,
    waiter: Waiter,
    start: Arc<Barrier>,
) -> Outcome {
    start.wait().await;
    let run = async {
        let cart = CartId::new_guest();
        retrying(|| carts.add(&cart, &CartOwner::Guest, &sku, 1)).await?;
        let request = CheckoutRequest::server_cart(
            CustomerId::new(format!("coupon-buyer-{i}"))?,
            cart,
            CartOwner::Guest,
            IdempotencyKey::new(format!("coupon-rush-{i}"))?,
        )
        .with_codes([code.clone()]);
        let order = match retrying(|| checkout.checkout(&request)).await? {
            CheckoutOutcome::Placed { order, .. } => order,
            CheckoutOutcome::NeedsReview(r) => {
                return Ok(Outcome::Failed(format!("needs review: {r:?}")));
            }
        };
        let order = waiter.wait(&order.id, ORDER_TIMEOUT).await?;
        Ok::<_, Error>(match order.status {
            OrderStatus::Preparing if order.promotions.is_empty() => Outcome::PaidWithout,
            OrderStatus::Preparing => Outcome::Redeemed,
            OrderStatus::Cancelled => {
                let last = retrying(|| orders.history(&order.id)).await?.pop();
                match last {
                    Some(c) if c.reason.starts_with("promotion unavailable") => {
                        Outcome::CouponUsedUp
                    }
                    other => Outcome::Failed(format!("cancelled: {other:?}")),
                }
            }
            other => Outcome::Failed(format!("ended in {other}")),
        })
    };
    match run.await {
        Ok(o) => o,
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

/// Runs the rush on `sku` and prints its report.
pub async fn run(shop: &Shop, sku: &Sku, buyers: usize, uses: u64) -> Result<CouponReport> {
    let units = u32::try_from(buyers).unwrap_or(u32::MAX);
    retrying(|| allocate(shop.stores.inventory.as_ref(), sku, units)).await?;
    let product = shop
        .stores
        .catalog
        .get_product_by_sku(sku)
        .await?
        .ok_or_else(|| Error::not_found(commerce_core::EntityKind::Variant, sku))?;
    let currency = product
        .variant(sku)
        .map(|v| v.price.currency())
        .ok_or_else(|| Error::not_found(commerce_core::EntityKind::Variant, sku))?;
    let promotion = Promotion::new(
        PromotionId::new("black-friday")?,
        "Black Friday: 10 % off",
        currency,
        Action::PercentOff {
            percent: Decimal::new(10, 0),
            target: Target::Order,
        },
    )
    .with_code()
    .with_limits(Limits {
        total_uses: Some(uses),
        ..Limits::default()
    });
    let promotion = shop.promotions.create_promotion(&promotion).await?;
    let code = "BLACKFRIDAY";
    shop.promotions
        .add_codes(&promotion.id, &CodeBatch::shared(CouponCode::parse(code)?))
        .await?;
    println!(
        "  {buyers} buyers, coupon {code} (10 % off, {uses} uses) on {sku} ({})",
        product.title
    );

    let start = Arc::new(Barrier::new(buyers + 1));
    let tasks: Vec<_> = (0..buyers)
        .map(|i| {
            tokio::spawn(buyer(
                i,
                sku.clone(),
                code.to_owned(),
                shop.carts.clone(),
                shop.checkout.clone(),
                shop.stores.orders.clone(),
                shop.waiter(),
                start.clone(),
            ))
        })
        .collect();
    start.wait().await;
    let started = Instant::now();
    let mut outcomes = Vec::with_capacity(buyers);
    for t in tasks {
        outcomes.push(
            t.await
                .unwrap_or_else(|e| Outcome::Failed(format!("task: {e}"))),
        );
    }
    let elapsed = started.elapsed();
    let count = |f: fn(&Outcome) -> bool| outcomes.iter().filter(|o| f(o)).count();
    let redeemed = count(|o| matches!(o, Outcome::Redeemed)) as u64;
    let without = count(|o| matches!(o, Outcome::PaidWithout));
    let used_up = count(|o| matches!(o, Outcome::CouponUsedUp));
    let failed: Vec<&String> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Failed(e) => Some(e),
            _ => None,
        })
        .collect();
    let usage = shop.promotions.usage(&promotion.id).await?;
    println!(
        "  {redeemed} redeemed of {uses} (promotion store: {} confirmed uses, {} spent; over-redeemed {})",
        usage.confirmed_uses,
        usage.confirmed_spent,
        redeemed.saturating_sub(uses)
    );
    println!(
        "  the others: {used_up} orders cancelled (coupon used up while they paid), {without} paid without it (checkout saw it used up)"
    );
    if !failed.is_empty() {
        println!(
            "  other failures:          {} (first: {})",
            failed.len(),
            failed[0]
        );
    }
    println!(
        "  throughput: {:.0} buyers resolved per second ({buyers} in {elapsed:.2?})",
        buyers as f64 / elapsed.as_secs_f64().max(1e-9)
    );
    Ok(CouponReport {
        redeemed,
        uses,
        confirmed_uses: usage.confirmed_uses,
        failed: failed.len(),
    })
}
