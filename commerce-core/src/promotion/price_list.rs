//! Price lists: prices per currency and customer group, with validity windows, that
//! override a variant's base price; and the resolver that picks the price a customer
//! pays.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::id::{CustomerGroupId, PriceListId, Sku};
use crate::money::{Currency, Money};

/// Prices of some SKUs in one currency, optionally for one customer group and a
/// window of time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceList {
    /// Its identifier.
    pub id: PriceListId,
    /// The currency of every price in it.
    pub currency: Currency,
    /// Only customers of this group get it; `None` is everyone.
    pub customer_group: Option<CustomerGroupId>,
    /// Among lists of the same specificity, higher wins.
    pub priority: i32,
    /// Valid from (inclusive).
    pub starts_at: Option<Timestamp>,
    /// Valid until (exclusive).
    pub ends_at: Option<Timestamp>,
    /// The unit prices.
    pub prices: BTreeMap<Sku, Money>,
}

impl PriceList {
    /// The most prices one list may hold.
    pub const MAX_PRICES: usize = 100_000;

    /// Checks the list: prices in its currency and not negative, at most
    /// [`PriceList::MAX_PRICES`], a window that starts before it ends.
    pub fn validate(&self) -> Result<()> {
        if self.prices.len() > Self::MAX_PRICES {
            return Err(Error::validation(
                "prices",
                format!("at most {} prices", Self::MAX_PRICES),
            ));
        }
        for (sku, price) in &self.prices {
            super::check_currency(&format!("prices.{sku}"), price, self.currency)?;
            if price.is_negative() {
                return Err(Error::validation(
                    format!("prices.{sku}"),
                    "must not be negative",
                ));
            }
        }
        if matches!((self.starts_at, self.ends_at), (Some(s), Some(e)) if s >= e) {
            return Err(Error::validation(
                "ends_at",
                "the window ends before it starts",
            ));
        }
        Ok(())
    }

    /// Whether the list is valid at `now`.
    pub fn is_active(&self, now: Timestamp) -> bool {
        self.starts_at.is_none_or(|s| s <= now) && self.ends_at.is_none_or(|e| now < e)
    }
}

/// Where a resolved price came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PriceSource {
    /// The variant's own price.
    Base,
    /// A price list.
    List {
        /// Which one.
        id: PriceListId,
    },
}

/// The unit price a customer pays, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedPrice {
    /// The unit price.
    pub price: Money,
    /// Its source.
    pub source: PriceSource,
}

/// The unit price of `sku` in `currency` for a customer in `groups` at `now`.
///
/// Among the lists valid at `now`, in `currency`, for everyone or for one of `groups`,
/// that price `sku`: a group's list beats a list for everyone, then higher `priority`
/// wins, then the lower price, then the smaller list id (so the answer never depends
/// on the order of `lists`). With no such list the variant's `base` price applies if it
/// is in `currency`; otherwise the SKU has no price in that currency (`None`: it is not
/// sold there).
///
/// ```
/// use std::collections::BTreeMap;
/// use commerce_core::promotion::{PriceList, PriceSource, resolve_price};
/// use commerce_core::{Currency, id::*};
///
/// let sku = Sku::new("TSHIRT-M")?;
/// let base = "20.00 USD".parse()?;
/// let eur = PriceList {
///     id: PriceListId::new("eu")?,
///     currency: Currency::EUR,
///     customer_group: None,
///     priority: 0,
///     starts_at: None,
///     ends_at: None,
///     prices: BTreeMap::from([(sku.clone(), "18.50 EUR".parse()?)]),
/// };
/// let now = chrono::Utc::now();
/// let in_eur = resolve_price(&sku, &base, Currency::EUR, &[], &[eur.clone()], now).unwrap();
/// assert_eq!(in_eur.price.to_string(), "18.50 EUR");
/// let in_usd = resolve_price(&sku, &base, Currency::USD, &[], &[eur.clone()], now).unwrap();
/// assert_eq!(in_usd.source, PriceSource::Base);
/// assert!(resolve_price(&sku, &base, Currency::GBP, &[], &[eur], now).is_none());
/// # Ok::<(), commerce_core::Error>(())
/// ```
pub fn resolve_price(
    sku: &Sku,
    base: &Money,
    currency: Currency,
    groups: &[CustomerGroupId],
    lists: &[PriceList],
    now: Timestamp,
) -> Option<ResolvedPrice> {
    let best = lists
        .iter()
        .filter(|l| l.currency == currency && l.is_active(now))
        .filter(|l| l.customer_group.as_ref().is_none_or(|g| groups.contains(g)))
        .filter_map(|l| {
            let price = l.prices.get(sku)?;
            (price.currency() == currency).then_some((l, price))
        })
        .min_by(|(a, pa), (b, pb)| {
            b.customer_group
                .is_some()
                .cmp(&a.customer_group.is_some())
                .then(b.priority.cmp(&a.priority))
                .then(pa.amount().cmp(&pb.amount()))
                .then(a.id.cmp(&b.id))
        });
    match best {
        Some((list, price)) => Some(ResolvedPrice {
            price: *price,
            source: PriceSource::List {
                id: list.id.clone(),
            },
        }),
        None if base.currency() == currency => Some(ResolvedPrice {
            price: *base,
            source: PriceSource::Base,
        }),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone, Utc};

    fn list(id: &str, group: Option<&str>, priority: i32, price: &str) -> PriceList {
        PriceList {
            id: PriceListId::new(id).unwrap(),
            currency: Currency::USD,
            customer_group: group.map(|g| CustomerGroupId::new(g).unwrap()),
            priority,
            starts_at: None,
            ends_at: None,
            prices: BTreeMap::from([(Sku::new("A").unwrap(), price.parse().unwrap())]),
        }
    }

    #[test]
    fn group_then_priority_then_lowest_price_win_whatever_the_order() {
        let now = Utc.timestamp_opt(1_893_456_000, 0).unwrap();
        let sku = Sku::new("A").unwrap();
        let base: Money = "10.00 USD".parse().unwrap();
        let vip = [CustomerGroupId::new("vip").unwrap()];
        let mut lists = vec![
            list("all-cheap", None, 0, "7.00 USD"),
            list("all-high", None, 5, "8.00 USD"),
            list("vip", Some("vip"), 0, "9.00 USD"),
            list("staff", Some("staff"), 9, "1.00 USD"),
        ];
        for _ in 0..2 {
            let r = resolve_price(&sku, &base, Currency::USD, &vip, &lists, now).unwrap();
            assert_eq!(r.price.to_string(), "9.00 USD");
            let r = resolve_price(&sku, &base, Currency::USD, &[], &lists, now).unwrap();
            assert_eq!(r.price.to_string(), "8.00 USD");
            lists.reverse();
        }
        // Outside its window a list does not count.
        let mut expired = list("flash", None, 100, "1.00 USD");
        expired.ends_at = Some(now);
        expired.starts_at = Some(now - Duration::hours(1));
        let r = resolve_price(&sku, &base, Currency::USD, &[], &[expired.clone()], now).unwrap();
        assert_eq!(r.source, PriceSource::Base);
        let before = now - Duration::minutes(1);
        let r = resolve_price(&sku, &base, Currency::USD, &[], &[expired], before).unwrap();
        assert_eq!(r.price.to_string(), "1.00 USD");
    }

    #[test]
    fn invalid_lists_are_refused() {
        let mut l = list("x", None, 0, "1.00 USD");
        l.validate().unwrap();
        l.prices
            .insert(Sku::new("B").unwrap(), "-1.00 USD".parse().unwrap());
        assert!(l.validate().is_err());
        let mut l = list("x", None, 0, "1.00 USD");
        l.prices
            .insert(Sku::new("B").unwrap(), "1.00 EUR".parse().unwrap());
        assert!(matches!(l.validate(), Err(Error::CurrencyMismatch { .. })));
        let mut l = list("x", None, 0, "1.00 USD");
        let now = Utc::now();
        l.starts_at = Some(now);
        l.ends_at = Some(now);
        assert!(l.validate().is_err());
    }
}
