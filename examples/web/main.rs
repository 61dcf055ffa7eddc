//! The web example: the shop as an HTTP service (axum) on localhost.
//!
//! ```sh
//! cargo run --example web                       # http://127.0.0.1:3000
//! cargo run --release --example web -- --products 1000000 --listen 127.0.0.1:8080
//! cargo run --example web -- --database-url postgres://... --redis-url redis://...
//! ```
//!
//! It seeds a catalog (as the storefront example does), starts the order pipeline
//! (outbox relay, queue workers, reservation reaper, co-purchase updater), and serves:
//!
//! * a JSON API under `/api` — browse a category subtree with facets, search,
//!   autocomplete, product pages with live stock and recommendations, guest and
//!   customer carts (merged on sign-in), checkout under an `Idempotency-Key`, order
//!   status and history — described by an OpenAPI 3.1 document at `/openapi.json`
//!   (generated from the handlers with `utoipa`);
//! * server-rendered pages: `/`, `/products/{slug}`, `/cart`, `/orders/{id}`.
//!
//! The signed-in customer is named by the `x-customer-id` header (the pages use a
//! cookie): the example trusts it where a real service would check a session.
//! Every error is an RFC 9457 `application/problem+json` body mapped from the kind of
//! `commerce_core::Error`; a client over its per-address rate, or a shopper over their
//! search or checkout rate, gets 429 with `Retry-After`. Each request runs in a
//! tracing span (`RUST_LOG=info` shows them). Ctrl-C (or SIGTERM) stops accepting
//! requests, finishes those in flight, then drains the order pipeline.
//!
//! With no flags everything runs in process (the in-memory engine, tantivy in RAM);
//! `--database-url` / `--redis-url` open PostgreSQL and Redis as the storefront does.

mod api;
mod app;
mod args;
#[path = "../shared/backends.rs"]
mod backends;
mod html;
mod openapi;
mod pipeline;
mod problem;
mod seed;
mod views;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod browser_test;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use commerce_core::store::SearchIndex;
use tracing_subscriber::EnvFilter;

use crate::app::{App, Limits};
use crate::args::Args;
use crate::pipeline::Pipeline;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn,web=info")),
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
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("web example failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let limits = Limits {
        ip_per_second: args.ip_rate,
        searches_per_minute: args.search_rate,
        checkouts_per_minute: args.checkout_rate,
    };
    // Refuse bad flags before minutes of seeding.
    limits.rate_limits()?;
    let backends = backends::open(&args).await?;
    for line in &backends.description {
        println!("  {line}");
    }
    let stores = backends.stores.clone();
    let search: Arc<dyn SearchIndex> = Arc::new(commerce_search::TantivySearch::in_ram()?);
    let tree = seed::load_tree(args.categories.as_deref());
    let seeded = seed::seed(
        &stores,
        search.as_ref(),
        tree,
        args.products,
        args.seed,
        args.flash_units,
    )
    .await?;
    println!(
        "  seeded {} products ({}) in {:.1?}; flash sale: /products/{} ({} units of {})",
        seeded.products,
        seeded.tree_source,
        seeded.elapsed,
        seeded.flash_slug,
        args.flash_units,
        seed::FLASH_SKU
    );
    let pipeline = Pipeline::start(
        &stores,
        args.workers,
        !backends.jobs_with_orders,
        backends.co_purchase.clone(),
        backends.history.clone(),
        stores.catalog.clone(),
    )?;
    let app = App::new(
        stores,
        search,
        backends.co_purchase.clone(),
        backends.history.clone(),
        limits,
    )?;
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let addr = listener.local_addr()?;
    println!("serving on http://{addr} (API description: /openapi.json); Ctrl-C stops");
    if let Some(sku) = seeded.skus.first() {
        println!(
            "  try: curl 'http://{addr}/api/search?q=sony' or curl http://{addr}/api/stock/{sku}"
        );
    }
    axum::serve(
        listener,
        app.router()
            .into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await?;
    println!("stopped accepting requests; draining the order pipeline");
    let payments = pipeline.payments.clone();
    let drained = pipeline.stop().await?;
    backends.stop();
    println!(
        "  drained: {} orders relayed, {} jobs acked ({} retried, {} dead-lettered), {} reservations released",
        drained.relayed,
        drained.work.acked,
        drained.work.retried,
        drained.work.dead_lettered,
        drained.reaped.released
    );
    println!("  payments captured: {}", payments.captures().len());
    // Everything is drained: exit without freeing the in-memory stores allocation by
    // allocation (minutes at a million products).
    std::process::exit(0)
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
