//! Ethereum adapter for xswap: the HTLC contract (`contracts/HTLC.sol`), typed alloy bindings
//! generated from its committed artifact, and [`EthChain`], the [`swap_core::rail::Rail`]
//! implementation the swap engine drives.
//!
//! One deployed contract serves every swap. A swap is one storage slot keyed by
//! [`EthHtlc::id`], `keccak256(abi.encode(hashlock, amount, token, sender, recipient, expiry))`,
//! which holds 1 while the swap is locked. Claimed and refunded swaps are told apart by the
//! contract's `Claimed` / `Refunded` events, which [`EthChain`] reads with one log filter for
//! every watched swap.
//!
//! [`channel`] names, checks and signs the states of the two-party payment channel contract
//! (`contracts/Channel.sol`), whose bindings are [`bindings::Channel`].
//!
//! Test harnesses (anvil, test tokens, the gas measurements) are in the `xswap-devnet` crate, so
//! that this library does not carry them.

pub mod bindings;
mod chain;
pub mod channel;
mod counting;
mod error;
pub mod funds;
mod htlc;
mod nonce;
pub mod recover;
mod scan;
pub mod tx;

pub use chain::{deploy_htlc, known_chain_id, revert_reason, EthChain, EthConfig, FoundLock};
pub use error::{scrub_urls, EthError};
pub use htlc::{decode_revert, EthHtlc, Revert};
pub use nonce::NonceManager;
