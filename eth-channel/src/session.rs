//! Channel messages over swap-net's encrypted transport.
//!
//! A [`Node`] holds every channel of one party (any number of peers), routes each message
//! by its channel id to that channel's [`Party`], and keeps at most one connection per peer
//! (a [`swap_net::Connection`], Noise-authenticated: a channel's messages are accepted only
//! from the peer key it was registered with). Each connection runs in its own task, reads
//! frames and answers them, and sends what local calls ([`Node::propose`]) produced.
//!
//! Discipline, as in [`Party`]: every step is committed (persisted) before its message is
//! handed to the connection. A proposal whose answer does not come in time
//! ([`SessionConfig::request_timeout`]), or that could not be sent, stays pending (it is
//! signed); it is resent ([`Party::resend`]) whenever a connection to its peer starts, and
//! on a live connection once it has been pending for [`SessionConfig::resend_every`] (a
//! message lost on the way); the peer answers a proposal it already countersigned with the
//! same countersignature.
//!
//! Hostile input: bytes that are no message get a `Reject` with [`RejectCode::Malformed`]
//! (channel and version zero), a proposal for a channel we do not hold with this peer one
//! with [`RejectCode::WrongChannel`], an invalid proposal the reject [`Party`] gives; none
//! changes anything. A connection sending more than [`swap_net::Limits::max_bad_messages`]
//! malformed or misrouted messages, or faster than `max_messages_per_sec`, is closed.
//!
//! Crossing proposals (see [`crate::machine`]) are handled here: on side B a lost crossing
//! re-proposes the abandoned change once A's re-proposal is countersigned (or after
//! [`SessionConfig::crossing_wait`]); the caller of [`Node::propose`] waits for the change
//! it asked for, whatever version it ends up at.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use alloy::primitives::B256;
use alloy::signers::local::PrivateKeySigner;
use eth_adapter::channel::ChannelRef;
use swap_net::{Connection, Identity, Limits, NetError, PeerKey};
use tokio::net::{TcpListener, ToSocketAddrs};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tracing::{debug, warn};

use crate::machine::{Config, Party, PartyError};
use crate::msg::{RejectCode, UpdateKind};
use crate::rules::Reject;
use crate::store::{ChannelStore, StoreError};

pub use crate::chain_view::{ChainView, RpcChain, FINAL_BLOCK_READ_FOR, REREAD_GAP};

mod batch;
mod follow_up;
mod inbound;

use batch::Queued;

/// Timing of a [`Node`].
#[derive(Debug, Clone, Copy)]
pub struct SessionConfig {
    /// How long [`Node::propose`] waits for the peer's answer.
    pub request_timeout: Duration,
    /// How long side B waits for A's re-proposal after a lost crossing before proposing its
    /// own change again.
    pub crossing_wait: Duration,
    /// How long before a proposal refused with `Busy` is sent again.
    pub busy_retry: Duration,
    /// Connection bounds (see [`swap_net::Limits`]). The default allows a channel peer
    /// [`CHANNEL_MESSAGES_PER_SEC`] messages per second: a busy channel carries a proposal
    /// and a countersignature each way per swap, many swaps a second (swap-net's default of
    /// 50, meant for negotiation, closed busy channels' connections mid-update).
    pub limits: Limits,
    /// Whether this node proposes and reads batched updates ([`UpdateKind::Batch`]). Off, it
    /// proposes one change at a time and answers a batch as a build from before batches does
    /// (bytes that are no message): for a peer that must not get batches, and to test that
    /// such a peer is served.
    pub batches: bool,
    /// How often a proposal of ours still pending is sent again on a live connection (a
    /// proposal, or its countersignature, lost on the way would otherwise wait for the next
    /// connection: a lock's sender reads a pending lock as in flight and asks nothing more).
    /// A proposal goes out again once it has been pending for one to two of these; the peer
    /// answers a resend of what it countersigned already with the same countersignature.
    pub resend_every: Duration,
}

/// The longest wait before a postponed re-proposal is tried again (see `Node::repropose`).
const MAX_REPROPOSE_WAIT: Duration = Duration::from_secs(10);

/// Messages per second a channel peer may send on its connection by default (each costs a
/// signature check or two: ~0.1 ms here, so the bound keeps a flood under a tenth of a core).
pub const CHANNEL_MESSAGES_PER_SEC: u32 = 1_000;

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(30),
            crossing_wait: Duration::from_secs(5),
            busy_retry: Duration::from_millis(200),
            limits: Limits {
                max_messages_per_sec: CHANNEL_MESSAGES_PER_SEC,
                ..Limits::default()
            },
            batches: true,
            resend_every: Duration::from_secs(5),
        }
    }
}

/// What went wrong in a session.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The transport failed.
    #[error(transparent)]
    Net(#[from] NetError),
    /// The state machine refused (our own update invalid, busy, store failure).
    #[error(transparent)]
    Party(#[from] PartyError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The chain could not be read.
    #[error("chain: {0}")]
    Chain(String),
    /// Not one of our channels.
    #[error("unknown channel {0}")]
    UnknownChannel(B256),
    /// A proposal of ours on this channel is still pending (or being re-proposed).
    #[error("channel {channel}: proposal of version {version} pending")]
    Busy {
        /// The channel.
        channel: B256,
        /// The pending version.
        version: u64,
    },
    /// No connection to the channel's peer: the proposal (signed, persisted) stays pending
    /// and is sent when one starts.
    #[error("not connected to {peer}; proposal of version {version} pending")]
    NotConnected {
        /// The peer.
        peer: PeerKey,
        /// The pending version.
        version: u64,
    },
    /// No answer in time: the proposal stays pending and is resent on the next connection.
    #[error("no answer to version {version} in time; it stays pending")]
    Timeout {
        /// The pending version.
        version: u64,
    },
    /// The peer refused our proposal (it stays pending, signed: see [`Party`]).
    #[error("refused by the peer ({code:?}): {text}")]
    Refused {
        /// Its code.
        code: RejectCode,
        /// Its text (the peer's, for logs).
        text: String,
    },
    /// Our change lost a crossing and is no longer valid: nothing was proposed again.
    #[error("abandoned after crossing proposals, no longer valid: {0}")]
    Dropped(Reject),
    /// The node was shut down ([`Node::shutdown`]): nothing more is proposed or answered.
    #[error("the channel node was shut down")]
    Stopped,
    /// The node's own bookkeeping failed (a poisoned lock).
    #[error("session state: {0}")]
    Internal(&'static str),
    /// The batch our change went in failed in a way that is no refusal of it (a store or
    /// transport failure): the change was not made; it may be proposed again.
    #[error("batched proposal failed: {0}")]
    Batch(String),
}

type Answer = Result<u64, SessionError>;

pub(crate) struct Slot {
    pub(crate) party: Party,
    pub(crate) peer: PeerKey,
    /// The caller waiting for our pending (or crossed, to be re-proposed) change.
    waiter: Option<oneshot::Sender<Answer>>,
    /// Side B after a lost crossing: the change to propose again.
    requeue: Option<UpdateKind>,
    /// Held by the [`Node::propose`] call whose change is in flight: the next caller waits
    /// for it (first come, first served) instead of being refused as busy and retrying later.
    turn: Arc<tokio::sync::Mutex<()>>,
    /// Locks and claims waiting for the turn: whoever takes it proposes them all as one
    /// batch (see [`Node::propose`]).
    queue: std::collections::VecDeque<Queued>,
    /// The peer could not read a batch (a build from before batches answers one as bytes
    /// that are no message): this channel's changes go one at a time until we restart.
    singles: bool,
    /// What each [`Node::propose`] call still running on this channel will take from our side
    /// (by ticket): queued, waiting for its turn, or proposed and waiting for its answer.
    outgoing: HashMap<u64, u128>,
    /// Our pending proposal's version and how many times in a row the peer answered it
    /// `Busy` (its chain unreadable): each resend waits twice as long as the one before.
    busy: (u64, u32),
    /// The version of our pending proposal the peer refused (any code but `Busy`) and that
    /// stays pending (a final one): not sent again every few seconds to be refused again, only
    /// on a new connection or when asked ([`Node::resend_pending`]).
    refused: Option<u64>,
}

impl Slot {
    /// Our pending proposal must go out again (the peer answered busy, or we could not read
    /// its answer): its version, and how many times in a row that happened to it before.
    fn busy_again(&mut self) -> Option<(u64, u32)> {
        let v = self.party.pending()?.state.version;
        let (version, streak) = self.busy;
        let streak = if version == v {
            streak.saturating_add(1)
        } else {
            0
        };
        self.busy = (v, streak);
        Some((v, streak))
    }
}

struct Conn {
    generation: u64,
    tx: mpsc::UnboundedSender<Vec<u8>>,
}

pub(crate) struct Inner {
    pub(crate) me: Identity,
    pub(crate) key: PrivateKeySigner,
    pub(crate) party_cfg: Config,
    pub(crate) cfg: SessionConfig,
    pub(crate) store: Arc<dyn ChannelStore>,
    pub(crate) chain: Arc<dyn ChainView>,
    pub(crate) chans: Mutex<HashMap<B256, Slot>>,
    conns: Mutex<HashMap<PeerKey, Conn>>,
    generation: std::sync::atomic::AtomicU64,
    /// The chain id and contract of the channels we accept when announced (none: we accept
    /// none).
    pub(crate) accept: std::sync::OnceLock<(u64, alloy::primitives::Address)>,
    /// Our announcements waiting for their answer, by channel id.
    pub(crate) opens: Mutex<HashMap<B256, oneshot::Sender<Result<(), SessionError>>>>,
    /// Where we find the preimages of locks we receive (see [`Node::add_secrets`]).
    pub(crate) secrets: Mutex<Vec<Arc<dyn crate::Secrets>>>,
    /// The latest block timestamp seen ([`Node::chain_now`]: never goes back).
    pub(crate) chain_seen: std::sync::atomic::AtomicU64,
    /// Told of the peer's messages applied to a channel ([`Node::changes`]).
    changed: swap_core::ChangeFeed,
    /// Set by [`Node::shutdown`].
    stopped: tokio::sync::watch::Sender<bool>,
    /// Held while an announced channel is recorded (see `accept_open`).
    pub(crate) announcing: Mutex<()>,
}

/// One party's channels and connections (cheap to clone: shared).
#[derive(Clone)]
pub struct Node {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Node({})", self.inner.me.public())
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> Result<MutexGuard<'_, T>, SessionError> {
    m.lock()
        .map_err(|_| SessionError::Internal("poisoned lock"))
}

impl Node {
    /// A node signing with `key` (the Ethereum key of our side in every channel), talking as
    /// `me` on the transport, keeping its states in `store`.
    pub fn new(
        me: Identity,
        key: PrivateKeySigner,
        party_cfg: Config,
        cfg: SessionConfig,
        store: Arc<dyn ChannelStore>,
        chain: Arc<dyn ChainView>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                me,
                key,
                party_cfg,
                cfg,
                store,
                chain,
                chans: Mutex::new(HashMap::new()),
                conns: Mutex::new(HashMap::new()),
                generation: std::sync::atomic::AtomicU64::new(0),
                accept: std::sync::OnceLock::new(),
                opens: Mutex::new(HashMap::new()),
                secrets: Mutex::new(Vec::new()),
                chain_seen: std::sync::atomic::AtomicU64::new(0),
                changed: swap_core::ChangeFeed::new(),
                stopped: tokio::sync::watch::Sender::new(false),
                announcing: Mutex::new(()),
            }),
        }
    }

    /// Tells each peer's message that changed a channel (committed first: a lock offered to
    /// us, a claim, our own proposal countersigned), by the hashlocks of the locks it concerns:
    /// a swap engine steps those swaps' channel legs then instead of at their next poll.
    pub fn changes(&self) -> swap_core::ChangeSubscription {
        self.inner.changed.subscribe()
    }

    /// Our transport identity's public key.
    pub fn public(&self) -> PeerKey {
        self.inner.me.public()
    }

    /// Serves channel `id` (recorded in the store) with `peer`: resumes its party.
    pub fn add_channel(&self, id: B256, peer: PeerKey) -> Result<(), SessionError> {
        let party = Party::resume(
            id,
            self.inner.key.clone(),
            self.inner.party_cfg,
            &*self.inner.store,
        )?;
        self.insert_party(party, peer)
    }

    /// Serves `party` (just recorded) with `peer`.
    pub(crate) fn insert_party(&self, party: Party, peer: PeerKey) -> Result<(), SessionError> {
        lock(&self.inner.chans)?.insert(
            party.id(),
            Slot {
                party,
                peer,
                waiter: None,
                requeue: None,
                turn: Arc::new(tokio::sync::Mutex::new(())),
                queue: std::collections::VecDeque::new(),
                singles: false,
                busy: (0, 0),
                refused: None,
                outgoing: HashMap::new(),
            },
        );
        Ok(())
    }

    /// The peer we serve channel `id` with, if we serve it.
    pub(crate) fn chan_peer(&self, id: B256) -> Result<Option<PeerKey>, SessionError> {
        Ok(lock(&self.inner.chans)?.get(&id).map(|s| s.peer))
    }

    /// Reads channel `id`'s party (its latest co-signed state, pending proposal...).
    pub fn with_party<T>(&self, id: B256, f: impl FnOnce(&Party) -> T) -> Result<T, SessionError> {
        let chans = lock(&self.inner.chans)?;
        let slot = chans.get(&id).ok_or(SessionError::UnknownChannel(id))?;
        Ok(f(&slot.party))
    }

    /// Reads channel `id`'s party with what our changes not yet co-signed will take from our
    /// side, read together under one lock: those of [`Node::propose`] calls still running
    /// (queued, waiting for their turn, or proposed), and a pending or requeued change no
    /// caller waits for any more. (Counted high for a moment rather than low: a change just
    /// co-signed may count until its call returns.)
    pub fn with_party_outgoing<T>(
        &self,
        id: B256,
        f: impl FnOnce(&Party, u128) -> T,
    ) -> Result<T, SessionError> {
        let chans = lock(&self.inner.chans)?;
        let slot = chans.get(&id).ok_or(SessionError::UnknownChannel(id))?;
        let mut out = slot
            .outgoing
            .values()
            .fold(0u128, |a, b| a.saturating_add(*b));
        if slot.waiter.is_none() {
            let pending = slot.party.pending().map_or(0, |p| p.kind.outgoing());
            let requeued = slot.requeue.as_ref().map_or(0, UpdateKind::outgoing);
            out = out.saturating_add(pending).saturating_add(requeued);
        }
        Ok(f(&slot.party, out))
    }

    /// Whether a connection to `peer` is up.
    pub fn connected(&self, peer: PeerKey) -> bool {
        lock(&self.inner.conns).is_ok_and(|c| c.contains_key(&peer))
    }

    /// Dials `peer` at `addr` (refusing any other key) and runs the connection in a task;
    /// resends every pending proposal of ours to it.
    pub async fn connect(&self, addr: impl ToSocketAddrs, peer: PeerKey) -> Result<(), NetError> {
        let conn = Connection::connect(addr, &self.inner.me, Some(peer)).await?;
        self.spawn(conn, None);
        Ok(())
    }

    /// Accepts connections on `listener` until the task is dropped or the node shut down
    /// (each runs in its own task; at most `limits.max_connections` at once).
    pub async fn serve(&self, listener: TcpListener) {
        let slots = Arc::new(Semaphore::new(self.inner.cfg.limits.max_connections));
        let mut stopped = self.inner.stopped.subscribe();
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = stopped.wait_for(|s| *s) => return,
            };
            let (stream, addr) = match accepted {
                Ok(s) => s,
                Err(e) => {
                    warn!(error = %e, "channel listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                debug!(%addr, "channel listener: too many connections");
                continue;
            };
            let node = self.clone();
            tokio::spawn(async move {
                match Connection::accept(stream, &node.inner.me).await {
                    Ok(conn) => node.spawn(conn, Some(permit)),
                    Err(e) => debug!(%addr, error = %e, "channel handshake failed"),
                }
            });
        }
    }

    fn spawn(&self, conn: Connection, permit: Option<tokio::sync::OwnedSemaphorePermit>) {
        if self.is_stopped() {
            return;
        }
        let peer = conn.remote();
        let (tx, rx) = mpsc::unbounded_channel();
        let generation = self
            .inner
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Resend first (queued before anything newer), then make the connection visible, both
        // under the channels' lock: a proposal committed meanwhile (under that lock) is either
        // resent here or finds the connection up. (Between the two, it would find no
        // connection and miss the resend: pending until the next connection.)
        let chans = lock(&self.inner.chans).ok();
        for slot in chans
            .iter()
            .flat_map(|c| c.values())
            .filter(|s| s.peer == peer)
        {
            if let Some(bytes) = slot.party.resend() {
                let _ = tx.send(bytes);
            }
        }
        match lock(&self.inner.conns) {
            // Checked under the lock `shutdown` clears the connections under.
            Ok(mut conns) if !self.is_stopped() => {
                conns.insert(peer, Conn { generation, tx });
            }
            _ => return,
        }
        drop(chans);
        let node = self.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match node.run(conn, rx).await {
                Ok(()) | Err(SessionError::Net(NetError::Closed)) => {
                    debug!(%peer, "channel peer disconnected")
                }
                Err(e) => debug!(%peer, error = %e, "channel connection dropped"),
            }
            if let Ok(mut conns) = lock(&node.inner.conns) {
                if conns.get(&peer).is_some_and(|c| c.generation == generation) {
                    conns.remove(&peer);
                }
            }
        });
    }

    /// Shuts the node down: from now on it proposes nothing (calls get
    /// [`SessionError::Stopped`]), answers no message, sends nothing again and proposes no
    /// crossed change again (what is pending stays persisted, for the next node on the same
    /// store), accepts no connection ([`Node::serve`] returns) and drops its connections.
    /// Callers waiting for an answer get `Stopped`. A node on the same store may then be
    /// started in the same process without this one writing to it.
    pub fn shutdown(&self) {
        self.inner.stopped.send_replace(true);
        // Every write checks the flag under a lock taken here after it was set: none is made
        // once this returns.
        drop(lock(&self.inner.announcing));
        if let Ok(mut conns) = lock(&self.inner.conns) {
            conns.clear();
        }
        if let Ok(mut chans) = lock(&self.inner.chans) {
            for slot in chans.values_mut() {
                if let Some(w) = slot.waiter.take() {
                    let _ = w.send(Err(SessionError::Stopped));
                }
                slot.requeue = None;
                for q in slot.queue.drain(..) {
                    q.stopped();
                }
            }
        }
    }

    /// Whether [`Node::shutdown`] was called.
    pub fn is_stopped(&self) -> bool {
        *self.inner.stopped.borrow()
    }

    /// Sleeps for `d`, or less if the node is shut down meanwhile: whether it still runs.
    pub(crate) async fn sleep_unless_stopped(&self, d: Duration) -> bool {
        let mut stopped = self.inner.stopped.subscribe();
        tokio::select! {
            _ = tokio::time::sleep(d) => !self.is_stopped(),
            _ = stopped.wait_for(|s| *s) => false,
        }
    }

    /// Drops the connection to `peer`, if any (its task ends at its next frame or send).
    pub fn disconnect(&self, peer: PeerKey) {
        if let Ok(mut conns) = lock(&self.inner.conns) {
            conns.remove(&peer);
        }
    }

    async fn run(
        &self,
        mut conn: Connection,
        mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
    ) -> Result<(), SessionError> {
        let peer = conn.remote();
        let limits = self.inner.cfg.limits;
        let rate = f64::from(limits.max_messages_per_sec.max(1));
        let (mut tokens, mut last) = (rate, std::time::Instant::now());
        let mut bad = 0u32;
        let every = self.inner.cfg.resend_every.max(Duration::from_millis(10));
        let mut resend = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        resend.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Our proposals to this peer pending at the last tick: those still pending (the
        // same versions) at the next go out again.
        let mut was_pending: HashSet<(B256, u64)> = HashSet::new();
        loop {
            tokio::select! {
                out = rx.recv() => match out {
                    Some(bytes) => conn.send_bytes(&bytes).await?,
                    // Replaced or disconnected.
                    None => return Ok(()),
                },
                _ = resend.tick() => {
                    let (again, pending) = self.still_pending(peer, &was_pending);
                    was_pending = pending;
                    for bytes in again {
                        conn.send_bytes(&bytes).await?;
                    }
                }
                got = conn.recv_bytes() => {
                    let bytes = match got {
                        Ok(b) => b,
                        // Idle: a session may be quiet for long.
                        Err(NetError::Timeout) => continue,
                        Err(e) => return Err(e.into()),
                    };
                    let now = std::time::Instant::now();
                    tokens = (tokens + now.duration_since(last).as_secs_f64() * rate).min(rate);
                    last = now;
                    if tokens < 1.0 {
                        return Err(NetError::TooFast.into());
                    }
                    tokens -= 1.0;
                    let (reply, was_bad) = self.handle(peer, &bytes).await;
                    if let Some(r) = reply {
                        conn.send_bytes(&r).await?;
                    }
                    if was_bad {
                        bad += 1;
                        if bad >= limits.max_bad_messages {
                            return Err(NetError::TooManyBadMessages.into());
                        }
                    }
                }
            }
        }
    }

    /// Our proposals to `peer` pending now, and the bytes to send again of those pending in
    /// `before` too (at the same version: pending since the last look).
    fn still_pending(
        &self,
        peer: PeerKey,
        before: &HashSet<(B256, u64)>,
    ) -> (Vec<Vec<u8>>, HashSet<(B256, u64)>) {
        let mut again = Vec::new();
        let mut now = HashSet::new();
        if self.is_stopped() {
            return (again, now);
        }
        if let Ok(chans) = lock(&self.inner.chans) {
            for (id, slot) in chans.iter().filter(|(_, s)| s.peer == peer) {
                let Some(version) = slot.party.pending().map(|p| p.state.version) else {
                    continue;
                };
                if before.contains(&(*id, version)) && slot.refused != Some(version) {
                    if let Some(bytes) = slot.party.resend() {
                        debug!(channel = %id, version, "proposal still pending: sent again");
                        again.push(bytes);
                    }
                }
                now.insert((*id, version));
            }
        }
        (again, now)
    }

    pub(crate) fn send_to(&self, peer: PeerKey, bytes: Vec<u8>) -> bool {
        lock(&self.inner.conns)
            .is_ok_and(|c| c.get(&peer).is_some_and(|c| c.tx.send(bytes).is_ok()))
    }

    pub(crate) fn chan_of(&self, id: B256, peer: PeerKey) -> Option<ChannelRef> {
        let chans = lock(&self.inner.chans).ok()?;
        chans
            .get(&id)
            .filter(|s| s.peer == peer)
            .map(|s| s.party.channel().clone())
    }
}
