//! The driver: runs many swaps at once on tokio, persists each new state before acting, and
//! resumes every unfinished swap from the store at start.
//!
//! One step of a swap is: load its latest state, ask both chains for a [`Snapshot`], compute
//! the next state, persist it if it changed, then perform the actions. A crash anywhere in
//! between is harmless: the state on disk is never ahead of what the chains can confirm, and
//! every action is idempotent.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tracing::{debug, error, info, warn};

use crate::machine::{initiator, responder, Action, Outcome, Snapshot};
use crate::params::RailId;
use crate::rail::{Cause, ChainError, HtlcParams, Rail};
use crate::store::{StoreError, SwapRecord, SwapState, SwapStore};
use crate::terms::Leg;
use crate::types::{SwapId, TxRef};

/// Driver errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// The store failed or holds bad data.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No adapter was given for a rail the swap uses.
    #[error("no adapter for rail {0}")]
    NoRail(RailId),
    /// A rail could not be read (the step changed nothing; retry later).
    #[error("rail {rail}: {source}")]
    Chain {
        /// Which rail.
        rail: RailId,
        /// What happened.
        source: ChainError,
    },
    /// A swap whose secret is missing (an initiator's record without it).
    #[error("swap {0} has no secret")]
    MissingSecret(SwapId),
    /// A rail answered without one of the swap's legs (retry).
    #[error("swap {0}: a rail did not report one of its legs")]
    MissingView(SwapId),
    /// The swap stopped with an error reported to another caller waiting for it.
    #[error("swap {0} stopped with an error")]
    Stopped(SwapId),
    /// The swap's actions were cut short before they all returned (the task performing them
    /// ended); the next step sees what they did (retry).
    #[error("swap {0}: its actions were interrupted")]
    Interrupted(SwapId),
}

impl DriverError {
    /// True when retrying later can help (node down, timeouts).
    pub fn is_transient(&self) -> bool {
        match self {
            DriverError::Chain { source, .. } => source.is_transient(),
            DriverError::MissingView(_) | DriverError::Interrupted(_) => true,
            // Another writer moved the swap on: step again from what it wrote.
            DriverError::Store(StoreError::Backend(_) | StoreError::Conflict { .. }) => true,
            _ => false,
        }
    }
}

/// Driver settings.
#[derive(Debug, Clone, Copy)]
pub struct DriverConfig {
    /// Time between two steps of a swap.
    pub poll_interval: Duration,
    /// Longest wait after repeated transient errors.
    pub max_backoff: Duration,
}

impl Default for DriverConfig {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(15),
            max_backoff: Duration::from_secs(300),
        }
    }
}

/// The result of [`Driver::advance`]: the persisted state and the actions still to perform.
#[derive(Debug, Clone)]
pub struct Advanced {
    /// The swap's record.
    pub record: SwapRecord,
    /// The swap's state, already persisted.
    pub state: SwapState,
    /// Whether the state changed.
    pub changed: bool,
    /// What to do next, in order.
    pub actions: Vec<Action>,
}

/// What one step did.
#[derive(Debug, Clone)]
pub struct StepReport {
    /// The swap's state after the step (already persisted).
    pub state: SwapState,
    /// Whether the state changed.
    pub changed: bool,
    /// The actions computed, with what each one returned.
    pub actions: Vec<(Action, Result<TxRef, ChainError>)>,
}

/// How many swap ends [`Driver::finished`] keeps for a listener that has not read them yet.
pub const FINISHED_QUEUE: usize = 1_024;

/// Running swap tasks: each yields its id and how it ended. Dropping the set aborts them all.
pub type SwapTasks = JoinSet<(SwapId, Result<Outcome, DriverError>)>;

/// Runs swaps. Cheap to share behind an `Arc`.
pub struct Driver {
    store: Arc<dyn SwapStore>,
    rails: HashMap<RailId, Arc<dyn Rail>>,
    config: DriverConfig,
    pub(crate) runtime_tx:
        std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<crate::runtime::Registration>>,
    finished: tokio::sync::broadcast::Sender<SwapId>,
}

impl Driver {
    /// A driver over `store`, with one adapter per rail (the rail registry: any number of
    /// chains and kinds, e.g. BTC and LTC on chain, Lightning and ETH).
    pub fn new(
        store: Arc<dyn SwapStore>,
        rails: impl IntoIterator<Item = Arc<dyn Rail>>,
        config: DriverConfig,
    ) -> Self {
        let rails = rails.into_iter().map(|r| (r.id(), r)).collect();
        Self {
            store,
            rails,
            config,
            runtime_tx: std::sync::OnceLock::new(),
            finished: tokio::sync::broadcast::channel(FINISHED_QUEUE).0,
        }
    }

    /// Told the id of each swap whose task of [`Driver::spawn`] ends, from the moment of this
    /// call: a caller waiting for a swap's end reads the store again when its own is told (or
    /// when it lagged [`FINISHED_QUEUE`] ends behind and may have missed it), not at every
    /// other swap's end.
    pub fn finished(&self) -> tokio::sync::broadcast::Receiver<SwapId> {
        self.finished.subscribe()
    }

    /// The driver's settings.
    pub fn config(&self) -> DriverConfig {
        self.config
    }

    /// The adapter of a rail, if this driver has one.
    pub fn rail(&self, id: RailId) -> Option<&Arc<dyn Rail>> {
        self.rails.get(&id)
    }

    /// Every rail this driver has an adapter for.
    pub fn rails(&self) -> impl Iterator<Item = &Arc<dyn Rail>> {
        self.rails.values()
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn SwapStore> {
        &self.store
    }

    fn chain(&self, id: RailId) -> Result<&Arc<dyn Rail>, DriverError> {
        self.rails.get(&id).ok_or(DriverError::NoRail(id))
    }

    /// Stores a new swap (with its secret, before anything can be locked).
    pub async fn create(&self, record: &SwapRecord) -> Result<(), DriverError> {
        // Refuse swaps on chains we cannot reach before they are stored.
        self.chain(record.terms.x.params.rail())?;
        self.chain(record.terms.y.params.rail())?;
        self.store
            .create(record, &SwapState::initial(record.role))
            .await?;
        info!(swap_id = %record.id(), role = ?record.role, "swap created");
        Ok(())
    }

    /// The adapter-facing description of one leg's HTLC.
    pub fn htlc(record: &SwapRecord, leg: Leg) -> HtlcParams {
        let watch_from = match leg {
            Leg::X => record.watch_from.x.height,
            Leg::Y => record.watch_from.y.height,
        };
        record.terms.leg(leg).htlc(
            record.id(),
            record.terms.hashlock,
            record.key_index,
            watch_from,
        )
    }

    /// What both legs' rails say now about a swap.
    pub async fn observe(&self, record: &SwapRecord) -> Result<Snapshot, DriverError> {
        self.views(&[record])
            .await
            .pop()
            .unwrap_or(Err(DriverError::MissingView(record.id())))
    }

    /// Computes and persists the swap's next state; returns it with the actions still to do.
    /// Nothing is sent here. (One swap's [`Driver::tick`] without the sending.)
    pub async fn advance(&self, id: &SwapId) -> Result<Advanced, DriverError> {
        self.advance_many(std::slice::from_ref(id), crate::runtime::MAX_HOPS)
            .await
            .pop()
            .map_or(Err(DriverError::MissingView(*id)), |(_, r)| r)
    }

    /// The machine's next state and actions for a swap, from what the rails show.
    pub(crate) fn decide(
        &self,
        record: &SwapRecord,
        state: &SwapState,
        snap: &Snapshot,
    ) -> Result<(SwapState, Vec<Action>), DriverError> {
        Ok(match state {
            SwapState::Initiator(s) => {
                let secret = record
                    .secret
                    .as_ref()
                    .ok_or(DriverError::MissingSecret(record.id()))?;
                let step = initiator::next(&record.terms, secret, s, snap);
                (SwapState::Initiator(step.state), step.actions)
            }
            SwapState::Responder(s) => {
                let step = responder::next(&record.terms, s, snap);
                (SwapState::Responder(step.state), step.actions)
            }
        })
    }

    /// Performs actions (each idempotent). Errors are returned, not raised: the next step sees
    /// the chains as they are and decides again.
    pub async fn perform(
        &self,
        record: &SwapRecord,
        actions: &[Action],
    ) -> Vec<(Action, Result<TxRef, ChainError>)> {
        self.perform_many(&[(record, actions)])
            .await
            .pop()
            .unwrap_or_default()
    }

    /// Logs an action's result by its cause; returns what to record when a rail accepted it
    /// ([`Driver::record_sent`]).
    pub(crate) fn after_action(
        record: &SwapRecord,
        action: &Action,
        result: &Result<TxRef, ChainError>,
    ) -> Option<crate::store::SentAction> {
        use crate::store::TxKind;
        let (leg, tx_kind) = match action {
            Action::Lock { leg } => (*leg, TxKind::Lock),
            Action::Claim { leg, .. } => (*leg, TxKind::Claim),
            Action::Refund { leg } => (*leg, TxKind::Refund),
            Action::CancelLock { leg } => (*leg, TxKind::Cancel),
        };
        let kind = tx_kind.as_str();
        let chain_id = record.terms.leg(leg).params.rail();
        let sent = |tx| {
            Some(crate::store::SentAction {
                id: record.id(),
                tx,
                action: action.clone(),
            })
        };
        match result {
            // A cancel with nothing to cancel (no lock was ever signed) sent nothing.
            Ok(txref) if txref.0.is_empty() => {
                info!(swap_id = %record.id(), chain = %chain_id, action = kind, "nothing to send");
                sent(None)
            }
            Ok(txref) => {
                info!(swap_id = %record.id(), chain = %chain_id, action = kind, %txref, "sent");
                sent(Some(crate::store::SentTx {
                    leg,
                    kind: tx_kind,
                    txref: txref.clone(),
                    at: crate::store::now(),
                }))
            }
            // What to do follows from the cause: a race lost to a spend or a timelock not
            // reached yet is normal (the next observation decides); the rest is retried or
            // reported.
            Err(e) if matches!(e.cause, Cause::AlreadySpent | Cause::NotReady { .. }) => {
                info!(swap_id = %record.id(), chain = %chain_id, action = kind, error = %e, "not sent");
                None
            }
            Err(e) if e.is_transient() => {
                warn!(swap_id = %record.id(), chain = %chain_id, action = kind, error = %e, "will retry");
                None
            }
            Err(e) => {
                error!(swap_id = %record.id(), chain = %chain_id, action = kind, error = %e, "failed");
                None
            }
        }
    }

    /// Persists what sent actions change, all in one call to the store
    /// ([`SwapStore::record_sent`]): the transaction each sent, and the state it leads to (a
    /// claim that reached the node makes the secret public). A failure here is logged: the
    /// state machine stays on the safe side without it.
    pub(crate) async fn record_sent(&self, sent: &[crate::store::SentAction]) {
        if sent.is_empty() {
            return;
        }
        let answers = self.store.record_sent(sent).await;
        for (s, answer) in sent.iter().zip(answers) {
            if let Err(e) = answer.tx {
                warn!(swap_id = %s.id, error = %e, "could not record a sent transaction");
            }
            match answer.state {
                Ok(Some(next)) => info!(swap_id = %s.id, to = state_name(&next), "state"),
                Ok(None) => {}
                Err(e) => warn!(swap_id = %s.id, error = %e, "could not record a sent action"),
            }
        }
    }

    /// One full step: advance (persisting) then perform (one swap's [`Driver::tick`]).
    pub async fn step(&self, id: &SwapId) -> Result<StepReport, DriverError> {
        self.tick(std::slice::from_ref(id))
            .await
            .pop()
            .map_or(Err(DriverError::MissingView(*id)), |(_, r)| r)
    }

    /// Tells both legs' adapters that a finished swap needs no more watching.
    pub async fn forget(&self, id: &SwapId) {
        if let Ok((record, _)) = self.store.load(id).await {
            self.forget_record(&record).await;
        }
    }

    /// [`Driver::forget`] for a record in hand.
    pub(crate) async fn forget_record(&self, record: &SwapRecord) {
        for leg in [Leg::X, Leg::Y] {
            if let Ok(chain) = self.chain(record.terms.leg(leg).params.rail()) {
                chain.forget(&Self::htlc(record, leg)).await;
            }
        }
    }

    /// Runs a swap until it finishes, in the driver's ticked runtime (with every other swap
    /// of this driver: one observation per rail per tick, actions grouped per rail). Transient
    /// errors back off and retry; a swap whose data is corrupt stops with an error (and stays
    /// in the store as it is). Dropping the future stops running the swap (once no one else
    /// waits for it).
    pub async fn run_swap(self: &Arc<Self>, id: SwapId) -> Result<Outcome, DriverError> {
        let (done, wait) = tokio::sync::oneshot::channel();
        let registered = self
            .runtime()
            .send(crate::runtime::Registration { id, done });
        if registered.is_err() {
            return Err(DriverError::Stopped(id));
        }
        wait.await.unwrap_or(Err(DriverError::Stopped(id)))
    }

    /// Spawns a task running `id` to its end.
    pub fn spawn(self: &Arc<Self>, set: &mut SwapTasks, id: SwapId) {
        let me = self.clone();
        set.spawn(async move {
            let ended = me.run_swap(id).await;
            // No listener is no error.
            let _ = me.finished.send(id);
            (id, ended)
        });
    }

    /// Resumes every unfinished swap in the store, each in its own task. Swaps that cannot be
    /// loaded are reported (not dropped, not touched) and the others run.
    pub async fn resume_all(self: &Arc<Self>) -> Result<(SwapTasks, Vec<StoreError>), DriverError> {
        let mut set = JoinSet::new();
        let mut bad = Vec::new();
        for entry in self.store.unfinished().await? {
            match entry {
                Ok((record, _)) => {
                    debug!(swap_id = %record.id(), "resuming");
                    self.spawn(&mut set, record.id());
                }
                Err(e) => {
                    error!(error = %e, "cannot resume a swap");
                    bad.push(e);
                }
            }
        }
        Ok((set, bad))
    }
}

/// The outcome, if the swap has finished.
pub fn final_outcome(state: &SwapState) -> Option<Outcome> {
    match state {
        SwapState::Initiator(initiator::State::Done { outcome })
        | SwapState::Responder(responder::State::Done { outcome }) => Some(outcome.clone()),
        _ => None,
    }
}

/// A short name for logs (never includes secrets).
pub fn state_name(state: &SwapState) -> &'static str {
    use initiator::State as I;
    use responder::State as R;
    match state {
        SwapState::Initiator(s) => match s {
            I::Negotiated => "negotiated",
            I::Locking => "locking",
            I::Locked { .. } => "locked",
            I::LockConfirmed => "lock_confirmed",
            I::CounterLockSeen { .. } => "counter_lock_seen",
            I::CounterLockValid => "counter_lock_valid",
            I::Claiming => "claiming",
            I::ClaimSent => "claim_sent",
            I::Claimed => "claimed",
            I::AwaitRefund { .. } => "await_refund",
            I::Refunding { .. } => "refunding",
            I::Cancelling { .. } => "cancelling",
            I::Done { .. } => "done",
        },
        SwapState::Responder(s) => match s {
            R::Negotiated => "negotiated",
            R::AwaitCounterLock => "await_counter_lock",
            R::CounterLockValid => "counter_lock_valid",
            R::Locking => "locking",
            R::Locked { .. } => "locked",
            R::SecretLearned { .. } => "secret_learned",
            R::Claiming { .. } => "claiming",
            R::Refunding => "refunding",
            R::Cancelling => "cancelling",
            R::Done { .. } => "done",
        },
    }
}
