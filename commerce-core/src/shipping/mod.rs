//! Shipping: the [`ShippingRates`] contract a host implements to plug in a carrier's
//! rating service, and [`ZoneShipping`], the default offering methods by zone.
//!
//! # Weight
//!
//! Carriers charge the larger of the actual and the **volumetric** weight. For one
//! unit with dimensions `L × W × H` in millimetres, the volumetric weight in grams is
//! `ceil(L × W × H / divisor)`, where `divisor` is the carrier's divisor in cm³/kg
//! (5000 for most couriers, 6000 for IATA air freight): a 400 × 300 × 200 mm box is
//! 24,000 cm³, which at 5000 cm³/kg is 4.8 kg = 4,800 g. The chargeable weight of a
//! cart is the sum over its units of `max(actual, volumetric)`: each unit is rated as
//! its own parcel (no packing of several units into one box is attempted).
//!
//! A unit without a stored weight counts 0 g actual weight; weight-rated methods are
//! not offered for a cart with such a unit (a zero weight would under-charge), while
//! flat, price-band and free methods still are.

mod zones;

use std::fmt::Debug;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use zones::{
    PriceBand, Rate, ShippingMethod, ShippingZone, WeightBracket, ZoneArea, ZoneShipping,
};

use crate::address::Address;
use crate::catalog::{Dimensions, ProductVariant};
use crate::error::{Error, Result};
use crate::id::Sku;
use crate::money::{Currency, Money};

/// A weight in whole grams, never negative.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(try_from = "i64", into = "u64")]
pub struct Weight(u64);

impl Weight {
    /// Zero grams.
    pub const ZERO: Weight = Weight(0);

    /// `grams`; `Validation` on `weight` if negative.
    pub fn from_grams(grams: i64) -> Result<Self> {
        u64::try_from(grams)
            .map(Weight)
            .map_err(|_| Error::validation("weight", format!("{grams} g is negative")))
    }

    /// Grams.
    pub fn grams(self) -> u64 {
        self.0
    }

    /// `self + other`, saturating (no cart weighs 18 million tonnes).
    pub fn saturating_add(self, other: Weight) -> Weight {
        Weight(self.0.saturating_add(other.0))
    }
}

impl TryFrom<i64> for Weight {
    type Error = Error;
    fn try_from(g: i64) -> Result<Self> {
        Weight::from_grams(g)
    }
}

impl From<Weight> for u64 {
    fn from(w: Weight) -> u64 {
        w.0
    }
}

/// The volumetric weight of one unit: `ceil(L × W × H / divisor)` grams, with the
/// dimensions in mm and `divisor` in cm³/kg (see the [module docs](self)).
/// `Validation` on `divisor` if it is zero.
///
/// ```
/// use commerce_core::catalog::Dimensions;
/// use commerce_core::shipping::volumetric_weight;
///
/// let box_ = Dimensions { length_mm: 400, width_mm: 300, height_mm: 200 };
/// assert_eq!(volumetric_weight(&box_, 5000)?.grams(), 4800);
/// assert_eq!(volumetric_weight(&box_, 6000)?.grams(), 4000);
/// # Ok::<(), commerce_core::Error>(())
/// ```
pub fn volumetric_weight(d: &Dimensions, divisor: u32) -> Result<Weight> {
    if divisor == 0 {
        return Err(Error::validation("divisor", "must be positive"));
    }
    let volume = u128::from(d.length_mm) * u128::from(d.width_mm) * u128::from(d.height_mm);
    let grams = volume.div_ceil(u128::from(divisor));
    Ok(Weight(u64::try_from(grams).unwrap_or(u64::MAX)))
}

/// One line of a cart to ship.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShippingItem {
    /// The variant.
    pub sku: Sku,
    /// Units, 1 to 1,000,000.
    pub quantity: u32,
    /// Unit price (after discounts if the host wants price bands on that).
    pub unit_price: Money,
    /// Actual weight of one unit, if known.
    pub weight: Option<Weight>,
    /// Dimensions of one unit, if known.
    pub dimensions: Option<Dimensions>,
}

impl ShippingItem {
    /// An item from a catalog variant's stored weight and dimensions.
    pub fn from_variant(variant: &ProductVariant, quantity: u32) -> Self {
        ShippingItem {
            sku: variant.sku.clone(),
            quantity,
            unit_price: variant.price,
            weight: variant.weight_grams.map(|g| Weight(u64::from(g))),
            dimensions: variant.dimensions,
        }
    }
}

/// What to rate: a cart's items and where they go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShippingRequest {
    /// The currency to quote in.
    pub currency: Currency,
    /// The validated destination.
    pub destination: Address,
    /// The items, 1 to 250, distinct SKUs.
    pub items: Vec<ShippingItem>,
}

impl ShippingRequest {
    /// Checks the request: 1 to 250 items, distinct SKUs, quantities 1 to 1,000,000,
    /// prices in `currency` and not negative.
    pub fn validate(&self) -> Result<()> {
        if self.items.is_empty() || self.items.len() > crate::order::MAX_ORDER_LINES {
            return Err(Error::validation(
                "items",
                format!("1 to {} items", crate::order::MAX_ORDER_LINES),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, item) in self.items.iter().enumerate() {
            if !seen.insert(&item.sku) {
                return Err(Error::validation(
                    format!("items[{i}].sku"),
                    format!("{} is repeated", item.sku),
                ));
            }
            crate::inventory::check_quantity(item.quantity).map_err(|_| {
                Error::validation(format!("items[{i}].quantity"), "must be 1 to 1,000,000")
            })?;
            if item.unit_price.currency() != self.currency {
                return Err(Error::CurrencyMismatch {
                    left: self.currency,
                    right: item.unit_price.currency(),
                });
            }
            if item.unit_price.is_negative() {
                return Err(Error::validation(
                    format!("items[{i}].unit_price"),
                    "must not be negative",
                ));
            }
        }
        Ok(())
    }

    /// Σ `unit_price × quantity`.
    pub fn subtotal(&self) -> Result<Money> {
        self.items
            .iter()
            .try_fold(Money::zero(self.currency), |acc, i| {
                acc.checked_add(&i.unit_price.checked_mul(u64::from(i.quantity))?)
            })
    }

    /// Σ actual weight × quantity, and whether every item had a weight.
    pub fn actual_weight(&self) -> (Weight, bool) {
        self.items.iter().fold((Weight::ZERO, true), |(w, all), i| {
            let unit = i.weight.unwrap_or(Weight::ZERO).grams();
            (
                w.saturating_add(Weight(unit.saturating_mul(u64::from(i.quantity)))),
                all && i.weight.is_some(),
            )
        })
    }

    /// Σ per unit `max(actual, volumetric)` × quantity with `divisor` (cm³/kg).
    pub fn chargeable_weight(&self, divisor: u32) -> Result<Weight> {
        let mut total = Weight::ZERO;
        for i in &self.items {
            let actual = i.weight.unwrap_or(Weight::ZERO);
            let volumetric = match &i.dimensions {
                Some(d) => volumetric_weight(d, divisor)?,
                None => Weight::ZERO,
            };
            let unit = actual.max(volumetric).grams();
            total = total.saturating_add(Weight(unit.saturating_mul(u64::from(i.quantity))));
        }
        Ok(total)
    }
}

/// A way to ship the cart, with its price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShippingOption {
    /// The method's id (what an order records as chosen).
    pub method_id: String,
    /// Shown to the shopper.
    pub name: String,
    /// The zone that matched.
    pub zone: String,
    /// The price (zero when free).
    pub price: Money,
    /// The weight the price was computed on.
    pub chargeable_weight: Weight,
    /// Expected days in transit, if known: `(min, max)`.
    pub transit_days: Option<(u16, u16)>,
}

/// Prices shipping for a cart (implemented by [`ZoneShipping`], or by a host adapter
/// calling a carrier).
#[async_trait]
pub trait ShippingRates: Send + Sync + Debug + 'static {
    /// The options that apply to `request`, cheapest first (ties by method id).
    ///
    /// # To ensure correctness
    /// * An invalid request (see [`ShippingRequest::validate`]) is `Validation` or
    ///   `CurrencyMismatch`.
    /// * A destination the host does not ship to at all is `Validation` on
    ///   `destination.country`; a destination that is served but where no method fits
    ///   this cart (too heavy, too expensive) is an empty list.
    /// * Every option's price is in the request's currency and not negative; the same
    ///   request gives the same options while the rates do not change (checkout
    ///   re-prices the option the shopper chose and must see the price shown).
    /// * A carrier that cannot be reached is a retryable `Backend` error.
    async fn options(&self, request: &ShippingRequest) -> Result<Vec<ShippingOption>>;
}

/// Conveniences on every [`ShippingRates`].
#[async_trait]
pub trait ShippingRatesExt: ShippingRates {
    /// The option with `method_id` for `request` (what checkout charges for the
    /// shopper's choice): `Validation` on `shipping_method` if it does not apply.
    async fn quote(&self, request: &ShippingRequest, method_id: &str) -> Result<ShippingOption> {
        self.options(request)
            .await?
            .into_iter()
            .find(|o| o.method_id == method_id)
            .ok_or_else(|| {
                Error::validation(
                    "shipping_method",
                    format!("{method_id:?} does not apply to this cart and address"),
                )
            })
    }
}

impl<T: ShippingRates + ?Sized> ShippingRatesExt for T {}
