//! Channel monitors never ahead of the channel manager in the node's store.
//!
//! LDK writes a channel monitor update before it sends the message that depends on it, and
//! writes the channel manager later, whenever the node's background loop gets to it. A process
//! killed in between leaves a store whose monitors are ahead of its manager, and at the next
//! start LDK force-closes every such channel ("A ChannelManager is stale compared to the current
//! ChannelMonitor!"). No funds are lost, but the channel is, with its on-chain fees and any
//! swap still in it: a crash must not cost that.
//!
//! So the node persists monitors LDK's asynchronous way, and orders the writes itself:
//! - every write and removal of a monitor or monitor update is held in memory (the store's
//!   reads and lists see it; see `kv.rs`), and LDK is told the update is in progress, so it
//!   sends nothing that depends on it yet;
//! - each write of the channel manager commits, in the same SQLite transaction, the monitor
//!   writes held before the manager it writes was encoded: a manager that generated them all.
//!   The node's background loop (`node/tasks.rs`, in place of LDK's background processor)
//!   asks the gate for each write LDK wants ([`Gate::persist_manager`]): it marks what is
//!   held, then encodes the manager, and commits what was held before the mark (held writes
//!   after it come from updates that ask LDK for another write);
//! - then LDK is told those updates completed ([`ChainMonitor::channel_monitor_updated`]), and
//!   it sends their messages;
//! - a transaction LDK broadcasts (a commitment, a claim, a channel's funding) goes out only
//!   after what is held was committed, with a manager encoded after that (`io.rs`; always a
//!   fresh one: a funding goes out once its channel's first monitor completed, which the
//!   manager that saw it may keep in memory, below). LDK applies an update to the
//!   monitor, which may broadcast then, before the update reaches this store; but it does so
//!   under the manager's lock, which that encoding waits for. So what is on chain comes from
//!   committed monitor state, or from an update the committed manager has in flight and
//!   replays at the next start (a monitor that broadcast a commitment it then lost in a crash
//!   would not know it at the next start).
//!
//! A store read at any moment then holds a manager that knows every monitor update it holds.
//! A manager ahead of its monitors is the case LDK is built for: it replays the updates it
//! still has in flight to the monitors at the next start.
//!
//! A task (`LnNode::spawn_gate_watch`) commits on its own when updates wait and no manager
//! write came for a while, so an update LDK generated without asking for a manager write still
//! completes.
//!
//! A manager write LDK asks for with no held monitor write to commit (under load about half
//! of the payee's writes and, since the swap rail's payments no longer force a commit, most
//! of the payer's: LDK asks for a write after each event it handled and each message it
//! processed) is not even encoded: the manager is marked as newer than the store's, and
//! encoded and committed by the next write or by the task at its next round
//! ([`DEFERRED_FOR`]); when the node stops, at once. Not so for a write known to have an
//! urgent change LDK keeps in its manager only ([`Gate::manager_change`]: a payment sent by
//! hand, HTLCs failed back) that no committed manager has. A payment the swap rail records as
//! sent is in a committed manager first ([`committed`]): LDK never forgets, in a crash, a
//! payment a swap will not send again; before that it is recorded `Sending`, and sent again
//! if a restarted LDK does not know it ([`Gate::manager_change_lazy`]). Otherwise a crash
//! loses at most that window of the manager's own state, as a crash just before LDK's write
//! always could: LDK hands over again the events it had handed over. Each write kept saves
//! an encoding, a seal and a commit of the whole manager (README).
//!
//! The price: a monitor update's messages wait for the next manager write (the node's
//! background loop writes it right after the update), and the manager is written once more per
//! round of updates (README). LDK calls its asynchronous
//! persistence "beta": it names rare edge cases that may lose funds, and this node uses the
//! path that way on purpose, with the broadcasts above ordered behind it, because the other
//! path force-closes a channel at nearly every crash under load.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};

use lightning::chain::chainmonitor::Persist;
use lightning::chain::channelmonitor::{ChannelMonitor, ChannelMonitorUpdate};
use lightning::chain::ChannelMonitorUpdateStatus;
use lightning::io;
use lightning::ln::types::ChannelId;
use lightning::sign::InMemorySigner;
use lightning::sign::KeysManager;
use lightning::util::persist::{
    MonitorName, MonitorUpdatingPersister, ARCHIVED_CHANNEL_MONITOR_PERSISTENCE_PRIMARY_NAMESPACE,
    CHANNEL_MANAGER_PERSISTENCE_KEY, CHANNEL_MANAGER_PERSISTENCE_PRIMARY_NAMESPACE,
    CHANNEL_MANAGER_PERSISTENCE_SECONDARY_NAMESPACE, CHANNEL_MONITOR_PERSISTENCE_PRIMARY_NAMESPACE,
    CHANNEL_MONITOR_UPDATE_PERSISTENCE_PRIMARY_NAMESPACE,
};
use lightning::util::ser::Writeable;

use crate::io::{Broadcaster, FeeCache, TracingLogger, WalletKeys};
use crate::types::{ChainMonitor, ChannelManager, Store};

/// The namespaces whose writes wait for the manager: monitors, their updates, archived ones.
pub(crate) const HELD: &[&str] = &[
    CHANNEL_MONITOR_PERSISTENCE_PRIMARY_NAMESPACE,
    CHANNEL_MONITOR_UPDATE_PERSISTENCE_PRIMARY_NAMESPACE,
    ARCHIVED_CHANNEL_MONITOR_PERSISTENCE_PRIMARY_NAMESPACE,
];

/// The channel manager's names in the store.
pub(crate) const MANAGER: (&str, &str, &str) = (
    CHANNEL_MANAGER_PERSISTENCE_PRIMARY_NAMESPACE,
    CHANNEL_MANAGER_PERSISTENCE_SECONDARY_NAMESPACE,
    CHANNEL_MANAGER_PERSISTENCE_KEY,
);

/// LDK's monitor persister (each update a record of its own, the monitor whole every
/// [`crate::types::MAX_PENDING_MONITOR_UPDATES`]), writing into the store.
pub(crate) type MonitorRecords = MonitorUpdatingPersister<
    Arc<Store>,
    Arc<TracingLogger>,
    Arc<KeysManager>,
    Arc<WalletKeys>,
    Arc<Broadcaster>,
    Arc<FeeCache>,
>;

/// The store's side of the order: which updates wait for a manager write, and the manager
/// writes themselves. Off until [`Gate::start`] (a node's start reads, replays and re-persists
/// its monitors with plain writes first).
#[derive(Default)]
pub(crate) struct Gate {
    parts: OnceLock<Parts>,
    /// Updates LDK was told are in progress, each with the store's held mark after its writes.
    waiting: Mutex<Vec<Waiting>>,
    /// Serializes manager writes (the node's background loop and the watch task).
    writes: Mutex<Writes>,
    /// The node is stopping: LDK's last writes are committed at once, none deferred.
    closing: AtomicBool,
    /// Changes kept in LDK's manager only ([`Gate::manager_change`]) finished so far.
    changes_done: AtomicU64,
    /// Told at each commit that raised [`Gate::committed_done`].
    committed: tokio::sync::Notify,
    /// The finished changes a committed manager surely has (the first this many): what
    /// [`committed`] waits for. Raised under the writes' lock, read without it (it is held
    /// across commits).
    committed_done: AtomicU64,
    /// Urgent changes ([`Gate::manager_change`]; not those of [`Gate::manager_change_lazy`])
    /// begun so far, finished or not: while one is begun and not surely committed, the node's
    /// background loop commits every write (one encoded before the change's LDK call returned
    /// may or may not have it; LDK asks for another write after it).
    urgent_begun: AtomicU64,
    /// Of the finished changes, the urgent ones so far.
    urgent_done: AtomicU64,
    /// The urgent finished changes a committed manager surely has: the node's background
    /// loop commits, rather than keeps in memory, a write that surely has more.
    urgent_committed: AtomicU64,
}

struct Parts {
    manager: Weak<ChannelManager>,
    chain_monitor: Weak<ChainMonitor>,
}

impl Parts {
    /// The channel manager; an error once it is gone.
    fn manager(&self) -> Result<Arc<ChannelManager>, io::Error> {
        self.manager.upgrade().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::Other,
                "the channel manager is gone: nothing to write",
            )
        })
    }
}

struct Waiting {
    channel: ChannelId,
    update: u64,
    mark: u64,
}

#[derive(Default)]
struct Writes {
    /// Manager writes so far.
    count: u64,
    /// Of them, those that committed held monitor writes.
    with_held: u64,
    /// `with_held` as the last write LDK handed over left it: a write LDK hands over next was
    /// encoded after that one returned.
    with_held_at_ldk: u64,
    /// `count` as the last write LDK handed over left it.
    count_at_ldk: u64,
    /// [`Gate::changes_done`] when the last write LDK handed over returned: the manager LDK
    /// hands over next has those changes.
    done_at_ldk: u64,
    /// LDK's newest manager when it came with no monitor write to commit: kept, and committed
    /// by the next write, or by the watch task within [`DEFERRED_FOR`] (see
    /// [`Gate::write_manager`]).
    deferred: Option<zeroize::Zeroizing<Vec<u8>>>,
    /// LDK's manager changed since the last commit and was not encoded: the node's own
    /// background loop skips the encoding of a write that would only be kept in memory
    /// ([`Gate::persist_manager`]). Encoded and committed by the next write, or by the watch
    /// task within [`DEFERRED_FOR`].
    stale: bool,
    /// LDK's writes deferred so far (each replaced by the next, or committed).
    deferred_count: u64,
    /// Of them, those the watch task (or the stop) committed.
    deferred_committed: u64,
    /// Of those, the [`Writes::stale`] ones, encoded when committed (also in `count`).
    stale_committed: u64,
}

/// The watch task's round: a manager write with no monitor write in it waits in memory for
/// at most one round and the time the commit takes.
pub(crate) const DEFERRED_FOR: std::time::Duration = std::time::Duration::from_millis(100);

/// How long [`committed`] waits for the node's background loop to write a manager with the
/// change before it writes one itself.
const CHANGE_COMMIT_WAIT: std::time::Duration = std::time::Duration::from_millis(50);

/// The channel manager's writes, counted (benches print them per swap).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ManagerWrites {
    /// Writes committed to the store.
    pub committed: u64,
    /// Of them, those that committed monitor writes with the manager.
    pub with_monitor_writes: u64,
    /// LDK's writes kept in memory instead (each replaced by the next write, or committed
    /// by the watch task).
    pub kept: u64,
    /// Of those kept, the ones the watch task (or the stop) committed: the rest were
    /// replaced without ever being sealed and written.
    pub kept_then_committed: u64,
}

/// A change LDK keeps in its channel manager only, in no monitor (a payment handed to it
/// whose HTLC waits in its holding cell, HTLCs failed back), counted once LDK's call
/// returned: [`committed`] waits for a committed manager with it. An urgent one
/// ([`Gate::manager_change`]) also has the next manager write committed, not kept in
/// memory. Finished when dropped.
pub(crate) struct ManagerChange<'a> {
    gate: &'a Gate,
    finished: bool,
    urgent: bool,
}

impl ManagerChange<'_> {
    /// The change is made: its number, for [`committed`].
    pub(crate) fn finish(mut self) -> u64 {
        self.finished = true;
        self.count()
    }

    fn count(&self) -> u64 {
        if self.urgent {
            self.gate.urgent_done.fetch_add(1, Ordering::SeqCst);
        }
        self.gate.changes_done.fetch_add(1, Ordering::SeqCst) + 1
    }
}

impl Drop for ManagerChange<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.count();
        }
    }
}

/// Returns once a manager with every change finished so far is committed ([`committed`]).
pub(crate) async fn committed_now(store: &Arc<Store>) -> Result<(), io::Error> {
    let n = store.gate().changes_done.load(Ordering::SeqCst);
    committed(store, n).await
}

/// Returns once a manager with change number `n` ([`ManagerChange::finish`]) is committed:
/// the node's background loop writes one right after the change (LDK wakes it), and within
/// [`CHANGE_COMMIT_WAIT`] this writes one itself (the loop may have kept the write in memory,
/// or LDK may have asked for it while the change was being made, and ask for none after it).
pub(crate) async fn committed(store: &Arc<Store>, n: u64) -> Result<(), io::Error> {
    let gate = store.gate();
    if !gate.is_on() {
        return Ok(());
    }
    let deadline = tokio::time::Instant::now() + CHANGE_COMMIT_WAIT;
    loop {
        let notified = gate.committed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if gate.committed_done.load(Ordering::SeqCst) >= n {
            return Ok(());
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            break;
        }
    }
    let store = Arc::clone(store);
    tokio::task::spawn_blocking(move || {
        let gate = store.gate();
        if gate.committed_done.load(Ordering::SeqCst) >= n {
            return Ok(());
        }
        // Encoded here, after the change: it has it.
        gate.write_manager(&store, None)
    })
    .await
    .map_err(|e| io::Error::new(io::ErrorKind::Other, e.to_string()))?
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("on", &self.parts.get().is_some())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Gate {
    /// From now on monitor writes wait for the manager (see the module's documentation).
    pub(crate) fn start(
        &self,
        store: &Store,
        manager: &Arc<ChannelManager>,
        chain_monitor: &Arc<ChainMonitor>,
    ) {
        let parts = Parts {
            manager: Arc::downgrade(manager),
            chain_monitor: Arc::downgrade(chain_monitor),
        };
        if self.parts.set(parts).is_ok() {
            store.hold(HELD);
        }
    }

    pub(crate) fn is_on(&self) -> bool {
        self.parts.get().is_some()
    }

    /// What a persist of `channel`'s monitor at update `update` answers LDK, its writes done
    /// (held) with `status`; LDK is told it completed once they are committed.
    fn after_persist(
        &self,
        store: &Store,
        status: ChannelMonitorUpdateStatus,
        channel: ChannelId,
        update: u64,
    ) -> ChannelMonitorUpdateStatus {
        if !self.is_on() || status != ChannelMonitorUpdateStatus::Completed {
            return status;
        }
        lock(&self.waiting).push(Waiting {
            channel,
            update,
            mark: store.held_mark(),
        });
        ChannelMonitorUpdateStatus::InProgress
    }

    /// A change LDK will keep in its manager only begins (see [`ManagerChange`]): taken
    /// before LDK is called, finished after it returned.
    pub(crate) fn manager_change(&self) -> ManagerChange<'_> {
        self.urgent_begun.fetch_add(1, Ordering::SeqCst);
        ManagerChange {
            gate: self,
            finished: false,
            urgent: true,
        }
    }

    /// A change whose loss in a crash its caller finds and makes again (the swap rail's
    /// payment: recorded `Sending` first, and sent again at the next attempt if a restarted
    /// LDK does not know it; recorded sent only once [`committed`]): the manager write that
    /// follows it may be kept in memory like any other, and [`committed`] waits for the next
    /// commit (under load, one with monitor writes within milliseconds) instead of having one
    /// made for it.
    pub(crate) fn manager_change_lazy(&self) -> ManagerChange<'_> {
        ManagerChange {
            gate: self,
            finished: false,
            urgent: false,
        }
    }

    /// Writes the channel manager with the monitor writes held so far. `given`: bytes handed
    /// over through the store (a write of LDK's manager key; the node's own loop writes
    /// through [`Self::persist_manager`] instead). They are written only when no commit came
    /// since the previous such write and nothing is held ([`ldk_bytes_usable`]); otherwise,
    /// and for `None`, the manager is encoded here, after the held writes were marked.
    pub(crate) fn write_manager(
        &self,
        store: &Store,
        given: Option<zeroize::Zeroizing<Vec<u8>>>,
    ) -> Result<(), io::Error> {
        let parts = self.parts()?;
        let mut writes = lock(&self.writes);
        let from_ldk = given.is_some();
        let now = store.held_mark();
        let usable = given.and_then(|bytes| {
            ldk_bytes_usable(&writes, !store.holds_before(now)).map(|found| (bytes, found))
        });
        let mark = match usable {
            // The bytes handed over, at least as new as everything committed; the finished
            // changes ([`Gate::manager_change`]) they surely have: `covers` (no urgent one
            // known).
            Some((bytes, (mark, covers))) => {
                let mark = mark.unwrap_or(now);
                // Nothing held to commit with the newest manager: it waits in memory for the
                // next write, which replaces it, or for the watch task. What the store holds
                // stays consistent: its manager knows every monitor update committed (each
                // commit takes the deferred manager's place, and this one came after the last
                // commit). A crash loses at most the last `DEFERRED_FOR` of the manager's own
                // state, as a crash before LDK's write always did: LDK hands over again what
                // it had handed over then (events, payments not yet in a monitor update).
                // A finished change in the manager only that no committed manager has is
                // committed now ([`Gate::manager_change`]). One finished after the bytes'
                // snapshot may be in them and deferred: a later write has it for sure, or
                // [`committed`] writes one.
                let defer = covers <= self.committed_done.load(Ordering::SeqCst)
                    && !store.holds_before(mark)
                    && !self.closing.load(Ordering::SeqCst);
                if defer {
                    writes.deferred = Some(bytes);
                    writes.stale = false;
                    writes.deferred_count += 1;
                } else {
                    self.commit(store, &mut writes, mark, &bytes, (covers, 0))?;
                }
                mark
            }
            None => {
                let manager = parts.manager()?;
                let mut buf = zeroize::Zeroizing::new(Vec::new());
                self.encode_and_commit(store, &manager, &mut writes, &mut buf)?
            }
        };
        if from_ldk {
            writes.with_held_at_ldk = writes.with_held;
            writes.count_at_ldk = writes.count;
            writes.done_at_ldk = self.changes_done.load(Ordering::SeqCst);
        }
        drop(writes);
        // Deferred, nothing held before `mark` is left: an update still waiting whose writes
        // an earlier commit took is complete all the same.
        self.complete_through(parts, mark);
        Ok(())
    }

    /// The gate's parts; an error before [`Gate::start`].
    fn parts(&self) -> Result<&Parts, io::Error> {
        self.parts
            .get()
            .ok_or_else(|| io::Error::new(io::ErrorKind::Other, "the monitor gate is not started"))
    }

    /// Takes the held mark and the finished changes' counts, then encodes `manager` once into
    /// `buf` (LDK's `encode` runs the encoding twice, to size its buffer) (it knows every change counted and every write held before the mark) and commits
    /// it with the writes held before the mark. Answers the mark.
    fn encode_and_commit(
        &self,
        store: &Store,
        manager: &ChannelManager,
        writes: &mut Writes,
        buf: &mut zeroize::Zeroizing<Vec<u8>>,
    ) -> Result<u64, io::Error> {
        let mark = store.held_mark();
        let urgent = self.urgent_done.load(Ordering::SeqCst);
        let covers = self.changes_done.load(Ordering::SeqCst);
        buf.clear();
        manager.write(&mut **buf)?;
        self.commit(store, writes, mark, buf, (covers, urgent))?;
        Ok(mark)
    }

    /// Commits `bytes`, a manager encoded after the held mark `mark` with the finished
    /// changes `covers` (all, urgent), with the monitor writes held before `mark`; what was
    /// kept in memory is then older than the store's.
    fn commit(
        &self,
        store: &Store,
        writes: &mut Writes,
        mark: u64,
        bytes: &[u8],
        (covers, urgent): (u64, u64),
    ) -> Result<(), io::Error> {
        let committed = store.commit_sealed_through(mark, MANAGER, bytes)?;
        writes.deferred = None;
        writes.stale = false;
        writes.count += 1;
        if committed > 0 {
            writes.with_held += 1;
        }
        self.urgent_committed.fetch_max(urgent, Ordering::SeqCst);
        if covers > self.committed_done.load(Ordering::SeqCst) {
            self.committed_done.store(covers, Ordering::SeqCst);
            self.committed.notify_waiters();
        }
        Ok(())
    }

    /// The write LDK asked for (its manager's `get_and_clear_needs_persistence`), from the
    /// node's own background loop (`node/tasks.rs`), which calls this instead of encoding the
    /// manager itself: the held mark is taken here, before the encoding, so every monitor
    /// write held now is committed with a manager that knows it. When nothing held is to be
    /// committed and no finished change waits for a commit, the write would only be kept in
    /// memory (see [`Self::write_manager`]) and most such writes are replaced by the next one
    /// unwritten: the manager is not even encoded then, only marked [`Writes::stale`] for the
    /// next write or the watch task. Otherwise it is encoded once, into `buf` (kept between
    /// calls: no allocation), and committed.
    pub(crate) fn persist_manager(
        &self,
        store: &Store,
        buf: &mut zeroize::Zeroizing<Vec<u8>>,
    ) -> Result<(), io::Error> {
        let parts = self.parts()?;
        let mut writes = lock(&self.writes);
        let mark = store.held_mark();
        let defer = self.urgent_begun.load(Ordering::SeqCst)
            <= self.urgent_committed.load(Ordering::SeqCst)
            && !store.holds_before(mark)
            && !self.closing.load(Ordering::SeqCst);
        let mark = if defer {
            writes.deferred = None;
            writes.stale = true;
            writes.deferred_count += 1;
            mark
        } else {
            let manager = parts.manager()?;
            self.encode_and_commit(store, &manager, &mut writes, buf)?
        };
        drop(writes);
        self.complete_through(parts, mark);
        Ok(())
    }

    /// Commits the manager LDK handed over last, if it waits in memory
    /// ([`Self::write_manager`]). Done by the watch task every [`DEFERRED_FOR`]. Not counted
    /// in [`Writes::count`]: a manager LDK is encoding meanwhile is newer than this one, and
    /// may be kept in its place.
    pub(crate) fn commit_deferred(&self, store: &Store) -> Result<(), io::Error> {
        let mut writes = lock(&self.writes);
        if writes.stale {
            // Encoded now, after the held writes were marked: it knows them all.
            let Some(parts) = self.parts.get() else {
                return Ok(());
            };
            let Some(manager) = parts.manager.upgrade() else {
                return Ok(());
            };
            let mut buf = zeroize::Zeroizing::new(Vec::new());
            let mark = self.encode_and_commit(store, &manager, &mut writes, &mut buf)?;
            // A kept write committed (in `count` too: LDK's writes must see this commit).
            writes.deferred_committed += 1;
            writes.stale_committed += 1;
            drop(writes);
            self.complete_through(parts, mark);
            return Ok(());
        }
        let Some(bytes) = writes.deferred.take() else {
            return Ok(());
        };
        // With no held write: those held now came after these bytes were encoded.
        if let Err(e) = store.commit_sealed_through(0, MANAGER, &bytes) {
            writes.deferred = Some(bytes);
            return Err(e);
        }
        writes.deferred_committed += 1;
        Ok(())
    }

    /// The node is stopping: from now on LDK's manager writes are committed at once (the
    /// node's background loop writes the manager once more as it ends), and the one waiting,
    /// if any, is committed now.
    pub(crate) fn close(&self, store: &Store) -> Result<(), io::Error> {
        self.closing.store(true, Ordering::SeqCst);
        self.commit_deferred(store)
    }

    /// Tells LDK the updates whose writes are committed (all before `mark`) completed.
    fn complete_through(&self, parts: &Parts, mark: u64) {
        let done: Vec<Waiting> = {
            let mut waiting = lock(&self.waiting);
            let (done, rest) = std::mem::take(&mut *waiting)
                .into_iter()
                .partition(|w| w.mark <= mark);
            *waiting = rest;
            done
        };
        if done.is_empty() {
            return;
        }
        let Some(chain_monitor) = parts.chain_monitor.upgrade() else {
            return;
        };
        for w in done {
            if let Err(e) = chain_monitor.channel_monitor_updated(w.channel, w.update) {
                // A monitor removed meanwhile (its channel closed and archived): nothing waits.
                tracing::debug!(channel = %w.channel, update = w.update, error = ?e, "monitor update completion");
            }
        }
    }

    /// Commits what is held now with a manager encoded here, if anything is held or waits.
    /// Never called by a thread that holds one of LDK's locks (encoding the manager takes its
    /// consistency lock).
    pub(crate) fn flush(&self, store: &Store) -> Result<(), io::Error> {
        if !self.is_on() || !self.anything_waits(store) {
            return Ok(());
        }
        self.write_manager(store, None)
    }

    /// The manager's writes so far.
    pub(crate) fn writes(&self) -> ManagerWrites {
        let w = lock(&self.writes);
        ManagerWrites {
            committed: w.count + w.deferred_committed - w.stale_committed,
            with_monitor_writes: w.with_held,
            kept: w.deferred_count,
            kept_then_committed: w.deferred_committed,
        }
    }

    fn anything_waits(&self, store: &Store) -> bool {
        !lock(&self.waiting).is_empty() || store.holds_before(store.held_mark())
    }

    /// Whether updates wait for a manager write, how many manager writes there were, and
    /// whether one of LDK's waits in memory; `None` while one is being written (then it is
    /// not stalled).
    pub(crate) fn pending(&self, store: &Store) -> Option<(bool, u64, bool)> {
        let (count, deferred) = {
            let w = self.writes.try_lock().ok()?;
            (w.count, w.deferred.is_some() || w.stale)
        };
        Some((self.anything_waits(store), count, deferred))
    }
}

/// Whether manager bytes handed over through the store (a write of LDK's manager key: the
/// node's own loop does not write that way, see [`Gate::persist_manager`]) may be written,
/// and if so which finished changes they surely have: only when nothing is held now and no
/// write committed anything since the previous such write returned. They are then at least
/// as new as everything committed. A manager committed in between (for a broadcast, a
/// payment, a stalled update) may know more than they do; writing them over it would take the
/// store's manager back. Otherwise the manager is encoded again.
fn ldk_bytes_usable(writes: &Writes, nothing_held_now: bool) -> Option<(Option<u64>, u64)> {
    (nothing_held_now
        && writes.with_held == writes.with_held_at_ldk
        && writes.count == writes.count_at_ldk)
        .then_some((None, writes.done_at_ldk))
}

/// Tells LDK, at a start, that the first monitor of each open channel still at its first
/// update, as read from the store, is persisted. A process that died after a manager write that committed a new channel's
/// first monitor, and before the next one, left a manager that still waits for that first
/// persist: LDK tracks no in-flight update for it that a start could find complete, so the
/// channel would never become ready. For a channel that waits for nothing this does nothing
/// (LDK: "open but not awaiting update"); updates replayed at the start are in flight above
/// the monitor's id and still wait for their own commit. Closed channels are left alone.
/// Must run before anything makes the manager process its start's background events (its
/// replays would otherwise be persisted before the gate, as completed, and LDK panics when
/// one node mixes completed and in-progress persistence).
pub(crate) fn reconcile_started(manager: &ChannelManager, chain_monitor: &ChainMonitor) {
    let open: std::collections::HashSet<ChannelId> = manager
        .list_channels()
        .iter()
        .map(|c| c.channel_id)
        .collect();
    for channel in chain_monitor.list_monitors() {
        if !open.contains(&channel) {
            continue;
        }
        let Ok(monitor) = chain_monitor.get_monitor(channel) else {
            continue;
        };
        let id = monitor.get_latest_update_id();
        drop(monitor);
        // A channel waiting for its first persist has no later update.
        if id != 0 {
            continue;
        }
        if let Err(e) = chain_monitor.channel_monitor_updated(channel, id) {
            tracing::warn!(%channel, error = ?e, "monitor at start not marked persisted");
        }
    }
}

/// The node's monitor persister: LDK's records, written through the [`Gate`].
pub(crate) struct GatedPersister {
    records: MonitorRecords,
    store: Arc<Store>,
}

impl GatedPersister {
    pub(crate) fn new(records: MonitorRecords, store: Arc<Store>) -> Self {
        Self { records, store }
    }

    /// LDK's persister underneath (reading the monitors at start).
    pub(crate) fn records(&self) -> &MonitorRecords {
        &self.records
    }
}

impl Persist<InMemorySigner> for GatedPersister {
    fn persist_new_channel(
        &self,
        monitor_name: MonitorName,
        monitor: &ChannelMonitor<InMemorySigner>,
    ) -> ChannelMonitorUpdateStatus {
        let status = self.records.persist_new_channel(monitor_name, monitor);
        self.store.gate().after_persist(
            &self.store,
            status,
            monitor.channel_id(),
            monitor.get_latest_update_id(),
        )
    }

    fn update_persisted_channel(
        &self,
        monitor_name: MonitorName,
        monitor_update: Option<&ChannelMonitorUpdate>,
        monitor: &ChannelMonitor<InMemorySigner>,
    ) -> ChannelMonitorUpdateStatus {
        let status = self
            .records
            .update_persisted_channel(monitor_name, monitor_update, monitor);
        // A whole monitor without an update (blocks connected, or an update the monitor
        // refused, which LDK then waits for as in progress without tracking it) is held like
        // the rest, and completed at the monitor's id once committed: LDK then sees every
        // update up to it done. Its writes come after those of every update it includes, so
        // they are committed by then too.
        self.store.gate().after_persist(
            &self.store,
            status,
            monitor.channel_id(),
            monitor_update.map_or_else(|| monitor.get_latest_update_id(), |u| u.update_id),
        )
    }

    fn archive_persisted_channel(&self, monitor_name: MonitorName) {
        Persist::<InMemorySigner>::archive_persisted_channel(&self.records, monitor_name);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Bytes handed over through the store are written only if nothing was committed since
    /// the previous such write: a manager committed in between with no monitor write (for a
    /// broadcast, a payment) may know more, and must not be written over with older bytes.
    #[test]
    fn ldks_bytes_are_not_written_over_a_newer_commit() {
        let at = |count, with_held| Writes {
            count,
            with_held,
            with_held_at_ldk: 3,
            count_at_ldk: 5,
            done_at_ldk: 2,
            ..Writes::default()
        };
        let writes = at(5, 3);
        let after = at(6, 3);
        assert_eq!(ldk_bytes_usable(&writes, true), Some((None, 2)));
        assert_eq!(ldk_bytes_usable(&writes, false), None);
        assert_eq!(ldk_bytes_usable(&after, true), None);
        assert_eq!(ldk_bytes_usable(&at(6, 4), true), None);
    }
}
