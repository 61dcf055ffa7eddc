//! Seeding: the category tree, a sample catalog with stock in two warehouses, the
//! search index, and one flash-sale product with a fixed number of units.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use commerce_core::Result;
use commerce_core::catalog::{CategoryTree, NewProduct, ProductStatus, import_bestbuy_file};
use commerce_core::id::{LocationId, SellerId, Sku};
use commerce_core::sample::SampleCatalog;
use commerce_core::service::Stores;
use commerce_core::store::{CatalogStoreExt, SearchIndex};

/// The SKU of the flash-sale product.
pub const FLASH_SKU: &str = "FLASH-1";

/// What was seeded.
#[derive(Debug, Clone)]
pub struct Seeded {
    /// Products created (the flash-sale product included).
    pub products: u64,
    /// One SKU per sample product, in creation order.
    pub skus: Vec<Sku>,
    /// The slug of the flash-sale product.
    pub flash_slug: String,
    /// Where the category tree came from.
    pub tree_source: String,
    /// Time taken.
    pub elapsed: Duration,
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
                    let source = format!("Best Buy ({})", file.display());
                    return (report.tree, source);
                }
                Err(e) => tracing::warn!(file = %file.display(), error = %e, "cannot import"),
            }
        }
    }
    (CategoryTree::generated(), "generated tree".to_owned())
}

/// Seeds `n` sample products over `tree` (stocked, indexed) and the flash-sale product
/// with `flash_units` units.
pub async fn seed(
    stores: &Stores,
    search: &dyn SearchIndex,
    (tree, tree_source): (CategoryTree, String),
    n: u64,
    seed: u64,
    flash_units: u32,
) -> Result<Seeded> {
    let started = Instant::now();
    let categories: Vec<_> = tree.iter().cloned().collect();
    stores.catalog.put_categories(&categories).await?;
    let sample = SampleCatalog::new(&tree, seed);
    let locations = [LocationId::new("wh-east")?, LocationId::new("wh-west")?];
    let mut skus = Vec::with_capacity(n as usize);
    let mut batch = Vec::with_capacity(1000);
    for i in 0..n {
        let product = stores.catalog.create_product(sample.product(i)).await?;
        for (v, variant) in product.variants.iter().enumerate() {
            if variant.inventory_count > 0 {
                let at = &locations[(i as usize + v) % 2];
                stores
                    .inventory
                    .restock(&variant.sku, at, variant.inventory_count, "initial stock")
                    .await?;
            }
        }
        skus.extend(product.variants.first().map(|v| v.sku.clone()));
        batch.push(product);
        if batch.len() == 1000 {
            search.upsert(&batch).await?;
            batch.clear();
        }
        if (i + 1) % 100_000 == 0 {
            tracing::info!(products = i + 1, "seeding");
        }
    }
    let leaf = tree
        .leaves()
        .first()
        .map(|c| c.path.clone())
        .ok_or_else(|| commerce_core::Error::validation("categories", "the tree is empty"))?;
    let flash_sku = Sku::new(FLASH_SKU)?;
    let mut flash = NewProduct::new(
        SellerId::new("web-example")?,
        "Flash sale headphones",
        leaf,
        "Acme",
        flash_sku.clone(),
        "49.99 USD".parse()?,
    );
    flash.status = ProductStatus::Active;
    flash.description = "Limited units, one per customer.".to_owned();
    let flash = stores.catalog.create_product(flash).await?;
    if flash_units > 0 {
        stores
            .inventory
            .restock(&flash_sku, &locations[0], flash_units, "flash sale")
            .await?;
    }
    let flash_slug = flash.slug.as_str().to_owned();
    batch.push(flash);
    search.upsert(&batch).await?;
    search.refresh().await?;
    Ok(Seeded {
        products: n + 1,
        skus,
        flash_slug,
        tree_source,
        elapsed: started.elapsed(),
    })
}
