//! Every test of the PostgreSQL store in one binary (one link), on throwaway clusters
//! (`pg_store::testkit`): one shared by the tests running together, each in a database of its
//! own, and one of its own for the test that stops the server. A missing PostgreSQL fails
//! loudly, never skips.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "conformance.rs"]
mod conformance;
#[path = "corrupt.rs"]
mod corrupt;
#[path = "down.rs"]
mod down;
#[path = "lease.rs"]
mod lease;
#[path = "migrations.rs"]
mod migrations;
#[path = "seal.rs"]
mod seal;
#[path = "spend_guard.rs"]
mod spend_guard;
#[path = "testkit.rs"]
mod testkit;
