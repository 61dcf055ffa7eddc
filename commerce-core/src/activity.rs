//! What shoppers did, as the recommendation contracts record it: the [`Basket`] of a
//! confirmed order (counted by [`CoPurchaseStore`](crate::store::CoPurchaseStore), ranked
//! back as [`ProductCount`]s) and the [`Interaction`]s of a shopper's history
//! ([`HistoryStore`](crate::store::HistoryStore)).
//!
//! Plain data with its rules; the services that feed and read the stores are in
//! [`recommend`](crate::recommend), which re-exports these types.

use serde::{Deserialize, Serialize};

use crate::catalog::{CategoryPath, Product};
use crate::clock::Timestamp;
use crate::id::{OrderId, ProductId};
use crate::order::Order;

/// Most products of one basket that are paired with each other.
///
/// Pairs grow as O(n²): an order with the maximum of 250 lines would add 62,250
/// directed pair increments. Only the first `MAX_PAIRED_PRODUCTS` distinct products (in
/// line order) are paired, so one order adds at most 50 × 49 = 2,450 increments;
/// popularity still counts every distinct product. Very large orders are mostly
/// business restocking, whose pairs say little about what shoppers buy together.
pub const MAX_PAIRED_PRODUCTS: usize = 50;

/// The products of one confirmed order, normalised: distinct, in first-seen line order.
///
/// ```
/// use commerce_core::id::{OrderId, ProductId};
/// use commerce_core::activity::Basket;
///
/// let p = |s: &str| ProductId::new(s).unwrap();
/// let basket = Basket::new(OrderId::new("o-1")?, [p("a"), p("b"), p("a"), p("c")]);
/// assert_eq!(basket.products(), &[p("a"), p("b"), p("c")]);
/// // Every ordered pair of distinct paired products: 3 × 2.
/// assert_eq!(basket.pairs().count(), 6);
/// # Ok::<(), commerce_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Basket {
    order_id: OrderId,
    products: Vec<ProductId>,
}

impl Basket {
    /// The basket of `order_id` holding `products` (duplicates are dropped, the first
    /// occurrence keeps its place).
    pub fn new(order_id: OrderId, products: impl IntoIterator<Item = ProductId>) -> Self {
        let mut seen = std::collections::HashSet::new();
        let products = products
            .into_iter()
            .filter(|p| seen.insert(p.clone()))
            .collect();
        Basket { order_id, products }
    }

    /// The basket of an order: the products of its lines.
    pub fn from_order(order: &Order) -> Self {
        Self::new(
            order.id.clone(),
            order.lines.iter().map(|l| l.product_id.clone()),
        )
    }

    /// The order it comes from (the idempotency key of recording it).
    pub fn order_id(&self) -> &OrderId {
        &self.order_id
    }

    /// Every distinct product, in first-seen order; each counts once for popularity.
    pub fn products(&self) -> &[ProductId] {
        &self.products
    }

    /// The products that are paired: the first [`MAX_PAIRED_PRODUCTS`].
    pub fn paired(&self) -> &[ProductId] {
        &self.products[..self.products.len().min(MAX_PAIRED_PRODUCTS)]
    }

    /// Every ordered pair `(x, y)` of distinct [`paired`](Self::paired) products: the
    /// increments of "bought `x`, also bought `y`" that recording this basket makes.
    pub fn pairs(&self) -> impl Iterator<Item = (&ProductId, &ProductId)> + '_ {
        let paired = self.paired();
        paired.iter().enumerate().flat_map(move |(i, x)| {
            paired
                .iter()
                .enumerate()
                .filter(move |(j, _)| *j != i)
                .map(move |(_, y)| (x, y))
        })
    }

    /// Whether the basket has no products.
    pub fn is_empty(&self) -> bool {
        self.products.is_empty()
    }
}

/// A product with a count: orders that contained it (popularity), or orders that
/// contained it together with an anchor product (co-purchase).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProductCount {
    /// The product.
    pub product_id: ProductId,
    /// The number of orders.
    pub count: u64,
}

impl ProductCount {
    /// The ranking every store uses: count descending, then product id ascending.
    pub fn rank_cmp(&self, other: &Self) -> std::cmp::Ordering {
        other
            .count
            .cmp(&self.count)
            .then_with(|| self.product_id.cmp(&other.product_id))
    }
}

/// Whether recording a basket changed anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordOutcome {
    /// The basket was counted now.
    Recorded,
    /// The order had already been counted; nothing changed.
    Duplicate,
}

/// Most interactions a history store keeps per shopper (older ones are dropped).
pub const HISTORY_CAPACITY: usize = 200;

/// What a shopper did with a product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InteractionKind {
    /// Opened the product page.
    Viewed,
    /// Put it in the cart.
    Carted,
    /// Bought it (a confirmed order).
    Bought,
}

impl InteractionKind {
    /// The weight of one such interaction in the affinity: 1, 3 and 5.
    pub fn weight(self) -> f64 {
        match self {
            InteractionKind::Viewed => 1.0,
            InteractionKind::Carted => 3.0,
            InteractionKind::Bought => 5.0,
        }
    }

    /// The lower-case name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            InteractionKind::Viewed => "viewed",
            InteractionKind::Carted => "carted",
            InteractionKind::Bought => "bought",
        }
    }
}

/// One thing a shopper did. Brand and category are copied from the product so that
/// computing an affinity needs no catalog reads.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Interaction {
    /// The product.
    pub product_id: ProductId,
    /// Its brand at the time.
    pub brand: String,
    /// Its category at the time.
    pub category: CategoryPath,
    /// What happened.
    pub kind: InteractionKind,
    /// When.
    pub at: Timestamp,
}

impl Interaction {
    /// An interaction with `product` at `at`.
    pub fn new(product: &Product, kind: InteractionKind, at: Timestamp) -> Self {
        Interaction {
            product_id: product.id.clone(),
            brand: product.brand.clone(),
            category: product.category.clone(),
            kind,
            at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(i: usize) -> ProductId {
        ProductId::new(format!("p{i}")).unwrap()
    }

    #[test]
    fn pairs_are_capped() {
        let basket = Basket::new(OrderId::new("o").unwrap(), (0..250).map(p));
        assert_eq!(basket.products().len(), 250);
        assert_eq!(basket.paired().len(), MAX_PAIRED_PRODUCTS);
        assert_eq!(
            basket.pairs().count(),
            MAX_PAIRED_PRODUCTS * (MAX_PAIRED_PRODUCTS - 1)
        );
        assert!(basket.pairs().all(|(x, y)| x != y));
    }

    #[test]
    fn rank_is_count_then_id() {
        let mut v = [
            ProductCount {
                product_id: p(2),
                count: 1,
            },
            ProductCount {
                product_id: p(1),
                count: 1,
            },
            ProductCount {
                product_id: p(3),
                count: 5,
            },
        ];
        v.sort_by(ProductCount::rank_cmp);
        let ids: Vec<_> = v.iter().map(|c| c.product_id.as_str()).collect();
        assert_eq!(ids, ["p3", "p1", "p2"]);
    }
}
