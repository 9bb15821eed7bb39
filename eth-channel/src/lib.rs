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
//! Proposals may cross (both parties propose the same version at once): side A's wins, both
//! abandon that version and the change of each goes through at the next ones, A's first;
//! every party still signs at most one state per version (see [`machine`] for the rule and
//! why the version is skipped rather than reused).
//!
//! [`session`] carries the messages over swap-net's encrypted transport: a [`Node`] holds a
//! party's channels with any number of peers and routes by channel id.
//!
//! [`watcher`] acts on chain for a party's channels (answers stale closes, enforces locks,
//! settles, takes credits), recording each transaction in the store before its broadcast.
//!
//! [`rail`] is the engine's channel rail: a [`swap_core::Rail`] whose locks are channel
//! updates with the swap's counterparty.
//!
//! A new channel is announced to its peer with `Open` / `Opened` ([`Node::announce`],
//! [`Node::accept_opens`]): the receiver checks it is party B, the chain, the contract and that
//! the channel is open at a final block, and reads the deposits from the chain.
//!
//! Not here yet: the hashlock registry checks on received locks (`ChannelRef::revealed_at`,
//! reuse across channels).

mod announce;
mod chain_view;
mod guard;
pub mod machine;
pub mod msg;
pub mod rail;
mod rules;
pub mod session;
pub mod sqlite;
pub mod store;
pub mod watcher;

pub use machine::{Config, Event, Party, PartyError, Step};
pub use msg::{DecodeError, Message, OpenMsg, OpenedMsg, Proposal, RejectCode, UpdateKind};
pub use rail::{ChannelRail, RailSecrets};
pub use rules::{hashlock_of, Reject};
pub use session::{
    ChainView, Node, RpcChain, SessionConfig, SessionError, FINAL_BLOCK_READ_FOR, REREAD_GAP,
};
pub use sqlite::SqliteChannelStore;
pub use store::{ChannelStore, CoSigned, Saved, StoreError};
pub use watcher::{Action, Report, SecretMap, Secrets, Skip, WatchConfig, WatchError, Watcher};
