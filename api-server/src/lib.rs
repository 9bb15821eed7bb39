//! xswap's HTTP/JSON API server, for exchanges: an engine on the PostgreSQL store
//! (`pg-store`) behind an axum API with a generated OpenAPI document (`/openapi.json`).
//!
//! - Creating a swap means: this server's engine takes a maker's offer for an amount (it is
//!   the taker, the initiator: it makes the secret and locks first); the swap is then run to
//!   its end by whichever server holds its lease (this one at first, see [`worker`]). Clients
//!   give an `Idempotency-Key`; a retry with the same key and body answers the same swap,
//!   never a second one.
//! - Everything a server keeps between requests is in the database: API keys (hashed), rate
//!   buckets, idempotency keys, the event log. Several servers on one database answer alike.
//! - Every error is a JSON [`error::ApiError`] with a stable code and no internal text.

use std::sync::Arc;
use std::time::Duration;

use swap_engine::Engine;

pub mod api;
pub mod db;
pub mod error;
pub mod metrics;
pub mod timed;
pub mod worker;

pub use api::{openapi_text, router, ApiDoc};
pub use db::ApiDb;
pub use metrics::Metrics;
pub use timed::TimedStore;

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Requests a second each API key may make on average (shared by every server).
    pub rate_per_sec: f64,
    /// Requests an API key may make at once after a quiet time.
    pub burst: f64,
    /// Largest request body accepted, in bytes.
    pub max_body: usize,
    /// How often an event stream looks for new events.
    pub events_poll: Duration,
    /// How long `/ready` waits for each node.
    pub node_timeout: Duration,
    /// The maker offer (`xso1...`; the older `xswap1...` too) quotes and creations use when
    /// they name none.
    pub default_offer: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            rate_per_sec: 20.0,
            burst: 40.0,
            max_body: 16 * 1024,
            events_poll: Duration::from_millis(500),
            node_timeout: Duration::from_secs(5),
            default_offer: None,
        }
    }
}

/// What the handlers share.
pub struct AppState {
    /// The engine (its store is the PostgreSQL store of `db`'s database).
    pub engine: Arc<Engine>,
    /// The API's tables.
    pub db: ApiDb,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Settings.
    pub config: ServerConfig,
}

/// Serves the API on `listener` until `shutdown` completes (in-flight requests finish).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
