//! The flash sale: many concurrent buyers for the last units of one SKU, all through
//! the real path (admission, cart, checkout, event log, queue, pipeline), then the
//! inventory store is asked how many units were sold.
//!
//! Admission keeps the hopeless buyers away from the stores: a gate holds one token
//! per unit on sale (in Redis with `--redis-url`: commerce-redis's `FlashSaleGate`,
//! shared by every storefront process; otherwise an in-process counter). A buyer who
//! gets no token is answered "sold out" at once; a buyer with a token goes on to the
//! cart and checkout, and gives the token back if the order does not go through. The
//! inventory store still has the last word (the gate can only turn buyers away), so
//! nothing is oversold whatever the gate does. A buyer's wait is bounded by the order
//! timeout below; every retryable error on the way is retried with backoff.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use commerce_core::cart::CartOwner;
use commerce_core::id::{CartId, CustomerId, IdempotencyKey, Sku};
use commerce_core::order::OrderStatus;
use commerce_core::service::{CartService, CheckoutOutcome, CheckoutRequest, CheckoutService};
use commerce_core::store::{InventoryStore, OrderStore, RetryPolicy};
use commerce_core::{Error, Result};
use tokio::sync::Barrier;

use crate::shop::{Shop, Waiter};

/// The longest a buyer waits for their order to be confirmed or cancelled.
const ORDER_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `step`, retrying retryable errors (a lost connection, a failover, a pool
/// timeout) with exponential backoff and full jitter, for up to `ORDER_TIMEOUT`.
pub(crate) async fn retrying<T, F, Fut>(mut step: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let backoff = RetryPolicy {
        max_attempts: u32::MAX,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_secs(1),
    };
    backoff
        .run(
            "storefront step",
            Some(Instant::now() + ORDER_TIMEOUT),
            |_| step(),
        )
        .await
}

/// The admission gate of the sale: one token per unit on sale.
enum Gate {
    /// Shared by every process (commerce-redis).
    Redis(commerce_redis::FlashSaleGate),
    /// This process only.
    Local(AtomicU64),
}

/// A buyer's admission.
enum Ticket {
    Redis(commerce_redis::AdmissionTicket),
    Local,
}

impl Gate {
    async fn open(
        redis: Option<&commerce_redis::RedisBackend>,
        sku: &Sku,
        units: u64,
    ) -> Result<Gate> {
        match redis {
            Some(r) => {
                let gate =
                    commerce_redis::FlashSaleGate::new(r.clone(), sku.clone(), ORDER_TIMEOUT * 2);
                gate.open(units).await?;
                Ok(Gate::Redis(gate))
            }
            None => Ok(Gate::Local(AtomicU64::new(units))),
        }
    }

    async fn admit(&self) -> Result<Option<Ticket>> {
        match self {
            Gate::Redis(g) => Ok(g.admit().await?.map(Ticket::Redis)),
            Gate::Local(tokens) => Ok(tokens
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| t.checked_sub(1))
                .ok()
                .map(|_| Ticket::Local)),
        }
    }

    async fn settle(&self, ticket: &Ticket, sold: bool) -> Result<()> {
        match (self, ticket) {
            (Gate::Redis(g), Ticket::Redis(t)) => {
                if sold {
                    g.complete(t).await
                } else {
                    g.give_back(t).await.map(|_| ())
                }
            }
            (Gate::Local(tokens), Ticket::Local) => {
                if !sold {
                    tokens.fetch_add(1, Ordering::SeqCst);
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// How one buyer fared.
#[derive(Debug)]
enum Outcome {
    Confirmed,
    /// The gate had no token left: sold out, answered without touching the stores.
    RejectedAtGate,
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
pub(crate) async fn allocate(inventory: &dyn InventoryStore, sku: &Sku, units: u32) -> Result<()> {
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

#[allow(clippy::too_many_arguments)]
async fn buyer(
    i: usize,
    sku: Sku,
    gate: Arc<Gate>,
    carts: CartService,
    checkout: CheckoutService,
    orders: Arc<dyn OrderStore>,
    waiter: Waiter,
    start: Arc<Barrier>,
) -> Outcome {
    start.wait().await;
    let ticket = match retrying(|| gate.admit()).await {
        Ok(Some(t)) => t,
        Ok(None) => return Outcome::RejectedAtGate,
        Err(e) => return Outcome::Failed(format!("admission: {e}")),
    };
    let outcome = admitted(i, sku, carts, checkout, orders, waiter).await;
    let sold = matches!(outcome, Outcome::Confirmed);
    if let Err(e) = retrying(|| gate.settle(&ticket, sold)).await {
        tracing::warn!(error = %e, "could not settle the admission ticket (it expires)");
    }
    outcome
}

async fn admitted(
    i: usize,
    sku: Sku,
    carts: CartService,
    checkout: CheckoutService,
    orders: Arc<dyn OrderStore>,
    waiter: Waiter,
) -> Outcome {
    let run = async {
        let cart = CartId::new_guest();
        match retrying(|| carts.add(&cart, &CartOwner::Guest, &sku, 1)).await {
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
        let order = match retrying(|| checkout.checkout(&request)).await? {
            CheckoutOutcome::Placed { order, .. } => order,
            CheckoutOutcome::NeedsReview(_) => return Ok(Outcome::RejectedAtCheckout),
        };
        let order = waiter.wait(&order.id, ORDER_TIMEOUT).await?;
        Ok(match order.status {
            OrderStatus::Preparing => Outcome::Confirmed,
            OrderStatus::Cancelled => {
                let last = retrying(|| orders.history(&order.id)).await?.pop();
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
pub async fn run(
    shop: &Shop,
    redis: Option<&commerce_redis::RedisBackend>,
    sku: &Sku,
    buyers: usize,
    units: u32,
) -> Result<FlashReport> {
    let inventory = shop.stores.inventory.as_ref();
    retrying(|| allocate(inventory, sku, units)).await?;
    let gate = Arc::new(Gate::open(redis, sku, u64::from(units)).await?);
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
            gate.clone(),
            shop.carts.clone(),
            shop.checkout.clone(),
            shop.stores.orders.clone(),
            shop.waiter(),
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
    let at_gate = count(|o| matches!(o, Outcome::RejectedAtGate));
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
        "  out-of-stock rejections: {} (at the gate {at_gate}, at the cart {at_cart}, at checkout {at_checkout}, at reservation {at_reservation})",
        at_gate + at_cart + at_checkout + at_reservation
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
        "  throughput:              {:.0} buyers resolved per second, {:.0} confirmed orders/s ({buyers} buyers in {elapsed:.2?})",
        buyers as f64 / secs,
        confirmed as f64 / secs
    );
    Ok(FlashReport {
        confirmed,
        out_of_stock: at_gate + at_cart + at_checkout + at_reservation,
        sold,
        oversold,
        audit_ok: audit.is_empty(),
        failed: failed.len(),
    })
}
