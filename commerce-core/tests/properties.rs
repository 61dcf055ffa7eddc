//! Properties of the domain types over the kit's strategies: every generated value is
//! valid, round-trips through JSON, and the reference rules (cart merge, reservation
//! normalisation, order totals, money arithmetic, category paths) keep their promises.
//! `PROPTEST_CASES` raises the number of cases (256).

use std::collections::BTreeMap;

use commerce_core::cart::{Cart, CartOwner};
use commerce_core::catalog::{CategoryPath, Product};
use commerce_core::clock::{Clock, ManualClock};
use commerce_core::id::{CartId, CustomerId, Sku};
use commerce_core::money::Money;
use commerce_core::testkit::strategies;
use commerce_core::{Currency, Error};
use proptest::prelude::*;

fn round_trips<T>(value: &T) -> Result<(), TestCaseError>
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let json = serde_json::to_string(value).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let back: T = serde_json::from_str(&json)
        .map_err(|e| TestCaseError::fail(format!("{json} does not parse back: {e}")))?;
    prop_assert_eq!(&back, value, "via {}", json);
    Ok(())
}

/// `PROPTEST_CASES` if set, else `default` (for the properties whose values are big).
fn cases(default: u32) -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = default;
    }
    config
}

proptest! {
    #![proptest_config(cases(64))]

    #[test]
    fn generated_values_are_valid_and_round_trip(
        product in strategies::product(),
        cart in strategies::cart(),
        order in strategies::order(),
        event in strategies::domain_event(),
        request in strategies::reservation_request(),
        transition in strategies::transition(),
    ) {
        prop_assert!(product.validate().is_ok(), "{:?}", product.validate());
        round_trips(&product)?;
        round_trips(&cart)?;
        round_trips(&order)?;
        round_trips(&event)?;
        round_trips(&request)?;
        round_trips(&transition)?;
        prop_assert!(request.normalized_lines().is_ok());
        prop_assert!(transition.validate().is_ok());
    }

    #[test]
    fn new_products_become_valid_products(new in strategies::new_product(), slug in strategies::slug()) {
        let p: Product = new.clone().into_product(slug, ManualClock::default().now()).expect("valid");
        prop_assert_eq!(p.version, 1);
        prop_assert_eq!(p.variants.len(), new.variants.len());
    }
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn ids_and_paths_round_trip(
        sku in strategies::sku(),
        cart_id in strategies::cart_id(),
        key in strategies::idempotency_key(),
        path in strategies::category_path(),
        slug in strategies::slug(),
        at in strategies::timestamp(),
    ) {
        round_trips(&sku)?;
        round_trips(&cart_id)?;
        round_trips(&key)?;
        round_trips(&path)?;
        round_trips(&slug)?;
        round_trips(&at)?;
        prop_assert_eq!(CategoryPath::parse(path.as_str()).ok(), Some(path));
    }

    #[test]
    fn money_arithmetic_is_exact_and_never_mixes_currencies(
        a in strategies::money(),
        b in strategies::money(),
        q in 0u64..1000,
    ) {
        round_trips(&a)?;
        prop_assert_eq!(a.to_string().parse::<Money>().ok(), Some(a));
        if a.currency() == b.currency() {
            let sum = a.checked_add(&b).expect("in range");
            prop_assert_eq!(sum.checked_sub(&b).ok(), Some(a));
            prop_assert_eq!(sum.to_minor_units(), a.to_minor_units() + b.to_minor_units());
            prop_assert_eq!(a.try_cmp(&b).ok(), Some(a.amount().cmp(&b.amount())));
        } else {
            let mismatch = |r: commerce_core::Result<Money>| matches!(r, Err(Error::CurrencyMismatch { .. }));
            prop_assert!(mismatch(a.checked_add(&b)), "adding two currencies must be a CurrencyMismatch");
            prop_assert!(mismatch(a.checked_sub(&b)));
            prop_assert!(a.try_cmp(&b).is_err());
        }
        let exact = i128::from(a.to_minor_units()) * i128::from(q);
        let max = (i128::from(Money::MAX_MAJOR_UNITS) * 10i128.pow(a.currency().minor_units()))
            .min(i128::from(i64::MAX));
        match a.checked_mul(q) {
            Ok(times) => prop_assert_eq!(i128::from(times.to_minor_units()), exact),
            Err(e) => {
                prop_assert!(matches!(e, Error::Validation { .. }), "{e}");
                prop_assert!(exact.abs() > max, "{a:?} x {q} is in range but was refused");
            }
        }
    }

    #[test]
    fn reservation_lines_normalise_by_sku(request in strategies::reservation_request()) {
        let lines = request.normalized_lines().expect("valid");
        prop_assert!(lines.windows(2).all(|w| w[0].sku < w[1].sku), "sorted, one line per SKU");
        let mut want: BTreeMap<&Sku, u64> = BTreeMap::new();
        for l in &request.lines {
            *want.entry(&l.sku).or_default() += u64::from(l.quantity);
        }
        let got: BTreeMap<&Sku, u64> = lines.iter().map(|l| (&l.sku, u64::from(l.quantity))).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn order_totals_add_up(new in strategies::new_order()) {
        let order = new.clone().into_order(ManualClock::default().now()).expect("valid order");
        let currency = order.currency();
        let mut subtotal = Money::zero(currency);
        for (line, input) in order.lines.iter().zip(&new.lines) {
            prop_assert_eq!(line.line_total, input.unit_price.checked_mul(u64::from(input.quantity)).expect("fits"));
            subtotal = subtotal.checked_add(&line.line_total).expect("fits");
        }
        prop_assert_eq!(order.totals.subtotal, subtotal);
        let total = subtotal.checked_add(&new.shipping).and_then(|t| t.checked_add(&new.tax)).expect("fits");
        prop_assert_eq!(order.totals.total, total);
    }

    #[test]
    fn a_failed_cart_write_changes_nothing(
        cart in strategies::cart(),
        item in strategies::cart_item(Currency::USD),
        limits in strategies::cart_limits(),
    ) {
        let now = cart.updated_at;
        let mut after = cart.clone();
        let sku = item.sku.clone();
        match after.add_item(item, now, &limits) {
            Ok(()) => {
                prop_assert_eq!(after.version, cart.version + 1);
                let line = after.item(&sku).expect("the added line");
                prop_assert!(line.quantity <= limits.max_line_quantity);
                prop_assert!(after.items.len() <= cart.items.len().max(limits.max_lines as usize));
            }
            Err(_) => prop_assert_eq!(after, cart),
        }
    }

    #[test]
    fn merging_never_lowers_a_customer_line_nor_passes_caps(
        customer_cart in strategies::cart(),
        guest_cart in strategies::cart(),
        caps in strategies::merge_caps(),
        limits in strategies::cart_limits(),
    ) {
        let now = customer_cart.updated_at.max(guest_cart.updated_at);
        let customer = CustomerId::new("c1").expect("valid");
        let mut target = Cart { id: CartId::for_customer(&customer), owner: CartOwner::Customer(customer), ..customer_cart.clone() };
        let report = target.merge_from(&guest_cart, &caps, now, &limits);
        prop_assert_eq!(target.version, customer_cart.version + 1);
        for before in &customer_cart.items {
            let after = target.item(&before.sku).expect("a customer line is never removed");
            prop_assert!(after.quantity >= before.quantity, "a merge lowered {}", before.sku);
        }
        for line in &target.items {
            let had = customer_cart.item(&line.sku).map_or(0, |l| l.quantity);
            let cap = caps.get(&line.sku).copied().unwrap_or(u32::MAX).min(limits.max_line_quantity);
            prop_assert!(line.quantity <= had.max(cap), "{} went past its cap", line.sku);
        }
        for g in &guest_cart.items {
            let merged = target.item(&g.sku).is_some_and(|l| customer_cart.item(&g.sku).is_none_or(|c| l.quantity > c.quantity));
            let dropped = report.dropped.contains(&g.sku);
            let capped_to_nothing = report.capped.contains(&g.sku);
            prop_assert!(merged || dropped || capped_to_nothing, "{} is merged, capped or dropped", g.sku);
            prop_assert!(!(merged && dropped), "{} is both merged and dropped", g.sku);
        }
        prop_assert!(target.items.len() <= customer_cart.items.len().max(limits.max_lines as usize));
        let currencies: std::collections::BTreeSet<_> = target.items.iter().map(|i| i.unit_price.currency()).collect();
        prop_assert!(currencies.len() <= 1, "a merge mixed currencies: {:?}", currencies);
    }

    /// The policy of `Cart::merge_from`: guest lines in another currency are dropped
    /// and reported, including a SKU the customer already has.
    #[test]
    fn merging_drops_every_line_in_another_currency(
        customer_cart in strategies::cart().prop_filter("has lines", |c| !c.items.is_empty()),
        guest_cart in strategies::cart(),
        shared in any::<bool>(),
        limits in strategies::cart_limits(),
    ) {
        let currency = customer_cart.currency().expect("has lines");
        prop_assume!(guest_cart.currency().is_some_and(|g| g != currency));
        let mut guest_cart = guest_cart;
        if shared {
            // The guest also has one of the customer's SKUs, in its own currency.
            guest_cart.items[0].sku = customer_cart.items[0].sku.clone();
        }
        let now = customer_cart.updated_at.max(guest_cart.updated_at);
        let mut target = customer_cart.clone();
        let report = target.merge_from(&guest_cart, &BTreeMap::new(), now, &limits);
        prop_assert_eq!(&target.items, &customer_cart.items, "no line of another currency may change the cart");
        let guest_skus: Vec<Sku> = guest_cart.items.iter().map(|i| i.sku.clone()).collect();
        prop_assert_eq!(report.dropped, guest_skus);
    }

    #[test]
    fn subtree_ranges_bracket_exactly_the_descendants(a in strategies::category_path(), b in strategies::category_path()) {
        let (lower, upper) = a.subtree_range();
        let inside = lower.as_str() <= b.as_str() && b.as_str() < upper.as_str();
        prop_assert_eq!(inside, a.is_ancestor_of(&b), "{} vs {}", a, b);
        if let Ok(child) = a.child(b.name()) {
            prop_assert!(a.is_ancestor_of(&child));
        }
    }
}
