//! Small constructors for the values the cases use; they panic on invalid constants.

use crate::address::{Address, AddressInput};
use crate::cart::CartItem;
use crate::catalog::{CategoryPath, NewProduct, ProductVariant};
use crate::clock::Timestamp;
use crate::id::{
    CustomerId, IdempotencyKey, LocationId, OrderId, ProductId, PromotionId, SellerId, Sku,
};
use crate::money::{Currency, Money};
use crate::order::{NewOrder, NewOrderLine};

pub(crate) fn sku(s: &str) -> Sku {
    Sku::new(s).unwrap_or_else(|e| panic!("test SKU {s:?}: {e}"))
}

pub(crate) fn loc(s: &str) -> LocationId {
    LocationId::new(s).unwrap_or_else(|e| panic!("test location {s:?}: {e}"))
}

pub(crate) fn oid(s: &str) -> OrderId {
    OrderId::new(s).unwrap_or_else(|e| panic!("test order id {s:?}: {e}"))
}

pub(crate) fn pid(s: &str) -> ProductId {
    ProductId::new(s).unwrap_or_else(|e| panic!("test product id {s:?}: {e}"))
}

pub(crate) fn promotion_id(s: &str) -> PromotionId {
    PromotionId::new(s).unwrap_or_else(|e| panic!("test promotion id {s:?}: {e}"))
}

pub(crate) fn cust(s: &str) -> CustomerId {
    CustomerId::new(s).unwrap_or_else(|e| panic!("test customer id {s:?}: {e}"))
}

pub(crate) fn key(s: &str) -> IdempotencyKey {
    IdempotencyKey::new(s).unwrap_or_else(|e| panic!("test idempotency key {s:?}: {e}"))
}

pub(crate) fn path(s: &str) -> CategoryPath {
    CategoryPath::parse(s).unwrap_or_else(|e| panic!("test category {s:?}: {e}"))
}

/// `money("12.34 USD")`.
pub(crate) fn money(s: &str) -> Money {
    s.parse()
        .unwrap_or_else(|e| panic!("test amount {s:?}: {e}"))
}

/// Minor units of `currency`.
pub(crate) fn minor(units: i64, currency: Currency) -> Money {
    Money::from_minor_units(units, currency).unwrap_or_else(|e| panic!("test amount {units}: {e}"))
}

/// A product with id `id`, one variant per SKU (the first at the base price, the others
/// a dollar more each), in `category`.
pub(crate) fn new_product(id: &str, title: &str, category: &str, skus: &[&str]) -> NewProduct {
    let base = money("10.00 USD");
    let mut p = NewProduct::new(
        SellerId::new("seller-1").unwrap_or_else(|e| panic!("{e}")),
        title,
        path(category),
        "Acme",
        sku(skus.first().copied().unwrap_or("SKU-DEFAULT")),
        base,
    );
    p.id = Some(pid(id));
    for (i, s) in skus.iter().enumerate().skip(1) {
        p.variants.push(ProductVariant {
            sku: sku(s),
            attributes: Default::default(),
            price: minor(1000 + 100 * i as i64, Currency::USD),
            inventory_count: 0,
            weight_grams: None,
            dimensions: None,
        });
    }
    p
}

pub(crate) fn cart_item(s: &str, quantity: u32, price: &str, at: Timestamp) -> CartItem {
    CartItem {
        product_id: pid(&format!("p-{s}")),
        sku: sku(s),
        quantity,
        unit_price: money(price),
        added_at: at,
    }
}

/// An order of `lines` as `(sku, quantity, unit price)`, shipping 5.00 and tax 1.00 in
/// the lines' currency.
pub(crate) fn new_order(k: &str, customer: &str, lines: &[(&str, u32, &str)]) -> NewOrder {
    let currency = lines
        .first()
        .map_or(Currency::USD, |(_, _, p)| money(p).currency());
    NewOrder {
        id: None,
        customer_id: cust(customer),
        idempotency_key: key(k),
        lines: lines
            .iter()
            .map(|(s, q, p)| NewOrderLine {
                product_id: pid(&format!("p-{s}")),
                sku: sku(s),
                title: format!("Item {s}"),
                quantity: *q,
                unit_price: money(p),
                tax: None,
            })
            .collect(),
        shipping: minor(500, currency),
        tax: minor(100, currency),
        checkout: Default::default(),
        promotions: Vec::new(),
    }
}

/// An address input in `country` that [`Address::new`] accepts (a region and postal
/// code where the country needs them), with non-ASCII text to normalise and every
/// optional field set.
pub(crate) fn address_input(name: &str, country: &str) -> AddressInput {
    let (region, postal) = match country {
        "US" => (Some(" ny "), "10001-1234"),
        "CA" => (Some("qc"), "h2x1y4"),
        "GB" => (None, "sw1a1aa"),
        _ => (Some("Nordrhein-Westfalen"), "50667"),
    };
    AddressInput {
        name: format!("  {name} Mu\u{308}ller "),
        company: Some("Ex\u{e4}mple GmbH".into()),
        line1: "Heidestra\u{df}e 17".into(),
        line2: Some("3. OG, links".into()),
        city: "Ko\u{308}ln".into(),
        region: region.map(str::to_owned),
        postal_code: Some(postal.into()),
        country: country.to_ascii_lowercase(),
        phone: Some("+49 (221) 123-456".into()),
    }
}

/// [`address_input`], validated.
pub(crate) fn address(name: &str, country: &str) -> Address {
    Address::new(address_input(name, country))
        .unwrap_or_else(|e| panic!("test address {name:?} in {country}: {e}"))
}
