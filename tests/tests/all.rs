//! Every integration test of this crate in one binary (one link instead of one per file).
#![allow(missing_docs)]

#[path = "channel_cli_swap.rs"]
mod channel_cli_swap;
#[path = "channel_swaps.rs"]
mod channel_swaps;
#[path = "claim_at_last_moment.rs"]
mod claim_at_last_moment;
#[path = "cli_by_hand.rs"]
mod cli_by_hand;
#[path = "happy_btc_to_eth.rs"]
mod happy_btc_to_eth;
#[path = "happy_erc20_to_btc.rs"]
mod happy_erc20_to_btc;
#[path = "happy_eth_to_btc.rs"]
mod happy_eth_to_btc;
#[path = "hostile_peer.rs"]
mod hostile_peer;
#[path = "initiator_never_claims.rs"]
mod initiator_never_claims;
#[path = "ln_cli.rs"]
mod ln_cli;
#[path = "node_restart_mid_swap.rs"]
mod node_restart_mid_swap;
#[path = "process_killed_at_every_step.rs"]
mod process_killed_at_every_step;
#[path = "responder_never_locks.rs"]
mod responder_never_locks;
#[path = "wrong_lock_amount.rs"]
mod wrong_lock_amount;
