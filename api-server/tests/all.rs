//! Every test of the API server in one binary (one link): the server on a real PostgreSQL
//! (`pg_store::testkit`, one cluster shared by the tests running together, a database each),
//! called over HTTP; one test creates a real swap on regtest nodes (litecoind or bitcoind,
//! anvil) through the API. Missing PostgreSQL or nodes fail loudly, never skip.
//!
//! Every answer a test reads goes through [`harness::Api::call`], which checks that its
//! status is in the OpenAPI document for the operation and that every error body matches the
//! document's `ApiError` schema.
#![allow(
    missing_docs,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

#[path = "binary.rs"]
mod binary;
#[path = "cluster.rs"]
mod cluster;
#[path = "failover.rs"]
mod failover;
#[path = "harness.rs"]
mod harness;
#[path = "http.rs"]
mod http;
#[path = "swap.rs"]
mod swap;
