//! Checkout with tax and shipping, and partial returns end to end on PostgreSQL
//! (`DATABASE_URL`): the order's new fields stored and read back, the refund ledger
//! opened at payment, restock movements, keyed gateway refunds, the history, and 32
//! racing returns on a multi-thread runtime that never refund more than was paid.

mod common;

use std::sync::Arc;

use commerce_core::Error;
use commerce_core::address::{Address, AddressInput, CountryCode};
use commerce_core::catalog::{AttributeValue, CategoryPath, NewProduct, ProductStatus};
use commerce_core::id::{CustomerId, IdempotencyKey, LocationId, OrderId, SellerId, Sku};
use commerce_core::money::Money;
use commerce_core::order::{Order, OrderStatus};
use commerce_core::service::*;
use commerce_core::shipping::{Rate, ShippingMethod, ShippingZone, ZoneArea, ZoneShipping};
use commerce_core::store::{CatalogStoreExt, InventoryStore, OrderStore, RefundLedger};
use commerce_core::tax::{Jurisdiction, PriceMode, Rounding, RuleBasedTax, TaxClass, TaxRules};
use commerce_postgres::{PgCommerce, PgConfig, PgRefunds};
use rust_decimal::Decimal;

fn m(s: &str) -> Money {
    s.parse().unwrap()
}

fn berlin() -> Address {
    Address::new(AddressInput {
        name: "Erika Mustermann".into(),
        line1: "Heidestraße 17".into(),
        city: "Berlin".into(),
        postal_code: Some("10557".into()),
        country: "DE".into(),
        ..AddressInput::default()
    })
    .unwrap()
}

struct Shop {
    pg: PgCommerce,
    _guard: common::SchemaGuard,
    stores: Stores,
    ledger: Arc<PgRefunds>,
    payments: Arc<MemoryPaymentGateway>,
    pipeline: OrderPipeline,
    returns: ReturnsService,
    checkout: CheckoutService,
    mug: Sku,
    book: Sku,
}

async fn product(pg: &PgCommerce, sku: &str, price: &str, class: &str) -> Sku {
    let sku = Sku::new(sku).unwrap();
    let mut new = NewProduct::new(
        SellerId::new("seller").unwrap(),
        format!("Product {sku}"),
        CategoryPath::parse("Home > Kitchen").unwrap(),
        "Acme",
        sku.clone(),
        price.parse().unwrap(),
    );
    new.status = ProductStatus::Active;
    new.attributes
        .insert("tax_class".into(), AttributeValue::Text(class.into()));
    pg.catalog.create_product(new).await.unwrap();
    pg.inventory
        .restock(&sku, &LocationId::new("main").unwrap(), 100, "stock")
        .await
        .unwrap();
    sku
}

async fn shop(prefix: &str) -> Shop {
    let schema = common::fresh_schema(prefix);
    let guard = common::SchemaGuard(schema.clone());
    let pg = PgCommerce::connect(
        &common::database_url(),
        PgConfig::new().schema(schema).unwrap(),
    )
    .await
    .expect("PostgreSQL must run (bash scripts/test.sh)");
    pg.migrate().await.unwrap();
    let stores = pg.stores();
    let ledger = Arc::new(pg.refunds());
    let payments = Arc::new(MemoryPaymentGateway::new());
    let pipeline = OrderPipeline::new(
        &stores,
        payments.clone(),
        Arc::new(MemoryFulfillment::new()),
        Arc::new(MemoryNotifier::new()),
        PipelineConfig::default(),
    )
    .with_refunds(ledger.clone());
    let returns = ReturnsService::new(&stores, ledger.clone(), payments.clone());
    let tax = RuleBasedTax::new(
        TaxRules::new(
            Rounding::PerLine,
            vec![
                Jurisdiction::country(
                    "Germany",
                    CountryCode::parse("DE").unwrap(),
                    Decimal::new(19, 2),
                )
                .class_rate(TaxClass::reduced(), Decimal::new(7, 2)),
            ],
        )
        .unwrap(),
    );
    let rates = ZoneShipping::new(
        vec![ShippingZone {
            name: "Germany".into(),
            areas: vec![ZoneArea::country("DE").unwrap()],
            methods: vec![ShippingMethod::new(
                "dhl",
                "DHL Paket",
                Rate::Flat(m("4.90 EUR")),
            )],
        }],
        5000,
    )
    .unwrap();
    let checkout = CheckoutService::new(&stores, CheckoutConfig::default())
        .with_tax(Arc::new(tax), PriceMode::TaxInclusive)
        .with_shipping(Arc::new(rates));
    let mug = product(&pg, "MUG", "11.90 EUR", "standard").await;
    let book = product(&pg, "BOOK", "10.70 EUR", "reduced").await;
    Shop {
        pg,
        _guard: guard,
        stores,
        ledger,
        payments,
        pipeline,
        returns,
        checkout,
        mug,
        book,
    }
}

impl Shop {
    async fn shipped_order(&self, key: &str) -> Order {
        let request = CheckoutRequest::client_cart(
            CustomerId::new("c1").unwrap(),
            ClientCart {
                items: [(&self.mug, 3), (&self.book, 1)]
                    .into_iter()
                    .map(|(sku, q)| ClientCartItem {
                        sku: sku.clone(),
                        quantity: q,
                        unit_price: None,
                    })
                    .collect(),
            },
            IdempotencyKey::new(key).unwrap(),
        )
        .shipping_to(berlin(), Some("dhl"));
        let order = self.checkout.checkout(&request).await.unwrap();
        let order = order.order().unwrap().clone();
        let stored = self.pg.orders.get_order(&order.id).await.unwrap().unwrap();
        // (Timestamps come back in PostgreSQL's microseconds: compare the money.)
        assert_eq!(
            (&stored.checkout, &stored.lines, &stored.totals),
            (&order.checkout, &order.lines, &order.totals),
            "the order's addresses, option and line tax read back from PostgreSQL"
        );
        assert!(stored.checkout.shipping_address.is_some());
        let order = self.pipeline.process(&order.id).await.unwrap();
        assert_eq!(order.status, OrderStatus::Preparing);
        self.pipeline.mark_shipped(&order.id, "JJD1").await.unwrap()
    }

    fn ret(&self, order: &OrderId, key: &str, lines: &[(&Sku, u32)]) -> ReturnRequest {
        ReturnRequest {
            order_id: order.clone(),
            key: IdempotencyKey::new(key).unwrap(),
            lines: lines
                .iter()
                .map(|(sku, q)| ReturnLine {
                    sku: (*sku).clone(),
                    quantity: *q,
                })
                .collect(),
            disposition: Disposition::Restock {
                location: LocationId::new("main").unwrap(),
            },
            reason: "return".into(),
        }
    }

    async fn available(&self, sku: &Sku) -> u64 {
        self.stores.inventory.stock(sku).await.unwrap().available()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partial_returns_end_to_end() {
    let s = shop("ret").await;
    let order = s.shipped_order("k-1").await;
    let paid = s
        .ledger
        .paid(&order.id)
        .await
        .unwrap()
        .expect("opened at payment");
    assert_eq!(paid.total().unwrap(), order.totals.total);
    let before = s.available(&s.mug).await;
    let first = s
        .returns
        .process(&s.ret(&order.id, "r-1", &[(&s.mug, 1)]))
        .await
        .unwrap();
    assert_eq!(first.refund.total, m("11.90 EUR"));
    assert_eq!(first.order.status, OrderStatus::PartiallyRefunded);
    assert_eq!(s.available(&s.mug).await, before + 1);
    // Bad input writes nothing.
    assert!(matches!(
        s.returns
            .process(&s.ret(&order.id, "r-2", &[(&s.mug, 3)]))
            .await,
        Err(Error::Validation { .. })
    ));
    assert_eq!(s.ledger.refunds(&order.id).await.unwrap().len(), 1);
    let rest = s
        .returns
        .process(&s.ret(&order.id, "r-3", &[(&s.mug, 2), (&s.book, 1)]))
        .await
        .unwrap();
    assert_eq!(rest.refund.total, m("39.40 EUR"));
    assert_eq!(rest.order.status, OrderStatus::Refunded);
    let history: Vec<_> =
        s.pg.orders
            .history(&order.id)
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.to)
            .collect();
    assert_eq!(
        &history[history.len() - 3..],
        [
            OrderStatus::PartiallyRefunded,
            OrderStatus::PartiallyRefunded,
            OrderStatus::Refunded
        ]
    );
    let sum = s
        .payments
        .partial_refunds()
        .iter()
        .fold(m("0.00 EUR"), |a, r| a.checked_add(&r.amount).unwrap());
    assert_eq!(sum, order.totals.total);
    assert!(s.stores.inventory.audit().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_returns_never_refund_more_than_was_paid() {
    let s = Arc::new(shop("retrace").await);
    let order = s.shipped_order("k-race").await;
    let before = s.available(&s.mug).await;
    let mut tasks = Vec::new();
    for i in 0..32 {
        let s = s.clone();
        let id = order.id.clone();
        tasks.push(tokio::spawn(async move {
            let r = s.ret(&id, &format!("r-{i}"), &[(&s.mug, 1)]);
            s.returns.process(&r).await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(Error::Validation { .. }) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(ok, 3);
    let balance = s.ledger.balance(&order.id).await.unwrap().unwrap();
    assert_eq!(balance.lines[0].refunded_units, 3);
    let sum = s
        .payments
        .partial_refunds()
        .iter()
        .fold(m("0.00 EUR"), |a, r| a.checked_add(&r.amount).unwrap());
    assert_eq!(sum, balance.total_refunded);
    assert!(sum.amount() <= m("35.70 EUR").amount());
    assert_eq!(s.available(&s.mug).await, before + 3);
    assert_eq!(
        s.pg.orders
            .get_order(&order.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        OrderStatus::PartiallyRefunded
    );
}
