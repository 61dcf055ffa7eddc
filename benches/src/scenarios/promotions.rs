//! `promo-rush`: thousands of orders race to redeem one coupon code limited to 100 uses
//! and a budget, straight against the promotion store.
//!
//! `promo-checkout`: the same race through `CheckoutService::checkout` and
//! `OrderPipeline::process` (reserve stock and redemption, charge, confirm both), after
//! a plain phase of as many checkouts without promotions in the same run: reports both
//! orders/s and the promotions' cost (`cost_ratio` = 1 - promo / plain).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use commerce_core::Error;
use commerce_core::clock::{Clock, SystemClock};
use commerce_core::id::{CustomerId, OrderId, PromotionId};
use commerce_core::memory::MemoryPromotions;
use commerce_core::money::{Currency, Money};
use commerce_core::promotion::{
    Action, CodeBatch, CouponCode, Limits, Promotion, RedemptionLine, RedemptionRequest, Target,
};
use commerce_core::store::PromotionStore;
use commerce_postgres::sqlx::{self, PgPool};
use commerce_postgres::{PgCommerce, PgConfig};
use futures::FutureExt;

use super::Scenario;
use crate::harness::{BenchResult, Outcome, Report, Settings, run_until};

pub(super) fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "promo-rush",
            about: "10,000 concurrent redemption reservations on one code with 100 uses and a budget \
                    (promotion store only, no checkout), postgres or --backend memory",
            run: |s| promo_rush(s).boxed(),
        },
        Scenario {
            name: "promo-checkout",
            about: "10,000 concurrent checkouts + pipeline without promotions, then 10,000 with an \
                    automatic promotion and one code with 100 uses and a budget; orders/s of both \
                    and the cost ratio, postgres or --backend memory",
            run: |s| super::promo_checkout::promo_checkout(s).boxed(),
        },
    ]
}

const USES: u64 = 100;
/// 550.00 USD: 100 discounts of 1.00 to 9.99 average about 550.00, so depending on who
/// wins the race either the uses or the budget run out first.
const BUDGET_CENTS: i64 = 55_000;

fn q(sql: String) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(sql)
}

/// What the order of task `i` does after its reservation succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Payment confirmed.
    Confirm,
    /// Payment failed: released at once.
    Release,
    /// The shopper vanished: a reaper releases it when its 1 s TTL ends.
    Abandon,
}

fn fate(i: usize) -> Fate {
    match i % 20 {
        0 => Fate::Release,
        1 => Fate::Abandon,
        _ => Fate::Confirm,
    }
}

/// A discount of 1.00 to 9.99 USD, spread over the tasks.
fn discount_cents(i: usize) -> i64 {
    100 + (i as i64 * 7919) % 900
}

async fn promo_rush(settings: Settings) -> BenchResult<Vec<Report>> {
    let backend = settings.backend_or("postgres").to_owned();
    let orders = settings.concurrency_or(if settings.quick { 500 } else { 10_000 });
    // Per process, so two runs on one server do not drop each other's schema.
    let schema = format!("bench_promo_rush_{}", std::process::id());
    let (store, pg): (Arc<dyn PromotionStore>, Option<(PgPool, PgCommerce)>) = match backend
        .as_str()
    {
        "memory" => (Arc::new(MemoryPromotions::new(Arc::new(SystemClock))), None),
        "postgres" => {
            let url = settings.require_database_url()?;
            let (opts, connect) = PgConfig::new()
                .max_connections(32)
                .acquire_timeout(Duration::from_secs(120))
                .pool_for(url)?;
            let pool = opts.connect_with(connect).await?;
            sqlx::query(q(format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")))
                .execute(&pool)
                .await?;
            let pg = PgCommerce::from_pool(pool.clone(), PgConfig::new().schema(schema.as_str())?);
            pg.migrate().await?;
            (pg.promotions.clone(), Some((pool, pg)))
        }
        other => return Err(format!("promo-rush runs on postgres or memory, not {other}").into()),
    };

    let promotion_id = PromotionId::new("rush")?;
    let code = CouponCode::parse("RUSH")?;
    let budget = Money::from_minor_units(BUDGET_CENTS, Currency::USD)?;
    let promotion = Promotion::new(
        promotion_id.clone(),
        "Black Friday rush",
        Currency::USD,
        Action::AmountOff {
            amount: Money::from_minor_units(999, Currency::USD)?,
            target: Target::Order,
        },
    )
    .with_code()
    .with_limits(Limits {
        total_uses: Some(USES),
        uses_per_customer: Some(1),
        budget: Some(budget),
    });
    store.create_promotion(&promotion).await?;
    store
        .add_codes(&promotion_id, &CodeBatch::shared(code.clone()))
        .await?;

    // A reaper releases abandoned redemptions while the rush runs, as in production.
    let running = Arc::new(AtomicBool::new(true));
    let reaped = Arc::new(AtomicU64::new(0));
    let reaper = {
        let (store, running, reaped) = (store.clone(), running.clone(), reaped.clone());
        tokio::spawn(async move {
            while running.load(Ordering::Relaxed) {
                if let Ok(r) = store.release_expired(SystemClock.now(), 100).await {
                    reaped.fetch_add(r.len() as u64, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    let confirmed = Arc::new(AtomicU64::new(0));
    let released = Arc::new(AtomicU64::new(0));
    let abandoned = Arc::new(AtomicU64::new(0));
    let (c2, r2, a2) = (confirmed.clone(), released.clone(), abandoned.clone());
    let op_store = store.clone();
    let result = run_until(orders, Duration::from_secs(600), Some(1), move |task, _| {
        let store = op_store.clone();
        let (confirmed, released, abandoned) = (c2.clone(), r2.clone(), a2.clone());
        let promotion_id = promotion_id.clone();
        let code = code.clone();
        async move {
            let Ok(order_id) = OrderId::new(format!("rush-{task:06}")) else {
                return Outcome::Error;
            };
            let Ok(customer) = CustomerId::new(format!("shopper-{task}")) else {
                return Outcome::Error;
            };
            let Ok(amount) = Money::from_minor_units(discount_cents(task), Currency::USD) else {
                return Outcome::Error;
            };
            let Ok(total) = Money::from_minor_units(5_000, Currency::USD) else {
                return Outcome::Error;
            };
            let mut request = RedemptionRequest::new(
                order_id.clone(),
                Some(customer),
                total,
                vec![RedemptionLine {
                    promotion_id,
                    code: Some(code),
                    amount,
                }],
            );
            let fate = fate(task);
            if fate == Fate::Abandon {
                request.ttl = Duration::from_secs(1);
            }
            match store.reserve(&request).await {
                Ok(_) => {}
                Err(Error::PromotionUnavailable { .. }) => return Outcome::Rejected,
                Err(_) => return Outcome::Error,
            }
            let done = match fate {
                Fate::Confirm => store.confirm(&order_id).await.map(|_| &confirmed),
                Fate::Release => store
                    .release(&order_id, "payment failed")
                    .await
                    .map(|_| &released),
                Fate::Abandon => Ok(&abandoned),
            };
            match done {
                Ok(counter) => {
                    counter.fetch_add(1, Ordering::Relaxed);
                    Outcome::Ok
                }
                Err(_) => Outcome::Error,
            }
        }
    })
    .await;
    // Let the last abandoned redemptions expire and be reaped.
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    running.store(false, Ordering::Relaxed);
    let _ = reaper.await;
    let last = store.release_expired(SystemClock.now(), 1000).await?;
    reaped.fetch_add(last.len() as u64, Ordering::Relaxed);

    let usage = store.usage(&PromotionId::new("rush")?).await?;
    // Recount from the stored redemptions (PostgreSQL) instead of trusting the counters.
    let (held_uses, held_cents) = match &pg {
        Some((pool, _)) => {
            let row: (i64, Option<rust_decimal::Decimal>) = sqlx::query_as(q(format!(
                "SELECT count(*), sum(((l->'amount')->>'amount')::numeric * 100)
                   FROM \"{schema}\".promotion_redemptions r,
                        jsonb_array_elements(r.lines) l
                  WHERE r.state IN ('active', 'confirmed')"
            )))
            .fetch_one(pool)
            .await?;
            let cents = row
                .1
                .map(|d| i64::try_from(d.mantissa() / 10i128.pow(d.scale())).unwrap_or(i64::MAX))
                .unwrap_or(0);
            (row.0 as u64, cents)
        }
        None => (usage.uses, usage.spent.to_minor_units()),
    };
    let over_redeemed =
        held_uses.saturating_sub(USES) + confirmed.load(Ordering::Relaxed).saturating_sub(USES);
    let budget_exceeded_cents = (held_cents - BUDGET_CENTS).max(0)
        + (usage.confirmed_spent.to_minor_units() - BUDGET_CENTS).max(0);
    let counter_drift =
        held_uses.abs_diff(usage.uses) + held_cents.abs_diff(usage.spent.to_minor_units());
    if let Some((pool, _)) = pg {
        sqlx::query(q(format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")))
            .execute(&pool)
            .await?;
        pool.close().await;
    }
    Ok(vec![
        result
            .report("promo-rush", &backend)
            .field("orders", orders)
            .field(
                "attempts_per_sec",
                crate::harness::round1(
                    (result.ops + result.rejected + result.errors) as f64
                        / result.elapsed.as_secs_f64().max(1e-9),
                ),
            )
            .field("uses_limit", USES)
            .field("budget", budget.to_string())
            .field("redeemed", usage.confirmed_uses)
            .field("redeemed_amount", usage.confirmed_spent.to_string())
            .field("confirmed", confirmed.load(Ordering::Relaxed))
            .field("released_payment_failed", released.load(Ordering::Relaxed))
            .field("abandoned", abandoned.load(Ordering::Relaxed))
            .field("reaped", reaped.load(Ordering::Relaxed))
            .field("held_after", held_uses)
            .field("over_redeemed", over_redeemed)
            .field("budget_exceeded", budget_exceeded_cents)
            .field("counter_drift", counter_drift)
            .field("checkout", false),
    ])
}
