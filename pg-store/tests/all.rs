//! Every test of the PostgreSQL store in one binary (one link), each on a throwaway cluster
//! of its own (`pg_store::testkit`): a missing PostgreSQL fails loudly, never skips.
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
#[path = "testkit.rs"]
mod testkit;
