//! The watcher's transactions in the channel store: each one is recorded, signed, before it is
//! broadcast, so that a restarted process or a second one on the same file broadcasts the
//! recorded transaction again or waits for it instead of sending another.
//!
//! One row per signed transaction. An intent (what the transaction does, e.g.
//! `update:<channel>:<version>`) has at most one row `pending` or `mined` per sender (a unique
//! partial index): a second process that decided the same thing finds the first one's row; a
//! `mined` intent is never sent again (unless its receipt vanished in a reorg: `reorged`). A
//! nonce has at most one `pending` row per sender, so two processes never sign two
//! transactions with one nonce. A transaction that reverted, or whose nonce went to another
//! transaction (`obsolete`), frees its intent: the watcher decides again from the chain.
//!
//! Nonces are gap-free: a new transaction takes the node's pending count or the nonce after
//! the highest pending record, whichever is higher, so it may be above a recorded one the
//! node has not seen yet. A recorded transaction the node refuses for good while its nonce
//! is unused is therefore never just dropped: it is replaced, in one SQLite transaction, by
//! a transfer of nothing to ourselves at the same nonce (intent `fill:<nonce>`, current
//! fees), so the transactions above it are mined (see `SqliteChannelStore::fill_tx`).

use alloy::primitives::{Address, B256};
use rusqlite::{params, OptionalExtension};
use swap_core::store::sqlite::CachedSql;

use swap_core::store::StoreKey;

use crate::sqlite::{
    backend, raw_of_store, raw_to_store, refuse_if_sealed, unix_now, SqliteChannelStore,
};
use crate::store::StoreError;

/// Migration 2 of the channel store.
pub(crate) const MIGRATION: &str = "CREATE TABLE watcher_txs (
        seq         INTEGER PRIMARY KEY AUTOINCREMENT,
        sender      BLOB NOT NULL,
        intent      TEXT NOT NULL,
        channel_id  BLOB,
        nonce       INTEGER NOT NULL,
        tx_hash     BLOB NOT NULL UNIQUE,
        raw         BLOB NOT NULL,
        status      TEXT NOT NULL
            CHECK (status IN ('pending', 'mined', 'reverted', 'obsolete', 'reorged', 'replaced')),
        detail      TEXT,
        recorded_at INTEGER NOT NULL,
        recorded_block INTEGER NOT NULL,
        finished_at INTEGER
    );
    CREATE UNIQUE INDEX watcher_txs_intent ON watcher_txs(sender, intent)
        WHERE status IN ('pending', 'mined');
    CREATE UNIQUE INDEX watcher_txs_nonce ON watcher_txs(sender, nonce)
        WHERE status = 'pending';";

/// Where a recorded transaction stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxStatus {
    /// Recorded; maybe broadcast, not mined yet.
    Pending,
    /// Mined and successful.
    Mined,
    /// Mined and reverted.
    Reverted,
    /// Never mined: its nonce went to another transaction.
    Obsolete,
    /// Was mined, its receipt vanished (a reorg).
    Reorged,
    /// Replaced by a transaction with the same nonce and higher fees (it may still be the one
    /// mined: then it ends [`TxStatus::Mined`] and its replacement obsolete).
    Replaced,
}

impl TxStatus {
    fn as_str(self) -> &'static str {
        match self {
            TxStatus::Pending => "pending",
            TxStatus::Mined => "mined",
            TxStatus::Reverted => "reverted",
            TxStatus::Obsolete => "obsolete",
            TxStatus::Reorged => "reorged",
            TxStatus::Replaced => "replaced",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => TxStatus::Pending,
            "mined" => TxStatus::Mined,
            "reverted" => TxStatus::Reverted,
            "obsolete" => TxStatus::Obsolete,
            "reorged" => TxStatus::Reorged,
            "replaced" => TxStatus::Replaced,
            _ => return None,
        })
    }
}

/// A transaction the watcher recorded.
#[derive(Clone, PartialEq, Eq)]
pub struct TxRecord {
    /// Order of recording.
    pub seq: i64,
    /// The sending account.
    pub sender: Address,
    /// What it does (see [`crate::watcher::Action::intent`]).
    pub intent: String,
    /// The channel it concerns, if one.
    pub channel: Option<B256>,
    /// Its nonce.
    pub nonce: u64,
    /// The chain's head when it was recorded (for fee bumps).
    pub recorded_block: u64,
    /// Its hash.
    pub hash: B256,
    /// The signed transaction (EIP-2718).
    pub raw: Vec<u8>,
    /// Where it stands.
    pub status: TxStatus,
    /// Why it ended so (a revert, the nonce taken), if known.
    pub detail: Option<String>,
}

impl std::fmt::Debug for TxRecord {
    /// The signed bytes are left out: a reveal's carry its preimage before it is public.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxRecord")
            .field("seq", &self.seq)
            .field("sender", &self.sender)
            .field("intent", &self.intent)
            .field("channel", &self.channel)
            .field("nonce", &self.nonce)
            .field("recorded_block", &self.recorded_block)
            .field("hash", &self.hash)
            .field("raw", &format_args!("<{} bytes>", self.raw.len()))
            .field("status", &self.status)
            .field("detail", &self.detail)
            .finish()
    }
}

/// What [`SqliteChannelStore::record_tx`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Recorded {
    /// Recorded: broadcast it.
    New,
    /// The intent already has a pending or mined transaction (this one is dropped).
    IntentTaken(Box<TxRecord>),
    /// Another pending transaction of this sender has this nonce (sign again).
    NonceTaken,
}

const COLUMNS: &str =
    "seq, sender, intent, channel_id, nonce, tx_hash, raw, status, detail, recorded_block";

fn row_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<TxRecordRow> {
    Ok(TxRecordRow {
        seq: r.get(0)?,
        sender: r.get(1)?,
        intent: r.get(2)?,
        channel: r.get(3)?,
        nonce: r.get(4)?,
        hash: r.get(5)?,
        raw: r.get(6)?,
        status: r.get(7)?,
        detail: r.get(8)?,
        recorded_block: r.get(9)?,
    })
}

struct TxRecordRow {
    seq: i64,
    sender: Vec<u8>,
    intent: String,
    channel: Option<Vec<u8>>,
    nonce: i64,
    hash: Vec<u8>,
    raw: Vec<u8>,
    status: String,
    detail: Option<String>,
    recorded_block: i64,
}

fn bad(detail: impl Into<String>) -> StoreError {
    StoreError::Backend(format!("watcher_txs: {}", detail.into()))
}

impl TryFrom<TxRecordRow> for TxRecord {
    type Error = StoreError;
    fn try_from(r: TxRecordRow) -> Result<Self, StoreError> {
        let b256 = |v: &[u8]| (v.len() == 32).then(|| B256::from_slice(v));
        Ok(TxRecord {
            seq: r.seq,
            sender: (r.sender.len() == 20)
                .then(|| Address::from_slice(&r.sender))
                .ok_or_else(|| bad("sender length"))?,
            intent: r.intent,
            channel: match r.channel {
                Some(c) => Some(b256(&c).ok_or_else(|| bad("channel length"))?),
                None => None,
            },
            nonce: u64::try_from(r.nonce).map_err(|_| bad("negative nonce"))?,
            hash: b256(&r.hash).ok_or_else(|| bad("hash length"))?,
            raw: r.raw,
            status: TxStatus::parse(&r.status).ok_or_else(|| bad("status"))?,
            detail: r.detail,
            recorded_block: u64::try_from(r.recorded_block).map_err(|_| bad("negative block"))?,
        })
    }
}

fn i64_of(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| bad(format!("{v} too large")))
}

/// The records a statement selects, their signed bytes opened with `key` when sealed.
fn collect(
    stmt: &mut rusqlite::Statement<'_>,
    p: impl rusqlite::Params,
    key: Option<&StoreKey>,
) -> Result<Vec<TxRecord>, StoreError> {
    let rows = stmt.query_map(p, row_of).map_err(backend)?;
    let mut out = vec![];
    for r in rows {
        let mut row = r.map_err(backend)?;
        row.raw = raw_of_store(key, &row.hash, std::mem::take(&mut row.raw))?;
        out.push(TxRecord::try_from(row)?);
    }
    Ok(out)
}

impl SqliteChannelStore {
    /// Every transaction the watcher recorded for `sender`, oldest first.
    pub fn watcher_txs(&self, sender: Address) -> Result<Vec<TxRecord>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM watcher_txs WHERE sender = ?1 ORDER BY seq"
            ))
            .map_err(backend)?;
        collect(&mut stmt, params![sender.as_slice()], self.key())
    }

    /// The pending transactions of `sender`, by nonce.
    pub(crate) fn pending_txs(&self, sender: Address) -> Result<Vec<TxRecord>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM watcher_txs WHERE sender = ?1 AND status = 'pending'
                 ORDER BY nonce"
            ))
            .map_err(backend)?;
        collect(&mut stmt, params![sender.as_slice()], self.key())
    }

    /// The pending or mined transaction of `intent`, if any.
    pub(crate) fn live_tx(
        &self,
        sender: Address,
        intent: &str,
    ) -> Result<Option<TxRecord>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM watcher_txs WHERE sender = ?1 AND intent = ?2
                 AND status IN ('pending', 'mined')"
            ))
            .map_err(backend)?;
        Ok(
            collect(&mut stmt, params![sender.as_slice(), intent], self.key())?
                .into_iter()
                .next(),
        )
    }

    /// How many transactions of `sender` whose intent starts with `prefix` ended `status`.
    pub(crate) fn count_txs(
        &self,
        sender: Address,
        prefix: &str,
        status: TxStatus,
    ) -> Result<u64, StoreError> {
        let conn = self.lock()?;
        let n: i64 = conn
            .query_row_cached(
                "SELECT COUNT(*) FROM watcher_txs WHERE sender = ?1 AND status = ?2
                 AND substr(intent, 1, length(?3)) = ?3",
                params![sender.as_slice(), status.as_str(), prefix],
                |r| r.get(0),
            )
            .map_err(backend)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// The highest nonce of a pending transaction of `sender`.
    pub(crate) fn max_pending_nonce(&self, sender: Address) -> Result<Option<u64>, StoreError> {
        let conn = self.lock()?;
        let n: Option<i64> = conn
            .query_row_cached(
                "SELECT MAX(nonce) FROM watcher_txs WHERE sender = ?1 AND status = 'pending'",
                params![sender.as_slice()],
                |r| r.get(0),
            )
            .map_err(backend)?;
        n.map(|n| u64::try_from(n).map_err(|_| bad("negative nonce")))
            .transpose()
    }

    /// Records a signed transaction before its broadcast, unless its intent already has a
    /// pending or mined one, or its nonce a pending one (atomic: one SQLite transaction).
    pub(crate) fn record_tx(&self, rec: &TxRecord) -> Result<Recorded, StoreError> {
        let mut conn = self.lock()?;
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(backend)?;
        let live = {
            let mut stmt = tx
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM watcher_txs WHERE sender = ?1 AND intent = ?2
                     AND status IN ('pending', 'mined')"
                ))
                .map_err(backend)?;
            collect(
                &mut stmt,
                params![rec.sender.as_slice(), rec.intent],
                self.key(),
            )?
        };
        if let Some(r) = live.into_iter().next() {
            return Ok(Recorded::IntentTaken(Box::new(r)));
        }
        let nonce_taken = tx
            .query_row_cached(
                "SELECT 1 FROM watcher_txs WHERE sender = ?1 AND nonce = ?2 AND status = 'pending'",
                params![rec.sender.as_slice(), i64_of(rec.nonce)?],
                |_| Ok(()),
            )
            .optional()
            .map_err(backend)?
            .is_some();
        if nonce_taken {
            return Ok(Recorded::NonceTaken);
        }
        insert(&tx, self.key(), rec)?;
        tx.commit().map_err(backend)?;
        Ok(Recorded::New)
    }

    /// Replaces pending transaction `old` by `new` (same sender, intent and nonce, higher
    /// fees): `old` becomes `replaced`, `new` pending. False when `old` was no longer pending
    /// (another process ended or replaced it first; nothing is written).
    pub(crate) fn replace_tx(&self, old: B256, new: &TxRecord) -> Result<bool, StoreError> {
        self.end_pending_and_insert(
            old,
            "UPDATE watcher_txs SET status = 'replaced', finished_at = ?1
             WHERE tx_hash = ?2 AND status = 'pending'",
            new,
        )
    }

    /// Ends pending transaction `old`, which the node refuses and whose nonce is not used,
    /// `obsolete`, and records `filler` (same sender and nonce) pending in its place, in one
    /// SQLite transaction: the nonce always has a pending record until it is used, so no
    /// later nonce waits behind a gap. False when `old` was no longer pending (nothing is
    /// written).
    pub(crate) fn fill_tx(&self, old: B256, filler: &TxRecord) -> Result<bool, StoreError> {
        self.end_pending_and_insert(
            old,
            "UPDATE watcher_txs SET status = 'obsolete', finished_at = ?1,
             detail = 'refused by the node; its nonce is filled by a transfer to self'
             WHERE tx_hash = ?2 AND status = 'pending'",
            filler,
        )
    }

    /// Ends pending transaction `old` with `end` (an UPDATE of `?1` finished_at, `?2` the
    /// hash, only while pending) and records `new` pending, in one SQLite transaction. False
    /// when `old` was no longer pending (nothing is written).
    fn end_pending_and_insert(
        &self,
        old: B256,
        end: &str,
        new: &TxRecord,
    ) -> Result<bool, StoreError> {
        let mut conn = self.lock()?;
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(backend)?;
        let n = tx
            .execute_cached(end, params![unix_now(), old.as_slice()])
            .map_err(backend)?;
        if n != 1 {
            return Ok(false);
        }
        insert(&tx, self.key(), new)?;
        tx.commit().map_err(backend)?;
        Ok(true)
    }

    /// The transactions of `sender` with `nonce` that were replaced.
    pub(crate) fn replaced_txs(
        &self,
        sender: Address,
        nonce: u64,
    ) -> Result<Vec<TxRecord>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM watcher_txs WHERE sender = ?1 AND nonce = ?2
                 AND status = 'replaced'"
            ))
            .map_err(backend)?;
        collect(
            &mut stmt,
            params![sender.as_slice(), i64_of(nonce)?],
            self.key(),
        )
    }

    /// Ends transaction `hash` with `to` if it is `from` (pending, normally; mined when a
    /// reorg took it away; replaced when the replaced one was mined after all). False when it
    /// was not (another process ended it first).
    pub(crate) fn finish_tx(
        &self,
        hash: B256,
        from: TxStatus,
        to: TxStatus,
        detail: Option<&str>,
    ) -> Result<bool, StoreError> {
        let conn = self.lock()?;
        let n = conn
            .execute_cached(
                "UPDATE watcher_txs SET status = ?1, detail = ?2, finished_at = ?3
                 WHERE tx_hash = ?4 AND status = ?5",
                params![
                    to.as_str(),
                    detail,
                    unix_now(),
                    hash.as_slice(),
                    from.as_str()
                ],
            )
            .map_err(backend)?;
        Ok(n == 1)
    }
}

/// Records `rec` pending, its signed bytes sealed with `key` (refused without one in a store
/// sealed meanwhile by another process: a reveal's bytes carry its preimage).
fn insert(
    tx: &rusqlite::Transaction<'_>,
    key: Option<&StoreKey>,
    rec: &TxRecord,
) -> Result<(), StoreError> {
    refuse_if_sealed(tx, key)?;
    let raw = raw_to_store(key, rec.hash, &rec.raw)?;
    tx.execute_cached(
        "INSERT INTO watcher_txs (sender, intent, channel_id, nonce, tx_hash, raw, status,
         recorded_at, recorded_block) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?8)",
        params![
            rec.sender.as_slice(),
            rec.intent,
            rec.channel.as_ref().map(|c| c.as_slice().to_vec()),
            i64_of(rec.nonce)?,
            rec.hash.as_slice(),
            raw,
            unix_now(),
            i64_of(rec.recorded_block)?
        ],
    )
    .map_err(backend)?;
    Ok(())
}
