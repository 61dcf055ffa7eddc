//! `checkout`: the order path a host runs, end to end. Each buyer calls
//! `CheckoutService::checkout` (a one-line client cart over `--products` products, 100,000
//! by default), and the order goes through the outbox relay, the queue and the workers'
//! pipeline (reserve, charge on the in-memory gateway, confirm, fulfilment) until it
//! is PREPARING. `ops_per_sec` counts orders reaching PREPARING per second;
//! `p50_ms`/`p99_ms` run from the checkout call to PREPARING.
//!
//! `--backend postgres` (default; catalog, inventory, orders, outbox and queue in
//! PostgreSQL, with pgbench running the minimal reservation transaction on the same
//! stock table in the same run as the baseline) or `--backend memory`. On PostgreSQL
//! the order store writes each order's queue job with the order
//! (`PgConfig::jobs_with_orders`, as the storefront runs it), so no relay runs; in
//! memory the outbox relay feeds the queue.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use commerce_core::catalog::{CategoryPath, NewProduct, ProductStatus};
use commerce_core::id::{CustomerId, IdempotencyKey, LocationId, OrderId, SellerId, Sku};
use commerce_core::memory::MemoryEngine;
use commerce_core::order::Order;
use commerce_core::service::{
    CheckoutConfig, CheckoutOutcome, CheckoutRequest, CheckoutService, ClientCart, ClientCartItem,
    MemoryFulfillment, MemoryPaymentGateway, Notification, Notifier, OrderPipeline, OrderRelay,
    OrderWorkers, PipelineConfig, Stores, WorkerConfig,
};
use commerce_core::store::CatalogStoreExt;
use commerce_core::{Error, Result};
use commerce_postgres::{PgCommerce, PgConfig};
use futures::FutureExt;
use tokio::sync::oneshot;

use super::Scenario;
use super::postgres::{
    drop_schema, load_catalog, oversold, pgbench, pool, reservation_script, seed_stock,
    step_batching,
};
use crate::harness::{BenchResult, Outcome, Report, Settings, run_closed_loop};

pub(super) fn scenarios() -> Vec<Scenario> {
    vec![Scenario {
        name: "checkout",
        about: "checkout (order + job; the outbox relay in memory) -> queue -> workers -> PREPARING (postgres vs pgbench, or memory)",
        run: |s| checkout(s).boxed(),
    }]
}

/// How an order came to rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rest {
    Preparing,
    Cancelled,
}

/// Buyers waiting for their order, by order.
type Waiting = HashMap<OrderId, oneshot::Sender<Rest>>;
/// Orders that rested before their buyer waited.
type Arrived = HashMap<OrderId, Rest>;

/// A notifier that tells the waiting buyer when their order rests.
#[derive(Debug, Default)]
struct RestSignal {
    state: Mutex<(Waiting, Arrived)>,
}

impl RestSignal {
    fn wait(&self, id: &OrderId) -> oneshot::Receiver<Rest> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut s) = self.state.lock() {
            match s.1.remove(id) {
                Some(rest) => {
                    let _ = tx.send(rest);
                }
                None => {
                    s.0.insert(id.clone(), tx);
                }
            }
        }
        rx
    }
}

#[async_trait]
impl Notifier for RestSignal {
    async fn notify(&self, order: &Order, notification: &Notification) -> Result<()> {
        let rest = match notification {
            Notification::OrderConfirmed => Rest::Preparing,
            _ => Rest::Cancelled,
        };
        if let Ok(mut s) = self.state.lock() {
            match s.0.remove(&order.id) {
                Some(tx) => {
                    let _ = tx.send(rest);
                }
                None => {
                    s.1.insert(order.id.clone(), rest);
                }
            }
        }
        Ok(())
    }
}

/// The SKU of product `n` (1-based), as both catalogs name it.
pub(super) fn sku_of(n: u64) -> String {
    format!("P{n}-1")
}

/// An in-memory engine holding `products` active one-variant products (SKUs
/// [`sku_of`]), each stocked with 1,000,000 units, and the stores over it.
pub(super) async fn memory_stores(products: u64) -> BenchResult<(MemoryEngine, Stores)> {
    let engine = MemoryEngine::new();
    let stores = Stores::memory(&engine);
    let at = LocationId::new("main")?;
    for n in 1..=products {
        let mut p = NewProduct::new(
            SellerId::new("bench-seller")?,
            format!("Product {n}"),
            CategoryPath::parse("Electronics > Phones")?,
            "Acme",
            Sku::new(sku_of(n))?,
            "199.00 USD".parse()?,
        );
        p.status = ProductStatus::Active;
        stores.catalog.create_product(p).await?;
        stores
            .inventory
            .restock(&Sku::new(sku_of(n))?, &at, 1_000_000, "bench")
            .await?;
    }
    Ok((engine, stores))
}

async fn checkout(settings: Settings) -> BenchResult<Vec<Report>> {
    let backend = settings.backend_or("postgres").to_owned();
    let products = settings.products_or(100_000, 10_000).max(1);
    let concurrency = settings.concurrency_or(32);
    let seconds = settings.seconds_or(10.0);
    let schema = "bench_order_path";
    let (stores, pg_pool) = match backend.as_str() {
        "memory" => (memory_stores(products).await?.1, None),
        "postgres" => {
            let pool = pool(&settings, 32).await?;
            drop_schema(&settings, schema).await?;
            load_catalog(&pool, schema, products).await?;
            seed_stock(&pool, schema, "P", "-1", products, 1_000_000).await?;
            let config = step_batching(PgConfig::new())
                .schema(schema)?
                .jobs_with_orders(true);
            (
                PgCommerce::from_pool(pool.clone(), config).stores(),
                Some(pool),
            )
        }
        other => return Err(format!("checkout: unknown backend {other:?}").into()),
    };
    let signal = Arc::new(RestSignal::default());
    let pipeline = Arc::new(OrderPipeline::new(
        &stores,
        Arc::new(MemoryPaymentGateway::new()),
        Arc::new(MemoryFulfillment::new()),
        signal.clone(),
        PipelineConfig::default(),
    ));
    // in memory the relay feeds the queue; on PostgreSQL the jobs come with the orders
    let relay = match pg_pool {
        None => Some(
            OrderRelay::new(stores.events.clone(), stores.queue.clone())?
                .spawn(Duration::from_millis(50)),
        ),
        Some(_) => None,
    };
    let workers = OrderWorkers::new(
        stores.queue.clone(),
        pipeline,
        WorkerConfig {
            concurrency: (2 * concurrency).clamp(16, 256),
            idle_poll: Duration::from_millis(20),
            ..WorkerConfig::default()
        },
    )
    .spawn();
    let service = CheckoutService::new(&stores, CheckoutConfig::default());
    let seq = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let run_id = OrderId::generate();
    let result = run_closed_loop(concurrency, seconds, {
        let signal = signal.clone();
        move |_, _| {
            let (service, signal, seq) = (service.clone(), signal.clone(), seq.clone());
            let run_id = run_id.clone();
            async move {
                let n = seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let placed = async {
                    let product = 1 + (n.wrapping_mul(2_654_435_761) % products);
                    let cart = ClientCart {
                        items: vec![ClientCartItem {
                            sku: Sku::new(sku_of(product))?,
                            quantity: 1,
                            unit_price: None,
                        }],
                    };
                    let request = CheckoutRequest::client_cart(
                        CustomerId::new(format!("buyer-{}", n % 10_000))?,
                        cart,
                        IdempotencyKey::new(format!("{run_id}-{n}"))?,
                    );
                    match service.checkout(&request).await? {
                        CheckoutOutcome::Placed { order, .. } => Ok(Some(order)),
                        CheckoutOutcome::NeedsReview(_) => Ok::<_, Error>(None),
                    }
                };
                match placed.await {
                    Ok(Some(order)) => {
                        match tokio::time::timeout(Duration::from_secs(30), signal.wait(&order.id))
                            .await
                        {
                            Ok(Ok(Rest::Preparing)) => Outcome::Ok,
                            Ok(Ok(Rest::Cancelled)) => Outcome::Rejected,
                            _ => {
                                eprintln!("order {} did not rest within 30 s", order.id);
                                Outcome::Error
                            }
                        }
                    }
                    Ok(None) => Outcome::Rejected,
                    Err(e) => {
                        eprintln!("checkout failed: {e}");
                        Outcome::Error
                    }
                }
            }
        }
    })
    .await;
    let relayed = match relay {
        Some(relay) => relay.shutdown().await??,
        None => 0,
    };
    let work = workers.shutdown().await??;
    let audit = stores.inventory.audit().await?;
    let mut report = result
        .report("checkout", &backend)
        .field(
            "path",
            match backend.as_str() {
                "memory" => "CheckoutService::checkout -> relay -> queue -> workers -> PREPARING",
                _ => "CheckoutService::checkout (order + job) -> queue -> workers -> PREPARING",
            },
        )
        .field("products", products)
        .field("concurrency", concurrency)
        .field("relayed", relayed)
        .field("acked", work.acked)
        .field("dead_lettered", work.dead_lettered)
        .field("audit_violations", audit.len());
    match pg_pool {
        Some(pool) => {
            let over = oversold(&pool, schema).await?;
            let script = reservation_script(
                schema,
                &format!("\\set n random(1, {products})"),
                "'P' || :n || '-1'",
            );
            drop(stores);
            pool.close().await;
            // The server's connection limit (100 by default) caps pgbench's clients.
            let clients = concurrency.min(48);
            let baseline = pgbench(&settings, script, clients, seconds).await?;
            drop_schema(&settings, schema).await?;
            report = report
                .field("oversold", over)
                .field("baseline", "pgbench minimal reservation transaction")
                .field("baseline_clients", clients)
                .baseline(baseline);
        }
        None => {
            // In memory a unit sold twice can only show as an audit violation (negative
            // availability or a broken conservation equation).
            report = report.field("oversold", audit.len());
        }
    }
    Ok(vec![report])
}
