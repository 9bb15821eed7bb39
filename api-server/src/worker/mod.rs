//! The lease loop: several workers (server processes) on one database, each unfinished swap run
//! by the one worker holding its lease.
//!
//! A worker looks for unfinished swaps no one holds (never leased, released, or whose lease
//! expired: its worker died or stalled) and leases up to [`WorkerConfig::max_swaps`] of them;
//! a swap created through this server's API is leased by it at once. It runs each leased swap on
//! a driver of its own whose state writes go through the lease's fence ([`Fence`]), renews
//! every held lease each [`WorkerConfig::heartbeat`] in one statement, and stops running a swap
//! at once when its lease is lost: the heartbeat no longer finds it, or the database fenced a
//! write. A finished swap's lease is released. Sends happen once across workers because every
//! lock is recorded in the database's outbox before its broadcast: a worker taking a swap over
//! after its lock was recorded broadcasts that recorded transaction again, never a second one.

mod fence;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pg_store::PgStore;
use swap_core::{Driver, DriverError, Outcome, StoreError, SwapId};
use swap_engine::Engine;
use tokio::sync::{mpsc, Notify};
use tokio::task::AbortHandle;
use tracing::{error, info, warn};

pub use fence::{Fence, Refused, Tokens};

use crate::metrics::Metrics;
use crate::TimedStore;

/// A worker's settings.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// This worker's name in the lease table and the logs (unique per process: a restarted
    /// worker takes a new one).
    pub name: String,
    /// A lease's time to live: a worker that dies or stalls loses its swaps to another after
    /// at most this long.
    pub ttl: Duration,
    /// How often held leases are renewed (well within `ttl`).
    pub heartbeat: Duration,
    /// Most swaps this worker runs at once (0: it runs none, it only serves the API).
    pub max_swaps: usize,
    /// How often it looks for swaps no one holds.
    pub scan: Duration,
}

/// A worker setting that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerConfigError {
    /// A lease must live long enough for a few heartbeats.
    #[error(
        "the heartbeat ({heartbeat:?}) must be at most a third of the lease time to live ({ttl:?})"
    )]
    Heartbeat {
        /// The time to live.
        ttl: Duration,
        /// The heartbeat.
        heartbeat: Duration,
    },
    /// Zero intervals.
    #[error("the lease time to live, heartbeat and scan interval must be positive")]
    Zero,
    /// The name is what tells workers apart in the lease table.
    #[error("a worker's name must not be empty")]
    Name,
}

impl WorkerConfig {
    /// Settings for a lease time to live `ttl`: heartbeat every third of it, look for swaps
    /// every second (or every `ttl / 3` when shorter), up to `max_swaps` at once, named after
    /// the host and process.
    pub fn new(ttl: Duration, max_swaps: usize) -> Self {
        Self {
            name: default_name(),
            ttl,
            heartbeat: ttl / 3,
            max_swaps,
            scan: (ttl / 3).min(Duration::from_secs(1)),
        }
    }

    /// Checks the settings.
    pub fn check(&self) -> Result<(), WorkerConfigError> {
        if self.ttl.is_zero() || self.heartbeat.is_zero() || self.scan.is_zero() {
            return Err(WorkerConfigError::Zero);
        }
        if self.name.trim().is_empty() {
            return Err(WorkerConfigError::Name);
        }
        if self.heartbeat * 3 > self.ttl {
            return Err(WorkerConfigError::Heartbeat {
                ttl: self.ttl,
                heartbeat: self.heartbeat,
            });
        }
        Ok(())
    }
}

/// `host-pid-random`: unique per process, readable in the lease table.
fn default_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "xswap".into());
    let mut r = [0u8; 3];
    // Without randomness the pid alone still tells processes of one host apart.
    let _ = getrandom::getrandom(&mut r);
    format!("{host}-{}-{}", std::process::id(), hex::encode(r))
}

/// One worker: its leases and the driver that runs the leased swaps.
pub struct Worker {
    pg: Arc<PgStore>,
    driver: Arc<Driver>,
    tokens: Arc<Tokens>,
    config: WorkerConfig,
    metrics: Arc<Metrics>,
    /// The task running each held swap, with its lease's token.
    running: Mutex<HashMap<SwapId, (u64, AbortHandle)>>,
    /// Swaps that stopped here with an error that retrying does not fix: not leased again by
    /// this worker (another may try).
    skip: Mutex<HashSet<SwapId>>,
    wake: Notify,
}

/// The worker's background tasks; dropping this stops them (the leases then expire).
pub struct Running {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    worker: Arc<Worker>,
}

impl Running {
    /// The worker.
    pub fn worker(&self) -> &Arc<Worker> {
        &self.worker
    }

    /// Stops running swaps and gives back every lease at once (a graceful stop: another
    /// worker takes the swaps over without waiting for the leases to expire).
    pub async fn stop(self) {
        for t in &self.tasks {
            t.abort();
        }
        self.worker.release_all().await;
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Worker {
    /// Starts a worker on `pg` running swaps with `engine`'s rails and driver settings (its
    /// store calls timed into `metrics`), and makes `engine` hand every swap it stores to this
    /// worker instead of running it itself.
    pub fn start(
        engine: &Arc<Engine>,
        pg: Arc<PgStore>,
        config: WorkerConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Running, WorkerConfigError> {
        config.check()?;
        let tokens = Arc::new(Tokens::default());
        let (refused_tx, refused) = mpsc::unbounded_channel();
        let fence = Fence::new(pg.clone(), tokens.clone(), refused_tx, metrics.clone());
        let store = TimedStore::new(pg.clone(), metrics.clone()).fenced(Arc::new(fence));
        let driver = Arc::new(Driver::new(
            Arc::new(store),
            engine.driver.rails().cloned(),
            engine.driver.config(),
        ));
        let worker = Arc::new(Worker {
            pg,
            driver,
            tokens,
            config,
            metrics,
            running: Mutex::new(HashMap::new()),
            skip: Mutex::new(HashSet::new()),
            wake: Notify::new(),
        });
        let adopter = Arc::downgrade(&worker);
        let handed = engine.run_with(Arc::new(move |id| {
            if let Some(w) = adopter.upgrade() {
                w.adopt(id);
            }
        }));
        if !handed {
            warn!("the engine hands the swaps it stores to another runner already: this worker runs only the swaps it finds unleased");
        }
        info!(
            worker = %worker.config.name,
            ttl_ms = worker.config.ttl.as_millis() as u64,
            max_swaps = worker.config.max_swaps,
            "worker started"
        );
        let tasks = vec![
            tokio::spawn(worker.clone().scan_loop()),
            tokio::spawn(worker.clone().heartbeat_loop()),
            tokio::spawn(worker.clone().refused_loop(refused)),
        ];
        Ok(Running { tasks, worker })
    }

    /// This worker's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The swaps this worker holds now.
    pub fn held(&self) -> Vec<SwapId> {
        self.tokens.all().into_iter().map(|(id, _)| id).collect()
    }

    fn room(&self) -> usize {
        self.config
            .max_swaps
            .saturating_sub(lock(&self.running).len())
    }

    /// A swap this process just stored: lease it now when there is room (otherwise, or when
    /// that fails, it waits for a scan of any worker).
    fn adopt(self: &Arc<Self>, id: SwapId) {
        if self.room() == 0 {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            if !me.try_lease(id).await {
                me.wake.notify_one();
            }
        });
    }

    /// Leases `id` and runs it; answers whether it was leased.
    async fn try_lease(self: &Arc<Self>, id: SwapId) -> bool {
        match self.pg.lease(&id, &self.config.name, self.config.ttl).await {
            Ok(Some(token)) => {
                self.drive(id, token);
                true
            }
            Ok(None) => false,
            Err(e) => {
                warn!(swap_id = %id, error = %e, "could not lease a swap");
                false
            }
        }
    }

    /// Runs a swap leased under `token`.
    fn drive(self: &Arc<Self>, id: SwapId, token: u64) {
        let mut running = lock(&self.running);
        if let Some((old, task)) = running.remove(&id) {
            // Leased again (a renewal keeps the token): one task per swap.
            if old == token {
                running.insert(id, (old, task));
                return;
            }
            task.abort();
        }
        self.tokens.insert(id, token);
        self.metrics.lease_event("taken");
        info!(swap_id = %id, token, worker = %self.config.name, "lease taken");
        let me = self.clone();
        let task = tokio::spawn(async move {
            let result = me.driver.run_swap(id).await;
            me.ended(id, token, result).await;
        });
        running.insert(id, (token, task.abort_handle()));
        self.metrics.set_leases_held(running.len());
    }

    /// Forgets a swap's task (when it is still the one of `token`).
    fn forget(&self, id: &SwapId, token: u64) -> Option<AbortHandle> {
        let mut running = lock(&self.running);
        let task = match running.get(id) {
            Some((t, _)) if *t == token => running.remove(id).map(|(_, task)| task),
            _ => None,
        };
        self.metrics.set_leases_held(running.len());
        task
    }

    /// The swap's lease is lost: stop running it at once (no write of ours goes through any
    /// more: its token is forgotten before the task is stopped).
    fn lose(&self, id: &SwapId, token: u64, why: &'static str) {
        if self.tokens.remove(id, token) {
            self.metrics.lease_event(why);
            warn!(swap_id = %id, token, worker = %self.config.name, why, "lease lost: no longer running the swap");
        }
        if let Some(task) = self.forget(id, token) {
            task.abort();
        }
    }

    /// A swap's run ended.
    async fn ended(&self, id: SwapId, token: u64, result: Result<Outcome, DriverError>) {
        match result {
            Err(DriverError::Store(StoreError::Fenced { .. })) => {
                self.lose(&id, token, "lost_fenced");
                return;
            }
            Ok(outcome) => {
                info!(swap_id = %id, outcome = outcome.name(), worker = %self.config.name, "swap finished; lease released");
            }
            Err(e) => {
                error!(swap_id = %id, error = %e, "swap stopped; lease released (this worker will not lease it again)");
                lock(&self.skip).insert(id);
            }
        }
        // Only while the lease is still ours.
        if self.tokens.remove(&id, token) {
            self.forget(&id, token);
            match self.pg.release(&id, token).await {
                Ok(_) => self.metrics.lease_event("released"),
                Err(e) => {
                    warn!(swap_id = %id, error = %e, "could not release a lease (it expires)")
                }
            }
        }
    }

    /// Looks for swaps no one holds, each [`WorkerConfig::scan`] or when woken.
    async fn scan_loop(self: Arc<Self>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.config.scan) => {}
                _ = self.wake.notified() => {}
            }
            let room = self.room();
            if room == 0 {
                continue;
            }
            let skip = lock(&self.skip).len();
            let want = u32::try_from(room + skip).unwrap_or(u32::MAX);
            let free = match self.pg.unleased(want).await {
                Ok(f) => f,
                Err(e) => {
                    warn!(error = %e, "could not look for swaps to lease");
                    continue;
                }
            };
            let free: Vec<SwapId> = {
                let skip = lock(&self.skip);
                free.into_iter()
                    .filter(|id| !skip.contains(id))
                    .take(room)
                    .collect()
            };
            match self
                .pg
                .lease_many(&free, &self.config.name, self.config.ttl)
                .await
            {
                Ok(leased) => {
                    for (id, token) in leased {
                        self.drive(id, token);
                    }
                }
                Err(e) => warn!(error = %e, "could not lease swaps"),
            }
        }
    }

    /// Renews every held lease each [`WorkerConfig::heartbeat`]; a lease the database no
    /// longer has under our token is lost. When the database cannot be reached for as long as
    /// a lease lives, every swap is dropped: the leases may be another worker's by now.
    async fn heartbeat_loop(self: Arc<Self>) {
        let mut last_ok = Instant::now();
        loop {
            tokio::time::sleep(self.config.heartbeat).await;
            let held = self.tokens.all();
            let asked = Instant::now();
            match self.pg.heartbeat_many(&held, self.config.ttl).await {
                Ok(kept) => {
                    last_ok = asked;
                    let kept: HashSet<SwapId> = kept.into_iter().collect();
                    for (id, token) in held.iter().filter(|(id, _)| !kept.contains(id)) {
                        self.lose(id, *token, "lost_heartbeat");
                    }
                }
                Err(e) => {
                    warn!(error = %e, "heartbeat failed");
                    if last_ok.elapsed() >= self.config.ttl {
                        for (id, token) in self.tokens.all() {
                            self.lose(&id, token, "lost_expired");
                        }
                    }
                }
            }
        }
    }

    /// Stops running the swaps whose writes the database fenced.
    async fn refused_loop(self: Arc<Self>, mut refused: mpsc::UnboundedReceiver<Refused>) {
        while let Some((id, token)) = refused.recv().await {
            self.lose(&id, token, "lost_fenced");
        }
    }

    /// Gives back every held lease (its swaps stop running here).
    pub async fn release_all(&self) {
        for (id, token) in self.tokens.all() {
            self.tokens.remove(&id, token);
            if let Some(task) = self.forget(&id, token) {
                task.abort();
            }
            if let Err(e) = self.pg.release(&id, token).await {
                warn!(swap_id = %id, error = %e, "could not release a lease (it expires)");
            }
        }
        info!(worker = %self.config.name, "leases released");
    }
}
