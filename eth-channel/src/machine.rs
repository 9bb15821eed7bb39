//! The per-party channel state machine.
//!
//! A [`Party`] holds the channel, its side, the latest co-signed state and at most one pending
//! proposal of its own. Every method that would change it returns a [`Step`] instead: nothing
//! changes, and nothing may be sent, until [`Party::commit`] has written the step to the
//! [`ChannelStore`]; only then does it return the bytes to send. A refused proposal gives a
//! step with nothing to persist and a reject to send, so it changes nothing.
//!
//! # Crossing proposals
//!
//! Both parties may propose at once, each at the next version `v`. Side A's proposal wins:
//!
//! 1. A, with its proposal `P_A(v)` pending, refuses B's `P_B(v)` with `Busy` (as for any
//!    proposal while one of ours is pending).
//! 2. B, with `P_B(v)` pending, receiving A's `P_A(v)` (A's signature checked), abandons its
//!    own (persisted: [`ChannelStore::abandon_proposal`]) and refuses A's with
//!    [`RejectCode::Crossed`] ([`Event::Crossed`]; the caller re-proposes its change once
//!    A's is through, see below). Receiving `P_A(v)` again (a resend) gets the same answer.
//! 3. A, receiving `Crossed` for its pending `P_A(v)`, abandons it (persisted) and signs the
//!    same change on the same latest state at version `v + 1` ([`Event::Reproposed`]), in
//!    one step whose message is the new proposal.
//! 4. B countersigns `P_A(v + 1)`: after an abandoned version `b` above the latest co-signed
//!    state, the next version expected (from either side) is `b + 1`
//!    ([`Party::next_version`]). B then proposes its change at `v + 2`.
//!
//! **Why version `v` is skipped rather than B countersigning `P_A(v)`.** B has signed
//! `P_B(v)`, and A holds that signature. Were B to countersign `P_A(v)`, a dishonest A could
//! add its own signature to `P_B(v)` and hold two co-signed states of version `v`; the
//! contract's `update` needs a strictly higher version, so whichever reaches the chain first
//! wins and B could not replace `P_B(v)` with the `P_A(v)` it relied on (say, a lock A made to
//! B that B then forwarded). With the skip, every party still signs at most one state per
//! version (A: `P_A(v)`, `P_A(v + 1)`; B: `P_B(v)`, then `P_A(v + 1)`), the store still
//! refuses to co-sign anything but our own proposal at a version where we made one, and no
//! party ever countersigns at an abandoned version (the store refuses it). An abandoned
//! proposal is exactly as harmful as a refused pending one: the peer may still complete it
//! with its own signature, so its proposer must treat it as possibly in force until a state
//! of a higher version is co-signed; it was the proposer's own willing change from the same
//! latest state, and is superseded as soon as `v + 1` is co-signed.
//!
//! **Refusals.** A proposal the peer refuses (any code but `Busy`) is abandoned the same way
//! (persisted, possibly in force until a higher version is co-signed), so a refusal never
//! blocks the channel: the next change goes at the version above it, and the receiver
//! accepts a proposal up to [`MAX_VERSION_SKIP`] versions above the next one (it signed
//! nothing in between). A final proposal is never abandoned (the peer could close with it whatever came after),
//! except for the same final change at the next version (a `Crossed` answer).
//!
//! **Liveness.** A never abandons except on `Crossed`, and then re-proposes at once; B
//! waits for A's re-proposal to complete (or a timeout, if A cannot re-propose) before it
//! re-proposes, so each crossing ends with one co-signed state and a fresh proposal by B.

use alloy::primitives::{Address, B256};
use alloy::signers::local::PrivateKeySigner;

use eth_adapter::channel::{ChannelError, ChannelRef, Lock, OnChain, Side, State};

use crate::msg::{
    Countersign, Message, Proposal, RejectCode, RejectMsg, UpdateKind, WireLock, WireSig,
    WireState, MAX_REASON_TEXT,
};
use crate::rules::{next_state, other, rej, Reject};

mod cross;
use crate::store::{ChannelStore, CoSigned, Saved, StoreError};

/// How many versions above the next one a peer's proposal may skip: the peer abandoned its
/// refused proposals in between (see [`Party::receive`]). Bounded, so that a peer cannot
/// exhaust the version space.
pub const MAX_VERSION_SKIP: u64 = 1024;

/// Local policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// A new lock (or withdrawal) must expire at least this many seconds after now.
    pub min_expiry_margin: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            min_expiry_margin: 600,
        }
    }
}

/// What went wrong with a call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PartyError {
    /// Our own proposal would be refused (nothing was signed).
    #[error("invalid update: {0}")]
    Invalid(#[from] Reject),
    /// A proposal of ours is pending: nothing else may be signed until it completes.
    #[error("proposal of version {0} pending")]
    Busy(u64),
    /// A message that is no answer to anything of ours (no pending proposal, wrong version,
    /// bad countersignature), or bytes that are no message.
    #[error("unexpected message: {0}")]
    Unexpected(String),
    /// A step made before another one was committed.
    #[error("stale step: made at version {made}, party now at {now}")]
    StaleStep {
        /// The version the step was made at.
        made: u64,
        /// The party's version now.
        now: u64,
    },
    /// The key is not this side's party.
    #[error("key {0} is not the channel's party")]
    WrongKey(Address),
    /// The store failed; nothing changed in memory.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a received message meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// We signed a proposal (send it once committed).
    Proposed(u64),
    /// We countersigned the peer's proposal: this version is co-signed.
    Countersigned(u64),
    /// The peer countersigned our proposal: this version is co-signed.
    Completed(u64),
    /// We refused the peer's proposal (nothing changed).
    RefusedPeer(Reject),
    /// Crossing proposals (we are B): the peer's proposal of this version won, ours of the
    /// same version is abandoned and the peer's refused with `Crossed`. Propose `kind` again
    /// once the peer's re-proposal (at the next version) is through.
    Crossed {
        /// The abandoned version.
        abandoned: u64,
        /// Our abandoned change.
        kind: UpdateKind,
    },
    /// Crossing proposals (we are A): the peer abandoned its proposal, ours of `abandoned` is
    /// abandoned too and the same change proposed again at `version` (send it).
    Reproposed {
        /// Our abandoned version.
        abandoned: u64,
        /// The new proposal's version.
        version: u64,
    },
    /// Crossing proposals (we are A): our proposal of `abandoned` is abandoned, and the same
    /// change is no longer valid (e.g. a lock expiry now too close), so nothing is proposed.
    Dropped {
        /// Our abandoned version.
        abandoned: u64,
        /// The change.
        kind: UpdateKind,
        /// Why it cannot be proposed again.
        reason: Reject,
    },
    /// The peer refused our proposal: abandoned (unless `Busy` or final, which stay
    /// pending), and signed by us: never replaced at its version.
    PeerRefused {
        /// Its code.
        code: RejectCode,
        /// Its text.
        text: String,
    },
}

#[derive(Debug, Clone)]
enum Change {
    None,
    Pending(Proposal),
    /// A co-signed state and the change that made it (kept: a claim's preimage).
    CoSigned(CoSigned, UpdateKind),
    /// Our pending proposal of `version` is abandoned; `then` replaces it.
    Abandon {
        version: u64,
        then: Option<Proposal>,
    },
}

/// A change to persist, then a message to send: apply with [`Party::commit`].
#[derive(Debug, Clone)]
#[must_use = "commit the step (which persists it) before sending anything"]
pub struct Step {
    base: u64,
    change: Change,
    out: Option<Message>,
    /// What happened.
    pub event: Event,
}

impl Step {
    /// The message this step would send, for inspection only: send what [`Party::commit`]
    /// returns, after it persisted the step.
    pub fn message(&self) -> Option<&Message> {
        self.out.as_ref()
    }
}

/// One side of a channel.
#[derive(Debug)]
pub struct Party {
    chan: ChannelRef,
    id: B256,
    me: Side,
    key: PrivateKeySigner,
    cfg: Config,
    latest: CoSigned,
    pending: Option<Proposal>,
    abandoned: Option<u64>,
    /// The peer's signature last found good, with the state it signs: a proposal's is checked
    /// by [`Party::precheck`] before the chain is read and again by
    /// [`Party::receive_proposal`]; the second check finds it here instead of recovering the
    /// key again (a recovery is ~1 % of a channel swap's CPU).
    peer_sig_checked: std::sync::Mutex<Option<(State, WireSig)>>,
}

impl Party {
    /// A new channel whose deposits (final on chain) are `deposit_a` and `deposit_b`: records
    /// it, with its implicit version-0 state, in `store`.
    pub fn open(
        chan: ChannelRef,
        me: Side,
        key: PrivateKeySigner,
        cfg: Config,
        deposit_a: u128,
        deposit_b: u128,
        store: &dyn ChannelStore,
    ) -> Result<Self, PartyError> {
        let initial = CoSigned {
            state: State {
                version: 0,
                balanceA: deposit_a,
                balanceB: deposit_b,
                locksHash: B256::ZERO,
                depositA: deposit_a,
                depositB: deposit_b,
                withdrawnA: 0,
                withdrawnB: 0,
                withdrawExpiry: 0,
                isFinal: false,
            },
            locks: vec![],
            sig_a: None,
            sig_b: None,
        };
        if chan.party(me) != key.address() {
            return Err(PartyError::WrongKey(key.address()));
        }
        store.create_channel(&chan, me, &initial.state)?;
        Ok(Self::from_saved(
            Saved {
                chan,
                me,
                latest: initial,
                pending: None,
                abandoned: None,
            },
            key,
            cfg,
        ))
    }

    /// The party of channel `id` as `store` last recorded it: its latest co-signed state and
    /// its pending proposal, if any (which stays the only state it signs at that version).
    pub fn resume(
        id: B256,
        key: PrivateKeySigner,
        cfg: Config,
        store: &dyn ChannelStore,
    ) -> Result<Self, PartyError> {
        let saved = store.load(id)?.ok_or(StoreError::UnknownChannel(id))?;
        if saved.chan.party(saved.me) != key.address() {
            return Err(PartyError::WrongKey(key.address()));
        }
        Ok(Self::from_saved(saved, key, cfg))
    }

    fn from_saved(s: Saved, key: PrivateKeySigner, cfg: Config) -> Self {
        Self {
            id: s.chan.id(),
            chan: s.chan,
            me: s.me,
            key,
            cfg,
            latest: s.latest,
            pending: s.pending,
            abandoned: s.abandoned,
            peer_sig_checked: std::sync::Mutex::new(None),
        }
    }

    /// Checks that `sig` is the peer's signature of `state` (see `peer_sig_checked`).
    fn verify_peer(&self, state: &State, sig: &WireSig) -> Result<(), ChannelError> {
        let mut checked = self
            .peer_sig_checked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if matches!(checked.as_ref(), Some((s, g)) if s == state && g == sig) {
            return Ok(());
        }
        self.chan
            .verify(state, &(*sig).into(), self.chan.party(other(self.me)))?;
        *checked = Some((state.clone(), *sig));
        Ok(())
    }

    /// The version the next state (ours or the peer's) must have: one above the latest
    /// co-signed state, or above our abandoned proposal if one is higher (crossing proposals,
    /// see the module docs).
    pub fn next_version(&self) -> u64 {
        let l = self.latest.state.version;
        self.abandoned
            .filter(|a| *a > l)
            .unwrap_or(l)
            .saturating_add(1)
    }

    /// The highest version above the latest co-signed state at which we abandoned our own
    /// proposal, if any.
    pub fn abandoned(&self) -> Option<u64> {
        self.abandoned.filter(|a| *a > self.latest.state.version)
    }

    /// The channel.
    pub fn channel(&self) -> &ChannelRef {
        &self.chan
    }

    /// The channel id.
    pub fn id(&self) -> B256 {
        self.id
    }

    /// Our side.
    pub fn side(&self) -> Side {
        self.me
    }

    /// The latest co-signed state (version 0: the implicit unsigned one).
    pub fn latest(&self) -> &CoSigned {
        &self.latest
    }

    /// Our pending proposal.
    pub fn pending(&self) -> Option<&Proposal> {
        self.pending.as_ref()
    }

    /// The pending proposal's message again (after a reconnect or a crash): the same state.
    pub fn resend(&self) -> Option<Vec<u8>> {
        self.pending
            .as_ref()
            .map(|p| Message::Propose(p.clone()).encode())
    }

    /// Proposes locking `amount` of our balance for the peer on `hashlock` until `expiry`.
    pub fn propose_lock(
        &self,
        amount: u128,
        hashlock: B256,
        expiry: u64,
        now: u64,
        chain: &OnChain,
    ) -> Result<Step, PartyError> {
        let lock = WireLock {
            from: self.chan.party(self.me),
            amount,
            hashlock,
            expiry,
        };
        self.propose(UpdateKind::Lock { lock }, now, chain)
    }

    /// Proposes paying the lock on `sha256(preimage)` to its receiver.
    pub fn propose_claim(
        &self,
        preimage: B256,
        now: u64,
        chain: &OnChain,
    ) -> Result<Step, PartyError> {
        let hashlock = crate::rules::hashlock_of(&preimage);
        self.propose(UpdateKind::Claim { hashlock, preimage }, now, chain)
    }

    /// Proposes returning the expired lock on `hashlock` to its sender.
    pub fn propose_cancel(
        &self,
        hashlock: B256,
        now: u64,
        chain: &OnChain,
    ) -> Result<Step, PartyError> {
        self.propose(UpdateKind::CancelExpired { hashlock }, now, chain)
    }

    /// Proposes withdrawing `amount` of our balance, executable until `expiry`.
    pub fn propose_withdraw(
        &self,
        amount: u128,
        expiry: u64,
        now: u64,
        chain: &OnChain,
    ) -> Result<Step, PartyError> {
        self.propose(UpdateKind::Withdraw { amount, expiry }, now, chain)
    }

    /// Proposes accounting our top-up of `amount`, which must be final on chain (`chain`).
    pub fn propose_top_up(
        &self,
        amount: u128,
        now: u64,
        chain: &OnChain,
    ) -> Result<Step, PartyError> {
        self.propose(UpdateKind::TopUp { amount }, now, chain)
    }

    /// Proposes the final state (cooperative close; no pending locks).
    pub fn propose_close(&self, now: u64, chain: &OnChain) -> Result<Step, PartyError> {
        self.propose(UpdateKind::Close, now, chain)
    }

    /// Builds, checks and signs the next state of `kind`.
    pub fn propose(&self, kind: UpdateKind, now: u64, chain: &OnChain) -> Result<Step, PartyError> {
        if let Some(p) = &self.pending {
            return Err(PartyError::Busy(p.state.version));
        }
        let proposal = self.build(kind, self.next_version(), now, chain)?;
        let version = proposal.state.version;
        Ok(Step {
            base: self.latest.state.version,
            change: Change::Pending(proposal.clone()),
            out: Some(Message::Propose(proposal)),
            event: Event::Proposed(version),
        })
    }

    /// Builds, checks and signs the state `kind` makes of the latest co-signed one, at
    /// `version`.
    fn build(
        &self,
        kind: UpdateKind,
        version: u64,
        now: u64,
        chain: &OnChain,
    ) -> Result<Proposal, Reject> {
        let (mut state, locks) =
            next_state(&self.chan, &self.latest, &self.cfg, &kind, self.me, now)?;
        state.version = version;
        self.chan.check_next(&self.latest.state, &state, chain)?;
        let sig = self.chan.sign(&self.key, &state, &locks, now)?;
        Ok(Proposal {
            channel: self.id,
            state: WireState::new(&state, &locks),
            kind,
            sig: WireSig::from(&sig),
        })
    }

    /// Handles bytes from the peer. Garbage and refused proposals give a step that changes
    /// nothing (a refused proposal: a reject to send); answers to nothing of ours are errors.
    pub fn receive(&self, bytes: &[u8], now: u64, chain: &OnChain) -> Result<Step, PartyError> {
        let msg = Message::decode(bytes).map_err(|e| PartyError::Unexpected(e.to_string()))?;
        if msg.channel() != self.id {
            if let Message::Propose(p) = &msg {
                let r = Reject {
                    code: RejectCode::WrongChannel,
                    detail: format!("channel {}, expected {}", p.channel, self.id),
                };
                return Ok(self.refusal(p, r));
            }
            return Err(PartyError::Unexpected(format!(
                "message for channel {}",
                msg.channel()
            )));
        }
        match msg {
            Message::Propose(p) => Ok(self.receive_proposal(&p, now, chain)),
            Message::Countersign(c) => self.receive_countersign(&c),
            Message::Reject(r) => {
                let pending = self.pending.as_ref().map(|p| p.state.version);
                if pending != Some(r.version) {
                    return Err(PartyError::Unexpected(format!(
                        "reject of version {}, pending {pending:?}",
                        r.version
                    )));
                }
                // Crossed: B's answer to a crossing, or either side's to a proposal at a version
                // it gave up (see `validate`): the same change goes again above it.
                if let (RejectCode::Crossed, Some(mine)) = (r.code, &self.pending) {
                    return Ok(self.repropose(mine, now, chain));
                }
                Ok(Step {
                    base: self.latest.state.version,
                    change: self.abandon_refused(r.code),
                    out: None,
                    event: Event::PeerRefused {
                        code: r.code,
                        text: r.text,
                    },
                })
            }
            // Announcements are the session's (`crate::announce`), never a party's.
            Message::Open(_) | Message::Opened(_) => Err(PartyError::Unexpected(
                "channel announcement given to a party".into(),
            )),
        }
    }

    /// Validates the peer's proposal: a countersign step, or a reject step changing nothing.
    ///
    /// The proposal we countersigned last, received again (our countersign was lost), is
    /// answered with the same countersign, changing nothing.
    pub fn receive_proposal(&self, p: &Proposal, now: u64, chain: &OnChain) -> Step {
        if let Some(again) = self.countersign_again(p) {
            return again;
        }
        if let Some(crossed) = self.crossing(p, now) {
            return crossed;
        }
        match self.validate(p, now, chain) {
            Ok((state, locks, sig)) => {
                let peer_sig = p.sig.into();
                let wire = WireSig::from(&sig);
                let (sig_a, sig_b) = match self.me {
                    Side::A => (sig, peer_sig),
                    Side::B => (peer_sig, sig),
                };
                let version = state.version;
                let cs = CoSigned {
                    state,
                    locks,
                    sig_a: Some(sig_a),
                    sig_b: Some(sig_b),
                };
                Step {
                    base: self.latest.state.version,
                    change: Change::CoSigned(cs, p.kind.clone()),
                    out: Some(Message::Countersign(Countersign {
                        channel: self.id,
                        version,
                        sig: wire,
                    })),
                    event: Event::Countersigned(version),
                }
            }
            Err(r) => self.refusal(p, r),
        }
    }

    /// The change a refusal of our pending proposal makes: none for `Busy` (sent again
    /// later) or a final proposal (never abandoned: see the crossing rules in `cross`); otherwise the
    /// proposal is abandoned, so that the next change goes at the version above it (the peer
    /// accepts a skip of up to [`MAX_VERSION_SKIP`]). It stays possibly in force, as any
    /// abandoned proposal, until a higher version is co-signed: the peer holds our signature.
    fn abandon_refused(&self, code: RejectCode) -> Change {
        match &self.pending {
            Some(p) if code != RejectCode::Busy && !p.state.is_final => Change::Abandon {
                version: p.state.version,
                then: None,
            },
            _ => Change::None,
        }
    }

    /// Whether `p` is a proposal we countersigned already (it is answered again with the
    /// same countersignature, whatever the chain says now).
    pub fn countersigned_already(&self, p: &Proposal) -> bool {
        self.countersign_again(p).is_some()
    }

    fn countersign_again(&self, p: &Proposal) -> Option<Step> {
        let l = &self.latest;
        if p.channel != self.id || p.state != WireState::new(&l.state, &l.locks) {
            return None;
        }
        let (ours, theirs) = match self.me {
            Side::A => (l.sig_a.as_ref()?, l.sig_b.as_ref()?),
            Side::B => (l.sig_b.as_ref()?, l.sig_a.as_ref()?),
        };
        // Only the peer's own proposal (its signature as stored), not ours echoed back.
        if WireSig::from(theirs) != p.sig {
            return None;
        }
        Some(Step {
            base: l.state.version,
            change: Change::None,
            out: Some(Message::Countersign(Countersign {
                channel: self.id,
                version: l.state.version,
                sig: WireSig::from(ours),
            })),
            event: Event::Countersigned(l.state.version),
        })
    }

    /// The checks of the peer's proposal `p` that need neither the chain nor the clock: the
    /// channel, the peer's signature, and a version above our latest co-signed one (a
    /// proposal we countersigned already is answered again by [`Party::receive`], before
    /// this). The refusal to send when one fails: a node runs these before it reads the
    /// chain, so a garbage or replayed proposal costs no chain read.
    pub fn precheck(&self, p: &Proposal) -> Option<Message> {
        let refused = |r: Reject| self.refusal(p, r).out;
        if p.channel != self.id {
            return refused(Reject {
                code: RejectCode::WrongChannel,
                detail: "another channel".into(),
            });
        }
        if let Err(e) = self.verify_peer(&p.state.state(), &p.sig) {
            return refused(Reject::from(e));
        }
        if p.state.version <= self.latest.state.version {
            return refused(Reject {
                code: RejectCode::WrongVersion,
                detail: format!(
                    "version {}, the latest is {}",
                    p.state.version, self.latest.state.version
                ),
            });
        }
        None
    }

    fn refusal(&self, p: &Proposal, r: Reject) -> Step {
        let mut text = r.detail.clone();
        text.truncate(MAX_REASON_TEXT);
        Step {
            base: self.latest.state.version,
            change: Change::None,
            out: Some(Message::Reject(RejectMsg {
                channel: self.id,
                version: p.state.version,
                code: r.code,
                text,
            })),
            event: Event::RefusedPeer(r),
        }
    }

    fn validate(
        &self,
        p: &Proposal,
        now: u64,
        chain: &OnChain,
    ) -> Result<(State, Vec<Lock>, eth_adapter::channel::Sig), Reject> {
        if p.channel != self.id {
            return rej(RejectCode::WrongChannel, "another channel");
        }
        let state = p.state.state();
        let locks = p.state.locks();
        let peer = other(self.me);
        self.verify_peer(&state, &p.sig).map_err(Reject::from)?;
        if self.latest.state.isFinal {
            return rej(RejectCode::AfterFinal, "the latest state is final");
        }
        if let Some(mine) = &self.pending {
            return rej(
                RejectCode::Busy,
                format!("our proposal {} is pending", mine.state.version),
            );
        }
        // The next version, or a few above it: the peer abandoned proposals we refused (or
        // never saw), which we never signed.
        let want = self.next_version();
        // A version we gave up (our proposal there was refused, or lost a crossing), above
        // the latest co-signed state: the peer never knew, and proposes there. We never sign
        // there (see the module docs); it goes again above it, as after a crossing. (Refused
        // as `WrongVersion`, a change was answered with an error to retry, and a final
        // proposal, which is never abandoned, stayed pending for good.)
        if state.version < want && state.version > self.latest.state.version {
            return rej(
                RejectCode::Crossed,
                format!(
                    "version {} was given up on our side: propose again at {want}",
                    state.version
                ),
            );
        }
        if state.version < want || state.version - want > MAX_VERSION_SKIP {
            return rej(
                RejectCode::WrongVersion,
                format!("version {}, expected {want}", state.version),
            );
        }
        let (mut exp_state, exp_locks) =
            next_state(&self.chan, &self.latest, &self.cfg, &p.kind, peer, now)?;
        exp_state.version = state.version;
        self.chan.check(&state, &locks, now)?;
        if state != exp_state || locks != exp_locks {
            return rej(
                RejectCode::StateMismatch,
                format!("the state is not what {:?} makes", p.kind),
            );
        }
        self.chan.check_next(&self.latest.state, &state, chain)?;
        let sig = self.chan.sign(&self.key, &state, &locks, now)?;
        Ok((state, locks, sig))
    }

    fn receive_countersign(&self, c: &Countersign) -> Result<Step, PartyError> {
        let p = self.pending.as_ref().ok_or_else(|| {
            PartyError::Unexpected(format!("countersign of {} with nothing pending", c.version))
        })?;
        if p.state.version != c.version {
            return Err(PartyError::Unexpected(format!(
                "countersign of {}, pending {}",
                c.version, p.state.version
            )));
        }
        let state = p.state.state();
        let peer_sig = c.sig.into();
        self.chan
            .verify(&state, &peer_sig, self.chan.party(other(self.me)))
            .map_err(|e| PartyError::Unexpected(e.to_string()))?;
        let ours = p.sig.into();
        let (sig_a, sig_b) = match self.me {
            Side::A => (ours, peer_sig),
            Side::B => (peer_sig, ours),
        };
        Ok(Step {
            base: self.latest.state.version,
            change: Change::CoSigned(
                CoSigned {
                    state,
                    locks: p.state.locks(),
                    sig_a: Some(sig_a),
                    sig_b: Some(sig_b),
                },
                p.kind.clone(),
            ),
            out: None,
            event: Event::Completed(c.version),
        })
    }

    /// Persists `step` in `store`, then applies it; returns the bytes to send, if any. If the
    /// store fails, nothing changes and nothing may be sent.
    pub fn commit(
        &mut self,
        step: Step,
        store: &dyn ChannelStore,
    ) -> Result<Option<Vec<u8>>, PartyError> {
        if step.base != self.latest.state.version {
            return Err(PartyError::StaleStep {
                made: step.base,
                now: self.latest.state.version,
            });
        }
        match step.change {
            Change::None => {}
            Change::Pending(p) => {
                if let Some(mine) = &self.pending {
                    return Err(PartyError::Busy(mine.state.version));
                }
                store.save_proposal(self.id, &p)?;
                self.pending = Some(p);
            }
            Change::Abandon { version, then } => {
                // Written before anything changes here, and with its successor in one write.
                match &then {
                    Some(p) => store.abandon_and_propose(self.id, version, p)?,
                    None => store.abandon_proposal(self.id, version)?,
                }
                if self
                    .pending
                    .as_ref()
                    .is_some_and(|p| p.state.version == version)
                {
                    self.pending = None;
                }
                self.abandoned = Some(self.abandoned.unwrap_or(0).max(version));
                if let Some(p) = then {
                    self.pending = Some(p);
                }
            }
            Change::CoSigned(cs, kind) => {
                store.save_cosigned_kind(self.id, &cs, &kind)?;
                if self
                    .pending
                    .as_ref()
                    .is_some_and(|p| p.state.version <= cs.state.version)
                {
                    self.pending = None;
                }
                self.latest = cs;
            }
        }
        Ok(step.out.map(|m| m.encode()))
    }
}
