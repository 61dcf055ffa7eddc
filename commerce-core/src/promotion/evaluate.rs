//! The evaluator: which promotions a priced cart gets, what each line saves, and why a
//! code was refused. Pure: the caller brings the promotions (from a
//! [`PromotionStore`](crate::store::PromotionStore)) and the time.

use std::collections::HashSet;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

use super::action::{Action, Target, TierDiscount};
use super::allocate::allocate_largest_remainder;
use super::code::CouponCode;
use super::definition::{Promotion, Stacking, WindowState};
use super::redemption::RedemptionLine;
use crate::catalog::CategoryPath;
use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::id::{CustomerGroupId, CustomerId, ProductId, PromotionId, Sku};
use crate::money::{Currency, Money};

/// The most lines one evaluation takes.
pub const MAX_LINES: usize = 1000;
/// The most codes one evaluation takes.
pub const MAX_CODES: usize = 20;

/// A cart line at its resolved price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PricedLine {
    /// The SKU.
    pub sku: Sku,
    /// Its product.
    pub product_id: ProductId,
    /// The product's category.
    pub category: CategoryPath,
    /// Units (at least 1).
    pub quantity: u32,
    /// Price of one unit (not negative), in the cart's currency.
    pub unit_price: Money,
}

/// What the evaluator knows about the customer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerInfo {
    /// The signed-in customer, if any.
    pub id: Option<CustomerId>,
    /// Their groups.
    pub groups: Vec<CustomerGroupId>,
    /// Whether this would be their first order.
    pub first_order: bool,
}

/// A priced cart to evaluate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvaluationInput {
    /// The cart's currency: every amount is in it.
    pub currency: Currency,
    /// The lines (1 to [`MAX_LINES`]).
    pub lines: Vec<PricedLine>,
    /// The shipping charge before discounts.
    pub shipping: Money,
    /// The customer.
    pub customer: CustomerInfo,
    /// The time the window of every promotion is checked at.
    pub now: Timestamp,
}

/// An automatic promotion, and whether its limits are already used up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    /// The promotion.
    pub promotion: Promotion,
    /// Whether a limit (total uses, budget) is used up.
    pub exhausted: bool,
}

/// What a code the shopper entered turned out to be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CodeLookup {
    /// Not a well-formed code (kept as given, at most 64 characters).
    Malformed {
        /// The text as entered, cut to 64 characters.
        given: String,
    },
    /// Well-formed, but no promotion has it.
    Unknown {
        /// The code.
        code: CouponCode,
    },
    /// The code of `promotion`.
    Found {
        /// The code.
        code: CouponCode,
        /// Its promotion.
        promotion: Box<Promotion>,
        /// Whether the code (single-use and held) or the promotion (total uses,
        /// budget) is used up.
        exhausted: bool,
    },
}

impl CodeLookup {
    /// The text to report a rejection under.
    fn text(&self) -> String {
        match self {
            CodeLookup::Malformed { given } => given.clone(),
            CodeLookup::Unknown { code } | CodeLookup::Found { code, .. } => code.to_string(),
        }
    }
}

/// How the evaluator picks among promotions that do not combine
/// (see [the stacking rules](super#stacking)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StackingPolicy {
    /// The option that saves the customer the most (the default).
    #[default]
    BestForCustomer,
    /// The highest-priority promotion decides: if it is exclusive it applies alone,
    /// otherwise every combinable promotion applies.
    Priority,
}

/// Why a code was not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// Not a well-formed code.
    Malformed,
    /// No promotion has this code.
    Unknown,
    /// The promotion's window has not started.
    NotYetActive,
    /// The promotion's window has ended.
    Expired,
    /// A usage limit or the budget is used up, or the single-use code is taken.
    LimitReached,
    /// The cart or customer does not meet the conditions (or nothing in the cart
    /// qualifies, or the cart is in another currency).
    ConditionsNotMet,
    /// Another promotion was better for the customer (or this one is exclusive and lost,
    /// or it gives nothing more on top of the others).
    NotCombinable,
    /// Entered twice, or a second code of an already applied promotion.
    Duplicate,
}

/// A code that was not applied, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedCode {
    /// The code as normalised (or as entered, if malformed). Escape it before showing.
    pub code: String,
    /// Why.
    pub reason: RejectReason,
}

/// One promotion's part of a line's discount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromotionShare {
    /// The promotion.
    pub promotion_id: PromotionId,
    /// What it took off this line.
    pub amount: Money,
}

/// A line after discounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineResult {
    /// The SKU.
    pub sku: Sku,
    /// Units.
    pub quantity: u32,
    /// Unit price times quantity.
    pub line_total: Money,
    /// Everything taken off the line.
    pub discount: Money,
    /// `line_total - discount`, never negative.
    pub total: Money,
    /// Which promotion took what (sums to `discount`).
    pub shares: Vec<PromotionShare>,
}

/// A promotion that applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedPromotion {
    /// The promotion.
    pub promotion_id: PromotionId,
    /// Its name.
    pub name: String,
    /// The code it came with, if any.
    pub code: Option<CouponCode>,
    /// What it took off the lines.
    pub line_discount: Money,
    /// What it took off shipping.
    pub shipping_discount: Money,
}

impl AppliedPromotion {
    /// Everything it gave: lines and shipping.
    pub fn amount(&self) -> Result<Money> {
        self.line_discount.checked_add(&self.shipping_discount)
    }
}

/// The outcome of [`evaluate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evaluation {
    /// The cart's currency.
    pub currency: Currency,
    /// The lines' totals before discounts.
    pub subtotal: Money,
    /// Each line, in input order.
    pub lines: Vec<LineResult>,
    /// The promotions applied, in the order they were applied.
    pub applied: Vec<AppliedPromotion>,
    /// Everything taken off the lines (the sum of the lines' discounts).
    pub discount: Money,
    /// Shipping before discounts.
    pub shipping: Money,
    /// Taken off shipping.
    pub shipping_discount: Money,
    /// `subtotal - discount + shipping - shipping_discount`, never negative.
    pub total: Money,
    /// Codes not applied, with why.
    pub rejected: Vec<RejectedCode>,
}

impl Evaluation {
    /// What to reserve with
    /// [`PromotionStore::reserve`](crate::store::PromotionStore::reserve): one line per
    /// applied promotion, with everything it gave.
    pub fn redemption_lines(&self) -> Result<Vec<RedemptionLine>> {
        self.applied
            .iter()
            .map(|a| {
                Ok(RedemptionLine {
                    promotion_id: a.promotion_id.clone(),
                    code: a.code.clone(),
                    amount: a.amount()?,
                })
            })
            .collect()
    }

    /// Subtotal plus shipping, before discounts: the `order_total` of a
    /// [`RedemptionRequest`](super::RedemptionRequest).
    pub fn gross_total(&self) -> Result<Money> {
        self.subtotal.checked_add(&self.shipping)
    }
}

/// One promotion's effect on the amounts left: per line, and on shipping (minor units).
struct Effect {
    lines: Vec<i64>,
    shipping: i64,
}

impl Effect {
    fn benefit(&self) -> i128 {
        self.lines.iter().map(|d| i128::from(*d)).sum::<i128>() + i128::from(self.shipping)
    }
}

fn percent_of(amount: i64, percent: Decimal) -> i64 {
    let exact = Decimal::from(amount) * percent / Decimal::ONE_HUNDRED;
    let rounded = exact.round_dp_with_strategy(0, RoundingStrategy::MidpointNearestEven);
    i64::try_from(rounded.mantissa())
        .unwrap_or(0)
        .clamp(0, amount.max(0))
}

/// Allocates `total` over the lines `filter` matches, by what is left of each.
fn allocate_over(total: i64, matching: &[bool], remaining: &[i64]) -> Vec<i64> {
    let weights: Vec<i64> = remaining
        .iter()
        .zip(matching)
        .map(|(r, m)| if *m { *r } else { 0 })
        .collect();
    let available: i64 = weights.iter().sum();
    allocate_largest_remainder(total.min(available), &weights)
}

/// What `promotion` takes off `remaining` (line amounts left, minor units) and
/// `shipping_left`, given the cart's original `subtotal`.
fn effect(
    promotion: &Promotion,
    input: &EvaluationInput,
    subtotal: i64,
    remaining: &[i64],
    shipping_left: i64,
) -> Effect {
    let matches = |target: &Target| -> Vec<bool> {
        let filter = target.filter();
        input.lines.iter().map(|l| filter.matches(l)).collect()
    };
    let sum_of = |m: &[bool]| -> i64 {
        remaining
            .iter()
            .zip(m)
            .filter(|(_, m)| **m)
            .map(|(r, _)| *r)
            .sum()
    };
    let none = || Effect {
        lines: vec![0; remaining.len()],
        shipping: 0,
    };
    match &promotion.action {
        Action::PercentOff { percent, target } => {
            let m = matches(target);
            let total = percent_of(sum_of(&m), *percent);
            Effect {
                lines: allocate_over(total, &m, remaining),
                shipping: 0,
            }
        }
        Action::AmountOff { amount, target } => {
            let m = matches(target);
            Effect {
                lines: allocate_over(amount.to_minor_units(), &m, remaining),
                shipping: 0,
            }
        }
        Action::FixedPrice { unit_price, filter } => {
            let unit = i128::from(unit_price.to_minor_units());
            let lines = input
                .lines
                .iter()
                .zip(remaining)
                .map(|(l, r)| {
                    if !filter.matches(l) {
                        return 0;
                    }
                    let target = unit * i128::from(l.quantity);
                    let d = (i128::from(*r) - target).max(0);
                    i64::try_from(d).unwrap_or(0)
                })
                .collect();
            Effect { lines, shipping: 0 }
        }
        Action::BuyXGetY { buy, get, filter } => {
            let mut matching: Vec<usize> = (0..input.lines.len())
                .filter(|i| filter.matches(&input.lines[*i]))
                .collect();
            matching.sort_by(|a, b| {
                let (pa, pb) = (&input.lines[*a].unit_price, &input.lines[*b].unit_price);
                pa.to_minor_units().cmp(&pb.to_minor_units()).then(a.cmp(b))
            });
            let units: u64 = matching
                .iter()
                .map(|i| u64::from(input.lines[*i].quantity))
                .sum();
            let mut free = units / u64::from(buy + get) * u64::from(*get);
            let mut out = none();
            for i in matching {
                if free == 0 {
                    break;
                }
                let line = &input.lines[i];
                let take = free.min(u64::from(line.quantity));
                free -= take;
                let worth = i128::from(line.unit_price.to_minor_units()) * i128::from(take);
                out.lines[i] = i64::try_from(worth.min(i128::from(remaining[i]))).unwrap_or(0);
            }
            out
        }
        Action::FreeShipping => Effect {
            lines: vec![0; remaining.len()],
            shipping: shipping_left.max(0),
        },
        Action::Tiered { tiers } => {
            let reached = tiers
                .iter()
                .rev()
                .find(|t| t.min_subtotal.to_minor_units() <= subtotal);
            let all = vec![true; remaining.len()];
            match reached.map(|t| &t.discount) {
                None => none(),
                Some(TierDiscount::Percent { percent }) => Effect {
                    lines: allocate_over(percent_of(sum_of(&all), *percent), &all, remaining),
                    shipping: 0,
                },
                Some(TierDiscount::Amount { amount }) => Effect {
                    lines: allocate_over(amount.to_minor_units(), &all, remaining),
                    shipping: 0,
                },
            }
        }
    }
}

/// A promotion that passed its checks, with the code it came with.
#[derive(Clone, Copy)]
struct Candidate<'a> {
    promotion: &'a Promotion,
    code: Option<&'a CouponCode>,
}

/// Why `promotion` cannot apply to `input`, if it cannot.
fn ineligible(
    promotion: &Promotion,
    input: &EvaluationInput,
    subtotal: &Money,
) -> Option<RejectReason> {
    match promotion.window_state(input.now) {
        WindowState::NotStarted => return Some(RejectReason::NotYetActive),
        WindowState::Ended => return Some(RejectReason::Expired),
        WindowState::Active => {}
    }
    if promotion.currency != input.currency
        || !promotion
            .conditions
            .iter()
            .all(|c| c.holds(input, subtotal))
    {
        return Some(RejectReason::ConditionsNotMet);
    }
    None
}

/// Applies `option` one promotion after another (priority first, then id) and returns
/// the promotions that had an effect, with their effects.
fn run_option<'a>(
    option: &[Candidate<'a>],
    input: &EvaluationInput,
    subtotal: i64,
    line_totals: &[i64],
    shipping: i64,
) -> (Vec<(Candidate<'a>, Effect)>, i128) {
    let mut order: Vec<Candidate<'a>> = option.to_vec();
    order.sort_by(|a, b| {
        b.promotion
            .priority
            .cmp(&a.promotion.priority)
            .then_with(|| a.promotion.id.cmp(&b.promotion.id))
    });
    let mut remaining = line_totals.to_vec();
    let mut shipping_left = shipping;
    let mut applied = Vec::new();
    let mut benefit = 0i128;
    for c in order {
        let e = effect(c.promotion, input, subtotal, &remaining, shipping_left);
        if e.benefit() <= 0 {
            continue;
        }
        for (r, d) in remaining.iter_mut().zip(&e.lines) {
            *r -= *d;
        }
        shipping_left -= e.shipping;
        benefit += e.benefit();
        applied.push((c, e));
    }
    (applied, benefit)
}

fn check_input(input: &EvaluationInput, codes: usize) -> Result<(Vec<i64>, Money)> {
    if input.lines.is_empty() || input.lines.len() > MAX_LINES {
        return Err(Error::validation(
            "lines",
            format!("{} lines; 1 to {MAX_LINES} allowed", input.lines.len()),
        ));
    }
    if codes > MAX_CODES {
        return Err(Error::validation(
            "codes",
            format!("{codes} codes; at most {MAX_CODES}"),
        ));
    }
    super::check_currency("shipping", &input.shipping, input.currency)?;
    if input.shipping.is_negative() {
        return Err(Error::validation("shipping", "must not be negative"));
    }
    let mut totals = Vec::with_capacity(input.lines.len());
    let mut subtotal = Money::zero(input.currency);
    for (i, l) in input.lines.iter().enumerate() {
        super::check_currency(
            &format!("lines[{i}].unit_price"),
            &l.unit_price,
            input.currency,
        )?;
        if l.quantity == 0 || l.unit_price.is_negative() {
            return Err(Error::validation(
                format!("lines[{i}]"),
                "quantity must be at least 1 and the price not negative",
            ));
        }
        let total = l.unit_price.checked_mul(u64::from(l.quantity))?;
        subtotal = subtotal.checked_add(&total)?;
        totals.push(total.to_minor_units());
    }
    subtotal.checked_add(&input.shipping)?;
    Ok((totals, subtotal))
}

/// Evaluates the promotions for a priced cart.
///
/// `automatic` are the automatic promotions on offer (a store's
/// [`automatic_offers`](crate::store::PromotionStore::automatic_offers)); `codes` what
/// the shopper's codes turned out to be (its
/// [`lookup_codes`](crate::store::PromotionStore::lookup_codes)), in the order entered.
/// Eligible promotions are combined by [the stacking rules](super#stacking) and
/// `policy`; every code that does not apply is in [`Evaluation::rejected`] with why.
///
/// Invalid input (no lines, more than [`MAX_LINES`] lines or [`MAX_CODES`] codes, a
/// zero quantity, a negative price or shipping, an amount in another currency) is an
/// error; nothing about the promotions is.
///
/// ```
/// use commerce_core::promotion::*;
/// use commerce_core::{Currency, Money, catalog::CategoryPath, id::*};
/// use rust_decimal::Decimal;
///
/// let line = |sku: &str, qty, price: &str| -> commerce_core::Result<PricedLine> {
///     Ok(PricedLine {
///         sku: Sku::new(sku)?,
///         product_id: ProductId::new(format!("p-{sku}"))?,
///         category: CategoryPath::parse("Shoes")?,
///         quantity: qty,
///         unit_price: price.parse()?,
///     })
/// };
/// let input = EvaluationInput {
///     currency: Currency::USD,
///     lines: vec![line("A", 1, "10.00 USD")?, line("B", 2, "10.00 USD")?],
///     shipping: "5.00 USD".parse()?,
///     customer: CustomerInfo::default(),
///     now: chrono::Utc::now(),
/// };
/// let ten_off = Promotion::new(
///     PromotionId::new("ten-off")?, "10.00 off", Currency::USD,
///     Action::AmountOff { amount: "10.00 USD".parse()?, target: Target::Order },
/// ).with_code();
/// let codes = [
///     CodeLookup::Found { code: CouponCode::parse("TEN")?, promotion: Box::new(ten_off), exhausted: false },
///     CodeLookup::Unknown { code: CouponCode::parse("NOPE")? },
/// ];
/// let result = evaluate(&input, &[], &codes, StackingPolicy::default())?;
/// assert_eq!(result.discount.to_string(), "10.00 USD");
/// // Allocated by line amounts (10.00 and 20.00), largest remainder: 3.33 + 6.67.
/// assert_eq!(result.lines[0].discount.to_string(), "3.33 USD");
/// assert_eq!(result.lines[1].discount.to_string(), "6.67 USD");
/// assert_eq!(result.total.to_string(), "25.00 USD");
/// assert_eq!(result.rejected[0].reason, RejectReason::Unknown);
/// # Ok::<(), commerce_core::Error>(())
/// ```
pub fn evaluate(
    input: &EvaluationInput,
    automatic: &[Offer],
    codes: &[CodeLookup],
    policy: StackingPolicy,
) -> Result<Evaluation> {
    let (line_totals, subtotal) = check_input(input, codes.len())?;
    let subtotal_minor = subtotal.to_minor_units();
    let shipping = input.shipping.to_minor_units();

    let mut rejected: Vec<RejectedCode> = Vec::new();
    let mut candidates: Vec<Candidate<'_>> = Vec::new();
    let mut taken: HashSet<&PromotionId> = HashSet::new();
    // Whether the promotion alone would take anything off this cart.
    let gives_something =
        |p: &Promotion| effect(p, input, subtotal_minor, &line_totals, shipping).benefit() > 0;

    for offer in automatic {
        let p = &offer.promotion;
        if offer.exhausted
            || taken.contains(&p.id)
            || ineligible(p, input, &subtotal).is_some()
            || !gives_something(p)
        {
            continue;
        }
        taken.insert(&p.id);
        candidates.push(Candidate {
            promotion: p,
            code: None,
        });
    }
    let mut seen_codes: HashSet<String> = HashSet::new();
    for lookup in codes {
        let text = lookup.text();
        let reject = |reason| RejectedCode {
            code: text.clone(),
            reason,
        };
        if !seen_codes.insert(text.clone()) {
            rejected.push(reject(RejectReason::Duplicate));
            continue;
        }
        match lookup {
            CodeLookup::Malformed { .. } => rejected.push(reject(RejectReason::Malformed)),
            CodeLookup::Unknown { .. } => rejected.push(reject(RejectReason::Unknown)),
            CodeLookup::Found {
                code,
                promotion,
                exhausted,
            } => {
                if taken.contains(&promotion.id) {
                    rejected.push(reject(RejectReason::Duplicate));
                } else if let Some(reason) = ineligible(promotion, input, &subtotal) {
                    rejected.push(reject(reason));
                } else if *exhausted {
                    rejected.push(reject(RejectReason::LimitReached));
                } else if !gives_something(promotion) {
                    rejected.push(reject(RejectReason::ConditionsNotMet));
                } else {
                    taken.insert(&promotion.id);
                    candidates.push(Candidate {
                        promotion,
                        code: Some(code),
                    });
                }
            }
        }
    }

    // The options: every combinable candidate together, or one exclusive alone.
    let combinable: Vec<Candidate<'_>> = candidates
        .iter()
        .copied()
        .filter(|c| c.promotion.stacking == Stacking::Combinable)
        .collect();
    let mut exclusive: Vec<Candidate<'_>> = candidates
        .iter()
        .copied()
        .filter(|c| c.promotion.stacking == Stacking::Exclusive)
        .collect();
    exclusive.sort_by(|a, b| {
        b.promotion
            .priority
            .cmp(&a.promotion.priority)
            .then_with(|| a.promotion.id.cmp(&b.promotion.id))
    });
    let mut options: Vec<Vec<Candidate<'_>>> = Vec::new();
    match policy {
        StackingPolicy::BestForCustomer => {
            options.push(combinable);
            options.extend(exclusive.into_iter().map(|c| vec![c]));
        }
        StackingPolicy::Priority => {
            let top_exclusive = exclusive.first().copied().filter(|e| {
                combinable.iter().all(|c| {
                    (e.promotion.priority, std::cmp::Reverse(&e.promotion.id))
                        > (c.promotion.priority, std::cmp::Reverse(&c.promotion.id))
                })
            });
            match top_exclusive {
                Some(e) => options.push(vec![e]),
                None => options.push(combinable),
            }
        }
    }
    let mut best: Option<(Vec<(Candidate<'_>, Effect)>, i128)> = None;
    for option in &options {
        let (applied, benefit) = run_option(option, input, subtotal_minor, &line_totals, shipping);
        if best.as_ref().is_none_or(|(_, b)| benefit > *b) {
            best = Some((applied, benefit));
        }
    }
    let applied = best.map(|(a, _)| a).unwrap_or_default();

    for c in &candidates {
        let Some(code) = c.code else { continue };
        if !applied
            .iter()
            .any(|(a, _)| a.promotion.id == c.promotion.id)
        {
            rejected.push(RejectedCode {
                code: code.to_string(),
                reason: RejectReason::NotCombinable,
            });
        }
    }

    let currency = input.currency;
    let money = |minor: i64| Money::from_minor_units(minor, currency);
    let mut lines = Vec::with_capacity(input.lines.len());
    let mut discount_total = 0i64;
    for (i, l) in input.lines.iter().enumerate() {
        let mut shares = Vec::new();
        let mut discount = 0i64;
        for (c, e) in &applied {
            if e.lines[i] > 0 {
                discount += e.lines[i];
                shares.push(PromotionShare {
                    promotion_id: c.promotion.id.clone(),
                    amount: money(e.lines[i])?,
                });
            }
        }
        discount_total += discount;
        lines.push(LineResult {
            sku: l.sku.clone(),
            quantity: l.quantity,
            line_total: money(line_totals[i])?,
            discount: money(discount)?,
            total: money(line_totals[i] - discount)?,
            shares,
        });
    }
    let shipping_discount: i64 = applied.iter().map(|(_, e)| e.shipping).sum();
    let applied_out = applied
        .iter()
        .map(|(c, e)| {
            Ok(AppliedPromotion {
                promotion_id: c.promotion.id.clone(),
                name: c.promotion.name.clone(),
                code: c.code.cloned(),
                line_discount: money(e.lines.iter().sum())?,
                shipping_discount: money(e.shipping)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let total = subtotal_minor - discount_total + shipping - shipping_discount;
    debug_assert!(total >= 0);
    Ok(Evaluation {
        currency,
        subtotal,
        lines,
        applied: applied_out,
        discount: money(discount_total)?,
        shipping: input.shipping,
        shipping_discount: money(shipping_discount)?,
        total: money(total.max(0))?,
        rejected,
    })
}
