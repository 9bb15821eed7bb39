//! [`ChannelStore`] in one SQLite file: WAL, full sync, versioned migrations, append-only
//! state history (triggers refuse updates and deletes).

use std::path::Path;
use std::sync::{Arc, Mutex};

use alloy::primitives::{Address, B256};
use rusqlite::{params, Connection, OptionalExtension};
use swap_core::store::sqlite::CachedSql;

use eth_adapter::channel::{ChannelRef, Params, Side, State};
use swap_core::store::sqlite::{configure, migrate};
use swap_core::store::StoreKey;

use crate::msg::{Proposal, UpdateKind, WireSig, WireState};
use crate::store::{ChannelStore, CoSigned, Saved, StoreError};

mod rows;
mod seal;
mod watch;

pub(crate) use seal::{raw_of_store, raw_to_store, refuse_if_sealed};

use rows::{
    abandoned_above, cosigned_of, exists, insert, is_abandoned, latest_version, pending_above,
    proposal_of, row_at, state_row,
};

/// Schema migrations, applied in order; `PRAGMA user_version` is the number applied.
/// Never edit one that has shipped: append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: channels and their signed states.
    "CREATE TABLE channels (
        id               BLOB PRIMARY KEY NOT NULL,
        chain_id         INTEGER NOT NULL,
        contract         BLOB NOT NULL,
        party_a          BLOB NOT NULL,
        party_b          BLOB NOT NULL,
        token            BLOB NOT NULL,
        challenge_period INTEGER NOT NULL,
        salt             BLOB NOT NULL,
        side             TEXT NOT NULL CHECK (side IN ('A', 'B')),
        initial_json     TEXT NOT NULL,
        created_at       INTEGER NOT NULL
    );
    CREATE TABLE channel_states (
        seq         INTEGER PRIMARY KEY AUTOINCREMENT,
        channel_id  BLOB NOT NULL REFERENCES channels(id),
        version     INTEGER NOT NULL,
        role        TEXT NOT NULL CHECK (role IN ('proposed', 'cosigned')),
        state_json  TEXT NOT NULL,
        kind_json   TEXT,
        sig_a       TEXT,
        sig_b       TEXT,
        recorded_at INTEGER NOT NULL,
        UNIQUE (channel_id, version, role)
    );
    CREATE TRIGGER channel_states_no_update BEFORE UPDATE ON channel_states
        BEGIN SELECT RAISE(ABORT, 'channel_states is append-only'); END;
    CREATE TRIGGER channel_states_no_delete BEFORE DELETE ON channel_states
        BEGIN SELECT RAISE(ABORT, 'channel_states is append-only'); END;",
    // 2: the watcher's transactions, recorded (signed) before their broadcast.
    crate::watcher::outbox::MIGRATION,
    // 3: abandoned proposals (crossing proposals) and who each channel's peer is.
    "CREATE TABLE channel_abandoned (
        channel_id  BLOB NOT NULL REFERENCES channels(id),
        version     INTEGER NOT NULL,
        recorded_at INTEGER NOT NULL,
        PRIMARY KEY (channel_id, version)
    );
    CREATE TRIGGER channel_abandoned_no_update BEFORE UPDATE ON channel_abandoned
        BEGIN SELECT RAISE(ABORT, 'channel_abandoned is append-only'); END;
    CREATE TRIGGER channel_abandoned_no_delete BEFORE DELETE ON channel_abandoned
        BEGIN SELECT RAISE(ABORT, 'channel_abandoned is append-only'); END;
    CREATE TABLE channel_peers (
        channel_id  BLOB PRIMARY KEY NOT NULL REFERENCES channels(id),
        peer_key    BLOB NOT NULL,
        addr        TEXT,
        updated_at  INTEGER NOT NULL
    );",
    // 4: the block a channel's events start at or after (where its watch starts).
    watch::MIGRATION,
    // 5: facts about the store itself: the key check of a sealed store (see `seal.rs`).
    seal::MIGRATION,
];

/// Who a channel's peer is on the encrypted transport ([`SqliteChannelStore::peer`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRecord {
    /// Its static Noise key.
    pub key: [u8; 32],
    /// Where to dial it, if we do.
    pub addr: Option<String>,
}

/// A [`ChannelStore`] in a SQLite file. Its secrets (claims' preimages, the watcher's
/// signed transactions) are sealed at rest when it is opened with a key
/// ([`SqliteChannelStore::open_with_key`]; see `sqlite/seal.rs`).
#[derive(Clone)]
pub struct SqliteChannelStore {
    conn: Arc<Mutex<Connection>>,
    key: Option<Arc<StoreKey>>,
}

impl std::fmt::Debug for SqliteChannelStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteChannelStore")
            .field("sealed", &self.key.is_some())
            .finish_non_exhaustive()
    }
}

pub(crate) fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn corrupt(channel: B256, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        channel,
        detail: e.to_string(),
    }
}

pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn to_i64(channel: B256, v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| corrupt(channel, format!("{v} too large")))
}

fn side_str(s: Side) -> &'static str {
    match s {
        Side::A => "A",
        Side::B => "B",
    }
}

impl SqliteChannelStore {
    /// [`ChannelStore::save_proposal`] within `tx`.
    fn save_proposal_in(
        &self,
        tx: &rusqlite::Transaction<'_>,
        id: B256,
        p: &Proposal,
    ) -> Result<(), StoreError> {
        if !exists(tx, id)? {
            return Err(StoreError::UnknownChannel(id));
        }
        let v = p.state.version;
        if latest_version(tx, id)?.is_some_and(|l| v <= l) {
            return Err(StoreError::Conflict {
                channel: id,
                detail: format!("proposal of version {v} at or below the latest co-signed"),
            });
        }
        if is_abandoned(tx, id, v)? {
            return Err(StoreError::Conflict {
                channel: id,
                detail: format!("our proposal of version {v} is abandoned"),
            });
        }
        if let Some(row) = row_at(tx, id, v, "proposed")? {
            if proposal_of(self.key(), id, &row)? == *p {
                return Ok(());
            }
            return Err(StoreError::Duplicate {
                channel: id,
                version: v,
            });
        }
        insert(
            tx,
            self.key(),
            id,
            v,
            "proposed",
            &json(&p.state)?,
            Some(&p.kind),
            (Some(json(&p.sig)?), None),
        )?;
        Ok(())
    }

    /// Opens (creating and migrating) the store at `path`, without a key: secrets are
    /// written in clear (tests, and library users who choose so); a store whose secrets are
    /// sealed is refused with [`StoreError::KeyRequired`]. The CLI opens its channel store
    /// with [`SqliteChannelStore::open_with_key`].
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path).map_err(backend)?;
        Self::init(conn, None)
    }

    /// Opens (creating and migrating) the store at `path` with the installation's key
    /// (`Keystore::store_key` in the CLI): every secret written is sealed with it, and a
    /// store holding clear secrets (written without a key, or by an older build) has them
    /// sealed in place now. A store sealed with another key is refused with
    /// [`StoreError::WrongKey`], nothing read or written.
    pub fn open_with_key(path: &Path, key: StoreKey) -> Result<Self, StoreError> {
        let conn = Connection::open(path).map_err(backend)?;
        Self::init(conn, Some(key))
    }

    /// A store in memory (tests).
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory().map_err(backend)?, None)
    }

    /// A store in memory whose secrets are sealed with `key`, as a file's would be.
    pub fn in_memory_with_key(key: StoreKey) -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory().map_err(backend)?, Some(key))
    }

    fn init(mut conn: Connection, key: Option<StoreKey>) -> Result<Self, StoreError> {
        configure(&conn, std::time::Duration::from_secs(5)).map_err(backend)?;
        // Overwritten rows (a clear secret sealed in place) are zeroed on disk.
        conn.pragma_update(None, "secure_delete", "ON")
            .map_err(backend)?;
        migrate(&mut conn, MIGRATIONS).map_err(backend)?;
        seal::seal_at_open(&mut conn, key.as_ref())?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            key: key.map(Arc::new),
        })
    }

    pub(crate) fn key(&self) -> Option<&StoreKey> {
        self.key.as_deref()
    }

    /// Every channel id recorded, oldest first.
    pub fn channel_ids(&self) -> Result<Vec<B256>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn
            .prepare_cached("SELECT id FROM channels ORDER BY created_at, rowid")
            .map_err(backend)?;
        let rows = stmt
            .query_map([], |r| r.get::<_, Vec<u8>>(0))
            .map_err(backend)?;
        let mut out = vec![];
        for r in rows {
            let v = r.map_err(backend)?;
            if v.len() != 32 {
                return Err(StoreError::Backend("channel id length".into()));
            }
            out.push(B256::from_slice(&v));
        }
        Ok(out)
    }

    /// Records (or replaces) who channel `id`'s peer is on the encrypted transport: its
    /// static key and, if we dial it, its address.
    pub fn set_peer(&self, id: B256, key: [u8; 32], addr: Option<&str>) -> Result<(), StoreError> {
        let conn = self.lock()?;
        if !exists(&conn, id)? {
            return Err(StoreError::UnknownChannel(id));
        }
        conn.execute_cached(
            "INSERT INTO channel_peers (channel_id, peer_key, addr, updated_at)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (channel_id) DO UPDATE SET peer_key = ?2, addr = ?3, updated_at = ?4",
            params![id.as_slice(), key.as_slice(), addr, unix_now()],
        )
        .map_err(backend)?;
        Ok(())
    }

    /// Channel `id`'s peer (see [`SqliteChannelStore::set_peer`]).
    pub fn peer(&self, id: B256) -> Result<Option<PeerRecord>, StoreError> {
        let conn = self.lock()?;
        let row: Option<(Vec<u8>, Option<String>)> = conn
            .query_row_cached(
                "SELECT peer_key, addr FROM channel_peers WHERE channel_id = ?1",
                params![id.as_slice()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(backend)?;
        row.map(|(k, a)| {
            let k: [u8; 32] = k.try_into().map_err(|_| corrupt(id, "peer key length"))?;
            Ok(PeerRecord { key: k, addr: a })
        })
        .transpose()
    }

    pub(crate) fn lock(&self) -> Result<std::sync::MutexGuard<'_, Connection>, StoreError> {
        self.conn
            .lock()
            .map_err(|_| StoreError::Backend("store mutex poisoned".into()))
    }
}

fn json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(backend)
}

impl SqliteChannelStore {
    fn save_cosigned_with(
        &self,
        id: B256,
        s: &CoSigned,
        kind: Option<&UpdateKind>,
    ) -> Result<(), StoreError> {
        let mut conn = self.lock()?;
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(backend)?;
        if !exists(&tx, id)? {
            return Err(StoreError::UnknownChannel(id));
        }
        let v = s.state.version;
        if v == 0 {
            return Err(StoreError::Conflict {
                channel: id,
                detail: "version 0 is never signed".into(),
            });
        }
        if let Some(row) = row_at(&tx, id, v, "cosigned")? {
            if cosigned_of(id, &row)? == *s {
                return Ok(());
            }
            return Err(StoreError::Duplicate {
                channel: id,
                version: v,
            });
        }
        if latest_version(&tx, id)?.is_some_and(|l| v <= l) {
            return Err(StoreError::Conflict {
                channel: id,
                detail: format!("co-signed version {v} at or below the latest"),
            });
        }
        if is_abandoned(&tx, id, v)? {
            return Err(StoreError::Conflict {
                channel: id,
                detail: format!("version {v} is abandoned: never co-signed"),
            });
        }
        let ws = WireState::new(&s.state, &s.locks);
        if let Some(row) = row_at(&tx, id, v, "proposed")? {
            if proposal_of(self.key(), id, &row)?.state != ws {
                return Err(StoreError::Duplicate {
                    channel: id,
                    version: v,
                });
            }
        }
        let sig = |s: &Option<eth_adapter::channel::Sig>| {
            s.as_ref().map(|s| json(&WireSig::from(s))).transpose()
        };
        insert(
            &tx,
            self.key(),
            id,
            v,
            "cosigned",
            &json(&ws)?,
            kind,
            (sig(&s.sig_a)?, sig(&s.sig_b)?),
        )?;
        tx.commit().map_err(backend)
    }
}

/// [`ChannelStore::abandon_proposal`] within `tx`.
fn abandon_in(tx: &rusqlite::Transaction<'_>, id: B256, version: u64) -> Result<(), StoreError> {
    if !exists(tx, id)? {
        return Err(StoreError::UnknownChannel(id));
    }
    if is_abandoned(tx, id, version)? {
        return Ok(());
    }
    if latest_version(tx, id)?.is_some_and(|l| version <= l) {
        return Err(StoreError::Conflict {
            channel: id,
            detail: format!("abandoning version {version}, at or below the latest co-signed"),
        });
    }
    if row_at(tx, id, version, "proposed")?.is_none() {
        return Err(StoreError::Conflict {
            channel: id,
            detail: format!("no proposal of ours at version {version} to abandon"),
        });
    }
    tx.execute_cached(
        "INSERT INTO channel_abandoned (channel_id, version, recorded_at) VALUES (?1, ?2, ?3)",
        params![id.as_slice(), to_i64(id, version)?, unix_now()],
    )
    .map_err(backend)?;
    Ok(())
}

impl ChannelStore for SqliteChannelStore {
    fn abandoned_proposals(&self, id: B256) -> Result<Vec<(u64, UpdateKind)>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT s.version, s.kind_json FROM channel_states s
                 JOIN channel_abandoned a ON a.channel_id = s.channel_id AND a.version = s.version
                 WHERE s.channel_id = ?1 AND s.role = 'proposed' AND s.version >
                   (SELECT COALESCE(MAX(version), 0) FROM channel_states
                    WHERE channel_id = ?1 AND role = 'cosigned')
                 ORDER BY s.version",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map(params![id.as_slice()], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, Option<String>>(1)?))
            })
            .map_err(backend)?;
        let mut out = vec![];
        for r in rows {
            let (v, kind) = r.map_err(backend)?;
            let v = u64::try_from(v).map_err(|e| corrupt(id, e))?;
            let kind = kind.ok_or_else(|| corrupt(id, "a proposal without its change"))?;
            let kind = seal::kind_of(self.key(), id, v, &kind)?;
            out.push((v, kind));
        }
        Ok(out)
    }

    fn record_peer(
        &self,
        channel: B256,
        key: [u8; 32],
        addr: Option<&str>,
    ) -> Result<(), StoreError> {
        self.set_peer(channel, key, addr)
    }

    fn record_open_block(&self, channel: B256, block: u64) -> Result<(), StoreError> {
        self.set_open_block(channel, block)
    }

    fn create_channel(
        &self,
        chan: &ChannelRef,
        me: Side,
        initial: &State,
    ) -> Result<(), StoreError> {
        let id = chan.id();
        let mut conn = self.lock()?;
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(backend)?;
        if exists(&tx, id)? {
            return Err(StoreError::Exists(id));
        }
        let p = &chan.params;
        tx.execute_cached(
            "INSERT INTO channels (id, chain_id, contract, party_a, party_b, token,
             challenge_period, salt, side, initial_json, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                id.as_slice(),
                to_i64(id, chan.chain_id)?,
                chan.contract.as_slice(),
                p.a.as_slice(),
                p.b.as_slice(),
                p.token.as_slice(),
                to_i64(id, p.challengePeriod)?,
                p.salt.as_slice(),
                side_str(me),
                json(&WireState::new(initial, &[]))?,
                unix_now()
            ],
        )
        .map_err(backend)?;
        tx.commit().map_err(backend)
    }

    fn save_proposal(&self, id: B256, p: &Proposal) -> Result<(), StoreError> {
        let mut conn = self.lock()?;
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(backend)?;
        self.save_proposal_in(&tx, id, p)?;
        tx.commit().map_err(backend)
    }

    fn abandon_and_propose(&self, id: B256, version: u64, p: &Proposal) -> Result<(), StoreError> {
        let mut conn = self.lock()?;
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(backend)?;
        abandon_in(&tx, id, version)?;
        self.save_proposal_in(&tx, id, p)?;
        tx.commit().map_err(backend)
    }

    fn save_cosigned(&self, id: B256, s: &CoSigned) -> Result<(), StoreError> {
        self.save_cosigned_with(id, s, None)
    }

    fn save_cosigned_kind(
        &self,
        id: B256,
        s: &CoSigned,
        kind: &UpdateKind,
    ) -> Result<(), StoreError> {
        self.save_cosigned_with(id, s, Some(kind))
    }

    fn updates_from(
        &self,
        id: B256,
        from: u64,
    ) -> Result<Vec<(CoSigned, Option<UpdateKind>)>, StoreError> {
        let conn = self.lock()?;
        // Our own proposal of a co-signed version is that state (`save_cosigned` checks it),
        // so its kind is the state's when the co-signed row has none.
        let mut stmt = conn
            .prepare_cached(
                "SELECT c.state_json, COALESCE(c.kind_json, p.kind_json), c.sig_a, c.sig_b,
                 c.version FROM channel_states c
                 LEFT JOIN channel_states p ON p.channel_id = c.channel_id
                      AND p.version = c.version AND p.role = 'proposed'
                 WHERE c.channel_id = ?1 AND c.role = 'cosigned' AND c.version >= ?2
                 ORDER BY c.version",
            )
            .map_err(backend)?;
        let from = i64::try_from(from).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(params![id.as_slice(), from], state_row)
            .map_err(backend)?;
        let mut out = vec![];
        for r in rows {
            let row = r.map_err(backend)?;
            let kind = row
                .kind_json
                .as_deref()
                .map(|k| seal::kind_of(self.key(), id, row.version, k))
                .transpose()?;
            out.push((cosigned_of(id, &row)?, kind));
        }
        Ok(out)
    }

    fn abandon_proposal(&self, id: B256, version: u64) -> Result<(), StoreError> {
        let mut conn = self.lock()?;
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(backend)?;
        abandon_in(&tx, id, version)?;
        tx.commit().map_err(backend)
    }

    fn load(&self, id: B256) -> Result<Option<Saved>, StoreError> {
        let conn = self.lock()?;
        type ChanRow = (
            i64,
            Vec<u8>,
            Vec<u8>,
            Vec<u8>,
            Vec<u8>,
            i64,
            Vec<u8>,
            String,
            String,
        );
        let row: Option<ChanRow> = conn
            .query_row_cached(
                "SELECT chain_id, contract, party_a, party_b, token, challenge_period, salt,
                 side, initial_json FROM channels WHERE id = ?1",
                params![id.as_slice()],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                        r.get(7)?,
                        r.get(8)?,
                    ))
                },
            )
            .optional()
            .map_err(backend)?;
        let Some((chain_id, contract, a, b, token, period, salt, side, initial)) = row else {
            return Ok(None);
        };
        let addr = |v: &[u8]| {
            (v.len() == 20)
                .then(|| Address::from_slice(v))
                .ok_or_else(|| corrupt(id, "address length"))
        };
        let params = Params {
            a: addr(&a)?,
            b: addr(&b)?,
            token: addr(&token)?,
            challengePeriod: u64::try_from(period).map_err(|e| corrupt(id, e))?,
            salt: (salt.len() == 32)
                .then(|| B256::from_slice(&salt))
                .ok_or_else(|| corrupt(id, "salt length"))?,
        };
        let chan = ChannelRef::new(
            params,
            u64::try_from(chain_id).map_err(|e| corrupt(id, e))?,
            addr(&contract)?,
        );
        if chan.id() != id {
            return Err(corrupt(id, "the parameters do not hash to the id"));
        }
        let me = match side.as_str() {
            "A" => Side::A,
            "B" => Side::B,
            other => return Err(corrupt(id, format!("side {other}"))),
        };
        let latest = match latest_version(&conn, id)? {
            Some(v) => {
                let row = row_at(&conn, id, v, "cosigned")?
                    .ok_or_else(|| corrupt(id, "latest row vanished"))?;
                cosigned_of(id, &row)?
            }
            None => {
                let ws: WireState = serde_json::from_str(&initial).map_err(|e| corrupt(id, e))?;
                CoSigned {
                    state: ws.state(),
                    locks: vec![],
                    sig_a: None,
                    sig_b: None,
                }
            }
        };
        let above = latest.state.version;
        let pending = match pending_above(&conn, id, above)? {
            Some(v) => Some(proposal_of(
                self.key(),
                id,
                &row_at(&conn, id, v, "proposed")?
                    .ok_or_else(|| corrupt(id, "pending row vanished"))?,
            )?),
            None => None,
        };
        let abandoned = abandoned_above(&conn, id, above)?;
        Ok(Some(Saved {
            chan,
            me,
            latest,
            pending,
            abandoned,
        }))
    }

    fn history(&self, id: B256) -> Result<Vec<CoSigned>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT state_json, kind_json, sig_a, sig_b, version FROM channel_states
                 WHERE channel_id = ?1 AND role = 'cosigned' ORDER BY version",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map(params![id.as_slice()], state_row)
            .map_err(backend)?;
        let mut out = vec![];
        for r in rows {
            out.push(cosigned_of(id, &r.map_err(backend)?)?);
        }
        Ok(out)
    }
}
