//! The blend: weighted reciprocal-rank fusion of the candidate lists, then the
//! personal re-rank.
//!
//! ## Fusion
//! Each source gives a ranked list (one also-bought list and one similar list per
//! anchor product, one popularity list). A product's fused score is
//!
//! ```text
//! fused(p) = Σ over lists L holding p:  weight(L.source) / (k + rank_L(p))
//! ```
//!
//! with ranks from 1, `k` = [`BlendWeights::rrf_k`] (20) and the weights also-bought 1.0,
//! similar 0.6, popular 0.15. Reciprocal ranks need no score calibration between
//! sources (co-purchase counts and BM25 scores are not comparable); a product found by
//! several sources or for several anchors adds up. With these weights co-purchase
//! evidence leads, content similarity fills in, and popularity only decides among the
//! rest, which is what makes it the cold-start fallback: a new product has no
//! co-purchases, so its similar products and the best sellers are what remain.
//!
//! ## Personal re-rank
//! ```text
//! score(p) = fused(p) × (1 + personal × affinity(p)) × (bought_penalty if bought before)
//! ```
//! where `affinity(p)` in 0..=1 is [`Profile::score`] of p's brand and category,
//! `personal` = 0.5 and `bought_penalty` = 0.3 (people rarely buy the same thing twice,
//! but consumables happen). Ties are broken by product id.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::history::Profile;
use crate::catalog::Product;
use crate::id::ProductId;

/// Where a recommended product came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Co-purchase counts.
    AlsoBought,
    /// Content similarity (the search index).
    Similar,
    /// Overall best sellers.
    Popular,
}

/// The blend's parameters (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BlendWeights {
    /// Weight of each also-bought list.
    pub also_bought: f64,
    /// Weight of each similar list.
    pub similar: f64,
    /// Weight of the popularity list.
    pub popular: f64,
    /// The rank offset `k`.
    pub rrf_k: f64,
    /// Strength of the personal re-rank.
    pub personal: f64,
    /// Factor applied to products the shopper already bought.
    pub bought_penalty: f64,
}

impl Default for BlendWeights {
    fn default() -> Self {
        BlendWeights {
            also_bought: 1.0,
            similar: 0.6,
            popular: 0.15,
            rrf_k: 20.0,
            personal: 0.5,
            bought_penalty: 0.3,
        }
    }
}

impl BlendWeights {
    fn weight(&self, source: Source) -> f64 {
        match source {
            Source::AlsoBought => self.also_bought,
            Source::Similar => self.similar,
            Source::Popular => self.popular,
        }
    }
}

/// One ranked candidate list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RankedList {
    /// Where it came from.
    pub source: Source,
    /// Best first.
    pub items: Vec<ProductId>,
}

/// A fused candidate.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The product.
    pub product_id: ProductId,
    /// The score so far.
    pub score: f64,
    /// The sources that named it, sorted, without repeats.
    pub sources: Vec<Source>,
}

fn by_score(a: &Candidate, b: &Candidate) -> std::cmp::Ordering {
    b.score
        .total_cmp(&a.score)
        .then_with(|| a.product_id.cmp(&b.product_id))
}

/// Fuses `lists` by weighted reciprocal rank, best first. Repeats of a product within
/// one list count at their first rank only.
///
/// ```
/// use commerce_core::id::ProductId;
/// use commerce_core::recommend::{BlendWeights, RankedList, Source, fuse};
///
/// let p = |s: &str| ProductId::new(s).unwrap();
/// let lists = [
///     RankedList { source: Source::AlsoBought, items: vec![p("case"), p("charger")] },
///     RankedList { source: Source::Similar, items: vec![p("phone-2"), p("charger")] },
/// ];
/// let fused = fuse(&lists, &BlendWeights::default());
/// // The charger is named by both sources and overtakes the top also-bought item.
/// assert_eq!(fused[0].product_id, p("charger"));
/// assert_eq!(fused[0].sources, [Source::AlsoBought, Source::Similar]);
/// ```
pub fn fuse(lists: &[RankedList], weights: &BlendWeights) -> Vec<Candidate> {
    let mut by_id: HashMap<&ProductId, Candidate> = HashMap::new();
    for list in lists {
        let w = weights.weight(list.source);
        let mut seen = std::collections::HashSet::new();
        for (rank, id) in list.items.iter().enumerate() {
            if !seen.insert(id) {
                continue;
            }
            let c = by_id.entry(id).or_insert_with(|| Candidate {
                product_id: id.clone(),
                score: 0.0,
                sources: Vec::new(),
            });
            c.score += w / (weights.rrf_k + rank as f64 + 1.0);
            if !c.sources.contains(&list.source) {
                c.sources.push(list.source);
                c.sources.sort();
            }
        }
    }
    let mut out: Vec<Candidate> = by_id.into_values().collect();
    out.sort_by(by_score);
    out
}

/// Applies the personal re-rank to `candidates` (each with its product) and sorts them
/// best first.
pub fn personalize(
    candidates: &mut [(Candidate, Product)],
    profile: &Profile,
    weights: &BlendWeights,
) {
    for (c, p) in candidates.iter_mut() {
        c.score *= 1.0 + weights.personal * profile.score(&p.brand, &p.category);
        if profile.bought.contains(&c.product_id) {
            c.score *= weights.bought_penalty;
        }
    }
    candidates.sort_by(|a, b| by_score(&a.0, &b.0));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> ProductId {
        ProductId::new(s).unwrap()
    }

    #[test]
    fn scores_follow_the_formula() {
        let w = BlendWeights::default();
        let lists = [
            RankedList {
                source: Source::AlsoBought,
                items: vec![p("a"), p("b"), p("a")],
            },
            RankedList {
                source: Source::Popular,
                items: vec![p("c"), p("a")],
            },
        ];
        let fused = fuse(&lists, &w);
        let score = |id: &str| fused.iter().find(|c| c.product_id == p(id)).unwrap().score;
        assert!((score("a") - (1.0 / 21.0 + 0.15 / 22.0)).abs() < 1e-12);
        assert!((score("b") - 1.0 / 22.0).abs() < 1e-12);
        assert!((score("c") - 0.15 / 21.0).abs() < 1e-12);
        let order: Vec<_> = fused.iter().map(|c| c.product_id.as_str()).collect();
        assert_eq!(order, ["a", "b", "c"]);
    }

    #[test]
    fn also_bought_leads_popular_within_the_candidate_window() {
        // Rank 100 of an also-bought list still beats rank 1 of the popularity list.
        let w = BlendWeights::default();
        assert!(w.also_bought / (w.rrf_k + 100.0) > w.popular / (w.rrf_k + 1.0));
    }
}
