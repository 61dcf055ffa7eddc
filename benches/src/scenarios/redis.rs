//! Scenarios on Redis (`REDIS_URL`, default `redis://127.0.0.1:6379`): cart writes with
//! `redis-benchmark` as the baseline, cached product reads, and a flash sale through the
//! admission gate.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use commerce_core::cart::{CartItem, CartLimits, CartOwner};
use commerce_core::catalog::{CategoryPath, NewProduct, ProductStatus};
use commerce_core::clock::{Clock, SystemClock};
use commerce_core::id::{CartId, LocationId, OrderId, ProductId, SellerId, Sku};
use commerce_core::inventory::ReservationRequest;
use commerce_core::memory::MemoryEngine;
use commerce_core::store::{CartStore, CatalogStore, CatalogStoreExt, InventoryStore};
use commerce_redis::{
    CacheConfig, CachedCatalog, FlashSaleGate, RedisBackend, RedisCarts, RedisConfig,
};
use futures::FutureExt;

use super::Scenario;
use crate::harness::{BenchResult, Outcome, Report, Settings, run_closed_loop, run_until};

pub(super) fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "cart-add",
            about: "redis: add_item from 50 tasks over distinct carts, vs redis-benchmark EVAL of a one-line cart script",
            run: |s| cart_add(s).boxed(),
        },
        Scenario {
            name: "product-read-cached",
            about: "redis: product page data (get_product) from the CachedCatalog, warm",
            run: |s| product_read_cached(s).boxed(),
        },
        Scenario {
            name: "flash-sale",
            about: "redis: 100,000 buyers, 100 units through the FlashSaleGate to the inventory store",
            run: |s| flash_sale(s).boxed(),
        },
    ]
}

fn redis_url(settings: &Settings) -> String {
    settings
        .redis_url
        .clone()
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into())
}

async fn connect(settings: &Settings, name: &str) -> BenchResult<RedisBackend> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let prefix = format!("bench-{name}-{}-{nanos}", std::process::id());
    Ok(RedisConfig::from_urls(&redis_url(settings))
        .with_prefix(prefix)?
        .connect()
        .await?)
}

/// `(host, port)` of a `redis://host:port[/db]` URL.
fn host_port(url: &str) -> (String, u16) {
    let rest = url
        .trim_start_matches("redis://")
        .rsplit('@')
        .next()
        .unwrap_or("");
    let hostport = rest.split('/').next().unwrap_or("");
    match hostport.rsplit_once(':') {
        Some((h, p)) => (h.to_owned(), p.parse().unwrap_or(6379)),
        None if hostport.is_empty() => ("127.0.0.1".into(), 6379),
        None => (hostport.to_owned(), 6379),
    }
}

/// The one-line cart script the baseline runs: bump a line's quantity and the version,
/// slide the TTL, return the cart.
const BASELINE_SCRIPT: &str = "redis.call('HINCRBY',KEYS[1],'q:'..ARGV[1],ARGV[2]) redis.call('HINCRBY',KEYS[1],'v',1) redis.call('PEXPIRE',KEYS[1],ARGV[3]) return redis.call('HGETALL',KEYS[1])";

/// Runs `redis-benchmark` with the one-line cart script over `clients` distinct keys;
/// returns its requests per second.
async fn redis_benchmark(
    url: &str,
    prefix: &str,
    requests: u64,
    clients: usize,
) -> BenchResult<f64> {
    let (host, port) = host_port(url);
    let key = format!("{prefix}:cart:{{__rand_int__}}");
    let out = tokio::process::Command::new("redis-benchmark")
        .args(["-h", &host, "-p", &port.to_string()])
        .args(["-n", &requests.to_string(), "-c", &clients.to_string()])
        .args(["-r", &clients.to_string(), "-q"])
        .args(["EVAL", BASELINE_SCRIPT, "1", &key, "A", "1", "604800000"])
        .output()
        .await
        .map_err(|e| format!("redis-benchmark could not run: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    // `-q` prints progress lines separated by `\r`, the result last:
    // "EVAL ...: 158730.16 requests per second, p50=0.159 msec".
    text.split(['\r', '\n'])
        .filter_map(|line| {
            let (before, _) = line.split_once(" requests per second")?;
            before.rsplit([' ', ':']).next()?.trim().parse::<f64>().ok()
        })
        .next_back()
        .ok_or_else(|| {
            format!("no requests per second in redis-benchmark's output: {text:?}").into()
        })
}

async fn cart_add(settings: Settings) -> BenchResult<Vec<Report>> {
    let redis = connect(&settings, "cart").await?;
    let concurrency = settings.concurrency_or(50);
    let duration = settings.seconds_or(10.0);
    let url = redis_url(&settings);

    // The baseline first, sized to take about as long as our run.
    let requests = if settings.quick {
        20_000
    } else {
        (160_000.0 * duration.as_secs_f64()) as u64
    };
    let baseline = redis_benchmark(&url, redis.prefix(), requests, concurrency).await;

    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let carts = Arc::new(RedisCarts::new(redis.clone(), clock.clone()));
    let ids: Arc<Vec<CartId>> = Arc::new((0..concurrency).map(|_| CartId::new_guest()).collect());
    let limits = CartLimits {
        max_line_quantity: u32::MAX,
        ..CartLimits::default()
    };
    let product = ProductId::new("p-bench")?;
    let sku = Sku::new("A")?;
    let price: commerce_core::Money = "19.99 USD".parse()?;
    let result = run_closed_loop(concurrency, duration, move |task, _| {
        let (carts, ids, clock) = (carts.clone(), ids.clone(), clock.clone());
        let item = CartItem {
            product_id: product.clone(),
            sku: sku.clone(),
            quantity: 1,
            unit_price: price,
            added_at: clock.now(),
        };
        async move {
            match carts
                .add_item(&ids[task], &CartOwner::Guest, item, &limits)
                .await
            {
                Ok(_) => Outcome::Ok,
                Err(_) => Outcome::Error,
            }
        }
    })
    .await;
    redis.delete_all().await?;
    let mut report = result
        .report("cart-add", "redis")
        .field("concurrency", concurrency)
        .field(
            "baseline",
            "redis-benchmark EVAL one-line cart script, same clients",
        );
    match baseline {
        Ok(rps) => report = report.baseline(rps),
        Err(e) => {
            eprintln!("cart-add: baseline unavailable: {e}");
            report = report.field("baseline_error", e.to_string());
        }
    }
    Ok(vec![report])
}

async fn product_read_cached(settings: Settings) -> BenchResult<Vec<Report>> {
    let redis = connect(&settings, "product").await?;
    let engine = MemoryEngine::new();
    let n = settings.products_or(1_000, 100);
    let mut ids = Vec::with_capacity(n as usize);
    for i in 0..n {
        let mut new = NewProduct::new(
            SellerId::new("s1")?,
            format!("Product {i}"),
            CategoryPath::parse("Electronics > Phones")?,
            "Acme",
            Sku::new(format!("SKU-{i}"))?,
            "199.00 USD".parse()?,
        );
        new.status = ProductStatus::Active;
        new.description = "A product with a description of realistic length. ".repeat(8);
        ids.push(engine.catalog.create_product(new).await?.id);
    }
    let cache = Arc::new(CachedCatalog::new(
        engine.catalog.clone(),
        redis.clone(),
        CacheConfig::default(),
    ));
    for id in &ids {
        cache.get_product(id).await?; // warm
    }
    let ids = Arc::new(ids);
    let concurrency = settings.concurrency_or(50);
    let result = run_closed_loop(concurrency, settings.seconds_or(10.0), move |task, i| {
        let (cache, ids) = (cache.clone(), ids.clone());
        async move {
            let id = &ids[(task * 7919 + i as usize * 31) % ids.len()];
            match cache.get_product(id).await {
                Ok(Some(_)) => Outcome::Ok,
                _ => Outcome::Error,
            }
        }
    })
    .await;
    redis.delete_all().await?;
    Ok(vec![
        result
            .report("product-read-cached", "redis")
            .field("products", n)
            .field("concurrency", concurrency),
    ])
}

async fn flash_sale(settings: Settings) -> BenchResult<Vec<Report>> {
    let redis = connect(&settings, "flash").await?;
    let engine = MemoryEngine::new();
    let units: u32 = 100;
    let buyers: u64 = if settings.quick { 10_000 } else { 100_000 };
    let sku = Sku::new("HOT-1")?;
    engine
        .inventory
        .restock(&sku, &LocationId::new("main")?, units, "flash sale")
        .await?;
    let gate = Arc::new(FlashSaleGate::new(
        redis.clone(),
        sku.clone(),
        Duration::from_secs(600),
    ));
    gate.reconcile(engine.inventory.as_ref()).await?;
    let concurrency = settings.concurrency_or(100);
    let per_task = buyers.div_ceil(concurrency as u64);
    let attempts = Arc::new(AtomicU64::new(0));
    let orders = Arc::new(AtomicU64::new(0));
    let inventory: Arc<dyn InventoryStore> = engine.inventory.clone();
    let (a, o) = (attempts.clone(), orders.clone());
    let result = run_until(
        concurrency,
        Duration::from_secs(600),
        Some(per_task),
        move |task, i| {
            let (gate, inventory, sku, attempts, orders) = (
                gate.clone(),
                inventory.clone(),
                sku.clone(),
                a.clone(),
                o.clone(),
            );
            async move {
                if (task as u64) * per_task + i >= buyers {
                    return Outcome::Rejected; // past the 100,000th buyer
                }
                let ticket = match gate.admit().await {
                    Ok(Some(t)) => t,
                    Ok(None) => return Outcome::Rejected,
                    Err(_) => return Outcome::Error,
                };
                attempts.fetch_add(1, Ordering::SeqCst);
                let request = ReservationRequest::new(OrderId::generate(), [(sku, 1)]);
                match inventory.reserve(&request).await {
                    Ok(_) => {
                        orders.fetch_add(1, Ordering::SeqCst);
                        match gate.complete(&ticket).await {
                            Ok(()) => Outcome::Ok,
                            Err(_) => Outcome::Error,
                        }
                    }
                    Err(_) => {
                        let _ = gate.give_back(&ticket).await;
                        Outcome::Rejected
                    }
                }
            }
        },
    )
    .await;
    let stock = engine.inventory.stock(&Sku::new("HOT-1")?).await?;
    let sold = stock.reserved() + stock.levels.iter().map(|l| l.sold).sum::<u64>();
    let oversold = sold.saturating_sub(u64::from(units))
        + orders
            .load(Ordering::SeqCst)
            .saturating_sub(u64::from(units));
    redis.delete_all().await?;
    Ok(vec![
        result
            .report("flash-sale", "redis-gate+memory-inventory")
            .field("buyers", buyers)
            .field(
                "buyers_per_sec",
                crate::harness::round1(
                    (result.ops + result.rejected) as f64 / result.elapsed.as_secs_f64().max(1e-9),
                ),
            )
            .field("units", units)
            .field("orders", orders.load(Ordering::SeqCst))
            .field("oversold", oversold)
            .field("inventory_attempts", attempts.load(Ordering::SeqCst))
            .field("concurrency", concurrency),
    ])
}
