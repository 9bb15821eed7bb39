//! swap-core: the chain-agnostic atomic swap protocol.
//!
//! - [`types`]: domain newtypes (secrets, hashlocks, heights, amounts that cannot be mixed).
//! - [`params`]: per-chain parameters the expiry rules are computed from.
//! - [`chain`]: the traits chain adapters implement.
//! - [`terms`]: swap terms and the expiry rules 1-3 of protocol.md.
//! - [`machine`]: the initiator and responder state machines (pure functions).
//! - [`messages`]: versioned, size-limited messages between the parties.
//! - [`store`]: the swap store trait, SQLite and in-memory implementations.
//! - [`driver`]: runs and resumes swaps: persist each state, then act.

pub mod chain;
pub mod driver;
pub mod params;
pub mod types;

pub use chain::{Chain, ChainError, ErrorKind, HtlcParams, HtlcStatus, ObservedLock};
pub use params::{ChainFamily, ChainId, ChainParams, ChainTip, ExpiryKind, Network, Pace};
pub use types::*;
pub mod machine;
pub mod messages;
pub mod store;
pub mod terms;

pub use driver::{Advanced, Driver, DriverConfig, DriverError, StepReport, SwapTasks};
pub use machine::{initiator, responder, Action, GiveUpReason, LegView, Outcome, Snapshot, Step};
pub use messages::{check_proposal, Envelope, Message, MessageError, ProposalError};
pub use store::{Role, StoreError, SwapRecord, SwapState, SwapStore};
pub use terms::{
    ExpiryMatch, Leg, LegTerms, LockMismatch, SafetyPolicy, SwapTerms, TermsError, Tips,
};
