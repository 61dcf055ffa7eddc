//! [`MemoryPriceLists`].

use std::collections::BTreeMap;

use async_trait::async_trait;

use crate::clock::Timestamp;
use crate::error::Result;
use crate::id::{CustomerGroupId, CustomerId, PriceListId};
use crate::promotion::PriceList;
use crate::store::{PriceListStore, normalized_groups};

#[derive(Debug, Default)]
struct State {
    lists: BTreeMap<PriceListId, PriceList>,
    groups: BTreeMap<CustomerId, Vec<CustomerGroupId>>,
}

/// The in-memory [`PriceListStore`].
#[derive(Debug, Default)]
pub struct MemoryPriceLists {
    state: std::sync::Mutex<State>,
}

impl MemoryPriceLists {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        super::lock(&self.state)
    }
}

#[async_trait]
impl PriceListStore for MemoryPriceLists {
    async fn put_price_list(&self, list: &PriceList) -> Result<()> {
        list.validate()?;
        self.state().lists.insert(list.id.clone(), list.clone());
        Ok(())
    }

    async fn active_price_lists(&self, now: Timestamp) -> Result<Vec<PriceList>> {
        Ok(self
            .state()
            .lists
            .values()
            .filter(|l| l.is_active(now))
            .cloned()
            .collect())
    }

    async fn set_customer_groups(
        &self,
        customer: &CustomerId,
        groups: &[CustomerGroupId],
    ) -> Result<()> {
        let groups = normalized_groups(groups)?;
        let mut state = self.state();
        if groups.is_empty() {
            state.groups.remove(customer);
        } else {
            state.groups.insert(customer.clone(), groups);
        }
        Ok(())
    }

    async fn customer_groups(&self, customer: &CustomerId) -> Result<Vec<CustomerGroupId>> {
        Ok(self
            .state()
            .groups
            .get(customer)
            .cloned()
            .unwrap_or_default())
    }
}
