//! `bulk-load`: seeding a catalog as a host does, through
//! [`CatalogLoader`] over `CatalogStore::insert_products` (500 products a batch) and
//! `InventoryStore::restock_many` (every variant stocked, some in two warehouses),
//! over the real Best Buy category tree with generated products of 1 to 4 variants.
//! `ops_per_sec` is products per second; `p50_ms`/`p99_ms` are per batch (insert +
//! restock). In the same run a short one-by-one load (`create_product` + `restock`
//! per variant) gives `baseline_ops_per_sec` and `ratio`.
//!
//! `--backend postgres` (default) or `--backend memory`; `--concurrency` loaders
//! (default 4) take batches from one counter.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use commerce_core::catalog::{NewProduct, Slug};
use commerce_core::id::LocationId;
use commerce_core::inventory::Restock;
use commerce_core::memory::MemoryEngine;
use commerce_core::sample::SampleCatalog;
use commerce_core::service::{CatalogLoader, Stores};
use commerce_core::store::CatalogStoreExt;
use futures::FutureExt;

use super::Scenario;
use super::postgres::{drop_schema, pool};
use super::scale::load_tree;
use crate::harness::{BenchResult, Latencies, Report, Settings, round1, round3};

pub(super) fn scenarios() -> Vec<Scenario> {
    vec![Scenario {
        name: "bulk-load",
        about: "insert_products + restock_many over the Best Buy tree (postgres or memory), vs one by one",
        run: |s| bulk_load(s).boxed(),
    }]
}

/// Products per `insert_products` call.
const BATCH: u64 = 500;

/// The restock items for products `first..` (as the storefront stocks them).
fn restocks(
    products: &[commerce_core::catalog::Product],
    locations: &[LocationId; 2],
) -> Vec<Restock> {
    let mut items = Vec::new();
    for (i, p) in products.iter().enumerate() {
        for (v, variant) in p.variants.iter().enumerate() {
            let units = variant.inventory_count.max(1);
            items.push(Restock::new(
                variant.sku.clone(),
                locations[(i + v) % 2].clone(),
                units,
                "initial stock",
            ));
            if (i + v) % 3 == 0 {
                items.push(Restock::new(
                    variant.sku.clone(),
                    locations[(i + v + 1) % 2].clone(),
                    25,
                    "initial stock",
                ));
            }
        }
    }
    items
}

async fn stores_for(settings: &Settings, backend: &str, schema: &str) -> BenchResult<Stores> {
    match backend {
        "memory" => Ok(Stores::memory(&MemoryEngine::new())),
        "postgres" => {
            drop_schema(settings, schema).await?;
            let pool = pool(settings, 8).await?;
            let pg = commerce_postgres::PgCommerce::from_pool(
                pool,
                commerce_postgres::PgConfig::new().schema(schema)?,
            );
            pg.migrate().await?;
            Ok(pg.stores())
        }
        other => Err(format!("bulk-load runs on memory or postgres, not {other}").into()),
    }
}

async fn bulk_load(settings: Settings) -> BenchResult<Vec<Report>> {
    let backend = settings.backend_or("postgres").to_owned();
    let products = settings.products_or(100_000, 2_000).max(1);
    let concurrency = settings.concurrency_or(4);
    let (tree, tree_source) = load_tree();
    let sample = Arc::new(SampleCatalog::new(&tree, 7));
    let locations = [LocationId::new("wh-east")?, LocationId::new("wh-west")?];
    let categories: Vec<_> = tree.iter().cloned().collect();

    // The baseline: one product (and each of its restocks) per call.
    let one_by_one = (products / 20).clamp(100, 1_000);
    let single = stores_for(&settings, &backend, "bench_bulk_single").await?;
    single.catalog.put_categories(&categories).await?;
    let started = Instant::now();
    for i in 0..one_by_one {
        let p = single.catalog.create_product(sample.product(i)).await?;
        for item in restocks(std::slice::from_ref(&p), &locations) {
            single
                .inventory
                .restock(&item.sku, &item.location, item.quantity, &item.reason)
                .await?;
        }
    }
    let baseline = one_by_one as f64 / started.elapsed().as_secs_f64().max(1e-9);
    drop(single);

    let stores = stores_for(&settings, &backend, "bench_bulk").await?;
    stores.catalog.put_categories(&categories).await?;
    let next = Arc::new(AtomicU64::new(0));
    let variants = Arc::new(AtomicU64::new(0));
    let loaded = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (loader, sample, next, variants, loaded, locations) = (
            CatalogLoader::new(&stores),
            sample.clone(),
            next.clone(),
            variants.clone(),
            loaded.clone(),
            locations.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut latencies = Latencies::new();
            let mut errors = 0u64;
            loop {
                let first = next.fetch_add(BATCH, Ordering::Relaxed);
                if first >= products {
                    return (latencies, errors);
                }
                let last = (first + BATCH).min(products);
                let batch: Vec<(NewProduct, Slug)> = (first..last)
                    .map(|i| {
                        let new = sample.product(i);
                        let slug = Slug::from_title(&new.title)
                            .with_suffix(u32::try_from(i).unwrap_or(u32::MAX));
                        (new, slug)
                    })
                    .collect();
                let t = Instant::now();
                let result = async {
                    let stored = loader.insert_products(batch).await?;
                    loader
                        .stock_new_levels(&restocks(&stored, &locations))
                        .await?;
                    Ok::<u64, commerce_core::Error>(
                        stored.iter().map(|p| p.variants.len() as u64).sum(),
                    )
                }
                .await;
                latencies.record(t.elapsed());
                match result {
                    Ok(n) => {
                        variants.fetch_add(n, Ordering::Relaxed);
                        loaded.fetch_add(last - first, Ordering::Relaxed);
                    }
                    Err(e) => {
                        eprintln!("bulk-load: batch {first}..{last}: {e}");
                        errors += 1;
                    }
                }
            }
        }));
    }
    let mut latencies = Latencies::new();
    let mut errors = 0;
    for task in tasks {
        let (l, e) = task.await?;
        latencies.merge(&l);
        errors += e;
    }
    let elapsed = started.elapsed();
    let secs = elapsed.as_secs_f64().max(1e-9);
    let variants = variants.load(Ordering::Relaxed);
    let loaded = loaded.load(Ordering::Relaxed);
    Ok(vec![
        Report::new("bulk-load", &backend)
            .field("ops", loaded)
            .field("seconds", round3(secs))
            .field("ops_per_sec", round1(loaded as f64 / secs))
            .field("p50_ms", round3(latencies.quantile_ms(0.50)))
            .field("p99_ms", round3(latencies.quantile_ms(0.99)))
            .field("errors", errors)
            .field("products", products)
            .field("variants", variants)
            .field("variants_per_sec", round1(variants as f64 / secs))
            .field("batch", BATCH)
            .field("concurrency", concurrency)
            .field("tree", tree_source)
            .field("one_by_one_products", one_by_one)
            .baseline(baseline),
    ])
}
