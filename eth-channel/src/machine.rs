//! The per-party channel state machine.
//!
//! A [`Party`] holds the channel, its side, the latest co-signed state and at most one pending
//! proposal of its own. Every method that would change it returns a [`Step`] instead: nothing
//! changes, and nothing may be sent, until [`Party::commit`] has written the step to the
//! [`ChannelStore`]; only then does it return the bytes to send. A refused proposal gives a
//! step with nothing to persist and a reject to send, so it changes nothing.

use alloy::primitives::{Address, B256};
use alloy::signers::local::PrivateKeySigner;

use eth_adapter::channel::{ChannelRef, Lock, OnChain, Side, State};

use crate::msg::{
    Countersign, Message, Proposal, RejectCode, RejectMsg, UpdateKind, WireLock, WireSig,
    WireState, MAX_REASON_TEXT,
};
use crate::rules::{next_state, other, rej, Reject};
use crate::store::{ChannelStore, CoSigned, Saved, StoreError};

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
    /// The peer refused our proposal; it stays pending (and signed by us: never replaced).
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
    CoSigned(CoSigned),
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
        }
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

    /// Proposes the final state (cooperative close; no pending locks).
    pub fn propose_close(&self, now: u64, chain: &OnChain) -> Result<Step, PartyError> {
        self.propose(UpdateKind::Close, now, chain)
    }

    /// Builds, checks and signs the next state of `kind`.
    pub fn propose(&self, kind: UpdateKind, now: u64, chain: &OnChain) -> Result<Step, PartyError> {
        if let Some(p) = &self.pending {
            return Err(PartyError::Busy(p.state.version));
        }
        let (state, locks) = next_state(&self.chan, &self.latest, &self.cfg, &kind, self.me, now)?;
        self.chan
            .check_next(&self.latest.state, &state, chain)
            .map_err(Reject::from)?;
        let sig = self
            .chan
            .sign(&self.key, &state, &locks, now)
            .map_err(Reject::from)?;
        let proposal = Proposal {
            channel: self.id,
            state: WireState::new(&state, &locks),
            kind,
            sig: WireSig::from(&sig),
        };
        Ok(Step {
            base: self.latest.state.version,
            change: Change::Pending(proposal.clone()),
            out: Some(Message::Propose(proposal)),
            event: Event::Proposed(state.version),
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
                Ok(Step {
                    base: self.latest.state.version,
                    change: Change::None,
                    out: None,
                    event: Event::PeerRefused {
                        code: r.code,
                        text: r.text,
                    },
                })
            }
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
                    change: Change::CoSigned(cs),
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
        self.chan
            .verify(&state, &p.sig.into(), self.chan.party(peer))
            .map_err(Reject::from)?;
        if self.latest.state.isFinal {
            return rej(RejectCode::AfterFinal, "the latest state is final");
        }
        if let Some(mine) = &self.pending {
            return rej(
                RejectCode::Busy,
                format!("our proposal {} is pending", mine.state.version),
            );
        }
        let want = self.latest.state.version + 1;
        if state.version != want {
            return rej(
                RejectCode::WrongVersion,
                format!("version {}, expected {want}", state.version),
            );
        }
        let (exp_state, exp_locks) =
            next_state(&self.chan, &self.latest, &self.cfg, &p.kind, peer, now)?;
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
            change: Change::CoSigned(CoSigned {
                state,
                locks: p.state.locks(),
                sig_a: Some(sig_a),
                sig_b: Some(sig_b),
            }),
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
            Change::CoSigned(cs) => {
                store.save_cosigned(self.id, &cs)?;
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
