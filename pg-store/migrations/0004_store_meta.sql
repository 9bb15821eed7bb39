-- 4: facts about the store itself. `key_check` (present once the store's secrets are sealed
-- with an installation's key, see swap_core::store::seal) tells that key from any other.
CREATE TABLE store_meta (
    name  TEXT PRIMARY KEY,
    value BYTEA NOT NULL
);
