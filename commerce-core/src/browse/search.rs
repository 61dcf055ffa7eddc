//! Search for a shopper: rate-limited per user, personalised when their history can be
//! read in time.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::instrument;

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::id::CustomerId;
use crate::recommend::Personalizer;
use crate::resilience::{
    Admission, BreakerConfig, Guard, LimitedAction, Omission, Section, UserRateLimit,
};
use crate::store::SearchIndex;
use crate::store::search::{SearchQuery, SearchResults};

/// Deadlines of a search page ([`SearchPages`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SearchPageConfig {
    /// The search itself (essential: past this the call fails).
    pub deadline: Duration,
    /// Reading the shopper's history for personalisation.
    pub personalization_deadline: Duration,
    /// Asking the rate limiter.
    pub rate_limit_deadline: Duration,
    /// The breakers.
    pub breaker: BreakerConfig,
}

impl Default for SearchPageConfig {
    /// Search 300 ms, personalisation 20 ms, rate limiter 10 ms.
    fn default() -> Self {
        SearchPageConfig {
            deadline: Duration::from_millis(300),
            personalization_deadline: Duration::from_millis(20),
            rate_limit_deadline: Duration::from_millis(10),
            breaker: BreakerConfig::default(),
        }
    }
}

/// Search results for one shopper.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchPage {
    /// The results.
    pub results: SearchResults,
    /// Whether they were re-ranked by the shopper's affinity.
    pub personalized: bool,
    /// What was left out, and why.
    pub omitted: Vec<Omission>,
}

/// The answer to a search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum SearchResponse {
    /// Served.
    Served(SearchPage),
    /// The user is over their search rate; nothing was searched.
    Limited {
        /// When to try again.
        retry_after: Duration,
    },
}

/// Runs searches for shoppers.
///
/// Before searching it asks the [`UserRateLimit`] (if any) about the user, and builds
/// the shopper's [`Affinity`](crate::store::search::Affinity) from their history (if a
/// [`Personalizer`] is set and the query carries none), concurrently, each guarded: a
/// limiter that fails or is slow lets the search through, a history that fails or is
/// slow leaves the results unpersonalised; both are reported in
/// [`SearchPage::omitted`].
#[derive(Debug, Clone)]
pub struct SearchPages {
    index: Arc<dyn SearchIndex>,
    personalizer: Option<Personalizer>,
    limiter: Option<Arc<dyn UserRateLimit>>,
    config: SearchPageConfig,
    personalization: Guard,
    rate_limit: Guard,
    clock: Arc<dyn Clock>,
}

impl SearchPages {
    /// Searches on `index`.
    pub fn new(index: Arc<dyn SearchIndex>, clock: Arc<dyn Clock>) -> Self {
        let config = SearchPageConfig::default();
        let (personalization, rate_limit) = Self::guards(&config, &clock);
        SearchPages {
            index,
            personalizer: None,
            limiter: None,
            config,
            personalization,
            rate_limit,
            clock,
        }
    }

    fn guards(config: &SearchPageConfig, clock: &Arc<dyn Clock>) -> (Guard, Guard) {
        (
            Guard::new(
                Section::Personalization,
                config.personalization_deadline,
                config.breaker,
                clock.clone(),
            ),
            Guard::new(
                Section::RateLimit,
                config.rate_limit_deadline,
                config.breaker,
                clock.clone(),
            ),
        )
    }

    /// Personalises with `personalizer`.
    pub fn with_personalizer(mut self, personalizer: Personalizer) -> Self {
        self.personalizer = Some(personalizer);
        self
    }

    /// Rate-limits each user with `limiter`.
    pub fn with_rate_limit(mut self, limiter: Arc<dyn UserRateLimit>) -> Self {
        self.limiter = Some(limiter);
        self
    }

    /// Replaces the configuration (and resets the breakers).
    pub fn with_config(mut self, config: SearchPageConfig) -> Self {
        (self.personalization, self.rate_limit) = Self::guards(&config, &self.clock);
        self.config = config;
        self
    }

    /// Searches `query` for `user` (the rate-limit key: the customer id when signed in,
    /// else a session or address key), personalised for `customer`.
    #[instrument(level = "debug", skip(self, query), err(level = "debug"))]
    pub async fn search(
        &self,
        user: &str,
        customer: Option<&CustomerId>,
        mut query: SearchQuery,
    ) -> Result<SearchResponse> {
        let admission = async {
            match &self.limiter {
                Some(l) => {
                    self.rate_limit
                        .run(l.admit(LimitedAction::Search, user))
                        .await
                }
                None => Ok(Admission::Admitted),
            }
        };
        let affinity = async {
            match (&self.personalizer, customer) {
                (Some(p), Some(c)) if query.personalization.is_none() => {
                    self.personalization.run(p.affinity(c)).await.map(Some)
                }
                _ => Ok(None),
            }
        };
        let (admission, affinity) = tokio::join!(admission, affinity);
        let mut omitted = Vec::new();
        match admission {
            Ok(Admission::Limited { retry_after }) => {
                return Ok(SearchResponse::Limited { retry_after });
            }
            Ok(Admission::Admitted) => {}
            Err(o) => omitted.push(o),
        }
        let personalized = match affinity {
            Ok(Some(a)) if !(a.brands.is_empty() && a.categories.is_empty()) => {
                query.personalization = Some(a);
                true
            }
            Ok(_) => query.personalization.is_some(),
            Err(o) => {
                omitted.push(o);
                false
            }
        };
        let results = tokio::time::timeout(self.config.deadline, self.index.search(&query))
            .await
            .map_err(|_| {
                Error::backend(
                    true,
                    format!(
                        "search did not answer within {} ms",
                        self.config.deadline.as_millis()
                    ),
                )
            })??;
        Ok(SearchResponse::Served(SearchPage {
            results,
            personalized,
            omitted,
        }))
    }
}
