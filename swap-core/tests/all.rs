//! Every integration test of swap-core in one binary (one link instead of one per file).
#![allow(missing_docs)]

mod sim;

#[path = "driver.rs"]
mod driver;
#[path = "machines.rs"]
mod machines;
#[path = "messages.rs"]
mod messages;
#[path = "rules.rs"]
mod rules;
