//! Every integration test of this crate in one binary (one link instead of one per file).
//! Each test starts its own regtest node (litecoind, or bitcoind with `BITCOIND_EXE`) and two
//! in-process Lightning nodes on loopback ports.
#![allow(missing_docs)]

mod common;

#[path = "anchors.rs"]
mod anchors;
#[path = "crash_store.rs"]
mod crash_store;
#[path = "fail_back.rs"]
mod fail_back;
#[path = "force_close.rs"]
mod force_close;
#[path = "forward.rs"]
mod forward;
#[path = "garbage.rs"]
mod garbage;
#[path = "pay_both_ways.rs"]
mod pay_both_ways;
#[path = "rail.rs"]
mod rail;
#[path = "rebroadcast.rs"]
mod rebroadcast;
#[path = "reorg.rs"]
mod reorg;
#[path = "restart.rs"]
mod restart;
#[path = "restart_held.rs"]
mod restart_held;
#[path = "sealed.rs"]
mod sealed;
#[path = "ticks.rs"]
mod ticks;
#[path = "wallet_coins.rs"]
mod wallet_coins;
