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

// ---------------------------------------------------------------- views

/// An amount of an asset on a chain.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LegAmount {
    /// The chain, e.g. `ltc-regtest`, `eth-mainnet`.
    pub chain: String,
    /// The asset: `btc`, `ltc`, `eth`, or `erc20:0x<token>:<decimals>`.
    pub asset: String,
    /// Base units (satoshis, wei, token units), as a decimal string.
    #[schema(example = "1000000")]
    pub amount: String,
}

/// A swap.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SwapView {
    /// The swap id (32 hex digits).
    #[schema(example = "0f1e2d3c4b5a69788796a5b4c3d2e1f0")]
    pub id: String,
    /// The state: the engine's state name while it runs (`negotiated`, `locking`, `locked`,
    /// ...), its outcome once finished (`swapped`, `refunded`, `aborted`, `cancelled`,
    /// `lost`).
    pub state: String,
    /// Whether the swap has finished.
    #[serde(rename = "final")]
    pub finished: bool,
    /// Our role: `initiator` (we made the secret and lock first) or `responder`.
    pub role: String,
    /// What we lock.
    pub give: LegAmount,
    /// What we receive.
    pub get: LegAmount,
    /// The hashlock (SHA-256 of the secret, hex). The secret itself is never shown.
    pub hashlock: String,
    /// Number of the latest state in the swap's history (1 is the first).
    pub seq: u64,
    /// When the swap was stored (Unix seconds).
    pub created_at: u64,
    /// When its latest state was entered (Unix seconds).
    pub updated_at: u64,
}

/// One page of swaps, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SwapPage {
    /// The swaps.
    pub swaps: Vec<SwapView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// What taking an offer for an amount gives and gets.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QuoteView {
    /// What we would lock (the offer's `buy` side).
    pub give: LegAmount,
    /// What we would receive (the offer's `sell` side, at its rate, rounded down).
    pub get: LegAmount,
    /// The offer's rate: base units of `get` per base unit of `give`, as `num/den`.
    pub rate: String,
    /// The maker's identity key.
    pub maker: String,
    /// When the offer lapses (Unix seconds).
    pub expires_at: u64,
}

/// Create a swap: take `offer` (a maker's offer string, `xso1...`), giving `give` base
/// units of what it buys.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSwap {
    /// The maker's offer string (`xso1...`; the older `xswap1...` too); the server's
    /// configured offer when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer: Option<String>,
    /// Base units of the offer's `buy` asset we give, as a decimal string.
    #[schema(example = "1000000")]
    pub give: String,
}

/// `GET /health`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: String,
}

/// `GET /ready` when ready.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Ready {
    /// `ok`.
    pub status: String,
    /// The chains whose nodes answered.
    pub nodes: Vec<String>,
}

/// One event of `GET /v1/events` (the `data` of an SSE event named `swap_state`, whose `id`
/// is `event_id`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SwapEvent {
    /// The event id: increasing; send the last one seen as `Last-Event-ID` to resume.
    pub event_id: i64,
    /// The swap.
    pub swap_id: String,
    /// The state's number in the swap's history.
    pub seq: u64,
    /// The state entered (as a swap's `state`).
    pub state: String,
    /// Whether it is the swap's last.
    #[serde(rename = "final")]
    pub finished: bool,
    /// When it was entered (Unix seconds).
    pub entered_at: u64,
}

fn asset_text(a: &Asset) -> String {
    match a {
        Asset::Btc => "btc".into(),
        Asset::Ltc => "ltc".into(),
        Asset::Eth => "eth".into(),
        Asset::Erc20 { token, decimals } => format!("erc20:{token}:{decimals}"),
    }
}

fn leg(chain: ChainId, asset: &Asset, units: u128) -> LegAmount {
    LegAmount {
        chain: chain.to_string(),
        asset: asset_text(asset),
        amount: units.to_string(),
    }
}

fn view(row: &SwapRow) -> SwapView {
    let r = &row.record;
    let t = &r.terms;
    let (ours, theirs) = match r.role {
        swap_core::Role::Initiator => (&t.x, &t.y),
        swap_core::Role::Responder => (&t.y, &t.x),
    };
    SwapView {
        id: r.id().to_string(),
        state: api_state(&row.state).into(),
        finished: row.state.is_final(),
        role: match r.role {
            swap_core::Role::Initiator => "initiator".into(),
            swap_core::Role::Responder => "responder".into(),
        },
        give: leg(ours.params.chain, &ours.asset, ours.amount.base_units()),
        get: leg(
            theirs.params.chain,
            &theirs.asset,
            theirs.amount.base_units(),
        ),
        hashlock: t.hashlock.to_string(),
        seq: row.seq,
        created_at: row.created_at,
        updated_at: row.updated_at,
    }
}

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

// ---------------------------------------------------------------- quote

/// `GET /v1/quote` parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QuoteQuery {
    /// The maker's offer string (`xso1...`; the older `xswap1...` too); the server's
    /// configured offer when absent.
    pub offer: Option<String>,
    /// Base units of the offer's `buy` asset we would give, as a decimal string.
    pub give: String,
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Answer<T> {
    q.map(|Query(t)| t).map_err(|_| {
        Failure::bad_request(
            "the query parameters are missing or malformed (see the OpenAPI document)",
        )
    })
}

fn parse_units(s: &str, what: &str) -> Answer<u128> {
    let s = s.trim();
    if s.is_empty() || s.len() > 40 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Failure::bad_request(format!(
            "`{what}` must be a whole number of base units, as a decimal string"
        )));
    }
    s.parse::<u128>()
        .map_err(|_| Failure::bad_request(format!("`{what}` is too large")))
}

/// An offer checked for taking `give` of it by this engine: what we give and get.
fn priced(state: &AppState, offer_text: Option<&str>, give: &str) -> Answer<(Offer, u128, u128)> {
    let offer_text = offer_text
        .or(state.config.default_offer.as_deref())
        .ok_or_else(|| Failure::bad_request("give `offer`: this server has no configured offer"))?;
    if offer_text.len() > 8192 {
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            "invalid_offer",
            "offer string too long",
        ));
    }
    let offer = Offer::decode(offer_text).map_err(|e| {
        // The offer's own error names what is wrong with the string the client sent.
        Failure::new(StatusCode::BAD_REQUEST, "invalid_offer", e.to_string())
    })?;
    let give = parse_units(give, "give")?;
    if offer.expires.0 <= Timestamp::now().0 {
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            "offer_expired",
            "the offer has expired",
        ));
    }
    let get = offer.quote(give).ok_or_else(|| {
        Failure::new(
            StatusCode::BAD_REQUEST,
            "amount_out_of_range",
            "the amount is too large",
        )
    })?;
    let (bmin, bmax) = (offer.buy.min.base_units(), offer.buy.max.base_units());
    let (smin, smax) = (offer.sell.min.base_units(), offer.sell.max.base_units());
    if give < bmin || give > bmax || get < smin || get > smax {
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            "amount_out_of_range",
            format!("the offer takes between {bmin} and {bmax} base units (and gives between {smin} and {smax})"),
        ));
    }
    for chain in [offer.buy.chain, offer.sell.chain] {
        if state
            .engine
            .driver
            .rail(ChainParams::for_chain(chain).rail())
            .is_none()
        {
            return Err(Failure::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "offer_not_takeable",
                format!("this server has no node for {chain}"),
            ));
        }
    }
    Ok((offer, give, get))
}

/// Prices an amount against a maker's offer (the one given, or the server's configured offer):
/// what we would lock and receive if we took it.
#[utoipa::path(
    get, path = "/v1/quote", tag = "swaps",
    params(QuoteQuery),
    responses(
        (status = 200, description = "The quote", body = QuoteView),
        (status = 400, description = "Invalid offer, amount, or an expired offer", body = ApiError),
        (status = 422, description = "This server has no node for one of the offer's chains", body = ApiError),
    )
)]
async fn quote(
    State(state): State<Arc<AppState>>,
    q: Result<Query<QuoteQuery>, QueryRejection>,
) -> Answer<Json<QuoteView>> {
    let q = query(q)?;
    let (offer, give, get) = priced(&state, q.offer.as_deref(), &q.give)?;
    Ok(Json(QuoteView {
        give: leg(offer.buy.chain, &offer.buy.asset, give),
        get: leg(offer.sell.chain, &offer.sell.asset, get),
        rate: format!("{}/{}", offer.rate_num, offer.rate_den),
        maker: offer.maker.to_string(),
        expires_at: offer.expires.0,
    }))
}

// ---------------------------------------------------------------- swaps

async fn load_view(state: &AppState, id: &SwapId) -> Answer<SwapView> {
    match state.db.swap(id).await {
        Ok(Some(row)) => Ok(view(&row)),
        Ok(None) => Err(Failure::unknown_swap()),
        Err(e) => Err(Failure::database(&e)),
    }
}

fn engine_failure(e: &EngineError) -> Failure {
    use EngineError as E;
    let (status, code, message): (StatusCode, &str, String) = match e {
        E::Unreachable { .. } => (
            StatusCode::BAD_GATEWAY,
            "maker_unreachable",
            "the maker cannot be reached at the offer's address".into(),
        ),
        // The maker's reason is a peer's text: not passed on.
        E::Rejected(_) => (
            StatusCode::CONFLICT,
            "maker_rejected",
            "the maker refused the swap".into(),
        ),
        E::Net(_) | E::Protocol(_) => (
            StatusCode::BAD_GATEWAY,
            "maker_protocol_error",
            "the maker's answers broke the protocol".into(),
        ),
        E::Offer(_) | E::Terms(_) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "offer_not_takeable",
            "the offer cannot be taken as asked".into(),
        ),
        E::InsufficientFunds { chain, .. } => (
            StatusCode::CONFLICT,
            "insufficient_funds",
            format!(
                "not enough funds on {chain} for this swap (with what unfinished swaps will lock)"
            ),
        ),
        E::Chain(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "node_unavailable",
            "a node cannot be reached right now; try again".into(),
        ),
        E::Store(_) => return Failure::database(e),
        _ => return Failure::internal(e),
    };
    tracing::warn!(error = %e, code, "swap not created");
    Failure::new(status, code, message)
}

/// Creates a swap: this server's engine takes the maker's offer for `give` (quote, proposal,
/// the swap stored with its secret, then run until it ends: we lock first). Idempotent: the
/// same `Idempotency-Key` with the same body answers the same swap; with another body, 409
/// `idempotency_key_reused`.
#[utoipa::path(
    post, path = "/v1/swaps", tag = "swaps",
    params(("Idempotency-Key" = String, Header, description = "A unique key per intended swap (1-200 visible ASCII characters); retry with the same key")),
    request_body = CreateSwap,
    responses(
        (status = 201, description = "The swap (created now, or by an earlier request with this key and body)", body = SwapView),
        (status = 400, description = "Invalid body, offer, amount or idempotency key", body = ApiError),
        (status = 409, description = "Idempotency key used with another body or still in progress; the maker refused; not enough funds", body = ApiError),
        (status = 413, description = "Body too large", body = ApiError),
        (status = 422, description = "The offer cannot be taken by this server", body = ApiError),
        (status = 502, description = "The maker cannot be reached or broke the protocol", body = ApiError),
    )
)]
async fn create_swap(
    State(state): State<Arc<AppState>>,
    axum::Extension(KeyId(key_id)): axum::Extension<KeyId>,
    headers: HeaderMap,
    body: Body,
) -> Answer<Response> {
    let bytes: Bytes = axum::body::to_bytes(body, state.config.max_body)
        .await
        .map_err(|_| Failure::for_status(StatusCode::PAYLOAD_TOO_LARGE))?;
    let req: CreateSwap = serde_json::from_slice(&bytes).map_err(|_| {
        Failure::bad_request(
            "the body must be JSON {\"give\": string, \"offer\": string (optional)}",
        )
    })?;
    let idem = match headers.get("idempotency-key") {
        None => {
            return Err(Failure::new(
                StatusCode::BAD_REQUEST,
                "missing_idempotency_key",
                "send an Idempotency-Key header",
            ))
        }
        Some(v) => v
            .to_str()
            .ok()
            .filter(|s| (1..=200).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| {
                Failure::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_idempotency_key",
                    "the Idempotency-Key must be 1 to 200 visible ASCII characters",
                )
            })?
            .to_owned(),
    };
    let body_hash: [u8; 32] = Sha256::digest(serde_json::to_vec(&req).unwrap_or_default()).into();
    let created = |id: SwapId, replay: bool| {
        let state = state.clone();
        async move {
            let v = load_view(&state, &id).await?;
            let mut res = (StatusCode::CREATED, Json(v)).into_response();
            if replay {
                res.headers_mut()
                    .insert("idempotent-replayed", HeaderValue::from_static("true"));
            }
            Ok::<_, Failure>(res)
        }
    };
    match state.db.idem_begin(key_id, &idem, &body_hash).await {
        Err(e) => return Err(Failure::database(&e)),
        Ok(IdemStart::OtherBody) => {
            return Err(Failure::new(
                StatusCode::CONFLICT,
                "idempotency_key_reused",
                "this Idempotency-Key was used with another body",
            ))
        }
        Ok(IdemStart::InProgress) => {
            return Err(Failure::new(
                StatusCode::CONFLICT,
                "idempotency_key_in_progress",
                "a request with this Idempotency-Key is still being handled",
            ))
        }
        Ok(IdemStart::Done(id)) => return created(id, true).await,
        Ok(IdemStart::New) => {}
    }
    // Checked after the key: a retry answers its swap even once the offer has lapsed.
    let (offer, give, _) = match priced(&state, req.offer.as_deref(), &req.give) {
        Ok(p) => p,
        Err(f) => {
            if let Err(db) = state.db.idem_abandon(key_id, &idem).await {
                tracing::warn!(error = %db, "idempotency key left in progress");
            }
            return Err(f);
        }
    };
    // In a task of its own: a client that disconnects does not stop a creation half-way.
    let task = {
        let state = state.clone();
        let idem = idem.clone();
        tokio::spawn(async move {
            match state.engine.take(&offer, give).await {
                Ok(id) => {
                    // Recorded before answering; on failure the key stays blocked (in
                    // progress), never free for a second swap.
                    state
                        .db
                        .idem_finish(key_id, &idem, &id)
                        .await
                        .map_err(|e| Failure::database(&e))?;
                    Ok(id)
                }
                Err(e) => {
                    if let Err(db) = state.db.idem_abandon(key_id, &idem).await {
                        tracing::warn!(error = %db, "idempotency key left in progress");
                    }
                    Err(engine_failure(&e))
                }
            }
        })
    };
    let id = task.await.map_err(|e| Failure::internal(&e))??;
    tracing::info!(swap_id = %id, "swap created through the API");
    created(id, false).await
}

fn parse_id(id: &str) -> Answer<SwapId> {
    SwapId::from_hex(id.trim()).map_err(|_| Failure::unknown_swap())
}

/// One swap.
#[utoipa::path(
    get, path = "/v1/swaps/{id}", tag = "swaps",
    params(("id" = String, Path, description = "The swap id (32 hex digits)")),
    responses(
        (status = 200, description = "The swap", body = SwapView),
        (status = 404, description = "No swap with this id (`unknown_swap`)", body = ApiError),
    )
)]
async fn get_swap(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Answer<Json<SwapView>> {
    let id = parse_id(&id)?;
    Ok(Json(load_view(&state, &id).await?))
}

/// `GET /v1/swaps` parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only swaps in this state (see `SwapView.state`).
    pub state: Option<String>,
    /// Page size, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Swaps, newest first, a page at a time.
#[utoipa::path(
    get, path = "/v1/swaps", tag = "swaps",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of swaps", body = SwapPage),
        (status = 400, description = "Unknown state, bad limit or cursor", body = ApiError),
    )
)]
async fn list_swaps(
    State(state): State<Arc<AppState>>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Answer<Json<SwapPage>> {
    let q = query(q)?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(Failure::bad_request("`limit` must be between 1 and 200"));
    }
    if let Some(s) = &q.state {
        if !STATES.contains(&s.as_str()) {
            return Err(Failure::bad_request(format!(
                "unknown state; one of: {}",
                STATES.join(", ")
            )));
        }
    }
    let before = match &q.cursor {
        None => None,
        Some(c) => Some(
            c.strip_prefix("n")
                .and_then(|n| n.parse::<i64>().ok())
                .filter(|n| *n > 0)
                .ok_or_else(|| Failure::bad_request("`cursor` is not one this server gave"))?,
        ),
    };
    let mut rows = state
        .db
        .list(q.state.as_deref(), before, limit + 1)
        .await
        .map_err(|e| Failure::database(&e))?;
    let more = rows.len() as i64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(0));
    let next_cursor = if more {
        rows.last().map(|r| format!("n{}", r.n))
    } else {
        None
    };
    Ok(Json(SwapPage {
        swaps: rows.iter().map(view).collect(),
        next_cursor,
    }))
}

/// Whether a swap in `state` may be cancelled: our own lock is still ahead and not being
/// sent (the state before `locking` is persisted, which happens before any lock is sent).
pub fn cancellable(state: &SwapState) -> bool {
    use initiator::State as I;
    use responder::State as R;
    matches!(
        state,
        SwapState::Initiator(I::Negotiated)
            | SwapState::Responder(R::Negotiated | R::AwaitCounterLock | R::CounterLockValid)
    )
}

fn cancelled(role: swap_core::Role) -> SwapState {
    let outcome = Outcome::Aborted {
        reason: GiveUpReason::Cancelled,
    };
    match role {
        swap_core::Role::Initiator => SwapState::Initiator(initiator::State::Done { outcome }),
        swap_core::Role::Responder => SwapState::Responder(responder::State::Done { outcome }),
    }
}

/// Cancels a swap before our lock: allowed while our own lock has not started (state
/// `negotiated`); the swap ends `cancelled`. Once the lock is being sent, 409
/// `not_cancellable` (the swap then runs to its end, refunding if need be).
#[utoipa::path(
    post, path = "/v1/swaps/{id}/cancel", tag = "swaps",
    params(("id" = String, Path, description = "The swap id (32 hex digits)")),
    responses(
        (status = 200, description = "The swap, cancelled", body = SwapView),
        (status = 404, description = "No swap with this id (`unknown_swap`)", body = ApiError),
        (status = 409, description = "Too late: our lock is under way or the swap has finished (`not_cancellable`)", body = ApiError),
    )
)]
async fn cancel_swap(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Answer<Json<SwapView>> {
    let id = parse_id(&id)?;
    let store = state.engine.driver.store();
    let too_late =
        |why: &str| Failure::new(StatusCode::CONFLICT, "not_cancellable", why.to_owned());
    let (record, entry) = match store.load_entry(&id).await {
        Ok(x) => x,
        Err(StoreError::UnknownSwap(_)) => return Err(Failure::unknown_swap()),
        Err(e) => return Err(Failure::database(&e)),
    };
    if api_state(&entry.state) == "cancelled" {
        // Cancelling again answers the same.
        return Ok(Json(load_view(&state, &id).await?));
    }
    if entry.state.is_final() {
        return Err(too_late("the swap has finished"));
    }
    if !cancellable(&entry.state) {
        return Err(too_late(
            "our lock is under way: the swap runs to its end (a refund if need be)",
        ));
    }
    // Written only after the very state read: when the driver moved on meanwhile (toward
    // locking), the store refuses this write.
    match store
        .append_state(&id, entry.seq, &cancelled(record.role))
        .await
    {
        Ok(_) => {}
        Err(StoreError::Conflict { .. }) => {
            return Err(too_late(
                "the swap moved on meanwhile: our lock is under way",
            ))
        }
        Err(StoreError::UnknownSwap(_)) => return Err(Failure::unknown_swap()),
        Err(e) => return Err(Failure::database(&e)),
    }
    tracing::info!(swap_id = %id, "swap cancelled through the API");
    Ok(Json(load_view(&state, &id).await?))
}

// ---------------------------------------------------------------- events

/// `GET /v1/events` parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only this swap's events.
    pub swap_id: Option<String>,
    /// Start after this event id (0: from the first). `Last-Event-ID` wins when both are
    /// given; with neither, the stream starts with the next change.
    #[param(minimum = 0)]
    pub after: Option<i64>,
}

/// A Server-Sent Events stream of swap state changes, read from the database's history: each
/// event (named `swap_state`) has an `id`; a client reconnecting with `Last-Event-ID` gets
/// every change after it, none missed, none twice.
#[utoipa::path(
    get, path = "/v1/events", tag = "events",
    params(
        EventsQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "The id of the last event received (resume after it)"),
    ),
    responses(
        (status = 200, description = "The stream: events named `swap_state`, data a SwapEvent", content_type = "text/event-stream", body = String),
        (status = 400, description = "Bad swap id, event id or Last-Event-ID", body = ApiError),
    )
)]
async fn events(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    q: Result<Query<EventsQuery>, QueryRejection>,
) -> Answer<Response> {
    let q = query(q)?;
    let swap = match &q.swap_id {
        None => None,
        Some(s) => Some(
            SwapId::from_hex(s.trim())
                .map_err(|_| Failure::bad_request("`swap_id` is not a swap id"))?,
        ),
    };
    let from_header = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .filter(|n| *n >= 0)
                .ok_or_else(|| Failure::bad_request("`Last-Event-ID` is not an event id"))?,
        ),
    };
    if q.after.is_some_and(|a| a < 0) {
        return Err(Failure::bad_request("`after` must be 0 or more"));
    }
    let after = match from_header.or(q.after) {
        Some(n) => n,
        None => state
            .db
            .last_event()
            .await
            .map_err(|e| Failure::database(&e))?,
    };
    let poll = state.config.events_poll;
    let db = state.db.clone();
    let stream = futures::stream::unfold(
        (after, VecDeque::<crate::db::EventRow>::new()),
        move |(mut after, mut buf)| {
            let db = db.clone();
            async move {
                loop {
                    if let Some(e) = buf.pop_front() {
                        let data = SwapEvent {
                            event_id: e.n,
                            swap_id: e.swap_id.to_string(),
                            seq: e.seq,
                            state: api_state(&e.state).into(),
                            finished: e.state.is_final(),
                            entered_at: e.entered_at,
                        };
                        let event = Event::default()
                            .id(e.n.to_string())
                            .event("swap_state")
                            .data(serde_json::to_string(&data).unwrap_or_default());
                        return Some((Ok::<_, Infallible>(event), (after, buf)));
                    }
                    match db.events_after(after, swap.as_ref(), 500).await {
                        Ok(rows) if !rows.is_empty() => {
                            after = rows.last().map(|r| r.n).unwrap_or(after);
                            buf.extend(rows);
                        }
                        Ok(_) => tokio::time::sleep(poll).await,
                        Err(e) => {
                            tracing::warn!(error = %e, "event stream: database call failed");
                            tokio::time::sleep(poll * 4).await;
                        }
                    }
                }
            }
        },
    );
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

// ---------------------------------------------------------------- operations

/// The process is up.
#[utoipa::path(
    get, path = "/health", tag = "operations",
    responses((status = 200, description = "Up", body = Health))
)]
async fn health() -> Json<Health> {
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
async fn ready(State(state): State<Arc<AppState>>) -> Answer<Json<Ready>> {
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
async fn metrics(State(state): State<Arc<AppState>>) -> Response {
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
async fn openapi_json() -> Response {
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
struct Conventions;

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
