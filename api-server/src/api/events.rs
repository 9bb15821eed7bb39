//! `GET /v1/events`: the event stream of state changes (SSE).

use super::*;

// ---------------------------------------------------------------- events

/// `GET /v1/events` parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct EventsQuery {
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
pub(super) async fn events(
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
