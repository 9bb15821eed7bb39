//! The swap store: every swap's terms, its secret, and the append-only history of its states.
//!
//! The secret is written together with the swap's first state, before any lock can be made.
//! What is stored are versioned records with stable tags (see [`StoredRecord`]), so renaming
//! code never breaks an existing database.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::machine::{initiator, responder};
use crate::params::ChainId;
use crate::terms::{Leg, SwapTerms, Tips};
use crate::types::{Asset, Hashlock, Preimage, SwapId, Timestamp, TxRef};

pub mod memory;
pub mod outbox;
pub mod rows;
pub mod seal;
#[cfg(feature = "sqlite")]
pub mod sqlite;
#[cfg(feature = "sqlite")]
mod sqlite_append;
#[cfg(feature = "sqlite")]
mod sqlite_conn;
#[cfg(feature = "sqlite")]
mod sqlite_outbox;
#[cfg(feature = "sqlite")]
mod sqlite_read;

#[cfg(any(test, feature = "testkit"))]
pub mod conformance;

pub use memory::MemoryStore;
pub use outbox::{MemoryOutbox, Outbox, SendKey, SharedOutbox, SignedTx, SpendGuard};
pub use seal::StoreKey;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;

/// Which side of the protocol we play in a swap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Made the secret, locks first.
    Initiator,
    /// Locks second.
    Responder,
}

/// A swap's state, for either role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "role", content = "state", rename_all = "snake_case")]
pub enum SwapState {
    /// An initiator's state.
    Initiator(initiator::State),
    /// A responder's state.
    Responder(responder::State),
}

impl SwapState {
    /// The role this state belongs to.
    pub fn role(&self) -> Role {
        match self {
            SwapState::Initiator(_) => Role::Initiator,
            SwapState::Responder(_) => Role::Responder,
        }
    }

    /// True once the swap has finished.
    pub fn is_final(&self) -> bool {
        match self {
            SwapState::Initiator(s) => s.is_final(),
            SwapState::Responder(s) => s.is_final(),
        }
    }

    /// The state to persist after `action` (computed in this state) was accepted by a node.
    pub fn after_sent(&self, action: &crate::machine::Action) -> Option<SwapState> {
        match self {
            SwapState::Initiator(s) => initiator::after_sent(s, action).map(SwapState::Initiator),
            SwapState::Responder(s) => responder::after_sent(s, action).map(SwapState::Responder),
        }
    }

    /// Whether our own lock is still to come in this state: the amount a maker must keep in
    /// reserve for the swap (see [`SwapStore::to_lock`]).
    pub fn lock_ahead(&self) -> bool {
        use initiator::State as I;
        use responder::State as R;
        matches!(
            self,
            SwapState::Initiator(I::Negotiated | I::Locking)
                | SwapState::Responder(
                    R::Negotiated | R::AwaitCounterLock | R::CounterLockValid | R::Locking
                )
        )
    }

    /// The first state of a swap in this role.
    pub fn initial(role: Role) -> Self {
        match role {
            Role::Initiator => SwapState::Initiator(initiator::State::Negotiated),
            Role::Responder => SwapState::Responder(responder::State::Negotiated),
        }
    }
}

/// Everything about a swap that does not change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwapRecord {
    /// The agreed terms.
    pub terms: SwapTerms,
    /// Our role.
    pub role: Role,
    /// The secret (the initiator's; `None` for a responder).
    pub secret: Option<Preimage>,
    /// Index of this swap's keys in the installation's key tree.
    pub key_index: u32,
    /// Both tips when the swap was agreed: where to start watching.
    pub watch_from: Tips,
}

impl SwapRecord {
    /// The swap's id.
    pub fn id(&self) -> SwapId {
        self.terms.id
    }

    /// The leg we lock: X for the initiator, Y for the responder.
    pub fn our_leg(&self) -> &crate::terms::LegTerms {
        match self.role {
            Role::Initiator => &self.terms.x,
            Role::Responder => &self.terms.y,
        }
    }

    /// What this swap will still lock of `asset` on `chain` when in `state`.
    pub fn to_lock(&self, state: &SwapState, chain: ChainId, asset: &Asset) -> u128 {
        let leg = self.our_leg();
        if state.lock_ahead() && leg.params.chain == chain && leg.asset == *asset {
            leg.amount.base_units()
        } else {
            0
        }
    }
}

/// The stored form of a record (without its secret, which has a column of its own). Versioned:
/// a new layout gets a new variant, old ones keep deserializing.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "v")]
pub enum StoredRecord {
    /// Layout 1.
    #[serde(rename = "1")]
    V1 {
        /// The agreed terms.
        terms: SwapTerms,
        /// Our role.
        role: Role,
        /// Key index.
        key_index: u32,
        /// Tips at agreement.
        watch_from: Tips,
    },
}

impl StoredRecord {
    /// The stored form of a record.
    pub fn from_record(r: &SwapRecord) -> Self {
        StoredRecord::V1 {
            terms: r.terms.clone(),
            role: r.role,
            key_index: r.key_index,
            watch_from: r.watch_from,
        }
    }

    /// Back to a record, with the secret from its own column.
    pub fn into_record(self, secret: Option<Preimage>) -> SwapRecord {
        match self {
            StoredRecord::V1 {
                terms,
                role,
                key_index,
                watch_from,
            } => SwapRecord {
                terms,
                role,
                secret,
                key_index,
                watch_from,
            },
        }
    }
}

/// One entry of a swap's state history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateEntry {
    /// Position in the history (increasing).
    pub seq: u64,
    /// When the state was entered (local clock).
    pub entered_at: Timestamp,
    /// The state.
    pub state: SwapState,
}

/// What a sent transaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxKind {
    /// Funded an HTLC.
    Lock,
    /// Claimed one (revealing or using the secret).
    Claim,
    /// Refunded one to its sender.
    Refund,
    /// Made a lock that was signed but is not on chain impossible to mine.
    Cancel,
}

impl TxKind {
    /// `lock`, `claim`, `refund` or `cancel`.
    pub fn as_str(&self) -> &'static str {
        match self {
            TxKind::Lock => "lock",
            TxKind::Claim => "claim",
            TxKind::Refund => "refund",
            TxKind::Cancel => "cancel",
        }
    }
}

/// A transaction this installation handed to a node for a swap (a fee bump or replacement is
/// another entry with its own reference).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SentTx {
    /// Which HTLC.
    pub leg: Leg,
    /// What it did.
    pub kind: TxKind,
    /// The transaction.
    pub txref: TxRef,
    /// When it was first recorded (local clock).
    pub at: Timestamp,
}

/// An action a rail accepted for a swap, as the driver records it
/// ([`SwapStore::record_sent`]).
#[derive(Debug, Clone)]
pub struct SentAction {
    /// The swap.
    pub id: SwapId,
    /// The transaction the rail sent for it, if it sent one (a cancel with nothing to cancel
    /// sends none).
    pub tx: Option<SentTx>,
    /// The action, as computed in the swap's latest state.
    pub action: crate::machine::Action,
}

/// What [`SwapStore::record_sent`] did with one [`SentAction`].
#[derive(Debug)]
pub struct SentRecorded {
    /// The transaction recorded (`Ok` too when there was none).
    pub tx: Result<(), StoreError>,
    /// The state the swap moved to ([`SwapState::after_sent`]); `None` when it stays.
    pub state: Result<Option<SwapState>, StoreError>,
}

impl StoreError {
    /// Whether the error concerns one swap's row alone (unknown, corrupt, refused, moved
    /// meanwhile): a batch goes on with the other swaps. Any other is the database's, and
    /// fails the whole batch.
    pub fn is_one_swaps(&self) -> bool {
        matches!(
            self,
            StoreError::UnknownSwap(_)
                | StoreError::Corrupt { .. }
                | StoreError::Invalid { .. }
                | StoreError::Conflict { .. }
        )
    }

    /// The same failure again, for each member of a batch that it failed as a whole (the
    /// key errors keep their kind; the others are told as the database's).
    pub(crate) fn again(&self) -> StoreError {
        match self {
            StoreError::KeyRequired => StoreError::KeyRequired,
            StoreError::WrongKey => StoreError::WrongKey,
            e => StoreError::Backend(e.to_string()),
        }
    }
}

/// Store errors. A corrupt row of one swap never hides the others.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No swap with this id.
    #[error("unknown swap {0}")]
    UnknownSwap(SwapId),
    /// A swap with this id exists already.
    #[error("swap {0} already exists")]
    Duplicate(SwapId),
    /// A row that cannot be read back (damaged file, foreign writes, a newer program's data).
    #[error("corrupt data for swap {swap}: {detail}")]
    Corrupt {
        /// The swap's id, as stored (hex), or "?" when even that is unreadable.
        swap: String,
        /// What is wrong (never includes secret material).
        detail: String,
    },
    /// The record is inconsistent (for example an initiator without a secret).
    #[error("invalid record for swap {swap}: {detail}")]
    Invalid {
        /// The swap.
        swap: SwapId,
        /// What is wrong.
        detail: String,
    },
    /// The database was written by a newer version of xswap.
    #[error("database schema version {found} is newer than this program supports ({supported})")]
    UnsupportedVersion {
        /// In the file.
        found: i64,
        /// The newest this program knows.
        supported: i64,
    },
    /// Another writer appended a state since the one this write expected.
    #[error("swap {swap} changed meanwhile: expected state #{expected}, the latest is #{found}")]
    Conflict {
        /// The swap.
        swap: SwapId,
        /// The sequence number the writer expected to be the latest.
        expected: u64,
        /// The latest in the store.
        found: u64,
    },
    /// A transaction is recorded in the outbox already for a send of this swap (another
    /// process got there first): the caller broadcasts that one, never a second.
    #[error("a transaction is already recorded for a send of swap {swap}")]
    AlreadyRecorded {
        /// The swap.
        swap: SwapId,
    },
    /// A write made under a lease that is no longer the swap's (another worker took the swap
    /// over, or the lease was released): nothing was written, and the writer must stop
    /// working on the swap. Not transient.
    #[error("swap {swap} is no longer leased under token {token}")]
    Fenced {
        /// The swap.
        swap: SwapId,
        /// The writer's (stale) fencing token.
        token: u64,
    },
    /// The store's secrets are sealed (see [`seal`]) and it was opened without a key: nothing
    /// was read or written. Open it with the installation's [`StoreKey`].
    #[error(
        "the swap store's secrets are encrypted: it must be opened with the installation's key \
         (from its keystore)"
    )]
    KeyRequired,
    /// The key given does not open the store's secrets (they were sealed with another
    /// installation's seed): nothing was read or written.
    #[error(
        "the key given does not open the swap store's secrets (they were encrypted with another \
         installation's seed)"
    )]
    WrongKey,
    /// The database itself failed (I/O, locked, not a database).
    #[error("database error: {0}")]
    Backend(String),
}

/// Where swaps live. Implementations must pass `conformance`'s suite.
#[async_trait]
pub trait SwapStore: Send + Sync {
    /// Stores a new swap with its secret and first state, atomically. Fails with
    /// [`StoreError::Duplicate`] when the id is taken.
    async fn create(&self, record: &SwapRecord, initial: &SwapState) -> Result<(), StoreError>;

    /// Appends a new state to a swap's history, after the state whose sequence number is
    /// `expected` (from [`SwapStore::load_entry`]); returns the new state's sequence number.
    /// When another writer appended since, nothing is written and the answer is
    /// [`StoreError::Conflict`]: two processes on one store never both act on one state.
    async fn append_state(
        &self,
        id: &SwapId,
        expected: u64,
        state: &SwapState,
    ) -> Result<u64, StoreError>;

    /// The swap's record and its latest state with its sequence number.
    async fn load_entry(&self, id: &SwapId) -> Result<(SwapRecord, StateEntry), StoreError>;

    /// [`SwapStore::append_state`] for each of `batch` (swap, expected sequence number, new
    /// state), in order, each with its own answer: a conflict or a bad state on one leaves
    /// the others written. A store that can write them together (the SQLite store: one
    /// transaction, one disk sync for a whole tick of swaps) does; the default appends them
    /// one by one. Every answer `Ok` means every state is durable, as with `append_state`.
    async fn append_states(
        &self,
        batch: &[(SwapId, u64, SwapState)],
    ) -> Vec<Result<u64, StoreError>> {
        let mut out = Vec::with_capacity(batch.len());
        for (id, expected, state) in batch {
            out.push(self.append_state(id, *expected, state).await);
        }
        out
    }

    /// [`SwapStore::load_entry`] for each of `ids`, in order (the SQLite store reads them in
    /// one call to its connection).
    async fn load_entries(
        &self,
        ids: &[SwapId],
    ) -> Vec<Result<(SwapRecord, StateEntry), StoreError>> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(self.load_entry(id).await);
        }
        out
    }

    /// The swap's record and its latest state.
    async fn load(&self, id: &SwapId) -> Result<(SwapRecord, SwapState), StoreError> {
        self.load_entry(id).await.map(|(r, e)| (r, e.state))
    }

    /// The swap's whole state history, oldest first.
    async fn history(&self, id: &SwapId) -> Result<Vec<StateEntry>, StoreError>;

    /// Every swap that has not finished, each loaded on its own: one corrupt swap is one `Err`
    /// in the list, the others still load.
    async fn unfinished(
        &self,
    ) -> Result<Vec<Result<(SwapRecord, SwapState), StoreError>>, StoreError>;

    /// What unfinished swaps will still lock of `asset` on `chain`: the sum of our leg's amount
    /// over every swap whose own lock is still ahead ([`SwapState::lock_ahead`]). A maker
    /// reserves this much, so two takers whose total exceeds its balance are not both accepted.
    /// The default reads every unfinished swap; a store with many should keep it indexed.
    async fn to_lock(&self, chain: ChainId, asset: &Asset) -> Result<u128, StoreError> {
        let mut sum = 0u128;
        for (record, state) in self.unfinished().await?.into_iter().flatten() {
            sum = sum.saturating_add(record.to_lock(&state, chain, asset));
        }
        Ok(sum)
    }

    /// Every swap's id, newest first.
    async fn list(&self) -> Result<Vec<SwapId>, StoreError>;

    /// A fresh key index, never handed out before by this store.
    async fn allocate_key_index(&self) -> Result<u32, StoreError>;

    /// Whether any stored swap uses this hashlock. A responder must refuse a proposal whose
    /// hashlock it already has: two swaps sharing a hashlock can share one counter-lock.
    async fn hashlock_in_use(&self, hashlock: &Hashlock) -> Result<bool, StoreError>;

    /// Records a transaction sent for a swap; the same (leg, kind, txref) again is a no-op
    /// (an idempotent re-send returns the transaction it sent before).
    async fn record_tx(&self, id: &SwapId, tx: &SentTx) -> Result<(), StoreError>;

    /// The transactions sent for a swap, in the order first recorded.
    async fn txs(&self, id: &SwapId) -> Result<Vec<SentTx>, StoreError>;

    /// Records what rails accepted, in order, each with its own answer: its transaction (as
    /// [`SwapStore::record_tx`]), then its swap's latest state moved on as
    /// [`SwapState::after_sent`] says (appended after it as [`SwapStore::append_state`]: a
    /// conflict when another writer moved the swap since it was read). The SQLite store
    /// writes them all in one transaction (one disk sync for a rail's answer); the default
    /// goes one by one through the other methods (so a wrapper's fencing applies).
    async fn record_sent(&self, sent: &[SentAction]) -> Vec<SentRecorded> {
        let mut out = Vec::with_capacity(sent.len());
        for s in sent {
            let tx = match &s.tx {
                Some(tx) => self.record_tx(&s.id, tx).await,
                None => Ok(()),
            };
            let state = match self.load_entry(&s.id).await {
                Err(e) => Err(e),
                Ok((_, entry)) => match entry.state.after_sent(&s.action) {
                    None => Ok(None),
                    Some(next) => self
                        .append_state(&s.id, entry.seq, &next)
                        .await
                        .map(|_| Some(next)),
                },
            };
            out.push(SentRecorded { tx, state });
        }
        out
    }
}

pub(crate) fn check_record(record: &SwapRecord, initial: &SwapState) -> Result<(), StoreError> {
    let id = record.id();
    if initial.role() != record.role {
        return Err(StoreError::Invalid {
            swap: id,
            detail: "initial state is for the other role".into(),
        });
    }
    match (record.role, &record.secret) {
        (Role::Initiator, None) => Err(StoreError::Invalid {
            swap: id,
            detail: "an initiator's swap must be stored with its secret".into(),
        }),
        (Role::Initiator, Some(s)) if !record.terms.hashlock.matches(s) => {
            Err(StoreError::Invalid {
                swap: id,
                detail: "the secret does not match the hashlock".into(),
            })
        }
        _ => Ok(()),
    }
}

pub(crate) fn now() -> Timestamp {
    Timestamp::now()
}
