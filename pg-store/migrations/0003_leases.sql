-- 3: leases of swaps to workers (pg_store::lease). A swap is leased to one worker at a time,
-- until expires_at (the database's clock); each lease taken gets a new token from one
-- sequence, so tokens only grow, and a write made under a token that is not the swap's
-- current one is refused (fencing).
CREATE SEQUENCE swap_lease_tokens;
CREATE TABLE swap_leases (
    swap_id    BYTEA PRIMARY KEY REFERENCES swaps(id),
    worker     TEXT NOT NULL,
    token      BIGINT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX swap_leases_by_expiry ON swap_leases(expires_at);
