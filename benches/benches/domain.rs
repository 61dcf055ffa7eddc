//! Criterion micro-benchmarks of the domain's hot paths: money arithmetic, cart
//! pricing, order state transitions and listing-query evaluation.
//!
//! `cargo bench -p commerce-benches --bench domain`

use std::hint::black_box;

use commerce_core::cart::{Cart, CartItem, CartLimits, CartOwner};
use commerce_core::catalog::{CategoryPath, CategoryTree, Slug};
use commerce_core::clock::{Clock, ManualClock};
use commerce_core::id::{CartId, CustomerId, IdempotencyKey};
use commerce_core::money::{Currency, Money};
use commerce_core::order::{NewOrder, NewOrderLine, OrderStatus};
use commerce_core::sample::SampleCatalog;
use commerce_core::store::ProductQuery;
use criterion::{Criterion, criterion_group, criterion_main};
use rust_decimal::Decimal;

fn money(c: &mut Criterion) {
    let a: Money = "1234.56 USD".parse().expect("valid");
    let b: Money = "0.99 USD".parse().expect("valid");
    c.bench_function("money/checked_add", |bench| {
        bench.iter(|| black_box(a).checked_add(black_box(&b)))
    });
    c.bench_function("money/checked_mul", |bench| {
        bench.iter(|| black_box(a).checked_mul(black_box(17)))
    });
    c.bench_function("money/mul_decimal_rounded (tax)", |bench| {
        let rate = Decimal::new(825, 4);
        bench.iter(|| black_box(a).mul_decimal_rounded(black_box(rate)))
    });
    c.bench_function("money/parse", |bench| {
        bench.iter(|| black_box("1234.56 USD").parse::<Money>())
    });
}

fn cart_pricing(c: &mut Criterion) {
    let clock = ManualClock::default();
    let now = clock.now();
    let limits = CartLimits::default();
    let mut cart = Cart::new(CartId::new_guest(), CartOwner::Guest, now, &limits);
    for i in 0..20u64 {
        let item = CartItem {
            product_id: SampleCatalog::product_id(i),
            sku: SampleCatalog::sku(i, 0),
            quantity: 1 + (i % 3) as u32,
            unit_price: Money::from_minor_units(999 + i as i64 * 100, Currency::USD)
                .expect("valid"),
            added_at: now,
        };
        cart.add_item(item, now, &limits).expect("fits");
    }
    c.bench_function("cart/subtotal (20 lines)", |bench| {
        bench.iter(|| black_box(&cart).subtotal(Currency::USD))
    });
    c.bench_function("cart/add_item merge (20 lines)", |bench| {
        let item = cart.items[10].clone();
        bench.iter(|| {
            let mut c = cart.clone();
            let mut one = item.clone();
            one.quantity = 1;
            c.add_item(one, now, &limits)
        })
    });
    let lines: Vec<NewOrderLine> = cart
        .items
        .iter()
        .map(|i| NewOrderLine {
            product_id: i.product_id.clone(),
            sku: i.sku.clone(),
            title: "Sample".into(),
            quantity: i.quantity,
            unit_price: i.unit_price,
            tax: None,
        })
        .collect();
    let new_order = NewOrder {
        id: None,
        customer_id: CustomerId::new("c1").expect("valid"),
        idempotency_key: IdempotencyKey::new("k1").expect("valid"),
        lines,
        shipping: Money::from_minor_units(499, Currency::USD).expect("valid"),
        tax: Money::from_minor_units(1234, Currency::USD).expect("valid"),
        checkout: Default::default(),
        promotions: Vec::new(),
    };
    c.bench_function("order/into_order totals (20 lines)", |bench| {
        bench.iter(|| black_box(new_order.clone()).into_order(now))
    });
}

fn order_transitions(c: &mut Criterion) {
    c.bench_function("order/status table walk", |bench| {
        bench.iter(|| {
            let mut legal = 0u32;
            for from in OrderStatus::ALL {
                for to in OrderStatus::ALL {
                    legal += u32::from(black_box(from).can_transition_to(black_box(to)));
                }
            }
            legal
        })
    });
}

fn query_building(c: &mut Criterion) {
    let tree = CategoryTree::generated();
    let sample = SampleCatalog::new(&tree, 1);
    let now = ManualClock::default().now();
    let products: Vec<_> = (0..1000)
        .map(|i| {
            let p = sample.product(i);
            let slug = Slug::from_title(&p.title);
            p.into_product(slug, now).expect("valid")
        })
        .collect();
    let query = ProductQuery::in_category(CategoryPath::parse("Electronics").expect("valid"));
    c.bench_function("catalog/ProductQuery::matches x1000", |bench| {
        bench.iter(|| {
            products
                .iter()
                .filter(|p| black_box(&query).matches(p))
                .count()
        })
    });
    c.bench_function("catalog/CategoryPath::parse", |bench| {
        bench.iter(|| CategoryPath::parse(black_box("Electronics > Phones > Smartphones")))
    });
    c.bench_function("catalog/Slug::from_title", |bench| {
        bench.iter(|| Slug::from_title(black_box("Apple iPhone 15 Pro (128 GB) - Black Titanium")))
    });
}

criterion_group!(
    benches,
    money,
    cart_pricing,
    order_transitions,
    query_building
);
criterion_main!(benches);
