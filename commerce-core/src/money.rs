//! Money: a `rust_decimal` amount in an ISO 4217 currency.
//!
//! * An amount never carries more precision than its currency's minor units
//!   (2 for USD, 0 for JPY, 3 for KWD). Results that would need more (a percentage
//!   discount, a tax rate) go through [`Money::from_decimal_rounded`] or
//!   [`Money::mul_decimal_rounded`], which round **half to even** (banker's rounding), so
//!   that rounding errors cancel out over many lines instead of drifting upwards.
//! * Combining or ordering two currencies is an [`Error::CurrencyMismatch`]; there is
//!   no silent conversion and no panic.
//! * Amounts are bounded by [`Money::MAX_MAJOR_UNITS`] in absolute value and their
//!   minor units by `i64` (which is the tighter bound for four-decimal currencies such as
//!   `CLF`), so every amount fits in an `i64` of minor units and in `NUMERIC(20, 4)`.
//!
//! ```
//! use commerce_core::money::{Currency, Money};
//!
//! let usd = Currency::parse("USD")?;
//! let price: Money = "19.99 USD".parse()?;
//! let line = price.checked_mul(3)?;
//! assert_eq!(line.to_string(), "59.97 USD");
//!
//! let eur: Money = "1.00 EUR".parse()?;
//! assert!(line.checked_add(&eur).is_err()); // never a silent conversion
//! assert!("0.001 USD".parse::<Money>().is_err()); // over-precise
//! assert_eq!(Money::zero(usd).to_string(), "0.00 USD");
//! # Ok::<(), commerce_core::Error>(())
//! ```

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

/// An ISO 4217 currency that has minor units (funds and metals such as `XAU` are refused).
///
/// Serialises as its three-letter code.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency(iso_currency::Currency);

impl Currency {
    /// US dollar.
    pub const USD: Currency = Currency(iso_currency::Currency::USD);
    /// Euro.
    pub const EUR: Currency = Currency(iso_currency::Currency::EUR);
    /// Japanese yen (no minor units).
    pub const JPY: Currency = Currency(iso_currency::Currency::JPY);
    /// Kuwaiti dinar (three minor units).
    pub const KWD: Currency = Currency(iso_currency::Currency::KWD);
    /// Pound sterling.
    pub const GBP: Currency = Currency(iso_currency::Currency::GBP);

    /// Parses an upper-case ISO 4217 code such as `"USD"`.
    ///
    /// Lower-case codes, unknown codes and currencies without minor units (`XAU`,
    /// `XXX`) are a [`Error::Validation`].
    pub fn parse(code: &str) -> Result<Self> {
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(Error::validation(
                "currency",
                format!("{code:?} is not a three-letter upper-case ISO 4217 code"),
            ));
        }
        let currency = iso_currency::Currency::from_code(code).ok_or_else(|| {
            Error::validation("currency", format!("{code:?} is not an ISO 4217 currency"))
        })?;
        match currency.exponent() {
            Some(e) if e <= 4 => Ok(Currency(currency)),
            _ => Err(Error::validation(
                "currency",
                format!("{code} has no minor units and cannot be used for prices"),
            )),
        }
    }

    /// The three-letter code.
    pub fn code(self) -> &'static str {
        self.0.code()
    }

    /// The number of minor units (decimal places): 2 for USD, 0 for JPY, 3 for KWD.
    pub fn minor_units(self) -> u32 {
        // `parse` only admits currencies whose exponent is known and at most 4.
        u32::from(self.0.exponent().unwrap_or(0))
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Currency {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Currency::parse(s)
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let code = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Currency::parse(&code).map_err(serde::de::Error::custom)
    }
}

/// An amount of money in one currency, at most as precise as the currency's minor units.
///
/// Equality compares amount and currency; ordering is only available through
/// [`Money::try_cmp`], which refuses to compare two currencies.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    amount: Decimal,
    currency: Currency,
}

impl Money {
    /// The largest absolute amount, in major units (just under one quadrillion).
    pub const MAX_MAJOR_UNITS: i64 = 999_999_999_999_999;

    /// Creates an amount, refusing anything more precise than the currency's minor
    /// units or larger than [`Money::MAX_MAJOR_UNITS`]. Trailing zeros are not precision:
    /// `12.500 USD` is accepted as `12.50 USD`.
    pub fn new(amount: Decimal, currency: Currency) -> Result<Self> {
        let units = currency.minor_units();
        let normalized = amount.normalize();
        if normalized.scale() > units {
            return Err(Error::validation(
                "amount",
                format!(
                    "{amount} has more than the {units} decimal places of {}",
                    currency.code()
                ),
            ));
        }
        Self::in_range(normalized, currency)
    }

    /// Creates an amount from any decimal, rounding half to even to the currency's
    /// minor units. Fails only when the amount is out of range.
    ///
    /// ```
    /// use commerce_core::money::{Currency, Money};
    /// use rust_decimal::Decimal;
    ///
    /// let a = Money::from_decimal_rounded(Decimal::new(12345, 3), Currency::USD)?; // 12.345
    /// assert_eq!(a.to_string(), "12.34 USD"); // half to even
    /// let b = Money::from_decimal_rounded(Decimal::new(12355, 3), Currency::USD)?; // 12.355
    /// assert_eq!(b.to_string(), "12.36 USD");
    /// # Ok::<(), commerce_core::Error>(())
    /// ```
    pub fn from_decimal_rounded(amount: Decimal, currency: Currency) -> Result<Self> {
        let rounded = amount.round_dp_with_strategy(
            currency.minor_units(),
            RoundingStrategy::MidpointNearestEven,
        );
        Self::in_range(rounded, currency)
    }

    fn in_range(amount: Decimal, currency: Currency) -> Result<Self> {
        if amount.abs() > Decimal::from(Self::MAX_MAJOR_UNITS) {
            return Err(Error::validation(
                "amount",
                format!(
                    "{amount} is out of range (at most {})",
                    Self::MAX_MAJOR_UNITS
                ),
            ));
        }
        let mut amount = amount;
        amount.rescale(currency.minor_units());
        // With four minor units (CLF) the bound above is not enough for an i64.
        if i64::try_from(amount.mantissa()).is_err() {
            return Err(Error::validation(
                "amount",
                format!(
                    "{amount} {} is out of range (its minor units do not fit in 64 bits)",
                    currency.code()
                ),
            ));
        }
        Ok(Money { amount, currency })
    }

    /// Zero in `currency`.
    pub fn zero(currency: Currency) -> Self {
        let mut amount = Decimal::ZERO;
        amount.rescale(currency.minor_units());
        Money { amount, currency }
    }

    /// An amount given in minor units (cents): `from_minor_units(1999, USD)` is 19.99 USD.
    pub fn from_minor_units(minor: i64, currency: Currency) -> Result<Self> {
        Self::in_range(Decimal::new(minor, currency.minor_units()), currency)
    }

    /// The amount in minor units (cents). Always fits: see [`Money::MAX_MAJOR_UNITS`].
    pub fn to_minor_units(&self) -> i64 {
        let mut scaled = self.amount;
        scaled.rescale(self.currency.minor_units());
        // |amount| < 1e15 and at most 4 minor units, so the mantissa fits in an i64.
        i64::try_from(scaled.mantissa()).unwrap_or(if scaled.is_sign_negative() {
            i64::MIN
        } else {
            i64::MAX
        })
    }

    /// The decimal amount, with exactly the currency's minor units as scale.
    pub fn amount(&self) -> Decimal {
        self.amount
    }

    /// The currency.
    pub fn currency(&self) -> Currency {
        self.currency
    }

    /// Whether the amount is zero.
    pub fn is_zero(&self) -> bool {
        self.amount.is_zero()
    }

    /// Whether the amount is below zero.
    pub fn is_negative(&self) -> bool {
        self.amount.is_sign_negative() && !self.amount.is_zero()
    }

    fn same_currency(&self, other: &Money) -> Result<()> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(Error::CurrencyMismatch {
                left: self.currency,
                right: other.currency,
            })
        }
    }

    /// `self + other`; an error for two currencies or an out-of-range result.
    pub fn checked_add(&self, other: &Money) -> Result<Money> {
        self.same_currency(other)?;
        let sum = self
            .amount
            .checked_add(other.amount)
            .ok_or_else(|| Error::validation("amount", "sum overflows"))?;
        Self::in_range(sum, self.currency)
    }

    /// `self - other`; an error for two currencies or an out-of-range result.
    pub fn checked_sub(&self, other: &Money) -> Result<Money> {
        self.same_currency(other)?;
        let diff = self
            .amount
            .checked_sub(other.amount)
            .ok_or_else(|| Error::validation("amount", "difference overflows"))?;
        Self::in_range(diff, self.currency)
    }

    /// `self * quantity`; exact, an error only when out of range.
    pub fn checked_mul(&self, quantity: u64) -> Result<Money> {
        let product = self
            .amount
            .checked_mul(Decimal::from(quantity))
            .ok_or_else(|| Error::validation("amount", "product overflows"))?;
        Self::in_range(product, self.currency)
    }

    /// `self * factor`, rounded half to even to minor units (discounts, tax rates).
    pub fn mul_decimal_rounded(&self, factor: Decimal) -> Result<Money> {
        let product = self
            .amount
            .checked_mul(factor)
            .ok_or_else(|| Error::validation("amount", "product overflows"))?;
        Self::from_decimal_rounded(product, self.currency)
    }

    /// Orders two amounts of the same currency; two currencies are an error.
    pub fn try_cmp(&self, other: &Money) -> Result<Ordering> {
        self.same_currency(other)?;
        Ok(self.amount.cmp(&other.amount))
    }

    /// Sums amounts; `currency` is the result's currency when `items` is empty and
    /// every item must be in it.
    pub fn try_sum<'a>(
        currency: Currency,
        items: impl IntoIterator<Item = &'a Money>,
    ) -> Result<Money> {
        items
            .into_iter()
            .try_fold(Money::zero(currency), |acc, m| acc.checked_add(m))
    }
}

impl fmt::Debug for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Money({} {})", self.amount, self.currency)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount, self.currency)
    }
}

/// Parses a plain decimal amount: an optional `-`, at most 16 integer digits, an
/// optional fraction. No exponent, no `NaN`, no `inf`, no thousands separators.
pub fn parse_amount(text: &str, currency: Currency) -> Result<Money> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let (int, frac) = match digits.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (digits, None),
    };
    let plain = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !plain(int) || int.len() > 16 || frac.is_some_and(|f| !plain(f) || f.len() > 12) {
        return Err(Error::validation(
            "amount",
            format!("{text:?} is not a plain decimal number"),
        ));
    }
    let amount = Decimal::from_str(text)
        .map_err(|e| Error::validation("amount", format!("{text:?}: {e}")))?;
    Money::new(amount, currency)
}

impl FromStr for Money {
    type Err = Error;

    /// Parses `"12.34 USD"` (amount, one space, code).
    fn from_str(s: &str) -> Result<Self> {
        let (amount, code) = s.split_once(' ').ok_or_else(|| {
            Error::validation("money", format!("{s:?} is not of the form \"12.34 USD\""))
        })?;
        parse_amount(amount, Currency::parse(code)?)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MoneyRepr<'a> {
    #[serde(borrow)]
    amount: std::borrow::Cow<'a, str>,
    currency: Currency,
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        MoneyRepr {
            amount: self.amount.to_string().into(),
            currency: self.currency,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Money {
    /// Reads `{"amount": "12.34", "currency": "USD"}`; the amount must be a string so
    /// that no binary float ever touches it.
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let repr = MoneyRepr::deserialize(d)?;
        parse_amount(&repr.amount, repr.currency).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rust_decimal_macros::dec;

    fn usd(s: &str) -> Money {
        parse_amount(s, Currency::USD).expect("valid")
    }

    #[test]
    fn currencies_have_their_minor_units() {
        assert_eq!(Currency::USD.minor_units(), 2);
        assert_eq!(Currency::JPY.minor_units(), 0);
        assert_eq!(Currency::KWD.minor_units(), 3);
        assert!(Currency::parse("usd").is_err());
        assert!(Currency::parse("ZZZ").is_err());
        assert!(Currency::parse("XAU").is_err());
        assert!(Currency::parse("US").is_err());
    }

    #[test]
    fn rejects_nan_like_over_precise_and_out_of_range() {
        for bad in [
            "NaN USD",
            "inf USD",
            "1e3 USD",
            "1,000.00 USD",
            "+1 USD",
            ".5 USD",
            "5. USD",
            "0.001 USD",
            "1 JPY extra",
            "1.5 JPY",
            "10000000000000000 USD",
            "99999999999999999999999999999 USD",
            "",
            "12.34",
            "12.34  USD",
        ] {
            assert!(bad.parse::<Money>().is_err(), "{bad:?} should be rejected");
        }
        assert_eq!(usd("12.500").to_string(), "12.50 USD");
        assert_eq!(
            "-3 USD".parse::<Money>().expect("ok").to_string(),
            "-3.00 USD"
        );
    }

    #[test]
    fn serde_round_trips_and_rejects_floats() {
        let m = usd("19.99");
        let json = serde_json::to_string(&m).expect("serialize");
        assert_eq!(json, r#"{"amount":"19.99","currency":"USD"}"#);
        assert_eq!(
            serde_json::from_str::<Money>(&json).expect("deserialize"),
            m
        );
        assert!(serde_json::from_str::<Money>(r#"{"amount":19.99,"currency":"USD"}"#).is_err());
        assert!(serde_json::from_str::<Money>(r#"{"amount":"NaN","currency":"USD"}"#).is_err());
        assert!(serde_json::from_str::<Money>(r#"{"amount":"1.999","currency":"USD"}"#).is_err());
        assert!(serde_json::from_str::<Money>(r#"{"amount":"1","currency":"usd"}"#).is_err());
        assert!(serde_json::from_str::<Money>(r#"{"amount":"1","currency":"USD","x":1}"#).is_err());
    }

    #[test]
    fn mixing_currencies_is_an_error() {
        let a = usd("1");
        let b = Money::new(dec!(1), Currency::EUR).expect("ok");
        assert!(matches!(
            a.checked_add(&b),
            Err(Error::CurrencyMismatch { .. })
        ));
        assert!(matches!(a.try_cmp(&b), Err(Error::CurrencyMismatch { .. })));
        assert!(Money::try_sum(Currency::USD, [&a, &b]).is_err());
    }

    #[test]
    fn rounding_is_half_even() {
        let r = |d: Decimal| {
            Money::from_decimal_rounded(d, Currency::USD)
                .expect("in range")
                .to_string()
        };
        assert_eq!(r(dec!(0.125)), "0.12 USD");
        assert_eq!(r(dec!(0.135)), "0.14 USD");
        assert_eq!(r(dec!(-0.125)), "-0.12 USD");
        assert_eq!(
            usd("10.00")
                .mul_decimal_rounded(dec!(0.0825))
                .expect("ok")
                .to_string(),
            "0.82 USD"
        );
    }

    #[test]
    fn minor_units_round_trip() {
        let m = Money::from_minor_units(1999, Currency::USD).expect("ok");
        assert_eq!(m, usd("19.99"));
        assert_eq!(m.to_minor_units(), 1999);
        let max = Money::new(Decimal::from(Money::MAX_MAJOR_UNITS), Currency::KWD).expect("ok");
        assert_eq!(max.to_minor_units(), Money::MAX_MAJOR_UNITS * 1000);
        assert!(
            max.checked_add(&Money::from_minor_units(1, Currency::KWD).expect("ok"))
                .is_err()
        );
        // Four minor units: the largest amount is bounded by i64 minor units.
        let clf = Currency::parse("CLF").expect("CLF has four minor units");
        assert_eq!(clf.minor_units(), 4);
        let top = Money::from_minor_units(i64::MAX, clf).expect("fits");
        assert_eq!(top.to_minor_units(), i64::MAX);
        assert!(
            top.checked_add(&Money::from_minor_units(1, clf).expect("ok"))
                .is_err()
        );
        assert!(parse_amount("922337203685478", clf).is_err());
    }

    fn cents() -> impl Strategy<Value = i64> {
        -1_000_000_000_000i64..1_000_000_000_000i64
    }

    proptest! {
        #[test]
        fn addition_is_exact_and_commutative(a in cents(), b in cents()) {
            let ma = Money::from_minor_units(a, Currency::USD).unwrap();
            let mb = Money::from_minor_units(b, Currency::USD).unwrap();
            let s1 = ma.checked_add(&mb).unwrap();
            let s2 = mb.checked_add(&ma).unwrap();
            prop_assert_eq!(s1, s2);
            prop_assert_eq!(s1.to_minor_units(), a + b);
            prop_assert_eq!(s1.checked_sub(&mb).unwrap(), ma);
        }

        #[test]
        fn display_parse_round_trip(a in cents()) {
            let m = Money::from_minor_units(a, Currency::USD).unwrap();
            prop_assert_eq!(m.to_string().parse::<Money>().unwrap(), m);
        }

        #[test]
        fn multiplication_matches_repeated_addition(a in -10_000_000i64..10_000_000, q in 0u64..50) {
            let m = Money::from_minor_units(a, Currency::USD).unwrap();
            let by_mul = m.checked_mul(q).unwrap();
            let by_add = Money::try_sum(Currency::USD, std::iter::repeat_n(&m, q as usize)).unwrap();
            prop_assert_eq!(by_mul, by_add);
        }

        #[test]
        fn rounding_moves_at_most_half_a_minor_unit(mantissa in -1_000_000_000i64..1_000_000_000, scale in 0u32..8) {
            let d = Decimal::new(mantissa, scale);
            let m = Money::from_decimal_rounded(d, Currency::USD).unwrap();
            prop_assert!((m.amount() - d).abs() <= dec!(0.005));
            prop_assert!(m.amount().scale() == 2);
        }

        #[test]
        fn parsing_arbitrary_text_never_panics(s in "\\PC{0,40}") {
            let _ = s.parse::<Money>();
        }
    }
}
