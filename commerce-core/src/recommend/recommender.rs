//! The recommendation service: co-purchase, content and popularity candidates,
//! filtered (not in the cart, on sale, in stock), blended and personalised.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tracing::instrument;

use super::blend::{BlendWeights, Candidate, RankedList, Source, fuse, personalize};
use super::history::Profile;
use super::personalizer::Personalizer;
use crate::catalog::{CategoryPath, Product, Rating, Slug};
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::id::{CustomerId, ProductId, Sku};
use crate::money::Money;
use crate::resilience::{BreakerConfig, Guard, Omission, Section};
use crate::store::{
    CatalogStore, CoPurchaseStore, HistoryStore, InventoryStore, InventoryStoreExt, SearchIndex,
};

/// Most anchor products one request may name.
pub const MAX_ANCHORS: usize = 10;

/// Most recommendations one request may ask for.
pub const MAX_RECOMMENDATIONS: u32 = 100;

/// What to recommend for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecommendRequest {
    /// The products to recommend around: the product on the page, or the cart's
    /// products (at most [`MAX_ANCHORS`]); none gives personalised best sellers.
    pub anchors: Vec<ProductId>,
    /// Products never to recommend (the cart's); anchors are excluded too.
    pub exclude: Vec<ProductId>,
    /// The shopper, to personalise for.
    pub customer: Option<CustomerId>,
    /// How many, 1 to [`MAX_RECOMMENDATIONS`].
    pub limit: u32,
}

impl RecommendRequest {
    /// Recommendations for a product page.
    pub fn for_product(product: ProductId, limit: u32) -> Self {
        RecommendRequest {
            anchors: vec![product],
            limit,
            ..Self::default()
        }
    }

    /// Leaves out `products` (the cart).
    pub fn excluding(mut self, products: impl IntoIterator<Item = ProductId>) -> Self {
        self.exclude.extend(products);
        self
    }

    /// Personalises for `customer`.
    pub fn for_customer(mut self, customer: CustomerId) -> Self {
        self.customer = Some(customer);
        self
    }

    fn validate(&self) -> Result<()> {
        if self.limit == 0 || self.limit > MAX_RECOMMENDATIONS {
            return Err(Error::validation(
                "limit",
                format!("{} is not between 1 and {MAX_RECOMMENDATIONS}", self.limit),
            ));
        }
        if self.anchors.len() > MAX_ANCHORS {
            return Err(Error::validation(
                "anchors",
                format!("at most {MAX_ANCHORS} anchor products"),
            ));
        }
        if self.exclude.len() > 1000 {
            return Err(Error::validation("exclude", "at most 1000 products"));
        }
        Ok(())
    }
}

/// What a page shows of a recommended product.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductSummary {
    /// The product.
    pub product_id: ProductId,
    /// Its slug (for the link).
    pub slug: Slug,
    /// Its title.
    pub title: String,
    /// Its brand.
    pub brand: String,
    /// Its category.
    pub category: CategoryPath,
    /// Its lowest variant price.
    pub price: Money,
    /// Its rating.
    pub rating: Option<Rating>,
    /// Its first image.
    pub image: Option<String>,
}

impl From<&Product> for ProductSummary {
    fn from(p: &Product) -> Self {
        ProductSummary {
            product_id: p.id.clone(),
            slug: p.slug.clone(),
            title: p.title.clone(),
            brand: p.brand.clone(),
            category: p.category.clone(),
            price: p.min_price(),
            rating: p.rating,
            image: p.images.first().cloned(),
        }
    }
}

/// One recommended product.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recommendation {
    /// The product.
    pub product: ProductSummary,
    /// Its score (comparable within one answer only).
    pub score: f64,
    /// The sources that named it.
    pub sources: Vec<Source>,
}

/// An answer: the recommendations and the sources that were left out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Recommendations {
    /// Best first.
    pub items: Vec<Recommendation>,
    /// Sources that failed, were slow or were switched off, and why.
    pub omitted: Vec<Omission>,
}

/// Anything that recommends products for a page; what the
/// [`ProductPages`](crate::browse::ProductPages) depend on.
#[async_trait]
pub trait ProductRecommender: Send + Sync + Debug + 'static {
    /// Recommendations for `request`.
    async fn recommend(&self, request: &RecommendRequest) -> Result<Recommendations>;
}

/// Tuning of a [`Recommender`].
#[derive(Debug, Clone, PartialEq)]
pub struct RecommenderConfig {
    /// The blend.
    pub weights: BlendWeights,
    /// Deadline of each source (co-purchase, similar, popular, history); keep it well
    /// under the page's recommendations deadline (80 ms by default), so that a slow
    /// source is dropped while the others still make it onto the page.
    pub source_deadline: Duration,
    /// The breakers of the sources.
    pub breaker: BreakerConfig,
    /// Candidates asked of each source per anchor.
    pub candidates_per_source: u32,
    /// Most candidates checked in one batch (one [`CatalogStore::get_products`] and one
    /// [`InventoryStore::stocks`] call per batch).
    pub check_batch: usize,
}

impl Default for RecommenderConfig {
    fn default() -> Self {
        RecommenderConfig {
            weights: BlendWeights::default(),
            source_deadline: Duration::from_millis(40),
            breaker: BreakerConfig::default(),
            candidates_per_source: 50,
            check_batch: 32,
        }
    }
}

#[derive(Debug, Clone)]
struct Guards {
    also_bought: Guard,
    similar: Guard,
    popular: Guard,
    personalization: Guard,
}

impl Guards {
    fn new(config: &RecommenderConfig, clock: &Arc<dyn Clock>) -> Self {
        let g = |s| Guard::new(s, config.source_deadline, config.breaker, clock.clone());
        Guards {
            also_bought: g(Section::AlsoBought),
            similar: g(Section::Similar),
            popular: g(Section::Popular),
            personalization: g(Section::Personalization),
        }
    }
}

/// The recommendation service.
///
/// * [`Recommender::also_bought`]: "customers who bought this also bought", by
///   co-purchase count, then best sellers when there are too few (a new product).
/// * [`ProductRecommender::recommend`]: the [blend](super::blend) of co-purchase,
///   content similarity ([`SearchIndex::similar`], when a search index is given) and
///   popularity, re-ranked by the shopper's history. Each source runs under its own
///   [`Guard`]; a failing or slow source is left out and reported in
///   [`Recommendations::omitted`].
///
/// Both leave out the anchors and the excluded products (the cart), products that are
/// not `ACTIVE`, and products with no variant in stock (no units available and no
/// backorders) according to the [`InventoryStore`].
///
/// ```
/// use std::sync::Arc;
/// use commerce_core::catalog::*;
/// use commerce_core::id::*;
/// use commerce_core::memory::MemoryEngine;
/// use commerce_core::recommend::*;
/// use commerce_core::store::*;
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let engine = MemoryEngine::new();
/// let warehouse = LocationId::new("main")?;
/// for (id, title) in [("phone", "Phone"), ("case", "Phone Case"), ("cable", "USB Cable")] {
///     let sku = Sku::new(format!("{id}-1"))?;
///     let mut new = NewProduct::new(SellerId::new("s1")?, title,
///         CategoryPath::parse("Electronics > Phones")?, "Acme", sku.clone(), "9.99 USD".parse()?);
///     new.id = Some(ProductId::new(id)?);
///     new.status = ProductStatus::Active;
///     engine.catalog.create_product(new).await?;
///     if id != "cable" {
///         engine.inventory.restock(&sku, &warehouse, 10, "initial").await?;
///     }
/// }
/// let counts = Arc::new(MemoryCoPurchase::new());
/// let p = |s: &str| ProductId::new(s).unwrap();
/// counts.record(&Basket::new(OrderId::new("o1")?, [p("phone"), p("case"), p("cable")])).await?;
///
/// let recommender = Recommender::new(counts, engine.catalog.clone(), engine.inventory.clone(), engine.clock.clone());
/// let recs = recommender.also_bought(&p("phone"), &[], 10).await?;
/// // The cable was bought with the phone too, but it is out of stock.
/// let ids: Vec<_> = recs.iter().map(|r| r.product.product_id.as_str()).collect();
/// assert_eq!(ids, ["case"]);
/// # Ok::<(), commerce_core::Error>(()) }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct Recommender {
    co_purchase: Arc<dyn CoPurchaseStore>,
    catalog: Arc<dyn CatalogStore>,
    inventory: Arc<dyn InventoryStore>,
    search: Option<Arc<dyn SearchIndex>>,
    personalizer: Option<Personalizer>,
    clock: Arc<dyn Clock>,
    config: RecommenderConfig,
    guards: Guards,
}

impl Recommender {
    /// A recommender on co-purchase counts and popularity.
    pub fn new(
        co_purchase: Arc<dyn CoPurchaseStore>,
        catalog: Arc<dyn CatalogStore>,
        inventory: Arc<dyn InventoryStore>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let config = RecommenderConfig::default();
        Recommender {
            guards: Guards::new(&config, &clock),
            co_purchase,
            catalog,
            inventory,
            search: None,
            personalizer: None,
            clock,
            config,
        }
    }

    /// Adds content-based candidates from `index`.
    pub fn with_search(mut self, index: Arc<dyn SearchIndex>) -> Self {
        self.search = Some(index);
        self
    }

    /// Personalises with `history` (the default [`Personalizer`] on it).
    pub fn with_history(self, history: Arc<dyn HistoryStore>) -> Self {
        let personalizer = Personalizer::new(history, self.clock.clone());
        self.with_personalizer(personalizer)
    }

    /// Personalises with `personalizer`.
    pub fn with_personalizer(mut self, personalizer: Personalizer) -> Self {
        self.personalizer = Some(personalizer);
        self
    }

    /// Replaces the configuration (and resets the breakers).
    pub fn with_config(mut self, config: RecommenderConfig) -> Self {
        self.guards = Guards::new(&config, &self.clock);
        self.config = config;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &RecommenderConfig {
        &self.config
    }

    /// The shopper's profile from their recent history (neutral without a history
    /// store).
    pub async fn profile(&self, customer: &CustomerId) -> Result<Profile> {
        match &self.personalizer {
            Some(p) => p.profile(customer).await,
            None => Ok(Profile::default()),
        }
    }

    /// Up to `limit` products most often bought with `product`, leaving out `exclude`
    /// (the cart), `product` itself, and what is not on sale or not in stock; topped up
    /// with best sellers when too few remain (a new product has no co-purchases).
    ///
    /// The score is the co-purchase count (or, for the top-up, the popularity). It
    /// looks at the top `3 × limit` co-purchases (plus the excluded count), so a product
    /// whose best partners are mostly out of stock gets best sellers sooner.
    #[instrument(level = "debug", skip(self, exclude), fields(excluded = exclude.len()), err(level = "debug"))]
    pub async fn also_bought(
        &self,
        product: &ProductId,
        exclude: &[ProductId],
        limit: u32,
    ) -> Result<Vec<Recommendation>> {
        if limit == 0 || limit > MAX_RECOMMENDATIONS {
            return Err(Error::validation(
                "limit",
                format!("{limit} is not between 1 and {MAX_RECOMMENDATIONS}"),
            ));
        }
        let mut skip: HashSet<ProductId> = exclude.iter().cloned().collect();
        skip.insert(product.clone());
        let fetch = (limit as usize * 3 + skip.len()).min(crate::store::MAX_PAGE_SIZE as usize);
        let fetch = u32::try_from(fetch).unwrap_or(crate::store::MAX_PAGE_SIZE);
        let co = self.co_purchase.also_bought(product, fetch).await?;
        let candidates = co.into_iter().map(|c| Candidate {
            product_id: c.product_id,
            score: c.count as f64,
            sources: vec![Source::AlsoBought],
        });
        let mut out = self.eligible(candidates, &mut skip, limit as usize).await?;
        if out.len() < limit as usize {
            let popular = self.co_purchase.popular(fetch).await?;
            let candidates = popular.into_iter().map(|c| Candidate {
                product_id: c.product_id,
                score: c.count as f64,
                sources: vec![Source::Popular],
            });
            let need = limit as usize - out.len();
            out.extend(self.eligible(candidates, &mut skip, need).await?);
        }
        Ok(out
            .into_iter()
            .map(|(c, p)| Recommendation {
                product: ProductSummary::from(&p),
                score: c.score,
                sources: c.sources,
            })
            .collect())
    }

    /// The first `want` candidates (in order) that are not skipped, are active and in
    /// stock, each with its product; the ones taken are added to `skip`. Candidates are
    /// checked in batches a little larger than what is still needed: one product read
    /// and one stock read per batch.
    async fn eligible(
        &self,
        candidates: impl IntoIterator<Item = Candidate>,
        skip: &mut HashSet<ProductId>,
        want: usize,
    ) -> Result<Vec<(Candidate, Product)>> {
        let mut out = Vec::with_capacity(want);
        let mut pending: VecDeque<Candidate> = candidates
            .into_iter()
            .filter(|c| !skip.contains(&c.product_id))
            .collect();
        while out.len() < want && !pending.is_empty() {
            // Some candidates turn out unsellable: ask for half as many again.
            let needed = want - out.len();
            let n = (needed + needed / 2 + 2)
                .min(self.config.check_batch.max(1))
                .min(pending.len());
            let chunk: Vec<Candidate> = pending.drain(..n).collect();
            let ids: Vec<ProductId> = chunk.iter().map(|c| c.product_id.clone()).collect();
            let products: HashMap<ProductId, Product> = self
                .catalog
                .get_products(&ids)
                .await?
                .into_iter()
                .filter(Product::is_active)
                .map(|p| (p.id.clone(), p))
                .collect();
            let sellable = self.sellable_skus(products.values()).await?;
            for c in chunk {
                if out.len() == want {
                    break;
                }
                let Some(p) = products.get(&c.product_id) else {
                    continue;
                };
                if p.variants.iter().any(|v| sellable.contains(&v.sku))
                    && skip.insert(c.product_id.clone())
                {
                    out.push((c, p.clone()));
                }
            }
        }
        Ok(out)
    }

    /// The SKUs of `products` that can be sold now (units available, or backorders).
    async fn sellable_skus(
        &self,
        products: impl Iterator<Item = &Product>,
    ) -> Result<HashSet<Sku>> {
        let skus: Vec<Sku> = products
            .flat_map(|p| p.variants.iter().map(|v| v.sku.clone()))
            .collect();
        Ok(self
            .inventory
            .stocks_in_batches(&skus)
            .await?
            .into_iter()
            .filter(|s| s.available() > 0 || s.backorder_allowed)
            .map(|s| s.sku)
            .collect())
    }

    async fn lists_for<F, Fut>(
        &self,
        guard: &Guard,
        anchors: &[ProductId],
        source: Source,
        fetch: F,
    ) -> Result<Vec<RankedList>, Omission>
    where
        F: Fn(ProductId) -> Fut,
        Fut: std::future::Future<Output = Result<Vec<ProductId>>>,
    {
        if anchors.is_empty() {
            return Ok(Vec::new());
        }
        guard
            .run(async {
                let lists =
                    futures::future::try_join_all(anchors.iter().cloned().map(&fetch)).await?;
                Ok(lists
                    .into_iter()
                    .map(|items| RankedList { source, items })
                    .collect())
            })
            .await
    }
}

#[async_trait]
impl ProductRecommender for Recommender {
    #[instrument(level = "debug", skip_all, fields(anchors = request.anchors.len(), limit = request.limit), err(level = "debug"))]
    async fn recommend(&self, request: &RecommendRequest) -> Result<Recommendations> {
        request.validate()?;
        let n = self.config.candidates_per_source;
        let co_purchase = &self.co_purchase;
        let also = self.lists_for(
            &self.guards.also_bought,
            &request.anchors,
            Source::AlsoBought,
            |id| async move {
                Ok(co_purchase
                    .also_bought(&id, n)
                    .await?
                    .into_iter()
                    .map(|c| c.product_id)
                    .collect())
            },
        );
        let similar = async {
            match &self.search {
                Some(index) => {
                    self.lists_for(
                        &self.guards.similar,
                        &request.anchors,
                        Source::Similar,
                        |id| async move {
                            Ok(index
                                .similar(&id, n)
                                .await?
                                .into_iter()
                                .map(|h| h.product_id)
                                .collect())
                        },
                    )
                    .await
                }
                None => Ok(Vec::new()),
            }
        };
        let popular = self.guards.popular.run(async {
            Ok(vec![RankedList {
                source: Source::Popular,
                items: co_purchase
                    .popular(n)
                    .await?
                    .into_iter()
                    .map(|c| c.product_id)
                    .collect(),
            }])
        });
        let profile = async {
            match (&request.customer, &self.personalizer) {
                (Some(customer), Some(_)) => self
                    .guards
                    .personalization
                    .run(self.profile(customer))
                    .await
                    .map(Some),
                _ => Ok(None),
            }
        };
        let (also, similar, popular, profile) = tokio::join!(also, similar, popular, profile);

        let mut omitted = Vec::new();
        let mut lists = Vec::new();
        for part in [also, similar, popular] {
            match part {
                Ok(l) => lists.extend(l),
                Err(o) => omitted.push(o),
            }
        }
        let profile = match profile {
            Ok(p) => p,
            Err(o) => {
                omitted.push(o);
                None
            }
        };

        let weights = &self.config.weights;
        let fused = fuse(&lists, weights);
        let mut skip: HashSet<ProductId> = request
            .anchors
            .iter()
            .chain(&request.exclude)
            .cloned()
            .collect();
        // With a profile, take a larger pool so the re-rank can promote from below.
        let limit = request.limit as usize;
        let pool = if profile.is_some() { limit * 2 } else { limit };
        let mut chosen = self.eligible(fused, &mut skip, pool).await?;
        if let Some(profile) = &profile {
            personalize(&mut chosen, profile, weights);
        }
        chosen.truncate(limit);
        Ok(Recommendations {
            items: chosen
                .into_iter()
                .map(|(c, p)| Recommendation {
                    product: ProductSummary::from(&p),
                    score: c.score,
                    sources: c.sources,
                })
                .collect(),
            omitted,
        })
    }
}
