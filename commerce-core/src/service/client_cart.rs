//! Carts held by the client (a cookie, local storage, a mobile app), as serde JSON.
//!
//! The server keeps nothing: the client sends its cart with each request that needs
//! it, and the server validates it and re-reads every price from the catalog. A
//! price in the JSON is only what the client *displayed*; it is used to tell the
//! shopper that a price changed, never to charge.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::cart::{Cart, CartLimits};
use crate::error::{Error, Result};
use crate::id::Sku;
use crate::money::Money;
use crate::service::pricing::LineInput;

/// Largest client cart accepted, in bytes of JSON.
pub const MAX_CLIENT_CART_BYTES: usize = 64 * 1024;

/// A cart as the client holds it.
///
/// ```
/// use commerce_core::service::ClientCart;
///
/// let json = r#"{"items":[
///     {"sku":"PH-1","quantity":2,"unit_price":{"amount":"0.01","currency":"USD"}}
/// ]}"#;
/// let cart = ClientCart::from_json(json)?;
/// assert_eq!(cart.items[0].quantity, 2);
/// assert!(ClientCart::from_json(r#"{"items":[{"sku":"PH-1","quantity":2,"discount":"100%"}]}"#).is_err());
/// # Ok::<(), commerce_core::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientCart {
    /// The lines.
    #[serde(default)]
    pub items: Vec<ClientCartItem>,
}

/// One line of a [`ClientCart`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientCartItem {
    /// The variant.
    pub sku: Sku,
    /// Units.
    pub quantity: u32,
    /// The price the client displayed (informational, never charged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_price: Option<Money>,
}

impl ClientCart {
    /// Parses the JSON a client sent. Oversized input, malformed JSON, unknown fields,
    /// invalid SKUs or amounts are a [`Error::Validation`] on field `cart`.
    pub fn from_json(json: &str) -> Result<Self> {
        if json.len() > MAX_CLIENT_CART_BYTES {
            return Err(Error::validation(
                "cart",
                format!(
                    "is {} bytes of JSON, at most {MAX_CLIENT_CART_BYTES} allowed",
                    json.len()
                ),
            ));
        }
        serde_json::from_str(json)
            .map_err(|e| Error::validation("cart", format!("not a valid client cart: {e}")))
    }

    /// The JSON to hand to the client.
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string(self)
            .map_err(|e| Error::backend(false, format!("cannot serialise the cart: {e}")))
    }

    /// The client form of a server cart (lines with their price snapshots).
    pub fn from_cart(cart: &Cart) -> Self {
        ClientCart {
            items: cart
                .items
                .iter()
                .map(|i| ClientCartItem {
                    sku: i.sku.clone(),
                    quantity: i.quantity,
                    unit_price: Some(i.unit_price),
                })
                .collect(),
        }
    }

    /// Checks the cart against `limits` and gives its lines, one per SKU (repeated
    /// SKUs are added up; the first displayed price is kept), in first-seen order.
    pub fn lines(&self, limits: &CartLimits) -> Result<Vec<LineInput>> {
        let mut index: BTreeMap<&Sku, usize> = BTreeMap::new();
        let mut lines: Vec<(LineInput, u64)> = Vec::new();
        for (i, item) in self.items.iter().enumerate() {
            if item.quantity == 0 {
                return Err(Error::validation(
                    format!("items[{i}].quantity"),
                    "must be at least 1",
                ));
            }
            if let Some(p) = item.unit_price.filter(|p| p.is_negative()) {
                return Err(Error::validation(
                    format!("items[{i}].unit_price"),
                    format!("{p} is negative"),
                ));
            }
            match index.get(&item.sku) {
                Some(&at) => lines[at].1 += u64::from(item.quantity),
                None => {
                    index.insert(&item.sku, lines.len());
                    lines.push((
                        LineInput {
                            sku: item.sku.clone(),
                            quantity: 0,
                            seen_price: item.unit_price,
                        },
                        u64::from(item.quantity),
                    ));
                }
            }
        }
        if lines.len() > limits.max_lines as usize {
            return Err(Error::validation(
                "items",
                format!(
                    "{} lines; at most {} allowed",
                    lines.len(),
                    limits.max_lines
                ),
            ));
        }
        lines
            .into_iter()
            .map(|(mut line, quantity)| {
                if quantity > u64::from(limits.max_line_quantity) {
                    return Err(Error::validation(
                        "quantity",
                        format!(
                            "{quantity} units of {}; at most {} a line",
                            line.sku, limits.max_line_quantity
                        ),
                    ));
                }
                line.quantity = quantity as u32;
                Ok(line)
            })
            .collect()
    }
}
