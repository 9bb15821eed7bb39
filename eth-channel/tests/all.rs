//! Every integration test of eth-channel in one binary (one link instead of one per file).
#![allow(missing_docs)]

mod common;

#[path = "abandoned.rs"]
mod abandoned;
#[path = "announce.rs"]
mod announce;
#[path = "anvil.rs"]
mod anvil;
#[path = "batch.rs"]
mod batch;
#[path = "cancel.rs"]
mod cancel;
#[path = "crossing.rs"]
mod crossing;
#[path = "erc20.rs"]
mod erc20;
#[path = "matching.rs"]
mod matching;
#[path = "nonces.rs"]
mod nonces;
#[path = "prop.rs"]
mod prop;
#[path = "rail.rs"]
mod rail;
#[path = "refused.rs"]
mod refused;
#[path = "reject.rs"]
mod reject;
#[path = "resume.rs"]
mod resume;
#[path = "sealed.rs"]
mod sealed;
#[path = "session.rs"]
mod session;
#[path = "topup.rs"]
mod topup;
#[path = "watcher.rs"]
mod watcher;
