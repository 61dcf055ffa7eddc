//! `cargo run --example returns`: an order's money from address to partial refund, on the
//! in-memory engine — a validated address, the shipping options of its zone (priced on
//! the variants' stored weight and dimensions), VAT on tax-inclusive prices, the paid
//! order opened in the refund ledger, a return of one unit priced with its share of
//! discount, tax and shipping, and a second return racing a retry of the first.
//!
//! This example shows the pieces one by one; `CheckoutService::with_tax` /
//! `with_shipping` and `ReturnsService` wire them into checkout and returns (see the
//! storefront example).

use std::collections::BTreeMap;
use std::sync::Arc;

use commerce_core::Result;
use commerce_core::address::{Address, AddressInput, CountryCode};
use commerce_core::catalog::{Dimensions, ProductVariant};
use commerce_core::clock::SystemClock;
use commerce_core::id::{IdempotencyKey, OrderId, Sku};
use commerce_core::memory::MemoryRefunds;
use commerce_core::money::{Currency, Money};
use commerce_core::refund::{PaidOrder, ShippingRefundPolicy, quote_refund};
use commerce_core::shipping::{
    Rate, ShippingItem, ShippingMethod, ShippingRates, ShippingRatesExt, ShippingRequest,
    ShippingZone, Weight, WeightBracket, ZoneArea, ZoneShipping,
};
use commerce_core::store::RefundLedger;
use commerce_core::tax::{
    Jurisdiction, PriceMode, Rounding, RuleBasedTax, TaxCalculatorExt, TaxClass, TaxRequest,
    TaxRules, TaxableLine,
};
use rust_decimal::Decimal;

/// What the walk-through ends with, for the test.
#[derive(Debug)]
#[cfg_attr(not(test), allow(dead_code))]
struct Summary {
    shipping: Money,
    tax: Money,
    paid: Money,
    first_refund: Money,
    refunded: Money,
    replay_created: bool,
}

fn money(s: &str) -> Result<Money> {
    s.parse()
}

fn variant(sku: &str, price: &str, grams: u32, dims: (u32, u32, u32)) -> Result<ProductVariant> {
    Ok(ProductVariant {
        sku: Sku::new(sku)?,
        attributes: BTreeMap::new(),
        price: money(price)?,
        inventory_count: 100,
        weight_grams: Some(grams),
        dimensions: Some(Dimensions {
            length_mm: dims.0,
            width_mm: dims.1,
            height_mm: dims.2,
        }),
    })
}

async fn walk_through() -> Result<Summary> {
    // 1. The address a shopper typed, validated (and normalised).
    let address = Address::new(AddressInput {
        name: "Erika Mustermann".into(),
        line1: "Heidestraße 17".into(),
        city: "Köln".into(),
        postal_code: Some(" 51147 ".into()),
        country: "de".into(),
        ..AddressInput::default()
    })?;
    println!("ship to {:?}", address);

    // 2. The cart: two mugs (350 g each) and a cushion (500 g, but 8 kg volumetric).
    let mug = variant("MUG-BLUE", "12.90 EUR", 350, (120, 100, 100))?;
    let cushion = variant("CUSHION", "29.00 EUR", 500, (500, 400, 200))?;
    let cart = [(&mug, 2u32), (&cushion, 1u32)];

    // 3. Shipping options for the address.
    let grams = |g: i64| Weight::from_grams(g);
    let rates = ZoneShipping::new(
        vec![ShippingZone {
            name: "Germany".into(),
            areas: vec![ZoneArea::country("DE")?],
            methods: vec![
                ShippingMethod::new(
                    "dhl",
                    "DHL Paket",
                    Rate::ByWeight(vec![
                        WeightBracket {
                            up_to: grams(2_000)?,
                            price: money("4.99 EUR")?,
                        },
                        WeightBracket {
                            up_to: grams(10_000)?,
                            price: money("6.99 EUR")?,
                        },
                        WeightBracket {
                            up_to: grams(31_500)?,
                            price: money("12.99 EUR")?,
                        },
                    ]),
                )
                .free_over(money("100.00 EUR")?),
                ShippingMethod::new("express", "Express", Rate::Flat(money("14.90 EUR")?))
                    .max_weight(grams(5_000)?),
            ],
        }],
        5000,
    )?;
    let shipping_request = ShippingRequest {
        currency: Currency::EUR,
        destination: address.clone(),
        items: cart
            .iter()
            .map(|(v, q)| ShippingItem::from_variant(v, *q))
            .collect(),
    };
    for option in rates.options(&shipping_request).await? {
        println!(
            "  {:<10} {:>10}  ({} g chargeable)",
            option.name,
            option.price.to_string(),
            option.chargeable_weight.grams()
        );
    }
    let chosen = rates.quote(&shipping_request, "dhl").await?;

    // 4. VAT on tax-inclusive prices, a 10 % coupon on the cushion (2.90) before tax.
    let rules = TaxRules::new(
        Rounding::PerLine,
        vec![
            Jurisdiction::country("Germany", CountryCode::parse("DE")?, Decimal::new(19, 2))
                .class_rate(TaxClass::reduced(), Decimal::new(7, 2)),
        ],
    )?;
    let tax_request = TaxRequest {
        currency: Currency::EUR,
        destination: address,
        prices: PriceMode::TaxInclusive,
        lines: vec![
            TaxableLine {
                sku: mug.sku.clone(),
                tax_class: TaxClass::standard(),
                quantity: 2,
                unit_price: mug.price,
                discount: money("0.00 EUR")?,
            },
            TaxableLine {
                sku: cushion.sku.clone(),
                tax_class: TaxClass::standard(),
                quantity: 1,
                unit_price: cushion.price,
                discount: money("2.90 EUR")?,
            },
        ],
        shipping: chosen.price,
    };
    let tax = RuleBasedTax::new(rules)
        .calculate_checked(&tax_request)
        .await?;
    for line in &tax.lines {
        println!(
            "  {:<10} x{}  gross {:>10}  of which VAT {}",
            line.sku.as_str(),
            line.quantity,
            line.amount.gross.to_string(),
            line.amount.tax
        );
    }
    println!(
        "  shipping {} (VAT {}); total {} of which VAT {}",
        tax.shipping.gross, tax.shipping.tax, tax.gross_total, tax.tax_total
    );

    // 5. Paid: open the refund ledger with what each line paid.
    let ledger = MemoryRefunds::new(Arc::new(SystemClock));
    let order = OrderId::generate();
    let paid = PaidOrder::from_tax(order.clone(), Currency::EUR, &tax)?;
    ledger.open(&paid).await?;

    // 6. One mug comes back: its share of the line, VAT included; shipping only with the
    // last unit of the order.
    let balance = ledger
        .balance(&order)
        .await?
        .ok_or_else(|| commerce_core::Error::not_found(commerce_core::EntityKind::Order, &order))?;
    let quote = quote_refund(
        &paid,
        &balance,
        &[(mug.sku.clone(), 1)],
        ShippingRefundPolicy::WithLastUnit,
    )?;
    println!(
        "return 1 mug: refund {} (VAT {})",
        quote.total, quote.lines[0].tax
    );
    let first = quote
        .clone()
        .into_request(order.clone(), IdempotencyKey::new("rma-1")?, "chipped");
    let recorded = ledger.record(&first).await?;

    // 7. The refund call is retried (same key) while the customer returns the rest.
    let balance = ledger
        .balance(&order)
        .await?
        .ok_or_else(|| commerce_core::Error::not_found(commerce_core::EntityKind::Order, &order))?;
    let rest = quote_refund(
        &paid,
        &balance,
        &[(mug.sku.clone(), 1), (cushion.sku.clone(), 1)],
        ShippingRefundPolicy::WithLastUnit,
    )?
    .into_request(
        order.clone(),
        IdempotencyKey::new("rma-2")?,
        "changed my mind",
    );
    let (replay, second) = tokio::join!(ledger.record(&first), ledger.record(&rest));
    let (replay, second) = (replay?, second?);
    let balance = ledger
        .balance(&order)
        .await?
        .ok_or_else(|| commerce_core::Error::not_found(commerce_core::EntityKind::Order, &order))?;
    println!(
        "replay recorded again: {}; rest refunded {}; order fully refunded: {} ({} of {})",
        replay.created,
        second.refund.total,
        second.completes_order,
        balance.total_refunded,
        balance.total_paid
    );
    Ok(Summary {
        shipping: chosen.price,
        tax: tax.tax_total,
        paid: balance.total_paid,
        first_refund: recorded.refund.total,
        refunded: balance.total_refunded,
        replay_created: replay.created,
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    walk_through().await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_walk_through_refunds_exactly_what_was_paid() {
        let s = walk_through().await.unwrap();
        // Chargeable 2 × 350 + 8,000 = 8,700 g → the 10 kg bracket.
        assert_eq!(s.shipping, money("6.99 EUR").unwrap());
        // Mugs 25.80 → VAT 4.12 (4.1193…); cushion 26.10 → 4.17 (4.1672…);
        // shipping 6.99 → 1.12 (1.1160…). Total VAT 9.41, paid 58.89.
        assert_eq!(s.tax, money("9.41 EUR").unwrap());
        assert_eq!(s.paid, money("58.89 EUR").unwrap());
        // One mug of two: 25.80 / 2 = 12.90, no shipping yet.
        assert_eq!(s.first_refund, money("12.90 EUR").unwrap());
        assert_eq!(s.refunded, s.paid);
        assert!(!s.replay_created);
    }
}
