//! Re-checking cart lines against the catalog (price, still sold) and the inventory
//! (units available), shared by client-side carts and checkout.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::catalog::CategoryPath;
use crate::clock::Timestamp;
use crate::error::Result;
use crate::id::{CustomerGroupId, ProductId, Sku};
use crate::inventory::SkuStock;
use crate::money::{Currency, Money};
use crate::promotion::{PriceList, resolve_price};
use crate::store::{CatalogStore, InventoryStore};

/// A line to re-check: the SKU, the units, and the price the shopper saw (a cart's
/// snapshot or what a client says it displayed; never charged).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineInput {
    /// The variant.
    pub sku: Sku,
    /// Units.
    pub quantity: u32,
    /// The price the shopper saw, if known.
    pub seen_price: Option<Money>,
}

/// Something about a line that stops a checkout until the shopper acts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LineIssue {
    /// No active product sells this SKU any more.
    Unavailable,
    /// The catalog price differs from the price the shopper saw; the caller may
    /// accept the new price and check out again.
    PriceChanged {
        /// The price the shopper saw.
        was: Money,
        /// The catalog price now.
        now: Money,
    },
    /// Fewer units are available than asked for.
    OutOfStock {
        /// Units asked for.
        requested: u64,
        /// Units available now.
        available: u64,
    },
    /// The product is priced in another currency than the rest of the cart.
    CurrencyMismatch {
        /// The cart's currency (that of its first priced line).
        expected: Currency,
        /// This product's currency.
        found: Currency,
    },
}

/// One re-checked line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckedLine {
    /// The variant.
    pub sku: Sku,
    /// Units.
    pub quantity: u32,
    /// The product, if the SKU is sold.
    pub product_id: Option<ProductId>,
    /// The product title, if the SKU is sold.
    pub title: Option<String>,
    /// The product's category, if the SKU is sold.
    #[serde(default)]
    pub category: Option<CategoryPath>,
    /// The catalog price now (resolved through the price lists, when checkout has
    /// them): the only price ever charged.
    pub unit_price: Option<Money>,
    /// The price the shopper saw.
    pub seen_price: Option<Money>,
    /// `unit_price * quantity`.
    pub line_total: Option<Money>,
    /// Units available now (over all locations).
    pub available: u64,
    /// Whether the SKU may be sold beyond its stock.
    pub backorder: bool,
    /// What stops this line, if anything.
    pub issues: Vec<LineIssue>,
}

/// Every line of a cart, re-checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revalidation {
    /// The lines, in cart order.
    pub lines: Vec<CheckedLine>,
    /// Sum of the line totals of the priced lines (`None` when no line is priced).
    pub subtotal: Option<Money>,
}

impl Revalidation {
    /// Whether no line has an issue.
    pub fn is_ok(&self) -> bool {
        self.lines.iter().all(|l| l.issues.is_empty())
    }

    /// Every issue, with its SKU.
    pub fn issues(&self) -> impl Iterator<Item = (&Sku, &LineIssue)> {
        self.lines
            .iter()
            .flat_map(|l| l.issues.iter().map(move |i| (&l.sku, i)))
    }

    /// The new prices of the lines whose price changed: pass them back as the accepted
    /// prices once the shopper agreed.
    pub fn price_changes(&self) -> BTreeMap<Sku, Money> {
        self.issues()
            .filter_map(|(sku, i)| match i {
                LineIssue::PriceChanged { now, .. } => Some((sku.clone(), *now)),
                _ => None,
            })
            .collect()
    }
}

/// How price changes are treated.
#[derive(Debug, Clone, Default)]
pub(crate) struct PriceRules<'a> {
    /// Prices the shopper agreed to, per SKU.
    pub accepted: Option<&'a BTreeMap<Sku, Money>>,
    /// Whether a lower price is taken without asking.
    pub auto_accept_drops: bool,
    /// Price lists to resolve prices with, if any.
    pub lists: Option<ListPricing<'a>>,
}

/// What [`resolve_price`] needs besides the SKU and its base price.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ListPricing<'a> {
    /// The currency to price in (`None`: each variant's own).
    pub currency: Option<Currency>,
    /// The customer's groups.
    pub groups: &'a [CustomerGroupId],
    /// The lists valid now in `currency`.
    pub lists: &'a [PriceList],
    /// Now.
    pub now: Timestamp,
}

impl ListPricing<'_> {
    /// The unit price of `sku` with base price `base`, or `None` when it is not sold in
    /// the currency.
    pub fn price(&self, sku: &Sku, base: &Money) -> Option<Money> {
        let currency = self.currency.unwrap_or(base.currency());
        resolve_price(sku, base, currency, self.groups, self.lists, self.now).map(|r| r.price)
    }
}

/// The stock of each distinct SKU of `lines`, with one `stocks` call per
/// [`MAX_PAGE_SIZE`](crate::store::MAX_PAGE_SIZE) SKUs.
async fn stocks_of(
    inventory: &dyn InventoryStore,
    lines: &[LineInput],
) -> Result<HashMap<Sku, SkuStock>> {
    let skus: Vec<Sku> = lines.iter().map(|l| l.sku.clone()).collect();
    let mut out = HashMap::with_capacity(skus.len());
    for chunk in skus.chunks(crate::store::MAX_PAGE_SIZE as usize) {
        for stock in inventory.stocks(chunk).await? {
            out.insert(stock.sku.clone(), stock);
        }
    }
    Ok(out)
}

/// Re-checks `lines` against the catalog and the inventory. Reads only: the products of
/// all lines and their stock are read at once, not line after line.
pub(crate) async fn revalidate(
    catalog: &dyn CatalogStore,
    inventory: &dyn InventoryStore,
    lines: &[LineInput],
    rules: &PriceRules<'_>,
) -> Result<Revalidation> {
    let (products, stocks) = futures::future::try_join(
        futures::future::try_join_all(lines.iter().map(|l| catalog.get_product_by_sku(&l.sku))),
        stocks_of(inventory, lines),
    )
    .await?;
    let mut out = Vec::with_capacity(lines.len());
    let mut currency: Option<Currency> = None;
    for (line, product) in lines.iter().zip(products) {
        let sold = product
            .as_ref()
            .filter(|p| p.is_active())
            .and_then(|p| p.variant(&line.sku).map(|v| (p, v)));
        let stock = stocks.get(&line.sku).ok_or_else(|| {
            crate::Error::backend(
                false,
                format!("the inventory did not answer for {}", line.sku),
            )
        })?;
        let mut checked = CheckedLine {
            sku: line.sku.clone(),
            quantity: line.quantity,
            product_id: sold.map(|(p, _)| p.id.clone()),
            title: sold.map(|(p, _)| p.title.clone()),
            category: sold.map(|(p, _)| p.category.clone()),
            unit_price: None,
            seen_price: line.seen_price,
            line_total: None,
            available: stock.available(),
            backorder: stock.backorder_allowed,
            issues: Vec::new(),
        };
        let Some((_, variant)) = sold else {
            checked.issues.push(LineIssue::Unavailable);
            out.push(checked);
            continue;
        };
        let Some(now) = (match &rules.lists {
            Some(lists) => lists.price(&line.sku, &variant.price),
            None => Some(variant.price),
        }) else {
            // Not sold in the currency asked for.
            checked.issues.push(LineIssue::Unavailable);
            out.push(checked);
            continue;
        };
        checked.unit_price = Some(now);
        match currency {
            None => currency = Some(now.currency()),
            Some(c) if c != now.currency() => {
                checked.issues.push(LineIssue::CurrencyMismatch {
                    expected: c,
                    found: now.currency(),
                });
                out.push(checked);
                continue;
            }
            Some(_) => {}
        }
        checked.line_total = Some(now.checked_mul(u64::from(line.quantity))?);
        if let Some(was) = line.seen_price {
            let accepted = rules
                .accepted
                .and_then(|a| a.get(&line.sku))
                .is_some_and(|p| *p == now);
            let dropped = rules.auto_accept_drops
                && was.currency() == now.currency()
                && now.amount() < was.amount();
            if was != now && !accepted && !dropped {
                checked.issues.push(LineIssue::PriceChanged { was, now });
            }
        }
        if !stock.backorder_allowed && stock.available() < u64::from(line.quantity) {
            checked.issues.push(LineIssue::OutOfStock {
                requested: u64::from(line.quantity),
                available: stock.available(),
            });
        }
        out.push(checked);
    }
    let subtotal = match currency {
        Some(c) => Some(Money::try_sum(
            c,
            out.iter()
                .filter(|l| {
                    !l.issues
                        .iter()
                        .any(|i| matches!(i, LineIssue::CurrencyMismatch { .. }))
                })
                .filter_map(|l| l.line_total.as_ref()),
        )?),
        None => None,
    };
    Ok(Revalidation {
        lines: out,
        subtotal,
    })
}
