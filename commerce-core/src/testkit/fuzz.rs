//! The bodies of the `fuzz/` targets, one per parser. Each takes arbitrary bytes and
//! panics only when a property of the parser breaks, so the same functions run under
//! `cargo fuzz` (libFuzzer, nightly) and as ordinary tests on stable
//! (`commerce-core/tests/fuzz_bodies.rs` feeds them proptest-generated input and the
//! seed corpus in `fuzz/seeds/`).
//!
//! ```
//! commerce_core::testkit::fuzz::money(b"12.34 USD");
//! commerce_core::testkit::fuzz::category_path(b"Electronics >  Phones");
//! commerce_core::testkit::fuzz::domain_json(br#"{"amount":"1","currency":"USD"}"#);
//! ```

use std::fmt::Debug;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cart::{Cart, CartItem, CartLimits, CartOwner};
use crate::catalog::{CategoryPath, NewProduct, Product, Slug, import_bestbuy};
use crate::clock::{Clock, ManualClock};
use crate::event::{DomainEvent, EventEnvelope};
use crate::id::{
    CartId, CategoryId, ConsumerName, CustomerId, EventId, IdempotencyKey, JobId, LocationId,
    OrderId, ProductId, SellerId, Sku,
};
use crate::inventory::{Reservation, ReservationRequest, StockLevel};
use crate::money::{Currency, Money};
use crate::order::{NewOrder, Order, Transition};
use crate::store::{CreateOutcome, ProductQuery, QueuedJob};

/// Serialises `value` and reads it back: the result must equal it.
fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(value: &T) {
    let json = serde_json::to_string(value).expect("a parsed value must serialise");
    let back: T = serde_json::from_str(&json)
        .unwrap_or_else(|e| panic!("{json} (serialised from {value:?}) does not parse back: {e}"));
    assert_eq!(
        &back, value,
        "JSON round trip changed the value (via {json})"
    );
}

/// Parses `data` as JSON of `T`; if that works, checks the round trip.
fn json_round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(data: &[u8]) -> Option<T> {
    let value = serde_json::from_slice::<T>(data).ok()?;
    round_trip(&value);
    Some(value)
}

/// `Money` and `Currency` parsing (text and serde) and arithmetic on what parses.
///
/// Properties: whatever parses displays in the currency's minor units and parses back
/// equal; minor units round-trip; serde round-trips; `a|b` pairs that both parse add,
/// subtract and compare without panicking, commutatively, and never across currencies.
pub fn money(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = Currency::parse(&text);
    let parsed: Vec<Money> = text
        .split('|')
        .filter_map(|part| part.parse::<Money>().ok())
        .collect();
    for m in &parsed {
        assert_eq!(
            m.amount().scale(),
            m.currency().minor_units(),
            "{m:?} is not at its currency's scale"
        );
        let shown = m.to_string();
        let back: Money = shown
            .parse()
            .unwrap_or_else(|e| panic!("Display of {m:?} ({shown}) does not parse: {e}"));
        assert_eq!(&back, m);
        assert_eq!(
            Money::from_minor_units(m.to_minor_units(), m.currency())
                .ok()
                .as_ref(),
            Some(m),
            "minor units round trip"
        );
        round_trip(m);
    }
    if let [a, b, ..] = parsed.as_slice() {
        let sum = a.checked_add(b);
        let flipped = b.checked_add(a);
        assert_eq!(
            sum.as_ref().ok(),
            flipped.as_ref().ok(),
            "addition commutes"
        );
        if a.currency() != b.currency() {
            assert!(
                sum.is_err() && a.try_cmp(b).is_err(),
                "two currencies never combine"
            );
        } else if let Ok(s) = sum {
            assert_eq!(s.checked_sub(b).ok().as_ref(), Some(a), "(a + b) - b == a");
        }
        let _ = a.checked_mul(b.to_minor_units().unsigned_abs() % 1000);
        let _ = a.mul_decimal_rounded(b.amount());
    }
    if let Some(m) = json_round_trip::<Money>(data) {
        assert_eq!(m.amount().scale(), m.currency().minor_units());
    }
    let _ = json_round_trip::<Currency>(data);
}

fn check_id<T>(text: &str, new: fn(String) -> crate::Result<T>, as_str: fn(&T) -> &str, max: usize)
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    match new(text.to_owned()) {
        Ok(id) => {
            assert_eq!(as_str(&id), text, "a valid id keeps its text");
            assert!(!text.is_empty() && text.len() <= max);
            round_trip(&id);
        }
        Err(crate::Error::Validation { .. }) => {}
        Err(other) => panic!("an invalid id must be a validation error, got {other:?}"),
    }
}

/// Identifier validation (constructors and serde) for every id type.
///
/// Properties: a value is accepted iff its constructor accepts it; accepted ids keep
/// their text, respect their length limit and round-trip through JSON; rejections are
/// `Validation` errors; customer cart ids derived from valid customer ids are valid.
pub fn ids(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    check_id(&text, ProductId::new, ProductId::as_str, ProductId::MAX_LEN);
    check_id(&text, Sku::new, Sku::as_str, Sku::MAX_LEN);
    check_id(&text, SellerId::new, SellerId::as_str, SellerId::MAX_LEN);
    check_id(
        &text,
        CustomerId::new,
        CustomerId::as_str,
        CustomerId::MAX_LEN,
    );
    check_id(&text, CartId::new, CartId::as_str, CartId::MAX_LEN);
    check_id(&text, OrderId::new, OrderId::as_str, OrderId::MAX_LEN);
    check_id(
        &text,
        LocationId::new,
        LocationId::as_str,
        LocationId::MAX_LEN,
    );
    check_id(
        &text,
        CategoryId::new,
        CategoryId::as_str,
        CategoryId::MAX_LEN,
    );
    check_id(
        &text,
        IdempotencyKey::new,
        IdempotencyKey::as_str,
        IdempotencyKey::MAX_LEN,
    );
    check_id(
        &text,
        ConsumerName::new,
        ConsumerName::as_str,
        ConsumerName::MAX_LEN,
    );
    check_id(&text, Slug::new, Slug::as_str, Slug::MAX_LEN);
    if let Ok(customer) = CustomerId::new(text.to_string()) {
        let cart = CartId::for_customer(&customer);
        assert!(CartId::new(cart.as_str()).is_ok() && !cart.is_guest());
    }
    if let Ok(cart) = CartId::new(text.to_string()) {
        let _ = cart.is_guest();
    }
    let slug = Slug::from_title(&text);
    assert!(
        Slug::new(slug.as_str()).is_ok(),
        "Slug::from_title({text:?}) = {slug:?} is invalid"
    );
    for n in [2, 20, u32::MAX] {
        assert!(Slug::new(slug.with_suffix(n).as_str()).is_ok());
    }
    if let Some(sku) = json_round_trip::<Sku>(data) {
        assert!(Sku::new(sku.as_str()).is_ok());
    }
    let _ = json_round_trip::<CartId>(data);
    let _ = json_round_trip::<EventId>(data);
    let _ = json_round_trip::<JobId>(data);
}

/// Category paths: parsing, normalisation, the tree operations, and the Best Buy import
/// of arbitrary JSON.
///
/// Properties: normalisation is idempotent; depth, segments, name, parent and ancestors
/// agree; a path contains itself and its children, whose text lies in
/// `subtree_range` (the path itself does not); serde round-trips. For an import that
/// succeeds, every node's ancestors are in the tree and every record is counted once
/// (kept, merged or rejected).
pub fn category_path(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(p) = CategoryPath::parse(&text) {
        let again = CategoryPath::parse(p.as_str())
            .unwrap_or_else(|e| panic!("normalised {p:?} does not parse: {e}"));
        assert_eq!(again, p, "normalisation is idempotent");
        let depth = p.depth();
        assert!((1..=CategoryPath::MAX_DEPTH).contains(&depth));
        let segments: Vec<&str> = p.segments().collect();
        assert_eq!(segments.len(), depth);
        assert_eq!(Some(&p.name()), segments.last());
        assert_eq!(p.ancestors().len(), depth - 1);
        for a in p.ancestors() {
            assert!(a.is_ancestor_of(&p) && a.contains(&p) && !p.contains(&a));
        }
        assert_eq!(p.parent().is_some(), depth > 1);
        assert!(p.contains(&p) && !p.is_ancestor_of(&p));
        assert!(p.root().contains(&p));
        let (lower, upper) = p.subtree_range();
        assert!(lower < upper);
        assert!(!(lower.as_str() <= p.as_str() && p.as_str() < upper.as_str()));
        if let Ok(child) = p.child("x") {
            assert!(p.is_ancestor_of(&child));
            assert!(lower.as_str() <= child.as_str() && child.as_str() < upper.as_str());
        }
        round_trip(&p);
    }
    if let Some(p) = json_round_trip::<CategoryPath>(data) {
        assert_eq!(CategoryPath::parse(p.as_str()).ok(), Some(p));
    }
    if let Ok(report) = import_bestbuy(&text) {
        let kept = report.tree.len() - report.implied.len();
        assert_eq!(
            report.rejected.len() + report.merged.len() + kept,
            report.records,
            "every record is kept, merged or rejected exactly once"
        );
        for c in report.tree.iter() {
            for a in c.path.ancestors() {
                assert!(
                    report.tree.get(&a).is_some(),
                    "{a} (ancestor of {}) is missing",
                    c.path
                );
            }
        }
        let _ = report.summary();
    }
}

/// JSON of the domain types: whatever parses round-trips, and using it (validation,
/// totals, the status machine) does not panic.
pub fn domain_json(data: &[u8]) {
    let now = ManualClock::default().now();
    if let Some(p) = json_round_trip::<Product>(data) {
        let _ = p.validate();
        let _ = p.min_price();
    }
    if let Some(new) = json_round_trip::<NewProduct>(data) {
        if let Ok(p) = new.into_product(Slug::from_title("fuzz"), now) {
            round_trip(&p);
        }
    }
    if let Some(cart) = json_round_trip::<Cart>(data) {
        let _ = cart.subtotal(Currency::USD);
        let _ = cart.total_quantity();
        let mut target = Cart::new(
            CartId::for_customer(&CustomerId::new("fuzz").expect("valid")),
            CartOwner::Customer(CustomerId::new("fuzz").expect("valid")),
            now,
            &CartLimits::default(),
        );
        let _ = target.merge_from(&cart, &Default::default(), now, &CartLimits::default());
        round_trip(&target);
    }
    if let Some(item) = json_round_trip::<CartItem>(data) {
        let mut cart = Cart::new(
            CartId::new_guest(),
            CartOwner::Guest,
            now,
            &CartLimits::default(),
        );
        let _ = cart.add_item(item, now, &CartLimits::default());
    }
    if let Some(order) = json_round_trip::<NewOrder>(data) {
        if let Ok(o) = order.into_order(now) {
            round_trip(&o);
        }
    }
    if let Some(o) = json_round_trip::<Order>(data) {
        let _ = o.currency();
    }
    if let Some(t) = json_round_trip::<Transition>(data) {
        let _ = t.validate();
    }
    if let Some(r) = json_round_trip::<ReservationRequest>(data) {
        let _ = r.normalized_lines();
    }
    let _ = json_round_trip::<Reservation>(data);
    let _ = json_round_trip::<StockLevel>(data);
    let _ = json_round_trip::<DomainEvent>(data);
    let _ = json_round_trip::<EventEnvelope>(data);
    let _ = json_round_trip::<ProductQuery>(data);
    let _ = json_round_trip::<CreateOutcome>(data);
    let _ = json_round_trip::<QueuedJob>(data);
}
