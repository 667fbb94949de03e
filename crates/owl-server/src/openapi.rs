//! The OpenAPI 3.1 document at `/v1/openapi.json`, generated: each handler's
//! `#[utoipa::path]` names its route, parameters and replies, the wire types derive their
//! schemas, and the same `routes!` calls register the handler with the router and the document
//! (see [`crate::router`]). A route cannot be served without being documented, or documented
//! without being served. What every route shares (the bearer token, the error replies) is
//! added here once.

use owl_api::ErrorBody;
use utoipa::openapi::path::{HttpMethod, Operation, PathItem};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, ResponseBuilder};
use utoipa::{Modify, ToSchema};

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "owl API",
        description = "The HTTP API of the owl daemon. Every route but /healthz and /v1/hooks/{name} needs `Authorization: Bearer <token>` (the token is in <data dir>/token). Errors are `{\"error\": {\"code\", \"message\", \"field\"}}`."
    ),
    servers((url = "http://127.0.0.1:7717", description = "The default listen address")),
    components(schemas(ErrorBody))
)]
pub struct ApiDoc;

/// The routes that need no token (a webhook's signature is its authentication).
pub const OPEN_PATHS: &[&str] = &["/healthz", "/v1/hooks/{name}", "/v1/health/live", "/v1/health/ready"];

/// Error replies every operation may give, with when.
const ERRORS: &[(&str, &str)] = &[
    ("400", "Invalid input; `field` names it and `message` says how to fix it"),
    ("401", "A missing or wrong bearer token (a webhook: a bad signature)"),
    ("404", "No such task, schedule, trigger, chat, approval, memory or MCP server"),
    ("409", "The request conflicts with the current state (a duplicate name, a busy chat, memory without its model, an MCP server that does not start)"),
    ("413", "The body is larger than [api] max_body_bytes"),
    ("415", "The body is not `application/json`"),
    ("429", "A webhook's rate limit is reached"),
    ("500", "owl failed (a storage error); the daemon's log has the details"),
    ("503", "The daemon is shutting down"),
];

/// Adds what every route shares, and the two routes served outside the handlers.
pub struct Common;

impl Modify for Common {
    fn modify(&self, doc: &mut OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()));
        let error = ContentBuilder::new().schema(Some(Ref::from_schema_name(ErrorBody::name()))).build();
        doc.security = Some(vec![SecurityRequirement::new("bearer", Vec::<String>::new())]);
        let openapi_json = Operation::builder()
            .summary(Some("This document"))
            .response(
                "200",
                ResponseBuilder::new().description("The OpenAPI document").content("application/json", ContentBuilder::new().build()),
            )
            .build();
        doc.paths.paths.insert("/v1/openapi.json".into(), PathItem::new(HttpMethod::Get, openapi_json));
        let healthz = Operation::builder()
            .summary(Some("Liveness; no token needed"))
            .response(
                "200",
                ResponseBuilder::new().description("The daemon is up").content("application/json", ContentBuilder::new().build()),
            )
            .build();
        doc.paths.paths.insert("/healthz".into(), PathItem::new(HttpMethod::Get, healthz));
        for (path, item) in doc.paths.paths.iter_mut() {
            let open = OPEN_PATHS.contains(&path.as_str());
            for op in operations(item) {
                if open {
                    op.security = Some(vec![SecurityRequirement::default()]);
                }
                for (code, why) in ERRORS {
                    if path == "/healthz" {
                        continue;
                    }
                    op.responses.responses.entry(code.to_string()).or_insert_with(|| {
                        ResponseBuilder::new().description(*why).content("application/json", error.clone()).build().into()
                    });
                }
            }
        }
    }
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch].into_iter().filter_map(|o| o.as_mut())
}
