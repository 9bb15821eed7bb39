-- 2: the outbox (swap_core::store::outbox): each send's signed transaction, recorded before
-- its broadcast, shared by every worker on the database.
CREATE TABLE outbox_txs (
    txid        TEXT PRIMARY KEY,
    raw         BYTEA NOT NULL,
    recorded_at BIGINT NOT NULL
);
CREATE TABLE outbox (
    swap_id BYTEA NOT NULL,
    rail    TEXT NOT NULL,
    kind    TEXT NOT NULL,
    txid    TEXT NOT NULL REFERENCES outbox_txs(txid),
    PRIMARY KEY (swap_id, rail, kind)
);
CREATE INDEX outbox_by_txid ON outbox(txid);
