//! The pieces of the `xswap` tool that other programs and tests can use.

pub mod keystore;
