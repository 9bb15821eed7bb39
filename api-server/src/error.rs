//! The one error shape of the API: `{ "code": "stable_snake_case", "message": "..." }`. Codes
//! are stable (clients branch on them); messages are for people and never carry internal text
//! (database or node errors, peers' words) nor a secret.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"code": "unknown_swap", "message": "no swap with this id"}))]
pub struct ApiError {
    /// Stable machine-readable code, snake_case: `unauthorized`, `rate_limited`,
    /// `payload_too_large`, `invalid_request`, `invalid_offer`, `amount_out_of_range`,
    /// `offer_expired`, `missing_idempotency_key`, `invalid_idempotency_key`,
    /// `idempotency_key_reused`, `idempotency_key_in_progress`, `unknown_swap`,
    /// `not_cancellable`, `insufficient_funds`, `maker_unreachable`, `maker_rejected`,
    /// `maker_protocol_error`, `offer_not_takeable`, `node_unavailable`,
    /// `database_unavailable`, `not_ready`, `not_found`, `method_not_allowed`, `internal`.
    pub code: String,
    /// What happened, for people.
    pub message: String,
}

/// An error with its HTTP status (and, for 429, when to retry).
#[derive(Debug, Clone)]
pub struct Failure {
    /// The status.
    pub status: StatusCode,
    /// The body.
    pub error: ApiError,
    /// Seconds to wait (429).
    pub retry_after: Option<u64>,
}

impl Failure {
    /// An error answer.
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            error: ApiError {
                code: code.into(),
                message: message.into(),
            },
            retry_after: None,
        }
    }

    /// 400 `invalid_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// 404 `unknown_swap`.
    pub fn unknown_swap() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "unknown_swap",
            "no swap with this id",
        )
    }

    /// 503 `database_unavailable` (the cause goes to the log, not to the client).
    pub fn database(cause: &dyn std::fmt::Display) -> Self {
        tracing::warn!(error = %cause, "database call failed");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "database_unavailable",
            "the database cannot be reached right now; try again",
        )
    }

    /// 500 `internal` (the cause goes to the log).
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; it was logged",
        )
    }

    /// The typed answer for a bare status (404 and 405 of the router, 413 of the limit).
    pub fn for_status(status: StatusCode) -> Self {
        match status {
            StatusCode::NOT_FOUND => Self::new(status, "not_found", "no such route"),
            StatusCode::METHOD_NOT_ALLOWED => Self::new(
                status,
                "method_not_allowed",
                "this route does not take this method",
            ),
            StatusCode::PAYLOAD_TOO_LARGE => Self::new(
                status,
                "payload_too_large",
                "the request body is larger than the server accepts",
            ),
            StatusCode::UNAUTHORIZED => {
                Self::new(status, "unauthorized", "missing or unknown API key")
            }
            s if s.is_server_error() => Self::new(status, "internal", "internal error"),
            s => Self::new(s, "invalid_request", "the request cannot be answered"),
        }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let mut res = (self.status, axum::Json(self.error)).into_response();
        if let Some(s) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                res.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        res
    }
}
