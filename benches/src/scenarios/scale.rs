//! `catalog-scale`: the PostgreSQL catalog of `commerce-postgres` at 10,000,000
//! products (`--products`, `--quick`: 20,000).
//!
//! Loads the products (2 variants each) server-side with `generate_series` in batches of
//! 200,000 per transaction, spread over the leaf categories of the Best Buy tree
//! (`../shared/data/bestbuy-categories.json`, else [`CategoryTree::generated`]), and
//! reports the load rate and the table + index size. A schema `bench_scale_<n>` that
//! already holds `n` products is reused (`reused: true`); with `--quick` the schema is
//! dropped at the end. Then, for `--seconds` each at `--concurrency` (default 8):
//!
//! * product by slug with its variants on random products (the standard fields and
//!   `product_read_*`);
//! * the first page of 24 of a random top-level or second-level category subtree
//!   (`category_list_*`);
//! * a deep listing: 5 pages of 24 following the keyset cursor (`category_deep5_*`,
//!   the time for all 5 pages).
//!
//! The load stops (and the run measures what was loaded, `stopped_low_disk: true`) when
//! `df /work` would drop below 2 GB free; a run that cannot load its first batch fails
//! with the free space it found.
//!
//! `--backend search`: the category listing served from the search index instead
//! ([`commerce_search::listing::category_listing`]: category facet, fast-field sort,
//! keyset cursor, counts per brand, child category, price bucket and rating), on
//! `--products` generated products over the same tree in `--shards` shards (default 1),
//! built once in `$TMPDIR/commerce-bench-scale-search-<n>-x<shards>` and reused. For
//! `--seconds` each at `--concurrency` (default 2), the sorts rotating over popularity,
//! price up, price down and newest, one query in four with a price range:
//!
//! * the first page of 24 with its facet counts (`category_list_*`);
//! * one of the next 5 pages (2 to 6) by its keyset cursor, with facet counts
//!   (`category_next5_*`: per page).
//!
//! The listing views are built before the runs (`listing_views_build_seconds`,
//! `listing_views_bytes`). `--backend search-collector`: the same with the views off
//! (every listing by the collector over the subtree's postings), for comparison.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use commerce_core::catalog::{
    AttributeValue, CategoryPath, CategoryTree, NewProduct, Slug, import_bestbuy_file,
};
use commerce_core::id::{ProductId, SellerId, Sku};
use commerce_core::store::{CatalogStore, ProductQuery};
use commerce_postgres::sqlx::{self, PgPool};
use commerce_postgres::{PgCommerce, PgConfig};
use futures::FutureExt;

use super::Scenario;
use crate::harness::{
    BenchResult, LoadResult, Outcome, Report, Settings, round1, round3, run_closed_loop,
};

pub(super) fn scenarios() -> Vec<Scenario> {
    vec![Scenario {
        name: "catalog-scale",
        about: "postgres: catalog at 10,000,000 products: load rate, product read, category listing",
        run: |s| catalog_scale(s).boxed(),
    }]
}

/// Products per load transaction.
const BATCH: u64 = 200_000;
/// Free space `df /work` must keep (room for PostgreSQL's WAL and the rest of the
/// machine; a CI machine may have less than 10 GB free in all).
const MIN_FREE: u64 = 2_000_000_000;
/// Bytes per product (row, 2 variants, indexes), for the disk check before a batch.
const BYTES_PER_PRODUCT: u64 = 2_000;
/// Page size of the listings.
const PAGE: u32 = 24;
/// Pages of the deep listing.
const DEEP_PAGES: usize = 5;

fn q(sql: String) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(sql)
}

async fn pool(settings: &Settings, size: u32) -> BenchResult<PgPool> {
    let url = settings.require_database_url()?;
    let (opts, connect) = PgConfig::new()
        .max_connections(size)
        .acquire_timeout(Duration::from_secs(60))
        .pool_for(url)?;
    Ok(opts.connect_with(connect).await?)
}

/// The Best Buy tree, or the generated one when the file is absent.
pub(super) fn load_tree() -> (CategoryTree, String) {
    let candidates = [
        PathBuf::from("../shared/data/bestbuy-categories.json"),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/bestbuy-categories.json"),
    ];
    for file in &candidates {
        if file.exists() {
            match import_bestbuy_file(file) {
                Ok(report) => return (report.tree, "bestbuy".into()),
                Err(e) => eprintln!("catalog-scale: cannot import {}: {e}", file.display()),
            }
        }
    }
    (CategoryTree::generated(), "generated".into())
}

/// Free bytes on the file system of `/work` (from `df`), if it can be read.
fn free_bytes() -> Option<u64> {
    let out = std::process::Command::new("df")
        .args(["-B1", "--output=avail", "/work"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)?
        .trim()
        .parse()
        .ok()
}

fn product_id(g: u64) -> String {
    format!("p{g:09}")
}

fn slug(g: u64) -> String {
    format!("product-{g:09}")
}

/// A spread of 1..=n from a sequence number.
fn pick(i: u64, n: u64) -> u64 {
    1 + (i.wrapping_mul(2_654_435_761).wrapping_add(i >> 7) % n)
}

struct Loaded {
    reused: bool,
    loaded: u64,
    seconds: f64,
    stopped_low_disk: bool,
}

/// Loads products `1..=n` into `schema` (fresh) unless it already holds `n`.
async fn load(pool: &PgPool, schema: &str, n: u64, leaves: &[String]) -> BenchResult<Loaded> {
    let s = schema;
    let have: i64 = sqlx::query_scalar(q(format!("SELECT count(*) FROM \"{s}\".products")))
        .fetch_one(pool)
        .await?;
    if have as u64 == n {
        eprintln!("catalog-scale: reusing {n} products in schema {s}");
        return Ok(Loaded {
            reused: true,
            loaded: n,
            seconds: 0.0,
            stopped_low_disk: false,
        });
    }
    sqlx::query(q(format!("TRUNCATE \"{s}\".variants, \"{s}\".products")))
        .execute(pool)
        .await?;
    // one real product as the template, so every row decodes like a stored product
    let mut template = NewProduct::new(
        SellerId::new("bench-seller")?,
        "Template",
        CategoryPath::parse(&leaves[0])?,
        "Acme",
        Sku::new("TEMPLATE-A")?,
        "199.00 USD".parse()?,
    );
    let mut second = template.variants[0].clone();
    second.sku = Sku::new("TEMPLATE-B")?;
    template.variants.push(second);
    template
        .attributes
        .insert("color".into(), AttributeValue::from("Black"));
    let product = template.into_product(Slug::new("template")?, chrono::Utc::now())?;
    let mut body = serde_json::to_value(&product)?;
    let variant = serde_json::to_value(&product.variants[0])?;
    if let Some(o) = body.as_object_mut() {
        o.remove("variants");
    }
    let attributes = serde_json::to_value(&product.attributes)?;
    let status = product.status.as_str();
    eprintln!(
        "catalog-scale: loading {n} products over {} leaf categories into schema {s}",
        leaves.len()
    );
    let started = Instant::now();
    let mut from = 1u64;
    let mut stopped_low_disk = false;
    while from <= n {
        let to = (from + BATCH - 1).min(n);
        if let Some(free) = free_bytes()
            && free < MIN_FREE + (to - from + 1) * BYTES_PER_PRODUCT
        {
            eprintln!(
                "catalog-scale: stopping the load at {} products: {} bytes free on /work",
                from - 1,
                free
            );
            if from == 1 {
                return Err(format!(
                    "catalog-scale: {free} bytes free on /work, {} needed to load the first {} products",
                    MIN_FREE + (to - from + 1) * BYTES_PER_PRODUCT,
                    to - from + 1
                )
                .into());
            }
            stopped_low_disk = true;
            break;
        }
        let mut tx = pool.begin().await?;
        sqlx::query(q(format!(
            "INSERT INTO \"{s}\".products (id, slug, category, status, version, attributes, body, created_at, updated_at)
             SELECT 'p' || lpad(g::text, 9, '0'), 'product-' || lpad(g::text, 9, '0'),
                    ($6::text[])[1 + g % $7], $3, 1, $4,
                    $5 || jsonb_build_object('id', 'p' || lpad(g::text, 9, '0'),
                                             'slug', 'product-' || lpad(g::text, 9, '0'),
                                             'title', 'Product ' || g,
                                             'category', ($6::text[])[1 + g % $7]),
                    now(), now()
               FROM generate_series($1::bigint, $2::bigint) g"
        )))
        .bind(from as i64)
        .bind(to as i64)
        .bind(status)
        .bind(&attributes)
        .bind(&body)
        .bind(leaves)
        .bind(leaves.len() as i64)
        .execute(&mut *tx)
        .await?;
        sqlx::query(q(format!(
            "INSERT INTO \"{s}\".variants (sku, product_id, position, body)
             SELECT 'P' || lpad(g::text, 9, '0') || '-' || k, 'p' || lpad(g::text, 9, '0'), k,
                    $3 || jsonb_build_object('sku', 'P' || lpad(g::text, 9, '0') || '-' || k)
               FROM generate_series($1::bigint, $2::bigint) g, generate_series(1, 2) k"
        )))
        .bind(from as i64)
        .bind(to as i64)
        .bind(&variant)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "catalog-scale: {to}/{n} products, {:.0} s, {:.0} products/s",
            secs,
            to as f64 / secs.max(1e-9)
        );
        from = to + 1;
    }
    let seconds = started.elapsed().as_secs_f64();
    sqlx::query(q(format!("ANALYZE \"{s}\".products")))
        .execute(pool)
        .await?;
    sqlx::query(q(format!("ANALYZE \"{s}\".variants")))
        .execute(pool)
        .await?;
    Ok(Loaded {
        reused: false,
        loaded: from - 1,
        seconds,
        stopped_low_disk,
    })
}

/// Checks that product `g` reads back with the category of its row and 2 variants.
async fn check_round_trip(pg: &PgCommerce, leaves: &[String], g: u64) -> BenchResult<()> {
    let id = ProductId::new(product_id(g))?;
    let p = pg
        .catalog
        .get_product(&id)
        .await?
        .ok_or_else(|| format!("product {id} not found after the load"))?;
    let expected = &leaves[(g % leaves.len() as u64) as usize];
    if p.category.as_str() != expected || p.variants.len() != 2 || p.slug.as_str() != slug(g) {
        return Err(format!(
            "product {id} does not round-trip: category {} (expected {expected}), {} variants, slug {}",
            p.category,
            p.variants.len(),
            p.slug
        )
        .into());
    }
    let by_slug = pg
        .catalog
        .get_product_by_slug(&Slug::new(slug(g))?)
        .await?
        .ok_or("product not found by slug")?;
    if by_slug != p {
        return Err(format!("product {id} differs read by id and by slug").into());
    }
    Ok(())
}

async fn catalog_scale(settings: Settings) -> BenchResult<Vec<Report>> {
    if matches!(
        settings.backend_or("postgres"),
        "search" | "search-collector"
    ) {
        return search_listing_scale(settings).await;
    }
    let n = settings.products_or(10_000_000, 20_000).max(1);
    let concurrency = settings.concurrency_or(8);
    let seconds = settings.seconds_or(10.0);
    let pool = pool(&settings, concurrency as u32 + 2).await?;
    let schema = if settings.quick {
        format!("bench_scale_quick_{n}_{}", std::process::id())
    } else {
        format!("bench_scale_{n}")
    };
    let (tree, tree_source) = load_tree();
    let leaves: Vec<String> = tree
        .leaves()
        .iter()
        .map(|c| c.path.as_str().to_owned())
        .collect();
    if leaves.is_empty() {
        return Err("the category tree has no leaves".into());
    }
    let listed: Vec<CategoryPath> = tree
        .iter()
        .filter(|c| c.path.depth() <= 2)
        .map(|c| c.path.clone())
        .collect();
    let pg = PgCommerce::from_pool(pool.clone(), PgConfig::new().schema(&schema)?);
    pg.migrate().await?;
    let categories: Vec<_> = tree.iter().cloned().collect();
    pg.catalog.put_categories(&categories).await?;
    let loaded = load(&pool, &schema, n, &leaves).await?;
    let n = loaded.loaded.max(1);
    for g in [1, n / 2 + 1, n] {
        check_round_trip(&pg, &leaves, g).await?;
    }
    let db_bytes: i64 = sqlx::query_scalar(q(format!(
        "SELECT (pg_total_relation_size('\"{schema}\".products')
               + pg_total_relation_size('\"{schema}\".variants'))::bigint"
    )))
    .fetch_one(&pool)
    .await?;

    let catalog = pg.catalog.clone();
    let seq = Arc::new(AtomicU64::new(0));
    let reads = run_closed_loop(concurrency, seconds, move |_, _| {
        let catalog = catalog.clone();
        let i = seq.fetch_add(1, Ordering::Relaxed);
        async move { super::postgres::read_by_slug(catalog.as_ref(), slug(pick(i, n))).await }
    })
    .await;

    let listed = Arc::new(listed);
    let lists = list_run(&pg, listed.clone(), concurrency, seconds, 1).await;
    let deep = list_run(&pg, listed.clone(), concurrency, seconds, DEEP_PAGES).await;

    drop(pg);
    if settings.quick {
        sqlx::query(q(format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")))
            .execute(&pool)
            .await?;
    }
    pool.close().await;

    let load_rate = if loaded.reused || loaded.seconds <= 0.0 {
        serde_json::Value::Null
    } else {
        serde_json::json!(round1(loaded.loaded as f64 / loaded.seconds))
    };
    let ms = |r: &LoadResult, q: f64| round3(r.latencies.quantile_ms(q));
    Ok(vec![
        reads
            .report("catalog-scale", "postgres")
            .field("errors", reads.errors + lists.errors + deep.errors)
            .field("products", loaded.loaded)
            .field("variants", loaded.loaded * 2)
            .field("categories", tree.len())
            .field("leaf_categories", leaves.len())
            .field("listed_categories", listed.len())
            .field("tree", tree_source)
            .field("concurrency", concurrency)
            .field("reused", loaded.reused)
            .field("stopped_low_disk", loaded.stopped_low_disk)
            .field("load_products_per_sec", load_rate)
            .field(
                "load_seconds",
                if loaded.reused {
                    serde_json::Value::Null
                } else {
                    serde_json::json!(round1(loaded.seconds))
                },
            )
            .field("db_bytes", db_bytes)
            .field("product_read_p50_ms", ms(&reads, 0.50))
            .field("product_read_p99_ms", ms(&reads, 0.99))
            .field("product_read_ops_per_sec", round1(reads.ops_per_sec()))
            .field("category_list_page", PAGE)
            .field("category_list_ops", lists.ops)
            .field("category_list_ops_per_sec", round1(lists.ops_per_sec()))
            .field("category_list_p50_ms", ms(&lists, 0.50))
            .field("category_list_p99_ms", ms(&lists, 0.99))
            .field("category_list_errors", lists.errors)
            .field("category_deep_pages", DEEP_PAGES)
            .field("category_deep5_ops", deep.ops)
            .field("category_deep5_p50_ms", ms(&deep, 0.50))
            .field("category_deep5_p99_ms", ms(&deep, 0.99))
            .field("category_deep5_errors", deep.errors),
    ])
}

/// Lists `pages` pages of [`PAGE`] products of random categories out of `listed`,
/// following the keyset cursor; one operation is the whole walk.
async fn list_run(
    pg: &PgCommerce,
    listed: Arc<Vec<CategoryPath>>,
    concurrency: usize,
    seconds: Duration,
    pages: usize,
) -> LoadResult {
    let catalog = pg.catalog.clone();
    let seq = Arc::new(AtomicU64::new(0));
    run_closed_loop(concurrency, seconds, move |_, _| {
        let catalog = catalog.clone();
        let listed = listed.clone();
        let i = seq.fetch_add(1, Ordering::Relaxed);
        async move {
            let k = (pick(i, listed.len() as u64) - 1) as usize;
            let mut query = ProductQuery::in_category(listed[k].clone());
            query.limit = PAGE;
            for _ in 0..pages {
                match catalog.list_products(&query).await {
                    Ok(page) => {
                        if page.items.iter().any(|p| !listed[k].contains(&p.category)) {
                            eprintln!("listing of {} returned a foreign product", listed[k]);
                            return Outcome::Error;
                        }
                        match page.next {
                            Some(next) => query.after = Some(next),
                            None => break,
                        }
                    }
                    Err(e) => {
                        eprintln!("listing failed: {e}");
                        return Outcome::Error;
                    }
                }
            }
            Outcome::Ok
        }
    })
    .await
}

/// One listing of the search-backed run: a category, a sort, whether a price range is
/// applied.
fn listing_query(listed: &[CategoryPath], i: u64) -> commerce_core::store::search::SearchQuery {
    use commerce_core::store::search::SortOrder;
    let k = (pick(i, listed.len() as u64) - 1) as usize;
    let sort = [
        SortOrder::Popularity,
        SortOrder::PriceAscending,
        SortOrder::PriceDescending,
        SortOrder::Newest,
    ][(i % 4) as usize];
    let mut q = commerce_search::listing::category_listing(
        listed[k].clone(),
        sort,
        commerce_core::money::Currency::USD,
    );
    if i % 4 == 1 {
        let usd = |c| {
            commerce_core::money::Money::from_minor_units(c, commerce_core::money::Currency::USD)
                .ok()
        };
        q.filters.price = commerce_core::store::search::PriceRange {
            min: usd(10_000),
            max: usd(100_000),
        };
    }
    q
}

/// The search index of `n` generated products over `tree` in `shards` shards, reused
/// when complete. Returns it, whether it was reused and the build seconds.
async fn search_index(
    n: u64,
    shards: usize,
    tree: &CategoryTree,
    listing_views: bool,
) -> BenchResult<(commerce_search::ShardedSearch, bool, f64)> {
    use commerce_core::store::SearchIndex;
    use commerce_search::{ShardedSearch, TantivyConfig};
    let path = std::env::temp_dir().join(format!("commerce-bench-scale-search-{n}-x{shards}"));
    let config = TantivyConfig {
        commit_interval: None,
        writer_threads: 2,
        writer_memory: 512 << 20,
        listing_views,
        ..TantivyConfig::default()
    };
    if path.join("shard-0").join("meta.json").exists() {
        let index = ShardedSearch::open_or_create(&path, shards, config.clone())?;
        if index.count().await? == n {
            return Ok((index, true, 0.0));
        }
        drop(index);
    }
    if path.exists() {
        std::fs::remove_dir_all(&path)?;
    }
    // About 230 bytes per product on disk, plus room while segments merge.
    let need = n * 500 + 2_000_000_000;
    if free_bytes().is_some_and(|free| free < need) {
        return Err(format!(
            "catalog-scale --backend search: {need} bytes free needed for {n} products"
        )
        .into());
    }
    let index = ShardedSearch::open_or_create(&path, shards, config)?;
    let start = Instant::now();
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<commerce_core::catalog::Product>>(4);
    const GEN_BATCH: u64 = 5_000;
    let generators: Vec<_> = (0..2u64)
        .map(|g| {
            let tx = tx.clone();
            let tree = tree.clone();
            std::thread::spawn(move || {
                let sample = commerce_core::sample::SampleCatalog::new(&tree, 7);
                let mut i = g * GEN_BATCH;
                while i < n {
                    let end = (i + GEN_BATCH).min(n);
                    let batch: Vec<_> = (i..end)
                        .map(|j| commerce_search::sample_product(&sample, j))
                        .collect();
                    if tx.send(batch).is_err() {
                        break;
                    }
                    i += 2 * GEN_BATCH;
                }
            })
        })
        .collect();
    drop(tx);
    let mut done = 0u64;
    while let Ok(batch) = rx.recv() {
        done += batch.len() as u64;
        index.insert_new(&batch)?;
        if done % 1_000_000 < GEN_BATCH {
            eprintln!("catalog-scale: indexed {done} of {n} products");
        }
    }
    for g in generators {
        let _ = g.join();
    }
    index.refresh().await?;
    index.compact()?;
    Ok((index, false, start.elapsed().as_secs_f64()))
}

async fn search_listing_scale(settings: Settings) -> BenchResult<Vec<Report>> {
    use commerce_core::store::SearchIndex;
    let n = settings.products_or(10_000_000, 20_000).max(1);
    let shards = settings.shards.unwrap_or(1).max(1);
    let concurrency = settings.concurrency_or(2);
    let seconds = settings.seconds_or(10.0);
    let (tree, tree_source) = load_tree();
    let listed: Vec<CategoryPath> = tree
        .iter()
        .filter(|c| c.path.depth() <= 2)
        .map(|c| c.path.clone())
        .collect();
    if listed.is_empty() {
        return Err("the category tree has no categories".into());
    }
    let listing_views = settings.backend_or("search") == "search";
    let (index, reused, build_seconds) = search_index(n, shards, &tree, listing_views).await?;
    let index_bytes = index.size_bytes()?;
    let prepare = Instant::now();
    let views_bytes = if listing_views {
        index.prepare_listings()?
    } else {
        0
    };
    let prepare_seconds = prepare.elapsed().as_secs_f64();
    let index: Arc<dyn SearchIndex> = Arc::new(index);
    let listed = Arc::new(listed);

    // Warm-up, and the cursors of pages 2 to 6 of 400 listings.
    let mut next_pages = Vec::new();
    let mut totals = 0u64;
    let mut max_total = 0u64;
    for i in 0..400u64 {
        let mut q = listing_query(&listed, i);
        for page in 1..=DEEP_PAGES + 1 {
            let r = index.search(&q).await?;
            if page == 1 {
                totals += r.total;
                max_total = max_total.max(r.total);
            }
            match r.next_cursor {
                Some(c) if page <= DEEP_PAGES => {
                    q.cursor = Some(c);
                    next_pages.push(q.clone());
                }
                _ => break,
            }
        }
    }
    let next_pages = Arc::new(next_pages);

    let check = |listed: &CategoryPath, r: &commerce_core::store::search::SearchResults| {
        r.hits.iter().all(|h| listed.contains(&h.category))
            && (r.hits.is_empty() || !r.facets.brands.is_empty())
    };
    let first = {
        let index = index.clone();
        let listed = listed.clone();
        let seq = Arc::new(AtomicU64::new(0));
        run_closed_loop(concurrency, seconds, move |_, _| {
            let index = index.clone();
            let i = seq.fetch_add(1, Ordering::Relaxed);
            let q = listing_query(&listed, i);
            async move {
                match index.search(&q).await {
                    Ok(r) if q.filters.category.as_ref().is_some_and(|c| check(c, &r)) => {
                        Outcome::Ok
                    }
                    Ok(_) => {
                        eprintln!("listing returned a foreign product or no brand counts");
                        Outcome::Error
                    }
                    Err(e) => {
                        eprintln!("listing failed: {e}");
                        Outcome::Error
                    }
                }
            }
        })
        .await
    };
    let next = {
        let index = index.clone();
        let pages = next_pages.clone();
        let seq = Arc::new(AtomicU64::new(0));
        run_closed_loop(concurrency, seconds, move |_, _| {
            let index = index.clone();
            let i = seq.fetch_add(1, Ordering::Relaxed);
            let q = pages[(pick(i, pages.len().max(1) as u64) - 1) as usize].clone();
            async move {
                match index.search(&q).await {
                    Ok(r) if q.filters.category.as_ref().is_some_and(|c| check(c, &r)) => {
                        Outcome::Ok
                    }
                    Ok(_) => Outcome::Error,
                    Err(e) => {
                        eprintln!("listing failed: {e}");
                        Outcome::Error
                    }
                }
            }
        })
        .await
    };
    let ms = |r: &LoadResult, q: f64| round3(r.latencies.quantile_ms(q));
    Ok(vec![
        first
            .report(
                "catalog-scale",
                if listing_views {
                    "search"
                } else {
                    "search-collector"
                },
            )
            .field("errors", first.errors + next.errors)
            .field("products", n)
            .field("shards", shards)
            .field("tree", tree_source)
            .field("listed_categories", listed.len())
            .field("concurrency", concurrency)
            .field("reused", reused)
            .field(
                "build_seconds",
                if reused {
                    serde_json::Value::Null
                } else {
                    serde_json::json!(round1(build_seconds))
                },
            )
            .field("index_bytes", index_bytes)
            .field("listing_views", listing_views)
            .field("listing_views_bytes", views_bytes)
            .field("listing_views_build_seconds", round1(prepare_seconds))
            .field("avg_listing_total", totals / 400)
            .field("max_listing_total", max_total)
            .field("category_list_page", PAGE)
            .field("category_list_p50_ms", ms(&first, 0.50))
            .field("category_list_p99_ms", ms(&first, 0.99))
            .field("category_list_ops_per_sec", round1(first.ops_per_sec()))
            .field("category_next5_pages", next_pages.len())
            .field("category_next5_p50_ms", ms(&next, 0.50))
            .field("category_next5_p99_ms", ms(&next, 0.99))
            .field("category_next5_ops_per_sec", round1(next.ops_per_sec()))
            .field("rss_bytes", rss_bytes()),
    ])
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}
