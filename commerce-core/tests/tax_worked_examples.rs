//! Worked examples of the rule-based tax calculator on published rates, each total
//! computed by hand in the comments.
//!
//! Rates used (as published by the tax authorities; the postal prefixes are a
//! simplified example, not a tax database):
//! * Germany (UStG §12): 19 % standard, 7 % reduced (food, books). A delivery charge
//!   follows the goods it delivers: taxed at the standard rate in the simple examples,
//!   split over a mixed-rate cart by value in `germany_shipping_split_over_a_mixed_rate_cart`.
//! * France (CGI art. 278, 278-0 bis): 20 % standard, 5.5 % reduced (books, food).
//! * New York: state 4 %; New York City 4.5 %; Metropolitan Commuter Transportation
//!   District 0.375 % (NYC combined 8.875 %); Albany County 4 % (combined 8 %).
//!   Shipping of taxable goods is taxable in New York.
//! * California: 7.25 % statewide base; separately stated delivery by common carrier is
//!   not taxed.

use commerce_core::address::{Address, AddressInput, CountryCode};
use commerce_core::id::Sku;
use commerce_core::money::{Currency, Money};
use commerce_core::tax::*;
use commerce_core::{Error, Result};
use rust_decimal_macros::dec;

fn m(s: &str) -> Money {
    s.parse().unwrap()
}

fn cc(s: &str) -> CountryCode {
    CountryCode::parse(s).unwrap()
}

fn address(country: &str, region: Option<&str>, postal: &str, city: &str) -> Address {
    Address::new(AddressInput {
        name: "Test Buyer".into(),
        line1: "1 Example Street".into(),
        city: city.into(),
        region: region.map(Into::into),
        postal_code: Some(postal.into()),
        country: country.into(),
        ..AddressInput::default()
    })
    .unwrap()
}

const NYC_PREFIXES: [&str; 10] = [
    "100", "101", "102", "103", "104", "111", "112", "113", "114", "116",
];

fn rules(rounding: Rounding) -> TaxRules {
    TaxRules::new(
        rounding,
        vec![
            Jurisdiction::country("Germany", cc("DE"), dec!(0.19))
                .class_rate(TaxClass::reduced(), dec!(0.07)),
            Jurisdiction::country("France", cc("FR"), dec!(0.20))
                .class_rate(TaxClass::reduced(), dec!(0.055)),
            Jurisdiction::country("New York State", cc("US"), dec!(0.04)).region("NY"),
            Jurisdiction::country("New York City", cc("US"), dec!(0.045))
                .region("NY")
                .postal_prefixes(NYC_PREFIXES),
            Jurisdiction::country("MCTD", cc("US"), dec!(0.00375))
                .region("NY")
                .postal_prefixes(NYC_PREFIXES),
            Jurisdiction::country("Albany County", cc("US"), dec!(0.04))
                .region("NY")
                .postal_prefixes(["120", "121", "122"]),
            Jurisdiction::country("California", cc("US"), dec!(0.0725))
                .region("CA")
                .shipping(ShippingTaxRule::Exempt),
        ],
    )
    .unwrap()
}

fn line(sku: &str, class: TaxClass, quantity: u32, unit: &str, discount: &str) -> TaxableLine {
    TaxableLine {
        sku: Sku::new(sku).unwrap(),
        tax_class: class,
        quantity,
        unit_price: m(unit),
        discount: m(discount),
    }
}

async fn calc(
    rounding: Rounding,
    destination: Address,
    prices: PriceMode,
    lines: Vec<TaxableLine>,
    shipping: &str,
) -> Result<TaxBreakdown> {
    let shipping = m(shipping);
    let request = TaxRequest {
        currency: shipping.currency(),
        destination,
        prices,
        lines,
        shipping,
    };
    RuleBasedTax::new(rules(rounding))
        .calculate_checked(&request)
        .await
}

/// (net, tax, gross) of each line, then shipping, as strings.
fn parts(b: &TaxBreakdown) -> Vec<(String, String, String)> {
    b.lines
        .iter()
        .map(|l| &l.amount)
        .chain([&b.shipping])
        .map(|a| (a.net.to_string(), a.tax.to_string(), a.gross.to_string()))
        .collect()
}

fn t(net: &str, tax: &str, gross: &str) -> (String, String, String) {
    (net.into(), tax.into(), gross.into())
}

fn totals(b: &TaxBreakdown) -> (String, String, String) {
    (
        b.net_total.to_string(),
        b.tax_total.to_string(),
        b.gross_total.to_string(),
    )
}

#[tokio::test]
async fn germany_inclusive_standard_and_reduced_per_line() {
    // T-shirt 2 × 11.90 = 23.80 gross at 19 %: tax 23.80 × 0.19 / 1.19 = 3.80, net 20.00.
    // Coffee 3 × 2.99 = 8.97 gross at 7 %: tax 8.97 × 0.07 / 1.07 = 0.5868… → 0.59, net 8.38.
    // Shipping 4.90 gross at 19 %: tax 4.90 × 0.19 / 1.19 = 0.7823… → 0.78, net 4.12.
    // Totals: gross 37.67, tax 3.80 + 0.59 + 0.78 = 5.17, net 32.50.
    let b = calc(
        Rounding::PerLine,
        address("DE", None, "10115", "Berlin"),
        PriceMode::TaxInclusive,
        vec![
            line("TSHIRT", TaxClass::standard(), 2, "11.90 EUR", "0.00 EUR"),
            line("COFFEE", TaxClass::reduced(), 3, "2.99 EUR", "0.00 EUR"),
        ],
        "4.90 EUR",
    )
    .await
    .unwrap();
    assert_eq!(
        parts(&b),
        vec![
            t("20.00 EUR", "3.80 EUR", "23.80 EUR"),
            t("8.38 EUR", "0.59 EUR", "8.97 EUR"),
            t("4.12 EUR", "0.78 EUR", "4.90 EUR"),
        ]
    );
    assert_eq!(totals(&b), t("32.50 EUR", "5.17 EUR", "37.67 EUR"));
    assert_eq!(b.lines[0].amount.rate, dec!(0.19));
    assert_eq!(b.lines[1].amount.rate, dec!(0.07));
    assert_eq!(b.jurisdictions, vec!["Germany".to_owned()]);
}

#[tokio::test]
async fn germany_discount_comes_off_before_tax() {
    // T-shirt 23.80 with a 2.38 (10 %) discount: 21.42 gross, tax 21.42 × 0.19 / 1.19
    // = 3.42 exactly, net 18.00. Coffee and shipping as above (0.59, 0.78).
    // Totals: gross 21.42 + 8.97 + 4.90 = 35.29, tax 4.79, net 30.50.
    let b = calc(
        Rounding::PerLine,
        address("DE", None, "10115", "Berlin"),
        PriceMode::TaxInclusive,
        vec![
            line("TSHIRT", TaxClass::standard(), 2, "11.90 EUR", "2.38 EUR"),
            line("COFFEE", TaxClass::reduced(), 3, "2.99 EUR", "0.00 EUR"),
        ],
        "4.90 EUR",
    )
    .await
    .unwrap();
    assert_eq!(b.lines[0].amount.tax, m("3.42 EUR"));
    assert_eq!(b.lines[0].amount.net, m("18.00 EUR"));
    assert_eq!(b.lines[0].discount, m("2.38 EUR"));
    assert_eq!(totals(&b), t("30.50 EUR", "4.79 EUR", "35.29 EUR"));
}

#[tokio::test]
async fn france_inclusive_standard_and_reduced() {
    // Headphones 49.99 at 20 %: tax 49.99 × 0.2 / 1.2 = 8.3316… → 8.33, net 41.66.
    // Book 21.10 at 5.5 %: tax 21.10 × 0.055 / 1.055 = 1.10 exactly, net 20.00.
    // Shipping 5.99 at 20 %: tax 5.99 × 0.2 / 1.2 = 0.9983… → 1.00, net 4.99.
    // Totals: gross 77.08, tax 10.43, net 66.65.
    let b = calc(
        Rounding::PerLine,
        address("FR", None, "75008", "Paris"),
        PriceMode::TaxInclusive,
        vec![
            line(
                "HEADPHONES",
                TaxClass::standard(),
                1,
                "49.99 EUR",
                "0.00 EUR",
            ),
            line("BOOK", TaxClass::reduced(), 1, "21.10 EUR", "0.00 EUR"),
        ],
        "5.99 EUR",
    )
    .await
    .unwrap();
    assert_eq!(
        parts(&b),
        vec![
            t("41.66 EUR", "8.33 EUR", "49.99 EUR"),
            t("20.00 EUR", "1.10 EUR", "21.10 EUR"),
            t("4.99 EUR", "1.00 EUR", "5.99 EUR"),
        ]
    );
    assert_eq!(totals(&b), t("66.65 EUR", "10.43 EUR", "77.08 EUR"));
}

#[tokio::test]
async fn new_york_city_exclusive_state_plus_local() {
    // 4 % + 4.5 % + 0.375 % = 8.875 %, added on top.
    // Headset 199.99: tax 199.99 × 0.08875 = 17.7491… → 17.75, gross 217.74.
    // Cables 3 × 4.50 = 13.50: tax 1.198125 → 1.20, gross 14.70.
    // Shipping 9.99 (taxable in NY): tax 0.8866… → 0.89, gross 10.88.
    // Totals: net 223.48, tax 19.84, gross 243.32.
    let b = calc(
        Rounding::PerLine,
        address("US", Some("NY"), "10001", "New York"),
        PriceMode::TaxExclusive,
        vec![
            line("HEADSET", TaxClass::standard(), 1, "199.99 USD", "0.00 USD"),
            line("CABLE", TaxClass::standard(), 3, "4.50 USD", "0.00 USD"),
        ],
        "9.99 USD",
    )
    .await
    .unwrap();
    assert_eq!(
        parts(&b),
        vec![
            t("199.99 USD", "17.75 USD", "217.74 USD"),
            t("13.50 USD", "1.20 USD", "14.70 USD"),
            t("9.99 USD", "0.89 USD", "10.88 USD"),
        ]
    );
    assert_eq!(totals(&b), t("223.48 USD", "19.84 USD", "243.32 USD"));
    assert_eq!(b.lines[0].amount.rate, dec!(0.08875));
    assert_eq!(
        b.jurisdictions,
        vec!["New York State", "New York City", "MCTD"]
    );

    // A 20.00 coupon on the headset: 179.99 × 0.08875 = 15.9741… → 15.97.
    let b = calc(
        Rounding::PerLine,
        address("US", Some("NY"), "10001", "New York"),
        PriceMode::TaxExclusive,
        vec![line(
            "HEADSET",
            TaxClass::standard(),
            1,
            "199.99 USD",
            "20.00 USD",
        )],
        "0.00 USD",
    )
    .await
    .unwrap();
    assert_eq!(b.lines[0].amount.tax, m("15.97 USD"));
    assert_eq!(b.gross_total, m("195.96 USD"));
}

#[tokio::test]
async fn albany_gets_state_and_county_but_not_city_rates() {
    // 4 % + 4 % = 8 %: headset 15.9992 → 16.00, cables 1.08, shipping 0.7992 → 0.80.
    // Totals: net 223.48, tax 17.88, gross 241.36.
    let b = calc(
        Rounding::PerLine,
        address("US", Some("NY"), "12207", "Albany"),
        PriceMode::TaxExclusive,
        vec![
            line("HEADSET", TaxClass::standard(), 1, "199.99 USD", "0.00 USD"),
            line("CABLE", TaxClass::standard(), 3, "4.50 USD", "0.00 USD"),
        ],
        "9.99 USD",
    )
    .await
    .unwrap();
    assert_eq!(totals(&b), t("223.48 USD", "17.88 USD", "241.36 USD"));
    assert_eq!(b.jurisdictions, vec!["New York State", "Albany County"]);
}

#[tokio::test]
async fn california_does_not_tax_shipping() {
    // 100.00 at 7.25 % = 7.25; shipping 10.00 exempt. Totals: net 110.00, tax 7.25,
    // gross 117.25.
    let b = calc(
        Rounding::PerLine,
        address("US", Some("CA"), "94103", "San Francisco"),
        PriceMode::TaxExclusive,
        vec![line(
            "LAMP",
            TaxClass::standard(),
            1,
            "100.00 USD",
            "0.00 USD",
        )],
        "10.00 USD",
    )
    .await
    .unwrap();
    assert_eq!(b.shipping.tax, m("0.00 USD"));
    assert_eq!(totals(&b), t("110.00 USD", "7.25 USD", "117.25 USD"));
}

#[tokio::test]
async fn per_line_and_per_total_rounding_differ_as_documented() {
    // Five lines of 0.05 EUR net at 7 %:
    // per line each tax is 0.0035 → 0.00, total 0.00;
    // per total 0.25 × 0.07 = 0.0175 → 0.02, spread by largest remainder over five equal
    // lines: the first two get 0.01.
    let lines: Vec<TaxableLine> = (1..=5)
        .map(|i| {
            line(
                &format!("SWEET-{i}"),
                TaxClass::reduced(),
                1,
                "0.05 EUR",
                "0.00 EUR",
            )
        })
        .collect();
    let de = || address("DE", None, "10115", "Berlin");
    let per_line = calc(
        Rounding::PerLine,
        de(),
        PriceMode::TaxExclusive,
        lines.clone(),
        "0.00 EUR",
    )
    .await
    .unwrap();
    assert_eq!(per_line.tax_total, m("0.00 EUR"));
    let per_total = calc(
        Rounding::PerTotal,
        de(),
        PriceMode::TaxExclusive,
        lines,
        "0.00 EUR",
    )
    .await
    .unwrap();
    assert_eq!(per_total.tax_total, m("0.02 EUR"));
    let taxes: Vec<String> = per_total
        .lines
        .iter()
        .map(|l| l.amount.tax.to_string())
        .collect();
    assert_eq!(
        taxes,
        ["0.01 EUR", "0.01 EUR", "0.00 EUR", "0.00 EUR", "0.00 EUR"]
    );
}

#[tokio::test]
async fn rounding_is_half_to_even() {
    // 1.50 × 0.07 = 0.105 exactly: half to even gives 0.10 (half up would give 0.11).
    // 0.50 × 0.07 = 0.035 exactly: half to even gives 0.04.
    let b = calc(
        Rounding::PerLine,
        address("DE", None, "10115", "Berlin"),
        PriceMode::TaxExclusive,
        vec![
            line("A", TaxClass::reduced(), 1, "1.50 EUR", "0.00 EUR"),
            line("B", TaxClass::reduced(), 1, "0.50 EUR", "0.00 EUR"),
        ],
        "0.00 EUR",
    )
    .await
    .unwrap();
    assert_eq!(b.lines[0].amount.tax, m("0.10 EUR"));
    assert_eq!(b.lines[1].amount.tax, m("0.04 EUR"));
}

#[tokio::test]
async fn per_total_groups_shipping_with_its_rate() {
    // Germany inclusive, per total. 19 % group: t-shirt 23.80 + shipping 4.90 = 28.70,
    // tax 28.70 × 0.19 / 1.19 = 4.5823… → 4.58, spread 23.80 : 4.90 → 3.7980… and
    // 0.7819…: floors 3.79 and 0.78 (sum 4.57), the larger remainder (t-shirt, .80 vs
    // .19) gets the last cent: 3.80 and 0.78. 7 % group: coffee 8.97 → 0.59.
    // Total tax 4.58 + 0.59 = 5.17.
    let b = calc(
        Rounding::PerTotal,
        address("DE", None, "10115", "Berlin"),
        PriceMode::TaxInclusive,
        vec![
            line("TSHIRT", TaxClass::standard(), 2, "11.90 EUR", "0.00 EUR"),
            line("COFFEE", TaxClass::reduced(), 3, "2.99 EUR", "0.00 EUR"),
        ],
        "4.90 EUR",
    )
    .await
    .unwrap();
    assert_eq!(b.lines[0].amount.tax, m("3.80 EUR"));
    assert_eq!(b.lines[1].amount.tax, m("0.59 EUR"));
    assert_eq!(b.shipping.tax, m("0.78 EUR"));
    assert_eq!(b.tax_total, m("5.17 EUR"));
}

#[tokio::test]
async fn destinations_without_a_rule_are_untaxed_and_say_so() {
    let b = calc(
        Rounding::PerLine,
        address("JP", None, "100-0001", "Tokyo"),
        PriceMode::TaxExclusive,
        vec![line("A", TaxClass::standard(), 1, "10.00 USD", "0.00 USD")],
        "1.00 USD",
    )
    .await
    .unwrap();
    assert_eq!(b.tax_total, m("0.00 USD"));
    assert!(b.jurisdictions.is_empty());
}

#[tokio::test]
async fn bad_requests_and_rules_are_typed_errors() {
    let de = || address("DE", None, "10115", "Berlin");
    let run = |lines: Vec<TaxableLine>, shipping: &'static str| {
        calc(
            Rounding::PerLine,
            de(),
            PriceMode::TaxInclusive,
            lines,
            shipping,
        )
    };
    let std = TaxClass::standard;
    assert!(matches!(
        run(vec![line("A", std(), 1, "1.00 EUR", "1.01 EUR")], "0.00 EUR").await,
        Err(Error::Validation { field, .. }) if field == "lines[0].discount"
    ));
    assert!(matches!(
        run(vec![line("A", std(), 1, "-1.00 EUR", "0.00 EUR")], "0.00 EUR").await,
        Err(Error::Validation { field, .. }) if field == "lines[0].unit_price"
    ));
    assert!(matches!(
        run(
            vec![line("A", std(), 1, "1.00 USD", "0.00 USD")],
            "0.00 EUR"
        )
        .await,
        Err(Error::CurrencyMismatch { .. })
    ));
    assert!(matches!(
        run(
            vec![
                line("A", std(), 1, "1.00 EUR", "0.00 EUR"),
                line("A", std(), 2, "1.00 EUR", "0.00 EUR")
            ],
            "0.00 EUR"
        )
        .await,
        Err(Error::Validation { field, .. }) if field == "lines[1].sku"
    ));
    assert!(matches!(
        run(vec![line("A", std(), 0, "1.00 EUR", "0.00 EUR")], "0.00 EUR").await,
        Err(Error::Validation { field, .. }) if field == "lines[0].quantity"
    ));
    assert!(matches!(
        run(vec![], "0.00 EUR").await,
        Err(Error::Validation { .. })
    ));
    assert!(matches!(
        run(vec![line("A", std(), 1, "1.00 EUR", "0.00 EUR")], "-1.00 EUR").await,
        Err(Error::Validation { field, .. }) if field == "shipping"
    ));
    // Rules: a rate of 19 instead of 0.19, an empty region.
    assert!(
        TaxRules::new(
            Rounding::PerLine,
            vec![Jurisdiction::country("Germany", cc("DE"), dec!(19))]
        )
        .is_err()
    );
    assert!(
        TaxRules::new(
            Rounding::PerLine,
            vec![Jurisdiction::country("X", cc("US"), dec!(0.04)).region(" ")]
        )
        .is_err()
    );
    assert!(TaxClass::new("Standard Rate").is_err());
    // Rules deserialise through the same validation.
    let json = serde_json::to_string(&rules(Rounding::PerLine)).unwrap();
    let back: TaxRules = serde_json::from_str(&json).unwrap();
    assert_eq!(back, rules(Rounding::PerLine));
    let bad = json.replacen("\"0.19\"", "\"1.9\"", 1);
    assert!(serde_json::from_str::<TaxRules>(&bad).is_err(), "{bad}");
}

/// A calculator standing in for an external service that answers inconsistently.
#[derive(Debug)]
struct SloppyService;

#[async_trait::async_trait]
impl TaxCalculator for SloppyService {
    async fn calculate(&self, request: &TaxRequest) -> Result<TaxBreakdown> {
        let mut b = RuleBasedTax::new(rules(Rounding::PerLine)).compute(request)?;
        // Forgets to add one cent of tax to the total.
        b.tax_total = b.tax_total.checked_sub(&m("0.01 EUR"))?;
        Ok(b)
    }
}

#[tokio::test]
async fn calculate_checked_refuses_an_inconsistent_answer() {
    let request = TaxRequest {
        currency: Currency::EUR,
        destination: address("DE", None, "10115", "Berlin"),
        prices: PriceMode::TaxInclusive,
        lines: vec![line("A", TaxClass::standard(), 1, "11.90 EUR", "0.00 EUR")],
        shipping: m("0.00 EUR"),
    };
    assert!(SloppyService.calculate(&request).await.is_ok());
    let err = SloppyService.calculate_checked(&request).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Backend {
                retryable: false,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn germany_shipping_split_over_a_mixed_rate_cart() {
    // Shipping ancillary to goods of two rates is split by the goods' value
    // (23.80 : 8.97 of 32.77) and each part taxed at its goods' rate.
    // 4.90 → 490 × 2380 / 3277 = 355.87…, 490 × 897 / 3277 = 134.12…: floors 355 + 134,
    // the last cent to the larger remainder (t-shirt): parts 3.56 at 19 %, 1.34 at 7 %.
    let germany = |rounding| {
        TaxRules::new(
            rounding,
            vec![
                Jurisdiction::country("Germany", cc("DE"), dec!(0.19))
                    .class_rate(TaxClass::reduced(), dec!(0.07))
                    .shipping(ShippingTaxRule::SplitOverLines),
            ],
        )
        .unwrap()
    };
    let request = TaxRequest {
        currency: Currency::EUR,
        destination: address("DE", None, "10115", "Berlin"),
        prices: PriceMode::TaxInclusive,
        lines: vec![
            line("TSHIRT", TaxClass::standard(), 2, "11.90 EUR", "0.00 EUR"),
            line("COFFEE", TaxClass::reduced(), 3, "2.99 EUR", "0.00 EUR"),
        ],
        shipping: m("4.90 EUR"),
    };

    // Per line: shipping VAT 3.56 × 0.19 / 1.19 + 1.34 × 0.07 / 1.07
    // = 0.56840… + 0.08766… = 0.65607… → 0.66 (at 19 % alone it would be 0.78), net 4.24.
    // Totals: tax 3.80 + 0.59 + 0.66 = 5.05, gross 37.67, net 32.62.
    // Reported rate (3.56 × 0.19 + 1.34 × 0.07) / 4.90 = 0.157183… → 0.157184.
    let b = RuleBasedTax::new(germany(Rounding::PerLine))
        .calculate_checked(&request)
        .await
        .unwrap();
    assert_eq!(
        (b.shipping.net, b.shipping.tax),
        (m("4.24 EUR"), m("0.66 EUR"))
    );
    assert_eq!(b.shipping.rate, dec!(0.157184));
    assert_eq!(totals(&b), t("32.62 EUR", "5.05 EUR", "37.67 EUR"));

    // Per total: 19 % group 23.80 + 3.56 = 27.36 → 4.3684… → 4.37, spread 2380 : 356 →
    // 380.13… and 56.86…: 380 + 56, last cent to shipping (.86 > .13): 3.80 and 0.57.
    // 7 % group 8.97 + 1.34 = 10.31 → 0.6744… → 0.67, spread 897 : 134 → 58.29… and
    // 8.70…: 58 + 8, last cent to shipping: 0.58 and 0.09.
    // Shipping VAT 0.57 + 0.09 = 0.66; total VAT 3.80 + 0.58 + 0.66 = 5.04.
    let b = RuleBasedTax::new(germany(Rounding::PerTotal))
        .calculate_checked(&request)
        .await
        .unwrap();
    assert_eq!(b.lines[0].amount.tax, m("3.80 EUR"));
    assert_eq!(b.lines[1].amount.tax, m("0.58 EUR"));
    assert_eq!(b.shipping.tax, m("0.66 EUR"));
    assert_eq!(b.tax_total, m("5.04 EUR"));
}
