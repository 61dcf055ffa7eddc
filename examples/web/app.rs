//! The service: its state (the library's services over the stores), the router, and
//! the layers every request goes through (tracing span, per-address rate limit).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use commerce_core::browse::{ProductPages, SearchPages};
use commerce_core::cart::{CartLimits, CartOwner};
use commerce_core::id::CustomerId;
use commerce_core::ratelimit::{InProcessRateLimiter, RateLimits, RateQuota};
use commerce_core::recommend::{CachedCoPurchase, Personalizer, Recommender};
use commerce_core::resilience::{Admission, LimitedAction};
use commerce_core::service::{CartService, CheckoutConfig, CheckoutService, Stores};
use commerce_core::store::{CoPurchaseStore, HistoryStore, SearchIndex};
use commerce_core::{Error, Result};
use rust_decimal::Decimal;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;

use crate::problem::{ApiError, Problem};

/// Rate limits of the service.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Requests per second per client address (burst: twice this).
    pub ip_per_second: u32,
    /// Searches (and autocompletes) per minute per shopper.
    pub searches_per_minute: u32,
    /// Checkouts per minute per customer.
    pub checkouts_per_minute: u32,
}

impl Limits {
    /// The per-shopper limits (search, checkout) and the per-address one; an error for
    /// a rate the limiter cannot keep (zero, or beyond one request per microsecond).
    pub fn rate_limits(&self) -> Result<(RateLimits, RateLimits)> {
        let per_minute = |n: u32| RateQuota::per_period(Duration::from_secs(60), n);
        let user = RateLimits::new(per_minute(self.searches_per_minute)?)
            .with(LimitedAction::Search, per_minute(self.searches_per_minute)?)
            .with(
                LimitedAction::Checkout,
                per_minute(self.checkouts_per_minute)?,
            );
        // One quota for every request of an address (the action is only a bucket name).
        let ip = RateQuota::per_period(Duration::from_secs(1), self.ip_per_second)?
            .with_burst(self.ip_per_second.saturating_mul(2))?;
        Ok((user, RateLimits::new(ip)))
    }
}

/// What every handler holds.
#[derive(Debug, Clone)]
pub struct App {
    /// The stores.
    pub stores: Stores,
    /// The search index.
    pub index: Arc<dyn SearchIndex>,
    /// Search for shoppers (rate-limited, personalised).
    pub searches: SearchPages,
    /// Product pages (live stock, recommendations).
    pub pages: ProductPages,
    /// Carts.
    pub carts: CartService,
    /// Checkout (rate-limited per customer).
    pub checkout: CheckoutService,
    /// Per-shopper limits (search, checkout).
    pub user_limiter: Arc<InProcessRateLimiter>,
    /// Per-address limit on every request.
    pub ip_limiter: Arc<InProcessRateLimiter>,
}

impl App {
    /// The services over `stores` and `index`.
    pub fn new(
        stores: Stores,
        index: Arc<dyn SearchIndex>,
        co_purchase: Arc<dyn CoPurchaseStore>,
        history: Arc<dyn HistoryStore>,
        limits: Limits,
    ) -> Result<App> {
        let (user_limits, ip_limits) = limits.rate_limits()?;
        let user_limiter = Arc::new(InProcessRateLimiter::new(user_limits));
        let ip_limiter = Arc::new(InProcessRateLimiter::new(ip_limits));
        let recommender = Recommender::new(
            Arc::new(CachedCoPurchase::new(
                co_purchase,
                Duration::from_secs(60),
                100_000,
            )),
            stores.catalog.clone(),
            stores.inventory.clone(),
            stores.clock.clone(),
        )
        .with_search(index.clone())
        .with_history(history.clone());
        let pages = ProductPages::new(
            stores.catalog.clone(),
            stores.inventory.clone(),
            stores.clock.clone(),
        )
        .with_recommender(Arc::new(recommender))
        .with_view_tracking(history.clone());
        let searches = SearchPages::new(index.clone(), stores.clock.clone())
            .with_personalizer(Personalizer::new(history, stores.clock.clone()))
            .with_rate_limit(user_limiter.clone());
        let checkout = CheckoutService::new(
            &stores,
            CheckoutConfig {
                flat_shipping: Decimal::new(599, 2),
                free_shipping_from: Some(Decimal::new(35, 0)),
                tax_rate: Decimal::new(825, 4),
                ..CheckoutConfig::default()
            },
        )
        .with_rate_limit(user_limiter.clone(), stores.clock.clone());
        Ok(App {
            carts: CartService::new(&stores, CartLimits::default()),
            checkout,
            pages,
            searches,
            index,
            stores,
            user_limiter,
            ip_limiter,
        })
    }

    /// The whole service: the JSON API, `/openapi.json`, and the HTML pages.
    pub fn router(self) -> Router {
        let (api, openapi) = OpenApiRouter::with_openapi(crate::openapi::ApiDoc::openapi())
            .merge(crate::api::routes())
            .split_for_parts();
        let openapi = crate::openapi::finish(openapi);
        let state = self.clone();
        api.merge(crate::html::routes())
            .route(
                "/openapi.json",
                axum::routing::get(move || {
                    let doc = openapi.clone();
                    async move { axum::Json(doc) }
                }),
            )
            .fallback(crate::problem::not_found)
            .method_not_allowed_fallback(crate::problem::method_not_allowed)
            .layer(middleware::from_fn_with_state(state.clone(), limit_address))
            // A handler that panics answers a 500 problem instead of dropping the connection.
            .layer(CatchPanicLayer::custom(|_| {
                Problem::new(
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "Internal error",
                    "the request failed on the server",
                )
                .into_response()
            }))
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(|req: &Request| {
                        tracing::info_span!("request", method = %req.method(), path = %req.uri().path())
                    })
                    .on_response(DefaultOnResponse::new().level(Level::INFO)),
            )
            .with_state(state)
    }
}

/// The rate-limit key of the client's address (`ip:...`): the socket's peer (a
/// deployment behind a proxy would read `X-Forwarded-For` from its trusted proxy instead).
fn address_key(extensions: &axum::http::Extensions) -> String {
    match extensions.get::<ConnectInfo<SocketAddr>>() {
        Some(ConnectInfo(addr)) => format!("ip:{}", addr.ip()),
        None => "ip:unknown".to_owned(),
    }
}

/// The per-address limit: 429 with `Retry-After` past the quota.
async fn limit_address(State(app): State<App>, req: Request, next: Next) -> Response {
    let key = address_key(req.extensions());
    match app.ip_limiter.check(LimitedAction::Search, &key) {
        Ok(Admission::Limited { retry_after }) => {
            Problem::rate_limited(retry_after).into_response()
        }
        Ok(_) => next.run(req).await,
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// The header naming the signed-in customer. The example trusts it; a real service
/// puts its session or token check here.
pub const CUSTOMER_HEADER: &str = "x-customer-id";

/// The signed-in customer, if the request names one.
#[derive(Debug, Clone)]
pub struct MaybeCustomer(pub Option<CustomerId>);

impl MaybeCustomer {
    /// The cart owner this request acts as.
    pub fn owner(&self) -> CartOwner {
        match &self.0 {
            Some(c) => CartOwner::Customer(c.clone()),
            None => CartOwner::Guest,
        }
    }

    /// The rate-limit key: the customer, else the address.
    pub fn limit_key(&self, address: &Address) -> String {
        match &self.0 {
            Some(c) => format!("customer:{c}"),
            None => address.0.clone(),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for MaybeCustomer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get(CUSTOMER_HEADER) else {
            return Ok(MaybeCustomer(None));
        };
        let text = value.to_str().map_err(|_| {
            ApiError::from(Error::validation(CUSTOMER_HEADER, "must be visible ASCII"))
        })?;
        Ok(MaybeCustomer(Some(CustomerId::new(text).map_err(|e| {
            ApiError::from(Error::validation(CUSTOMER_HEADER, e.to_string()))
        })?)))
    }
}

/// A signed-in customer (401 without one).
#[derive(Debug, Clone)]
pub struct Customer(pub CustomerId);

impl<S: Send + Sync> FromRequestParts<S> for Customer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match MaybeCustomer::from_request_parts(parts, state).await?.0 {
            Some(c) => Ok(Customer(c)),
            None => Err(Problem::unauthorized(format!(
                "sign in: send the customer id in `{CUSTOMER_HEADER}`"
            ))
            .into()),
        }
    }
}

/// The client's address key (`ip:...`), for per-shopper limits of guests.
#[derive(Debug, Clone)]
pub struct Address(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Address {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Address(
            match parts.extensions.get::<ConnectInfo<SocketAddr>>() {
                Some(ConnectInfo(addr)) => format!("ip:{}", addr.ip()),
                None => "ip:unknown".to_owned(),
            },
        ))
    }
}
