//! The node's tokio tasks: LDK's background processor, the Lightning port, the block
//! follower, the optional HTLC-processing and timer ticks; and the sockets of its peer
//! connections.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use bitcoin::secp256k1::PublicKey;
use lightning_background_processor::{
    process_events_async, GossipSync, NO_LIQUIDITY_MANAGER, NO_ONION_MESSENGER,
};
use tokio::task::JoinHandle;

use super::ticker::{commit_fee, remembered, Channels, OpenRequests, Ticker, BP_TIMER_TICK};
use super::{now, LnNode};
use crate::events::EventHandler;
use crate::io::{TracingLogger, WalletKeys};
use crate::types::{PeerManager, Scorer};

impl LnNode {
    /// LDK's background processor (events handled by `handler`, the channel manager and
    /// sweeper persisted, peers' messages processed, LDK's timers) until the node stops. Its
    /// end on an error stops the node (see [`LnNode::fatal`]).
    pub(super) fn spawn_background(&self, handler: Arc<EventHandler>, logger: Arc<TracingLogger>) {
        let sleeper = bp_sleeper(self.stop.subscribe());
        let store = Arc::clone(&self.store);
        let chain_monitor = Arc::clone(&self.chain_monitor);
        let channel_manager = Arc::clone(&self.channel_manager);
        let peer_manager = Arc::clone(&self.peer_manager);
        let sweeper = Arc::clone(&self.sweeper);
        let fatal = Arc::clone(&self.fatal);
        let stopping = self.stop.clone();
        let peers_down = Arc::clone(&self.peer_manager);
        let busy = Arc::clone(&self.background_busy);
        let task = tokio::spawn(async move {
            let result = Timed::new(
                process_events_async(
                    store,
                    move |event| {
                        let handler = Arc::clone(&handler);
                        async move { handler.handle(event).await }
                    },
                    chain_monitor,
                    channel_manager,
                    NO_ONION_MESSENGER,
                    GossipSync::none(),
                    peer_manager,
                    NO_LIQUIDITY_MANAGER,
                    Some(sweeper),
                    logger,
                    None::<Arc<RwLock<Scorer>>>,
                    sleeper,
                    false,
                    || Some(now()),
                ),
                busy,
            )
            .await;
            if let Err(e) = result {
                // The channel manager can no longer be persisted: updating channels on
                // would leave it behind its monitors (LDK force-closes those at the next
                // start). Stop everything and refuse every operation.
                tracing::error!(error = %e, "lightning background processing stopped: the node stops");
                *fatal.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some(format!("background processing stopped: {e}"));
                peers_down.disconnect_all_peers();
                let _ = stopping.send(true);
            }
        });
        *self
            .background
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(task);
    }

    pub(super) fn spawn_listener(&self, listener: tokio::net::TcpListener) {
        let peer_manager = Arc::clone(&self.peer_manager);
        let task = tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => match no_delay(stream) {
                        Ok(stream) => {
                            tokio::spawn(lightning_net_tokio::setup_inbound(
                                Arc::clone(&peer_manager),
                                stream,
                            ));
                        }
                        Err(e) => tracing::warn!(error = %e, "lightning connection"),
                    },
                    Err(e) => {
                        tracing::warn!(error = %e, "lightning port accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
        self.task(task);
    }

    /// Commits held monitor writes with a freshly encoded channel manager when updates wait
    /// and no manager write came since the last look, 100 ms earlier (LDK normally asks for
    /// one right after each update: see `gate.rs`); otherwise commits the manager LDK handed
    /// over last if it was kept in memory.
    pub(super) fn spawn_gate_watch(&self) {
        let store = Arc::clone(&self.store);
        let last = std::sync::Mutex::new(None::<u64>);
        self.spawn_every(crate::gate::DEFERRED_FOR, move || {
            let Some((waiting, writes, deferred)) = store.gate().pending(&store) else {
                return;
            };
            let mut last = last.lock().unwrap_or_else(PoisonError::into_inner);
            if waiting && *last == Some(writes) {
                // Encoding the manager waits for LDK's lock: off the tokio workers.
                let store = Arc::clone(&store);
                tokio::task::spawn_blocking(move || {
                    if let Err(e) = store.gate().flush(&store) {
                        tracing::warn!(error = %e, "channel manager with held monitor writes");
                    }
                });
            } else if deferred {
                let store = Arc::clone(&store);
                tokio::task::spawn_blocking(move || {
                    if let Err(e) = store.gate().commit_deferred(&store) {
                        tracing::warn!(error = %e, "channel manager kept in memory");
                    }
                });
            }
            *last = waiting.then_some(writes);
        });
    }

    /// LDK's timer tick, instead of the background processor's (see `ticker.rs`): every
    /// [`crate::LnConfig::timer_tick_interval`], and as often as every
    /// [`crate::LnConfig::forget_tick_gap`] while LDK remembers more than
    /// [`crate::LnConfig::forget_payments_above`] completed payments.
    pub(super) fn spawn_ticker(&self, open_requests: Arc<OpenRequests>) {
        let cm = Arc::clone(&self.channel_manager);
        let every = self.config.timer_tick_interval.unwrap_or(BP_TIMER_TICK);
        let mut ticker = Ticker::new(
            every,
            self.config.forget_payments_above,
            self.config.forget_tick_gap,
            Instant::now(),
        );
        let ticks = Arc::clone(&self.ticks);
        let peers = Arc::clone(&self.peer_manager);
        let fees = Arc::clone(&self.fees);
        let mut stop = self.stop.subscribe();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(ticker.next_look(Instant::now())) => {}
                    _ = stop.changed() => return,
                }
                let tick = ticker.due(
                    Instant::now(),
                    || remembered(&cm.list_recent_payments()),
                    |fee_sent| {
                        Channels::of(
                            &cm.list_channels(),
                            |id| peers.peer_by_node_id(id).is_some(),
                            |kind| commit_fee(&*fees, kind),
                            fee_sent,
                            open_requests.lately(),
                        )
                    },
                );
                if let Some(tick) = tick {
                    tracing::trace!(?tick, "LDK timer tick");
                    cm.timer_tick_occurred();
                    ticks.taken(tick);
                }
            }
        });
        self.task(task);
    }

    /// Runs `f` every `every` until the node stops.
    fn spawn_every(&self, every: Duration, f: impl Fn() + Send + 'static) {
        let mut stop = self.stop.subscribe();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stop.changed() => return,
                }
                f();
            }
        });
        self.task(task);
    }

    /// Processes received HTLCs as soon as they are there, checked every `every`, instead of
    /// after LDK's random batch delay ([`LnConfig::htlc_processing_interval`]). LDK guards
    /// the processing against running twice at once, so the background processor's own
    /// calls are harmless.
    pub(super) fn spawn_htlc_processing(&self, every: Duration) {
        let cm = Arc::clone(&self.channel_manager);
        self.spawn_every(every, move || {
            if cm.needs_pending_htlc_processing() {
                cm.process_pending_htlc_forwards();
            }
        });
    }

    /// The follower task: new blocks to LDK, fee estimates and wallet scripts refreshed,
    /// lost peers reconnected.
    pub(super) fn spawn_follower(&self, wallet_keys: Arc<WalletKeys>) {
        let mut stop = self.stop.subscribe();
        let fees = Arc::clone(&self.fees);
        let follower = Arc::clone(&self.follower);
        let broadcaster = Arc::clone(&self.broadcaster);
        let rpc = Arc::clone(&self.rpc);
        let peers = Arc::clone(&self.peers);
        let peer_manager = Arc::clone(&self.peer_manager);
        let binding = Arc::clone(&self.binding);
        let interval = self.config.poll_interval;
        let reserve = self.config.anchors.then(|| {
            crate::anchors::ReserveWatch::new(
                Arc::clone(&self.channel_manager),
                Arc::clone(&self.chain_monitor),
                self.config.anchor_reserve_sats,
            )
        });
        let task = tokio::spawn(async move {
            let mut last_height = None;
            let mut reconnect = crate::reconnect::Reconnect::new(interval);
            let mut reserve = reserve;
            loop {
                match follower.sync().await {
                    Ok(height) => {
                        if last_height != Some(height) {
                            last_height = Some(height);
                            if let Err(e) = fees.refresh(&rpc).await {
                                tracing::warn!(error = %e, "fee estimates not refreshed");
                            }
                            if let Some(watch) = reserve.as_mut() {
                                watch.check(&rpc).await;
                            }
                        }
                    }
                    Err(e) if e.is_transient() => {
                        tracing::warn!(error = %e, "lightning block follower")
                    }
                    // A deep reorg or data that does not fit: LDK is not fed until it is
                    // looked into (see `MAX_REORG_DEPTH`).
                    Err(e) => tracing::error!(error = %e, "lightning block follower halted"),
                }
                broadcaster.retry().await;
                if let Err(e) = wallet_keys.refill(&rpc).await {
                    tracing::warn!(error = %e, "wallet scripts not refilled");
                }
                let wanted: Vec<(PublicKey, SocketAddr)> = peers
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .iter()
                    .map(|(k, a)| (*k, *a))
                    .collect();
                reconnect.pass(wanted, &peer_manager, &binding).await;
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = stop.changed() => return,
                }
            }
        });
        self.task(task);
    }

    fn task(&self, task: JoinHandle<()>) {
        self.tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(task);
    }
}

/// A Lightning connection's socket for `lightning_net_tokio`, with Nagle's algorithm off.
///
/// LDK writes each message as it is produced (an `update_add_htlc`, then its
/// `commitment_signed`): with Nagle on, the second write waits for the peer's delayed ACK
/// (40 ms on Linux) at each of a payment's round trips, which was most of a payment's latency
/// between two nodes on one machine.
fn no_delay(stream: tokio::net::TcpStream) -> std::io::Result<std::net::TcpStream> {
    stream.set_nodelay(true)?;
    stream.into_std()
}

/// Connects to a peer (10 s at most) and returns the connection's future, to be spawned;
/// `None` when the peer cannot be reached. `lightning_net_tokio::connect_outbound` with the
/// socket set up by [`no_delay`].
pub(crate) async fn connect_outbound(
    peer_manager: Arc<PeerManager>,
    node_id: PublicKey,
    addr: SocketAddr,
) -> Option<impl std::future::Future<Output = ()>> {
    let connect = tokio::net::TcpStream::connect(addr);
    match tokio::time::timeout(Duration::from_secs(10), connect).await {
        Ok(Ok(stream)) => match no_delay(stream) {
            Ok(stream) => Some(lightning_net_tokio::setup_outbound(
                peer_manager,
                node_id,
                stream,
            )),
            Err(e) => {
                tracing::warn!(error = %e, "lightning connection");
                None
            }
        },
        _ => None,
    }
}

/// A future whose time being polled is added up (nanoseconds in `busy`).
struct Timed<F> {
    inner: Pin<Box<F>>,
    busy: Arc<std::sync::atomic::AtomicU64>,
}

impl<F> Timed<F> {
    fn new(inner: F, busy: Arc<std::sync::atomic::AtomicU64>) -> Self {
        Self {
            inner: Box::pin(inner),
            busy,
        }
    }
}

impl<F: Future> Future for Timed<F> {
    type Output = F::Output;
    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        let start = std::time::Instant::now();
        let out = self.inner.as_mut().poll(cx);
        let took = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.busy
            .fetch_add(took, std::sync::atomic::Ordering::Relaxed);
        out
    }
}

/// The background processor's sleeps: each ends after its time, or at once with `true` when
/// the node stops; its timer-tick sleep ([`BP_TIMER_TICK`]) ends only at the stop, since the
/// node ticks LDK's timer itself ([`LnNode::spawn_ticker`]).
pub(super) fn bp_sleeper(
    stop: tokio::sync::watch::Receiver<bool>,
) -> impl Fn(Duration) -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync + 'static {
    move |d: Duration| {
        let mut rx = stop.clone();
        Box::pin(async move {
            if d == BP_TIMER_TICK {
                let _ = rx.changed().await;
                return true;
            }
            tokio::select! {
                _ = tokio::time::sleep(d) => false,
                _ = rx.changed() => true,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_timed_future_adds_up_its_polls_not_its_waits() {
        let busy = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let work = async {
            // Busy 20 ms in one poll, then 200 ms asleep (not polled), then done.
            let t = std::time::Instant::now();
            while t.elapsed() < Duration::from_millis(20) {
                std::hint::spin_loop();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            7
        };
        assert_eq!(Timed::new(work, Arc::clone(&busy)).await, 7);
        let ns = busy.load(std::sync::atomic::Ordering::Relaxed);
        assert!(ns >= 20_000_000, "{ns} ns counted");
        assert!(ns < 150_000_000, "{ns} ns counted: the sleep was counted");
    }

    #[tokio::test(start_paused = true)]
    async fn the_background_processors_tick_sleep_ends_only_at_the_stop() {
        let (stop, rx) = tokio::sync::watch::channel(false);
        let sleep = bp_sleeper(rx);
        // Every other sleep ends after its time, not as a stop.
        assert!(!sleep(Duration::from_secs(10)).await);
        assert!(!sleep(Duration::from_millis(100)).await);
        let mut tick = sleep(BP_TIMER_TICK);
        let waited = tokio::time::timeout(Duration::from_secs(24 * 3600), &mut tick).await;
        assert!(
            waited.is_err(),
            "the background processor's tick sleep ended"
        );
        stop.send(true).unwrap();
        assert!(tick.await, "the stop ends it, as a stop");
    }
}
