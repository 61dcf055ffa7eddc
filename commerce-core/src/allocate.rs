//! Splitting an amount across parts in proportion to weights, exactly to the minor
//! unit (the largest-remainder method): the parts always add up to the amount.
//!
//! Used to spread an order discount over lines, a rate group's rounded tax over its
//! lines, and a line's payment over the units refunded from it.
//!
//! ```
//! use commerce_core::allocate::allocate;
//! use commerce_core::money::Money;
//!
//! let total: Money = "10.00 USD".parse()?;
//! let weights: Vec<Money> = ["1.00 USD", "1.00 USD", "1.00 USD"]
//!     .iter().map(|s| s.parse()).collect::<Result<_, _>>()?;
//! let parts = allocate(&total, &weights)?;
//! let shown: Vec<String> = parts.iter().map(|m| m.to_string()).collect();
//! assert_eq!(shown, ["3.34 USD", "3.33 USD", "3.33 USD"]);
//! # Ok::<(), commerce_core::Error>(())
//! ```

use crate::error::{Error, Result};
use crate::money::Money;

/// Splits `total` over `weights` in proportion, in minor units, so that the parts add
/// up to `total` exactly.
///
/// Each part is first `floor(total × weight / Σweights)` in minor units; the minor units
/// left over go one each to the parts with the largest remainders (ties: the earlier
/// part). When every weight is zero the split is by equal weights. A negative `total`
/// is split as its absolute value and negated.
///
/// Errors: `Validation` on `weights` for an empty list or a negative weight;
/// `CurrencyMismatch` if a weight is in another currency than `total`.
pub fn allocate(total: &Money, weights: &[Money]) -> Result<Vec<Money>> {
    if weights.is_empty() {
        return Err(Error::validation("weights", "nothing to allocate over"));
    }
    let mut minor = Vec::with_capacity(weights.len());
    for w in weights {
        if w.currency() != total.currency() {
            return Err(Error::CurrencyMismatch {
                left: total.currency(),
                right: w.currency(),
            });
        }
        if w.is_negative() {
            return Err(Error::validation("weights", "must not be negative"));
        }
        minor.push(i128::from(w.to_minor_units()));
    }
    let parts = allocate_minor(i128::from(total.to_minor_units()), &minor);
    parts
        .into_iter()
        .map(|p| {
            let p = i64::try_from(p)
                .map_err(|_| Error::validation("amount", "allocation out of range"))?;
            Money::from_minor_units(p, total.currency())
        })
        .collect()
}

/// [`allocate`] on integers (minor units, unit counts): `weights` must not be negative
/// (negative weights count as zero) and not be empty.
pub fn allocate_minor(total: i128, weights: &[i128]) -> Vec<i128> {
    let n = weights.len();
    if n == 0 {
        return Vec::new();
    }
    let sign = if total < 0 { -1 } else { 1 };
    let total = total.abs();
    let clamped: Vec<i128> = weights.iter().map(|w| (*w).max(0)).collect();
    let sum: i128 = clamped.iter().sum();
    let (weights, sum) = if sum == 0 {
        (vec![1; n], n as i128)
    } else {
        (clamped, sum)
    };
    let mut parts: Vec<i128> = weights.iter().map(|w| total * w / sum).collect();
    let mut remainders: Vec<(i128, usize)> = weights
        .iter()
        .enumerate()
        .map(|(i, w)| (total * w % sum, i))
        .collect();
    let left = total - parts.iter().sum::<i128>();
    // Largest remainder first; ties to the earlier index.
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, i) in remainders.into_iter().take(left as usize) {
        parts[i] += 1;
    }
    parts.into_iter().map(|p| p * sign).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Currency;
    use proptest::prelude::*;

    #[test]
    fn splits_exactly_and_refuses_bad_weights() {
        let m = |s: &str| s.parse::<Money>().expect("valid");
        let parts = allocate(&m("1.00 EUR"), &[m("2.00 EUR"), m("1.00 EUR")]).expect("ok");
        assert_eq!(parts, vec![m("0.67 EUR"), m("0.33 EUR")]);
        let zero = allocate(&m("0.05 EUR"), &[m("0.00 EUR"), m("0.00 EUR")]).expect("ok");
        assert_eq!(zero, vec![m("0.03 EUR"), m("0.02 EUR")]);
        assert!(allocate(&m("1.00 EUR"), &[]).is_err());
        assert!(allocate(&m("1.00 EUR"), &[m("-1.00 EUR")]).is_err());
        assert!(matches!(
            allocate(&m("1.00 EUR"), &[m("1.00 USD")]),
            Err(Error::CurrencyMismatch { .. })
        ));
        let neg = allocate(&m("-1.00 EUR"), &[m("1.00 EUR"), m("2.00 EUR")]).expect("ok");
        assert_eq!(neg, vec![m("-0.33 EUR"), m("-0.67 EUR")]);
    }

    proptest! {
        #[test]
        fn parts_add_up_and_stay_within_one_minor_unit(
            total in -1_000_000i64..1_000_000,
            weights in prop::collection::vec(0i64..100_000, 1..12),
        ) {
            let ws: Vec<Money> = weights.iter()
                .map(|w| Money::from_minor_units(*w, Currency::USD).unwrap()).collect();
            let t = Money::from_minor_units(total, Currency::USD).unwrap();
            let parts = allocate(&t, &ws).unwrap();
            let sum: i64 = parts.iter().map(Money::to_minor_units).sum();
            prop_assert_eq!(sum, total);
            let wsum: i64 = weights.iter().sum();
            for (p, w) in parts.iter().zip(&weights) {
                let exact = if wsum == 0 {
                    total as f64 / weights.len() as f64
                } else {
                    total as f64 * *w as f64 / wsum as f64
                };
                prop_assert!((p.to_minor_units() as f64 - exact).abs() < 1.0 + 1e-9);
            }
        }
    }
}
