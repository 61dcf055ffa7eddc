//! Scenarios on PostgreSQL (`commerce-postgres`), each with `pgbench` running the
//! minimal correct SQL on the same tables in the same run as its baseline.
//!
//! * `inventory-spread`: reservations of one unit of a random SKU out of 100,000
//!   (`--quick`: 10,000), 8 tasks.
//! * `inventory-hot`: every buyer reserves one unit of the same SKU, 64 tasks; two
//!   lines: without and with the hot-SKU request combiner (`hot_technique`).
//! * `checkout` (in `order_path.rs`): the whole order path a host runs.
//! * `product-read`: product by slug with its variants, over `--products` products
//!   (default 1,000,000; `--quick` 10,000); the loaded catalog is kept and reused.
//!
//! The baseline transaction is
//! `BEGIN; UPDATE stock_levels SET available = available - 1, reserved = reserved + 1
//! WHERE sku = .. AND location = .. AND available >= 1; INSERT INTO reservations ..;
//! COMMIT;` run by `pgbench -n -f script -c C -j 2 -T S`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use commerce_core::Error;
use commerce_core::catalog::Slug;
use commerce_core::id::{OrderId, Sku};
use commerce_core::inventory::ReservationRequest;
use commerce_core::store::{CatalogStore, InventoryStore};
use commerce_postgres::sqlx::{self, PgPool};
use commerce_postgres::{HotSkuConfig, PgCommerce, PgConfig};
use futures::FutureExt;

use super::Scenario;
use crate::harness::{BenchResult, Outcome, Report, Settings, run_closed_loop};

pub(super) fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "inventory-spread",
            about: "postgres: 1-unit reservations over 100,000 SKUs, 8 tasks, vs pgbench",
            run: |s| inventory_spread(s).boxed(),
        },
        Scenario {
            name: "inventory-hot",
            about: "postgres: 64 buyers of one SKU, without and with the combiner, vs pgbench",
            run: |s| inventory_hot(s).boxed(),
        },
        Scenario {
            name: "product-read",
            about: "postgres: product by slug with variants over 1,000,000 products, vs pgbench",
            run: |s| product_read(s).boxed(),
        },
    ]
}

const LOCATION: &str = "main";

fn q(sql: String) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(sql)
}

pub(super) async fn pool(settings: &Settings, size: u32) -> BenchResult<PgPool> {
    let url = settings.require_database_url()?;
    let (opts, connect) = PgConfig::new()
        .max_connections(size)
        .acquire_timeout(Duration::from_secs(60))
        .pool_for(url)?;
    let pool = opts.connect_with(connect).await?;
    Ok(pool)
}

/// `config` with `COMMERCE_BENCH_STEP_LANES` batches in flight per step and at most
/// `COMMERCE_BENCH_STEP_MAX_BATCH` orders per batch, each when it is set (to compare
/// settings in one build), else as it is.
pub(super) fn step_batching(config: PgConfig) -> PgConfig {
    let var = |name: &str| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
    };
    let (lanes, max_batch) = (
        var("COMMERCE_BENCH_STEP_LANES"),
        var("COMMERCE_BENCH_STEP_MAX_BATCH"),
    );
    if lanes.is_none() && max_batch.is_none() {
        return config;
    }
    let default = commerce_postgres::StepBatching::default();
    config.step_batching(commerce_postgres::StepBatching {
        lanes: lanes.unwrap_or(default.lanes),
        max_batch: max_batch.unwrap_or(default.max_batch),
    })
}

/// A fresh, migrated schema `name` (dropped first if present).
async fn fresh(pool: &PgPool, name: &str, config: PgConfig) -> BenchResult<PgCommerce> {
    sqlx::query(q(format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE")))
        .execute(pool)
        .await?;
    let pg = PgCommerce::from_pool(pool.clone(), config.schema(name)?);
    pg.migrate().await?;
    Ok(pg)
}

pub(super) async fn drop_schema(settings: &Settings, schema: &str) -> BenchResult<()> {
    let pool = pool(settings, 1).await?;
    sqlx::query(q(format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")))
        .execute(&pool)
        .await?;
    pool.close().await;
    Ok(())
}

/// `n` SKUs `S1..Sn` with `units` each at LOCATION, ledger included (bulk SQL).
pub(super) async fn seed_stock(
    pool: &PgPool,
    schema: &str,
    prefix: &str,
    suffix: &str,
    n: u64,
    units: i64,
) -> BenchResult<()> {
    let s = schema;
    let mut tx = pool.begin().await?;
    sqlx::query(q(format!(
        "INSERT INTO \"{s}\".stock_levels (sku, location, received, available)
         SELECT $1 || g || $5, $2, $3, $3 FROM generate_series(1, $4::bigint) g"
    )))
    .bind(prefix)
    .bind(LOCATION)
    .bind(units)
    .bind(n as i64)
    .bind(suffix)
    .execute(&mut *tx)
    .await?;
    sqlx::query(q(format!(
        "INSERT INTO \"{s}\".stock_skus (sku) SELECT $1 || g || $3 FROM generate_series(1, $2::bigint) g"
    )))
    .bind(prefix)
    .bind(n as i64)
    .bind(suffix)
    .execute(&mut *tx)
    .await?;
    sqlx::query(q(format!(
        "INSERT INTO \"{s}\".stock_movements (sku, location, kind, quantity, reason, at)
         SELECT $1 || g || $5, $2, 'received', $3, 'bench', now() FROM generate_series(1, $4::bigint) g"
    )))
    .bind(prefix)
    .bind(LOCATION)
    .bind(units)
    .bind(n as i64)
    .bind(suffix)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    sqlx::query(q(format!("ANALYZE \"{s}\".stock_levels")))
        .execute(pool)
        .await?;
    Ok(())
}

/// Units held by active reservations beyond what their location ever had, read back
/// from the tables (0 unless something oversold).
pub(super) async fn oversold(pool: &PgPool, schema: &str) -> BenchResult<i64> {
    let s = schema;
    let v: i64 = sqlx::query_scalar(q(format!(
        "WITH held AS (
           SELECT a->>'sku' AS sku, a->>'location' AS loc, sum((a->>'quantity')::bigint) AS q
             FROM \"{s}\".reservations r, jsonb_array_elements(r.allocations) a
            WHERE r.state = 'ACTIVE' AND a->>'location' IS NOT NULL
            GROUP BY 1, 2)
         SELECT (COALESCE(sum(GREATEST(0, h.q - (l.received - l.adjusted - l.sold))), 0)
              + COALESCE(sum(abs(h.q - l.reserved)), 0))::bigint
           FROM held h JOIN \"{s}\".stock_levels l ON l.sku = h.sku AND l.location = h.loc"
    )))
    .fetch_one(pool)
    .await?;
    Ok(v)
}

/// Runs pgbench with `script` and returns its tps.
pub(super) async fn pgbench(
    settings: &Settings,
    script: String,
    clients: usize,
    seconds: Duration,
) -> BenchResult<f64> {
    let url = settings.require_database_url()?.to_owned();
    let secs = seconds.as_secs_f64().round().max(1.0) as u64;
    tokio::task::spawn_blocking(move || -> BenchResult<f64> {
        let dir = std::env::temp_dir().join(format!("commerce-pgbench-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let file = dir.join("script.sql");
        std::fs::write(&file, script)?;
        let out = std::process::Command::new("pgbench")
            .arg("-n")
            .arg("-f")
            .arg(&file)
            .arg("-c")
            .arg(clients.to_string())
            .arg("-j")
            .arg("2")
            .arg("-T")
            .arg(secs.to_string())
            .arg(&url)
            .output()
            .map_err(|e| format!("cannot run pgbench (is it installed?): {e}"))?;
        let _ = std::fs::remove_dir_all(&dir);
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            return Err(format!(
                "pgbench failed: {}{}",
                stdout,
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        stdout
            .lines()
            .find_map(|l| {
                let l = l.trim();
                l.strip_prefix("tps = ")
                    .and_then(|r| r.split_whitespace().next())
                    .and_then(|n| n.parse::<f64>().ok())
            })
            .ok_or_else(|| format!("no tps in pgbench output: {stdout}").into())
    })
    .await?
}

/// The minimal correct reservation transaction for pgbench.
pub(super) fn reservation_script(schema: &str, pick_sku: &str, sku_expr: &str) -> String {
    format!(
        "{pick_sku}
BEGIN;
UPDATE \"{schema}\".stock_levels SET available = available - 1, reserved = reserved + 1 WHERE sku = {sku_expr} AND location = '{LOCATION}' AND available >= 1;
INSERT INTO \"{schema}\".reservations (order_id, lines, allocations, state, created_at, expires_at) VALUES ('pgb-' || gen_random_uuid(), jsonb_build_array(jsonb_build_object('sku', {sku_expr}, 'quantity', 1)), '[]', 'ACTIVE', now(), now() + interval '15 minutes');
COMMIT;
"
    )
}

fn counted(r: Result<commerce_core::inventory::Reservation, Error>) -> Outcome {
    match r {
        Ok(_) => Outcome::Ok,
        Err(Error::OutOfStock { .. }) => Outcome::Rejected,
        Err(e) => {
            eprintln!("reserve failed: {e}");
            Outcome::Error
        }
    }
}

async fn inventory_spread(settings: Settings) -> BenchResult<Vec<Report>> {
    let skus: u64 = if settings.quick { 10_000 } else { 100_000 };
    let concurrency = settings.concurrency_or(8);
    let seconds = settings.seconds_or(10.0);
    let pool = pool(&settings, concurrency as u32 + 2).await?;
    let schema = "bench_inventory_spread";
    let pg = fresh(&pool, schema, PgConfig::new()).await?;
    seed_stock(&pool, schema, "S", "", skus, 1_000_000).await?;
    let inventory = pg.inventory.clone();
    let seq = Arc::new(AtomicU64::new(0));
    let result = run_closed_loop(concurrency, seconds, move |_, _| {
        let inventory = inventory.clone();
        let n = seq.fetch_add(1, Ordering::Relaxed);
        async move {
            let sku = Sku::new(format!("S{}", 1 + (n.wrapping_mul(2_654_435_761) % skus)));
            let Ok(sku) = sku else { return Outcome::Error };
            let req = ReservationRequest::new(OrderId::generate(), [(sku, 1)]);
            counted(inventory.reserve(&req).await)
        }
    })
    .await;
    let over = oversold(&pool, schema).await?;
    let script = reservation_script(schema, &format!("\\set n random(1, {skus})"), "'S' || :n");
    drop(pg);
    pool.close().await;
    let baseline = pgbench(&settings, script, concurrency, seconds).await?;
    drop_schema(&settings, schema).await?;
    Ok(vec![
        result
            .report("inventory-spread", "postgres")
            .field("skus", skus)
            .field("concurrency", concurrency)
            .field("oversold", over)
            .baseline(baseline),
    ])
}

async fn inventory_hot(settings: Settings) -> BenchResult<Vec<Report>> {
    // --quick (CI) uses fewer connections on a shared server
    let concurrency = settings.concurrency_or(if settings.quick { 16 } else { 64 });
    let seconds = settings.seconds_or(10.0);
    let schema = "bench_inventory_hot";
    let stock: i64 = 50_000_000;
    let script = reservation_script(schema, "", "'HOT'");
    let mut reports = Vec::new();
    for technique in ["none", "combiner"] {
        let pool = pool(&settings, concurrency as u32 + 2).await?;
        let mut config = PgConfig::new();
        if technique == "combiner" {
            config = config.combine_hot_skus(HotSkuConfig::all().max_batch(256));
        }
        let pg = fresh(&pool, schema, config).await?;
        seed_stock(&pool, schema, "HOT", "", 1, stock).await?;
        let inventory = pg.inventory.clone();
        let sold = Arc::new(AtomicU64::new(0));
        let counter = sold.clone();
        let result = run_closed_loop(concurrency, seconds, move |_, _| {
            let inventory = inventory.clone();
            let counter = counter.clone();
            async move {
                let Ok(sku) = Sku::new("HOT1") else {
                    return Outcome::Error;
                };
                let req = ReservationRequest::new(OrderId::generate(), [(sku, 1)]);
                let r = inventory.reserve(&req).await;
                if r.is_ok() {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                counted(r)
            }
        })
        .await;
        let over = oversold(&pool, schema).await?;
        let (reserved, available): (i64, i64) = sqlx::query_as(q(format!(
            "SELECT reserved, available FROM \"{schema}\".stock_levels WHERE sku = 'HOT1'"
        )))
        .fetch_one(&pool)
        .await?;
        let told = sold.load(Ordering::Relaxed) as i64;
        let over = over
            + (told - stock).max(0)
            + (reserved - told).abs()
            + (reserved + available - stock).abs();
        // the baseline's own row
        sqlx::query(q(format!(
            "INSERT INTO \"{schema}\".stock_levels (sku, location, received, available)
             VALUES ('HOT', '{LOCATION}', $1, $1)"
        )))
        .bind(stock)
        .execute(&pool)
        .await?;
        drop(pg);
        pool.close().await;
        let baseline = pgbench(&settings, script.clone(), concurrency, seconds).await?;
        reports.push(
            result
                .report("inventory-hot", "postgres")
                .field("hot_technique", technique)
                .field("concurrency", concurrency)
                .field("oversold", over)
                .baseline(baseline),
        );
    }
    drop_schema(&settings, schema).await?;
    Ok(reports)
}

/// Loads `n` products (2 variants each) into `schema` unless it already holds them.
/// One product-page read of the bench catalog: by slug, expecting its 2 variants.
pub(super) async fn read_by_slug(catalog: &dyn CatalogStore, slug: String) -> Outcome {
    let Ok(slug) = Slug::new(slug) else {
        return Outcome::Error;
    };
    match catalog.get_product_by_slug(&slug).await {
        Ok(Some(p)) if p.variants.len() == 2 => Outcome::Ok,
        Ok(_) => Outcome::Rejected,
        Err(e) => {
            eprintln!("read failed: {e}");
            Outcome::Error
        }
    }
}

pub(super) async fn load_catalog(pool: &PgPool, schema: &str, n: u64) -> BenchResult<PgCommerce> {
    let pg = PgCommerce::from_pool(pool.clone(), PgConfig::new().schema(schema)?);
    if pg.migrate().await.is_ok() {
        let have: i64 =
            sqlx::query_scalar(q(format!("SELECT count(*) FROM \"{schema}\".products")))
                .fetch_one(pool)
                .await?;
        if have as u64 == n {
            eprintln!("product-read: reusing {n} products in schema {schema}");
            return Ok(pg);
        }
    }
    let pg = fresh(pool, schema, step_batching(PgConfig::new())).await?;
    eprintln!("product-read: loading {n} products into schema {schema}");
    // one real product as the template, so every row decodes like a stored product
    let template = commerce_core::catalog::NewProduct::new(
        commerce_core::id::SellerId::new("bench-seller")?,
        "Template",
        commerce_core::catalog::CategoryPath::parse("Electronics > Phones")?,
        "Acme",
        Sku::new("TEMPLATE-A")?,
        "199.00 USD".parse()?,
    );
    let mut template = template;
    template.status = commerce_core::catalog::ProductStatus::Active;
    let mut second = template.variants[0].clone();
    second.sku = Sku::new("TEMPLATE-B")?;
    template.variants.push(second);
    template.attributes.insert(
        "color".into(),
        commerce_core::catalog::AttributeValue::from("Black"),
    );
    let product = template.into_product(Slug::new("template")?, chrono::Utc::now())?;
    let mut body = serde_json::to_value(&product)?;
    let variant = serde_json::to_value(&product.variants[0])?;
    if let Some(o) = body.as_object_mut() {
        o.remove("variants");
    }
    let attributes = serde_json::to_value(&product.attributes)?;
    let status = product.status.as_str();
    let s = schema;
    let step = 100_000u64;
    let mut from = 1u64;
    while from <= n {
        let to = (from + step - 1).min(n);
        let mut tx = pool.begin().await?;
        sqlx::query(q(format!(
            "INSERT INTO \"{s}\".products (id, slug, category, status, version, attributes, body, created_at, updated_at)
             SELECT 'p' || g, 'product-' || g, 'Electronics > Phones', $3, 1, $4,
                    $5 || jsonb_build_object('id', 'p' || g, 'slug', 'product-' || g, 'title', 'Product ' || g),
                    now(), now()
               FROM generate_series($1::bigint, $2::bigint) g"
        )))
        .bind(from as i64)
        .bind(to as i64)
        .bind(status)
        .bind(&attributes)
        .bind(&body)
        .execute(&mut *tx)
        .await?;
        sqlx::query(q(format!(
            "INSERT INTO \"{s}\".variants (sku, product_id, position, body)
             SELECT 'P' || g || '-' || k, 'p' || g, k, $3 || jsonb_build_object('sku', 'P' || g || '-' || k)
               FROM generate_series($1::bigint, $2::bigint) g, generate_series(1, 2) k"
        )))
        .bind(from as i64)
        .bind(to as i64)
        .bind(&variant)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        from = to + 1;
    }
    sqlx::query(q(format!("ANALYZE \"{s}\".products")))
        .execute(pool)
        .await?;
    sqlx::query(q(format!("ANALYZE \"{s}\".variants")))
        .execute(pool)
        .await?;
    Ok(pg)
}

async fn product_read(settings: Settings) -> BenchResult<Vec<Report>> {
    let n = settings.products_or(1_000_000, 10_000).max(1);
    let concurrency = settings.concurrency_or(8);
    let seconds = settings.seconds_or(10.0);
    let pool = pool(&settings, concurrency as u32 + 2).await?;
    let schema = format!("bench_catalog_{n}");
    let pg = load_catalog(&pool, &schema, n).await?;
    let catalog = pg.catalog.clone();
    let seq = Arc::new(AtomicU64::new(0));
    let result = run_closed_loop(concurrency, seconds, move |_, _| {
        let catalog = catalog.clone();
        let i = seq.fetch_add(1, Ordering::Relaxed);
        async move {
            let g = 1 + (i.wrapping_mul(2_654_435_761) % n);
            read_by_slug(catalog.as_ref(), format!("product-{g}")).await
        }
    })
    .await;
    drop(pg);
    pool.close().await;
    let script = format!(
        "\\set n random(1, {n})
SELECT p.body, (SELECT jsonb_agg(v.body ORDER BY v.position) FROM \"{schema}\".variants v WHERE v.product_id = p.id) FROM \"{schema}\".products p WHERE p.slug = 'product-' || :n;
"
    );
    let baseline = pgbench(&settings, script, concurrency, seconds).await?;
    Ok(vec![
        result
            .report("product-read", "postgres")
            .field("products", n)
            .field("concurrency", concurrency)
            .field("oversold", 0)
            .baseline(baseline),
    ])
}
