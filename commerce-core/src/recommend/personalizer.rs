//! Profiles from a history store.

use std::sync::Arc;

use super::history::{AffinityConfig, Profile};
use crate::clock::Clock;
use crate::error::Result;
use crate::id::CustomerId;
use crate::store::HistoryStore;
use crate::store::search::Affinity;

/// Reads a shopper's recent history and turns it into a [`Profile`]; shared by the
/// [`Recommender`](super::Recommender) and [`SearchPages`](crate::browse::SearchPages).
#[derive(Debug, Clone)]
pub struct Personalizer {
    history: Arc<dyn HistoryStore>,
    clock: Arc<dyn Clock>,
    config: AffinityConfig,
    history_len: u32,
}

impl Personalizer {
    /// A personalizer reading the newest 50 interactions of a shopper.
    pub fn new(history: Arc<dyn HistoryStore>, clock: Arc<dyn Clock>) -> Self {
        Personalizer {
            history,
            clock,
            config: AffinityConfig::default(),
            history_len: 50,
        }
    }

    /// Uses another affinity configuration and history length (1 to 1000).
    pub fn with_config(mut self, config: AffinityConfig, history_len: u32) -> Self {
        self.config = config;
        self.history_len = history_len.clamp(1, crate::store::MAX_PAGE_SIZE);
        self
    }

    /// The history store.
    pub fn history(&self) -> &Arc<dyn HistoryStore> {
        &self.history
    }

    /// The shopper's profile as of the clock's now.
    pub async fn profile(&self, customer: &CustomerId) -> Result<Profile> {
        let recent = self.history.recent(customer, self.history_len).await?;
        Ok(Profile::from_history(
            &recent,
            self.clock.now(),
            &self.config,
        ))
    }

    /// The shopper's affinity, for [`SearchQuery::personalization`](crate::store::search::SearchQuery).
    pub async fn affinity(&self, customer: &CustomerId) -> Result<Affinity> {
        Ok(self.profile(customer).await?.affinity)
    }
}
