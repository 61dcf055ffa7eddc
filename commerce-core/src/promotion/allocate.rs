//! Splitting an order-level discount across lines with the largest-remainder method.

/// Splits `total` minor units across `weights` in proportion, so the shares sum to
/// exactly `total`: each share is first rounded down, then the units left over go one
/// each to the shares with the largest remainders (ties to the earlier line).
///
/// Shares are never negative, and when `total` is at most the sum of the weights no
/// share exceeds its weight (so a discount allocated by line amounts never takes a line
/// below zero). Zero or negative weights get nothing; if every weight is zero, or
/// `total` is not positive, every share is zero.
///
/// ```
/// use commerce_core::promotion::allocate_largest_remainder;
///
/// // 10.00 off three lines of 10.00, 10.00 and 10.00: 3.34 + 3.33 + 3.33.
/// assert_eq!(allocate_largest_remainder(1000, &[1000, 1000, 1000]), [334, 333, 333]);
/// assert_eq!(allocate_largest_remainder(7, &[1, 0, 3]), [2, 0, 5]);
/// ```
pub fn allocate_largest_remainder(total: i64, weights: &[i64]) -> Vec<i64> {
    let mut shares = vec![0i64; weights.len()];
    let sum: i128 = weights.iter().map(|w| i128::from((*w).max(0))).sum();
    if total <= 0 || sum == 0 {
        return shares;
    }
    let total = i128::from(total);
    let mut remainders: Vec<(i128, usize)> = Vec::with_capacity(weights.len());
    let mut given: i128 = 0;
    for (i, w) in weights.iter().enumerate() {
        let w = i128::from((*w).max(0));
        if w == 0 {
            continue;
        }
        let exact = total * w;
        let floor = exact / sum;
        given += floor;
        shares[i] = i64::try_from(floor).unwrap_or(i64::MAX);
        remainders.push((exact % sum, i));
    }
    // Largest remainder first; ties to the earlier line.
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let left = total - given;
    for (_, i) in remainders
        .into_iter()
        .take(usize::try_from(left).unwrap_or(0))
    {
        shares[i] += 1;
    }
    shares
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn shares_sum_exactly_and_stay_within_weights(
            weights in prop::collection::vec(0i64..10_000_000_000, 1..40),
            fraction in 0.0f64..=1.0,
        ) {
            let sum: i64 = weights.iter().sum();
            let total = ((sum as f64) * fraction).floor() as i64;
            let shares = allocate_largest_remainder(total, &weights);
            prop_assert_eq!(shares.iter().sum::<i64>(), if sum == 0 { 0 } else { total });
            for (s, w) in shares.iter().zip(&weights) {
                prop_assert!(*s >= 0 && s <= w, "share {} of weight {}", s, w);
            }
        }

        #[test]
        fn shares_are_within_one_unit_of_the_exact_proportion(
            weights in prop::collection::vec(1i64..1_000_000, 1..20),
            total in 0i64..1_000_000,
        ) {
            let sum: i128 = weights.iter().map(|w| i128::from(*w)).sum();
            let shares = allocate_largest_remainder(total, &weights);
            prop_assert_eq!(shares.iter().sum::<i64>(), total);
            for (s, w) in shares.iter().zip(&weights) {
                let exact_floor = i128::from(total) * i128::from(*w) / sum;
                prop_assert!(i128::from(*s) == exact_floor || i128::from(*s) == exact_floor + 1);
            }
        }
    }
}
