//! A shopper's history (viewed, carted, bought) and what it says about their taste: an
//! [`Affinity`] to brands and categories, used to re-rank recommendations and (through
//! [`SearchQuery::personalization`](crate::store::search::SearchQuery)) search results.
//!
//! ## How the affinity is computed
//! Each interaction adds `kind weight × recency` to its product's brand and category,
//! where the kind weights are viewed 1, carted 3, bought 5, and recency halves every
//! [`AffinityConfig::half_life`] (14 days by default). The parent category gets half of
//! what the category gets, so siblings of what a shopper looked at rank a little higher
//! too. The weights are then scaled so the largest is 1, and only the strongest
//! [`AffinityConfig::max_entries`] brands and categories are kept.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use crate::activity::{Interaction, InteractionKind};
use crate::catalog::CategoryPath;
use crate::clock::Timestamp;
use crate::id::ProductId;
use crate::store::search::Affinity;

/// Tuning of [`Profile::from_history`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AffinityConfig {
    /// After this long an interaction counts half as much.
    pub half_life: Duration,
    /// Most brands and most categories kept in the affinity.
    pub max_entries: usize,
}

impl Default for AffinityConfig {
    fn default() -> Self {
        AffinityConfig {
            half_life: Duration::from_secs(14 * 24 * 3600),
            max_entries: 20,
        }
    }
}

/// What a shopper's history says: their affinity and what they already bought.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Profile {
    /// Brand and category weights, 0 to 1.
    pub affinity: Affinity,
    /// Products the shopper bought (within the kept history).
    pub bought: HashSet<ProductId>,
}

impl Profile {
    /// The profile of `history` (any order) as of `now`.
    ///
    /// ```
    /// use commerce_core::catalog::CategoryPath;
    /// use commerce_core::clock::{Clock, ManualClock};
    /// use commerce_core::id::ProductId;
    /// use commerce_core::recommend::{AffinityConfig, Interaction, InteractionKind, Profile};
    ///
    /// let now = ManualClock::default().now();
    /// let seen = |id: &str, brand: &str, kind| Interaction {
    ///     product_id: ProductId::new(id).unwrap(),
    ///     brand: brand.into(),
    ///     category: CategoryPath::parse("Audio > Headphones").unwrap(),
    ///     kind,
    ///     at: now,
    /// };
    /// let history = [
    ///     seen("p1", "Sony", InteractionKind::Bought),
    ///     seen("p2", "Bose", InteractionKind::Viewed),
    /// ];
    /// let profile = Profile::from_history(&history, now, &AffinityConfig::default());
    /// assert_eq!(profile.affinity.brands["Sony"], 1.0);
    /// assert_eq!(profile.affinity.brands["Bose"], 0.2);
    /// assert!(profile.bought.contains(&ProductId::new("p1").unwrap()));
    /// ```
    pub fn from_history(history: &[Interaction], now: Timestamp, config: &AffinityConfig) -> Self {
        let half_life = config.half_life.as_secs_f64().max(1.0);
        let mut brands: HashMap<&str, f64> = HashMap::new();
        let mut categories: HashMap<CategoryPath, f64> = HashMap::new();
        let mut bought = HashSet::new();
        for i in history {
            let age = (now - i.at).num_milliseconds().max(0) as f64 / 1000.0;
            let w = i.kind.weight() * 0.5f64.powf(age / half_life);
            *brands.entry(i.brand.as_str()).or_default() += w;
            *categories.entry(i.category.clone()).or_default() += w;
            if let Some(parent) = i.category.parent() {
                *categories.entry(parent).or_default() += w / 2.0;
            }
            if i.kind == InteractionKind::Bought {
                bought.insert(i.product_id.clone());
            }
        }
        Profile {
            affinity: Affinity {
                brands: strongest(brands, config.max_entries, |b| b.to_owned()),
                categories: strongest(categories, config.max_entries, |c| c),
            },
            bought,
        }
    }

    /// How well `brand` and `category` match the affinity, 0 to 1: the mean of the
    /// brand's weight and the weight of the category (or of its nearest weighted
    /// ancestor).
    pub fn score(&self, brand: &str, category: &CategoryPath) -> f64 {
        affinity_score(&self.affinity, brand, category)
    }
}

/// How well `brand` and `category` match `affinity`, 0 to 1 (see [`Profile::score`]).
pub fn affinity_score(affinity: &Affinity, brand: &str, category: &CategoryPath) -> f64 {
    let b = affinity.brands.get(brand).copied().unwrap_or(0.0);
    let c = std::iter::once(category.clone())
        .chain(category.ancestors().into_iter().rev())
        .find_map(|p| affinity.categories.get(&p).copied())
        .unwrap_or(0.0);
    (f64::from(b) + f64::from(c)) / 2.0
}

/// The `n` largest weights, scaled so the largest is 1.
fn strongest<K, O: Ord>(
    weights: HashMap<K, f64>,
    n: usize,
    key: impl Fn(K) -> O,
) -> BTreeMap<O, f32> {
    let mut v: Vec<(K, f64)> = weights
        .into_iter()
        .filter(|(_, w)| w.is_finite() && *w > 0.0)
        .collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1));
    v.truncate(n);
    let max = v.first().map(|(_, w)| *w).unwrap_or(1.0);
    v.into_iter()
        .map(|(k, w)| (key(k), (w / max) as f32))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};

    fn at(kind: InteractionKind, brand: &str, cat: &str, at: Timestamp) -> Interaction {
        Interaction {
            product_id: ProductId::new("p").unwrap(),
            brand: brand.into(),
            category: CategoryPath::parse(cat).unwrap(),
            kind,
            at,
        }
    }

    #[test]
    fn recent_and_strong_interactions_weigh_more() {
        let clock = ManualClock::default();
        let old = clock.now();
        clock.advance(Duration::from_secs(28 * 24 * 3600));
        let now = clock.now();
        let history = [
            at(InteractionKind::Bought, "Old", "A > B", old),
            at(InteractionKind::Viewed, "New", "A > C", now),
        ];
        let p = Profile::from_history(&history, now, &AffinityConfig::default());
        // Bought two half-lives ago: 5 / 4 = 1.25 > viewed now: 1.
        assert_eq!(p.affinity.brands["Old"], 1.0);
        assert!((p.affinity.brands["New"] - 0.8).abs() < 1e-6);
        // The parent gets half of both.
        assert!(
            p.affinity
                .categories
                .contains_key(&CategoryPath::parse("A").unwrap())
        );
        // A sibling of a weighted category scores through the parent.
        let sibling = CategoryPath::parse("A > D").unwrap();
        let s = p.score("Other", &sibling);
        assert!(s > 0.0 && s < 1.0, "{s}");
        assert_eq!(p.score("Nobody", &CategoryPath::parse("Z").unwrap()), 0.0);
    }

    #[test]
    fn empty_history_is_neutral() {
        let now = ManualClock::default().now();
        let p = Profile::from_history(&[], now, &AffinityConfig::default());
        assert!(p.affinity.brands.is_empty() && p.bought.is_empty());
    }
}
