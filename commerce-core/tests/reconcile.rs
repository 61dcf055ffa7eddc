//! `reconcile`: clean after real checkouts through the pipeline, then each seeded
//! disagreement between orders, reservations and payments is reported, exactly.

use std::sync::Arc;
use std::time::Duration;

use commerce_core::cart::{CartLimits, CartOwner};
use commerce_core::catalog::{CategoryPath, NewProduct, ProductStatus};
use commerce_core::clock::{Clock, ManualClock};
use commerce_core::id::{CartId, CustomerId, IdempotencyKey, LocationId, OrderId, SellerId, Sku};
use commerce_core::inventory::ReservationState;
use commerce_core::memory::MemoryEngine;
use commerce_core::order::{Order, OrderStatus, Transition};
use commerce_core::service::*;
use commerce_core::store::CatalogStoreExt;

struct Shop {
    clock: Arc<ManualClock>,
    stores: Stores,
    payments: Arc<MemoryPaymentGateway>,
    sku: Sku,
}

async fn shop() -> Shop {
    let clock = Arc::new(ManualClock::new(ManualClock::EPOCH));
    let engine = MemoryEngine::with_clock(clock.clone());
    let stores = Stores::memory(&engine);
    let sku = Sku::new("PH-1").expect("sku");
    let mut phone = NewProduct::new(
        SellerId::new("s1").expect("seller"),
        "Phone",
        CategoryPath::parse("Electronics > Phones").expect("path"),
        "Acme",
        sku.clone(),
        "199.00 USD".parse().expect("price"),
    );
    phone.status = ProductStatus::Active;
    stores.catalog.create_product(phone).await.expect("product");
    stores
        .inventory
        .restock(&sku, &LocationId::new("main").expect("loc"), 10, "initial")
        .await
        .expect("restock");
    Shop {
        clock,
        stores,
        payments: Arc::new(MemoryPaymentGateway::new()),
        sku,
    }
}

impl Shop {
    /// A checkout by `who`; `pay` runs the pipeline (reserve, charge, confirm, prepare).
    async fn order(&self, who: &str, pay: bool) -> Order {
        let customer = CustomerId::new(who).expect("customer");
        let owner = CartOwner::Customer(customer.clone());
        let cart_id = CartId::for_customer(&customer);
        CartService::new(&self.stores, CartLimits::default())
            .add(&cart_id, &owner, &self.sku, 1)
            .await
            .expect("add");
        let request = CheckoutRequest::server_cart(
            customer,
            cart_id,
            owner,
            IdempotencyKey::new(format!("checkout-{who}")).expect("key"),
        );
        let order = match CheckoutService::new(&self.stores, CheckoutConfig::default())
            .checkout(&request)
            .await
            .expect("checkout")
        {
            CheckoutOutcome::Placed { order, .. } => order,
            CheckoutOutcome::NeedsReview(review) => panic!("{review:?}"),
        };
        if !pay {
            return order;
        }
        let pipeline = OrderPipeline::new(
            &self.stores,
            self.payments.clone(),
            Arc::new(MemoryFulfillment::new()),
            Arc::new(MemoryNotifier::new()),
            PipelineConfig::default(),
        );
        let order = pipeline.process(&order.id).await.expect("pipeline");
        assert_eq!(order.status, OrderStatus::Preparing);
        order
    }

    async fn report(&self, extra: &[Capture]) -> ReconcileReport {
        self.clock.advance(Duration::from_secs(1));
        let mut captures = self.payments.captures();
        captures.extend_from_slice(extra);
        reconcile(
            self.stores.orders.as_ref(),
            self.stores.inventory.as_ref(),
            &captures,
            self.clock.now(),
        )
        .await
        .expect("reconcile")
    }
}

#[tokio::test]
async fn real_orders_reconcile_clean() {
    let shop = shop().await;
    shop.order("alice", true).await;
    shop.order("bob", true).await;
    let report = shop.report(&[]).await;
    assert_eq!(report.orders_checked, 2);
    assert!(report.is_clean(), "{report:#?}");
}

#[tokio::test]
async fn each_seeded_disagreement_is_reported() {
    let shop = shop().await;
    shop.order("alice", true).await;
    // A paid order whose sold stock went back: no stock sold for it any more.
    let bob = shop.order("bob", true).await;
    shop.stores
        .inventory
        .return_stock(&bob.id, true, "seeded")
        .await
        .expect("return");
    // A cancelled order that kept a captured payment.
    let carol = shop.order("carol", false).await;
    shop.stores
        .orders
        .transition(
            &carol.id,
            &Transition::new(OrderStatus::Created, OrderStatus::Cancelled, "seeded"),
        )
        .await
        .expect("cancel");
    let kept = Capture {
        payment_ref: "pay-carol".into(),
        order_id: carol.id.clone(),
        amount: carol.totals.total,
        refunded: false,
    };
    // A payment for no order at all.
    let ghost = Capture {
        payment_ref: "pay-ghost".into(),
        order_id: OrderId::new("ghost").expect("id"),
        amount: carol.totals.total,
        refunded: false,
    };
    let report = shop.report(&[kept, ghost]).await;
    assert_eq!(report.orders_checked, 3);
    let expected = [
        Discrepancy::PaidWithoutSoldStock {
            order_id: bob.id.clone(),
            status: OrderStatus::Preparing,
            reservation: Some(ReservationState::Returned),
        },
        Discrepancy::CapturedOnClosedOrder {
            order_id: carol.id.clone(),
            status: OrderStatus::Cancelled,
            payment_ref: "pay-carol".into(),
            amount: carol.totals.total,
        },
        Discrepancy::CaptureWithoutOrder {
            order_id: OrderId::new("ghost").expect("id"),
            payment_ref: "pay-ghost".into(),
        },
    ];
    for d in &expected {
        assert!(
            report.discrepancies.contains(d),
            "missing {d:?} in {:#?}",
            report.discrepancies
        );
    }
    assert_eq!(
        report.discrepancies.len(),
        expected.len(),
        "and nothing else: {:#?}",
        report.discrepancies
    );
}

#[tokio::test]
async fn orders_still_in_flight_are_skipped() {
    let shop = shop().await;
    let before = shop.clock.now();
    let alice = shop.order("alice", false).await;
    let report = reconcile(
        shop.stores.orders.as_ref(),
        shop.stores.inventory.as_ref(),
        &[Capture {
            payment_ref: "pay-alice".into(),
            order_id: alice.id.clone(),
            amount: alice.totals.total,
            refunded: false,
        }],
        before,
    )
    .await
    .expect("reconcile");
    assert_eq!((report.orders_checked, report.orders_in_flight), (0, 1));
    assert!(
        report.is_clean(),
        "an in-flight order's capture is not an orphan: {report:#?}"
    );
}
