//! Identifier newtypes that validate on construction and on deserialisation.
//!
//! Every identifier is 1 to 64 bytes (idempotency keys: 128; cart ids: 80) of ASCII
//! letters, digits and `.`, `_`, `:` or `-`, so it can go into a URL, a Redis key, a log
//! line or a SQL parameter without escaping surprises. Guest cart ids are 128 random
//! bits from the operating system's generator: unguessable.
//!
//! ```
//! use commerce_core::id::{CartId, CustomerId, Sku};
//!
//! let sku = Sku::new("IPH15-BLK-128")?;
//! assert_eq!(sku.as_str(), "IPH15-BLK-128");
//! assert!(Sku::new("").is_err());
//! assert!(Sku::new("drop table;").is_err());
//!
//! let guest = CartId::new_guest();
//! assert!(guest.is_guest());
//! let customer = CustomerId::new("cust-42")?;
//! assert_eq!(CartId::for_customer(&customer).as_str(), "c-cust-42");
//! # Ok::<(), commerce_core::Error>(())
//! ```

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

fn is_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-')
}

fn validate(field: &str, value: &str, max: usize, byte_ok: fn(u8) -> bool) -> Result<()> {
    if value.is_empty() {
        return Err(Error::validation(field, "must not be empty"));
    }
    if value.len() > max {
        return Err(Error::validation(
            field,
            format!("is {} bytes long, at most {max} allowed", value.len()),
        ));
    }
    if let Some(bad) = value.bytes().find(|&b| !byte_ok(b)) {
        return Err(Error::validation(
            field,
            format!(
                "contains {:?}; only ASCII letters, digits and the allowed punctuation may be used",
                bad as char
            ),
        ));
    }
    Ok(())
}

macro_rules! string_id {
    ($(#[$meta:meta])* $name:ident, $field:literal, $max:expr, $byte_ok:expr) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// The longest accepted value, in bytes.
            pub const MAX_LEN: usize = $max;

            /// Validates and wraps `value`.
            pub fn new(value: impl Into<String>) -> Result<Self> {
                let value = value.into();
                validate($field, &value, Self::MAX_LEN, $byte_ok)?;
                Ok($name(value))
            }

            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Wraps a value known to be valid (a constant, or a bound for range scans).
            #[allow(dead_code)]
            pub(crate) fn unchecked(value: &str) -> Self {
                $name(value.to_owned())
            }

            /// The identifier as an owned string.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = Error;
            fn try_from(s: String) -> Result<Self> {
                Self::new(s)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = Error;
            fn try_from(s: &str) -> Result<Self> {
                Self::new(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                $name::new(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

string_id!(
    /// A product's identifier. [`ProductId::generate`] makes time-ordered ids, so
    /// keyset pagination by id lists products in creation order.
    ProductId, "product_id", 64, is_id_byte
);
string_id!(
    /// A stock-keeping unit: one sellable variant of a product.
    Sku, "sku", 64, is_id_byte
);
string_id!(
    /// A marketplace seller.
    SellerId, "seller_id", 64, is_id_byte
);
string_id!(
    /// A signed-in customer.
    CustomerId, "customer_id", 64, is_id_byte
);
string_id!(
    /// A cart. Guest carts get unguessable random ids ([`CartId::new_guest`]); a
    /// customer's cart has a derived id ([`CartId::for_customer`]) and is protected by
    /// the owner check every [`CartStore`](crate::store::CartStore) call makes.
    CartId, "cart_id", 80, is_id_byte
);
string_id!(
    /// An order. [`OrderId::generate`] makes time-ordered ids.
    OrderId, "order_id", 64, is_id_byte
);
string_id!(
    /// A stock location (warehouse, store, dark store).
    LocationId, "location_id", 64, is_id_byte
);
string_id!(
    /// A category's identifier in its source system (Best Buy's `abcat0100000`).
    CategoryId, "category_id", 64, is_id_byte
);
string_id!(
    /// A client-chosen key that makes a checkout retry-safe: 1 to 128 printable ASCII
    /// characters, no spaces.
    IdempotencyKey, "idempotency_key", 128, |b: u8| b.is_ascii_graphic()
);
string_id!(
    /// A promotion (an automatic discount or the promotion behind coupon codes).
    PromotionId, "promotion_id", 64, is_id_byte
);
string_id!(
    /// A customer group (wholesale, staff, VIP): promotions and price lists can be
    /// limited to groups.
    CustomerGroupId, "customer_group", 64, is_id_byte
);
string_id!(
    /// A price list (prices per currency and customer group).
    PriceListId, "price_list_id", 64, is_id_byte
);
string_id!(
    /// The name of an event consumer (its checkpoint key in an
    /// [`EventLog`](crate::store::EventLog)).
    ConsumerName, "consumer", 64, is_id_byte
);

fn time_ordered(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::now_v7().simple())
}

impl ProductId {
    /// A new time-ordered id such as `p_0192f0c2...`.
    pub fn generate() -> Self {
        ProductId(time_ordered("p_"))
    }
}

impl OrderId {
    /// A new time-ordered id such as `o_0192f0c2...`.
    pub fn generate() -> Self {
        OrderId(time_ordered("o_"))
    }
}

impl CartId {
    const GUEST_PREFIX: &'static str = "g-";
    const CUSTOMER_PREFIX: &'static str = "c-";

    /// A new guest cart id: `g-` and 128 bits from the operating system's CSPRNG, hex.
    pub fn new_guest() -> Self {
        let mut bytes = [0u8; 16];
        // The OS generator does not fail on supported platforms; fall back to a v4 UUID
        // (also CSPRNG-backed) rather than ever handing out a predictable id.
        if getrandom::fill(&mut bytes).is_err() {
            bytes = *uuid::Uuid::new_v4().as_bytes();
        }
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        CartId(format!("{}{hex}", Self::GUEST_PREFIX))
    }

    /// The cart id of a signed-in customer.
    pub fn for_customer(customer: &CustomerId) -> Self {
        CartId(format!("{}{}", Self::CUSTOMER_PREFIX, customer.as_str()))
    }

    /// Whether this is a guest cart id.
    pub fn is_guest(&self) -> bool {
        self.0.starts_with(Self::GUEST_PREFIX)
    }
}

/// A position in an [`EventLog`](crate::store::EventLog): strictly increasing in commit
/// order as seen by consumers.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct EventId(pub u64);

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A job in an [`OrderQueue`](crate::store::OrderQueue).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct JobId(pub u64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn validates_length_and_charset() {
        assert!(ProductId::new("a".repeat(64)).is_ok());
        assert!(ProductId::new("a".repeat(65)).is_err());
        assert!(Sku::new("ab c").is_err());
        assert!(Sku::new("ab\u{0}c").is_err());
        assert!(Sku::new("äb").is_err());
        assert!(Sku::new("'; DROP TABLE x; --").is_err());
        assert!(IdempotencyKey::new("checkout/42?retry=1").is_ok());
        assert!(IdempotencyKey::new("has space").is_err());
        assert!(serde_json::from_str::<Sku>(r#""ok-1""#).is_ok());
        assert!(serde_json::from_str::<Sku>(r#""not ok""#).is_err());
    }

    #[test]
    fn guest_cart_ids_are_random_and_valid() {
        let a = CartId::new_guest();
        let b = CartId::new_guest();
        assert_ne!(a, b);
        assert!(a.is_guest());
        assert_eq!(a.as_str().len(), 2 + 32);
        assert!(CartId::new(a.as_str()).is_ok());
        let c = CartId::for_customer(&CustomerId::new("x".repeat(64)).expect("valid"));
        assert!(!c.is_guest());
        assert!(CartId::new(c.as_str()).is_ok());
    }

    #[test]
    fn generated_ids_are_ordered() {
        let ids: Vec<_> = (0..100).map(|_| OrderId::generate()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
        assert!(ProductId::new(ProductId::generate().as_str()).is_ok());
    }

    proptest! {
        #[test]
        fn any_string_either_validates_or_errors(s in "\\PC{0,80}") {
            match Sku::new(s.clone()) {
                Ok(sku) => prop_assert_eq!(sku.as_str(), s.as_str()),
                Err(Error::Validation { field, .. }) => prop_assert_eq!(field, "sku"),
                Err(other) => prop_assert!(false, "unexpected {other}"),
            }
        }
    }
}
