//! The OpenAPI 3.1 document: the operations come from the handlers' `#[utoipa::path]`
//! annotations; `finish` adds the problem responses every operation can give.

use utoipa::OpenApi;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{Ref, RefOr, ResponseBuilder};

use crate::problem::{PROBLEM_JSON, Problem};

/// The document's fixed parts.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "commerce web example",
        description = "The commerce crates behind an HTTP boundary: browse, search, product pages, carts, checkout and orders. Every error is an RFC 9457 problem (application/problem+json)."
    ),
    components(schemas(Problem, crate::views::SortParam)),
    tags(
        (name = "catalog", description = "Browse, search, product pages, stock"),
        (name = "cart", description = "Guest and customer carts"),
        (name = "checkout", description = "Orders from carts, under an idempotency key"),
        (name = "orders", description = "Order status and history")
    )
)]
pub struct ApiDoc;

/// The error responses of every operation, with their `Retry-After` where it applies.
const PROBLEMS: &[(&str, &str, bool)] = &[
    ("400", "Malformed request", false),
    ("401", "Sign-in required", false),
    ("404", "Not found", false),
    (
        "409",
        "Conflict: out of stock, a changed cart, a reused key",
        false,
    ),
    ("413", "Request body too large", false),
    ("415", "Unsupported media type", false),
    ("422", "Invalid input; nothing was changed", false),
    ("429", "Over a rate limit; nothing was done", true),
    ("500", "Internal error", false),
    ("503", "A backend is temporarily unavailable", true),
];

/// Adds the problem responses to every operation.
pub fn finish(mut doc: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.delete,
        ];
        for op in operations.into_iter().flatten() {
            for (code, description, retry) in PROBLEMS {
                let mut response = ResponseBuilder::new().description(*description).content(
                    PROBLEM_JSON,
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("Problem")))
                        .build(),
                );
                if *retry {
                    response = response.header(
                        "Retry-After",
                        HeaderBuilder::new()
                            .schema(
                                ObjectBuilder::new()
                                    .schema_type(Type::Integer)
                                    .minimum(Some(1)),
                            )
                            .description(Some("Seconds to wait"))
                            .build(),
                    );
                }
                op.responses
                    .responses
                    .entry((*code).to_owned())
                    .or_insert(RefOr::T(response.build()));
            }
        }
    }
    doc
}
