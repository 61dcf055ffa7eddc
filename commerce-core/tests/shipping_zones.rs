//! The zone-based shipping rates: zones by country and region, weight brackets on the
//! chargeable (actual or volumetric) weight, price bands, flat rates, free thresholds,
//! and typed errors for what cannot be rated.

use std::collections::BTreeMap;

use commerce_core::Error;
use commerce_core::address::{Address, AddressInput};
use commerce_core::catalog::{Dimensions, ProductVariant};
use commerce_core::id::Sku;
use commerce_core::money::{Currency, Money};
use commerce_core::shipping::*;

fn m(s: &str) -> Money {
    s.parse().unwrap()
}

fn g(grams: i64) -> Weight {
    Weight::from_grams(grams).unwrap()
}

fn address(country: &str, region: Option<&str>, postal: &str) -> Address {
    Address::new(AddressInput {
        name: "Test Buyer".into(),
        line1: "1 Example Street".into(),
        city: "Somewhere".into(),
        region: region.map(Into::into),
        postal_code: Some(postal.into()),
        country: country.into(),
        ..AddressInput::default()
    })
    .unwrap()
}

fn variant(
    sku: &str,
    price: &str,
    grams: Option<u32>,
    dims: Option<(u32, u32, u32)>,
) -> ProductVariant {
    ProductVariant {
        sku: Sku::new(sku).unwrap(),
        attributes: BTreeMap::new(),
        price: m(price),
        inventory_count: 10,
        weight_grams: grams,
        dimensions: dims.map(|(l, w, h)| Dimensions {
            length_mm: l,
            width_mm: w,
            height_mm: h,
        }),
    }
}

fn rates() -> ZoneShipping {
    let dhl = ShippingMethod::new(
        "dhl",
        "DHL Paket",
        Rate::ByWeight(vec![
            WeightBracket {
                up_to: g(2_000),
                price: m("4.99 EUR"),
            },
            WeightBracket {
                up_to: g(5_000),
                price: m("6.99 EUR"),
            },
            WeightBracket {
                up_to: g(10_000),
                price: m("9.49 EUR"),
            },
            WeightBracket {
                up_to: g(31_500),
                price: m("16.49 EUR"),
            },
        ]),
    )
    .free_over(m("100.00 EUR"))
    .transit_days(1, 3);
    let express =
        ShippingMethod::new("express", "Express", Rate::Flat(m("14.90 EUR"))).max_weight(g(5_000));
    let ground = ShippingMethod::new(
        "ground",
        "Ground",
        Rate::ByPrice(vec![
            PriceBand {
                from: m("0.00 USD"),
                price: m("7.95 USD"),
            },
            PriceBand {
                from: m("50.00 USD"),
                price: m("4.95 USD"),
            },
            PriceBand {
                from: m("100.00 USD"),
                price: m("0.00 USD"),
            },
        ]),
    );
    let two_day = ShippingMethod::new("two-day", "Two-day", Rate::Flat(m("19.95 USD")));
    let priority = ShippingMethod::new("priority", "Priority Mail", Rate::Flat(m("24.00 USD")));
    ZoneShipping::new(
        vec![
            ShippingZone {
                name: "Germany".into(),
                areas: vec![ZoneArea::country("DE").unwrap()],
                methods: vec![dhl, express],
            },
            // Zones are tried in order: the remote states first.
            ShippingZone {
                name: "US remote".into(),
                areas: vec![ZoneArea::regions("US", ["AK", "HI", "PR"]).unwrap()],
                methods: vec![priority],
            },
            ShippingZone {
                name: "US".into(),
                areas: vec![ZoneArea::country("US").unwrap()],
                methods: vec![ground, two_day],
            },
        ],
        5000,
    )
    .unwrap()
}

fn request(destination: Address, items: &[(&ProductVariant, u32)]) -> ShippingRequest {
    ShippingRequest {
        currency: items[0].0.price.currency(),
        destination,
        items: items
            .iter()
            .map(|(v, q)| ShippingItem::from_variant(v, *q))
            .collect(),
    }
}

/// `(method id, price)` of each option, in order.
async fn offered(req: &ShippingRequest) -> Vec<(String, String)> {
    rates()
        .options(req)
        .await
        .unwrap()
        .into_iter()
        .map(|o| (o.method_id, o.price.to_string()))
        .collect()
}

fn o(id: &str, price: &str) -> (String, String) {
    (id.into(), price.into())
}

#[tokio::test]
async fn weight_brackets_use_the_volumetric_weight_when_larger() {
    let de = || address("DE", None, "10115");
    // Mug: 350 g; 120 × 100 × 100 mm = 1,200,000 mm³ / 5000 = 240 g volumetric → 350 g.
    let mug = variant("MUG", "12.00 EUR", Some(350), Some((120, 100, 100)));
    // Pillow: 500 g; 500 × 400 × 200 mm = 40,000,000 mm³ / 5000 = 8,000 g → 8,000 g.
    let pillow = variant("PILLOW", "29.00 EUR", Some(500), Some((500, 400, 200)));

    // Two mugs: 700 g → DHL 4.99 (≤ 2 kg); express 14.90 (≤ 5 kg).
    let req = request(de(), &[(&mug, 2)]);
    assert_eq!(
        offered(&req).await,
        vec![o("dhl", "4.99 EUR"), o("express", "14.90 EUR")]
    );
    let options = rates().options(&req).await.unwrap();
    assert_eq!(options[0].chargeable_weight, g(700));
    assert_eq!(options[0].transit_days, Some((1, 3)));
    assert_eq!(options[0].zone, "Germany");

    // Two mugs and the pillow: 700 + 8,000 = 8,700 g chargeable (actual only 1,200 g):
    // DHL 9.49 (≤ 10 kg); express is over its 5 kg limit and not offered.
    let req = request(de(), &[(&mug, 2), (&pillow, 1)]);
    assert_eq!(req.actual_weight(), (g(1_200), true));
    assert_eq!(req.chargeable_weight(5000).unwrap(), g(8_700));
    assert_eq!(offered(&req).await, vec![o("dhl", "9.49 EUR")]);

    // Four pillows: 32,000 g, above the last bracket (31.5 kg): nothing fits.
    let req = request(de(), &[(&pillow, 4)]);
    assert_eq!(offered(&req).await, vec![]);
}

#[tokio::test]
async fn free_over_a_threshold() {
    // Nine mugs: 108.00 EUR ≥ 100.00 → DHL free; 3,150 g.
    let mug = variant("MUG", "12.00 EUR", Some(350), None);
    let req = request(address("DE", None, "10115"), &[(&mug, 9)]);
    assert_eq!(
        offered(&req).await,
        vec![o("dhl", "0.00 EUR"), o("express", "14.90 EUR")]
    );
}

#[tokio::test]
async fn a_unit_without_weight_is_not_rated_by_weight() {
    let mug = variant("MUG", "12.00 EUR", Some(350), None);
    let mystery = variant("MYSTERY", "5.00 EUR", None, None);
    let req = request(address("DE", None, "10115"), &[(&mug, 1), (&mystery, 1)]);
    assert_eq!(req.actual_weight(), (g(350), false));
    assert_eq!(offered(&req).await, vec![o("express", "14.90 EUR")]);
}

#[tokio::test]
async fn price_bands_and_region_zones() {
    let ny = || address("US", Some("NY"), "10001");
    let shirt = variant("SHIRT", "15.00 USD", Some(200), None);
    // 3 × 15 = 45.00: first band.
    assert_eq!(
        offered(&request(ny(), &[(&shirt, 3)])).await,
        vec![o("ground", "7.95 USD"), o("two-day", "19.95 USD")]
    );
    // 4 × 15 = 60.00: the 50.00 band.
    assert_eq!(
        offered(&request(ny(), &[(&shirt, 4)])).await,
        vec![o("ground", "4.95 USD"), o("two-day", "19.95 USD")]
    );
    // 7 × 15 = 105.00: the 100.00 band is free.
    assert_eq!(
        offered(&request(ny(), &[(&shirt, 7)])).await,
        vec![o("ground", "0.00 USD"), o("two-day", "19.95 USD")]
    );
    // Alaska is in the remote zone, tried first.
    let ak = address("US", Some("AK"), "99501");
    let options = rates().options(&request(ak, &[(&shirt, 3)])).await.unwrap();
    assert_eq!(options.len(), 1);
    assert_eq!(
        (options[0].method_id.as_str(), options[0].zone.as_str()),
        ("priority", "US remote")
    );
    // quote() re-prices the chosen method; a method that does not apply is Validation.
    let req = request(ny(), &[(&shirt, 4)]);
    assert_eq!(
        rates().quote(&req, "ground").await.unwrap().price,
        m("4.95 USD")
    );
    assert!(matches!(
        rates().quote(&req, "priority").await,
        Err(Error::Validation { field, .. }) if field == "shipping_method"
    ));
}

#[tokio::test]
async fn destinations_and_currencies_that_cannot_be_served() {
    let mug = variant("MUG", "12.00 EUR", Some(350), None);
    // No zone covers France.
    let err = rates()
        .options(&request(address("FR", None, "75008"), &[(&mug, 1)]))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Validation { field, .. } if field == "destination.country"),
        "{err:?}"
    );
    // The US zone prices in USD only: a EUR cart gets no option.
    let req = request(address("US", Some("NY"), "10001"), &[(&mug, 1)]);
    assert_eq!(offered(&req).await, vec![]);
    // Bad requests.
    let mut repeated = request(address("DE", None, "10115"), &[(&mug, 1), (&mug, 2)]);
    assert!(matches!(
        rates().options(&repeated).await,
        Err(Error::Validation { field, .. }) if field == "items[1].sku"
    ));
    repeated.items.truncate(1);
    repeated.items[0].quantity = 0;
    assert!(matches!(
        rates().options(&repeated).await,
        Err(Error::Validation { field, .. }) if field == "items[0].quantity"
    ));
    repeated.items[0].quantity = 1;
    repeated.currency = Currency::USD;
    assert!(matches!(
        rates().options(&repeated).await,
        Err(Error::CurrencyMismatch { .. })
    ));
    repeated.items.clear();
    assert!(matches!(
        rates().options(&repeated).await,
        Err(Error::Validation { .. })
    ));
}

#[test]
fn negative_weights_unknown_countries_and_bad_tables_are_typed_errors() {
    assert!(matches!(
        Weight::from_grams(-1),
        Err(Error::Validation { field, .. }) if field == "weight"
    ));
    assert!(serde_json::from_str::<Weight>("-5").is_err());
    assert_eq!(serde_json::from_str::<Weight>("1500").unwrap(), g(1500));
    assert!(matches!(
        ZoneArea::country("XX"),
        Err(Error::Validation { field, .. }) if field == "country"
    ));
    assert!(ZoneArea::regions("ZZ", ["A"]).is_err());

    let zone = |methods: Vec<ShippingMethod>| ShippingZone {
        name: "Z".into(),
        areas: vec![ZoneArea::country("DE").unwrap()],
        methods,
    };
    let descending = ShippingMethod::new(
        "w",
        "W",
        Rate::ByWeight(vec![
            WeightBracket {
                up_to: g(5_000),
                price: m("6.99 EUR"),
            },
            WeightBracket {
                up_to: g(2_000),
                price: m("4.99 EUR"),
            },
        ]),
    );
    assert!(matches!(
        ZoneShipping::new(vec![zone(vec![descending])], 5000),
        Err(Error::Validation { field, .. }) if field == "zones[0].methods[0].rate"
    ));
    let mixed = ShippingMethod::new("f", "F", Rate::Flat(m("4.99 EUR"))).free_over(m("50.00 USD"));
    assert!(matches!(
        ZoneShipping::new(vec![zone(vec![mixed])], 5000),
        Err(Error::CurrencyMismatch { .. })
    ));
    let negative = ShippingMethod::new("n", "N", Rate::Flat(m("-1.00 EUR")));
    assert!(ZoneShipping::new(vec![zone(vec![negative])], 5000).is_err());
    let flat = || ShippingMethod::new("f", "F", Rate::Flat(m("4.99 EUR")));
    assert!(matches!(
        ZoneShipping::new(vec![zone(vec![flat(), flat()])], 5000),
        Err(Error::Validation { field, .. }) if field == "zones[0].methods[1].id"
    ));
    assert!(ZoneShipping::new(vec![zone(vec![flat()])], 0).is_err());
    let bad_id = ShippingMethod::new("has space", "F", Rate::Flat(m("4.99 EUR")));
    assert!(ZoneShipping::new(vec![zone(vec![bad_id])], 5000).is_err());
    let empty = ShippingZone {
        name: "Nowhere".into(),
        areas: vec![],
        methods: vec![flat()],
    };
    assert!(ZoneShipping::new(vec![empty], 5000).is_err());
    // A zone configuration read from JSON: the country code is validated.
    let json = r#"{"name":"EU","areas":[{"country":"XX"}],"methods":[]}"#;
    assert!(serde_json::from_str::<ShippingZone>(json).is_err());
    let json = r#"{"name":"EU","areas":[{"country":"fr"}],"methods":[
        {"id":"std","name":"Standard","rate":{"flat":{"amount":"9.90","currency":"EUR"}}}]}"#;
    let parsed: ShippingZone = serde_json::from_str(json).unwrap();
    assert_eq!(parsed.areas[0].country.as_str(), "FR");
}

#[test]
fn volumetric_weight_rounds_up_to_the_gram() {
    let d = Dimensions {
        length_mm: 101,
        width_mm: 100,
        height_mm: 100,
    };
    // 1,010,000 / 5000 = 202 exactly; 1,010,001 would round up.
    assert_eq!(volumetric_weight(&d, 5000).unwrap(), g(202));
    let d = Dimensions {
        length_mm: 7,
        width_mm: 7,
        height_mm: 7,
    };
    assert_eq!(volumetric_weight(&d, 5000).unwrap(), g(1)); // 343 / 5000 → 1 g
    assert!(volumetric_weight(&d, 0).is_err());
}
