//! Checkout with tax and shipping for an address, and partial returns end to end on
//! the in-memory engine: the refund ledger opened at payment, restock, keyed gateway
//! refunds, the order's history, bad input, and racing returns on a multi-thread
//! runtime.

mod service_support;

use std::sync::Arc;

use commerce_core::Error;
use commerce_core::address::{Address, AddressInput, CountryCode};
use commerce_core::catalog::{AttributeValue, CategoryPath, NewProduct, ProductStatus};
use commerce_core::id::{CustomerId, IdempotencyKey, LocationId, OrderId, SellerId, Sku};
use commerce_core::memory::MemoryRefunds;
use commerce_core::order::{Order, OrderStatus};
use commerce_core::service::*;
use commerce_core::shipping::{
    Rate, ShippingMethod, ShippingZone, Weight, WeightBracket, ZoneArea, ZoneShipping,
};
use commerce_core::store::{CatalogStoreExt, RefundLedger};
use commerce_core::tax::{Jurisdiction, PriceMode, Rounding, RuleBasedTax, TaxClass, TaxRules};
use rust_decimal_macros::dec;
use service_support::*;

fn m(s: &str) -> commerce_core::money::Money {
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

fn tokyo() -> Address {
    Address::new(AddressInput {
        name: "Taro Yamada".into(),
        line1: "1-1 Chiyoda".into(),
        city: "Tokyo".into(),
        postal_code: Some("100-0001".into()),
        country: "JP".into(),
        ..AddressInput::default()
    })
    .unwrap()
}

/// Germany: 19 % standard, 7 % reduced, shipping taxed at the standard rate.
fn tax() -> Arc<RuleBasedTax> {
    Arc::new(RuleBasedTax::new(
        TaxRules::new(
            Rounding::PerLine,
            vec![
                Jurisdiction::country("Germany", CountryCode::parse("DE").unwrap(), dec!(0.19))
                    .class_rate(TaxClass::reduced(), dec!(0.07)),
            ],
        )
        .unwrap(),
    ))
}

/// Germany only: DHL by weight, express flat.
fn shipping() -> Arc<ZoneShipping> {
    Arc::new(
        ZoneShipping::new(
            vec![ShippingZone {
                name: "Germany".into(),
                areas: vec![ZoneArea::country("DE").unwrap()],
                methods: vec![
                    ShippingMethod::new(
                        "dhl",
                        "DHL Paket",
                        Rate::ByWeight(vec![
                            WeightBracket {
                                up_to: Weight::from_grams(2_000).unwrap(),
                                price: m("4.90 EUR"),
                            },
                            WeightBracket {
                                up_to: Weight::from_grams(10_000).unwrap(),
                                price: m("6.90 EUR"),
                            },
                        ]),
                    ),
                    ShippingMethod::new("express", "Express", Rate::Flat(m("14.90 EUR"))),
                ],
            }],
            5000,
        )
        .unwrap(),
    )
}

/// An active EUR product of weight `grams`, in `class`, with `stock` units at "main".
async fn product(f: &Fixture, sku: &str, price: &str, grams: u32, class: &str, stock: u32) -> Sku {
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
    new.variants[0].weight_grams = Some(grams);
    new.attributes.insert(
        TAX_CLASS_ATTRIBUTE.into(),
        AttributeValue::Text(class.into()),
    );
    f.stores.catalog.create_product(new).await.unwrap();
    f.restock(&sku, stock).await;
    sku
}

fn checkout(f: &Fixture) -> CheckoutService {
    CheckoutService::new(&f.stores, CheckoutConfig::default())
        .with_tax(tax(), PriceMode::TaxInclusive)
        .with_shipping(shipping())
}

fn request(key: &str, lines: &[(&Sku, u32)]) -> CheckoutRequest {
    CheckoutRequest::client_cart(
        CustomerId::new("c1").unwrap(),
        ClientCart {
            items: lines
                .iter()
                .map(|(sku, q)| ClientCartItem {
                    sku: (*sku).clone(),
                    quantity: *q,
                    unit_price: None,
                })
                .collect(),
        },
        IdempotencyKey::new(key).unwrap(),
    )
}

struct Shop {
    f: Fixture,
    ledger: Arc<MemoryRefunds>,
    pipeline: OrderPipeline,
    returns: ReturnsService,
    mug: Sku,
    book: Sku,
}

async fn shop() -> Shop {
    let f = Fixture::new();
    let ledger = Arc::new(MemoryRefunds::new(f.clock.clone()));
    let pipeline = OrderPipeline::new(
        &f.stores,
        f.payments.clone(),
        f.fulfillment.clone(),
        f.notifier.clone(),
        test_config(),
    )
    .with_refunds(ledger.clone());
    let returns = ReturnsService::new(&f.stores, ledger.clone(), f.payments.clone());
    let mug = product(&f, "MUG", "11.90 EUR", 400, "standard", 100).await;
    let book = product(&f, "BOOK", "10.70 EUR", 600, "reduced", 100).await;
    Shop {
        f,
        ledger,
        pipeline,
        returns,
        mug,
        book,
    }
}

impl Shop {
    /// 3 mugs and a book to Berlin by DHL, paid and shipped.
    async fn shipped_order(&self, key: &str) -> Order {
        let req =
            request(key, &[(&self.mug, 3), (&self.book, 1)]).shipping_to(berlin(), Some("dhl"));
        let order = match checkout(&self.f).checkout(&req).await.unwrap() {
            CheckoutOutcome::Placed { order, .. } => order,
            other => panic!("{other:?}"),
        };
        let order = self.pipeline.process(&order.id).await.unwrap();
        assert_eq!(order.status, OrderStatus::Preparing);
        self.pipeline
            .mark_shipped(&order.id, "JJD000")
            .await
            .unwrap()
    }

    fn ret(
        &self,
        order: &OrderId,
        key: &str,
        lines: &[(&Sku, u32)],
        d: Disposition,
    ) -> ReturnRequest {
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
            disposition: d,
            reason: "changed my mind".into(),
        }
    }
}

fn main_location() -> Disposition {
    Disposition::Restock {
        location: LocationId::new("main").unwrap(),
    }
}

#[tokio::test]
async fn checkout_offers_options_and_records_tax_per_line() {
    let s = shop().await;
    let req = request("k-preview", &[(&s.mug, 3), (&s.book, 1)]).shipping_to(berlin(), None);
    let preview = checkout(&s.f).preview(&req).await.unwrap();
    // 3 × 400 g + 600 g = 1.8 kg: DHL 4.90 (first bracket), express 14.90.
    let offered: Vec<_> = preview
        .options
        .iter()
        .map(|o| (o.method_id.as_str(), o.price.to_string()))
        .collect();
    assert_eq!(
        offered,
        [
            ("dhl", "4.90 EUR".to_owned()),
            ("express", "14.90 EUR".to_owned())
        ]
    );

    let order = match checkout(&s.f)
        .checkout(&req.clone().shipping_to(berlin(), Some("express")))
        .await
        .unwrap()
    {
        CheckoutOutcome::Placed { order, .. } => order,
        other => panic!("{other:?}"),
    };
    // Mugs 35.70 gross at 19 %: tax 35.70 × 19/119 = 5.70; book 10.70 at 7 %: 0.70;
    // express 14.90 at 19 %: 2.3789… → 2.38. Prices contain the tax: total 61.30.
    let taxes: Vec<_> = order
        .lines
        .iter()
        .map(|l| {
            let t = l.tax.as_ref().unwrap();
            (t.tax_class.as_str().to_owned(), t.tax.to_string())
        })
        .collect();
    assert_eq!(
        taxes,
        [
            ("standard".to_owned(), "5.70 EUR".to_owned()),
            ("reduced".to_owned(), "0.70 EUR".to_owned())
        ]
    );
    assert_eq!(order.totals.shipping, m("14.90 EUR"));
    assert_eq!(order.totals.tax, m("8.78 EUR"));
    assert_eq!(order.totals.total, m("61.30 EUR"));
    assert_eq!(
        order.checkout.shipping_option.as_ref().unwrap().method_id,
        "express"
    );
    assert_eq!(order.checkout.shipping_address, Some(berlin()));
    assert_eq!(order.checkout.billing_address, Some(berlin()));
    let stored = s.f.stores.orders.get_order(&order.id).await.unwrap();
    assert_eq!(stored.as_ref(), Some(&order));
    // Paying opens the ledger with what each line paid.
    let order = s.pipeline.process(&order.id).await.unwrap();
    let paid = s.ledger.paid(&order.id).await.unwrap().unwrap();
    assert_eq!(paid.lines[0].paid, m("35.70 EUR"));
    assert_eq!(paid.lines[0].tax, m("5.70 EUR"));
    assert_eq!(paid.shipping, m("14.90 EUR"));
    assert_eq!(paid.shipping_tax, m("2.38 EUR"));
    assert_eq!(paid.total().unwrap(), order.totals.total);
}

#[tokio::test]
async fn tax_exclusive_prices_add_tax_on_top() {
    let s = shop().await;
    let co = CheckoutService::new(&s.f.stores, CheckoutConfig::default())
        .with_tax(tax(), PriceMode::TaxExclusive);
    let req = request("k-excl", &[(&s.mug, 1)]).shipping_to(berlin(), None);
    let order = co.checkout(&req).await.unwrap();
    let order = order.order().unwrap();
    // 11.90 net at 19 %: 2.261 → 2.26; no shipping configured (flat 0).
    assert_eq!(order.totals.tax, m("2.26 EUR"));
    assert_eq!(order.totals.total, m("14.16 EUR"));
    assert!(order.checkout.shipping_option.is_none());
}

#[tokio::test]
async fn bad_addresses_and_options_are_refused_and_write_nothing() {
    let s = shop().await;
    let co = checkout(&s.f);
    let lines = [(&s.mug, 1)];
    let cases = [
        ("no address", request("k-bad", &lines), "shipping_address"),
        (
            "a country nobody ships to",
            request("k-bad", &lines).shipping_to(tokyo(), Some("dhl")),
            "destination.country",
        ),
        (
            "an option not offered",
            request("k-bad", &lines).shipping_to(berlin(), Some("pigeon")),
            "shipping_method",
        ),
        (
            "no option chosen",
            request("k-bad", &lines).shipping_to(berlin(), None),
            "shipping_method",
        ),
    ];
    for (what, req, field) in cases {
        match co.checkout(&req).await {
            Err(Error::Validation { field: f, .. }) => assert_eq!(f, field, "{what}"),
            other => panic!("{what}: expected Validation, got {other:?}"),
        }
    }
    assert_eq!(
        s.f.stores
            .orders
            .get_order_by_key(&IdempotencyKey::new("k-bad").unwrap())
            .await
            .unwrap(),
        None
    );
    // An unknown country never becomes an address.
    let unknown = Address::new(AddressInput {
        country: "XX".into(),
        ..berlin().to_input()
    });
    assert!(matches!(unknown, Err(Error::Validation { .. })));
    let json = r#"{"name":"A","line1":"B","city":"C","country":"QQ"}"#;
    assert!(serde_json::from_str::<Address>(json).is_err());
}

#[tokio::test]
async fn partial_returns_restock_refund_and_finally_refund_the_order() {
    let s = shop().await;
    let order = s.shipped_order("k-1").await;
    let main = LocationId::new("main").unwrap();
    let before = s.f.available(&s.mug).await;

    // One mug of three: 35.70 × 1/3 = 11.90; shipping waits for the last unit.
    let first = s
        .returns
        .process(&s.ret(&order.id, "r-1", &[(&s.mug, 1)], main_location()))
        .await
        .unwrap();
    assert!(first.created && first.restocked);
    assert_eq!(first.refund.total, m("11.90 EUR"));
    assert_eq!(first.order.status, OrderStatus::PartiallyRefunded);
    assert_eq!(first.gateway.as_ref().unwrap().amount, m("11.90 EUR"));
    assert_eq!(s.f.available(&s.mug).await, before + 1);
    let movements =
        s.f.stores
            .inventory
            .movements(&s.mug, 0, 100)
            .await
            .unwrap();
    let last = movements.last().unwrap();
    assert_eq!(last.location.as_ref(), Some(&main));
    assert_eq!(
        last.reason.as_deref(),
        Some(format!("return {} r-1", order.id).as_str())
    );

    // A replay: same refund, no second restock, no second gateway refund.
    let again = s
        .returns
        .process(&s.ret(&order.id, "r-1", &[(&s.mug, 1)], main_location()))
        .await
        .unwrap();
    assert!(!again.created && !again.restocked);
    assert_eq!(again.refund, first.refund);
    assert_eq!(s.f.available(&s.mug).await, before + 1);
    assert_eq!(s.f.payments.partial_refunds().len(), 1);

    // The rest, written off: two mugs and the book, plus shipping with the last unit.
    let rest = s
        .returns
        .process(&s.ret(
            &order.id,
            "r-2",
            &[(&s.mug, 2), (&s.book, 1)],
            Disposition::WriteOff,
        ))
        .await
        .unwrap();
    // Mugs 35.70 − 11.90 = 23.80, the book 10.70, shipping 4.90 with the last unit.
    assert_eq!(rest.refund.total, m("39.40 EUR"));
    assert!(!rest.restocked);
    assert_eq!(s.f.available(&s.mug).await, before + 1);
    assert_eq!(rest.order.status, OrderStatus::Refunded);
    assert!(rest.balance.is_fully_refunded());
    let refunded: commerce_core::money::Money =
        s.f.payments
            .partial_refunds()
            .iter()
            .map(|r| r.amount)
            .fold(m("0.00 EUR"), |a, b| a.checked_add(&b).unwrap());
    assert_eq!(refunded, order.totals.total);
    let statuses = s.f.statuses(&order.id).await;
    assert_eq!(
        &statuses[statuses.len() - 4..],
        [
            OrderStatus::Shipped,
            OrderStatus::PartiallyRefunded,
            OrderStatus::PartiallyRefunded,
            OrderStatus::Refunded
        ]
    );
    // The pipeline's REFUNDED step neither refunds again nor touches stock.
    s.pipeline.process(&order.id).await.unwrap();
    let capture = s.f.payments.capture_for(&order.id).unwrap();
    assert!(!capture.refunded);
    assert_eq!(s.f.available(&s.mug).await, before + 1);
    s.f.audit_clean().await;
}

#[tokio::test]
async fn bad_returns_are_typed_errors_and_write_nothing() {
    let s = shop().await;
    let order = s.shipped_order("k-1").await;
    let req = request("k-2", &[(&s.mug, 1)]).shipping_to(berlin(), Some("dhl"));
    let unshipped = checkout(&s.f).checkout(&req).await.unwrap();
    let unshipped = s
        .pipeline
        .process(&unshipped.order().unwrap().id)
        .await
        .unwrap();
    let history = s.f.history(&order.id).await;
    let stock = s.f.available(&s.mug).await;
    let other = Sku::new("OTHER").unwrap();
    let cases = [
        (
            "more units than bought",
            s.ret(&order.id, "r", &[(&s.mug, 4)], main_location()),
        ),
        (
            "a SKU not in the order",
            s.ret(&order.id, "r", &[(&other, 1)], main_location()),
        ),
        (
            "zero units",
            s.ret(&order.id, "r", &[(&s.mug, 0)], main_location()),
        ),
        ("no lines", s.ret(&order.id, "r", &[], main_location())),
    ];
    for (what, r) in cases {
        assert!(
            matches!(s.returns.process(&r).await, Err(Error::Validation { .. })),
            "{what}"
        );
    }
    assert!(matches!(
        s.returns
            .process(&s.ret(
                &OrderId::new("nope").unwrap(),
                "r",
                &[(&s.mug, 1)],
                main_location()
            ))
            .await,
        Err(Error::NotFound { .. })
    ));
    // Not shipped yet: nothing can come back.
    assert!(matches!(
        s.returns
            .process(&s.ret(&unshipped.id, "r", &[(&s.mug, 1)], main_location()))
            .await,
        Err(Error::InvalidTransition { .. })
    ));
    assert_eq!(s.f.history(&order.id).await, history);
    assert_eq!(s.f.available(&s.mug).await, stock);
    assert!(s.ledger.refunds(&order.id).await.unwrap().is_empty());
    assert!(s.f.payments.partial_refunds().is_empty());
    // The key reused for other units is a conflict.
    s.returns
        .process(&s.ret(&order.id, "r-1", &[(&s.mug, 1)], main_location()))
        .await
        .unwrap();
    assert!(matches!(
        s.returns
            .process(&s.ret(&order.id, "r-1", &[(&s.mug, 2)], main_location()))
            .await,
        Err(Error::Conflict { .. })
    ));
    // The whole-order refund is refused once returns started.
    assert!(matches!(
        s.pipeline.refund(&order.id, "all").await,
        Err(Error::Validation { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_returns_never_refund_more_than_was_paid() {
    let s = Arc::new(shop().await);
    let order = s.shipped_order("k-race").await;
    let before = s.f.available(&s.mug).await;
    let mut tasks = Vec::new();
    for i in 0..32 {
        let s = s.clone();
        let id = order.id.clone();
        tasks.push(tokio::spawn(async move {
            let r = s.ret(&id, &format!("r-{i}"), &[(&s.mug, 1)], main_location());
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
    assert_eq!(ok, 3, "exactly the three mugs come back");
    let balance = s.ledger.balance(&order.id).await.unwrap().unwrap();
    assert_eq!(balance.lines[0].refunded_units, 3);
    assert!(balance.total_refunded.amount() <= balance.total_paid.amount());
    let gateway: Vec<_> = s.f.payments.partial_refunds();
    assert_eq!(gateway.len(), 3);
    let sum = gateway
        .iter()
        .fold(m("0.00 EUR"), |a, r| a.checked_add(&r.amount).unwrap());
    assert_eq!(sum, balance.total_refunded);
    assert!(sum.amount() <= m("35.70 EUR").amount());
    assert_eq!(s.f.available(&s.mug).await, before + 3);
    let entries =
        s.f.history(&order.id)
            .await
            .iter()
            .filter(|c| c.reason.starts_with("return "))
            .count();
    assert_eq!(entries, 3);
    assert_eq!(s.f.status(&order.id).await, OrderStatus::PartiallyRefunded);
}

#[tokio::test]
async fn orders_with_a_flat_tax_split_what_they_paid_over_the_lines() {
    let f = Fixture::new();
    let a = f.product("A", "10.00 USD", 10).await;
    let b = f.product("B", "20.00 USD", 10).await;
    let co = CheckoutService::new(
        &f.stores,
        CheckoutConfig {
            tax_rate: dec!(0.10),
            flat_shipping: dec!(5),
            ..CheckoutConfig::default()
        },
    );
    let req = request("k-flat", &[(&a, 1), (&b, 1)]);
    let order = co.checkout(&req).await.unwrap().order().unwrap().clone();
    assert_eq!(order.totals.total, m("38.00 USD"));
    let paid = commerce_core::refund::PaidOrder::from_order(&order).unwrap();
    // Goods paid 33.00 split 1:2 → 11.00 and 22.00; tax 3.00 → 1.00 and 2.00.
    assert_eq!(paid.lines[0].paid, m("11.00 USD"));
    assert_eq!(paid.lines[1].paid, m("22.00 USD"));
    assert_eq!(paid.lines[1].tax, m("2.00 USD"));
    assert_eq!(paid.shipping, m("5.00 USD"));
    assert_eq!(paid.total().unwrap(), order.totals.total);
}

#[tokio::test]
async fn gateway_partial_refunds_are_idempotent_per_key_and_capped() {
    let f = Fixture::new();
    let a = f.product("A", "10.00 USD", 10).await;
    let order = f.order("c1", &[(&a, 1)]).await;
    f.pipeline().process(&order.id).await.unwrap();
    let req = |key: &str, amount: &str| PartialRefundRequest {
        charge_key: payment_key(&order.id).unwrap(),
        refund_key: IdempotencyKey::new(key).unwrap(),
        amount: m(amount),
        reason: "test".into(),
    };
    let first = f
        .payments
        .refund_partial(&req("x", "4.00 USD"))
        .await
        .unwrap();
    assert_eq!(
        f.payments
            .refund_partial(&req("x", "4.00 USD"))
            .await
            .unwrap(),
        first
    );
    assert!(matches!(
        f.payments.refund_partial(&req("x", "5.00 USD")).await,
        Err(Error::Conflict { .. })
    ));
    assert!(matches!(
        f.payments.refund_partial(&req("y", "6.01 USD")).await,
        Err(Error::Validation { .. })
    ));
    f.payments
        .refund_partial(&req("y", "6.00 USD"))
        .await
        .unwrap();
    assert_eq!(f.payments.partial_refunds().len(), 2);
    // The full refund gives back only what is left.
    match f
        .payments
        .refund(&payment_key(&order.id).unwrap(), "rest")
        .await
        .unwrap()
    {
        RefundOutcome::Refunded { amount, .. } => assert_eq!(amount, m("0.00 USD")),
        other => panic!("{other:?}"),
    }
}

/// A server cart's saved addresses are the checkout's when the request carries none;
/// a request with an address of its own ignores them (the two are never mixed).
#[tokio::test]
async fn saved_cart_addresses_are_the_checkout_defaults() {
    use commerce_core::cart::{CartAddresses, CartOwner};
    use commerce_core::id::CartId;

    let s = shop().await;
    let carts = s.f.carts();
    let customer = CustomerId::new("c1").unwrap();
    let (id, owner) = (
        CartId::for_customer(&customer),
        CartOwner::Customer(customer.clone()),
    );
    let server_request = |key: &str| {
        CheckoutRequest::server_cart(
            customer.clone(),
            id.clone(),
            owner.clone(),
            IdempotencyKey::new(key).unwrap(),
        )
    };
    carts.add(&id, &owner, &s.mug, 2).await.unwrap();
    // Without an address anywhere, tax and shipping cannot be computed.
    let err = checkout(&s.f)
        .preview(&server_request("k-none"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Validation { field, .. } if field == "shipping_address"),
        "{err:?}"
    );
    let saved = CartAddresses {
        shipping: Some(berlin()),
        billing: Some(tokyo()),
    };
    let cart = carts
        .set_addresses(&id, &owner, saved.clone())
        .await
        .unwrap();
    assert_eq!(cart.addresses, saved);
    assert_eq!(cart.items.len(), 1, "the lines are untouched");
    // A guest id with a customer owner is refused before the store is asked.
    assert!(matches!(
        carts
            .set_addresses(&CartId::new_guest(), &owner, saved.clone())
            .await,
        Err(Error::Validation { .. })
    ));

    // The preview and the order use the saved addresses.
    let preview = checkout(&s.f)
        .preview(&server_request("k-saved"))
        .await
        .unwrap();
    assert_eq!(preview.order.checkout.shipping_address, Some(berlin()));
    assert_eq!(
        preview
            .order
            .checkout
            .shipping_option
            .as_ref()
            .map(|o| o.method_id.as_str()),
        Some("dhl"),
        "the cheapest option for the saved address"
    );
    let mut request = server_request("k-saved");
    request.shipping_method = Some("dhl".into());
    let order = match checkout(&s.f).checkout(&request).await.unwrap() {
        CheckoutOutcome::Placed { order, created, .. } => {
            assert!(created);
            order
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(order.checkout.shipping_address, Some(berlin()));
    assert_eq!(order.checkout.billing_address, Some(tokyo()));
    assert_eq!(order.totals.shipping.to_string(), "4.90 EUR");
    assert!(
        carts.get(&id, &owner).await.unwrap().is_none(),
        "the cart, its addresses with it, is gone after the order"
    );

    // A request with its own shipping address uses only its own: billing falls back
    // to that shipping address, not to the cart's saved billing address.
    carts.add(&id, &owner, &s.mug, 1).await.unwrap();
    carts
        .set_addresses(
            &id,
            &owner,
            CartAddresses {
                shipping: Some(tokyo()),
                billing: Some(tokyo()),
            },
        )
        .await
        .unwrap();
    let own = server_request("k-own").shipping_to(berlin(), Some("dhl"));
    let order = match checkout(&s.f).checkout(&own).await.unwrap() {
        CheckoutOutcome::Placed { order, .. } => order,
        other => panic!("{other:?}"),
    };
    assert_eq!(order.checkout.shipping_address, Some(berlin()));
    assert_eq!(order.checkout.billing_address, Some(berlin()));
}
