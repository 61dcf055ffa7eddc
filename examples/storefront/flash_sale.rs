//! The flash sale: many concurrent buyers for the last units of one SKU, all through
//! the real path (cart, checkout, event log, queue, pipeline), then the inventory
//! store is asked how many units were sold.

use std::sync::Arc;
use std::time::{Duration, Instant};

use commerce_core::cart::CartOwner;
use commerce_core::id::{CartId, CustomerId, IdempotencyKey, Sku};
use commerce_core::order::OrderStatus;
use commerce_core::service::{CartService, CheckoutOutcome, CheckoutRequest, CheckoutService};
use commerce_core::store::{InventoryStore, OrderStore};
use commerce_core::{Error, Result};
use tokio::sync::Barrier;

use crate::shop::{Shop, wait_settled};

/// How one buyer fared.
#[derive(Debug)]
enum Outcome {
    Confirmed,
    /// The cart refused the unit (availability already reserved by others).
    RejectedAtCart,
    /// Checkout's revalidation found no stock.
    RejectedAtCheckout,
    /// The order was created, then cancelled when its reservation failed.
    CancelledOutOfStock,
    Failed(String),
}

/// The result of the sale.
#[derive(Debug)]
pub struct FlashReport {
    /// Orders confirmed (paid, stock sold).
    pub confirmed: usize,
    /// Buyers turned away for lack of stock, at any stage.
    pub out_of_stock: usize,
    /// Units sold by the sale, per the inventory store.
    pub sold: u64,
    /// Units sold beyond those on sale.
    pub oversold: u64,
    /// Whether the inventory audit found nothing wrong.
    pub audit_ok: bool,
    /// Buyers whose attempt failed otherwise.
    pub failed: usize,
}

/// Sets `sku` to exactly `units` available.
async fn allocate(inventory: &dyn InventoryStore, sku: &Sku, units: u32) -> Result<()> {
    let stock = inventory.stock(sku).await?;
    let available = stock.available();
    if available < u64::from(units) {
        let at = match stock.levels.first() {
            Some(l) => l.location.clone(),
            None => commerce_core::id::LocationId::new("wh-east")?,
        };
        let missing = u32::try_from(u64::from(units) - available).unwrap_or(units);
        inventory
            .restock(sku, &at, missing, "flash sale allocation")
            .await?;
    } else {
        let mut excess = available - u64::from(units);
        for level in &stock.levels {
            let take = level.available.min(excess);
            if take > 0 {
                let delta = -i64::try_from(take).unwrap_or(i64::MAX);
                inventory
                    .adjust(sku, &level.location, delta, "moved out of the flash sale")
                    .await?;
                excess -= take;
            }
        }
    }
    Ok(())
}

async fn buyer(
    i: usize,
    sku: Sku,
    carts: CartService,
    checkout: CheckoutService,
    orders: Arc<dyn OrderStore>,
    start: Arc<Barrier>,
) -> Outcome {
    start.wait().await;
    let run = async {
        let cart = CartId::new_guest();
        match carts.add(&cart, &CartOwner::Guest, &sku, 1).await {
            Ok(_) => {}
            Err(Error::OutOfStock { .. }) => return Ok(Outcome::RejectedAtCart),
            Err(e) => return Err(e),
        }
        let request = CheckoutRequest::server_cart(
            CustomerId::new(format!("flash-buyer-{i}"))?,
            cart,
            CartOwner::Guest,
            IdempotencyKey::new(format!("flash-sale-{i}"))?,
        );
        let order = match checkout.checkout(&request).await? {
            CheckoutOutcome::Placed { order, .. } => order,
            CheckoutOutcome::NeedsReview(_) => return Ok(Outcome::RejectedAtCheckout),
        };
        let order = wait_settled(orders.as_ref(), &order.id, Duration::from_secs(60)).await?;
        Ok(match order.status {
            OrderStatus::Preparing => Outcome::Confirmed,
            OrderStatus::Cancelled => {
                let last = orders.history(&order.id).await?.pop();
                match last {
                    Some(c) if c.reason.starts_with("out of stock") => Outcome::CancelledOutOfStock,
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

/// Runs the sale and prints its report.
pub async fn run(shop: &Shop, sku: &Sku, buyers: usize, units: u32) -> Result<FlashReport> {
    let inventory = shop.stores.inventory.as_ref();
    allocate(inventory, sku, units).await?;
    let before = inventory.stock(sku).await?;
    let product = shop.stores.catalog.get_product_by_sku(sku).await?;
    println!(
        "  {buyers} buyers, {} units of {sku} ({}) at {}",
        before.available(),
        product.as_ref().map_or("?", |p| p.title.as_str()),
        product
            .as_ref()
            .and_then(|p| p.variant(sku))
            .map_or("?".into(), |v| v.price.to_string())
    );

    let start = Arc::new(Barrier::new(buyers + 1));
    let mut tasks = Vec::with_capacity(buyers);
    for i in 0..buyers {
        tasks.push(tokio::spawn(buyer(
            i,
            sku.clone(),
            shop.carts.clone(),
            shop.checkout.clone(),
            shop.stores.orders.clone(),
            start.clone(),
        )));
    }
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
    let confirmed = count(|o| matches!(o, Outcome::Confirmed));
    let at_cart = count(|o| matches!(o, Outcome::RejectedAtCart));
    let at_checkout = count(|o| matches!(o, Outcome::RejectedAtCheckout));
    let at_reservation = count(|o| matches!(o, Outcome::CancelledOutOfStock));
    let failed: Vec<&String> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Failed(e) => Some(e),
            _ => None,
        })
        .collect();

    let after = inventory.stock(sku).await?;
    let sold = after.sold() - before.sold();
    let oversold = sold.saturating_sub(u64::from(units));
    let audit = inventory.audit().await?;
    let secs = elapsed.as_secs_f64().max(1e-9);

    println!("  orders confirmed:        {confirmed}");
    println!(
        "  out-of-stock rejections: {} (at the cart {at_cart}, at checkout {at_checkout}, at reservation {at_reservation})",
        at_cart + at_checkout + at_reservation
    );
    if !failed.is_empty() {
        println!(
            "  other failures:          {} (first: {})",
            failed.len(),
            failed[0]
        );
    }
    println!(
        "  units oversold:          {oversold} (inventory store: {sold} sold of {units}; {} available, {} reserved; audit {})",
        after.available(),
        after.reserved(),
        if audit.is_empty() {
            "clean"
        } else {
            "FOUND PROBLEMS"
        }
    );
    println!(
        "  throughput:              {:.0} checkouts/s resolved, {:.0} confirmed orders/s ({buyers} buyers in {elapsed:.2?})",
        buyers as f64 / secs,
        confirmed as f64 / secs
    );
    Ok(FlashReport {
        confirmed,
        out_of_stock: at_cart + at_checkout + at_reservation,
        sold,
        oversold,
        audit_ok: audit.is_empty(),
        failed: failed.len(),
    })
}
