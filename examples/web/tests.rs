//! The service driven through its router (`tower::ServiceExt::oneshot`), on the
//! in-memory stores and a tantivy index in RAM.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Request, StatusCode, header};
use commerce_core::memory::MemoryEngine;
use commerce_core::recommend::{MemoryCoPurchase, MemoryHistory};
use commerce_core::service::Stores;
use commerce_core::store::SearchIndex;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::app::{App, Limits};
use crate::pipeline::Pipeline;
use crate::seed::{self, FLASH_SKU, Seeded};

/// Generous limits, so only the rate-limit tests meet them.
pub const OPEN: Limits = Limits {
    ip_per_second: 100_000,
    searches_per_minute: 100_000,
    checkouts_per_minute: 100_000,
};

/// A seeded shop with its pipeline running.
pub struct Harness {
    pub app: App,
    pub router: Router,
    pub pipeline: Pipeline,
    pub seeded: Seeded,
}

/// `products` sample products and the flash-sale product with `flash_units` units.
pub async fn harness(limits: Limits, products: u64, flash_units: u32) -> Harness {
    let stores = Stores::memory(&MemoryEngine::new());
    let search: Arc<dyn SearchIndex> =
        Arc::new(commerce_search::TantivySearch::in_ram().expect("index"));
    let co_purchase = Arc::new(MemoryCoPurchase::new());
    let history = Arc::new(MemoryHistory::new());
    let seeded = seed::seed(
        &stores,
        search.as_ref(),
        (
            commerce_core::catalog::CategoryTree::generated(),
            "generated".into(),
        ),
        products,
        7,
        flash_units,
    )
    .await
    .expect("seed");
    let pipeline = Pipeline::start(
        &stores,
        4,
        true,
        co_purchase.clone(),
        history.clone(),
        stores.catalog.clone(),
    )
    .expect("pipeline");
    let app = App::new(stores, search, co_purchase, history, limits).expect("app");
    let router = app
        .clone()
        .router()
        .layer(MockConnectInfo(SocketAddr::from(([192, 0, 2, 1], 4000))));
    Harness {
        app,
        router,
        pipeline,
        seeded,
    }
}

/// One response: status, headers, body as JSON (`Value::Null` if not JSON).
pub struct Reply {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Value,
}

impl Harness {
    pub async fn call(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = match body {
            Some(b) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        }
        .expect("request");
        let response = self.router.clone().oneshot(req).await.expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        Reply {
            status,
            headers,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        }
    }

    async fn get(&self, uri: &str) -> Reply {
        self.call("GET", uri, &[], None).await
    }
}

fn is_problem(r: &Reply, status: u16, kind: &str) {
    assert_eq!(r.status.as_u16(), status, "{}", r.body);
    assert_eq!(
        r.headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes()),
        Some(&b"application/problem+json"[..])
    );
    assert_eq!(r.body["type"], format!("/problems/{kind}"), "{}", r.body);
    assert_eq!(r.body["status"], status);
    assert!(r.body["title"].is_string() && r.body["detail"].is_string());
}

/// A SKU of the sample catalog with at least `n` units.
async fn stocked_sku(h: &Harness, n: u64) -> String {
    for sku in &h.seeded.skus {
        let r = h.get(&format!("/api/stock/{sku}")).await;
        if r.body["available"].as_u64().unwrap_or(0) >= n {
            return sku.to_string();
        }
    }
    panic!("no SKU with {n} units");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browse_search_autocomplete_and_product_page() {
    let h = harness(OPEN, 300, 10).await;
    // Browse the root category of the first hit's category, with facets.
    let all = h.get("/api/search?q=&limit=5").await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.body);
    assert_eq!(all.body["total"], 301);
    let category = all.body["products"][0]["category"]
        .as_str()
        .expect("category")
        .to_owned();
    let root = category.split(" > ").next().expect("root").to_owned();
    let uri = format!(
        "/api/browse?category={}&limit=100",
        root.replace(' ', "%20").replace('&', "%26")
    );
    let browsed = h.get(&uri).await;
    assert_eq!(browsed.status, StatusCode::OK, "{}", browsed.body);
    let products = browsed.body["products"].as_array().expect("products");
    assert!(!products.is_empty());
    for p in products {
        assert!(p["category"].as_str().expect("category").starts_with(&root));
    }
    let brand_counts: u64 = browsed.body["facets"]["brands"]
        .as_array()
        .expect("brand facets")
        .iter()
        .map(|f| f["count"].as_u64().expect("count"))
        .sum();
    assert_eq!(brand_counts, browsed.body["total"].as_u64().expect("total"));

    // Search: every hit names the brand searched for.
    let brand = products[0]["brand"].as_str().expect("brand").to_owned();
    let found = h
        .get(&format!(
            "/api/search?q={}&brand={}",
            brand.replace(' ', "%20"),
            brand.replace(' ', "%20")
        ))
        .await;
    assert_eq!(found.status, StatusCode::OK);
    assert!(found.body["total"].as_u64().expect("total") > 0);
    for p in found.body["products"].as_array().expect("hits") {
        assert_eq!(p["brand"], brand.as_str());
    }

    let suggestions = h.get("/api/autocomplete?q=flas").await;
    assert_eq!(suggestions.status, StatusCode::OK);
    assert!(
        suggestions
            .body
            .as_array()
            .expect("list")
            .iter()
            .any(|s| s["text"]
                .as_str()
                .is_some_and(|t| t.to_lowercase().starts_with("flash"))),
        "{}",
        suggestions.body
    );

    let page = h
        .get(&format!("/api/products/{}", h.seeded.flash_slug))
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(page.body["variants"][0]["sku"], FLASH_SKU);
    assert_eq!(page.body["variants"][0]["stock"], "in_stock");
    assert_eq!(page.body["variants"][0]["available"], 10);
    h.pipeline.stop().await.expect("drain");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_cart_merges_on_sign_in_and_checkout_is_idempotent() {
    let h = harness(OPEN, 100, 10).await;
    let other = stocked_sku(&h, 3).await;
    let cart_id = h.call("POST", "/api/carts", &[], None).await.body["cart_id"]
        .as_str()
        .expect("cart id")
        .to_owned();
    let add = |sku: &str, q: u32| json!({"sku": sku, "quantity": q});
    let r = h
        .call(
            "POST",
            &format!("/api/carts/{cart_id}/items"),
            &[],
            Some(add(FLASH_SKU, 2)),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["owner"], "guest");
    // The customer's cart from an earlier visit.
    let alice = [("x-customer-id", "alice")];
    let r = h
        .call(
            "POST",
            "/api/carts/c-alice/items",
            &alice,
            Some(add(&other, 1)),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // A guest may not touch a customer's cart.
    let r = h.get("/api/carts/c-alice").await;
    is_problem(&r, 422, "validation");

    let merged = h
        .call(
            "POST",
            "/api/sign-in",
            &alice,
            Some(json!({"guest_cart_id": cart_id})),
        )
        .await;
    assert_eq!(merged.status, StatusCode::OK, "{}", merged.body);
    assert_eq!(merged.body["cart"]["id"], "c-alice");
    assert_eq!(merged.body["cart"]["total_quantity"], 3);

    let key = [("x-customer-id", "alice"), ("idempotency-key", "order-1")];
    let first = h.call("POST", "/api/checkout", &key, Some(json!({}))).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    assert_eq!(first.body["created"], true);
    let order_id = first.body["order"]["id"].as_str().expect("id").to_owned();
    let again = h.call("POST", "/api/checkout", &key, Some(json!({}))).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(again.body["created"], false);
    assert_eq!(again.body["order"]["id"], order_id.as_str());

    // The pipeline takes the order on; its history grows.
    let mut status = String::new();
    for _ in 0..200 {
        let r = h
            .call("GET", &format!("/api/orders/{order_id}"), &alice, None)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        status = r.body["status"].as_str().expect("status").to_owned();
        if status == "PREPARING" {
            assert!(r.body["history"].as_array().expect("history").len() >= 3);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, "PREPARING");
    // The stock was taken once (by the pipeline), and charged once, though checkout
    // was called twice.
    let stock = h.get(&format!("/api/stock/{FLASH_SKU}")).await;
    assert_eq!(stock.body["available"], 8, "{}", stock.body);
    assert_eq!(
        stock.body["reserved"].as_u64().expect("reserved")
            + stock.body["sold"].as_u64().expect("sold"),
        2
    );
    let captures = h
        .pipeline
        .payments
        .captures()
        .iter()
        .filter(|c| c.order_id.as_str() == order_id)
        .count();
    assert_eq!(captures, 1);
    // A retry whose body is malformed is refused, not answered with the key's order.
    let bad = json!({"items": [{"sku": FLASH_SKU, "quantity": 0}]});
    let r = h.call("POST", "/api/checkout", &key, Some(bad)).await;
    is_problem(&r, 422, "validation");
    let listed = h.call("GET", "/api/orders", &alice, None).await;
    assert_eq!(listed.body["orders"].as_array().expect("orders").len(), 1);
    // Another customer sees neither the order nor it in their list.
    let bob = [("x-customer-id", "bob")];
    let r = h
        .call("GET", &format!("/api/orders/{order_id}"), &bob, None)
        .await;
    is_problem(&r, 404, "not-found");
    let r = h.call("GET", "/api/orders", &bob, None).await;
    assert_eq!(r.body["orders"].as_array().expect("orders").len(), 0);

    let drained = h.pipeline.stop().await.expect("drain");
    assert_eq!(drained.relayed, 1);
    assert_eq!(drained.work.acked, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_problem_and_changes_nothing() {
    let h = harness(OPEN, 20, 3).await;
    let cart_id = h.call("POST", "/api/carts", &[], None).await.body["cart_id"]
        .as_str()
        .expect("cart id")
        .to_owned();
    let items = format!("/api/carts/{cart_id}/items");
    let ok = h
        .call(
            "POST",
            &items,
            &[],
            Some(json!({"sku": FLASH_SKU, "quantity": 1})),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    let version = ok.body["version"].clone();

    for body in [
        json!({"sku": FLASH_SKU, "quantity": -1}),
        json!({"sku": FLASH_SKU}),
        json!({"sku": FLASH_SKU, "quantity": 1, "extra": true}),
        json!({"sku": "", "quantity": 1}),
        json!({"sku": FLASH_SKU, "quantity": 0}),
    ] {
        let r = h.call("POST", &items, &[], Some(body.clone())).await;
        is_problem(&r, 422, "validation");
    }
    let r = h
        .call(
            "POST",
            &items,
            &[],
            Some(json!({"sku": FLASH_SKU, "quantity": 5})),
        )
        .await;
    is_problem(&r, 409, "out-of-stock");
    assert_eq!(r.body["sku"], FLASH_SKU);
    assert_eq!(r.body["available"], 3);
    let r = h
        .call(
            "POST",
            &items,
            &[],
            Some(json!({"sku": "NO-SUCH", "quantity": 1})),
        )
        .await;
    is_problem(&r, 404, "not-found");
    // Not JSON at all.
    let raw = Request::builder()
        .method("POST")
        .uri(&items)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{not json"))
        .expect("request");
    let response = h.router.clone().oneshot(raw).await.expect("infallible");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    // The cart is as it was.
    let cart = h.get(&format!("/api/carts/{cart_id}")).await;
    assert_eq!(cart.body["version"], version);
    assert_eq!(cart.body["total_quantity"], 1);

    // Checkout without a key, or signed out: nothing ordered.
    let r = h
        .call(
            "POST",
            "/api/checkout",
            &[("x-customer-id", "carol")],
            Some(json!({})),
        )
        .await;
    is_problem(&r, 422, "validation");
    let r = h
        .call(
            "POST",
            "/api/checkout",
            &[("idempotency-key", "k")],
            Some(json!({})),
        )
        .await;
    is_problem(&r, 401, "sign-in-required");
    // An empty customer cart.
    let r = h
        .call(
            "POST",
            "/api/checkout",
            &[("x-customer-id", "carol"), ("idempotency-key", "k")],
            Some(json!({})),
        )
        .await;
    assert!(r.status.is_client_error(), "{}", r.body);
    let r = h
        .call("GET", "/api/orders", &[("x-customer-id", "carol")], None)
        .await;
    assert_eq!(r.body["orders"].as_array().expect("orders").len(), 0);

    for uri in [
        "/api/search?q=x&limit=0",
        "/api/search?q=x&limit=101",
        "/api/search?q=x&sort=sideways",
        "/api/autocomplete?q=",
        "/api/browse?category=",
    ] {
        let r = h.get(uri).await;
        is_problem(&r, 422, "validation");
    }
    is_problem(
        &h.get("/api/products/no-such-product").await,
        404,
        "not-found",
    );
    is_problem(&h.get("/no/such/route").await, 404, "not-found");
    is_problem(
        &h.call("DELETE", "/api/carts", &[], None).await,
        405,
        "method-not-allowed",
    );
    let stock = h.get(&format!("/api/stock/{FLASH_SKU}")).await;
    assert_eq!(stock.body["available"], 3);
    h.pipeline.stop().await.expect("drain");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_answer_429_with_retry_after() {
    let h = harness(
        Limits {
            ip_per_second: 5,
            searches_per_minute: 2,
            checkouts_per_minute: 1,
        },
        20,
        5,
    )
    .await;
    // Per shopper: the third search in a minute is limited, another shopper is not.
    let dave = [("x-customer-id", "dave")];
    for _ in 0..2 {
        let r = h.call("GET", "/api/search?q=a", &dave, None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    let r = h.call("GET", "/api/search?q=a", &dave, None).await;
    is_problem(&r, 429, "rate-limited");
    let retry: u64 = r.headers[header::RETRY_AFTER]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry));
    assert_eq!(r.body["retry_after"], retry);
    let r = h
        .call("GET", "/api/search?q=a", &[("x-customer-id", "erin")], None)
        .await;
    assert_eq!(r.status, StatusCode::OK);

    // Per customer: the second checkout in a minute is limited before anything is read.
    let c = [("x-customer-id", "dave"), ("idempotency-key", "d-1")];
    let body = json!({"items": [{"sku": FLASH_SKU, "quantity": 1}]});
    let r = h
        .call("POST", "/api/checkout", &c, Some(body.clone()))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let c = [("x-customer-id", "dave"), ("idempotency-key", "d-2")];
    let r = h.call("POST", "/api/checkout", &c, Some(body)).await;
    is_problem(&r, 429, "rate-limited");
    assert!(r.headers.contains_key(header::RETRY_AFTER));

    // Per address: the burst (2 x 5) is spent by now; the next request is refused.
    let mut limited = None;
    for _ in 0..20 {
        let r = h.get("/api/stock/FLASH-1").await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("the address limit must answer 429");
    is_problem(&r, 429, "rate-limited");
    assert!(r.headers.contains_key(header::RETRY_AFTER));
    h.pipeline.stop().await.expect("drain");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_describes_every_route_and_its_problems() {
    let h = harness(OPEN, 5, 1).await;
    let doc = h.get("/openapi.json").await;
    assert_eq!(doc.status, StatusCode::OK);
    assert_eq!(doc.body["openapi"], "3.1.0");
    let paths = doc.body["paths"].as_object().expect("paths");
    for (path, method) in [
        ("/api/browse", "get"),
        ("/api/search", "get"),
        ("/api/autocomplete", "get"),
        ("/api/products/{slug}", "get"),
        ("/api/stock/{sku}", "get"),
        ("/api/carts", "post"),
        ("/api/carts/{cart_id}", "get"),
        ("/api/carts/{cart_id}/items", "post"),
        ("/api/carts/{cart_id}/items/{sku}", "put"),
        ("/api/carts/{cart_id}/items/{sku}", "delete"),
        ("/api/sign-in", "post"),
        ("/api/checkout", "post"),
        ("/api/orders", "get"),
        ("/api/orders/{order_id}", "get"),
    ] {
        let op = &paths[path][method];
        assert!(op.is_object(), "{method} {path} missing");
        for code in ["422", "429", "503"] {
            assert!(
                op["responses"][code]["content"]["application/problem+json"].is_object(),
                "{method} {path} lacks {code}"
            );
        }
        assert!(op["responses"]["429"]["headers"]["Retry-After"].is_object());
    }
    let checkout = &paths["/api/checkout"]["post"];
    let params: Vec<&str> = checkout["parameters"]
        .as_array()
        .expect("params")
        .iter()
        .filter(|p| p["required"] == true)
        .map(|p| p["name"].as_str().expect("name"))
        .collect();
    assert!(params.contains(&"Idempotency-Key"), "{params:?}");
    assert!(doc.body["components"]["schemas"]["Problem"].is_object());
    h.pipeline.stop().await.expect("drain");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_pages_render_and_escape() {
    let h = harness(OPEN, 20, 2).await;
    let r = h
        .router
        .clone()
        .oneshot(
            Request::get(format!("/products/{}", h.seeded.flash_slug))
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("infallible");
    assert_eq!(r.status(), StatusCode::OK);
    let html = String::from_utf8(
        r.into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .to_vec(),
    )
    .expect("utf-8");
    assert!(html.contains("action=\"/cart/add\""));
    assert!(html.contains("2 in stock"));
    assert_eq!(
        crate_escape("<a href=\"x\">&'"),
        "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
    );
    h.pipeline.stop().await.expect("drain");
}

fn crate_escape(s: &str) -> String {
    crate::html::escape(s)
}
