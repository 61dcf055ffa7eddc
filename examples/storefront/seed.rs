//! Seeding: the category tree, a sample catalog, its stock, and the search index.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use commerce_core::Result;
use commerce_core::catalog::{CategoryPath, CategoryTree, NewProduct, Slug, import_bestbuy_file};
use commerce_core::id::{LocationId, Sku};
use commerce_core::inventory::Restock;
use commerce_core::sample::SampleCatalog;
use commerce_core::service::{CatalogLoader, Stores};
use commerce_core::store::SearchIndex;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};

use crate::flash_sale::retrying;

/// What was seeded.
#[derive(Debug)]
pub struct Seeded {
    /// The category tree.
    pub tree: CategoryTree,
    /// Products created.
    pub products: u64,
    /// Variants (SKUs) created.
    pub variants: u64,
    /// Units stocked.
    pub units: u64,
    /// Products per leaf category.
    pub per_category: BTreeMap<CategoryPath, u64>,
    /// One SKU per product, for the demo.
    pub skus: Vec<Sku>,
    /// Time taken.
    pub elapsed: Duration,
    /// Time until the last batch was in the catalog and inventory stores (the
    /// categories included; the search index follows).
    pub stores_elapsed: Duration,
    /// Time spent indexing for search (upserts and the final refresh).
    pub indexing: Duration,
}

/// The Best Buy tree, or the generated one when the file is absent.
pub fn load_tree(path: Option<&Path>) -> (CategoryTree, String) {
    let candidates: Vec<PathBuf> = match path {
        Some(p) => vec![p.to_path_buf()],
        None => vec![
            PathBuf::from("../shared/data/bestbuy-categories.json"),
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/bestbuy-categories.json"),
        ],
    };
    for file in &candidates {
        if file.exists() {
            match import_bestbuy_file(file) {
                Ok(report) => {
                    let source = format!("Best Buy ({}): {}", file.display(), report.summary());
                    return (report.tree, source);
                }
                Err(e) => eprintln!("  could not import {}: {e}", file.display()),
            }
        }
    }
    let tried: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
    (
        CategoryTree::generated(),
        format!(
            "generated fallback tree (no readable Best Buy file at {})",
            tried.join(" or ")
        ),
    )
}

/// Seeds `n` products over `tree`, stocks every variant, and indexes the products.
pub async fn seed(
    stores: &Stores,
    search: &dyn SearchIndex,
    tree: CategoryTree,
    n: u64,
    seed: u64,
) -> Result<Seeded> {
    let started = Instant::now();
    let categories: Vec<_> = tree.iter().cloned().collect();
    retrying(|| stores.catalog.put_categories(&categories)).await?;
    let sample = SampleCatalog::new(&tree, seed);
    let locations = [LocationId::new("wh-east")?, LocationId::new("wh-west")?];

    let bar = ProgressBar::new(n).with_style(
        ProgressStyle::with_template(
            "  seeding {bar:40.cyan/blue} {pos:>6}/{len} products {per_sec:>12} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut out = Seeded {
        tree,
        products: 0,
        variants: 0,
        units: 0,
        per_category: BTreeMap::new(),
        skus: Vec::new(),
        elapsed: Duration::ZERO,
        stores_elapsed: Duration::ZERO,
        indexing: Duration::ZERO,
    };
    // Slugs as `create_product` would give them in this order: the title, then `-2`...
    // Batches are generated in order (so are the slugs); up to SEED_LOADERS of them are
    // written to the stores at once, and each written batch is indexed in order while
    // the next ones are being written.
    let loader = CatalogLoader::new(stores);
    let mut slugs_taken: HashMap<Slug, u32> = HashMap::new();
    let batches = (0..n).step_by(SEED_BATCH as usize).map(move |first| {
        let last = (first + SEED_BATCH).min(n);
        let batch: Vec<(NewProduct, Slug)> = sample
            .products(first..last)
            .map(|new| {
                let base = Slug::from_title(&new.title);
                let seen = slugs_taken.entry(base.clone()).or_insert(0);
                *seen += 1;
                let slug = if *seen == 1 {
                    base
                } else {
                    base.with_suffix(*seen)
                };
                (new, slug)
            })
            .collect();
        (first, batch)
    });
    let written = futures::stream::iter(batches)
        .map(|(first, batch)| {
            let (loader, locations) = (loader.clone(), locations.clone());
            // a task of its own, so that batches encode and decode on both cores
            let write = tokio::spawn(async move {
                let products = loader.insert_products(batch).await?;
                let mut items = Vec::new();
                let mut units = 0;
                for (product, i) in products.iter().zip(first..) {
                    for (v, variant) in product.variants.iter().enumerate() {
                        // Most SKUs sit in one warehouse, every third also in the
                        // other; a few are sold out.
                        let stocked = variant.inventory_count;
                        if stocked > 0 {
                            let at = &locations[(i as usize + v) % 2];
                            items.push(Restock::new(
                                variant.sku.clone(),
                                at.clone(),
                                stocked,
                                "initial stock",
                            ));
                            units += u64::from(stocked);
                            if (i + v as u64) % 3 == 0 {
                                let other = &locations[(i as usize + v + 1) % 2];
                                items.push(Restock::new(
                                    variant.sku.clone(),
                                    other.clone(),
                                    25,
                                    "initial stock",
                                ));
                                units += 25;
                            }
                        }
                    }
                }
                loader.stock_new_levels(&items).await?;
                Ok::<_, commerce_core::Error>((products, units))
            });
            async move {
                write.await.map_err(|e| {
                    commerce_core::Error::backend(false, format!("a seeding task failed: {e}"))
                })?
            }
        })
        .buffered(SEED_LOADERS);
    futures::pin_mut!(written);
    let mut stores_done = Duration::ZERO;
    while let Some(batch) = written.next().await {
        let (products, units) = batch?;
        stores_done = started.elapsed();
        out.units += units;
        for product in &products {
            out.products += 1;
            out.variants += product.variants.len() as u64;
            *out.per_category
                .entry(product.category.clone())
                .or_default() += 1;
            out.skus
                .extend(product.variants.first().map(|v| v.sku.clone()));
        }
        let indexing = Instant::now();
        search.upsert(&products).await?;
        out.indexing += indexing.elapsed();
        bar.inc(products.len() as u64);
    }
    let indexing = Instant::now();
    search.refresh().await?;
    out.indexing += indexing.elapsed();
    bar.finish_and_clear();
    out.elapsed = started.elapsed();
    out.stores_elapsed = stores_done;
    Ok(out)
}

/// Products per bulk insert while seeding.
const SEED_BATCH: u64 = 500;

/// Batches written to the stores at once while seeding (three loaders keep both cores
/// of a small database busy; see the `bulk-load` benchmark).
pub const SEED_LOADERS: usize = 3;
