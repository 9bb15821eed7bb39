//! swap-core: the chain-agnostic atomic swap protocol.
//!
//! - [`types`]: domain newtypes (secrets, hashlocks, heights, amounts that cannot be mixed).
//! - [`params`]: per-rail parameters the expiry rules are computed from ([`RailId`], [`Finality`]).
//! - [`rail`]: the seam every rail (on-chain HTLC, channel HTLC) implements.
//! - [`terms`]: swap terms and the expiry rules 1-3 of `docs/protocol.md`.
//! - [`machine`]: the initiator and responder state machines (pure functions).
//! - [`messages`]: versioned, size-limited messages between the parties.
//! - [`store`]: the swap store trait, SQLite and in-memory implementations.
//! - [`driver`]: runs and resumes swaps: persist each state, then act.
//! - [`runtime`]: the ticked runtime: per tick one observation per rail, actions grouped per rail.
//!
//! # Example: terms that keep both parties safe, and the first step of the initiator
//!
//! ```
//! use swap_core::*;
//!
//! let btc = ChainParams::for_chain(ChainId::new(ChainFamily::Bitcoin, Network::Mainnet));
//! let eth = ChainParams::for_chain(ChainId::new(ChainFamily::Ethereum, Network::Mainnet));
//! let tips = Tips {
//!     x: ChainTip { height: Height(850_000), time: Timestamp(1_750_000_000) },
//!     y: ChainTip { height: Height(22_000_000), time: Timestamp(1_750_000_000) },
//! };
//! let secret = Preimage::random().unwrap();
//! // The initiator sells 0.01 BTC for 0.25 ETH; expiries are derived so rules 1-3 hold.
//! let terms = SwapTerms::with_default_expiries(
//!     SwapId::random().unwrap(),
//!     secret.hashlock(),
//!     LegTerms {
//!         params: btc,
//!         asset: Asset::Btc,
//!         amount: Amount::Sats(Sats(1_000_000)),
//!         sender: Account::PublicKey(PublicKeyBytes([2; 33])),
//!         recipient: Account::PublicKey(PublicKeyBytes([3; 33])),
//!         expiry: Expiry::Height(Height(0)),
//!         rail_data: None,
//!     },
//!     LegTerms {
//!         params: eth,
//!         asset: Asset::Eth,
//!         amount: Amount::Wei(Wei(250_000_000_000_000_000)),
//!         sender: Account::Evm(EvmAddress([4; 20])),
//!         recipient: Account::Evm(EvmAddress([5; 20])),
//!         expiry: Expiry::Time(Timestamp(0)),
//!         rail_data: None,
//!     },
//!     SafetyPolicy::default(),
//!     tips,
//! )
//! .expect("default expiries satisfy the rules");
//! assert!(terms.check_rule2(tips).is_ok());
//!
//! // Nothing on chain yet: the initiator's machine says "lock on X" (after persisting).
//! let snapshot = Snapshot {
//!     x: LegView { tip: tips.x, htlc: HtlcStatus::Absent },
//!     y: LegView { tip: tips.y, htlc: HtlcStatus::Absent },
//! };
//! let step = initiator::next(&terms, &secret, &initiator::State::Negotiated, &snapshot);
//! assert_eq!(step.state, initiator::State::Locking);
//! assert_eq!(step.actions, vec![Action::Lock { leg: Leg::X }]);
//! ```

pub mod changes;
pub mod driver;
pub mod params;
pub mod rail;
pub mod runtime;
pub mod shared_read;
pub mod types;

pub use params::{
    ChainFamily, ChainId, ChainParams, ChainTip, ExpiryKind, Finality, Network, Pace, RailId,
    RailKind, RefundMode,
};
pub use rail::{
    Cause, ChainError, ErrorKind, Funds, HtlcParams, HtlcStatus, Observation, ObservedLock, Rail,
    RailBody, RailData, RailOp, RouteHintHop,
};
pub use types::*;
pub mod machine;
pub mod messages;
pub mod store;
pub mod terms;

pub use changes::{ChangeFeed, ChangeSubscription, Changed};
pub use driver::{Advanced, Driver, DriverConfig, DriverError, StepReport, SwapTasks};
pub use machine::{initiator, responder, Action, GiveUpReason, LegView, Outcome, Snapshot, Step};
pub use messages::{check_proposal, AcceptPolicy, Envelope, Message, MessageError, ProposalError};
pub use store::{Role, SentTx, StoreError, SwapRecord, SwapState, SwapStore, TxKind};
pub use terms::{
    ExpiryMatch, Leg, LegTerms, LockMismatch, SafetyPolicy, SwapTerms, TermsError, Tips,
};
