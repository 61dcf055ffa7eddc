//! `promo-checkout`: what promotions cost the order path. Two phases in one run, on the
//! same stores: `orders` concurrent buyers each check out a one-line client cart and
//! run the order through `OrderPipeline::process` (reserve, charge on the in-memory
//! gateway, confirm, fulfilment) without promotions; then as many buyers again with an
//! automatic 5 % promotion (so every order holds a redemption: evaluate, reserve,
//! extend, confirm) and the code `RUSH` (5.00 off, 100 uses, a 500.00 budget) entered
//! by everyone. Each buyer's checkout is *resolved* when its order rests: paid
//! (PREPARING) or cancelled with a typed reason (the code's uses were gone). `ops_per_sec`
//! is the promotion phase's paid orders/s; `promo_resolved_per_sec` and
//! `plain_resolved_per_sec` count resolved checkouts, and `cost_ratio` = 1 - promo /
//! plain is taken from them (the same 10,000 checkouts in each phase).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use commerce_core::Error;
use commerce_core::id::{CustomerId, IdempotencyKey, PromotionId, Sku};
use commerce_core::money::{Currency, Money};
use commerce_core::order::OrderStatus;
use commerce_core::promotion::{
    Action, CodeBatch, CouponCode, Limits, Promotion, StackingPolicy, Target,
};
use commerce_core::service::{
    CheckoutConfig, CheckoutOutcome, CheckoutRequest, CheckoutService, ClientCart, ClientCartItem,
    MemoryFulfillment, MemoryNotifier, MemoryPaymentGateway, OrderPipeline, PipelineConfig,
};
use commerce_core::store::PromotionStore;

use super::order_path::{memory_stores, sku_of};
use super::postgres::{drop_schema, load_catalog, pool, seed_stock};
use crate::harness::{BenchResult, LoadResult, Outcome, Report, Settings, run_until};

const USES: u64 = 100;
const BUDGET_CENTS: i64 = 50_000;
const CODE_CENTS: i64 = 500;

/// Tallies of the promotion phase.
#[derive(Debug, Default)]
struct Tally {
    /// Orders paid with the code.
    with_code: AtomicU64,
    /// Orders cancelled because the code's last use went to another order.
    code_used_up: AtomicU64,
}

/// One phase: `orders` concurrent buyers, one order each.
async fn phase(
    checkout: CheckoutService,
    pipeline: Arc<OrderPipeline>,
    orders: usize,
    products: u64,
    tag: &'static str,
    codes: Vec<String>,
    tally: Arc<Tally>,
) -> LoadResult {
    let codes = Arc::new(codes);
    run_until(orders, Duration::from_secs(900), Some(1), move |task, _| {
        let (checkout, pipeline, codes, tally) = (
            checkout.clone(),
            pipeline.clone(),
            codes.clone(),
            tally.clone(),
        );
        async move {
            let run = async {
                let n = task as u64;
                let product = 1 + (n.wrapping_mul(2_654_435_761) % products);
                let cart = ClientCart {
                    items: vec![ClientCartItem {
                        sku: Sku::new(sku_of(product))?,
                        quantity: 1,
                        unit_price: None,
                    }],
                };
                let request = CheckoutRequest::client_cart(
                    CustomerId::new(format!("{tag}-buyer-{task}"))?,
                    cart,
                    IdempotencyKey::new(format!("{tag}-{task}"))?,
                )
                .with_codes(codes.iter().cloned());
                let order = match checkout.checkout(&request).await? {
                    CheckoutOutcome::Placed { order, .. } => order,
                    CheckoutOutcome::NeedsReview(_) => return Ok(Outcome::Rejected),
                };
                let done = pipeline.process(&order.id).await?;
                Ok::<_, Error>(match done.status {
                    OrderStatus::Preparing => {
                        if done.promotions.iter().any(|p| p.code.is_some()) {
                            tally.with_code.fetch_add(1, Ordering::Relaxed);
                        }
                        Outcome::Ok
                    }
                    _ => {
                        tally.code_used_up.fetch_add(1, Ordering::Relaxed);
                        Outcome::Rejected
                    }
                })
            };
            match run.await {
                Ok(o) => o,
                Err(e) => {
                    eprintln!("order failed: {e}");
                    Outcome::Error
                }
            }
        }
    })
    .await
}

pub(super) async fn promo_checkout(settings: Settings) -> BenchResult<Vec<Report>> {
    let backend = settings.backend_or("postgres").to_owned();
    let orders = settings.concurrency_or(if settings.quick { 500 } else { 10_000 });
    let products = settings.products_or(1_000, 100).max(1);
    let schema = format!("bench_promo_checkout_{}", std::process::id());
    let (stores, promotions, pg) = match backend.as_str() {
        "memory" => {
            let (engine, stores) = memory_stores(products).await?;
            let promotions: Arc<dyn PromotionStore> = engine.promotions.clone();
            (stores, promotions, None)
        }
        "postgres" => {
            let pool = pool(&settings, 32).await?;
            drop_schema(&settings, &schema).await?;
            let pg = load_catalog(&pool, &schema, products).await?;
            seed_stock(&pool, &schema, "P", "-1", products, 1_000_000).await?;
            let promotions: Arc<dyn PromotionStore> = pg.promotions.clone();
            (pg.stores(), promotions, Some(pool))
        }
        other => return Err(format!("promo-checkout: unknown backend {other:?}").into()),
    };
    let payments = Arc::new(MemoryPaymentGateway::new());
    let plain_pipeline = Arc::new(OrderPipeline::new(
        &stores,
        payments.clone(),
        Arc::new(MemoryFulfillment::new()),
        Arc::new(MemoryNotifier::new()),
        PipelineConfig::default(),
    ));
    let promo_pipeline = Arc::new(
        OrderPipeline::new(
            &stores,
            payments,
            Arc::new(MemoryFulfillment::new()),
            Arc::new(MemoryNotifier::new()),
            PipelineConfig::default(),
        )
        .with_promotions(promotions.clone()),
    );
    let plain_checkout = CheckoutService::new(&stores, CheckoutConfig::default());
    let promo_checkout = CheckoutService::new(&stores, CheckoutConfig::default())
        .with_promotions(promotions.clone(), StackingPolicy::BestForCustomer);

    let automatic = Promotion::new(
        PromotionId::new("auto5")?,
        "5 % off everything",
        Currency::USD,
        Action::PercentOff {
            percent: rust_decimal::Decimal::new(5, 0),
            target: Target::Order,
        },
    );
    promotions.create_promotion(&automatic).await?;
    let budget = Money::from_minor_units(BUDGET_CENTS, Currency::USD)?;
    let rush = Promotion::new(
        PromotionId::new("rush")?,
        "Black Friday rush",
        Currency::USD,
        Action::AmountOff {
            amount: Money::from_minor_units(CODE_CENTS, Currency::USD)?,
            target: Target::Order,
        },
    )
    .with_code()
    .with_limits(Limits {
        total_uses: Some(USES),
        uses_per_customer: Some(1),
        budget: Some(budget),
    });
    promotions.create_promotion(&rush).await?;
    promotions
        .add_codes(&rush.id, &CodeBatch::shared(CouponCode::parse("RUSH")?))
        .await?;

    let plain_tally = Arc::new(Tally::default());
    let plain = phase(
        plain_checkout,
        plain_pipeline,
        orders,
        products,
        "plain",
        Vec::new(),
        plain_tally,
    )
    .await;
    let tally = Arc::new(Tally::default());
    let promo = phase(
        promo_checkout,
        promo_pipeline,
        orders,
        products,
        "promo",
        vec!["RUSH".to_owned()],
        tally.clone(),
    )
    .await;

    let usage = promotions.usage(&rush.id).await?;
    let auto_usage = promotions.usage(&automatic.id).await?;
    let with_code = tally.with_code.load(Ordering::Relaxed);
    let over_redeemed = usage.confirmed_uses.saturating_sub(USES)
        + usage.uses.saturating_sub(USES)
        + with_code.saturating_sub(USES);
    let budget_exceeded_cents = (usage.spent.to_minor_units() - BUDGET_CENTS).max(0)
        + (usage.confirmed_spent.to_minor_units() - BUDGET_CENTS).max(0);
    let audit = stores.inventory.audit().await?;
    if let Some(pool) = pg {
        pool.close().await;
        drop_schema(&settings, &schema).await?;
    }
    let (plain_rate, promo_rate) = (plain.ops_per_sec(), promo.ops_per_sec());
    let resolved_rate =
        |r: &LoadResult| (r.ops + r.rejected) as f64 / r.elapsed.as_secs_f64().max(1e-9);
    let (plain_resolved, promo_resolved) = (resolved_rate(&plain), resolved_rate(&promo));
    let cost_ratio = if plain_resolved > 0.0 {
        1.0 - promo_resolved / plain_resolved
    } else {
        0.0
    };
    Ok(vec![
        promo
            .report("promo-checkout", &backend)
            .field(
                "path",
                "CheckoutService::checkout (automatic 5 % + code RUSH) -> OrderPipeline::process -> PREPARING",
            )
            .field("orders", orders)
            .field("products", products)
            .field("plain_orders_per_sec", crate::harness::round1(plain_rate))
            .field("plain_p50_ms", crate::harness::round3(plain.latencies.quantile_ms(0.5)))
            .field("plain_p99_ms", crate::harness::round3(plain.latencies.quantile_ms(0.99)))
            .field("plain_errors", plain.errors)
            .field("promo_orders_per_sec", crate::harness::round1(promo_rate))
            .field("plain_resolved_per_sec", crate::harness::round1(plain_resolved))
            .field("promo_resolved_per_sec", crate::harness::round1(promo_resolved))
            .field("cost_ratio", crate::harness::round3(cost_ratio))
            .field("uses_limit", USES)
            .field("budget", budget.to_string())
            .field("redeemed", usage.confirmed_uses)
            .field("orders_with_code", with_code)
            .field("redeemed_amount", usage.confirmed_spent.to_string())
            .field("cancelled_code_used_up", tally.code_used_up.load(Ordering::Relaxed))
            .field("automatic_redeemed", auto_usage.confirmed_uses)
            .field("over_redeemed", over_redeemed)
            .field("budget_exceeded", budget_exceeded_cents)
            .field("audit_violations", audit.len()),
    ])
}
