//! xswap btc-adapter: Bitcoin and Litecoin legs of a swap.
//!
//! - [`htlc`]: the P2WSH HTLC compiled by miniscript, its descriptor and addresses.
//! - [`tx`]: claim and refund builders (RBF, fee cap, miniscript-computed witness sizes).
//! - [`keys`]: per-swap keys from the installation seed (BIP-32).
//! - [`network`]: bech32 prefixes for Bitcoin and Litecoin networks.
//! - [`rpc`]: JSON-RPC client (Bitcoin Core 0.21 and 28+ subset).
//! - [`scanner`]: one block/mempool scan for every watched HTLC, reorg-aware.
//! - [`chain`]: [`BtcChain`], the `swap_core::Rail` implementation.
//!
//! The regtest node harness is in the `xswap-devnet` crate, so that this library does not
//! carry it.

pub mod chain;
pub mod htlc;
pub mod keys;
pub mod network;
pub mod rpc;
pub mod scanner;
pub mod tx;

pub use chain::{BtcChain, BtcConfig, FeeConfig, PaymentRequest, Payout};
pub use htlc::{Htlc, HtlcError};
pub use keys::{KeySource, SwapKey};
pub use tx::{build_claim, build_refund, FeePolicy, HtlcOutput, SignedSpend, TxError};
