//! The checkout-with-promotions suite: [`CheckoutService`] and [`OrderPipeline`] built
//! [`with_promotions`](OrderPipeline::with_promotions) over the adapter's catalog,
//! inventory, orders, promotions (and fused steps, if it has them).
//!
//! Checks: checkout applies automatic promotions and codes, reports rejected codes,
//! and the order records what each promotion gave (line discounts summing to the
//! order's discount, total = subtotal - discount + shipping + tax); the pipeline
//! confirms the redemption with the payment; a code whose limit is used up cancels the
//! order with [`promotion_unavailable_reason`] and reserves no stock; a declined
//! payment releases the redemption; an expired redemption is released once by
//! concurrent reapers, which cancel its order and release its stock.
//!
//! Price lists: lists round-trip (an invalid one writes nothing), only those valid now
//! are listed, customer groups round-trip; a customer's cart snapshots and checkout
//! charges the price of their group's list, a guest the base price, a checkout in
//! another currency that currency's list, and a currency without a price is
//! `Unavailable`.
//!
//! Concurrency: 150 buyers race a code limited to 100 uses through checkout and the
//! pipeline; exactly 100 orders are paid with the discount, the rest are cancelled with
//! the typed reason, and the stock sold matches the paid orders.

use std::sync::Arc;
use std::time::Duration;

use super::builder::{Area, StoreBuilder};
use super::check::{concurrently, must};
use super::fixtures::{cust, key, loc, money, new_product, promotion_id, sku};
use super::runner::{Case, Ctx, Env, Settings, cases, run_one_area};
use crate::catalog::Slug;
use crate::memory::MemoryEngine;
use crate::money::{Currency, Money};
use crate::order::{Order, OrderStatus};
use crate::promotion::{
    Action, CodeBatch, CouponCode, Limits, Promotion, RedemptionState, RejectReason,
    StackingPolicy, Target, Unavailable,
};
use crate::service::{
    ChargeBehavior, CheckoutConfig, CheckoutOutcome, CheckoutRequest, CheckoutService, ClientCart,
    ClientCartItem, MemoryFulfillment, MemoryNotifier, MemoryPaymentGateway, OrderPipeline,
    PipelineConfig, ReservationReaper, Stores as ServiceStores,
};
use crate::store::steps::promotion_unavailable_reason;
use crate::store::{ComposedSteps, InventoryStoreExt};

/// Runs every checkout case against `builder`'s stores; panics listing the failed
/// cases.
pub async fn test_all<B: StoreBuilder>(builder: &B) {
    test_all_with(builder, &Settings::from_env()).await;
}

/// [`test_all`] with explicit [`Settings`].
pub async fn test_all_with<B: StoreBuilder>(builder: &B, settings: &Settings) {
    run_one_area(builder, settings, Area::Checkout, cases()).await;
}

pub(crate) fn cases() -> Vec<Case> {
    cases![
        checkout_records_promotions_and_payment_confirms_them,
        a_used_up_code_cancels_the_order_without_stock,
        a_declined_payment_releases_the_redemption,
        expired_redemptions_are_reaped_once_with_their_orders,
        a_rush_on_a_100_use_code_discounts_exactly_100_orders,
        price_lists_price_carts_and_checkout,
    ]
}

/// The services of one case.
struct Shop {
    stores: ServiceStores,
    checkout: CheckoutService,
    pipeline: Arc<OrderPipeline>,
    payments: Arc<MemoryPaymentGateway>,
}

/// Checkout (5.00 flat shipping, 10 % tax) and a pipeline with promotions, over the
/// case's stores (carts, queue and events, which these cases do not use, in memory).
fn shop(ctx: &Ctx) -> Shop {
    let spare = MemoryEngine::with_clock(ctx.clock.clone());
    let inventory = ctx.inventory();
    let orders = ctx.orders();
    let steps = ctx
        .stores
        .steps
        .clone()
        .unwrap_or_else(|| Arc::new(ComposedSteps::new(inventory.clone(), orders.clone())));
    let stores = ServiceStores {
        catalog: ctx.catalog(),
        carts: spare.carts.clone(),
        inventory,
        orders,
        events: ctx.stores.events.clone().unwrap_or(spare.events.clone()),
        queue: spare.queue.clone(),
        steps,
        clock: ctx.clock.clone(),
    };
    let config = CheckoutConfig {
        flat_shipping: rust_decimal::Decimal::new(500, 2),
        tax_rate: rust_decimal::Decimal::new(10, 2),
        ..CheckoutConfig::default()
    };
    let checkout = CheckoutService::new(&stores, config)
        .with_promotions(ctx.promotions(), StackingPolicy::BestForCustomer);
    let payments = Arc::new(MemoryPaymentGateway::new());
    let pipeline = OrderPipeline::new(
        &stores,
        payments.clone(),
        Arc::new(MemoryFulfillment::new()),
        Arc::new(MemoryNotifier::new()),
        PipelineConfig {
            step_retry: crate::store::RetryPolicy {
                max_attempts: 5,
                base_delay: Duration::from_millis(5),
                max_delay: Duration::from_millis(100),
            },
            ..PipelineConfig::default()
        },
    )
    .with_promotions(ctx.promotions());
    Shop {
        stores,
        checkout,
        pipeline: Arc::new(pipeline),
        payments,
    }
}

/// A product `P-<sku>` with one variant at 10.00 USD and `units` in stock.
async fn stocked(ctx: &Ctx, s: &str, units: u32) {
    let slug = Slug::new(format!("p-{}", s.to_lowercase()))
        .unwrap_or_else(|e| panic!("test slug for {s}: {e}"));
    let mut product = new_product(&format!("P-{s}"), s, "Gear", &[s]);
    product.status = crate::catalog::ProductStatus::Active;
    must!(
        ctx.catalog().insert_product(product, slug).await,
        "insert_product({s})"
    );
    must!(
        ctx.inventory()
            .restock(&sku(s), &loc("wh-1"), units, "stock")
            .await,
        "restock({s})"
    );
}

/// A code promotion taking `amount` off the order, with the shared code `code`.
async fn coupon(ctx: &Ctx, id: &str, code: &str, amount: &str, total_uses: Option<u64>) {
    let p = Promotion::new(
        promotion_id(id),
        format!("{amount} off"),
        Currency::USD,
        Action::AmountOff {
            amount: money(amount),
            target: Target::Order,
        },
    )
    .with_code()
    .with_limits(Limits {
        total_uses,
        ..Limits::default()
    });
    must!(
        ctx.promotions().create_promotion(&p).await,
        "create_promotion({id})"
    );
    let code = CouponCode::parse(code).unwrap_or_else(|e| panic!("test code {code}: {e}"));
    must!(
        ctx.promotions()
            .add_codes(&p.id, &CodeBatch::shared(code))
            .await,
        "add_codes({id})"
    );
}

fn cart(lines: &[(&str, u32)]) -> ClientCart {
    ClientCart {
        items: lines
            .iter()
            .map(|(s, q)| ClientCartItem {
                sku: sku(s),
                quantity: *q,
                unit_price: None,
            })
            .collect(),
    }
}

fn request(customer: &str, k: &str, lines: &[(&str, u32)], codes: &[&str]) -> CheckoutRequest {
    CheckoutRequest::client_cart(cust(customer), cart(lines), key(k)).with_codes(codes.to_vec())
}

async fn place(shop: &Shop, r: &CheckoutRequest) -> (Order, Vec<crate::promotion::RejectedCode>) {
    match must!(
        shop.checkout.checkout(r).await,
        "checkout({})",
        r.idempotency_key
    ) {
        CheckoutOutcome::Placed {
            order,
            rejected_codes,
            ..
        } => (order, rejected_codes),
        CheckoutOutcome::NeedsReview(review) => {
            panic!("checkout({}): needs review: {review:?}", r.idempotency_key)
        }
    }
}

/// The order's money adds up: line discounts sum to the order's discount and to what
/// its promotions gave the lines; total = subtotal - discount + shipping + tax >= 0.
fn assert_adds_up(order: &Order) {
    let c = order.currency();
    let lines = Money::try_sum(c, order.lines.iter().map(|l| &l.discount))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        lines, order.totals.discount,
        "line discounts vs order discount"
    );
    let given = Money::try_sum(
        c,
        order
            .promotions
            .iter()
            .flat_map(|p| p.lines.iter().map(|l| &l.amount)),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        given, order.totals.discount,
        "promotions' line parts vs order discount"
    );
    let t = &order.totals;
    let total = t
        .subtotal
        .checked_sub(&t.discount)
        .and_then(|m| m.checked_add(&t.shipping))
        .and_then(|m| m.checked_add(&t.tax))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        total, t.total,
        "total = subtotal - discount + shipping + tax"
    );
    assert!(!t.total.is_negative(), "negative total {}", t.total);
}

async fn last_reason(shop: &Shop, order: &Order) -> String {
    let history = must!(shop.stores.orders.history(&order.id).await, "history");
    history.last().map(|c| c.reason.clone()).unwrap_or_default()
}

async fn checkout_records_promotions_and_payment_confirms_them(env: Env<'_>) {
    let ctx = env.ctx().await;
    stocked(&ctx, "MUG", 10).await;
    stocked(&ctx, "CAP", 10).await;
    let auto = Promotion::new(
        promotion_id("auto10"),
        "10% off everything",
        Currency::USD,
        Action::PercentOff {
            percent: rust_decimal::Decimal::new(10, 0),
            target: Target::Order,
        },
    );
    must!(
        ctx.promotions().create_promotion(&auto).await,
        "create auto"
    );
    coupon(&ctx, "save5", "SAVE5", "5.00 USD", Some(10)).await;
    let shop = shop(&ctx);
    let r = request("c1", "k1", &[("MUG", 2), ("CAP", 1)], &["save5", "NOPE-1"]);
    let (order, rejected) = place(&shop, &r).await;
    // 30.00; 10 % = 3.00, then 5.00: 8.00 off; tax 10 % of 22.00; shipping 5.00.
    assert_eq!(order.totals.subtotal, money("30.00 USD"));
    assert_eq!(order.totals.discount, money("8.00 USD"));
    assert_eq!(order.totals.tax, money("2.20 USD"));
    assert_eq!(order.totals.total, money("29.20 USD"));
    assert_eq!(order.promotions.len(), 2, "{:?}", order.promotions);
    assert_eq!(
        order
            .promotions
            .iter()
            .find(|p| p.code.is_some())
            .map(|p| p.promotion_id.as_str()),
        Some("save5")
    );
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0].code, "NOPE-1");
    assert_eq!(rejected[0].reason, RejectReason::Unknown);
    assert_adds_up(&order);
    let stored = must!(shop.stores.orders.get_order(&order.id).await, "get_order")
        .unwrap_or_else(|| panic!("order {} not stored", order.id));
    assert_eq!(stored.promotions, order.promotions, "stored promotions");
    assert_eq!(stored.lines, order.lines, "stored lines");
    assert_eq!(stored.totals, order.totals, "stored totals");
    // A retry of the checkout returns the same order and holds nothing more.
    let (again, _) = place(&shop, &r).await;
    assert_eq!(again.id, order.id);

    let done = must!(shop.pipeline.process(&order.id).await, "process");
    assert_eq!(
        done.status,
        OrderStatus::Preparing,
        "{:?}",
        last_reason(&shop, &done).await
    );
    let capture = shop
        .payments
        .capture_for(&order.id)
        .unwrap_or_else(|| panic!("no capture"));
    assert_eq!(
        capture.amount,
        money("29.20 USD"),
        "charged the discounted total"
    );
    let held = must!(ctx.promotions().redemption(&order.id).await, "redemption")
        .unwrap_or_else(|| panic!("no redemption for {}", order.id));
    assert_eq!(held.state, RedemptionState::Confirmed);
    // What each promotion gave (lines and shipping) is what the redemption holds.
    let usage = must!(
        ctx.promotions().usage(&promotion_id("save5")).await,
        "usage"
    );
    assert_eq!((usage.uses, usage.confirmed_uses), (1, 1));
    assert_eq!(usage.confirmed_spent, money("5.00 USD"));
    let usage = must!(
        ctx.promotions().usage(&promotion_id("auto10")).await,
        "usage"
    );
    assert_eq!(usage.confirmed_spent, money("3.00 USD"));
    // Processing again changes nothing.
    must!(shop.pipeline.process(&order.id).await, "process again");
    let usage = must!(
        ctx.promotions().usage(&promotion_id("save5")).await,
        "usage"
    );
    assert_eq!((usage.uses, usage.confirmed_uses), (1, 1));
}

async fn a_used_up_code_cancels_the_order_without_stock(env: Env<'_>) {
    let ctx = env.ctx().await;
    stocked(&ctx, "MUG", 10).await;
    coupon(&ctx, "once", "ONCE", "2.00 USD", Some(1)).await;
    let shop = shop(&ctx);
    // Both checkouts see the code available; only one order can hold it.
    let (first, _) = place(&shop, &request("c1", "k1", &[("MUG", 1)], &["ONCE"])).await;
    let (second, _) = place(&shop, &request("c2", "k2", &[("MUG", 3)], &["ONCE"])).await;
    assert_eq!(first.totals.discount, money("2.00 USD"));
    assert_eq!(second.totals.discount, money("2.00 USD"));
    let first = must!(shop.pipeline.process(&first.id).await, "process first");
    assert_eq!(first.status, OrderStatus::Preparing);
    let second = must!(shop.pipeline.process(&second.id).await, "process second");
    assert_eq!(second.status, OrderStatus::Cancelled);
    assert_eq!(
        last_reason(&shop, &second).await,
        promotion_unavailable_reason("once", Unavailable::TotalUses)
    );
    assert!(
        must!(
            shop.stores.inventory.reservation(&second.id).await,
            "reservation"
        )
        .is_none(),
        "a cancelled order reserved stock"
    );
    assert!(must!(ctx.promotions().redemption(&second.id).await, "redemption").is_none());
    assert_eq!(
        must!(
            shop.stores.inventory.available(&sku("MUG")).await,
            "available"
        ),
        9
    );
    assert!(shop.payments.capture_for(&second.id).is_none(), "charged");
    // The next checkout is told the code is used up.
    let (third, rejected) = place(&shop, &request("c3", "k3", &[("MUG", 1)], &["ONCE"])).await;
    assert!(third.promotions.is_empty());
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].reason, RejectReason::LimitReached);
}

async fn a_declined_payment_releases_the_redemption(env: Env<'_>) {
    let ctx = env.ctx().await;
    stocked(&ctx, "MUG", 10).await;
    coupon(&ctx, "once", "ONCE", "2.00 USD", Some(1)).await;
    let shop = shop(&ctx);
    shop.payments
        .script([ChargeBehavior::Decline("card declined".into())]);
    let (order, _) = place(&shop, &request("c1", "k1", &[("MUG", 1)], &["ONCE"])).await;
    let done = must!(shop.pipeline.process(&order.id).await, "process");
    assert_eq!(done.status, OrderStatus::Cancelled);
    let held = must!(ctx.promotions().redemption(&order.id).await, "redemption")
        .unwrap_or_else(|| panic!("no redemption"));
    assert_eq!(held.state, RedemptionState::Released);
    let usage = must!(ctx.promotions().usage(&promotion_id("once")).await, "usage");
    assert_eq!(usage.uses, 0, "the use came back");
    // Cleaning up again gives nothing back twice.
    must!(shop.pipeline.process(&order.id).await, "process again");
    assert_eq!(
        must!(ctx.promotions().usage(&promotion_id("once")).await, "usage").uses,
        0
    );
    // The use is there for the next buyer.
    let (next, _) = place(&shop, &request("c2", "k2", &[("MUG", 1)], &["ONCE"])).await;
    let next = must!(shop.pipeline.process(&next.id).await, "process next");
    assert_eq!(next.status, OrderStatus::Preparing);
    assert_eq!(next.totals.discount, money("2.00 USD"));
}

async fn expired_redemptions_are_reaped_once_with_their_orders(env: Env<'_>) {
    let ctx = env.ctx().await;
    stocked(&ctx, "MUG", 10).await;
    coupon(&ctx, "once", "ONCE", "2.00 USD", Some(1)).await;
    let shop = shop(&ctx);
    // The gateway keeps failing: the order waits in PAYMENT_PENDING.
    shop.payments.set_default(ChargeBehavior::Fail);
    let (order, _) = place(&shop, &request("c1", "k1", &[("MUG", 2)], &["ONCE"])).await;
    assert!(
        shop.pipeline.process(&order.id).await.is_err(),
        "the gateway fails"
    );
    let pending = must!(shop.stores.orders.get_order(&order.id).await, "get_order")
        .unwrap_or_else(|| panic!("gone"));
    assert_eq!(pending.status, OrderStatus::PaymentPending);
    assert_eq!(
        must!(ctx.promotions().usage(&promotion_id("once")).await, "usage").uses,
        1
    );
    ctx.advance(Duration::from_secs(24 * 60 * 60));
    shop.payments.set_default(ChargeBehavior::Approve);
    let reapers: Vec<_> = (0..4)
        .map(|_| {
            ReservationReaper::new(&shop.stores, shop.pipeline.clone())
                .with_promotions(ctx.promotions())
        })
        .collect();
    let reapers = Arc::new(reapers);
    let reports = concurrently(4, |i| {
        let reapers = reapers.clone();
        async move { reapers[i].run_once().await }
    })
    .await;
    let mut redemptions = 0;
    for r in reports {
        redemptions += must!(r, "run_once").redemptions_released;
    }
    assert_eq!(redemptions, 1, "released exactly once");
    let done = must!(shop.stores.orders.get_order(&order.id).await, "get_order")
        .unwrap_or_else(|| panic!("gone"));
    assert_eq!(done.status, OrderStatus::Cancelled);
    assert_eq!(
        must!(ctx.promotions().usage(&promotion_id("once")).await, "usage").uses,
        0
    );
    assert_eq!(
        must!(
            shop.stores.inventory.available(&sku("MUG")).await,
            "available"
        ),
        10
    );
}

async fn a_rush_on_a_100_use_code_discounts_exactly_100_orders(env: Env<'_>) {
    const BUYERS: usize = 150;
    let ctx = env.ctx().await;
    stocked(&ctx, "MUG", 1000).await;
    coupon(&ctx, "bf100", "BF100", "3.00 USD", Some(100)).await;
    let shop = Arc::new(shop(&ctx));
    let results = concurrently(BUYERS, |i| {
        let shop = shop.clone();
        async move {
            let r = request(
                &format!("c{i}"),
                &format!("k{i}"),
                &[("MUG", 1)],
                &["BF100"],
            );
            let (order, _) = place(&shop, &r).await;
            let done = shop.pipeline.process(&order.id).await;
            (order, done)
        }
    })
    .await;
    let mut paid_with = 0;
    let mut paid_without = 0;
    let mut sold = 0;
    for (placed, done) in results {
        let done = must!(done, "process({})", placed.id);
        match done.status {
            OrderStatus::Preparing => {
                sold += 1;
                assert_adds_up(&done);
                if done.promotions.is_empty() {
                    paid_without += 1;
                } else {
                    assert_eq!(done.totals.discount, money("3.00 USD"));
                    paid_with += 1;
                }
            }
            OrderStatus::Cancelled => {
                assert_eq!(
                    last_reason(&shop, &done).await,
                    promotion_unavailable_reason("bf100", Unavailable::TotalUses)
                );
            }
            other => panic!("order {} ended {other}", done.id),
        }
    }
    assert_eq!(paid_with, 100, "orders paid with the code");
    let usage = must!(
        ctx.promotions().usage(&promotion_id("bf100")).await,
        "usage"
    );
    assert_eq!((usage.uses, usage.confirmed_uses), (100, 100));
    assert_eq!(usage.confirmed_spent, money("300.00 USD"));
    assert_eq!(
        must!(
            shop.stores.inventory.available(&sku("MUG")).await,
            "available"
        ),
        1000 - sold,
        "stock sold matches the paid orders ({paid_without} without the code)"
    );
}

async fn price_lists_price_carts_and_checkout(env: Env<'_>) {
    use std::collections::BTreeMap;

    use crate::cart::{CartLimits, CartOwner};
    use crate::id::{CartId, CustomerGroupId, PriceListId};
    use crate::service::{CartService, LineIssue};

    let ctx = env.ctx().await;
    stocked(&ctx, "MUG", 10).await;
    let lists = ctx.price_lists();
    let now = ctx.now();
    let vip = CustomerGroupId::new("vip").unwrap_or_else(|e| panic!("{e}"));
    let list = |id: &str, currency: Currency, group: Option<&CustomerGroupId>, price: &str| {
        crate::promotion::PriceList {
            id: PriceListId::new(id).unwrap_or_else(|e| panic!("{e}")),
            currency,
            customer_group: group.cloned(),
            priority: 0,
            starts_at: None,
            ends_at: None,
            prices: BTreeMap::from([(sku("MUG"), money(price))]),
        }
    };
    let vip_usd = list("vip-usd", Currency::USD, Some(&vip), "8.00 USD");
    let eur = list("eur", Currency::EUR, None, "9.50 EUR");
    let mut ended = list("ended", Currency::USD, None, "1.00 USD");
    ended.starts_at = Some(now - chrono::Duration::hours(2));
    ended.ends_at = Some(now - chrono::Duration::hours(1));
    for l in [&vip_usd, &eur, &ended] {
        must!(lists.put_price_list(l).await, "put_price_list({})", l.id);
    }
    let mut bad = list("bad", Currency::USD, None, "1.00 USD");
    bad.prices.insert(sku("CAP"), money("2.00 EUR"));
    assert!(
        lists.put_price_list(&bad).await.is_err(),
        "a price in another currency"
    );
    let active = must!(lists.active_price_lists(now).await, "active_price_lists");
    assert_eq!(
        active,
        vec![eur.clone(), vip_usd.clone()],
        "valid now, by id"
    );
    let buyer = cust("c-vip");
    must!(
        lists
            .set_customer_groups(&buyer, &[vip.clone(), vip.clone()])
            .await,
        "set_customer_groups"
    );
    assert_eq!(
        must!(lists.customer_groups(&buyer).await, "customer_groups"),
        vec![vip.clone()]
    );
    assert!(must!(lists.customer_groups(&cust("nobody")).await, "groups").is_empty());

    let shop = shop(&ctx);
    // The cart snapshots the resolved price: the group's for its customer, the base
    // price for a guest.
    let carts =
        CartService::new(&shop.stores, CartLimits::default()).with_price_lists(lists.clone(), None);
    let owner = CartOwner::Customer(buyer.clone());
    let id = CartId::for_customer(&buyer);
    let cart = must!(carts.add(&id, &owner, &sku("MUG"), 2).await, "add");
    assert_eq!(cart.items[0].unit_price, money("8.00 USD"));
    let guest = CartId::new_guest();
    let cart = must!(
        carts.add(&guest, &CartOwner::Guest, &sku("MUG"), 1).await,
        "add"
    );
    assert_eq!(cart.items[0].unit_price, money("10.00 USD"));
    let review = must!(carts.revalidate(&id, &owner).await, "revalidate");
    assert!(review.is_ok(), "{review:?}");

    // Checkout charges the same resolved prices.
    let checkout = CheckoutService::new(&shop.stores, CheckoutConfig::default())
        .with_price_lists(lists.clone());
    let from_cart = CheckoutRequest::server_cart(buyer.clone(), id, owner, key("pl-1"));
    let placed = match must!(checkout.checkout(&from_cart).await, "checkout") {
        CheckoutOutcome::Placed { order, .. } => order,
        other => panic!("expected an order, got {other:?}"),
    };
    assert_eq!(placed.lines[0].unit_price, money("8.00 USD"));
    assert_eq!(placed.totals.subtotal, money("16.00 USD"));
    let plain = request("c-plain", "pl-2", &[("MUG", 1)], &[]);
    let placed = match must!(checkout.checkout(&plain).await, "checkout") {
        CheckoutOutcome::Placed { order, .. } => order,
        other => panic!("expected an order, got {other:?}"),
    };
    assert_eq!(placed.totals.subtotal, money("10.00 USD"));
    let mut in_eur = request("c-eu", "pl-3", &[("MUG", 2)], &[]);
    in_eur.currency = Some(Currency::EUR);
    let placed = match must!(checkout.checkout(&in_eur).await, "checkout") {
        CheckoutOutcome::Placed { order, .. } => order,
        other => panic!("expected an order, got {other:?}"),
    };
    assert_eq!(placed.totals.subtotal, money("19.00 EUR"));
    assert_eq!(placed.currency(), Currency::EUR);
    let mut in_gbp = request("c-uk", "pl-4", &[("MUG", 1)], &[]);
    in_gbp.currency = Some(Currency::GBP);
    match must!(checkout.checkout(&in_gbp).await, "checkout") {
        CheckoutOutcome::NeedsReview(r) => {
            assert_eq!(r.lines[0].issues, vec![LineIssue::Unavailable]);
        }
        other => panic!("expected a review, got {other:?}"),
    }
}
