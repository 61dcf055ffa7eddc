//! Server-rendered pages: a product page with an add-to-cart form, the cart with a
//! checkout form, and the order's status. Plain HTML forms and cookies, no JavaScript.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use commerce_core::Error;
use commerce_core::browse::ProductPageRequest;
use commerce_core::cart::CartOwner;
use commerce_core::catalog::Slug;
use commerce_core::id::{CartId, CustomerId, IdempotencyKey, OrderId, Sku};
use commerce_core::service::{CheckoutOutcome, CheckoutRequest};
use commerce_core::store::search::{SearchQuery, SortOrder};
use serde::Deserialize;

use crate::app::App;
use crate::problem::{ApiError, Form, Path, Problem};
use crate::views::{review_issues, stock_text};

/// The pages' routes.
pub fn routes() -> Router<App> {
    Router::new()
        .route("/", get(index))
        .route("/products/{slug}", get(product))
        .route("/cart", get(cart))
        .route("/cart/add", post(add_to_cart))
        .route("/checkout", post(checkout))
        .route("/orders/{order_id}", get(order))
}

/// An error shown as a page (same mapping as the API's problems).
#[derive(Debug)]
struct PageError(Problem);

impl From<Error> for PageError {
    fn from(e: Error) -> Self {
        PageError(ApiError::from(e).0)
    }
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        PageError(e.0)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let p = self.0;
        let body = layout(
            &p.title,
            &format!(
                "<p class=\"error\">{}</p><p><a href=\"/\">Back to the shop</a></p>",
                escape(&p.detail)
            ),
        );
        let mut response = (p.status_code(), Html(body)).into_response();
        if let Some(s) = p.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        response
    }
}

type PageResult = Result<Response, PageError>;

/// Escapes text for HTML.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

fn layout(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\
         <style>body{{font-family:sans-serif;max-width:50em;margin:2em auto}}td,th{{padding:.2em .6em;text-align:left}}.error{{color:#a00}}</style>\
         </head><body><nav><a href=\"/\">Shop</a> · <a href=\"/cart\" id=\"cart-link\">Cart</a></nav><h1>{t}</h1>\n{body}\n</body></html>",
        t = escape(title)
    )
}

/// A cookie of the request.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

fn set_cookie(response: &mut Response, name: &str, value: &str, max_age: Option<u32>) {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    if let Ok(v) = HeaderValue::from_str(&c) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// The signed-in customer (cookie `customer`), if any and valid.
fn signed_in(headers: &HeaderMap) -> Option<CustomerId> {
    cookie(headers, "customer").and_then(|c| CustomerId::new(c).ok())
}

/// The cart the shopper uses now: the customer's when signed in, else the guest
/// cart of the `cart` cookie (if it is a guest cart id).
fn current_cart(headers: &HeaderMap) -> Option<(CartId, CartOwner)> {
    if let Some(c) = signed_in(headers) {
        return Some((CartId::for_customer(&c), CartOwner::Customer(c)));
    }
    cookie(headers, "cart")
        .and_then(|c| CartId::new(c).ok())
        .filter(|c| c.is_guest())
        .map(|c| (c, CartOwner::Guest))
}

async fn index(State(app): State<App>) -> PageResult {
    let results = app
        .index
        .search(&SearchQuery {
            limit: 20,
            sort: SortOrder::Popularity,
            ..SearchQuery::default()
        })
        .await?;
    let mut body = String::from("<ul>");
    for h in &results.hits {
        body.push_str(&format!(
            "<li><a href=\"/products/{}\">{}</a> — {}</li>",
            escape(h.slug.as_str()),
            escape(&h.title),
            escape(&h.price.to_string())
        ));
    }
    body.push_str(&format!(
        "</ul><p>{} products. The API is described at <a href=\"/openapi.json\">/openapi.json</a>.</p>",
        results.total
    ));
    Ok(Html(layout("commerce shop", &body)).into_response())
}

async fn product(
    State(app): State<App>,
    headers: HeaderMap,
    Path(slug): Path<String>,
) -> PageResult {
    let mut request = ProductPageRequest::by_slug(Slug::new(slug)?);
    request.customer = signed_in(&headers);
    let page = app.pages.load(&request).await?;
    let p = &page.product;
    let mut body = format!(
        "<p>{} · {}</p><p>{}</p><table id=\"variants\"><tr><th>SKU</th><th>Price</th><th>Stock</th><th></th></tr>",
        escape(&p.brand),
        escape(&p.category.to_string()),
        escape(&p.description)
    );
    for v in &page.variants {
        let (stock, available) = stock_text(v.stock);
        let stock = match available {
            Some(n) => format!("{n} in stock"),
            None => stock.replace('_', " "),
        };
        body.push_str(&format!(
            "<tr><td>{sku}</td><td>{price}</td><td class=\"stock\">{stock}</td><td>\
             <form method=\"post\" action=\"/cart/add\"><input type=\"hidden\" name=\"sku\" value=\"{sku}\">\
             <input type=\"number\" name=\"quantity\" value=\"1\" min=\"1\" max=\"99\">\
             <button type=\"submit\" id=\"add-{sku}\">Add to cart</button></form></td></tr>",
            sku = escape(v.sku.as_str()),
            price = escape(&v.price.to_string()),
        ));
    }
    body.push_str("</table>");
    if !page.recommendations.is_empty() {
        body.push_str("<h2>You may also like</h2><ul>");
        for r in &page.recommendations {
            body.push_str(&format!(
                "<li><a href=\"/products/{}\">{}</a> — {}</li>",
                escape(r.product.slug.as_str()),
                escape(&r.product.title),
                escape(&r.product.price.to_string())
            ));
        }
        body.push_str("</ul>");
    }
    body.push_str(&format!(
        "<p><small>page assembled in {:.1} ms</small></p>",
        page.elapsed.as_secs_f64() * 1000.0
    ));
    Ok(Html(layout(&p.title, &body)).into_response())
}

/// The add-to-cart form.
#[derive(Debug, Deserialize)]
struct AddForm {
    sku: String,
    quantity: u32,
}

async fn add_to_cart(
    State(app): State<App>,
    headers: HeaderMap,
    Form(form): Form<AddForm>,
) -> PageResult {
    let sku = Sku::new(form.sku)?;
    let (id, owner, new) = match current_cart(&headers) {
        Some((id, owner)) => (id, owner, false),
        None => (CartId::new_guest(), CartOwner::Guest, true),
    };
    app.carts.add(&id, &owner, &sku, form.quantity).await?;
    let mut response = Redirect::to("/cart").into_response();
    if new {
        set_cookie(&mut response, "cart", id.as_str(), None);
    }
    Ok(response)
}

async fn cart(State(app): State<App>, headers: HeaderMap) -> PageResult {
    let cart = match current_cart(&headers) {
        Some((id, owner)) => app.carts.get(&id, &owner).await?,
        None => None,
    };
    let Some(cart) = cart.filter(|c| !c.items.is_empty()) else {
        return Ok(Html(layout(
            "Your cart",
            "<p id=\"empty\">Your cart is empty.</p>",
        ))
        .into_response());
    };
    let mut body = String::from(
        "<table id=\"lines\"><tr><th>SKU</th><th>Quantity</th><th>Unit price</th></tr>",
    );
    for i in &cart.items {
        body.push_str(&format!(
            "<tr class=\"line\"><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(i.sku.as_str()),
            i.quantity,
            escape(&i.unit_price.to_string())
        ));
    }
    let customer = signed_in(&headers)
        .map(|c| c.to_string())
        .unwrap_or_default();
    // One key per rendering of the form: a double submit places one order.
    let key = format!("web-{}", uuid::Uuid::new_v4().simple());
    body.push_str(&format!(
        "</table><form method=\"post\" action=\"/checkout\" id=\"checkout\">\
         <label>Customer id <input name=\"customer\" id=\"customer\" value=\"{}\" required></label>\
         <input type=\"hidden\" name=\"idempotency_key\" value=\"{}\">\
         <button type=\"submit\" id=\"place-order\">Place order</button></form>",
        escape(&customer),
        escape(&key)
    ));
    Ok(Html(layout("Your cart", &body)).into_response())
}

/// The checkout form.
#[derive(Debug, Deserialize)]
struct CheckoutForm {
    customer: String,
    idempotency_key: String,
}

async fn checkout(
    State(app): State<App>,
    headers: HeaderMap,
    Form(form): Form<CheckoutForm>,
) -> PageResult {
    let customer = CustomerId::new(form.customer.trim())?;
    let key = IdempotencyKey::new(form.idempotency_key)?;
    // Signing in merges the guest cart into the customer's.
    if let Some(guest) = cookie(&headers, "cart")
        .and_then(|c| CartId::new(c).ok())
        .filter(|c| c.is_guest())
    {
        app.carts.sign_in(&guest, &customer).await?;
    }
    let request = CheckoutRequest::server_cart(
        customer.clone(),
        CartId::for_customer(&customer),
        CartOwner::Customer(customer.clone()),
        key,
    );
    let order = match app.checkout.checkout(&request).await? {
        CheckoutOutcome::Placed { order, .. } => order,
        CheckoutOutcome::NeedsReview(review) => {
            let mut p = Problem::new(
                StatusCode::CONFLICT,
                "needs-review",
                "The cart changed",
                format!("nothing was ordered: {:?}", review_issues(&review)),
            );
            p.issues = Some(review_issues(&review));
            return Err(PageError(p));
        }
    };
    let mut response = Redirect::to(&format!("/orders/{}", order.id)).into_response();
    set_cookie(&mut response, "customer", customer.as_str(), None);
    set_cookie(&mut response, "cart", "", Some(0));
    Ok(response)
}

async fn order(
    State(app): State<App>,
    headers: HeaderMap,
    Path(order_id): Path<String>,
) -> PageResult {
    let id = OrderId::new(order_id)?;
    let customer = signed_in(&headers);
    let order = app
        .stores
        .orders
        .get_order(&id)
        .await?
        .filter(|o| Some(&o.customer_id) == customer.as_ref())
        .ok_or_else(|| Error::not_found(commerce_core::EntityKind::Order, &id))?;
    let mut body = format!(
        "<p>Order <code id=\"order-id\">{}</code>: <strong id=\"status\">{}</strong></p><table>",
        escape(order.id.as_str()),
        escape(&order.status.to_string())
    );
    for l in &order.lines {
        body.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            l.quantity,
            escape(&l.title),
            escape(&l.line_total.to_string())
        ));
    }
    body.push_str(&format!(
        "</table><p>Total <strong id=\"total\">{}</strong></p>",
        escape(&order.totals.total.to_string())
    ));
    Ok(Html(layout("Thank you", &body)).into_response())
}
