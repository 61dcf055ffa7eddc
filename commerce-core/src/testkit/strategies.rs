//! [proptest](https://docs.rs/proptest) strategies for every domain type.
//!
//! Each strategy yields **valid** values: what constructors and stores must accept and
//! what serialisation must round-trip. Timestamps have whole microseconds (what
//! PostgreSQL keeps), amounts stay far from overflow when multiplied by quantities, and
//! text never holds control characters unless the field allows them.
//!
//! ```
//! use proptest::prelude::*;
//! use commerce_core::testkit::strategies;
//!
//! proptest!(|(p in strategies::product())| {
//!     prop_assert!(p.validate().is_ok());
//!     let json = serde_json::to_string(&p).unwrap();
//!     prop_assert_eq!(serde_json::from_str::<commerce_core::catalog::Product>(&json).unwrap(), p);
//! });
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use proptest::prelude::*;

use crate::address::{Address, AddressInput};
use crate::cart::{Cart, CartAddresses, CartItem, CartLimits, CartOwner};
use crate::catalog::{
    AttributeValue, Attributes, Category, CategoryPath, Dimensions, NewProduct, Product,
    ProductStatus, ProductVariant, Rating, Slug,
};
use crate::clock::Timestamp;
use crate::event::DomainEvent;
use crate::id::{
    CartId, CategoryId, ConsumerName, CustomerId, IdempotencyKey, LocationId, OrderId, ProductId,
    SellerId, Sku,
};
use crate::inventory::{ReservationLine, ReservationRequest, ReservationState};
use crate::money::{Currency, Money};
use crate::order::{NewOrder, NewOrderLine, Order, OrderStatus, Transition};

/// Currencies with 0, 2, 3 and 4 minor units.
pub fn currency() -> impl Strategy<Value = Currency> {
    prop::sample::select(vec![
        "USD", "EUR", "GBP", "JPY", "KWD", "BHD", "CHF", "ISK", "CLF", "INR",
    ])
    .prop_map(|c| Currency::parse(c).unwrap_or(Currency::USD))
}

/// Any amount in `currency`, negative included, up to a trillion major units.
pub fn money_in(currency: Currency) -> impl Strategy<Value = Money> {
    let scale = 10i64.pow(currency.minor_units());
    (-1_000_000_000_000i64..=1_000_000_000_000i64, 0..scale).prop_map(move |(major, minor)| {
        let units = major * scale + if major < 0 { -minor } else { minor };
        Money::from_minor_units(units, currency).unwrap_or_else(|_| Money::zero(currency))
    })
}

/// Any amount in any currency.
pub fn money() -> impl Strategy<Value = Money> {
    currency().prop_flat_map(money_in)
}

/// A non-negative price in `currency`, at most a million major units (so a line of a
/// million units still fits).
pub fn price_in(currency: Currency) -> impl Strategy<Value = Money> {
    let scale = 10i64.pow(currency.minor_units());
    (0..=1_000_000 * scale).prop_map(move |units| {
        Money::from_minor_units(units, currency).unwrap_or_else(|_| Money::zero(currency))
    })
}

/// A time between 2000 and 2100, in whole microseconds.
pub fn timestamp() -> impl Strategy<Value = Timestamp> {
    (946_684_800_000_000i64..4_102_444_800_000_000i64).prop_map(|micros| {
        Utc.timestamp_micros(micros)
            .single()
            .unwrap_or(chrono::DateTime::<Utc>::UNIX_EPOCH)
    })
}

/// The text of an identifier: 1 to `max` bytes of `[A-Za-z0-9._:-]`.
pub fn id_text(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[A-Za-z0-9._:-]{{1,{max}}}"))
        .unwrap_or_else(|e| panic!("id regex: {e}"))
}

macro_rules! id_strategy {
    ($(#[$m:meta])* $name:ident, $ty:ty) => {
        $(#[$m])*
        pub fn $name() -> impl Strategy<Value = $ty> {
            id_text(<$ty>::MAX_LEN).prop_map(|s| <$ty>::new(s).unwrap_or_else(|e| panic!("{e}")))
        }
    };
}

id_strategy!(
    /// A [`ProductId`].
    product_id, ProductId
);
id_strategy!(
    /// A [`Sku`].
    sku, Sku
);
id_strategy!(
    /// A [`SellerId`].
    seller_id, SellerId
);
id_strategy!(
    /// A [`CustomerId`].
    customer_id, CustomerId
);
id_strategy!(
    /// An [`OrderId`].
    order_id, OrderId
);
id_strategy!(
    /// A [`LocationId`].
    location_id, LocationId
);
id_strategy!(
    /// A [`CategoryId`].
    category_id, CategoryId
);
id_strategy!(
    /// A [`ConsumerName`].
    consumer_name, ConsumerName
);

/// An [`IdempotencyKey`]: 1 to 128 printable ASCII characters without spaces.
pub fn idempotency_key() -> impl Strategy<Value = IdempotencyKey> {
    proptest::string::string_regex("[!-~]{1,128}")
        .unwrap_or_else(|e| panic!("key regex: {e}"))
        .prop_map(|s| IdempotencyKey::new(s).unwrap_or_else(|e| panic!("{e}")))
}

/// A guest cart id (`g-` and 32 hex digits) or a customer's cart id.
pub fn cart_id() -> impl Strategy<Value = CartId> {
    prop_oneof![
        "[0-9a-f]{32}"
            .prop_map(|hex| CartId::new(format!("g-{hex}")).unwrap_or_else(|e| panic!("{e}"))),
        customer_id().prop_map(|c| CartId::for_customer(&c)),
    ]
}

/// A normalised category segment: letters, digits, spaces inside, and the punctuation
/// real trees use.
pub fn category_segment() -> impl Strategy<Value = String> {
    "[A-Za-z0-9&/+'(),.-]([A-Za-z0-9 &/+'(),.-]{0,14}[A-Za-z0-9&/+'(),.-])?"
}

/// A category path of 1 to 5 segments.
pub fn category_path() -> impl Strategy<Value = CategoryPath> {
    prop::collection::vec(category_segment(), 1..=5).prop_map(|segments| {
        CategoryPath::from_segments(&segments).unwrap_or_else(|e| panic!("{e}"))
    })
}

/// A category node.
pub fn category() -> impl Strategy<Value = Category> {
    (category_id(), category_path()).prop_map(|(id, path)| Category { id, path })
}

/// A slug.
pub fn slug() -> impl Strategy<Value = Slug> {
    "[a-z0-9]{1,12}(-[a-z0-9]{1,12}){0,4}"
        .prop_map(|s| Slug::new(s).unwrap_or_else(|e| panic!("{e}")))
}

/// Text of `min..=max` characters without control characters (and not blank when
/// `min > 0`): mostly printable ASCII (quotes and backslashes included), the rest from
/// the whole of Unicode outside the control ranges (multi-byte, combining, right-to-left,
/// astral).
pub fn text(min: usize, max: usize) -> impl Strategy<Value = String> {
    const NON_ASCII: &[std::ops::RangeInclusive<char>] =
        &['\u{a0}'..='\u{d7ff}', '\u{e000}'..='\u{10ffff}'];
    let ch = prop_oneof![
        3 => proptest::char::range(' ', '~'),
        1 => proptest::char::ranges(std::borrow::Cow::Borrowed(NON_ASCII)),
    ];
    prop::collection::vec(ch, min..=max)
        .prop_map(String::from_iter)
        .prop_filter("not blank", move |s| min == 0 || !s.trim().is_empty())
}

/// A product status.
pub fn product_status() -> impl Strategy<Value = ProductStatus> {
    prop::sample::select(ProductStatus::ALL.to_vec())
}

/// An order status.
pub fn order_status() -> impl Strategy<Value = OrderStatus> {
    prop::sample::select(OrderStatus::ALL.to_vec())
}

/// A reservation state.
pub fn reservation_state() -> impl Strategy<Value = ReservationState> {
    prop::sample::select(vec![
        ReservationState::Active,
        ReservationState::Confirmed,
        ReservationState::Released,
        ReservationState::Returned,
    ])
}

/// A finite attribute number, any magnitude.
pub fn attribute_number() -> impl Strategy<Value = f64> {
    prop_oneof![
        (-1_000_000i64..1_000_000).prop_map(|n| n as f64),
        (-100_000i64..100_000, 1u32..4).prop_map(|(n, d)| n as f64 / 10f64.powi(d as i32)),
        any::<f64>().prop_filter("finite", |f| f.is_finite()),
    ]
}

/// An attribute value: bool, finite number or text.
pub fn attribute_value() -> impl Strategy<Value = AttributeValue> {
    prop_oneof![
        any::<bool>().prop_map(AttributeValue::Bool),
        attribute_number().prop_map(AttributeValue::Number),
        text(0, 40).prop_map(AttributeValue::Text),
    ]
}

/// Up to 6 attributes with valid names.
pub fn attributes() -> impl Strategy<Value = Attributes> {
    prop::collection::btree_map("[a-z0-9_]{1,16}", attribute_value(), 0..6)
}

/// Parcel dimensions.
pub fn dimensions() -> impl Strategy<Value = Dimensions> {
    (1u32..5000, 1u32..5000, 1u32..5000).prop_map(|(length_mm, width_mm, height_mm)| Dimensions {
        length_mm,
        width_mm,
        height_mm,
    })
}

/// A rating, 0.0 to 5.0 stars.
pub fn rating() -> impl Strategy<Value = Rating> {
    (0u8..=50).prop_map(|t| Rating::from_tenths(t).unwrap_or_else(|e| panic!("{e}")))
}

/// A variant priced in `currency`.
pub fn variant(currency: Currency) -> impl Strategy<Value = ProductVariant> {
    (
        sku(),
        attributes(),
        price_in(currency),
        0u32..1_000_000,
        proptest::option::of(1u32..100_000),
        proptest::option::of(dimensions()),
    )
        .prop_map(
            |(sku, attributes, price, inventory_count, weight_grams, dimensions)| ProductVariant {
                sku,
                attributes,
                price,
                inventory_count,
                weight_grams,
                dimensions,
            },
        )
}

fn distinct_skus(mut variants: Vec<ProductVariant>) -> Vec<ProductVariant> {
    let mut seen = std::collections::HashSet::new();
    variants.retain(|v| seen.insert(v.sku.clone()));
    variants
}

/// A valid new product (1 to 4 variants with distinct SKUs, one currency).
pub fn new_product() -> impl Strategy<Value = NewProduct> {
    currency().prop_flat_map(|currency| {
        (
            (
                proptest::option::of(product_id()),
                seller_id(),
                text(1, 80),
                text(0, 80),
                category_path(),
                text(1, 30),
                price_in(currency),
            ),
            (
                prop::collection::vec(
                    "[a-z0-9]{1,16}".prop_map(|p| format!("https://img.example/{p}.jpg")),
                    0..3,
                ),
                prop::collection::vec(variant(currency), 1..4),
                attributes(),
                product_status(),
                proptest::option::of(rating()),
                0u32..100_000,
                0u64..1_000_000_000,
            ),
        )
            .prop_map(
                |(
                    (id, seller_id, title, description, category, brand, base_price),
                    (images, variants, attributes, status, rating, review_count, popularity),
                )| NewProduct {
                    id,
                    seller_id,
                    title,
                    description,
                    category,
                    brand,
                    base_price,
                    images,
                    variants: distinct_skus(variants),
                    attributes,
                    status,
                    rating,
                    review_count,
                    popularity,
                },
            )
    })
}

/// A valid stored product.
pub fn product() -> impl Strategy<Value = Product> {
    (
        new_product(),
        slug(),
        timestamp(),
        0i64..1_000_000_000,
        1u64..1000,
    )
        .prop_map(|(new, slug, created, later_micros, version)| {
            let mut p = new
                .into_product(slug, created)
                .unwrap_or_else(|e| panic!("strategy made an invalid product: {e}"));
            p.version = version;
            p.updated_at = created + chrono::Duration::microseconds(later_micros);
            p
        })
}

/// A cart owner.
pub fn cart_owner() -> impl Strategy<Value = CartOwner> {
    prop_oneof![
        Just(CartOwner::Guest),
        customer_id().prop_map(CartOwner::Customer)
    ]
}

/// A cart line in `currency`.
pub fn cart_item(currency: Currency) -> impl Strategy<Value = CartItem> {
    (
        product_id(),
        sku(),
        1u32..=99,
        price_in(currency),
        timestamp(),
    )
        .prop_map(
            |(product_id, sku, quantity, unit_price, added_at)| CartItem {
                product_id,
                sku,
                quantity,
                unit_price,
                added_at,
            },
        )
}

/// Cart limits (line quantity, lines, TTL of a minute to 30 days).
pub fn cart_limits() -> impl Strategy<Value = CartLimits> {
    (1u32..=999, 1u32..=200, 60u64..30 * 24 * 3600).prop_map(
        |(max_line_quantity, max_lines, ttl)| CartLimits {
            max_line_quantity,
            max_lines,
            ttl: Duration::from_secs(ttl),
        },
    )
}

/// A valid address: a country with a postal-code format (with its region where one is
/// required), one without, or a city state without a city; free text with non-ASCII
/// letters, optional fields present or not.
pub fn address() -> impl Strategy<Value = Address> {
    let place = prop::sample::select(vec![
        ("DE", None, Some("50667")),
        ("US", Some("ny"), Some("10001-1234")),
        ("CA", Some("QC"), Some("h2x1y4")),
        ("GB", None, Some("sw1a 1aa")),
        ("JP", None, Some("1000001")),
        ("AU", Some("NSW"), Some("2000")),
        ("IE", None, None),
        ("IE", None, Some("D02 X285")),
        ("SG", None, Some("018956")),
    ]);
    let text = "[A-Za-zÀ-ÿ][A-Za-z0-9À-ÿ .,'-]{0,39}";
    (
        place,
        text,
        text,
        prop::option::of(text),
        text,
        prop::option::of(text),
        prop::option::of("\\+[1-9][0-9]{6,12}"),
    )
        .prop_filter_map(
            "a valid address",
            |((country, region, postal), name, line1, line2, city, company, phone)| {
                Address::new(AddressInput {
                    name,
                    company,
                    line1,
                    line2,
                    city: if country == "SG" { String::new() } else { city },
                    region: region.map(str::to_owned),
                    postal_code: postal.map(str::to_owned),
                    country: country.to_owned(),
                    phone,
                })
                .ok()
            },
        )
}

/// Saved cart addresses: each of shipping and billing present or not.
pub fn cart_addresses() -> impl Strategy<Value = CartAddresses> {
    (prop::option::of(address()), prop::option::of(address()))
        .prop_map(|(shipping, billing)| CartAddresses { shipping, billing })
}

/// A cart: distinct SKUs in one currency, consistent times, addresses or not.
pub fn cart() -> impl Strategy<Value = Cart> {
    currency().prop_flat_map(|currency| {
        (
            cart_id(),
            cart_owner(),
            prop::collection::vec(cart_item(currency), 0..6),
            0u64..10_000,
            timestamp(),
            0i64..1_000_000_000,
            1i64..1_000_000_000_000,
            cart_addresses(),
        )
            .prop_map(
                |(id, owner, items, version, created_at, later, ttl, addresses)| {
                    let mut seen = std::collections::HashSet::new();
                    let items = items
                        .into_iter()
                        .filter(|i| seen.insert(i.sku.clone()))
                        .collect();
                    let updated_at = created_at + chrono::Duration::microseconds(later);
                    Cart {
                        id,
                        owner,
                        items,
                        version,
                        created_at,
                        updated_at,
                        expires_at: updated_at + chrono::Duration::microseconds(ttl),
                        addresses,
                    }
                },
            )
    })
}

/// A reservation line.
pub fn reservation_line() -> impl Strategy<Value = ReservationLine> {
    (sku(), 1u32..=1000).prop_map(|(sku, quantity)| ReservationLine { sku, quantity })
}

/// A valid reservation request (1 to 5 lines, TTL of a second to a day).
pub fn reservation_request() -> impl Strategy<Value = ReservationRequest> {
    (
        order_id(),
        prop::collection::vec(reservation_line(), 1..=5),
        1u64..86_400,
    )
        .prop_map(|(order_id, lines, ttl)| ReservationRequest {
            order_id,
            lines,
            ttl: Duration::from_secs(ttl),
        })
}

/// A valid new order: 1 to 5 lines with distinct SKUs in one currency.
pub fn new_order() -> impl Strategy<Value = NewOrder> {
    currency().prop_flat_map(|currency| {
        let line = (
            product_id(),
            sku(),
            text(0, 40),
            1u32..=1000,
            price_in(currency),
        )
            .prop_map(
                |(product_id, sku, title, quantity, unit_price)| NewOrderLine {
                    product_id,
                    sku,
                    title,
                    quantity,
                    unit_price,
                    tax: None,
                },
            );
        (
            proptest::option::of(order_id()),
            customer_id(),
            idempotency_key(),
            prop::collection::vec(line, 1..=5),
            price_in(currency),
            price_in(currency),
        )
            .prop_map(|(id, customer_id, idempotency_key, lines, shipping, tax)| {
                let mut seen = std::collections::HashSet::new();
                let lines = lines
                    .into_iter()
                    .filter(|l| seen.insert(l.sku.clone()))
                    .collect();
                NewOrder {
                    id,
                    customer_id,
                    idempotency_key,
                    lines,
                    shipping,
                    tax,
                    checkout: Default::default(),
                    promotions: Vec::new(),
                }
            })
    })
}

/// A stored order in any status.
pub fn order() -> impl Strategy<Value = Order> {
    (
        new_order(),
        timestamp(),
        order_status(),
        1u64..50,
        proptest::option::of("[A-Za-z0-9_]{1,40}"),
        0i64..1_000_000_000,
    )
        .prop_map(|(new, at, status, version, payment_ref, later)| {
            let mut o = new
                .into_order(at)
                .unwrap_or_else(|e| panic!("strategy made an invalid order: {e}"));
            o.status = status;
            o.version = version;
            o.payment_ref = payment_ref;
            o.updated_at = at + chrono::Duration::microseconds(later);
            o
        })
}

/// A legal order transition.
pub fn transition() -> impl Strategy<Value = Transition> {
    let legal: Vec<(OrderStatus, OrderStatus)> = OrderStatus::ALL
        .iter()
        .flat_map(|&a| OrderStatus::ALL.iter().map(move |&b| (a, b)))
        .filter(|(a, b)| a.can_transition_to(*b))
        .collect();
    (
        prop::sample::select(legal),
        text(0, 60),
        proptest::option::of("[A-Za-z0-9_]{1,40}"),
    )
        .prop_map(|((from, to), reason, payment_ref)| Transition {
            from,
            to,
            reason,
            payment_ref,
        })
}

/// A domain event of any kind.
pub fn domain_event() -> impl Strategy<Value = DomainEvent> {
    prop_oneof![
        (product_id(), 1u64..1000).prop_map(|(product_id, version)| DomainEvent::ProductChanged {
            product_id,
            version
        }),
        (sku(), location_id(), 0u64..1_000_000).prop_map(|(sku, location, available)| {
            DomainEvent::StockChanged {
                sku,
                location,
                available,
            }
        }),
        (
            order_id(),
            reservation_state(),
            prop::collection::vec(sku(), 1..4)
        )
            .prop_map(|(order_id, state, skus)| DomainEvent::ReservationChanged {
                order_id,
                state,
                skus
            }),
        (order_id(), customer_id()).prop_map(|(order_id, customer_id)| {
            DomainEvent::OrderCreated {
                order_id,
                customer_id,
            }
        }),
        (
            order_id(),
            prop::sample::select(
                OrderStatus::ALL
                    .iter()
                    .flat_map(|&a| OrderStatus::ALL.iter().map(move |&b| (a, b)))
                    .filter(|(a, b)| a.can_transition_to(*b))
                    .collect::<Vec<_>>()
            )
        )
            .prop_map(|(order_id, (from, to))| DomainEvent::OrderStatusChanged {
                order_id,
                from,
                to
            }),
    ]
}

/// Caps for a cart merge: up to 4 SKUs with 0 to 20 units.
pub fn merge_caps() -> impl Strategy<Value = BTreeMap<Sku, u32>> {
    prop::collection::btree_map(sku(), 0u32..20, 0..4)
}
