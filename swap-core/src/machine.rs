//! The initiator and responder state machines: pure functions, no I/O.
//!
//! `next(terms, state, snapshot) -> Step { state, actions }`. The snapshot is what the chains
//! say now about both HTLCs (level-triggered: the machines never depend on having seen an
//! event, so a crash, a missed poll or a reorg only means the next snapshot tells the truth
//! again). The driver persists `Step::state` BEFORE it performs `Step::actions`, and every
//! action is idempotent.

use serde::{Deserialize, Serialize};

use crate::params::{ChainTip, Finality, RefundMode};
use crate::rail::HtlcStatus;
use crate::terms::{ExpiryMatch, Leg, LockMismatch, SwapTerms, Tips};
use crate::types::{Preimage, TxRef};

/// One chain's part of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegView {
    /// The chain's tip when the HTLC status was read.
    pub tip: ChainTip,
    /// The HTLC of this leg.
    pub htlc: HtlcStatus,
}

/// What both chains say now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The initiator's HTLC and chain.
    pub x: LegView,
    /// The responder's HTLC and chain.
    pub y: LegView,
}

impl Snapshot {
    /// Both tips.
    pub fn tips(&self) -> Tips {
        Tips {
            x: self.x.tip,
            y: self.y.tip,
        }
    }
}

/// Something the driver must do on a chain. Idempotent by contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Fund our own HTLC on this leg.
    Lock {
        /// Which leg.
        leg: Leg,
    },
    /// Claim the counterparty's HTLC on this leg with the secret.
    Claim {
        /// Which leg.
        leg: Leg,
        /// The secret.
        preimage: Preimage,
    },
    /// Refund our own HTLC on this leg.
    Refund {
        /// Which leg.
        leg: Leg,
    },
    /// Make sure our lock on this leg can never be mined: we gave up, it is not on chain, but
    /// a lock we signed may linger (evicted from mempools, to be broadcast again by a wallet
    /// or anyone who kept it). The rail spends what it would have spent elsewhere (Bitcoin: an
    /// input of the funding back to the wallet; Ethereum: its nonce) and answers `Ok` only
    /// once that is final (or nothing was ever signed); until then a `NotReady` error.
    CancelLock {
        /// Which leg.
        leg: Leg,
    },
}

impl Action {
    /// The leg the action is on.
    pub fn leg(&self) -> Leg {
        match self {
            Action::Lock { leg }
            | Action::Claim { leg, .. }
            | Action::Refund { leg }
            | Action::CancelLock { leg } => *leg,
        }
    }
}

/// Why a party gave up on swapping and went for its refund (or never locked).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum GiveUpReason {
    /// Too little time left to start (or go on) safely; nothing was locked by us.
    TooLate,
    /// The counterparty's lock differs from the terms.
    CounterLockInvalid {
        /// How.
        mismatch: LockMismatch,
    },
    /// Our own lock, as found on chain, differs from the terms.
    OwnLockInvalid {
        /// How.
        mismatch: LockMismatch,
    },
    /// The counterparty did not lock (or its lock did not confirm) in time.
    CounterLockMissing,
    /// The counterparty refunded its lock.
    CounterRefunded,
    /// Cancelled by its owner (for instance through the API server) before our lock was
    /// sent: nothing of ours was locked. Only ever written in place of a state whose own lock
    /// is still ahead and not being sent (a `negotiated` initiator, a responder before `locking`).
    Cancelled,
}

/// How a swap ended for this party.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// We got the counterparty's asset.
    Swapped,
    /// We got our own asset back.
    Refunded,
    /// Nothing of ours was ever locked.
    Aborted {
        /// Why.
        reason: GiveUpReason,
    },
    /// Our lock was taken without us getting the other asset. Only possible when the chains
    /// broke the assumptions in their parameters (pace, reorg depth) for longer than the
    /// margins.
    Lost,
}

impl std::fmt::Display for GiveUpReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GiveUpReason::TooLate => f.write_str("too little time was left to go on safely"),
            GiveUpReason::CounterLockInvalid { mismatch } => {
                write!(
                    f,
                    "the counterparty's lock differs from the terms: {mismatch}"
                )
            }
            GiveUpReason::OwnLockInvalid { mismatch } => {
                write!(f, "our own lock differs from the terms: {mismatch}")
            }
            GiveUpReason::CounterLockMissing => {
                f.write_str("the counterparty did not lock (or its lock did not confirm) in time")
            }
            GiveUpReason::CounterRefunded => f.write_str("the counterparty refunded its lock"),
            GiveUpReason::Cancelled => f.write_str("cancelled before anything of ours was locked"),
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Swapped => f.write_str("swapped: we received the counterparty's asset"),
            Outcome::Refunded => f.write_str("refunded: we got our own asset back"),
            Outcome::Aborted { reason } => {
                write!(f, "aborted, nothing of ours was locked: {reason}")
            }
            Outcome::Lost => f.write_str(
                "lost: our lock was taken without us getting the other asset (the chains broke \
                 their pace or reorg bounds)",
            ),
        }
    }
}

impl Outcome {
    /// A one-word name: `swapped`, `refunded`, `aborted` or `lost`.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Swapped => "swapped",
            Outcome::Refunded => "refunded",
            Outcome::Aborted { .. } => "aborted",
            Outcome::Lost => "lost",
        }
    }
}

/// A transition: the new state and what to do, in order, after persisting it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step<S> {
    /// The state to persist.
    pub state: S,
    /// The actions to perform after persisting.
    pub actions: Vec<Action>,
}

impl<S> Step<S> {
    fn to(state: S) -> Self {
        Self {
            state,
            actions: Vec::new(),
        }
    }

    fn act(state: S, action: Action) -> Self {
        Self {
            state,
            actions: vec![action],
        }
    }
}

/// True when the lock, claim or refund is at least as final as `required` (the rail's
/// [`crate::ChainParams::required_finality`]: n blocks deep on chain, irrevocable in a channel).
fn confirmed(status: &HtlcStatus, required: Finality) -> bool {
    status.finality().is_some_and(|f| f.reaches(required))
}

/// True while a spend is only in the mempool: the action that made it is sent again on every
/// step, so that an adapter can bump its fee (an unchanged spend is "already known": success).
fn in_mempool(status: &HtlcStatus) -> bool {
    matches!(
        status,
        HtlcStatus::Claimed { finality, .. } | HtlcStatus::Refunded { finality, .. }
            if finality.is_pending()
    )
}

/// The step to `state` that refunds our lock on `leg`: an explicit refund where the rail needs
/// one, nothing where the rail fails the lock back by itself (the next observation shows it).
fn refund_step<S>(terms: &SwapTerms, state: S, leg: Leg) -> Step<S> {
    match terms.leg(leg).params.refunds() {
        RefundMode::Explicit => Step::act(state, Action::Refund { leg }),
        RefundMode::Automatic => Step::to(state),
    }
}

/// A valid secret revealed by a claim of this HTLC, if any.
fn revealed<'a>(terms: &SwapTerms, status: &'a HtlcStatus) -> Option<&'a Preimage> {
    match status {
        HtlcStatus::Claimed { preimage, .. } if terms.hashlock.matches(preimage) => Some(preimage),
        _ => None,
    }
}

/// The initiator: makes the secret, locks first on X, claims on Y.
pub mod initiator {
    use super::*;

    /// The initiator's states (`docs/protocol.md`). Stored as JSON with these exact tags: renaming a
    /// variant needs a migration.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(tag = "state", rename_all = "snake_case")]
    pub enum State {
        /// Terms agreed and the secret persisted; nothing on chain yet.
        Negotiated,
        /// The lock on X has been (or is being) sent.
        Locking,
        /// Our lock is on chain, not yet deep enough.
        Locked {
            /// Funding transaction.
            txref: TxRef,
        },
        /// Our lock is confirmed; waiting for the responder's.
        LockConfirmed,
        /// The responder's lock is seen and matches; waiting for it to be final.
        CounterLockSeen {
            /// The responder's funding.
            txref: TxRef,
        },
        /// The responder's lock is confirmed and valid, and we are inside our claim window.
        CounterLockValid,
        /// We decided to claim Y (persisted before the claim is sent). Until the claim is known
        /// to have reached the node, a restart past the deadline gives up instead of sending.
        Claiming,
        /// Our claim was handed to the node: the secret is public from now on.
        ClaimSent,
        /// Our claim is on chain, not yet final.
        Claimed,
        /// Waiting until our lock on X can be refunded.
        AwaitRefund {
            /// Why we gave up.
            reason: GiveUpReason,
        },
        /// Our refund has been (or is being) sent.
        Refunding {
            /// Why we gave up.
            reason: GiveUpReason,
        },
        /// Nothing of ours is on X and nothing can land there in time any more: making sure a
        /// lock we signed can never be mined either, then done.
        Cancelling {
            /// Why we gave up.
            reason: GiveUpReason,
        },
        /// Finished.
        Done {
            /// How.
            outcome: Outcome,
        },
    }

    impl State {
        /// True once the swap has finished for us.
        pub fn is_final(&self) -> bool {
            matches!(self, State::Done { .. })
        }
    }

    fn give_up(reason: GiveUpReason) -> Step<State> {
        Step::to(State::AwaitRefund { reason })
    }

    /// Rule 1 from now, before locking: the whole schedule still fits.
    fn may_start(terms: &SwapTerms, tips: Tips) -> bool {
        terms.check_schedule(tips).is_ok() && terms.check_rule2(tips).is_ok()
    }

    /// The state to persist once `action`, computed in `state`, was accepted by the node:
    /// a claim that reached the node makes the secret public.
    pub fn after_sent(state: &State, action: &Action) -> Option<State> {
        match (state, action) {
            (State::Claiming, Action::Claim { .. }) => Some(State::ClaimSent),
            (State::Cancelling { reason }, Action::CancelLock { .. }) => Some(State::Done {
                outcome: Outcome::Aborted {
                    reason: reason.clone(),
                },
            }),
            _ => None,
        }
    }

    /// The initiator's transition function.
    pub fn next(
        terms: &SwapTerms,
        secret: &Preimage,
        state: &State,
        snap: &Snapshot,
    ) -> Step<State> {
        use State::*;
        if state.is_final() {
            return Step::to(state.clone());
        }
        let own = &snap.x.htlc;
        let counter = &snap.y.htlc;
        let depth_x = terms.x.params.required_finality();
        let depth_y = terms.y.params.required_finality();

        // Once our claim may have been broadcast, or the secret is public for any reason, the
        // only way forward is to get our claim on Y mined.
        let secret_out = matches!(state, ClaimSent | Claimed)
            || revealed(terms, own).is_some()
            || revealed(terms, counter).is_some();
        if secret_out {
            // Once our claim reached the node we never go back to `Claiming` (a claim decided
            // but not known to be sent): sending it again (a fee bump, a replacement, a status
            // view that lags our own broadcast) is an action, not a state change, so it writes
            // no history row and the driver waits a poll before the next send.
            let sending = if matches!(state, ClaimSent | Claimed) {
                ClaimSent
            } else {
                Claiming
            };
            return match counter {
                HtlcStatus::Claimed { .. } if confirmed(counter, depth_y) => Step::to(Done {
                    outcome: Outcome::Swapped,
                }),
                HtlcStatus::Claimed { .. } if in_mempool(counter) => Step::act(
                    Claimed,
                    Action::Claim {
                        leg: Leg::Y,
                        preimage: secret.clone(),
                    },
                ),
                HtlcStatus::Claimed { .. } => Step::to(Claimed),
                HtlcStatus::Funded { .. } => Step::act(
                    sending,
                    Action::Claim {
                        leg: Leg::Y,
                        preimage: secret.clone(),
                    },
                ),
                // Reorged out under our claim: wait for it to come back, but once our own
                // lock can be refunded, take it back.
                HtlcStatus::Absent if terms.x_refundable(snap.x.tip) => {
                    refund_path(terms, GiveUpReason::CounterLockMissing, snap)
                }
                HtlcStatus::Absent => Step::to(sending),
                // Their refund is only in the mempool: our claim may still win.
                HtlcStatus::Refunded { .. } if in_mempool(counter) => Step::act(
                    sending,
                    Action::Claim {
                        leg: Leg::Y,
                        preimage: secret.clone(),
                    },
                ),
                // We lost the race on Y: all that is left is our own lock.
                HtlcStatus::Refunded { .. } => {
                    refund_path(terms, GiveUpReason::CounterRefunded, snap)
                }
            };
        }

        match state {
            AwaitRefund { reason } | Refunding { reason } | Cancelling { reason } => {
                refund_path(terms, reason.clone(), snap)
            }
            _ => {
                // Before the secret is out: our own lock first.
                match own {
                    HtlcStatus::Absent => {
                        if may_start(terms, snap.tips()) {
                            Step::act(Locking, Action::Lock { leg: Leg::X })
                        } else if matches!(state, Negotiated) {
                            Step::to(Done {
                                outcome: Outcome::Aborted {
                                    reason: GiveUpReason::TooLate,
                                },
                            })
                        } else {
                            // A lock may still be in flight (or come back after a reorg):
                            // watch X until its expiry before calling it off.
                            give_up(GiveUpReason::TooLate)
                        }
                    }
                    HtlcStatus::Refunded { .. } => refund_path(terms, GiveUpReason::TooLate, snap),
                    HtlcStatus::Claimed { .. } => {
                        // A claim with a wrong preimage cannot exist on a correct chain; treat
                        // as still locked and go for the refund.
                        give_up(GiveUpReason::TooLate)
                    }
                    HtlcStatus::Funded { lock, finality } => {
                        if let Err(mismatch) =
                            terms.x.verify(&terms.hashlock, lock, ExpiryMatch::Exact)
                        {
                            return give_up(GiveUpReason::OwnLockInvalid { mismatch });
                        }
                        if !terms.initiator_may_claim(snap.y.tip) {
                            return give_up(GiveUpReason::CounterLockMissing);
                        }
                        if !finality.reaches(depth_x) {
                            return Step::to(Locked {
                                txref: lock.txref.clone(),
                            });
                        }
                        counter_lock(terms, secret, state, snap)
                    }
                }
            }
        }
    }

    /// Our lock is confirmed and our claim window is open: look at the responder's lock.
    fn counter_lock(
        terms: &SwapTerms,
        secret: &Preimage,
        state: &State,
        snap: &Snapshot,
    ) -> Step<State> {
        use State::*;
        let depth_y = terms.y.params.required_finality();
        match &snap.y.htlc {
            HtlcStatus::Absent => Step::to(LockConfirmed),
            HtlcStatus::Refunded { .. } => give_up(GiveUpReason::CounterRefunded),
            // Handled by the caller (secret out).
            HtlcStatus::Claimed { .. } => give_up(GiveUpReason::CounterLockMissing),
            HtlcStatus::Funded { lock, finality } => {
                // Rule 4: amount, asset, recipient = us, H and E_Y exactly as agreed (our
                // claim is built from the agreed terms; a claim of another lock could fail on
                // chain after revealing the secret).
                if let Err(mismatch) = terms.y.verify(&terms.hashlock, lock, ExpiryMatch::Exact) {
                    return give_up(GiveUpReason::CounterLockInvalid { mismatch });
                }
                if !finality.reaches(depth_y) {
                    return Step::to(CounterLockSeen {
                        txref: lock.txref.clone(),
                    });
                }
                if matches!(state, CounterLockValid | Claiming) {
                    Step::act(
                        Claiming,
                        Action::Claim {
                            leg: Leg::Y,
                            preimage: secret.clone(),
                        },
                    )
                } else {
                    Step::to(CounterLockValid)
                }
            }
        }
    }

    /// Getting our own asset back from X.
    fn refund_path(terms: &SwapTerms, reason: GiveUpReason, snap: &Snapshot) -> Step<State> {
        use State::*;
        let depth_x = terms.x.params.required_finality();
        match &snap.x.htlc {
            HtlcStatus::Absent => {
                // Nothing of ours on chain. A lock we signed may still linger: cancel it (its
                // coins or nonce spent elsewhere) so that it can never be mined after we leave.
                // Once X's expiry has passed (and the budget to mine anything still in flight)
                // and the cancel is final, nothing can appear that we would need to refund.
                let settled = terms.x.params.reached(
                    terms.x.params.claims_final_after(terms.x.expiry),
                    snap.x.tip,
                );
                let cancel = Action::CancelLock { leg: Leg::X };
                if settled {
                    Step::act(Cancelling { reason }, cancel)
                } else {
                    Step::act(AwaitRefund { reason }, cancel)
                }
            }
            HtlcStatus::Funded { .. } => {
                if terms.x_refundable(snap.x.tip) {
                    refund_step(terms, Refunding { reason }, Leg::X)
                } else {
                    Step::to(AwaitRefund { reason })
                }
            }
            HtlcStatus::Refunded { .. } if confirmed(&snap.x.htlc, depth_x) => Step::to(Done {
                outcome: Outcome::Refunded,
            }),
            HtlcStatus::Refunded { .. } if in_mempool(&snap.x.htlc) => {
                refund_step(terms, Refunding { reason }, Leg::X)
            }
            HtlcStatus::Refunded { .. } => Step::to(Refunding { reason }),
            HtlcStatus::Claimed { .. } => {
                // The responder took X. If we also got Y we swapped, otherwise we lost.
                if matches!(snap.y.htlc, HtlcStatus::Claimed { .. }) {
                    Step::to(Claimed)
                } else {
                    Step::to(Done {
                        outcome: Outcome::Lost,
                    })
                }
            }
        }
    }
}

/// The responder: locks second on Y, learns the secret from the initiator's claim, claims X.
pub mod responder {
    use super::*;

    /// The responder's states (`docs/protocol.md`). Stored as JSON with these exact tags.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(tag = "state", rename_all = "snake_case")]
    pub enum State {
        /// Terms agreed.
        Negotiated,
        /// Waiting for the initiator's lock on X.
        AwaitCounterLock,
        /// The initiator's lock is confirmed and matches the terms exactly.
        CounterLockValid,
        /// Our lock on Y has been (or is being) sent.
        Locking,
        /// Our lock is on chain.
        Locked {
            /// Our funding.
            txref: TxRef,
        },
        /// The initiator claimed Y; we persisted the secret and claim X next.
        SecretLearned {
            /// The secret.
            preimage: Preimage,
        },
        /// Our claim on X has been (or is being) sent.
        Claiming {
            /// The secret.
            preimage: Preimage,
        },
        /// Our refund of Y has been (or is being) sent.
        Refunding,
        /// Too late to lock, nothing of ours on Y and nothing can land there in time any
        /// more: making sure a lock we signed can never be mined either, then done.
        Cancelling,
        /// Finished.
        Done {
            /// How.
            outcome: Outcome,
        },
    }

    impl State {
        /// True once the swap has finished for us.
        pub fn is_final(&self) -> bool {
            matches!(self, State::Done { .. })
        }
    }

    fn abort(reason: GiveUpReason) -> Step<State> {
        Step::to(State::Done {
            outcome: Outcome::Aborted { reason },
        })
    }

    /// The state to persist once `action`, computed in `state`, was accepted by the rail: a
    /// cancel that is final ends the swap.
    pub fn after_sent(state: &State, action: &Action) -> Option<State> {
        match (state, action) {
            (State::Cancelling, Action::CancelLock { .. }) => Some(State::Done {
                outcome: Outcome::Aborted {
                    reason: GiveUpReason::TooLate,
                },
            }),
            _ => None,
        }
    }

    /// The responder's transition function.
    pub fn next(terms: &SwapTerms, state: &State, snap: &Snapshot) -> Step<State> {
        use State::*;
        if state.is_final() {
            return Step::to(state.clone());
        }
        let depth_x = terms.x.params.required_finality();

        // 1. Once we know the secret: persist it, then claim X.
        let known = match state {
            SecretLearned { preimage } | Claiming { preimage } => Some(preimage.clone()),
            _ => revealed(terms, &snap.y.htlc)
                .or_else(|| revealed(terms, &snap.x.htlc))
                .cloned(),
        };
        if let Some(preimage) = known {
            return match (state, &snap.x.htlc) {
                (SecretLearned { .. } | Claiming { .. }, HtlcStatus::Funded { .. }) => Step::act(
                    Claiming {
                        preimage: preimage.clone(),
                    },
                    Action::Claim {
                        leg: Leg::X,
                        preimage,
                    },
                ),
                // Our claim (or their refund) is on X: final once deep enough; while only in
                // the mempool keep sending our claim (a fee bump, or a replacement of their
                // refund where the chain allows it); otherwise wait for depth.
                (
                    SecretLearned { .. } | Claiming { .. },
                    HtlcStatus::Claimed { .. } | HtlcStatus::Refunded { .. },
                ) => {
                    if confirmed(&snap.x.htlc, depth_x) {
                        let outcome = match snap.x.htlc {
                            HtlcStatus::Claimed { .. } => Outcome::Swapped,
                            _ => Outcome::Lost,
                        };
                        Step::to(Done { outcome })
                    } else if in_mempool(&snap.x.htlc) {
                        Step::act(
                            Claiming {
                                preimage: preimage.clone(),
                            },
                            Action::Claim {
                                leg: Leg::X,
                                preimage,
                            },
                        )
                    } else {
                        Step::to(Claiming { preimage })
                    }
                }
                // X reorged out (or never there): wait for it to come back, until nothing
                // can land on X any more.
                (SecretLearned { .. } | Claiming { .. }, HtlcStatus::Absent) => {
                    let settled = terms.x.params.reached(
                        terms.x.params.claims_final_after(terms.x.expiry),
                        snap.x.tip,
                    );
                    if settled {
                        Step::to(Done {
                            outcome: Outcome::Lost,
                        })
                    } else {
                        Step::to(Claiming { preimage })
                    }
                }
                // Learned just now: persist before acting.
                _ => Step::to(SecretLearned { preimage }),
            };
        }

        match state {
            Negotiated => Step::to(AwaitCounterLock),
            AwaitCounterLock | CounterLockValid => {
                // Whatever pays our Y script now is not ours: `Locking` is persisted before a
                // lock is ever sent. (Anyone can pay a P2WSH address; that must never make us
                // believe we locked.)
                let tips = snap.tips();
                if let Err(_too_late) = terms.check_responder_may_lock(tips) {
                    return abort(match snap.x.htlc {
                        HtlcStatus::Absent => GiveUpReason::CounterLockMissing,
                        _ => GiveUpReason::TooLate,
                    });
                }
                match &snap.x.htlc {
                    HtlcStatus::Absent => Step::to(AwaitCounterLock),
                    HtlcStatus::Refunded { .. } | HtlcStatus::Claimed { .. } => {
                        abort(GiveUpReason::CounterRefunded)
                    }
                    HtlcStatus::Funded { lock, finality } => {
                        if let Err(mismatch) =
                            terms.x.verify(&terms.hashlock, lock, ExpiryMatch::Exact)
                        {
                            return abort(GiveUpReason::CounterLockInvalid { mismatch });
                        }
                        if !finality.reaches(depth_x) {
                            Step::to(AwaitCounterLock)
                        } else if matches!(state, CounterLockValid) {
                            Step::act(Locking, Action::Lock { leg: Leg::Y })
                        } else {
                            Step::to(CounterLockValid)
                        }
                    }
                }
            }
            _ => own_lock(terms, state, snap),
        }
    }

    /// Rule 3 with the initiator's lock: funded exactly as agreed, confirmed, time left.
    fn may_lock(terms: &SwapTerms, snap: &Snapshot) -> bool {
        let x_ok = match &snap.x.htlc {
            HtlcStatus::Funded { lock, finality } => {
                finality.reaches(terms.x.params.required_finality())
                    && terms
                        .x
                        .verify(&terms.hashlock, lock, ExpiryMatch::Exact)
                        .is_ok()
            }
            _ => false,
        };
        x_ok && terms.check_responder_may_lock(snap.tips()).is_ok()
    }

    /// Tracking our own lock on Y until it is claimed (handled above) or refunded.
    fn own_lock(terms: &SwapTerms, state: &State, snap: &Snapshot) -> Step<State> {
        use State::*;
        let depth_y = terms.y.params.required_finality();
        match &snap.y.htlc {
            HtlcStatus::Absent => {
                // (Re)lock only with every pre-lock check passing again (rule 3): the
                // initiator's lock funded, exactly as agreed, confirmed, and time left.
                if may_lock(terms, snap) && matches!(state, Locking | Locked { .. }) {
                    return Step::act(Locking, Action::Lock { leg: Leg::Y });
                }
                // Still allowed to lock later (the initiator's lock not final again after a
                // reorg, say): wait.
                if terms.check_responder_may_lock(snap.tips()).is_ok() {
                    return Step::to(state.clone());
                }
                // Too late to (re)lock, ever. Cancel a lock we signed that may linger (its
                // coins or nonce spent elsewhere), and wait until nothing we sent can still be
                // mined.
                let settled = terms.y.params.reached(
                    terms.y.params.claims_final_after(terms.y.expiry),
                    snap.y.tip,
                );
                let cancel = Action::CancelLock { leg: Leg::Y };
                if settled {
                    Step::act(Cancelling, cancel)
                } else {
                    Step::act(state.clone(), cancel)
                }
            }
            HtlcStatus::Funded { lock, .. } => {
                if terms.y_refundable(snap.y.tip) {
                    // Ours or not, whatever sits at our script is refundable to us.
                    refund_step(terms, Refunding, Leg::Y)
                } else if terms
                    .y
                    .verify(&terms.hashlock, lock, ExpiryMatch::Exact)
                    .is_ok()
                {
                    Step::to(Locked {
                        txref: lock.txref.clone(),
                    })
                } else {
                    // Not the agreed lock (a stranger's payment to our script): it is not
                    // ours and it does not replace ours.
                    Step::to(state.clone())
                }
            }
            HtlcStatus::Refunded { .. } if confirmed(&snap.y.htlc, depth_y) => Step::to(Done {
                outcome: Outcome::Refunded,
            }),
            HtlcStatus::Refunded { .. } if in_mempool(&snap.y.htlc) => {
                refund_step(terms, Refunding, Leg::Y)
            }
            HtlcStatus::Refunded { .. } => Step::to(Refunding),
            // A claim with a preimage that does not match H: not possible on a correct chain.
            HtlcStatus::Claimed { .. } => Step::to(state.clone()),
        }
    }
}
