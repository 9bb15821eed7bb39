//! `xswap-server`: the HTTP API server (`serve`), and its API keys (`key create|revoke`).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, Context};
use clap::{Parser, Subcommand};
use pg_store::PgStore;
use swap_core::store::StoreKey;
use swap_core::{DriverConfig, Rail};
use swap_engine::Engine;
use swap_net::Identity;
use xswap_api::worker::{Worker, WorkerConfig};
use xswap_api::{ApiDb, AppState, Metrics, ServerConfig, TimedStore};
use xswap_cli::config::{self, Config};
use xswap_cli::keystore::Keystore;

/// xswap's HTTP/JSON API server, on a PostgreSQL database several servers can share.
#[derive(Parser)]
#[command(name = "xswap-server", version, about)]
struct Cli {
    /// The PostgreSQL database (libpq string `host=... dbname=...` or `postgresql://` URL).
    #[arg(
        long,
        global = true,
        env = "XSWAP_DATABASE_URL",
        hide_env_values = true
    )]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API.
    Serve {
        /// The installation (keystore and config.toml: nodes, Ethereum account), as made by
        /// `xswap init`; the keystore's password from `XSWAP_PASSWORD`.
        #[arg(long, env = "XSWAP_DATA_DIR")]
        data_dir: PathBuf,
        /// Where to listen.
        #[arg(long, env = "XSWAP_LISTEN", default_value = "127.0.0.1:8080")]
        listen: String,
        /// Requests per second per API key (shared by every server on the database).
        #[arg(long, default_value_t = 20.0)]
        rate: f64,
        /// Requests an API key may make at once.
        #[arg(long, default_value_t = 40.0)]
        burst: f64,
        /// Largest request body, in bytes.
        #[arg(long, default_value_t = 16 * 1024)]
        max_body: usize,
        /// The lease loop: which swaps this server runs.
        #[command(flatten)]
        worker: WorkerArgs,
        /// A maker's offer (`xso1...`; the older `xswap1...` too) that quotes and creations use
        /// when they name none (checked at start).
        #[arg(long, env = "XSWAP_DEFAULT_OFFER")]
        offer: Option<String>,
        /// Database connections per server.
        #[arg(long, default_value_t = 16)]
        pool_size: usize,
    },
    /// Manage API keys.
    Key {
        #[command(subcommand)]
        action: KeyAction,
    },
    /// Print the OpenAPI document (also served at /openapi.json).
    Openapi,
}

/// Every server is also a worker: it runs the unfinished swaps it holds a lease on (any
/// server's, taken over when their worker dies or stalls), at most `--max-swaps` at once.
#[derive(clap::Args)]
struct WorkerArgs {
    /// Seconds a lease lives without a heartbeat: a worker that dies or stalls loses its
    /// swaps to another within this time.
    #[arg(long, env = "XSWAP_LEASE_TTL", default_value_t = 30.0)]
    lease_ttl: f64,
    /// Seconds between two heartbeats of the held leases (default: a third of the TTL).
    #[arg(long, env = "XSWAP_HEARTBEAT")]
    heartbeat: Option<f64>,
    /// Most swaps this server runs at once; 0 serves the API only (swaps created here are run
    /// by the other workers).
    #[arg(long, env = "XSWAP_MAX_SWAPS", default_value_t = 1000)]
    max_swaps: usize,
    /// This worker's name in the lease table and logs (default: host, pid and a random
    /// suffix; must differ between running workers).
    #[arg(long, env = "XSWAP_WORKER_NAME")]
    worker_name: Option<String>,
    /// Milliseconds between two steps of a swap (a shorter poll acts sooner on new blocks,
    /// at the cost of more node calls).
    #[arg(long, env = "XSWAP_POLL_MS", default_value_t = 15_000)]
    poll_ms: u64,
}

fn seconds(name: &str, s: f64) -> anyhow::Result<std::time::Duration> {
    std::time::Duration::try_from_secs_f64(s)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| anyhow!("{name} must be a positive number of seconds, not {s}"))
}

impl WorkerArgs {
    fn driver(&self) -> anyhow::Result<DriverConfig> {
        if self.poll_ms == 0 {
            anyhow::bail!("--poll-ms must be positive");
        }
        let poll = std::time::Duration::from_millis(self.poll_ms);
        Ok(DriverConfig {
            poll_interval: poll,
            max_backoff: (poll * 20).min(DriverConfig::default().max_backoff),
        })
    }

    fn config(&self) -> anyhow::Result<WorkerConfig> {
        let mut c = WorkerConfig::new(seconds("--lease-ttl", self.lease_ttl)?, self.max_swaps);
        if let Some(h) = self.heartbeat {
            c.heartbeat = seconds("--heartbeat", h)?;
        }
        if let Some(n) = &self.worker_name {
            c.name.clone_from(n);
        }
        c.check().map_err(|e| anyhow!("{e}"))?;
        Ok(c)
    }
}

#[derive(Subcommand)]
enum KeyAction {
    /// Create a key and print it, once: only its hash is stored.
    Create {
        /// A name for the key (who uses it).
        #[arg(long)]
        name: String,
    },
    /// Revoke a key by its id (printed by `create`).
    Revoke {
        /// The key's id.
        id: i64,
    },
}

fn database_url(cli: &Cli) -> anyhow::Result<&str> {
    cli.database_url
        .as_deref()
        .ok_or_else(|| anyhow!("give --database-url or set XSWAP_DATABASE_URL"))
}

/// The swap store, migrated, its secrets sealed with `key` (see `swap_core::store::seal`),
/// then the API's tables.
async fn open(
    url: &str,
    pool_size: usize,
    metrics: Arc<Metrics>,
    key: StoreKey,
) -> anyhow::Result<(Arc<PgStore>, ApiDb)> {
    let store = PgStore::connect_with(
        url,
        pg_store::PgOptions {
            pool_size,
            key: Some(key.clone()),
            ..Default::default()
        },
    )
    .await
    .map_err(|e| anyhow!("swap store: {e}"))?;
    let db = ApiDb::connect(url, pool_size, metrics)
        .await
        .map_err(|e| anyhow!("API tables: {e}"))?
        .with_key(Some(key));
    Ok((Arc::new(store), db))
}

/// The API's tables alone (the swap store's schema migrated first, no swap read): what the
/// `key` commands need, without the installation's keystore.
async fn open_api_tables(url: &str) -> anyhow::Result<ApiDb> {
    PgStore::open_with(url, pg_store::PgOptions::default())
        .map_err(|e| anyhow!("swap store: {e}"))?
        .apply_migrations()
        .await
        .map_err(|e| anyhow!("swap store: {e}"))?;
    ApiDb::connect(url, 2, Arc::default())
        .await
        .map_err(|e| anyhow!("API tables: {e}"))
}

/// The engine of the installation in `data_dir` on the PostgreSQL store (which is also the
/// outbox: a funding is recorded in the database before it is broadcast).
fn engine(
    data_dir: &std::path::Path,
    ks: &Keystore,
    store: Arc<PgStore>,
    metrics: Arc<Metrics>,
    driver: DriverConfig,
) -> anyhow::Result<Arc<Engine>> {
    let cfg = Config::load(data_dir)?;
    let (btc, eth) = config::adapters(&cfg, ks, store.clone())?;
    let identity = Identity::from_private(&ks.purpose_key("noise")?[..])?;
    Ok(Engine::new(
        "xswap-server",
        Arc::new(TimedStore::new(store, metrics)),
        [btc as Arc<dyn Rail>, eth as Arc<dyn Rail>],
        identity,
        driver,
    ))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

/// mimalloc: glibc's malloc serializes frees of memory another thread allocated, the common
/// case under tokio's work stealing (README, figures).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match &cli.command {
        Command::Openapi => {
            println!("{}", xswap_api::openapi_text());
            Ok(())
        }
        Command::Key { action } => rt.block_on(async {
            let db = open_api_tables(database_url(&cli)?).await?;
            match action {
                KeyAction::Create { name } => {
                    let (id, key) = db.create_key(name).await.map_err(|e| anyhow!("{e}"))?;
                    eprintln!("key {id} ({name}) created; it is shown once, store it now:");
                    println!("{key}");
                }
                KeyAction::Revoke { id } => {
                    if db.revoke_key(*id).await.map_err(|e| anyhow!("{e}"))? {
                        eprintln!("key {id} revoked");
                    } else {
                        anyhow::bail!("no active key {id}");
                    }
                }
            }
            Ok(())
        }),
        Command::Serve {
            data_dir,
            listen,
            rate,
            burst,
            max_body,
            worker,
            offer,
            pool_size,
        } => rt.block_on(async {
            if let Some(o) = offer {
                swap_net::Offer::decode(o).map_err(|e| anyhow!("--offer: {e}"))?;
            }
            let metrics = Arc::new(Metrics::default());
            // Settings first (refused before anything is opened), then the keystore: the
            // store's secrets are sealed with its key.
            let worker_config = worker.config()?;
            worker_config.check().map_err(|e| anyhow!("{e}"))?;
            let driver = worker.driver()?;
            let ks = config::open_keystore(data_dir)?;
            let key = ks.store_key()?;
            let (store, db) = open(database_url(&cli)?, *pool_size, metrics.clone(), key).await?;
            let engine = engine(data_dir, &ks, store.clone(), metrics.clone(), driver)?;
            let running = Worker::start(&engine, store, worker_config, metrics.clone())
                .map_err(|e| anyhow!("{e}"))?;
            let state = Arc::new(AppState {
                engine,
                db,
                metrics,
                config: ServerConfig {
                    rate_per_sec: *rate,
                    burst: *burst,
                    max_body: *max_body,
                    default_offer: offer.clone(),
                    ..Default::default()
                },
            });
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("listening on {listen}"))?;
            tracing::info!(addr = %listener.local_addr()?, "xswap-server listening");
            xswap_api::serve(listener, state, shutdown_signal()).await?;
            // A graceful stop gives the leases back: other workers go on at once.
            running.stop().await;
            Ok(())
        }),
    }
}
