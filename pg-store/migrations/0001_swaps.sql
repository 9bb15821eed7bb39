-- 1: swaps, their append-only state history, the transactions sent for them, counters.
-- The record and state columns hold the JSON of swap_core::store::rows (as in SQLite).
CREATE TABLE swaps (
    n           BIGSERIAL NOT NULL UNIQUE,  -- insertion order
    id          BYTEA PRIMARY KEY,
    role        TEXT NOT NULL,
    record_json TEXT NOT NULL,
    secret      BYTEA,
    created_at  BIGINT NOT NULL,
    finished    BOOLEAN NOT NULL DEFAULT FALSE,
    hashlock    TEXT NOT NULL,
    -- What the swap will still lock (a maker's reserve, `to_lock`): our leg's chain and
    -- asset, its amount in base units (decimal text: wei exceed 64 bits), and whether our
    -- lock is still ahead.
    lock_on     TEXT NOT NULL,
    lock_amount TEXT NOT NULL,
    lock_ahead  BOOLEAN NOT NULL
);
CREATE INDEX swaps_unfinished ON swaps(created_at, n) WHERE NOT finished;
-- Unique: two swaps sharing a hashlock can share one counter-lock, and with several workers
-- a check before the insert (hashlock_in_use) does not exclude a second one made meanwhile.
CREATE UNIQUE INDEX swaps_by_hashlock ON swaps(hashlock);
CREATE INDEX swaps_to_lock ON swaps(lock_on) WHERE lock_ahead;

-- Each swap's states, numbered 1, 2, ... without gaps: an append after state k inserts k + 1,
-- so two writers that read the same state cannot both append.
CREATE TABLE swap_states (
    swap_id    BYTEA NOT NULL REFERENCES swaps(id),
    seq        BIGINT NOT NULL CHECK (seq > 0),
    entered_at BIGINT NOT NULL,
    state_json TEXT NOT NULL,
    PRIMARY KEY (swap_id, seq)
);

CREATE TABLE swap_txs (
    n       BIGSERIAL PRIMARY KEY,
    swap_id BYTEA NOT NULL REFERENCES swaps(id),
    tx_json TEXT NOT NULL,
    leg     TEXT NOT NULL,
    kind    TEXT NOT NULL,
    txref   TEXT NOT NULL,
    UNIQUE (swap_id, leg, kind, txref)
);

CREATE TABLE counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL);
INSERT INTO counters(name, value) VALUES ('key_index', 0);
