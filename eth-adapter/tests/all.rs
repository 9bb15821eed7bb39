//! Every integration test of this crate in one binary (one link instead of one per file).
#![allow(missing_docs)]

mod common;

#[path = "batch_claim.rs"]
mod batch_claim;
#[path = "channel_contract.rs"]
mod channel_contract;
#[path = "channel_model.rs"]
mod channel_model;
#[path = "concurrent_locks.rs"]
mod concurrent_locks;
#[path = "connect.rs"]
mod connect;
#[path = "contract_model.rs"]
mod contract_model;
#[path = "contract_reverts.rs"]
mod contract_reverts;
#[path = "erc20_swap.rs"]
mod erc20_swap;
#[path = "fee_cap.rs"]
mod fee_cap;
#[path = "gas_targets.rs"]
mod gas_targets;
#[path = "lock_claim.rs"]
mod lock_claim;
#[path = "lock_refund.rs"]
mod lock_refund;
#[path = "mempool_claim_race.rs"]
mod mempool_claim_race;
#[path = "node_restart.rs"]
mod node_restart;
#[path = "outbox.rs"]
mod outbox;
#[path = "preimage_extraction.rs"]
mod preimage_extraction;
#[path = "receipts.rs"]
mod receipts;
#[path = "reorg.rs"]
mod reorg;
#[path = "reverted_receipt.rs"]
mod reverted_receipt;
