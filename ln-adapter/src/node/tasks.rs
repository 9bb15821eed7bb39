//! The node's tokio tasks: its background loop (LDK's background processing), the Lightning port, the block
//! follower, the optional HTLC-processing and timer ticks; and the sockets of its peer
//! connections.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use bitcoin::secp256k1::PublicKey;
use lightning::ln::types::ChannelId;
use tokio::task::JoinHandle;

use super::answers::Heard;
use super::ticker::{commit_fee, remembered, Channels, OpenRequests, Ticker, BP_TIMER_TICK};
use super::LnNode;
use crate::events::EventHandler;
use crate::io::WalletKeys;
use crate::types::PeerManager;

impl LnNode {
    /// The node's background loop, in place of LDK's background processor (events handled
    /// by `handler`, the channel manager and sweeper persisted, peers' messages processed,
    /// LDK's timers), until the node stops. Its end on an error stops the node (see
    /// [`LnNode::fatal`]). See [`background_loop`] for why it is the node's own.
    pub(super) fn spawn_background(&self, handler: Arc<EventHandler>) {
        let parts = Background {
            store: Arc::clone(&self.store),
            chain_monitor: Arc::clone(&self.chain_monitor),
            channel_manager: Arc::clone(&self.channel_manager),
            peer_manager: Arc::clone(&self.peer_manager),
            sweeper: Arc::clone(&self.sweeper),
            forwards_every: self.config.htlc_processing_interval,
        };
        let stop = self.stop.subscribe();
        let fatal = Arc::clone(&self.fatal);
        let stopping = self.stop.clone();
        let peers_down = Arc::clone(&self.peer_manager);
        let busy = Arc::clone(&self.background_busy);
        let task = tokio::spawn(async move {
            let result = Timed::new(background_loop(parts, handler, stop), busy).await;
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
        let answers = Arc::clone(&self.answers);
        let fees = Arc::clone(&self.fees);
        let looks_around = self.config.forget_payments_above.is_some();
        let mut stop = self.stop.subscribe();
        let task = tokio::spawn(async move {
            let look = |fee_sent: Option<&[ChannelId]>| {
                let channels = cm.list_channels();
                let ids: Vec<(PublicKey, ChannelId)> = channels
                    .iter()
                    .map(|c| (c.counterparty.node_id, c.channel_id))
                    .collect();
                let heard = answers.track(&ids, Instant::now());
                Channels::of(
                    &channels,
                    |id| peers.peer_by_node_id(id).is_some(),
                    |kind| commit_fee(&*fees, kind),
                    fee_sent,
                    |c| {
                        let at = ids
                            .iter()
                            .position(|k| *k == (c.counterparty.node_id, c.channel_id));
                        // Every listed channel is tracked, just now.
                        at.and_then(|i| heard.get(i).copied())
                            .unwrap_or_else(|| Heard::new(Instant::now()))
                    },
                    open_requests.lately(),
                )
            };
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(ticker.next_look(Instant::now())) => {}
                    _ = stop.changed() => return,
                }
                let tick = ticker.due(
                    Instant::now(),
                    || remembered(&cm.list_recent_payments()),
                    look,
                );
                if let Some(tick) = tick {
                    tracing::trace!(?tick, "LDK timer tick");
                    cm.timer_tick_occurred();
                    if looks_around {
                        ticker.ticked(look);
                    }
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

    /// Processes received HTLCs found ready, checked every `every`: the backstop of the
    /// background loop's processing as soon as a round finds them
    /// ([`LnConfig::htlc_processing_interval`]). LDK guards the processing against running
    /// twice at once.
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

/// What the background loop drives.
struct Background {
    store: Arc<crate::types::Store>,
    chain_monitor: Arc<crate::types::ChainMonitor>,
    channel_manager: Arc<crate::types::ChannelManager>,
    peer_manager: Arc<PeerManager>,
    sweeper: Arc<crate::types::Sweeper>,
    /// [`crate::LnConfig::htlc_processing_interval`]: `None`, received HTLCs are processed
    /// here after a random delay ([`forward_delay`]).
    forwards_every: Option<Duration>,
}

/// How often peers are pinged and unanswered pings found (LDK's `PING_TIMER`).
const PING_EVERY: Duration = Duration::from_secs(10);
/// How often the chain monitor's pending claims are broadcast again (LDK's
/// `REBROADCAST_TIMER`).
const REBROADCAST_EVERY: Duration = Duration::from_secs(30);
/// How often the sweeper's spends are regenerated (LDK's `SWEEPER_TIMER`).
const SWEEP_EVERY: Duration = Duration::from_secs(30);
/// The longest wait between two rounds of the loop (LDK's `FASTEST_TIMER`).
const LOOP_WAIT: Duration = Duration::from_millis(100);

/// A random delay before received HTLCs are processed, when the node keeps a routing node's
/// batching ([`crate::LnConfig::htlc_processing_interval`] `None`): uniform in 50-250 ms, so
/// that a forward's timing tells an observer little (LDK's own draw, from a log-normal table,
/// is private to its background processor).
fn forward_delay() -> Duration {
    let mut b = [0u8; 2];
    if getrandom::getrandom(&mut b).is_err() {
        return Duration::from_millis(150);
    }
    Duration::from_millis(50)
        + Duration::from_micros(u64::from(u16::from_le_bytes(b)) * 200_000 / 65_536)
}

/// The node's background loop: what `lightning_background_processor::process_events_async`
/// (0.2) does for a node without gossip, scorer, onion messenger or liquidity manager, but
/// with the channel manager's writes the node's own (`gate.rs`, [`crate::gate::Gate::persist_manager`]).
///
/// LDK's processor encodes the whole manager for each write it asks for (twice: once to size
/// the buffer), under the manager's consistency lock, and hands the bytes to the store; under
/// load that was most of the paying node's background time, and a quarter of those encodings
/// were only kept in memory and replaced by the next one unwritten (nothing to commit with
/// them). Here the gate decides first: a write that would be kept is only marked, and one
/// that is committed is encoded once, into a buffer kept across writes. The held mark is taken
/// right before the encoding, so the log line the gate watched for is not needed either.
///
/// Each round: the manager's and the chain monitor's events to `handler`, peers' messages,
/// received HTLCs when due (with no HTLC-processing task), then a wait of at most
/// [`LOOP_WAIT`] for LDK to ask for events or a write; then the write, and the timers. LDK's
/// timer tick is the node's own ([`LnNode::spawn_ticker`]); it ticks once here, at the start,
/// before any peer is connected. At the stop, one last write (committed: the gate is closed).
async fn background_loop(
    bg: Background,
    handler: Arc<EventHandler>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), lightning::io::Error> {
    let cm = &bg.channel_manager;
    let handle = |event| {
        let handler = Arc::clone(&handler);
        async move { handler.handle(event).await }
    };
    cm.timer_tick_occurred();
    bg.chain_monitor.rebroadcast_pending_claims();
    let mut buf = zeroize::Zeroizing::new(Vec::new());
    let start = Instant::now();
    let (mut next_ping, mut next_rebroadcast, mut next_sweep) = (
        start + PING_EVERY,
        start + REBROADCAST_EVERY,
        start + SWEEP_EVERY,
    );
    let mut next_forwards = bg.forwards_every.is_none().then(|| start + forward_delay());
    loop {
        cm.process_pending_events_async(handle).await;
        bg.chain_monitor.process_pending_events_async(handle).await;
        // Last before the wait: it may block on the manager's locks (LDK's order).
        bg.peer_manager.process_events();
        // Received HTLCs processed as soon as this round finds them (a monitor update it
        // committed may have just made one ready), not at the HTLC task's next look.
        if bg.forwards_every.is_some() && cm.needs_pending_htlc_processing() {
            cm.process_pending_htlc_forwards();
        }
        if let Some(at) = next_forwards {
            if Instant::now() >= at {
                cm.process_pending_htlc_forwards();
                next_forwards = Some(Instant::now() + forward_delay());
            }
        }
        let mut wait = LOOP_WAIT;
        if let Some(at) = next_forwards {
            if cm.needs_pending_htlc_processing() {
                wait = wait.min(at.saturating_duration_since(Instant::now()));
            }
        }
        if *stop.borrow() {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = cm.get_event_or_persistence_needed_future() => {}
            _ = bg.chain_monitor.get_update_future() => {}
            _ = stop.changed() => break,
        }
        if cm.get_and_clear_needs_persistence() {
            bg.store.gate().persist_manager(&bg.store, &mut buf)?;
        }
        let now = Instant::now();
        if now >= next_sweep {
            next_sweep = now + SWEEP_EVERY;
            let _ = bg
                .sweeper
                .regenerate_and_broadcast_spend_if_necessary()
                .await;
        }
        if now >= next_ping {
            next_ping = now + PING_EVERY;
            bg.peer_manager.timer_tick_occurred();
        }
        if now >= next_rebroadcast {
            next_rebroadcast = now + REBROADCAST_EVERY;
            bg.chain_monitor.rebroadcast_pending_claims();
        }
    }
    // As LDK's processor does as it ends: a last write, so that no monitor update in flight
    // is left without a manager that knows it.
    let _ = cm.get_and_clear_needs_persistence();
    bg.store.gate().persist_manager(&bg.store, &mut buf)
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

    #[test]
    fn a_forwards_delay_is_drawn_within_its_bounds_and_varies() {
        let drawn: Vec<Duration> = (0..64).map(|_| forward_delay()).collect();
        for d in &drawn {
            assert!(
                (Duration::from_millis(50)..Duration::from_millis(250)).contains(d),
                "{d:?}"
            );
        }
        assert!(
            drawn.iter().any(|d| *d != drawn[0]),
            "always {:?}",
            drawn[0]
        );
    }
}
