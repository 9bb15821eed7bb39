//! The channel update messages, transport-agnostic: [`Message::encode`] gives bytes,
//! [`Message::decode`] takes untrusted bytes (size-limited, versioned) and returns a typed
//! error for anything else.
//!
//! Wire format: JSON, `{"v": 1, "msg": {...}}`. Amounts are decimal strings (u128), hashes and
//! addresses 0x-hex strings.

use alloy::primitives::{Address, B256};
use serde::{Deserialize, Serialize};

use eth_adapter::channel::{ChannelRef, Lock, Params, Sig, State};

/// The wire version this crate speaks.
pub const WIRE_VERSION: u32 = 1;
/// The largest message accepted by [`Message::decode`] (a proposal with `MAX_LOCKS` locks is
/// about 16 KiB).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// The longest reject text kept (longer texts are refused on decode, cut on construction).
pub const MAX_REASON_TEXT: usize = 512;

/// Why bytes are not a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// More than [`MAX_MESSAGE_BYTES`].
    #[error("message of {0} bytes, at most {MAX_MESSAGE_BYTES}")]
    TooLarge(usize),
    /// A wire version other than [`WIRE_VERSION`].
    #[error("wire version {0}, expected {WIRE_VERSION}")]
    Version(u32),
    /// Not JSON of the expected shape.
    #[error("malformed message: {0}")]
    Malformed(String),
}

/// A signed state as it travels and is stored: the contract's `State` fields and its locks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireState {
    /// `State.version`.
    pub version: u64,
    /// `State.balanceA`.
    #[serde(with = "dec")]
    pub balance_a: u128,
    /// `State.balanceB`.
    #[serde(with = "dec")]
    pub balance_b: u128,
    /// `State.locksHash`.
    pub locks_hash: B256,
    /// `State.depositA`.
    #[serde(with = "dec")]
    pub deposit_a: u128,
    /// `State.depositB`.
    #[serde(with = "dec")]
    pub deposit_b: u128,
    /// `State.withdrawnA`.
    #[serde(with = "dec")]
    pub withdrawn_a: u128,
    /// `State.withdrawnB`.
    #[serde(with = "dec")]
    pub withdrawn_b: u128,
    /// `State.withdrawExpiry`.
    pub withdraw_expiry: u64,
    /// `State.isFinal`.
    pub is_final: bool,
    /// The pending locks (`locksHash` commits to them).
    pub locks: Vec<WireLock>,
}

/// A lock on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireLock {
    /// `Lock.from`.
    pub from: Address,
    /// `Lock.amount`.
    #[serde(with = "dec")]
    pub amount: u128,
    /// `Lock.hashlock` (sha256 of the preimage).
    pub hashlock: B256,
    /// `Lock.expiry` (unix seconds).
    pub expiry: u64,
}

/// A signature on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireSig {
    /// 27 or 28.
    pub v: u8,
    /// r.
    pub r: B256,
    /// s.
    pub s: B256,
}

impl From<&Lock> for WireLock {
    fn from(l: &Lock) -> Self {
        Self {
            from: l.from,
            amount: l.amount,
            hashlock: l.hashlock,
            expiry: l.expiry,
        }
    }
}

impl From<&WireLock> for Lock {
    fn from(l: &WireLock) -> Self {
        Lock {
            from: l.from,
            amount: l.amount,
            hashlock: l.hashlock,
            expiry: l.expiry,
        }
    }
}

impl From<&Sig> for WireSig {
    fn from(s: &Sig) -> Self {
        Self {
            v: s.v,
            r: s.r,
            s: s.s,
        }
    }
}

impl From<WireSig> for Sig {
    fn from(s: WireSig) -> Self {
        Sig {
            v: s.v,
            r: s.r,
            s: s.s,
        }
    }
}

impl WireState {
    /// The wire form of `state` with `locks`.
    pub fn new(state: &State, locks: &[Lock]) -> Self {
        Self {
            version: state.version,
            balance_a: state.balanceA,
            balance_b: state.balanceB,
            locks_hash: state.locksHash,
            deposit_a: state.depositA,
            deposit_b: state.depositB,
            withdrawn_a: state.withdrawnA,
            withdrawn_b: state.withdrawnB,
            withdraw_expiry: state.withdrawExpiry,
            is_final: state.isFinal,
            locks: locks.iter().map(WireLock::from).collect(),
        }
    }

    /// The contract's `State`.
    pub fn state(&self) -> State {
        State {
            version: self.version,
            balanceA: self.balance_a,
            balanceB: self.balance_b,
            locksHash: self.locks_hash,
            depositA: self.deposit_a,
            depositB: self.deposit_b,
            withdrawnA: self.withdrawn_a,
            withdrawnB: self.withdrawn_b,
            withdrawExpiry: self.withdraw_expiry,
            isFinal: self.is_final,
        }
    }

    /// The contract's `Lock`s.
    pub fn locks(&self) -> Vec<Lock> {
        self.locks.iter().map(Lock::from).collect()
    }
}

/// What an update does, stated by its proposer; the receiver rebuilds the whole new state
/// from its latest co-signed state and this, and refuses any other state. Its `Debug` never
/// shows a claim's preimage (it reaches reject texts and logs).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum UpdateKind {
    /// The proposer locks `lock.amount` of its balance for the other party (appended last).
    Lock {
        /// The new lock; `from` is the proposer.
        lock: WireLock,
    },
    /// The pending lock on `hashlock` pays its receiver, before its expiry.
    Claim {
        /// The lock's hashlock.
        hashlock: B256,
        /// Its preimage: `sha256(preimage) == hashlock`.
        preimage: B256,
    },
    /// The pending lock on `hashlock`, expired, returns to its sender.
    CancelExpired {
        /// The lock's hashlock.
        hashlock: B256,
    },
    /// The proposer withdraws `amount` of its balance on chain, executable until `expiry`.
    Withdraw {
        /// Added to the proposer's withdrawn total, taken from its balance.
        #[serde(with = "dec")]
        amount: u128,
        /// The new `withdrawExpiry`.
        expiry: u64,
    },
    /// The final state: same balances, no locks, `isFinal` (cooperative close).
    Close,
    /// The proposer's on-chain top-up of `amount` (final on chain) is accounted: its deposit
    /// total and its balance grow by it. The receiver checks the deposit against the chain
    /// (`check_next`: never beyond what a final block holds).
    TopUp {
        /// Added to the proposer's deposit total and balance.
        #[serde(with = "dec")]
        amount: u128,
    },
    /// Several locks and claims in one co-signed state, applied in order, each by its own
    /// rule on the state the ones before it made: a channel's swaps share round trips and
    /// signatures instead of queueing for them. From 2 to [`MAX_BATCH`] changes, each a
    /// [`UpdateKind::Lock`] or a [`UpdateKind::Claim`] (cancels go alone: they are judged by
    /// the chain's time and guarded, see `guard`).
    Batch {
        /// The changes, in order.
        changes: Vec<UpdateKind>,
    },
}

/// The most changes in one [`UpdateKind::Batch`].
pub const MAX_BATCH: usize = 32;

impl UpdateKind {
    /// The changes this update makes: a batch's, or the update itself.
    pub fn parts(&self) -> &[UpdateKind] {
        match self {
            UpdateKind::Batch { changes } => changes,
            other => std::slice::from_ref(other),
        }
    }

    /// What this change takes from its proposer's side once co-signed: the amounts of its
    /// locks and withdrawals.
    pub fn outgoing(&self) -> u128 {
        self.parts()
            .iter()
            .map(|k| match k {
                UpdateKind::Lock { lock } => lock.amount,
                UpdateKind::Withdraw { amount, .. } => *amount,
                _ => 0,
            })
            .fold(0u128, u128::saturating_add)
    }

    /// Whether this change may go in a [`UpdateKind::Batch`].
    pub fn batchable(&self) -> bool {
        matches!(self, UpdateKind::Lock { .. } | UpdateKind::Claim { .. })
    }

    /// `changes` as one update: the change itself when there is one, a batch otherwise.
    pub fn batch(mut changes: Vec<UpdateKind>) -> UpdateKind {
        if changes.len() == 1 {
            if let Some(one) = changes.pop() {
                return one;
            }
        }
        UpdateKind::Batch { changes }
    }
}

impl std::fmt::Debug for UpdateKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpdateKind::Lock { lock } => f.debug_struct("Lock").field("lock", lock).finish(),
            UpdateKind::Claim { hashlock, .. } => f
                .debug_struct("Claim")
                .field("hashlock", hashlock)
                .field("preimage", &"<redacted>")
                .finish(),
            UpdateKind::CancelExpired { hashlock } => f
                .debug_struct("CancelExpired")
                .field("hashlock", hashlock)
                .finish(),
            UpdateKind::Withdraw { amount, expiry } => f
                .debug_struct("Withdraw")
                .field("amount", amount)
                .field("expiry", expiry)
                .finish(),
            UpdateKind::Close => f.write_str("Close"),
            UpdateKind::TopUp { amount } => {
                f.debug_struct("TopUp").field("amount", amount).finish()
            }
            // Each part's own `Debug`: a claim's preimage stays redacted.
            UpdateKind::Batch { changes } => f.debug_list().entries(changes).finish(),
        }
    }
}

/// A proposed next state, signed by its proposer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proposal {
    /// The channel id.
    pub channel: B256,
    /// The full new state and its locks.
    pub state: WireState,
    /// What it changes.
    pub kind: UpdateKind,
    /// The proposer's signature of the state.
    pub sig: WireSig,
}

/// The receiver's signature of a proposal: the state is now co-signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Countersign {
    /// The channel id.
    pub channel: B256,
    /// The version countersigned.
    pub version: u64,
    /// The receiver's signature.
    pub sig: WireSig,
}

/// Why a proposal was refused (a stable code; see [`crate::Reject`] for the detail).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectCode {
    /// Not this channel (id, hence domain).
    WrongChannel,
    /// A missing, malformed, malleable or foreign signature.
    BadSignature,
    /// Not exactly the next version.
    WrongVersion,
    /// Balances + locks + withdrawals differ from the deposits, or the locks hash is wrong.
    Capacity,
    /// A lock beyond its sender's balance, or from the wrong party.
    InsufficientBalance,
    /// More than `MAX_LOCKS` locks.
    TooManyLocks,
    /// A lock expiring too soon or beyond `now + MAX_LOCK_TTL`.
    BadExpiry,
    /// A claim with a wrong preimage, or of an unknown lock.
    BadPreimage,
    /// A claim at or after the lock's expiry.
    LockExpired,
    /// A cancel of a lock not yet expired.
    LockNotExpired,
    /// A hashlock already pending.
    DuplicateHashlock,
    /// The state differs from what the stated kind produces.
    StateMismatch,
    /// The latest state is final.
    AfterFinal,
    /// `check_next`'s rules (deposits, withdrawals, expiries).
    Rules,
    /// We are waiting on our own proposal (concurrent proposals; sent by side A, whose
    /// proposal wins a crossing).
    Busy,
    /// Crossing proposals of one version, sent by side B: B abandoned its own proposal of
    /// this version and refuses A's; A abandons its own too and proposes the same change at
    /// the next version (see [`crate::machine`]).
    Crossed,
    /// Bytes that are no message (the `channel` and `version` of such a reject are zero).
    Malformed,
    /// An announced channel on another chain than the receiver's.
    WrongChain,
    /// An announced channel in another contract than the receiver's.
    WrongContract,
    /// An announced channel whose party B is not the receiver's key.
    NotParty,
    /// An announced channel not open on chain at a final block.
    NotOpen,
    /// The receiver could not read the chain (or its store): try again later.
    Unavailable,
    /// An announced channel the receiver already holds with another peer, or differently.
    Exists,
    /// The receiver does not accept announced channels.
    NotAccepting,
    /// A cancel of a lock whose secret was revealed on chain before the lock's expiry: the
    /// lock belongs to its receiver.
    SecretRevealed,
    /// A cancel of a lock whose receiver holds its secret (and may be revealing it on chain):
    /// the lock belongs to its receiver.
    SecretKnown,
    /// Anything else.
    Other,
}

/// A refused proposal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RejectMsg {
    /// The channel id.
    pub channel: B256,
    /// The version refused.
    pub version: u64,
    /// Why.
    pub code: RejectCode,
    /// Detail for logs (at most [`MAX_REASON_TEXT`] bytes).
    pub text: String,
}

/// A new channel, announced by its party A to its party B once it is open on chain (at a
/// final block). The receiver reads the deposits from the chain, never from here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenMsg {
    /// `Params.a`.
    pub a: Address,
    /// `Params.b`.
    pub b: Address,
    /// `Params.token` (zero for ETH).
    pub token: Address,
    /// `Params.challengePeriod`.
    pub challenge_period: u64,
    /// `Params.salt`.
    pub salt: B256,
    /// The chain id.
    pub chain_id: u64,
    /// The `Channel` contract.
    pub contract: Address,
}

impl OpenMsg {
    /// The announcement of `chan`.
    pub fn new(chan: &ChannelRef) -> Self {
        Self {
            a: chan.params.a,
            b: chan.params.b,
            token: chan.params.token,
            challenge_period: chan.params.challengePeriod,
            salt: chan.params.salt,
            chain_id: chan.chain_id,
            contract: chan.contract,
        }
    }

    /// The channel announced.
    pub fn channel(&self) -> ChannelRef {
        ChannelRef::new(
            Params {
                a: self.a,
                b: self.b,
                token: self.token,
                challengePeriod: self.challenge_period,
                salt: self.salt,
            },
            self.chain_id,
            self.contract,
        )
    }
}

/// The receiver recorded the announced channel (a `Reject` of version 0 refuses it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenedMsg {
    /// The channel id.
    pub channel: B256,
}

/// A channel message.
// One message at a time, short-lived: boxing the proposal would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    /// A proposed update.
    Propose(Proposal),
    /// Its countersignature.
    Countersign(Countersign),
    /// Its refusal (of version 0: the refusal of an `Open`).
    Reject(RejectMsg),
    /// A new channel announced.
    Open(OpenMsg),
    /// The announced channel is recorded.
    Opened(OpenedMsg),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    #[allow(dead_code)]
    v: u32,
    msg: Message,
}

/// u128 as a decimal string (JSON numbers beyond 2^53 are not portable, and serde's buffered
/// enums do not carry u128).
mod dec {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        let s = String::deserialize(d)?;
        if s.is_empty() || s.len() > 39 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(D::Error::custom("amount: not a decimal u128"));
        }
        s.parse().map_err(D::Error::custom)
    }
}

#[derive(Deserialize)]
struct VersionOnly {
    v: u32,
}

impl Message {
    /// The bytes to send.
    pub fn encode(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Out<'a> {
            v: u32,
            msg: &'a Message,
        }
        // Serializing these plain structs cannot fail.
        serde_json::to_vec(&Out {
            v: WIRE_VERSION,
            msg: self,
        })
        .unwrap_or_default()
    }

    /// A message from untrusted bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_MESSAGE_BYTES {
            return Err(DecodeError::TooLarge(bytes.len()));
        }
        let bad = |e: serde_json::Error| DecodeError::Malformed(e.to_string());
        let v: VersionOnly = serde_json::from_slice(bytes).map_err(bad)?;
        if v.v != WIRE_VERSION {
            return Err(DecodeError::Version(v.v));
        }
        let msg = serde_json::from_slice::<Envelope>(bytes).map_err(bad)?.msg;
        if let Message::Reject(r) = &msg {
            if r.text.len() > MAX_REASON_TEXT {
                return Err(DecodeError::Malformed("reject text too long".into()));
            }
        }
        Ok(msg)
    }

    /// The channel the message is about.
    pub fn channel(&self) -> B256 {
        match self {
            Message::Propose(p) => p.channel,
            Message::Countersign(c) => c.channel,
            Message::Reject(r) => r.channel,
            Message::Open(o) => o.channel().id(),
            Message::Opened(o) => o.channel,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn reject() -> Message {
        Message::Reject(RejectMsg {
            channel: B256::repeat_byte(1),
            version: 7,
            code: RejectCode::WrongVersion,
            text: "old".into(),
        })
    }

    #[test]
    fn a_claims_preimage_never_shows_in_debug() {
        let pre = B256::repeat_byte(0xab);
        let kind = UpdateKind::Claim {
            hashlock: B256::repeat_byte(0xcd),
            preimage: pre,
        };
        let shown = format!("{kind:?}");
        assert!(!shown.contains(&format!("{pre:x}")[2..]), "{shown}");
        assert!(shown.contains("redacted"));
        let proposal_like = format!("{:?}", Some(&kind));
        assert!(!proposal_like.contains("abababab"));
    }

    #[test]
    fn round_trips_and_refuses_garbage() {
        let m = reject();
        let bytes = m.encode();
        assert!(std::str::from_utf8(&bytes)
            .unwrap()
            .starts_with("{\"v\":1,"));
        assert_eq!(Message::decode(&bytes).unwrap(), m);
        assert!(matches!(
            Message::decode(b"\x00garbage"),
            Err(DecodeError::Malformed(_))
        ));
        let v2 = String::from_utf8(bytes.clone())
            .unwrap()
            .replace("\"v\":1", "\"v\":2");
        assert_eq!(Message::decode(v2.as_bytes()), Err(DecodeError::Version(2)));
        let big = vec![b' '; MAX_MESSAGE_BYTES + 1];
        assert_eq!(
            Message::decode(&big),
            Err(DecodeError::TooLarge(MAX_MESSAGE_BYTES + 1))
        );
        let extra = String::from_utf8(bytes)
            .unwrap()
            .replace("\"version\":7", "\"version\":7,\"x\":1");
        assert!(matches!(
            Message::decode(extra.as_bytes()),
            Err(DecodeError::Malformed(_))
        ));
        let long = Message::Reject(RejectMsg {
            text: "x".repeat(MAX_REASON_TEXT + 1),
            ..match reject() {
                Message::Reject(r) => r,
                _ => unreachable!(),
            }
        });
        assert!(matches!(
            Message::decode(&long.encode()),
            Err(DecodeError::Malformed(_))
        ));
    }
}
