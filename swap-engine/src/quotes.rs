//! A [`QuoteBook`] in SQLite: a maker's open quotes survive a restart, and several processes
//! (an exchange's workers) on one database file share them, so a proposal may reach another
//! worker than its quote. The bounds of [`quote_room`](crate::maker::quote_room) are applied in
//! one `IMMEDIATE` transaction per hold, and a quote is taken by one `DELETE ... RETURNING`: two
//! workers can never both use one quote.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use swap_core::{Amount, Asset, RailId, SwapId};
use swap_net::{Peer, PeerKey};

use crate::maker::{
    lapsed, now_ms, Quote, QuoteBook, MAX_PENDING_QUOTES, MAX_QUOTES_PER_IP, MAX_QUOTES_PER_KEY,
    QUOTE_TTL,
};

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS maker_quotes (
    swap_id   BLOB PRIMARY KEY NOT NULL,
    key_index INTEGER NOT NULL,
    give      TEXT NOT NULL,
    want      TEXT NOT NULL,
    peer_key  BLOB NOT NULL,
    peer_ip   TEXT NOT NULL,
    at_ms     INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS maker_quotes_by_key ON maker_quotes(peer_key);
CREATE INDEX IF NOT EXISTS maker_quotes_by_ip ON maker_quotes(peer_ip);";

/// What a maker answers when its quote table cannot be read (never the database's text).
const UNAVAILABLE: &str = "maker cannot take swaps right now";

/// Open quotes in a SQLite file (the swap store's, or another).
#[derive(Debug)]
pub struct SqliteQuotes {
    conn: Mutex<Connection>,
}

/// Errors opening the quote table.
#[derive(Debug, thiserror::Error)]
#[error("quote book: {0}")]
pub struct QuotesError(#[from] rusqlite::Error);

type Leg = (RailId, Asset, Amount);

fn encode(leg: &Leg) -> String {
    serde_json::to_string(leg).unwrap_or_default()
}

fn lapsed_before(now: u64) -> i64 {
    i64::try_from(now.saturating_sub(QUOTE_TTL.as_millis() as u64)).unwrap_or(i64::MAX)
}

impl SqliteQuotes {
    /// Opens (creating if needed) the quote table in the SQLite file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, QuotesError> {
        let conn = Connection::open(path)?;
        swap_core::store::sqlite::configure(&conn, std::time::Duration::from_secs(10))?;
        // Not a numbered migration: the table lives in the swap store's file, whose
        // `user_version` counts the swap store's own migrations.
        conn.execute_batch(SCHEMA)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn room_in(
        tx: &rusqlite::Transaction<'_>,
        id: &SwapId,
        peer: &Peer,
        now: u64,
    ) -> rusqlite::Result<Option<&'static str>> {
        tx.execute(
            "DELETE FROM maker_quotes WHERE at_ms <= ?1",
            params![lapsed_before(now)],
        )?;
        let count = |sql: &str, p: &dyn rusqlite::ToSql| -> rusqlite::Result<usize> {
            tx.query_row(sql, [p], |r| r.get::<_, i64>(0))
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
        };
        if count(
            "SELECT COUNT(*) FROM maker_quotes WHERE swap_id = ?1",
            &&id.0[..],
        )? > 0
        {
            return Ok(Some("swap id already quoted"));
        }
        let by_key = count(
            "SELECT COUNT(*) FROM maker_quotes WHERE peer_key = ?1",
            &&peer.key.0[..],
        )?;
        let by_ip = count(
            "SELECT COUNT(*) FROM maker_quotes WHERE peer_ip = ?1",
            &peer.ip.to_string(),
        )?;
        if by_key >= MAX_QUOTES_PER_KEY || by_ip >= MAX_QUOTES_PER_IP {
            return Ok(Some(
                "too many open quotes from you: propose or wait for them to lapse",
            ));
        }
        let total: i64 = tx.query_row("SELECT COUNT(*) FROM maker_quotes", [], |r| r.get(0))?;
        if usize::try_from(total).unwrap_or(usize::MAX) >= MAX_PENDING_QUOTES {
            return Ok(Some("too many open quotes, try again later"));
        }
        Ok(None)
    }

    fn hold_in(&self, id: SwapId, quote: &Quote) -> rusqlite::Result<Result<(), &'static str>> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if let Some(why) = Self::room_in(&tx, &id, &quote.peer, now_ms())? {
            return Ok(Err(why));
        }
        tx.execute(
            "INSERT INTO maker_quotes (swap_id, key_index, give, want, peer_key, peer_ip, at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                &id.0[..],
                quote.key_index,
                encode(&quote.give),
                encode(&quote.want),
                &quote.peer.key.0[..],
                quote.peer.ip.to_string(),
                i64::try_from(quote.at_ms).unwrap_or(i64::MAX),
            ],
        )?;
        tx.commit()?;
        Ok(Ok(()))
    }

    fn take_in(&self, id: &SwapId) -> rusqlite::Result<Option<Quote>> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let row = conn
            .query_row(
                "DELETE FROM maker_quotes WHERE swap_id = ?1
                 RETURNING key_index, give, want, peer_key, peer_ip, at_ms",
                params![&id.0[..]],
                |r| {
                    Ok((
                        r.get::<_, u32>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Vec<u8>>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, i64>(5)?,
                    ))
                },
            )
            .optional()?;
        let Some((key_index, give, want, key, ip, at_ms)) = row else {
            return Ok(None);
        };
        // A row that cannot be read back serves no proposal.
        let quote = (|| {
            Some(Quote {
                key_index,
                give: serde_json::from_str(&give).ok()?,
                want: serde_json::from_str(&want).ok()?,
                peer: Peer {
                    key: PeerKey(key.try_into().ok()?),
                    ip: ip.parse().ok()?,
                },
                at_ms: u64::try_from(at_ms).ok()?,
            })
        })();
        Ok(quote.filter(|q| !lapsed(q, now_ms())))
    }
}

#[async_trait::async_trait]
impl QuoteBook for SqliteQuotes {
    async fn room(&self, id: &SwapId, peer: &Peer) -> Option<&'static str> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let answer = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .and_then(|tx| {
                let why = Self::room_in(&tx, id, peer, now_ms())?;
                tx.commit()?;
                Ok(why)
            });
        match answer {
            Ok(why) => why,
            Err(e) => {
                tracing::warn!(error = %e, "quote book unavailable");
                Some(UNAVAILABLE)
            }
        }
    }

    async fn hold(&self, id: SwapId, quote: Quote) -> Result<(), &'static str> {
        match self.hold_in(id, &quote) {
            Ok(answer) => answer,
            Err(e) => {
                tracing::warn!(error = %e, "quote book unavailable");
                Err(UNAVAILABLE)
            }
        }
    }

    async fn take(&self, id: &SwapId) -> Option<Quote> {
        match self.take_in(id) {
            Ok(q) => q,
            Err(e) => {
                tracing::warn!(error = %e, "quote book unavailable");
                None
            }
        }
    }
}
