//! xswap ln-adapter: an embedded Lightning node (LDK 0.2) on a Bitcoin-family node.
//!
//! - [`config`]: settings and the seed (redacted; the Lightning keys come from a tagged hash
//!   of it).
//! - [`node`]: [`LnNode`], assembled from LDK's parts, loaded from its data directory, driven
//!   by tokio tasks (background processor, block follower, Lightning port).
//! - `ops`: peers, channels, hold invoices and payments.
//! - [`events`]: LDK's events handled (funding from the node wallet, sweeps) and reported as
//!   [`LnEvent`].
//! - `ledger`: preimages of payments we sent and payments held for us, recorded before LDK
//!   counts their events handled.
//! - [`handshake`]: the node's chain bound in the Lightning handshake (a Litecoin node and a
//!   Bitcoin node refuse each other).
//! - `reconnect`: lost peers reconnected (not one refused for its chain; an unreachable one
//!   less and less often).
//! - `follower`: every block of the node's main chain to LDK, in order, reorgs as
//!   disconnections; Litecoin's HogEx skipped.
//! - `io`: logging, broadcasting and fee estimates through the node; closes and claims pay to
//!   wallet addresses.
//! - [`invoice`]: BOLT11 hold invoices (Bitcoin), the one-line payment target (Litecoin),
//!   what closes still return to the wallet.
//! - [`rail`]: [`LnRail`], the Lightning rail (a swap leg as a payment to a hold invoice).
//! - `router`: LDK's router with the final CLTV pinned (no random shadow offset).
//! - `wallet`: the funding transaction (segwit inputs only).
//! - `anchors`: anchor channels' fees at a force close paid from the node wallet (LDK's fee
//!   bumps over it), and the wallet's reserve for them.
//! - `sealed`: the node's store (LDK's files and our ledger) sealed at rest with the
//!   installation's key ([`LnConfig::store_key`]).
//!
//! Channels are unannounced. Anchor outputs are negotiated on Bitcoin and off on Litecoin, whose
//! relay policy refuses them ([`LnConfig::anchors`]; see the project's `channels.md`).

mod anchors;
pub mod config;
pub mod error;
pub mod events;
mod follower;
mod gate;
pub mod handshake;
pub mod invoice;
mod io;
mod kv;
mod ledger;
pub mod node;
mod ops;
pub mod rail;
mod reconnect;
mod room;
mod router;
mod sealed;
mod types;
mod wallet;

pub use anchors::{AnchorReserve, ReserveShort};
pub use config::{LnConfig, Seed, MIN_TIMER_TICK};
pub use error::LnError;
pub use events::LnEvent;
pub use follower::MAX_REORG_DEPTH;
pub use gate::ManagerWrites;
pub use kv::DB_FILE;
pub use ledger::HeldPayment;
pub use lightning::ln::types::ChannelId;
pub use node::ticker::TimerTicks;
pub use node::LnNode;
pub use ops::{ChannelInfo, InboundHtlc, PaymentTarget, MAX_PAY_CLTV_BLOCKS};
pub use rail::LnRail;
pub use types::MAX_PENDING_MONITOR_UPDATES;
