-- api 1: API keys (hashed) with their rate-limit bucket, idempotency keys of created swaps,
-- and a numbered log of swap state changes for the event stream. Applied after pg-store's own
-- migrations (it reads their `swap_states` table); every server on the database shares these.

CREATE TABLE api_keys (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT NOT NULL,
    -- SHA-256 of the key (32 random bytes): the key itself is never stored.
    key_sha256  BYTEA NOT NULL UNIQUE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at  TIMESTAMPTZ,
    -- Token bucket, shared by every server: tokens left at refilled_at (capped at the burst
    -- when read; a new key starts full).
    tokens      DOUBLE PRECISION NOT NULL DEFAULT 1e9,
    refilled_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- A swap created under an idempotency key: the same key again with the same body answers the
-- same swap; with another body it is refused. swap_id is NULL while the creation is under way.
CREATE TABLE api_idempotency (
    key_id      BIGINT NOT NULL REFERENCES api_keys(id),
    idem_key    TEXT NOT NULL,
    body_sha256 BYTEA NOT NULL,
    swap_id     BYTEA,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (key_id, idem_key)
);

-- Every state a swap entered, numbered in commit order: the event stream's ids. The trigger
-- takes a transaction-level advisory lock before numbering, so an event is never committed
-- after one with a higher number (a reader resuming after id n misses nothing).
CREATE TABLE api_events (
    n       BIGSERIAL PRIMARY KEY,
    swap_id BYTEA NOT NULL,
    seq     BIGINT NOT NULL,
    UNIQUE (swap_id, seq)
);

CREATE FUNCTION api_record_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7363411001);
    INSERT INTO api_events(swap_id, seq) VALUES (NEW.swap_id, NEW.seq);
    RETURN NULL;
END
$$;

CREATE TRIGGER api_events_on_state AFTER INSERT ON swap_states
    FOR EACH ROW EXECUTE FUNCTION api_record_event();

-- States stored before this migration, oldest first.
INSERT INTO api_events(swap_id, seq)
    SELECT swap_id, seq FROM swap_states ORDER BY entered_at, swap_id, seq;
