//! The pieces of the `xswap` tool that other programs and tests can use.

pub mod amounts;
pub mod channel;
pub mod config;
pub mod demo;
pub mod demo_channels;
/// The engine (the `swap-engine` crate), under the name the CLI's modules use.
pub use swap_engine as engine;
pub mod guard;
pub mod hosted;
pub mod keystore;
pub mod ln;
pub mod offers;
pub mod out;
pub mod recover;
pub mod regtest;
pub mod regtest_channels;
pub mod regtest_cmd;
pub mod status;
