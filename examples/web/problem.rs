//! Errors as RFC 9457 problem details (`application/problem+json`), mapped from the
//! kinds of `commerce_core::Error`, and the extractors whose rejections use them.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::rejection::{FormRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use commerce_core::Error;
use serde::Serialize;
use utoipa::ToSchema;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem: `type`, `title`, `status`, `detail`, plus the fields of the
/// library error it came from.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URI reference naming the kind of problem (`/problems/out-of-stock`).
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the kind.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What happened this time.
    pub detail: String,
    /// The field that failed validation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The SKU that is short (out of stock).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    /// Units asked for (out of stock).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested: Option<u64>,
    /// Units available (out of stock).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available: Option<u64>,
    /// Seconds to wait before trying again (429, 503); also in `Retry-After`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// Per-SKU issues that stopped a checkout (`needs-review`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issues: Option<BTreeMap<String, Vec<String>>>,
}

impl Problem {
    /// A problem of `status` with the given slug (`/problems/{slug}`), title and detail.
    pub fn new(status: StatusCode, slug: &str, title: &str, detail: impl Into<String>) -> Self {
        Problem {
            kind: format!("/problems/{slug}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            field: None,
            sku: None,
            requested: None,
            available: None,
            retry_after: None,
            issues: None,
        }
    }

    /// The HTTP status.
    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// 429 Too Many Requests, come back after `retry_after`.
    pub fn rate_limited(retry_after: Duration) -> Self {
        let seconds = retry_after_seconds(retry_after);
        let mut p = Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            "Too many requests",
            format!("over the rate limit; retry after {seconds} s"),
        );
        p.retry_after = Some(seconds);
        p
    }

    /// 400 Bad Request for a request the server could not read.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "Malformed request",
            detail,
        )
    }

    /// 401 Unauthorized: the call needs a signed-in customer.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            "sign-in-required",
            "Sign-in required",
            detail,
        )
    }
}

/// Whole seconds for `Retry-After`, rounded up, at least 1.
pub fn retry_after_seconds(d: Duration) -> u64 {
    d.as_millis().div_ceil(1000).max(1) as u64
}

impl From<&Error> for Problem {
    fn from(e: &Error) -> Self {
        let detail = e.to_string();
        match e {
            Error::NotFound { .. } => {
                Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
            }
            Error::Conflict { .. } => {
                Problem::new(StatusCode::CONFLICT, "conflict", "Conflict", detail)
            }
            Error::OutOfStock {
                sku,
                requested,
                available,
            } => {
                let mut p =
                    Problem::new(StatusCode::CONFLICT, "out-of-stock", "Out of stock", detail);
                p.sku = Some(sku.clone());
                p.requested = Some(*requested);
                p.available = Some(*available);
                p
            }
            Error::InvalidTransition { .. } => Problem::new(
                StatusCode::CONFLICT,
                "invalid-transition",
                "Invalid state transition",
                detail,
            ),
            Error::Validation { field, .. } => {
                let mut p = Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "validation",
                    "Invalid input",
                    detail,
                );
                p.field = Some(field.clone());
                p
            }
            Error::CurrencyMismatch { .. } => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "currency-mismatch",
                "Currency mismatch",
                detail,
            ),
            Error::RateLimited { retry_after } => Problem::rate_limited(*retry_after),
            Error::Backend {
                retryable: true, ..
            } => {
                let mut p = Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "Temporarily unavailable",
                    "a backend did not answer; try again",
                );
                p.retry_after = Some(1);
                p
            }
            // Permanent backend errors and kinds added later: no internals in the body.
            _ => Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
                "the request failed on the server",
            ),
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let retry_after = self.retry_after;
        let body = serde_json::to_vec(&self).unwrap_or_else(|_| b"{}".to_vec());
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(s) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        response
    }
}

/// A handler's error: a library error or a problem built by the handler.
#[derive(Debug)]
pub struct ApiError(pub Problem);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let problem = Problem::from(&e);
        if problem.status >= 500 {
            tracing::error!(error = %e, "request failed");
        }
        ApiError(problem)
    }
}

impl From<Problem> for ApiError {
    fn from(p: Problem) -> Self {
        ApiError(p)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.0.into_response()
    }
}

/// What handlers return.
pub type ApiResult<T> = Result<T, ApiError>;

fn rejection(status: StatusCode, detail: String) -> ApiError {
    if status == StatusCode::UNPROCESSABLE_ENTITY {
        ApiError(Problem::new(status, "validation", "Invalid input", detail))
    } else if status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
        ApiError(Problem::new(
            status,
            "unsupported-media-type",
            "Unsupported media type",
            detail,
        ))
    } else if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError(Problem::new(
            status,
            "too-large",
            "Request body too large",
            detail,
        ))
    } else {
        ApiError(Problem::bad_request(detail))
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        rejection(r.status(), r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        // A query string that does not deserialise is invalid input, like a bad body.
        rejection(StatusCode::UNPROCESSABLE_ENTITY, r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        rejection(StatusCode::UNPROCESSABLE_ENTITY, r.body_text())
    }
}

impl From<FormRejection> for ApiError {
    fn from(r: FormRejection) -> Self {
        rejection(r.status(), r.body_text())
    }
}

/// `axum::Json` whose rejection is a problem.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// `axum::extract::Query` whose rejection is a problem.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// `axum::extract::Path` whose rejection is a problem.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// `axum::Form` whose rejection is a problem.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Form), rejection(ApiError))]
pub struct Form<T>(pub T);

/// The answer to unknown paths: a 404 problem.
pub async fn not_found() -> ApiError {
    ApiError(Problem::new(
        StatusCode::NOT_FOUND,
        "not-found",
        "Not found",
        "no such resource",
    ))
}

/// The answer to a known path with another method: a 405 problem.
pub async fn method_not_allowed() -> ApiError {
    ApiError(Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
        "this resource does not support the method",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use commerce_core::EntityKind;

    #[test]
    fn library_errors_map_to_statuses() {
        let cases = [
            (
                Error::not_found(EntityKind::Product, "x"),
                404,
                "/problems/not-found",
            ),
            (
                Error::conflict(EntityKind::Order, "x"),
                409,
                "/problems/conflict",
            ),
            (
                Error::validation("sku", "empty"),
                422,
                "/problems/validation",
            ),
            (
                Error::RateLimited {
                    retry_after: Duration::from_millis(1500),
                },
                429,
                "/problems/rate-limited",
            ),
            (
                Error::backend(true, "timeout"),
                503,
                "/problems/unavailable",
            ),
            (Error::backend(false, "schema"), 500, "/problems/internal"),
        ];
        for (e, status, kind) in cases {
            let p = Problem::from(&e);
            assert_eq!((p.status, p.kind.as_str()), (status, kind), "{e}");
        }
        let p = Problem::from(&Error::RateLimited {
            retry_after: Duration::from_millis(1500),
        });
        assert_eq!(p.retry_after, Some(2));
        let p = Problem::from(&Error::validation("sku", "empty"));
        assert_eq!(p.field.as_deref(), Some("sku"));
        // A permanent backend error does not leak its message.
        let p = Problem::from(&Error::backend(false, "password=hunter2"));
        assert!(!p.detail.contains("hunter2"));
    }
}
