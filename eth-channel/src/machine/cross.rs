//! Crossing proposals (see the parent module's docs): B abandons its own proposal for A's,
//! A re-proposes its change above.

use eth_adapter::channel::{OnChain, Side};

use super::{Change, Event, Party, Step};
use crate::msg::{Message, Proposal, RejectCode, RejectMsg};
use crate::rules::{next_state, Reject};
use crate::store::CoSigned;

impl Party {
    /// The peer answered our pending proposal with `Crossed` (we are A and B's proposal
    /// crossed ours, or the peer gave up our proposal's version): abandon it and sign the
    /// same change at the next version. A final proposal that cannot be built again stays
    /// pending (it is never abandoned without a successor: the peer holds our signature).
    pub(super) fn repropose(&self, mine: &Proposal, now: u64, chain: &OnChain) -> Step {
        let abandoned = mine.state.version;
        let built = self.build(mine.kind.clone(), abandoned + 1, now, chain);
        if let (Err(reason), true) = (&built, mine.state.is_final) {
            return Step {
                base: self.latest.state.version,
                change: Change::None,
                out: None,
                event: Event::PeerRefused {
                    code: RejectCode::Crossed,
                    text: format!("our final proposal cannot be made again above: {reason}"),
                },
            };
        }
        let (then, event) = match built {
            Ok(p) => (
                Some(p),
                Event::Reproposed {
                    abandoned,
                    version: abandoned + 1,
                },
            ),
            Err(reason) => (
                None,
                Event::Dropped {
                    abandoned,
                    kind: mine.kind.clone(),
                    reason,
                },
            ),
        };
        Step {
            base: self.latest.state.version,
            out: then.clone().map(Message::Propose),
            change: Change::Abandon {
                version: abandoned,
                then,
            },
            event,
        }
    }

    /// Whether `p` (the peer's) is the state its kind makes of our latest co-signed one.
    fn builds_on_latest(&self, p: &Proposal, now: u64) -> bool {
        self.builds_on(&self.latest, p, now)
    }

    /// Whether `p` (the peer's) is the state its kind makes of `prev`.
    fn builds_on(&self, prev: &CoSigned, p: &Proposal, now: u64) -> bool {
        let peer = crate::rules::other(self.me);
        next_state(&self.chan, prev, &self.cfg, &p.kind, peer, now).is_ok_and(|(mut s, locks)| {
            s.version = p.state.version;
            s == p.state.state() && locks == p.state.locks()
        })
    }

    /// We are B and the peer's proposal `p` crosses ours (or one we abandoned for it):
    /// abandon ours (if still pending) and answer `Crossed`. `None` if `p` is no crossing.
    pub(super) fn crossing(&self, p: &Proposal, now: u64) -> Option<Step> {
        if self.me != Side::B || p.channel != self.id {
            return None;
        }
        let v = p.state.version;
        // Ours at `v`; or below it when A skipped versions we never signed (a proposal of A's
        // refused and abandoned) and built its proposal on our latest state, as ours is: either
        // way A's wins. A proposal built on ours (A countersigned it, its countersign not here
        // yet) is no crossing: it gets `Busy`, and ours completes when A answers it again.
        let mine = self.pending.as_ref().filter(|m| {
            m.state.version == v || (m.state.version < v && self.builds_on_latest(p, now))
        });
        // Above ours and built neither on our latest state nor on our proposal: invalid
        // whatever we answer later. Refused now with its reason, not `Busy`: A would send it
        // again for ever while our own proposal waits for A.
        if let Some(m) = self.pending.as_ref().filter(|m| m.state.version < v) {
            let ours = CoSigned {
                state: m.state.state(),
                locks: m.state.locks(),
                sig_a: None,
                sig_b: None,
            };
            if mine.is_none() && !self.builds_on(&ours, p, now) {
                return Some(self.refusal(
                    p,
                    Reject {
                        code: RejectCode::StateMismatch,
                        detail: "built on neither our latest state nor our pending proposal".into(),
                    },
                ));
            }
        }
        // Or A's at or below a version we abandoned (crossing, or refused): we never sign
        // there, so A must go above it, as after a crossing.
        if mine.is_none() && self.abandoned().is_none_or(|a| a < v) {
            return None;
        }
        // A final state of ours is never abandoned: the peer holds our signature on it, and
        // `cooperativeClose` takes any co-signed final state, whatever its version; were we to
        // countersign the peer's change at the next version (say a lock to us, on which our
        // swap then relies), the peer could still close with our final state without it. The
        // peer's proposal gets `Busy` instead (see `validate`); the channel closes on chain if
        // neither gives way.
        if mine.is_some_and(|m| m.state.is_final) {
            return None;
        }
        // Only A's own signed proposal makes us give up ours.
        self.chan
            .verify(&p.state.state(), &p.sig.into(), self.chan.party(Side::A))
            .ok()?;
        let reject = Message::Reject(RejectMsg {
            channel: self.id,
            version: v,
            code: RejectCode::Crossed,
            text: format!(
                "crossing proposals of version {v}: propose again at {}",
                v + 1
            ),
        });
        Some(match mine {
            Some(m) => Step {
                base: self.latest.state.version,
                change: Change::Abandon {
                    version: m.state.version,
                    then: None,
                },
                out: Some(reject),
                event: Event::Crossed {
                    abandoned: m.state.version,
                    kind: m.kind.clone(),
                },
            },
            None => Step {
                base: self.latest.state.version,
                change: Change::None,
                out: Some(reject),
                event: Event::RefusedPeer(Reject {
                    code: RejectCode::Crossed,
                    detail: format!("version {v} was abandoned (crossing proposals)"),
                }),
            },
        })
    }
}
