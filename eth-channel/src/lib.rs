//! Ethereum payment channels, the off-chain part (issue 10): the update messages both parties
//! exchange ([`msg`]), the per-party state machine that builds, checks and signs states
//! ([`Party`]), and where a party keeps what it signed ([`ChannelStore`],
//! [`SqliteChannelStore`]).
//!
//! The contract is `eth-adapter/contracts/Channel.sol`; signing and the contract's own checks
//! are [`eth_adapter::channel::ChannelRef`]'s. This crate adds what the contract leaves to the
//! parties: every update is one stated change ([`msg::UpdateKind`]) that the receiver
//! rebuilds from its latest co-signed state and compares with what it is asked to sign;
//! versions go up by exactly one; a party signs one state per version and persists it before
//! anything leaves (see [`Party::commit`]).
//!
//! Proposals must not cross: a party with a proposal pending refuses the peer's (`Busy`),
//! and a refused proposal stays pending (it is signed, so no other state may take its
//! version); it can only be sent again ([`Party::resend`]) or the channel closed on chain.
//! Callers take turns (one proposer at a time) until version skipping after a refusal is
//! designed.
//!
//! [`watcher`] acts on chain for a party's channels (answers stale closes, enforces locks,
//! settles, takes credits), recording each transaction in the store before its broadcast.
//!
//! Not here yet: top-ups,
//! the hashlock registry checks (`ChannelRef::revealed_at`, reuse across channels), carrying
//! the messages over swap-net, and the engine's channel rail.

pub mod machine;
pub mod msg;
mod rules;
pub mod sqlite;
pub mod store;
pub mod watcher;

pub use machine::{Config, Event, Party, PartyError, Step};
pub use msg::{DecodeError, Message, Proposal, RejectCode, UpdateKind};
pub use rules::{hashlock_of, Reject};
pub use sqlite::SqliteChannelStore;
pub use store::{ChannelStore, CoSigned, Saved, StoreError};
pub use watcher::{Action, Report, SecretMap, Secrets, Skip, WatchConfig, WatchError, Watcher};
