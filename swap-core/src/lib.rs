//! swap-core: the chain-agnostic atomic swap protocol.
//!
//! - [`types`]: domain newtypes (secrets, hashlocks, heights, amounts that cannot be mixed).
//! - [`params`]: per-chain parameters the expiry rules are computed from.
//! - [`chain`]: the traits chain adapters implement.

pub mod chain;
pub mod driver;
pub mod params;
pub mod types;

pub use chain::{Chain, ChainError, ErrorKind, HtlcParams, HtlcStatus, ObservedLock};
pub use params::{ChainFamily, ChainId, ChainParams, ChainTip, ExpiryKind, Network, Pace};
pub use types::*;
pub mod machine;
pub mod store;
pub mod terms;

pub use driver::{Advanced, Driver, DriverConfig, DriverError, StepReport, SwapTasks};
pub use machine::{initiator, responder, Action, GiveUpReason, LegView, Outcome, Snapshot, Step};
pub use store::{Role, StoreError, SwapRecord, SwapState, SwapStore};
pub use terms::{
    ExpiryMatch, Leg, LegTerms, LockMismatch, SafetyPolicy, SwapTerms, TermsError, Tips,
};
