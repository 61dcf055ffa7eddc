use std::fmt::Debug;

use async_trait::async_trait;

use crate::clock::Timestamp;
use crate::error::Result;
use crate::id::{CustomerGroupId, CustomerId};
use crate::promotion::PriceList;

/// The most groups one customer may be in.
pub const MAX_CUSTOMER_GROUPS: usize = 20;

/// Price lists and the customer groups they are for: what carts and checkout resolve
/// prices with ([`resolve_price`](crate::promotion::resolve_price)).
///
/// # To ensure correctness (every method)
/// * **Strong consistency**: a read after a write sees it.
/// * Invalid input is `Validation` (or `CurrencyMismatch`) and writes nothing.
#[async_trait]
pub trait PriceListStore: Send + Sync + Debug + 'static {
    /// Stores `list`, replacing the list with its id (a new version of the prices).
    ///
    /// # To ensure correctness
    /// The list passes [`PriceList::validate`], else its error and nothing written.
    async fn put_price_list(&self, list: &PriceList) -> Result<()>;

    /// The lists valid at `now` (in any currency, for any group), ordered by id.
    async fn active_price_lists(&self, now: Timestamp) -> Result<Vec<PriceList>>;

    /// Sets the groups of `customer` (replacing them; empty: none).
    ///
    /// # To ensure correctness
    /// At most [`MAX_CUSTOMER_GROUPS`] groups, else `Validation`; repeats are merged.
    async fn set_customer_groups(
        &self,
        customer: &CustomerId,
        groups: &[CustomerGroupId],
    ) -> Result<()>;

    /// The groups of `customer`, sorted (empty when none were set).
    async fn customer_groups(&self, customer: &CustomerId) -> Result<Vec<CustomerGroupId>>;
}

/// Checks and normalises (sorts, merges repeats) a customer's groups.
pub fn normalized_groups(groups: &[CustomerGroupId]) -> Result<Vec<CustomerGroupId>> {
    if groups.len() > MAX_CUSTOMER_GROUPS {
        return Err(crate::Error::validation(
            "groups",
            format!("at most {MAX_CUSTOMER_GROUPS} groups"),
        ));
    }
    let mut out = groups.to_vec();
    out.sort();
    out.dedup();
    Ok(out)
}
