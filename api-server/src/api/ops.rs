//! Health, readiness, metrics and the OpenAPI document generated from the handlers.

use super::*;

// ---------------------------------------------------------------- operations

/// The process is up.
#[utoipa::path(
    get, path = "/health", tag = "operations",
    responses((status = 200, description = "Up", body = Health))
)]
pub(super) async fn health() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// Ready to serve: the database and every node answer.
#[utoipa::path(
    get, path = "/ready", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Ready),
        (status = 503, description = "The database or a node does not answer (`not_ready`)", body = ApiError),
    )
)]
pub(super) async fn ready(State(state): State<Arc<AppState>>) -> Answer<Json<Ready>> {
    let not_ready = |what: String| Failure::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", what);
    if let Err(e) = state.db.ping().await {
        tracing::warn!(error = %e, "not ready: database");
        return Err(not_ready("the database does not answer".into()));
    }
    let mut nodes = Vec::new();
    for rail in state.engine.driver.rails() {
        let chain = rail.params().chain;
        match tokio::time::timeout(state.config.node_timeout, rail.tip()).await {
            Ok(Ok(_)) => nodes.push(chain.to_string()),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, %chain, "not ready: node");
                return Err(not_ready(format!("the {chain} node does not answer")));
            }
            Err(_) => {
                return Err(not_ready(format!(
                    "the {chain} node does not answer in time"
                )))
            }
        }
    }
    Ok(Json(Ready {
        status: "ok".into(),
        nodes,
    }))
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(
    get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Metrics", content_type = "text/plain", body = String))
)]
pub(super) async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let swaps = state.db.counts_by_state().await.ok();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        state.metrics.render(swaps.as_deref()),
    )
        .into_response()
}

/// This document.
#[utoipa::path(
    get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3 document", content_type = "application/json", body = Object))
)]
pub(super) async fn openapi_json() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        openapi_text(),
    )
        .into_response()
}

// ---------------------------------------------------------------- document

/// The OpenAPI document of this API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "xswap API",
        description = "An exchange's API to xswap: quotes against makers' offers, swaps created with idempotency keys (this server takes the offer and runs the swap), listing, cancelling before our lock, an event stream of state changes, health, readiness and metrics. Every error is an ApiError with a stable code.",
    ),
    paths(quote, create_swap, get_swap, list_swaps, cancel_swap, events, health, ready, metrics, openapi_json),
    components(schemas(ApiError, LegAmount, SwapView, SwapPage, QuoteView, CreateSwap, Health, Ready, SwapEvent)),
    modifiers(&Conventions),
    tags(
        (name = "swaps", description = "Quotes and swaps"),
        (name = "events", description = "Swap state changes"),
        (name = "operations", description = "Health, readiness, metrics, this document"),
    )
)]
pub struct ApiDoc;

/// What every operation shares: `/v1` needs the bearer key (401, 429 when over the limit),
/// and any status not listed is an [`ApiError`] (`default`).
pub(super) struct Conventions;

impl utoipa::Modify for Conventions {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key made with `xswap-server key create`"))
                    .build(),
            ),
        );
        let error = |what: &str| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(what)
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                                "ApiError",
                            ))))
                            .build(),
                    )
                    .build(),
            )
        };
        for (path, item) in doc.paths.paths.iter_mut() {
            let v1 = path.starts_with("/v1/");
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                let r = &mut op.responses.responses;
                if v1 {
                    op.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
                        "bearer",
                        Vec::<String>::new(),
                    )]);
                    r.entry("401".into()).or_insert_with(|| {
                        error("Missing, unknown or revoked API key (`unauthorized`)")
                    });
                    r.entry("429".into()).or_insert_with(|| {
                        error("Over this key's rate limit (`rate_limited`); see Retry-After")
                    });
                    r.entry("413".into())
                        .or_insert_with(|| error("Body too large (`payload_too_large`)"));
                    r.entry("503".into()).or_insert_with(|| {
                        error("The database or a node cannot be reached (`database_unavailable`, `node_unavailable`)")
                    });
                }
                r.entry("default".into())
                    .or_insert_with(|| error("Any other error (an ApiError with a stable code)"));
            }
        }
    }
}

/// The OpenAPI document as JSON.
pub fn openapi_text() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|_| "{}".into())
}
