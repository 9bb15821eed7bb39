//! xswap btc-adapter: Bitcoin and Litecoin legs of a swap.
//!
//! - [`htlc`]: the P2WSH HTLC compiled by miniscript, its descriptor and addresses.
//! - [`tx`]: claim and refund builders (RBF, fee cap, miniscript-computed witness sizes).
//! - [`keys`]: per-swap keys from the installation seed (BIP-32).
//! - [`network`]: bech32 prefixes for Bitcoin and Litecoin networks.

pub mod htlc;
pub mod keys;
pub mod network;
pub mod regtest;
pub mod rpc;
pub mod tx;

pub use htlc::{Htlc, HtlcError};
pub use keys::{KeySource, SwapKey};
pub use tx::{build_claim, build_refund, FeePolicy, HtlcOutput, SignedSpend, TxError};
