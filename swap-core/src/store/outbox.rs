//! The outbox: every transaction is recorded, signed, before it is broadcast, so that after a
//! crash, or in a second process on the same store, a send is rebroadcast from the store and
//! never built a second time (a second funding of one HTLC would lock the funds twice).
//!
//! A send goes through three steps, each a store write:
//! 1. [`Outbox::claim_sends`]: the writer claims the right to build the sends it names (the
//!    intent). It gets a fencing token per send, or the transaction already signed for it, or
//!    learns that another writer is building it right now.
//! 2. [`Outbox::record_signed`]: the signed transaction and its id, for every send it serves
//!    (one Bitcoin funding serves many locks), written only if every token still holds. A
//!    writer whose claim was taken over (it stalled past `stale_after`) is refused and must not
//!    broadcast.
//! 3. The broadcast. If the node rejects the transaction for good, [`Outbox::release`] forgets
//!    it (nothing was sent, a new one may be built); otherwise it stays, and a later send of the
//!    same HTLC rebroadcasts it instead of building another.
//!
//! A claim that never got a signed transaction (its writer crashed while building) may be taken
//! over once it is older than `stale_after`; the fencing token makes that safe even when the
//! first writer was only slow.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

/// The answer to a claim on one send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendClaim {
    /// This writer may build and sign the send; `token` fences its [`Outbox::record_signed`].
    Granted {
        /// The fencing token.
        token: u64,
    },
    /// A transaction was signed for this send already (by this or another process): broadcast
    /// that one again, never build another.
    Signed(SignedTx),
    /// Another writer claimed it less than `stale_after` ago and has not recorded a
    /// transaction yet: try again later.
    Busy,
}

/// A granted claim: the send and its fencing token.
pub type Grant = (SendKey, u64);

/// Where sends are recorded before broadcast. Implemented by the stores (the same SQLite file
/// as the swaps, so every process on one store shares it) and by [`MemoryOutbox`].
#[async_trait]
pub trait Outbox: Send + Sync {
    /// Claims each send (see [`SendClaim`]); a claim older than `stale_after` without a signed
    /// transaction is taken over with a new token.
    async fn claim_sends(
        &self,
        keys: &[SendKey],
        stale_after: Duration,
    ) -> Result<Vec<SendClaim>, StoreError>;

    /// Records `tx` as the transaction of every granted send, all or nothing: when any token
    /// was taken over meanwhile, nothing is written and the answer is
    /// [`StoreError::Conflict`] (the caller must not broadcast `tx`).
    async fn record_signed(&self, grants: &[Grant], tx: &SignedTx) -> Result<(), StoreError>;

    /// Forgets the claims (and their transaction, if recorded) of sends that were not
    /// broadcast, or whose transaction every node rejected for good: a new one may be built.
    /// A grant whose token was taken over is left alone.
    async fn release(&self, grants: &[Grant]) -> Result<(), StoreError>;

    /// The transaction recorded for a send, if any.
    async fn signed(&self, key: &SendKey) -> Result<Option<SignedTx>, StoreError>;

    /// Forgets the transaction recorded for `key` if it is still `txref`, because it can never
    /// be mined (another transaction spent its inputs or its nonce): a new one may be built.
    /// Answers whether it was forgotten.
    async fn discard(&self, key: &SendKey, txref: &TxRef) -> Result<bool, StoreError>;
}

/// Milliseconds since the Unix epoch (local clock).
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[derive(Debug, Clone)]
struct Row {
    token: u64,
    claimed_at: i64,
    signed: Option<SignedTx>,
}

/// An [`Outbox`] in process memory: what an adapter uses when it is given no store. It keeps
/// one process from building a send twice, not two processes.
#[derive(Debug, Default)]
pub struct MemoryOutbox {
    inner: Mutex<Rows>,
}

/// The last token handed out, and each send's row.
type Rows = (u64, HashMap<SendKey, Row>);

impl MemoryOutbox {
    /// An empty outbox.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Rows>, StoreError> {
        self.inner
            .lock()
            .map_err(|_| StoreError::Backend("memory outbox poisoned".into()))
    }
}

/// The decision of a claim on one send, given its current row (shared by the stores).
pub(crate) fn decide_claim(
    row: Option<(u64, i64, Option<SignedTx>)>,
    now: i64,
    stale_after: Duration,
) -> Option<SendClaim> {
    match row {
        Some((_, _, Some(signed))) => Some(SendClaim::Signed(signed)),
        Some((_, claimed_at, None)) if now - claimed_at < stale_after.as_millis() as i64 => {
            Some(SendClaim::Busy)
        }
        // Absent, or a stale claim: the caller grants a new token.
        _ => None,
    }
}

#[async_trait]
impl Outbox for MemoryOutbox {
    async fn claim_sends(
        &self,
        keys: &[SendKey],
        stale_after: Duration,
    ) -> Result<Vec<SendClaim>, StoreError> {
        let mut guard = self.lock()?;
        let (next, rows) = &mut *guard;
        let now = now_ms();
        Ok(keys
            .iter()
            .map(|key| {
                let row = rows
                    .get(key)
                    .map(|r| (r.token, r.claimed_at, r.signed.clone()));
                decide_claim(row, now, stale_after).unwrap_or_else(|| {
                    *next += 1;
                    rows.insert(
                        *key,
                        Row {
                            token: *next,
                            claimed_at: now,
                            signed: None,
                        },
                    );
                    SendClaim::Granted { token: *next }
                })
            })
            .collect())
    }

    async fn record_signed(&self, grants: &[Grant], tx: &SignedTx) -> Result<(), StoreError> {
        let mut guard = self.lock()?;
        let rows = &mut guard.1;
        for (key, token) in grants {
            let found = rows.get(key).map(|r| r.token).unwrap_or(0);
            if found != *token || rows.get(key).is_some_and(|r| r.signed.is_some()) {
                return Err(StoreError::Conflict {
                    swap: key.swap,
                    expected: *token,
                    found,
                });
            }
        }
        for (key, _) in grants {
            if let Some(r) = rows.get_mut(key) {
                r.signed = Some(tx.clone());
            }
        }
        Ok(())
    }

    async fn release(&self, grants: &[Grant]) -> Result<(), StoreError> {
        let mut guard = self.lock()?;
        for (key, token) in grants {
            if guard.1.get(key).is_some_and(|r| r.token == *token) {
                guard.1.remove(key);
            }
        }
        Ok(())
    }

    async fn signed(&self, key: &SendKey) -> Result<Option<SignedTx>, StoreError> {
        Ok(self.lock()?.1.get(key).and_then(|r| r.signed.clone()))
    }

    async fn discard(&self, key: &SendKey, txref: &TxRef) -> Result<bool, StoreError> {
        let mut guard = self.lock()?;
        let matches = guard
            .1
            .get(key)
            .and_then(|r| r.signed.as_ref())
            .is_some_and(|s| &s.txref == txref);
        if matches {
            guard.1.remove(key);
        }
        Ok(matches)
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
