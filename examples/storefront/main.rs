//! The storefront example: a whole shop on the embedded defaults, then a flash sale.
//!
//! ```sh
//! cargo run --example storefront            # from the repository root
//! cargo run --release --example storefront -- --products 50000 --buyers 5000
//! ```
//!
//! 1. Seeds a catalog (10,000 products with variants by default) over the real Best Buy
//!    category tree (`../shared/data/bestbuy-categories.json`, or a generated tree when
//!    the file is absent), stocks it in two warehouses and indexes it for search.
//! 2. Browses a category subtree, searches, fills a cart as a guest, signs in (merging
//!    the guest cart), checks out to a New York address (shipping options of its zone,
//!    sales tax per line), follows the order through the event-driven pipeline (event
//!    log -> queue -> workers), ships it, takes back one unit (restocked, refunded
//!    through the gateway under the refund ledger's guard) and prints its history.
//! 3. Runs a flash sale: 1,000 concurrent buyers for the last 100 units of one SKU
//!    through the same path; prints confirmed orders, out-of-stock rejections, units
//!    oversold (read back from the inventory store; must be 0) and throughput.
//! 4. Runs a coupon rush: a coupon limited to 100 uses offered to 300 concurrent
//!    buyers through checkout and the pipeline; prints "N redeemed of 100" (read back
//!    from the promotion store; must be exactly 100).
//! 5. Counts co-purchases from the event log and shows the page of a product the demo
//!    customer bought: variants with live stock, and recommendations blended from
//!    "also bought", similar products (the search index) and best sellers, personalised
//!    by the customer's history, each part under its deadline and breaker.
//!
//! With no flags everything runs in process (the in-memory engine, tantivy in RAM).
//! `--database-url` / `DATABASE_URL` puts the catalog, inventory, orders, outbox and
//! queue in PostgreSQL (schema `--schema`, recreated on each run); `--redis-url` /
//! `REDIS_URL` puts the carts in Redis and a read-through product cache in front of the
//! catalog. The flow is the same code on every backend.

mod args;
#[path = "../shared/backends.rs"]
mod backends;
mod coupon_rush;
mod flash_sale;
mod flow;
mod product_page;
mod seed;
mod shop;

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use commerce_core::store::SearchIndex;
use tracing_subscriber::EnvFilter;

use crate::args::Args;
use crate::shop::Shop;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("storefront failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> commerce_core::Result<bool> {
    let started = std::time::Instant::now();
    // The crates' metrics (commerce_core::telemetry), printed as Prometheus text at the end.
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .ok();
    commerce_core::telemetry::describe();
    println!("commerce storefront");
    let backends = backends::open(&args).await?;
    for line in &backends.description {
        println!("  {line}");
    }
    let stores = backends.stores.clone();
    // commerce-search's tantivy index, in RAM (`TantivySearch::open_or_create(dir)` keeps
    // it on disk).
    let search: Arc<dyn SearchIndex> = Arc::new(commerce_search::TantivySearch::in_ram()?);

    println!("\n1. Catalog");
    let (tree, source) = seed::load_tree(args.categories.as_deref());
    println!("  categories: {source}");
    let seeded = seed::seed(&stores, search.as_ref(), tree, args.products, args.seed).await?;
    println!(
        "  seeded {} products ({} variants) over {} leaf categories, {} units in 2 warehouses, in {:.2?} ({:.0} products/s)",
        seeded.products,
        seeded.variants,
        seeded.per_category.len(),
        seeded.units,
        seeded.elapsed,
        seeded.products as f64 / seeded.elapsed.as_secs_f64().max(1e-9)
    );
    println!(
        "    catalog and stock in the stores after {:.2?} ({:.0} products/s, {} batches of 500 at once); search indexing {:.2?} in all, between the writes",
        seeded.stores_elapsed,
        seeded.products as f64 / seeded.stores_elapsed.as_secs_f64().max(1e-9),
        seed::SEED_LOADERS,
        seeded.indexing
    );

    let shop = Shop::start(
        stores,
        backends.promotions.clone(),
        search,
        backends.refunds.clone(),
        args.workers,
        !backends.jobs_with_orders,
    )?;

    println!("\n2. Shopping");
    flow::browse(&shop, &seeded).await?;
    let hits = flow::search(&shop, &seeded).await?;
    let order = flow::shop_and_checkout(&shop, &seeded, &hits).await?;

    println!("\n3. Flash sale");
    let hot = seeded
        .skus
        .get(seeded.skus.len() / 2)
        .cloned()
        .ok_or_else(|| commerce_core::Error::validation("catalog", "is empty"))?;
    let report = flash_sale::run(
        &shop,
        backends.redis.as_ref(),
        &hot,
        args.buyers,
        args.flash_units,
    )
    .await?;

    println!("\n4. Coupon rush");
    let coupon_sku = seeded
        .skus
        .get(seeded.skus.len() / 3)
        .cloned()
        .ok_or_else(|| commerce_core::Error::validation("catalog", "is empty"))?;
    let coupon = coupon_rush::run(&shop, &coupon_sku, args.coupon_buyers, args.coupon_uses).await?;

    if let Some(order) = &order {
        println!("\n5. Product page");
        product_page::show(&shop, &backends, order).await?;
    }

    let totals = shop.stop().await?;
    backends.stop();
    println!(
        "\n  background: {}, {} jobs acked by {} workers (max {} at once), {} retried, {} dead-lettered; reaper released {} reservations",
        match totals.relayed {
            Some(n) => format!("{n} orders relayed from the event log"),
            None => "jobs written with their orders (no relay)".to_owned(),
        },
        totals.work.acked,
        args.workers,
        totals.work.max_in_flight,
        totals.work.retried,
        totals.work.dead_lettered,
        totals.reaped.released
    );
    let ok = report.oversold == 0 && report.audit_ok && report.failed == 0 && coupon.ok();
    println!(
        "\n{} in {:.2?}: {} confirmed, {} turned away, {} units sold, {} oversold; coupon {} redeemed of {}",
        if ok { "done" } else { "FAILED" },
        started.elapsed(),
        report.confirmed,
        report.out_of_stock,
        report.sold,
        report.oversold,
        coupon.redeemed,
        coupon.uses
    );
    if let Some(metrics) = metrics {
        println!(
            "\n6. Metrics (Prometheus text format)\n{}",
            metrics.render()
        );
    }
    Ok(ok)
}
