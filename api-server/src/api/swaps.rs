//! `/v1/swaps`: create (idempotent), get, list, cancel.

use super::*;

// ---------------------------------------------------------------- swaps

pub(super) async fn load_view(state: &AppState, id: &SwapId) -> Answer<SwapView> {
    match state.db.swap(id).await {
        Ok(Some(row)) => Ok(view(&row)),
        Ok(None) => Err(Failure::unknown_swap()),
        Err(e) => Err(Failure::database(&e)),
    }
}

pub(super) fn engine_failure(e: &EngineError) -> Failure {
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
pub(super) async fn create_swap(
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

pub(super) fn parse_id(id: &str) -> Answer<SwapId> {
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
pub(super) async fn get_swap(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Answer<Json<SwapView>> {
    let id = parse_id(&id)?;
    Ok(Json(load_view(&state, &id).await?))
}

/// `GET /v1/swaps` parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
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
pub(super) async fn list_swaps(
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

pub(super) fn cancelled(role: swap_core::Role) -> SwapState {
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
pub(super) async fn cancel_swap(
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
