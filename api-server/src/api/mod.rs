//! The routes, their handlers, and the OpenAPI document generated from them.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use swap_core::store::SwapState;
use swap_core::{
    initiator, responder, Asset, ChainId, ChainParams, GiveUpReason, Outcome, StoreError, SwapId,
    Timestamp,
};
use swap_engine::EngineError;
use swap_net::Offer;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, RefOr, ResponseBuilder};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::db::{api_state, IdemStart, KeyCheck, SwapRow};
use crate::error::{ApiError, Failure};
use crate::AppState;

type Answer<T> = Result<T, Failure>;

/// Every API state a swap can be in (the `state` filter's values).
pub const STATES: &[&str] = &[
    "negotiated",
    "locking",
    "locked",
    "lock_confirmed",
    "counter_lock_seen",
    "counter_lock_valid",
    "claiming",
    "claim_sent",
    "claimed",
    "await_refund",
    "refunding",
    "cancelling",
    "await_counter_lock",
    "secret_learned",
    "swapped",
    "refunded",
    "aborted",
    "cancelled",
    "lost",
];

/// The API key's row id, put in a request's extensions by the auth layer.
#[derive(Debug, Clone, Copy)]
struct KeyId(i64);

mod events;
mod ops;
mod quote;
mod swaps;
mod views;

use events::*;
use ops::*;
pub use ops::{openapi_text, ApiDoc};
use quote::*;
pub use swaps::cancellable;
use swaps::*;
pub use views::*;

// ---------------------------------------------------------------- router and layers

/// The API's router over `state`.
pub fn router(state: Arc<AppState>) -> Router {
    let v1 = Router::new()
        .route("/v1/quote", get(quote))
        .route("/v1/swaps", post(create_swap).get(list_swaps))
        .route("/v1/swaps/{id}", get(get_swap))
        .route("/v1/swaps/{id}/cancel", post(cancel_swap))
        .route("/v1/events", get(events))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .merge(v1)
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi_json))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), limit_body))
        .layer(middleware::from_fn(typed_errors))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .with_state(state)
}

async fn not_found() -> Failure {
    Failure::for_status(StatusCode::NOT_FOUND)
}

/// The route a path belongs to, for metrics (ids left out: bounded label values).
fn route_of(path: &str) -> &'static str {
    match path {
        "/v1/quote" => "/v1/quote",
        "/v1/swaps" => "/v1/swaps",
        "/v1/events" => "/v1/events",
        "/health" => "/health",
        "/ready" => "/ready",
        "/metrics" => "/metrics",
        "/openapi.json" => "/openapi.json",
        p if p.starts_with("/v1/swaps/") && p.ends_with("/cancel") => "/v1/swaps/{id}/cancel",
        p if p.starts_with("/v1/swaps/") => "/v1/swaps/{id}",
        _ => "other",
    }
}

fn method_of(m: &axum::http::Method) -> &'static str {
    match m.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "HEAD" => "HEAD",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

async fn count_requests(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let route = route_of(req.uri().path());
    let method = method_of(req.method());
    let res = next.run(req).await;
    state.metrics.request(method, route, res.status().as_u16());
    res
}

/// Any error answer that is not already the typed JSON error (the router's 404 and 405, a
/// body limit's 413) becomes one; its headers (`Allow`, `Retry-After`) are kept.
async fn typed_errors(req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    let status = res.status();
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return res;
    }
    let (mut parts, _) = res.into_parts();
    let typed = Failure::for_status(status).into_response();
    let (typed_parts, body) = typed.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    for (k, v) in typed_parts.headers.iter() {
        parts.headers.insert(k, v.clone());
    }
    Response::from_parts(parts, body)
}

/// Refuses a body announced larger than the limit before it is read (the handlers that read
/// a body stop at the limit too).
async fn limit_body(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > state.config.max_body as u64) {
        return Failure::for_status(StatusCode::PAYLOAD_TOO_LARGE).into_response();
    }
    next.run(req).await
}

/// `Authorization: Bearer <key>`: the key must be known (its hash stored) and its bucket not
/// empty.
async fn authenticate(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let key = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= 256)
        .map(str::to_owned);
    let Some(key) = key else {
        return Failure::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send an API key as `Authorization: Bearer <key>`",
        )
        .into_response();
    };
    let cfg = &state.config;
    match state.db.check_key(&key, cfg.rate_per_sec, cfg.burst).await {
        Ok(KeyCheck::Allowed { key_id }) => {
            req.extensions_mut().insert(KeyId(key_id));
            next.run(req).await
        }
        Ok(KeyCheck::Unknown) => Failure::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "unknown or revoked API key",
        )
        .into_response(),
        Ok(KeyCheck::Limited { retry_after }) => {
            let mut f = Failure::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests for this API key; retry after the Retry-After delay",
            );
            f.retry_after = Some(retry_after);
            f.into_response()
        }
        Err(e) => Failure::database(&e).into_response(),
    }
}
