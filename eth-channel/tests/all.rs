//! Every integration test of eth-channel in one binary (one link instead of one per file).
#![allow(missing_docs)]

mod common;

#[path = "announce.rs"]
mod announce;
#[path = "anvil.rs"]
mod anvil;
#[path = "crossing.rs"]
mod crossing;
#[path = "prop.rs"]
mod prop;
#[path = "rail.rs"]
mod rail;
#[path = "reject.rs"]
mod reject;
#[path = "resume.rs"]
mod resume;
#[path = "session.rs"]
mod session;
#[path = "topup.rs"]
mod topup;
#[path = "watcher.rs"]
mod watcher;
