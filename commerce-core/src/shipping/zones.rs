//! The zone-based default: zones of countries/regions, each with shipping methods
//! priced flat, by weight or by price band, optionally free over a threshold.

use std::cmp::Ordering;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{ShippingOption, ShippingRates, ShippingRequest, Weight};
use crate::address::{Address, CountryCode};
use crate::error::{Error, Result};
use crate::money::{Currency, Money};

/// A country, or some of its regions, that a zone covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneArea {
    /// The country.
    pub country: CountryCode,
    /// Only these regions (compared case-insensitively); empty for the whole country.
    #[serde(default)]
    pub regions: Vec<String>,
}

impl ZoneArea {
    /// The whole of `country` (`"DE"`): `Validation` for an unknown code.
    pub fn country(code: &str) -> Result<Self> {
        Ok(ZoneArea {
            country: CountryCode::parse(code)?,
            regions: Vec::new(),
        })
    }

    /// Some regions of `country` (`"US"`, `["AK", "HI"]`).
    pub fn regions<I, S>(code: &str, regions: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Ok(ZoneArea {
            country: CountryCode::parse(code)?,
            regions: regions.into_iter().map(Into::into).collect(),
        })
    }

    fn covers(&self, address: &Address) -> bool {
        self.country == address.country()
            && (self.regions.is_empty()
                || address
                    .region()
                    .is_some_and(|r| self.regions.iter().any(|z| z.eq_ignore_ascii_case(r))))
    }
}

/// How a method's price is computed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rate {
    /// One price for any cart.
    Flat(Money),
    /// By chargeable weight: the first bracket whose `up_to` is at least the cart's
    /// chargeable weight gives the price; heavier carts are not offered this method.
    /// Brackets ascend strictly by weight.
    ByWeight(Vec<WeightBracket>),
    /// By subtotal: the last band whose `from` is at most the cart's subtotal gives
    /// the price; a subtotal below the first band is not offered this method. Bands
    /// ascend strictly by `from`.
    ByPrice(Vec<PriceBand>),
}

/// A weight bracket of [`Rate::ByWeight`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightBracket {
    /// Up to and including this weight.
    pub up_to: Weight,
    /// The price.
    pub price: Money,
}

/// A price band of [`Rate::ByPrice`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceBand {
    /// From this subtotal on.
    pub from: Money,
    /// The price.
    pub price: Money,
}

/// A way to ship within a zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShippingMethod {
    /// The id an order records (unique within its zone): 1 to 64 of letters, digits,
    /// `_`, `-`, `.`.
    pub id: String,
    /// Shown to the shopper.
    pub name: String,
    /// The price.
    pub rate: Rate,
    /// Free when the cart's subtotal is at least this.
    #[serde(default)]
    pub free_over: Option<Money>,
    /// Not offered above this chargeable weight.
    #[serde(default)]
    pub max_weight: Option<Weight>,
    /// Expected days in transit `(min, max)`.
    #[serde(default)]
    pub transit_days: Option<(u16, u16)>,
}

impl ShippingMethod {
    /// A method with `rate`, no free threshold, no weight limit.
    pub fn new(id: impl Into<String>, name: impl Into<String>, rate: Rate) -> Self {
        ShippingMethod {
            id: id.into(),
            name: name.into(),
            rate,
            free_over: None,
            max_weight: None,
            transit_days: None,
        }
    }

    /// Free from a subtotal of `threshold` on.
    pub fn free_over(mut self, threshold: Money) -> Self {
        self.free_over = Some(threshold);
        self
    }

    /// Not offered above `max`.
    pub fn max_weight(mut self, max: Weight) -> Self {
        self.max_weight = Some(max);
        self
    }

    /// Days in transit.
    pub fn transit_days(mut self, min: u16, max: u16) -> Self {
        self.transit_days = Some((min, max));
        self
    }

    /// The currency the method is priced in.
    pub fn currency(&self) -> Option<Currency> {
        match &self.rate {
            Rate::Flat(m) => Some(m.currency()),
            Rate::ByWeight(b) => b.first().map(|b| b.price.currency()),
            Rate::ByPrice(b) => b.first().map(|b| b.price.currency()),
        }
    }

    fn validate(&self, field: &str) -> Result<()> {
        let bad =
            |what: &str, reason: String| Err(Error::validation(format!("{field}.{what}"), reason));
        let id_ok = !self.id.is_empty()
            && self.id.len() <= 64
            && self
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !id_ok {
            return bad(
                "id",
                format!("{:?}: 1 to 64 of letters, digits, _ - .", self.id),
            );
        }
        if self.name.trim().is_empty() || self.name.chars().count() > 100 {
            return bad("name", "1 to 100 characters".into());
        }
        let Some(currency) = self.currency() else {
            return bad("rate", "needs at least one bracket or band".into());
        };
        let mut prices: Vec<&Money> = Vec::new();
        match &self.rate {
            Rate::Flat(m) => prices.push(m),
            Rate::ByWeight(brackets) => {
                for w in brackets.windows(2) {
                    if w[1].up_to <= w[0].up_to {
                        return bad("rate", "weight brackets must ascend strictly".into());
                    }
                }
                prices.extend(brackets.iter().map(|b| &b.price));
            }
            Rate::ByPrice(bands) => {
                for w in bands.windows(2) {
                    if w[1].from.try_cmp(&w[0].from)? != Ordering::Greater {
                        return bad("rate", "price bands must ascend strictly".into());
                    }
                }
                prices.extend(bands.iter().map(|b| &b.price));
                prices.extend(bands.iter().map(|b| &b.from));
            }
        }
        prices.extend(self.free_over.iter());
        for m in prices {
            if m.currency() != currency {
                return Err(Error::CurrencyMismatch {
                    left: currency,
                    right: m.currency(),
                });
            }
            if m.is_negative() {
                return bad("rate", format!("{m} is negative"));
            }
        }
        if let Some((min, max)) = self.transit_days {
            if min > max {
                return bad("transit_days", "min is above max".into());
            }
        }
        Ok(())
    }
}

/// Countries/regions and the methods offered there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShippingZone {
    /// A name (`"Germany"`, `"EU"`, `"US mainland"`).
    pub name: String,
    /// What the zone covers (at least one area).
    pub areas: Vec<ZoneArea>,
    /// The methods.
    pub methods: Vec<ShippingMethod>,
}

impl ShippingZone {
    fn covers(&self, address: &Address) -> bool {
        self.areas.iter().any(|a| a.covers(address))
    }
}

/// The default [`ShippingRates`]: the first zone (in the given order) that covers the
/// destination offers its methods that fit the cart.
///
/// For each method of that zone, in the request's currency (methods priced in another
/// currency are skipped):
/// * a chargeable weight above `max_weight` skips it;
/// * [`Rate::Flat`] is its price; [`Rate::ByWeight`] prices by chargeable weight (and
///   is skipped when a unit has no stored weight); [`Rate::ByPrice`] prices by the
///   subtotal;
/// * a subtotal at or above `free_over` makes it free.
///
/// ```
/// use commerce_core::address::{Address, AddressInput};
/// use commerce_core::shipping::*;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let rates = ZoneShipping::new(vec![ShippingZone {
///     name: "Germany".into(),
///     areas: vec![ZoneArea::country("DE")?],
///     methods: vec![ShippingMethod::new("dhl", "DHL Paket", Rate::Flat("4.99 EUR".parse()?))
///         .free_over("50.00 EUR".parse()?)],
/// }], 5000)?;
/// let request = ShippingRequest {
///     currency: "EUR".parse()?,
///     destination: Address::new(AddressInput {
///         name: "E. Mustermann".into(), line1: "Heidestraße 17".into(), city: "Köln".into(),
///         postal_code: Some("51147".into()), country: "DE".into(), ..Default::default()
///     })?,
///     items: vec![ShippingItem {
///         sku: "MUG-1".parse()?, quantity: 2, unit_price: "12.00 EUR".parse()?,
///         weight: Some(Weight::from_grams(350)?), dimensions: None,
///     }],
/// };
/// let options = rates.options(&request).await?;
/// assert_eq!(options[0].price.to_string(), "4.99 EUR");
/// # Ok::<(), commerce_core::Error>(()) }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct ZoneShipping {
    zones: Vec<ShippingZone>,
    divisor: u32,
}

impl ZoneShipping {
    /// Validates the zones (each with a name and at least one area; method ids unique
    /// within a zone; brackets and bands ascending; all of a method's amounts in one
    /// currency and not negative) and the volumetric `divisor` in cm³/kg (positive;
    /// 5000 for most couriers). `Validation` naming the offending field otherwise.
    pub fn new(zones: Vec<ShippingZone>, divisor: u32) -> Result<Self> {
        if divisor == 0 {
            return Err(Error::validation("divisor", "must be positive"));
        }
        for (z, zone) in zones.iter().enumerate() {
            if zone.name.trim().is_empty() || zone.areas.is_empty() {
                return Err(Error::validation(
                    format!("zones[{z}]"),
                    "needs a name and at least one area",
                ));
            }
            let mut ids = std::collections::HashSet::new();
            for (m, method) in zone.methods.iter().enumerate() {
                let field = format!("zones[{z}].methods[{m}]");
                method.validate(&field)?;
                if !ids.insert(method.id.as_str()) {
                    return Err(Error::validation(
                        format!("{field}.id"),
                        format!("{:?} is repeated in the zone", method.id),
                    ));
                }
            }
        }
        Ok(ZoneShipping { zones, divisor })
    }

    /// The options for `request`, synchronously (the contract method wraps it).
    pub fn compute(&self, request: &ShippingRequest) -> Result<Vec<ShippingOption>> {
        request.validate()?;
        let zone = self
            .zones
            .iter()
            .find(|z| z.covers(&request.destination))
            .ok_or_else(|| {
                Error::validation(
                    "destination.country",
                    format!(
                        "no shipping to {}{}",
                        request.destination.country(),
                        request
                            .destination
                            .region()
                            .map(|r| format!("/{r}"))
                            .unwrap_or_default()
                    ),
                )
            })?;
        let subtotal = request.subtotal()?;
        let chargeable = request.chargeable_weight(self.divisor)?;
        let (_, all_weighed) = request.actual_weight();
        let mut options = Vec::new();
        for method in &zone.methods {
            if method.currency() != Some(request.currency) {
                continue;
            }
            if method.max_weight.is_some_and(|max| chargeable > max) {
                continue;
            }
            let price = match &method.rate {
                Rate::Flat(m) => Some(*m),
                Rate::ByWeight(brackets) if all_weighed => brackets
                    .iter()
                    .find(|b| b.up_to >= chargeable)
                    .map(|b| b.price),
                Rate::ByWeight(_) => None,
                Rate::ByPrice(bands) => {
                    let mut found = None;
                    for band in bands {
                        if band.from.try_cmp(&subtotal)? != Ordering::Greater {
                            found = Some(band.price);
                        }
                    }
                    found
                }
            };
            let Some(mut price) = price else { continue };
            if let Some(threshold) = &method.free_over {
                if subtotal.try_cmp(threshold)? != Ordering::Less {
                    price = Money::zero(request.currency);
                }
            }
            options.push(ShippingOption {
                method_id: method.id.clone(),
                name: method.name.clone(),
                zone: zone.name.clone(),
                price,
                chargeable_weight: chargeable,
                transit_days: method.transit_days,
            });
        }
        options.sort_by(|a, b| {
            a.price
                .try_cmp(&b.price)
                .unwrap_or(Ordering::Equal)
                .then_with(|| a.method_id.cmp(&b.method_id))
        });
        Ok(options)
    }
}

#[async_trait]
impl ShippingRates for ZoneShipping {
    async fn options(&self, request: &ShippingRequest) -> Result<Vec<ShippingOption>> {
        self.compute(request)
    }
}
