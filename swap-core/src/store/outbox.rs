//! The outbox: every lock is recorded, signed, before it is broadcast, so that after a crash,
//! or in a second process on the same store, it is broadcast again from the store and never
//! built a second time (a second funding of one HTLC would lock the funds twice).
//!
//! A send goes through three steps:
//! 1. [`Outbox::signed`]: a transaction recorded for the send (by this or another process, maybe
//!    never broadcast, maybe evicted) is broadcast again; nothing new is built.
//! 2. Otherwise the sender builds and signs a transaction, and [`Outbox::record_signed`] writes
//!    it for every send it serves (one Bitcoin funding serves many locks), all or nothing, only
//!    if none of them has one yet. A sender that lost that race
//!    ([`StoreError::AlreadyRecorded`]) drops what it built without broadcasting it, and
//!    broadcasts the recorded one next time.
//! 3. The broadcast. If the node rejects the transaction for good, [`Outbox::discard`] forgets it
//!    (nothing went out); a transaction that can never be mined (its inputs or nonce were spent
//!    by another) is discarded the same way, and a new one may be built.
//!
//! No step waits for another process: a sender killed before its record left nothing behind, one
//! killed after it left a transaction that the next sender broadcasts.
//!
//! One exception, for senders that take coins from a wallet several processes share (Bitcoin
//! fundings): from choosing the coins to the broadcast they hold [`Outbox::spend_guard`] for the
//! wallet, so that two processes never build transactions on the same coins, of which the later
//! broadcast would replace the earlier (a replaceable funding) or be refused. The guard is held
//! for one build, record and broadcast (milliseconds), and released when its process dies.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{StoreError, TxKind};
use crate::params::RailId;
use crate::types::{SwapId, TxRef};

/// One send: an operation on one leg (the leg is named by its rail) of one swap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SendKey {
    /// The swap.
    pub swap: SwapId,
    /// The rail the leg is on.
    pub rail: RailId,
    /// What the send does.
    pub kind: TxKind,
}

/// A signed transaction, as recorded before its broadcast.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedTx {
    /// Its id on its chain.
    pub txref: TxRef,
    /// The raw signed transaction (consensus encoding).
    #[serde(with = "hex::serde")]
    pub raw: Vec<u8>,
}

impl std::fmt::Debug for SignedTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedTx")
            .field("txref", &self.txref)
            .field("raw_len", &self.raw.len())
            .finish()
    }
}

/// Held while a sender chooses coins of a shared wallet, records its transaction and
/// broadcasts it ([`Outbox::spend_guard`]). Dropping it releases it; so does the end of its
/// process.
pub struct SpendGuard {
    _held: Box<dyn std::any::Any + Send + Sync>,
}

impl SpendGuard {
    /// A guard released when `held` is dropped.
    pub fn new(held: impl std::any::Any + Send + Sync) -> Self {
        Self {
            _held: Box::new(held),
        }
    }
}

impl std::fmt::Debug for SpendGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SpendGuard")
    }
}

/// Waits for, and takes, the guard of `wallet` among the senders of this process (a tokio mutex
/// per wallet name): the whole of [`Outbox::spend_guard`] for a store only this process uses,
/// and its first half for the others (fewer of this process's senders wait on the database).
pub async fn process_spend_guard(wallet: &str) -> tokio::sync::OwnedMutexGuard<()> {
    static GUARDS: std::sync::LazyLock<
        Mutex<HashMap<String, std::sync::Arc<tokio::sync::Mutex<()>>>>,
    > = std::sync::LazyLock::new(Default::default);
    let mutex = {
        let mut guards = GUARDS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        std::sync::Arc::clone(guards.entry(wallet.to_owned()).or_default())
    };
    mutex.lock_owned().await
}

/// Where sends are recorded before broadcast. Implemented by the stores (the same SQLite file
/// as the swaps, so every process on one store shares it) and by [`MemoryOutbox`].
#[async_trait]
pub trait Outbox: Send + Sync {
    /// The transaction recorded for a send, if any.
    async fn signed(&self, key: &SendKey) -> Result<Option<SignedTx>, StoreError>;

    /// Records `tx` as the transaction of every send in `keys`, all or nothing: when any of
    /// them has a transaction already, nothing is written and the answer is
    /// [`StoreError::AlreadyRecorded`] (the caller must not broadcast `tx`).
    async fn record_signed(&self, keys: &[SendKey], tx: &SignedTx) -> Result<(), StoreError>;

    /// Records each send's own transaction, all or nothing: when any of the sends has a
    /// transaction already, nothing is written and the answer lists those sends (the caller
    /// broadcasts none of `items`, and may record the others again without them). An empty
    /// answer: all recorded. (One write for a round of sends instead of one each.)
    async fn record_each(&self, items: &[(SendKey, SignedTx)]) -> Result<Vec<SendKey>, StoreError>;

    /// Forgets `txref` as the transaction of the sends in `keys` that still have it: it was
    /// rejected for good, or can never be mined (another transaction spent its inputs or its
    /// nonce). A new one may then be built. Answers how many sends it forgot it for.
    async fn discard(&self, keys: &[SendKey], txref: &TxRef) -> Result<usize, StoreError>;

    /// Waits until no other sender on this store, in this process or another, holds the guard
    /// of `wallet` (a name for one wallet of one node), and takes it: see the module's
    /// documentation. The default serves one process ([`process_spend_guard`]); stores shared
    /// by processes override it.
    async fn spend_guard(&self, wallet: &str) -> Result<SpendGuard, StoreError> {
        Ok(SpendGuard::new(process_spend_guard(wallet).await))
    }
}

/// Milliseconds since the Unix epoch (local clock).
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// An [`Outbox`] in process memory: what an adapter uses when it is given no store. It keeps
/// one process from building a send twice, not two processes.
#[derive(Debug, Default)]
pub struct MemoryOutbox {
    sent: Mutex<HashMap<SendKey, SignedTx>>,
}

impl MemoryOutbox {
    /// An empty outbox.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, HashMap<SendKey, SignedTx>>, StoreError> {
        self.sent
            .lock()
            .map_err(|_| StoreError::Backend("memory outbox poisoned".into()))
    }
}

#[async_trait]
impl Outbox for MemoryOutbox {
    async fn signed(&self, key: &SendKey) -> Result<Option<SignedTx>, StoreError> {
        Ok(self.lock()?.get(key).cloned())
    }

    async fn record_signed(&self, keys: &[SendKey], tx: &SignedTx) -> Result<(), StoreError> {
        let mut sent = self.lock()?;
        if let Some(key) = keys.iter().find(|k| sent.contains_key(k)) {
            return Err(StoreError::AlreadyRecorded { swap: key.swap });
        }
        for key in keys {
            sent.insert(*key, tx.clone());
        }
        Ok(())
    }

    async fn record_each(&self, items: &[(SendKey, SignedTx)]) -> Result<Vec<SendKey>, StoreError> {
        let mut sent = self.lock()?;
        let taken: Vec<SendKey> = items
            .iter()
            .map(|(k, _)| *k)
            .filter(|k| sent.contains_key(k))
            .collect();
        if taken.is_empty() {
            for (key, tx) in items {
                sent.insert(*key, tx.clone());
            }
        }
        Ok(taken)
    }

    async fn discard(&self, keys: &[SendKey], txref: &TxRef) -> Result<usize, StoreError> {
        let mut sent = self.lock()?;
        let mut n = 0;
        for key in keys {
            if sent.get(key).is_some_and(|s| &s.txref == txref) {
                sent.remove(key);
                n += 1;
            }
        }
        Ok(n)
    }
}

/// An adapter's handle on its outbox (by default a [`MemoryOutbox`] of its own).
#[derive(Clone)]
pub struct SharedOutbox(pub std::sync::Arc<dyn Outbox>);

impl Default for SharedOutbox {
    fn default() -> Self {
        Self(std::sync::Arc::new(MemoryOutbox::new()))
    }
}

impl std::fmt::Debug for SharedOutbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedOutbox")
    }
}

impl std::ops::Deref for SharedOutbox {
    type Target = dyn Outbox;
    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}
