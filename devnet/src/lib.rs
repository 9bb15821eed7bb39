//! Local nodes for xswap's tests, demo and benchmarks: a regtest Bitcoin-family node
//! (litecoind, or bitcoind with `BITCOIND_EXE`), anvil with the HTLC contract, the test token
//! contracts, and the HTLC's gas measurements. Kept out of the adapters so that the libraries
//! an exchange ships do not carry process-spawning test code.
//!
//! A missing binary is a loud failure naming its install step, never a skip.

#[cfg(feature = "eth")]
pub mod anvil;
#[cfg(feature = "eth")]
pub mod gas;
pub mod regtest;
#[cfg(feature = "eth")]
pub mod test_contracts;
