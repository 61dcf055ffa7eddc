//! The evaluator's examples and properties.

use chrono::{Duration, TimeZone, Utc};
use proptest::prelude::*;
use rust_decimal::Decimal;

use super::*;
use crate::Error;
use crate::catalog::CategoryPath;
use crate::clock::Timestamp;
use crate::id::{CustomerGroupId, ProductId, PromotionId, Sku};
use crate::money::{Currency, Money};

fn now() -> Timestamp {
    Utc.timestamp_opt(1_893_456_000, 0).unwrap()
}

fn m(s: &str) -> Money {
    s.parse().unwrap()
}

fn line(sku: &str, category: &str, quantity: u32, price: &str) -> PricedLine {
    PricedLine {
        sku: Sku::new(sku).unwrap(),
        product_id: ProductId::new(format!("p-{sku}")).unwrap(),
        category: CategoryPath::parse(category).unwrap(),
        quantity,
        unit_price: m(price),
    }
}

fn input(lines: Vec<PricedLine>, shipping: &str) -> EvaluationInput {
    EvaluationInput {
        currency: Currency::USD,
        lines,
        shipping: m(shipping),
        customer: CustomerInfo::default(),
        now: now(),
    }
}

fn promo(id: &str, action: Action) -> Promotion {
    Promotion::new(PromotionId::new(id).unwrap(), id, Currency::USD, action)
}

fn pct(p: i64, target: Target) -> Action {
    Action::PercentOff {
        percent: Decimal::from(p),
        target,
    }
}

fn off(amount: &str) -> Action {
    Action::AmountOff {
        amount: m(amount),
        target: Target::Order,
    }
}

fn auto(p: Promotion) -> Offer {
    Offer {
        promotion: p,
        exhausted: false,
    }
}

fn code(c: &str, p: Promotion) -> CodeLookup {
    CodeLookup::Found {
        code: CouponCode::parse(c).unwrap(),
        promotion: Box::new(p.with_code()),
        exhausted: false,
    }
}

fn run(i: &EvaluationInput, a: &[Offer], c: &[CodeLookup]) -> Evaluation {
    let e = evaluate(i, a, c, StackingPolicy::BestForCustomer).unwrap();
    check_invariants(i, &e).unwrap();
    e
}

/// What every evaluation must satisfy.
fn check_invariants(i: &EvaluationInput, e: &Evaluation) -> Result<(), String> {
    let cur = i.currency;
    let sum = |it: &mut dyn Iterator<Item = Money>| {
        Money::try_sum(cur, it.collect::<Vec<_>>().iter()).unwrap()
    };
    let line_discounts = sum(&mut e.lines.iter().map(|l| l.discount));
    if line_discounts != e.discount {
        return Err(format!(
            "lines sum to {line_discounts}, discount is {}",
            e.discount
        ));
    }
    let applied = sum(&mut e.applied.iter().map(|a| a.line_discount));
    if applied != e.discount {
        return Err(format!(
            "applied sum to {applied}, discount is {}",
            e.discount
        ));
    }
    let shipping = sum(&mut e.applied.iter().map(|a| a.shipping_discount));
    if shipping != e.shipping_discount {
        return Err("shipping discounts do not add up".into());
    }
    for l in &e.lines {
        let shares = sum(&mut l.shares.iter().map(|s| s.amount));
        if shares != l.discount || l.total.is_negative() || l.discount.is_negative() {
            return Err(format!("line {l:?} does not add up or is negative"));
        }
        if l.line_total.checked_sub(&l.discount).unwrap() != l.total {
            return Err(format!("line {l:?}: total is not line_total - discount"));
        }
    }
    if e.shipping_discount.try_cmp(&e.shipping).unwrap() == std::cmp::Ordering::Greater {
        return Err("shipping discount above shipping".into());
    }
    let expected = e
        .subtotal
        .checked_sub(&e.discount)
        .and_then(|x| x.checked_add(&e.shipping))
        .and_then(|x| x.checked_sub(&e.shipping_discount))
        .unwrap();
    if expected != e.total || e.total.is_negative() {
        return Err(format!(
            "total {} is not {expected} or is negative",
            e.total
        ));
    }
    Ok(())
}

#[test]
fn an_order_discount_is_allocated_by_largest_remainder() {
    let i = input(
        vec![
            line("A", "Shoes", 1, "10.00 USD"),
            line("B", "Shoes", 1, "10.00 USD"),
            line("C", "Shoes", 1, "10.00 USD"),
        ],
        "0.00 USD",
    );
    let e = run(&i, &[auto(promo("ten", off("10.00 USD")))], &[]);
    let d: Vec<String> = e.lines.iter().map(|l| l.discount.to_string()).collect();
    assert_eq!(d, ["3.34 USD", "3.33 USD", "3.33 USD"]);
    assert_eq!(e.total.to_string(), "20.00 USD");
}

#[test]
fn a_discount_larger_than_the_order_stops_at_zero() {
    let i = input(vec![line("A", "Shoes", 1, "3.00 USD")], "2.00 USD");
    let e = run(&i, &[auto(promo("big", off("50.00 USD")))], &[]);
    assert_eq!(e.discount.to_string(), "3.00 USD");
    assert_eq!(e.total.to_string(), "2.00 USD"); // shipping is not touched by AmountOff
}

#[test]
fn percentages_round_half_to_even_and_target_matching_lines() {
    let i = input(
        vec![
            line("A", "Apparel > Shoes > Running", 1, "0.25 USD"),
            line("B", "Books", 1, "10.00 USD"),
        ],
        "0.00 USD",
    );
    let shoes = Target::Lines {
        filter: LineFilter::category(CategoryPath::parse("Apparel > Shoes").unwrap()),
    };
    let e = run(&i, &[auto(promo("half", pct(50, shoes)))], &[]);
    // 0.125 rounds to 0.12 (half to even); books untouched.
    assert_eq!(e.lines[0].discount.to_string(), "0.12 USD");
    assert!(e.lines[1].discount.is_zero());
}

#[test]
fn fixed_price_buy_x_get_y_free_shipping_and_tiers() {
    let i = input(
        vec![
            line("A", "Socks", 3, "4.00 USD"),
            line("B", "Socks", 1, "2.00 USD"),
        ],
        "5.00 USD",
    );
    let socks = LineFilter::category(CategoryPath::parse("Socks").unwrap());
    let fixed = promo(
        "fixed",
        Action::FixedPrice {
            unit_price: m("3.00 USD"),
            filter: socks.clone(),
        },
    );
    let e = run(&i, &[auto(fixed)], &[]);
    assert_eq!(e.lines[0].discount.to_string(), "3.00 USD");
    assert!(e.lines[1].discount.is_zero());

    // Buy 1 get 1 over 4 units: the 2 cheapest (B at 2.00 and one A at 4.00) are free.
    let b1g1 = promo(
        "b1g1",
        Action::BuyXGetY {
            buy: 1,
            get: 1,
            filter: socks,
        },
    );
    let e = run(&i, &[auto(b1g1)], &[]);
    assert_eq!(e.lines[0].discount.to_string(), "4.00 USD");
    assert_eq!(e.lines[1].discount.to_string(), "2.00 USD");

    let e = run(&i, &[auto(promo("ship", Action::FreeShipping))], &[]);
    assert_eq!(e.shipping_discount.to_string(), "5.00 USD");
    assert_eq!(e.total.to_string(), "14.00 USD");

    let tiers = promo(
        "tiers",
        Action::Tiered {
            tiers: vec![
                Tier {
                    min_subtotal: m("10.00 USD"),
                    discount: TierDiscount::Amount {
                        amount: m("1.00 USD"),
                    },
                },
                Tier {
                    min_subtotal: m("14.00 USD"),
                    discount: TierDiscount::Percent {
                        percent: Decimal::from(10),
                    },
                },
            ],
        },
    );
    let e = run(&i, &[auto(tiers)], &[]);
    assert_eq!(e.discount.to_string(), "1.40 USD");
}

#[test]
fn codes_are_rejected_with_their_reason() {
    let i = input(vec![line("A", "Shoes", 1, "20.00 USD")], "0.00 USD");
    let expired = promo("old", off("1.00 USD")).with_window(
        Some(now() - Duration::days(2)),
        Some(now() - Duration::days(1)),
    );
    let future = promo("new", off("1.00 USD")).with_window(Some(now() + Duration::days(1)), None);
    let big_spender = promo("min", off("1.00 USD")).with_condition(Condition::MinSubtotal {
        amount: m("100.00 USD"),
    });
    let vip = promo("vip", off("1.00 USD")).with_condition(Condition::CustomerGroups {
        any_of: vec![CustomerGroupId::new("vip").unwrap()],
    });
    let euro = Promotion::new(
        PromotionId::new("euro").unwrap(),
        "euro",
        Currency::EUR,
        Action::FreeShipping,
    );
    let mut used_up = code("USED", promo("used", off("1.00 USD")));
    if let CodeLookup::Found { exhausted, .. } = &mut used_up {
        *exhausted = true;
    }
    let codes = [
        CodeLookup::Malformed {
            given: "<b>x".into(),
        },
        CodeLookup::Unknown {
            code: CouponCode::parse("NOPE").unwrap(),
        },
        code("OLD", expired),
        code("NEW", future),
        code("MIN", big_spender),
        code("VIP", vip),
        code("EURO", euro),
        used_up,
        code("GOOD", promo("good", off("2.00 USD"))),
        code("good", promo("good", off("2.00 USD"))),
        code("GOOD2", promo("good", off("2.00 USD"))),
    ];
    let e = run(&i, &[], &codes);
    let reasons: Vec<(String, RejectReason)> = e
        .rejected
        .iter()
        .map(|r| (r.code.clone(), r.reason))
        .collect();
    use RejectReason::*;
    assert_eq!(
        reasons,
        [
            ("<b>x".to_owned(), Malformed),
            ("NOPE".to_owned(), Unknown),
            ("OLD".to_owned(), Expired),
            ("NEW".to_owned(), NotYetActive),
            ("MIN".to_owned(), ConditionsNotMet),
            ("VIP".to_owned(), ConditionsNotMet),
            ("EURO".to_owned(), ConditionsNotMet),
            ("USED".to_owned(), LimitReached),
            ("GOOD".to_owned(), Duplicate),
            ("GOOD2".to_owned(), Duplicate),
        ]
    );
    assert_eq!(e.applied.len(), 1);
    assert_eq!(e.applied[0].code.as_ref().unwrap().as_str(), "GOOD");
}

#[test]
fn best_for_customer_picks_the_bigger_option() {
    let i = input(vec![line("A", "Shoes", 1, "100.00 USD")], "10.00 USD");
    let exclusive = promo("excl", pct(30, Target::Order)).exclusive();
    let a = promo("a", pct(10, Target::Order));
    let b = promo("b", Action::FreeShipping);
    let e = run(
        &i,
        &[auto(a.clone()), auto(b.clone())],
        &[code("BIG", exclusive.clone())],
    );
    assert_eq!(e.applied.len(), 1);
    assert_eq!(e.applied[0].promotion_id.as_str(), "excl");
    assert_eq!(e.discount.to_string(), "30.00 USD");

    // A smaller exclusive loses to the combination, and its code says why.
    let small = promo("small", pct(15, Target::Order)).exclusive();
    let e = run(
        &i,
        &[auto(a.clone()), auto(b.clone())],
        &[code("SMALL", small)],
    );
    assert_eq!(e.applied.len(), 2);
    assert_eq!(e.rejected[0].reason, RejectReason::NotCombinable);
    assert_eq!(e.total.to_string(), "90.00 USD");

    // Priority policy: the highest-priority candidate decides.
    let top = promo("top", pct(5, Target::Order))
        .exclusive()
        .with_priority(10);
    let e = evaluate(
        &i,
        &[auto(a), auto(b)],
        &[code("TOP", top)],
        StackingPolicy::Priority,
    )
    .unwrap();
    assert_eq!(e.applied.len(), 1);
    assert_eq!(e.discount.to_string(), "5.00 USD");
}

#[test]
fn combinable_promotions_apply_in_priority_order_on_what_is_left() {
    let i = input(vec![line("A", "Shoes", 1, "100.00 USD")], "0.00 USD");
    let first = promo("first", off("50.00 USD")).with_priority(5);
    let second = promo("second", pct(10, Target::Order));
    let e = run(&i, &[auto(second), auto(first)], &[]);
    assert_eq!(e.applied[0].promotion_id.as_str(), "first");
    assert_eq!(e.applied[1].line_discount.to_string(), "5.00 USD");
}

#[test]
fn bad_definitions_are_typed_errors() {
    let bad = [
        promo("neg", pct(-5, Target::Order)),
        promo("over", pct(101, Target::Order)),
        promo("zero", pct(0, Target::Order)),
        promo("negamt", off("-1.00 USD")),
        promo("eur", off("1.00 EUR")),
        promo("big", off("50.00 USD")).with_condition(Condition::MinSubtotal {
            amount: m("20.00 USD"),
        }),
        promo("window", off("1.00 USD")).with_window(Some(now()), Some(now())),
        promo(
            "bxgy",
            Action::BuyXGetY {
                buy: 0,
                get: 1,
                filter: LineFilter::all(),
            },
        ),
        promo("tiers", Action::Tiered { tiers: vec![] }),
        promo("limit", off("1.00 USD")).with_limits(Limits {
            total_uses: Some(0),
            ..Limits::default()
        }),
        promo("budget", off("1.00 USD")).with_limits(Limits {
            budget: Some(m("0.00 USD")),
            ..Limits::default()
        }),
        {
            let mut p = promo("name", off("1.00 USD"));
            p.name = "bad\u{0}name".into();
            p
        },
    ];
    for p in bad {
        let err = p.validate().expect_err(p.id.as_str());
        assert!(
            matches!(
                err,
                Error::Validation { .. } | Error::CurrencyMismatch { .. }
            ),
            "{}: {err:?}",
            p.id
        );
    }
    let expired = promo("gone", off("1.00 USD")).with_window(None, Some(now()));
    expired.validate().unwrap();
    assert!(expired.validate_at(now()).is_err());
    // Unknown currencies never parse into a promotion.
    let json = serde_json::to_string(&promo("ok", off("1.00 USD"))).unwrap();
    let json = json.replace("\"USD\"", "\"ZZZ\"");
    assert!(serde_json::from_str::<Promotion>(&json).is_err());
}

#[test]
fn invalid_carts_are_errors() {
    let mut i = input(vec![line("A", "Shoes", 1, "1.00 USD")], "0.00 USD");
    i.lines[0].quantity = 0;
    assert!(evaluate(&i, &[], &[], StackingPolicy::default()).is_err());
    let i = input(vec![line("A", "Shoes", 1, "1.00 EUR")], "0.00 USD");
    assert!(matches!(
        evaluate(&i, &[], &[], StackingPolicy::default()),
        Err(Error::CurrencyMismatch { .. })
    ));
    let i = input(vec![], "0.00 USD");
    assert!(evaluate(&i, &[], &[], StackingPolicy::default()).is_err());
}

fn action_strategy() -> impl Strategy<Value = Action> {
    let target = prop_oneof![
        Just(Target::Order),
        Just(Target::Lines {
            filter: LineFilter::category(CategoryPath::parse("C0").unwrap())
        }),
    ];
    let cents = |lo: i64, hi: i64| {
        (lo..hi).prop_map(|c| Money::from_minor_units(c, Currency::USD).unwrap())
    };
    prop_oneof![
        (1i64..=10_000, 0u32..3, target.clone()).prop_map(|(p, scale, target)| {
            Action::PercentOff {
                percent: Decimal::new(p, scale).min(Decimal::ONE_HUNDRED),
                target,
            }
        }),
        (cents(1, 100_000), target)
            .prop_map(|(amount, target)| Action::AmountOff { amount, target }),
        cents(0, 5_000).prop_map(|unit_price| Action::FixedPrice {
            unit_price,
            filter: LineFilter::all()
        }),
        (1u32..4, 1u32..3).prop_map(|(buy, get)| Action::BuyXGetY {
            buy,
            get,
            filter: LineFilter::all()
        }),
        Just(Action::FreeShipping),
        (cents(0, 5_000), cents(1, 2_000)).prop_map(|(min, amount)| Action::Tiered {
            tiers: vec![Tier {
                min_subtotal: Money::from_minor_units(
                    min.to_minor_units() + amount.to_minor_units(),
                    Currency::USD
                )
                .unwrap(),
                discount: TierDiscount::Amount { amount },
            }],
        }),
    ]
}

fn promotions_strategy() -> impl Strategy<Value = Vec<(Action, bool, i32, bool)>> {
    prop::collection::vec(
        (action_strategy(), any::<bool>(), -3i32..3, any::<bool>()),
        0..6,
    )
}

fn cart_strategy() -> impl Strategy<Value = (Vec<(u8, u32, i64)>, i64)> {
    (
        prop::collection::vec((0u8..3, 1u32..20, 0i64..1_000_000), 1..12),
        0i64..5_000,
    )
}

proptest! {
    #[test]
    fn allocations_are_exact_and_no_total_goes_negative(
        cart in cart_strategy(),
        promos in promotions_strategy(),
        best in any::<bool>(),
    ) {
        let (lines, shipping) = cart;
        let i = EvaluationInput {
            currency: Currency::USD,
            lines: lines
                .iter()
                .enumerate()
                .map(|(n, (cat, q, p))| PricedLine {
                    sku: Sku::new(format!("S{n}")).unwrap(),
                    product_id: ProductId::new(format!("P{n}")).unwrap(),
                    category: CategoryPath::parse(&format!("C{cat}")).unwrap(),
                    quantity: *q,
                    unit_price: Money::from_minor_units(*p, Currency::USD).unwrap(),
                })
                .collect(),
            shipping: Money::from_minor_units(shipping, Currency::USD).unwrap(),
            customer: CustomerInfo::default(),
            now: now(),
        };
        let mut automatic = Vec::new();
        let mut codes = Vec::new();
        for (n, (action, exclusive, priority, by_code)) in promos.into_iter().enumerate() {
            let mut p = promo(&format!("p{n}"), action).with_priority(priority);
            if exclusive {
                p = p.exclusive();
            }
            prop_assert!(p.validate().is_ok(), "generated an invalid promotion {:?}", p);
            if by_code {
                codes.push(code(&format!("CODE{n}"), p));
            } else {
                automatic.push(auto(p));
            }
        }
        let policy = if best { StackingPolicy::BestForCustomer } else { StackingPolicy::Priority };
        let e = evaluate(&i, &automatic, &codes, policy).unwrap();
        if let Err(why) = check_invariants(&i, &e) {
            return Err(TestCaseError::fail(why));
        }
        // Every code is either applied or rejected, never both, never lost.
        for c in &codes {
            let CodeLookup::Found { code, .. } = c else { continue };
            let applied = e.applied.iter().any(|a| a.code.as_ref() == Some(code));
            let rejected = e.rejected.iter().any(|r| r.code == code.as_str());
            prop_assert!(applied != rejected, "code {} applied={} rejected={}", code, applied, rejected);
        }
        // Best for customer never saves less than any single promotion alone.
        if best {
            let saved = e.discount.checked_add(&e.shipping_discount).unwrap();
            for offer in automatic.iter() {
                let alone = evaluate(&i, std::slice::from_ref(offer), &[], policy).unwrap();
                let alone_saved = alone.discount.checked_add(&alone.shipping_discount).unwrap();
                if offer.promotion.stacking == Stacking::Exclusive {
                    prop_assert!(saved.try_cmp(&alone_saved).unwrap() != std::cmp::Ordering::Less);
                }
            }
        }
    }
}

proptest! {
    /// The order checkout creates from a random cart and a random set of promotions
    /// (`discounted_order` and `NewOrder::into_order`, as `CheckoutService` runs them):
    /// line discounts sum to the order's discount and to what the promotions gave the
    /// lines, the shipping discounts come off shipping, total = subtotal - discount +
    /// shipping + tax, and nothing goes negative.
    #[test]
    fn no_order_total_goes_negative_at_checkout(
        cart in cart_strategy(),
        promos in promotions_strategy(),
        tax_bp in 0i64..3_000,
    ) {
        use crate::order::{NewOrder, NewOrderLine};
        use crate::id::{CustomerId, IdempotencyKey};
        let (lines, shipping) = cart;
        let priced: Vec<PricedLine> = lines
            .iter()
            .enumerate()
            .map(|(n, (cat, q, p))| PricedLine {
                sku: Sku::new(format!("S{n}")).unwrap(),
                product_id: ProductId::new(format!("P{n}")).unwrap(),
                category: CategoryPath::parse(&format!("C{cat}")).unwrap(),
                quantity: *q,
                unit_price: Money::from_minor_units(*p, Currency::USD).unwrap(),
            })
            .collect();
        let shipping = Money::from_minor_units(shipping, Currency::USD).unwrap();
        let i = EvaluationInput {
            currency: Currency::USD,
            lines: priced.clone(),
            shipping,
            customer: CustomerInfo::default(),
            now: now(),
        };
        let mut automatic = Vec::new();
        let mut codes = Vec::new();
        for (n, (action, exclusive, priority, by_code)) in promos.into_iter().enumerate() {
            let mut p = promo(&format!("p{n}"), action).with_priority(priority);
            if exclusive {
                p = p.exclusive();
            }
            if by_code {
                codes.push(code(&format!("CODE{n}"), p));
            } else {
                automatic.push(auto(p));
            }
        }
        let e = evaluate(&i, &automatic, &codes, StackingPolicy::BestForCustomer).unwrap();
        let base = NewOrder {
            id: None,
            customer_id: CustomerId::new("c1").unwrap(),
            idempotency_key: IdempotencyKey::new("k1").unwrap(),
            lines: priced
                .iter()
                .map(|l| NewOrderLine {
                    product_id: l.product_id.clone(),
                    sku: l.sku.clone(),
                    title: "t".into(),
                    quantity: l.quantity,
                    unit_price: l.unit_price,
                    tax: None,
                })
                .collect(),
            shipping,
            tax: Money::zero(Currency::USD),
            checkout: Default::default(),
            promotions: Vec::new(),
        };
        let rate = Decimal::new(tax_bp, 4);
        let new = crate::service::checkout::discounted_order(base, Some(&e), rate).unwrap();
        let order = new.into_order(now()).unwrap();
        let t = &order.totals;
        let zero = Money::zero(Currency::USD);
        let lines_discount = Money::try_sum(Currency::USD, order.lines.iter().map(|l| &l.discount)).unwrap();
        prop_assert_eq!(lines_discount, t.discount);
        prop_assert_eq!(t.discount, e.discount);
        let given = Money::try_sum(
            Currency::USD,
            order.promotions.iter().map(|p| p.amount().unwrap()).collect::<Vec<_>>().iter(),
        )
        .unwrap();
        prop_assert_eq!(given, e.discount.checked_add(&e.shipping_discount).unwrap());
        prop_assert_eq!(t.shipping, e.shipping.checked_sub(&e.shipping_discount).unwrap());
        let expected = t.subtotal.checked_sub(&t.discount).unwrap()
            .checked_add(&t.shipping).unwrap()
            .checked_add(&t.tax).unwrap();
        prop_assert_eq!(expected, t.total);
        for m in [&t.total, &t.shipping, &t.tax, &t.discount] {
            prop_assert!(!m.is_negative(), "negative amount in {:?}", t);
        }
        prop_assert!(t.subtotal.try_cmp(&t.discount).unwrap() != std::cmp::Ordering::Less);
        for l in &order.lines {
            prop_assert!(l.discount.try_cmp(&l.line_total).unwrap() != std::cmp::Ordering::Greater);
            prop_assert!(l.discount.try_cmp(&zero).unwrap() != std::cmp::Ordering::Less);
        }
    }
}
