//! The fused checkout steps write what the separate store calls write.

mod common;

use std::sync::Arc;
use std::time::Duration;

use commerce_core::clock::ManualClock;
use commerce_core::event::DomainEvent;
use commerce_core::id::{CustomerId, EventId, IdempotencyKey, LocationId, ProductId, Sku};
use commerce_core::inventory::ReservationState;
use commerce_core::order::{NewOrder, NewOrderLine, OrderStatus};
use commerce_core::store::{EventLog, InventoryStore, OrderStore};
use commerce_core::testkit::StoreBuilder;
use commerce_core::{EntityKind, Error};

fn new_order(key: &str, lines: &[(&str, u32)]) -> NewOrder {
    NewOrder {
        id: None,
        customer_id: CustomerId::new("c1").unwrap(),
        idempotency_key: IdempotencyKey::new(key).unwrap(),
        lines: lines
            .iter()
            .map(|(s, q)| NewOrderLine {
                product_id: ProductId::new("p1").unwrap(),
                sku: Sku::new(*s).unwrap(),
                title: "Thing".into(),
                quantity: *q,
                unit_price: "5.00 USD".parse().unwrap(),
            })
            .collect(),
        shipping: "0.00 USD".parse().unwrap(),
        tax: "0.00 USD".parse().unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn place_and_pay_write_everything_atomically() {
    let b = common::PgBuilder::default();
    let pg = b.engine(Arc::new(ManualClock::default())).await.unwrap();
    let (a, bb) = (Sku::new("A").unwrap(), Sku::new("B").unwrap());
    let w = LocationId::new("w1").unwrap();
    pg.inventory.restock(&a, &w, 5, "in").await.unwrap();
    pg.inventory.restock(&bb, &w, 1, "in").await.unwrap();
    let ttl = Duration::from_secs(600);

    // out of stock: no order, nothing reserved
    let err = pg
        .checkout
        .place_order(new_order("k0", &[("A", 1), ("B", 2)]), ttl, "reserved")
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::OutOfStock { ref sku, requested: 2, available: 1 } if sku == "B"),
        "{err:?}"
    );
    assert!(
        pg.orders
            .get_order_by_key(&IdempotencyKey::new("k0").unwrap())
            .await
            .unwrap()
            .is_none()
    );

    let placed = pg
        .checkout
        .place_order(new_order("k1", &[("A", 2), ("B", 1)]), ttl, "reserved")
        .await
        .unwrap();
    assert!(placed.is_created());
    let order = placed.into_order();
    assert_eq!(
        (order.status, order.version),
        (OrderStatus::PaymentPending, 2)
    );
    let again = pg
        .checkout
        .place_order(new_order("k1", &[("A", 2), ("B", 1)]), ttl, "reserved")
        .await
        .unwrap();
    assert!(!again.is_created());
    assert_eq!(again.order().id, order.id);
    let r = pg.inventory.reservation(&order.id).await.unwrap().unwrap();
    assert_eq!(r.state, ReservationState::Active);
    assert_eq!(pg.inventory.stock(&a).await.unwrap().reserved(), 2);

    let paid = pg
        .checkout
        .complete_payment(&order.id, "pay-1", "paid")
        .await
        .unwrap();
    assert_eq!(paid.status, OrderStatus::PaymentConfirmed);
    assert_eq!(paid.payment_ref.as_deref(), Some("pay-1"));
    assert_eq!(paid.version, 3);
    let again = pg
        .checkout
        .complete_payment(&order.id, "pay-1", "paid")
        .await
        .unwrap_err();
    assert!(
        matches!(
            again,
            Error::Conflict {
                kind: EntityKind::Order,
                ..
            }
        ),
        "{again:?}"
    );
    let s = pg.inventory.stock(&a).await.unwrap();
    assert_eq!((s.available(), s.reserved(), s.sold()), (3, 0, 2));
    assert_eq!(
        pg.inventory
            .reservation(&order.id)
            .await
            .unwrap()
            .unwrap()
            .state,
        ReservationState::Confirmed
    );
    let history: Vec<_> = pg
        .orders
        .history(&order.id)
        .await
        .unwrap()
        .iter()
        .map(|h| h.to)
        .collect();
    assert_eq!(
        history,
        [
            OrderStatus::Created,
            OrderStatus::PaymentPending,
            OrderStatus::PaymentConfirmed
        ]
    );
    let kinds: Vec<&str> = pg
        .events
        .read(EventId(0), 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.event.kind())
        .collect::<Vec<_>>()
        .into_iter()
        .skip(2) // the two restocks
        .collect();
    assert_eq!(
        kinds,
        [
            "order_created",
            "reservation_changed",
            "order_status_changed",
            "reservation_changed",
            "order_status_changed"
        ]
    );
    let events = pg.events.read(EventId(0), 100).await.unwrap();
    assert!(matches!(
        &events[5].event,
        DomainEvent::ReservationChanged { state: ReservationState::Confirmed, skus, .. } if skus.len() == 2
    ));
    assert!(pg.inventory.audit().await.unwrap().is_empty());
    let unknown = pg
        .checkout
        .complete_payment(
            &commerce_core::id::OrderId::new("nope").unwrap(),
            "p",
            "paid",
        )
        .await
        .unwrap_err();
    assert!(unknown.is_not_found());
    b.teardown().await.unwrap();
}
