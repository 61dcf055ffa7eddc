//! The product page: one call, one latency budget.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tracing::instrument;

use crate::catalog::{Attributes, Product};
use crate::clock::Clock;
use crate::error::{EntityKind, Error, Result};
use crate::id::{CustomerId, ProductId, Sku};
use crate::inventory::SkuStock;
use crate::money::Money;
use crate::recommend::{
    Interaction, InteractionKind, ProductRecommender, RecommendRequest, Recommendation,
};
use crate::resilience::{BreakerConfig, Guard, Omission, Section};
use crate::store::{CatalogStore, HistoryStore, InventoryStore, InventoryStoreExt};
use crate::store::{ProductCache, ProductKey};

/// Deadlines and sizes of a product page.
#[derive(Debug, Clone, PartialEq)]
pub struct ProductPageConfig {
    /// The whole page: every part is cut off so the page is returned within this.
    pub deadline: Duration,
    /// Live availability.
    pub availability_deadline: Duration,
    /// Recommendations.
    pub recommendations_deadline: Duration,
    /// Each cache call.
    pub cache_deadline: Duration,
    /// Recording the view in the shopper's history.
    pub view_tracking_deadline: Duration,
    /// Recommendations to show.
    pub recommendations: u32,
    /// The breakers of the non-essential parts.
    pub breaker: BreakerConfig,
}

impl Default for ProductPageConfig {
    /// A 200 ms page: availability 50 ms, recommendations 80 ms, cache 10 ms, view
    /// tracking 20 ms; 10 recommendations.
    fn default() -> Self {
        ProductPageConfig {
            deadline: Duration::from_millis(200),
            availability_deadline: Duration::from_millis(50),
            recommendations_deadline: Duration::from_millis(80),
            cache_deadline: Duration::from_millis(10),
            view_tracking_deadline: Duration::from_millis(20),
            recommendations: 10,
            breaker: BreakerConfig::default(),
        }
    }
}

/// Which product page, for whom.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductPageRequest {
    /// The product.
    pub key: ProductKey,
    /// The shopper, if signed in (personalisation, view tracking).
    pub customer: Option<CustomerId>,
    /// The products in the shopper's cart (never recommended).
    pub cart: Vec<ProductId>,
}

impl ProductPageRequest {
    /// The page of the product with `slug`, for an anonymous shopper.
    pub fn by_slug(slug: crate::catalog::Slug) -> Self {
        ProductPageRequest {
            key: ProductKey::Slug(slug),
            customer: None,
            cart: Vec::new(),
        }
    }

    /// The page of the product with `id`, for an anonymous shopper.
    pub fn by_id(id: ProductId) -> Self {
        ProductPageRequest {
            key: ProductKey::Id(id),
            customer: None,
            cart: Vec::new(),
        }
    }
}

/// Whether a variant can be bought now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum StockStatus {
    /// Units are available.
    InStock {
        /// How many, over all locations.
        available: u64,
    },
    /// None available, but it can be ordered for later delivery.
    Backorder,
    /// None available.
    OutOfStock,
    /// Availability could not be read in time (the section is in
    /// [`ProductPage::omitted`]); checkout still decides.
    Unknown,
}

impl From<&SkuStock> for StockStatus {
    fn from(s: &SkuStock) -> Self {
        match s.available() {
            0 if s.backorder_allowed => StockStatus::Backorder,
            0 => StockStatus::OutOfStock,
            available => StockStatus::InStock { available },
        }
    }
}

/// A variant as the page shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariantView {
    /// The SKU.
    pub sku: Sku,
    /// What distinguishes it.
    pub attributes: Attributes,
    /// Its price.
    pub price: Money,
    /// Live availability.
    pub stock: StockStatus,
}

/// Everything a product page shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductPage {
    /// The product (content, images, attributes, rating).
    pub product: Product,
    /// Its variants with live availability.
    pub variants: Vec<VariantView>,
    /// The lowest variant price ("from").
    pub price_from: Money,
    /// The highest variant price.
    pub price_to: Money,
    /// Recommendations (empty when omitted).
    pub recommendations: Vec<Recommendation>,
    /// What was left out, and why; empty when the page is complete.
    pub omitted: Vec<Omission>,
    /// Whether the product came from the cache.
    pub from_cache: bool,
    /// Time taken to assemble the page.
    #[serde(with = "millis")]
    pub elapsed: Duration,
}

impl ProductPage {
    /// Whether `section` was left out.
    pub fn is_omitted(&self, section: &Section) -> bool {
        self.omitted.iter().any(|o| &o.section == section)
    }
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64() * 1000.0)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let ms = f64::deserialize(d)?;
        Ok(Duration::from_secs_f64((ms / 1000.0).max(0.0)))
    }
}

#[derive(Debug, Clone)]
struct Guards {
    availability: Guard,
    recommendations: Guard,
    cache: Guard,
    view_tracking: Guard,
}

/// Assembles product pages: the product (by slug or id, through the cache when there
/// is one), its variants with live availability and prices, and recommendations, within
/// [`ProductPageConfig::deadline`].
///
/// The product itself is essential: if the catalog cannot give it in time the call
/// fails (`Backend`, retryable), and a product that is missing or not `ACTIVE` is
/// `NotFound`. Everything else is guarded ([`crate::resilience`]): availability,
/// recommendations, the cache and view tracking each have a deadline (never past the
/// page's) and a circuit breaker, run concurrently once the product is known, and are
/// left out, with the reason in [`ProductPage::omitted`], when they fail or are slow.
///
/// ```
/// use std::{sync::Arc, time::Duration};
/// use async_trait::async_trait;
/// use commerce_core::{catalog::*, id::*, memory::MemoryEngine, store::*};
/// use commerce_core::browse::{ProductPageConfig, ProductPageRequest, ProductPages, StockStatus};
/// use commerce_core::recommend::{ProductRecommender, RecommendRequest, Recommendations};
/// use commerce_core::resilience::{OmissionReason, Section};
///
/// /// A recommender that never answers.
/// #[derive(Debug)]
/// struct Hung;
/// #[async_trait]
/// impl ProductRecommender for Hung {
///     async fn recommend(&self, _: &RecommendRequest) -> commerce_core::Result<Recommendations> {
///         std::future::pending().await
///     }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap().block_on(async {
/// let engine = MemoryEngine::new();
/// let sku = Sku::new("PH-1")?;
/// let mut new = NewProduct::new(SellerId::new("s1")?, "Phone",
///     CategoryPath::parse("Electronics > Phones")?, "Acme", sku.clone(), "199.00 USD".parse()?);
/// new.status = ProductStatus::Active;
/// let product = engine.catalog.create_product(new).await?;
/// engine.inventory.restock(&sku, &LocationId::new("main")?, 3, "initial").await?;
///
/// let pages = ProductPages::new(engine.catalog.clone(), engine.inventory.clone(), engine.clock.clone())
///     .with_recommender(Arc::new(Hung));
/// let page = pages.load(&ProductPageRequest::by_slug(product.slug.clone())).await?;
/// assert_eq!(page.variants[0].stock, StockStatus::InStock { available: 3 });
/// // The recommender was cut off at its deadline; the page came back without it.
/// assert!(page.recommendations.is_empty());
/// assert_eq!(page.omitted[0].section, Section::Recommendations);
/// assert_eq!(page.omitted[0].reason, OmissionReason::TimedOut { after_ms: 80 });
/// assert!(page.elapsed <= ProductPageConfig::default().deadline);
/// # Ok::<(), commerce_core::Error>(()) }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct ProductPages {
    catalog: Arc<dyn CatalogStore>,
    inventory: Arc<dyn InventoryStore>,
    recommender: Option<Arc<dyn ProductRecommender>>,
    cache: Option<Arc<dyn ProductCache>>,
    history: Option<Arc<dyn HistoryStore>>,
    clock: Arc<dyn Clock>,
    config: ProductPageConfig,
    guards: Guards,
}

impl ProductPages {
    /// Pages from `catalog` and `inventory` with the default [`ProductPageConfig`].
    pub fn new(
        catalog: Arc<dyn CatalogStore>,
        inventory: Arc<dyn InventoryStore>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let config = ProductPageConfig::default();
        ProductPages {
            guards: Self::guards(&config, &clock),
            catalog,
            inventory,
            recommender: None,
            cache: None,
            history: None,
            clock,
            config,
        }
    }

    fn guards(config: &ProductPageConfig, clock: &Arc<dyn Clock>) -> Guards {
        let g = |section, deadline| Guard::new(section, deadline, config.breaker, clock.clone());
        Guards {
            availability: g(Section::Availability, config.availability_deadline),
            recommendations: g(Section::Recommendations, config.recommendations_deadline),
            cache: g(Section::Cache, config.cache_deadline),
            view_tracking: g(Section::ViewTracking, config.view_tracking_deadline),
        }
    }

    /// Adds recommendations.
    pub fn with_recommender(mut self, recommender: Arc<dyn ProductRecommender>) -> Self {
        self.recommender = Some(recommender);
        self
    }

    /// Reads products through `cache`.
    pub fn with_cache(mut self, cache: Arc<dyn ProductCache>) -> Self {
        self.cache = Some(cache);
        self
    }

    /// Records each signed-in shopper's view in `history`.
    pub fn with_view_tracking(mut self, history: Arc<dyn HistoryStore>) -> Self {
        self.history = Some(history);
        self
    }

    /// Replaces the configuration (and resets the breakers).
    pub fn with_config(mut self, config: ProductPageConfig) -> Self {
        self.guards = Self::guards(&config, &self.clock);
        self.config = config;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &ProductPageConfig {
        &self.config
    }

    /// The guard of `section`, to inspect its breaker (`None` for sections the page
    /// does not guard itself).
    pub fn guard(&self, section: &Section) -> Option<&Guard> {
        match section {
            Section::Availability => Some(&self.guards.availability),
            Section::Recommendations => Some(&self.guards.recommendations),
            Section::Cache => Some(&self.guards.cache),
            Section::ViewTracking => Some(&self.guards.view_tracking),
            _ => None,
        }
    }

    /// Assembles the page.
    #[instrument(level = "debug", skip_all, fields(key = %request.key), err(level = "debug"))]
    pub async fn load(&self, request: &ProductPageRequest) -> Result<ProductPage> {
        let start = Instant::now();
        let end = start + self.config.deadline;
        let left = || end.saturating_duration_since(Instant::now());
        let mut omitted: Vec<Omission> = Vec::new();

        let (product, from_cache) = self.product(&request.key, left, &mut omitted).await?;

        let availability = self
            .guards
            .availability
            .run_within(left(), self.availability(&product));
        let recommendations = async {
            let Some(recommender) = &self.recommender else {
                return Ok(Default::default());
            };
            let mut req =
                RecommendRequest::for_product(product.id.clone(), self.config.recommendations)
                    .excluding(request.cart.iter().cloned());
            req.customer = request.customer.clone();
            self.guards
                .recommendations
                .run_within(left(), recommender.recommend(&req))
                .await
        };
        let cache_put = async {
            match &self.cache {
                Some(cache) if !from_cache => {
                    self.guards
                        .cache
                        .run_within(left(), cache.put(&product))
                        .await
                }
                _ => Ok(()),
            }
        };
        let view = async {
            match (&self.history, &request.customer) {
                (Some(history), Some(customer)) => {
                    let seen =
                        Interaction::new(&product, InteractionKind::Viewed, self.clock.now());
                    self.guards
                        .view_tracking
                        .run_within(left(), history.record(customer, &seen))
                        .await
                }
                _ => Ok(()),
            }
        };
        let (availability, recommendations, cache_put, view) =
            tokio::join!(availability, recommendations, cache_put, view);

        let stock = availability.unwrap_or_else(|o| {
            omitted.push(o);
            Vec::new()
        });
        let recommendations = match recommendations {
            Ok(r) => {
                omitted.extend(r.omitted);
                r.items
            }
            Err(o) => {
                omitted.push(o);
                Vec::new()
            }
        };
        for r in [cache_put, view] {
            if let Err(o) = r {
                omitted.push(o);
            }
        }
        let mut seen = std::collections::HashSet::new();
        omitted.retain(|o| seen.insert(o.section.clone()));

        let variants = product
            .variants
            .iter()
            .map(|v| VariantView {
                sku: v.sku.clone(),
                attributes: v.attributes.clone(),
                price: v.price,
                stock: stock
                    .iter()
                    .find(|(sku, _)| sku == &v.sku)
                    .map(|(_, s)| *s)
                    .unwrap_or(StockStatus::Unknown),
            })
            .collect();
        let price_from = product.min_price();
        let price_to = product
            .variants
            .iter()
            .map(|v| v.price)
            .max_by(|a, b| a.try_cmp(b).unwrap_or(std::cmp::Ordering::Equal))
            .unwrap_or(price_from);
        Ok(ProductPage {
            variants,
            price_from,
            price_to,
            recommendations,
            omitted,
            from_cache,
            elapsed: start.elapsed(),
            product,
        })
    }

    /// The product, from the cache or the catalog; only an active one.
    async fn product(
        &self,
        key: &ProductKey,
        left: impl Fn() -> Duration,
        omitted: &mut Vec<Omission>,
    ) -> Result<(Product, bool)> {
        if let Some(cache) = &self.cache {
            match self.guards.cache.run_within(left(), cache.get(key)).await {
                Ok(Some(p)) if p.is_active() => return Ok((p, true)),
                Ok(_) => {}
                Err(o) => omitted.push(o),
            }
        }
        let read = async {
            match key {
                ProductKey::Id(id) => self.catalog.get_product(id).await,
                ProductKey::Slug(slug) => self.catalog.get_product_by_slug(slug).await,
            }
        };
        let product = tokio::time::timeout(left(), read).await.map_err(|_| {
            Error::backend(
                true,
                format!(
                    "the catalog did not answer within the page deadline ({} ms)",
                    self.config.deadline.as_millis()
                ),
            )
        })??;
        match product {
            Some(p) if p.is_active() => Ok((p, false)),
            _ => Err(Error::not_found(EntityKind::Product, key)),
        }
    }

    /// Live stock of every variant, in one batch read.
    async fn availability(&self, product: &Product) -> Result<Vec<(Sku, StockStatus)>> {
        let skus: Vec<Sku> = product.variants.iter().map(|v| v.sku.clone()).collect();
        Ok(self
            .inventory
            .stocks_in_batches(&skus)
            .await?
            .iter()
            .map(|s| (s.sku.clone(), StockStatus::from(s)))
            .collect())
    }
}
