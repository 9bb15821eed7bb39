//! Every integration test of this crate in one binary (one link instead of one per file).
#![allow(missing_docs)]

mod common;

#[path = "batched_funding.rs"]
mod batched_funding;
#[path = "claim.rs"]
mod claim;
#[path = "claim_replaces_refund.rs"]
mod claim_replaces_refund;
#[path = "external_wallet.rs"]
mod external_wallet;
#[path = "extract_secret.rs"]
mod extract_secret;
#[path = "fee_bump.rs"]
mod fee_bump;
#[path = "harness.rs"]
mod harness;
#[path = "lock_verification.rs"]
mod lock_verification;
#[path = "missing_node.rs"]
mod missing_node;
#[path = "refund.rs"]
mod refund;
#[path = "refund_bump.rs"]
mod refund_bump;
#[path = "reorg.rs"]
mod reorg;
#[path = "reorg_claim.rs"]
mod reorg_claim;
#[path = "restart.rs"]
mod restart;
#[path = "wrong_preimage.rs"]
mod wrong_preimage;
