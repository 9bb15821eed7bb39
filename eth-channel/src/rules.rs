//! The update rules: what each [`UpdateKind`] makes of the latest co-signed state. A
//! receiver countersigns exactly that state, nothing else.

use alloy::primitives::B256;
use sha2::{Digest, Sha256};

use eth_adapter::channel::{
    locks_hash, ChannelError, ChannelRef, Lock, Side, State, MAX_LOCKS, MAX_LOCK_TTL,
};

use crate::machine::Config;
use crate::msg::{RejectCode, UpdateKind, MAX_BATCH};
use crate::store::CoSigned;

/// Why a proposal is refused: a code for the peer and a detail for logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {detail}")]
pub struct Reject {
    /// The stable code.
    pub code: RejectCode,
    /// What exactly.
    pub detail: String,
}

pub(crate) fn rej<T>(code: RejectCode, detail: impl Into<String>) -> Result<T, Reject> {
    Err(Reject {
        code,
        detail: detail.into(),
    })
}

impl From<ChannelError> for Reject {
    fn from(e: ChannelError) -> Self {
        let code = match &e {
            ChannelError::Sum | ChannelError::LocksHash => RejectCode::Capacity,
            ChannelError::TooManyLocks(_) => RejectCode::TooManyLocks,
            ChannelError::LockTooLong { .. } => RejectCode::BadExpiry,
            ChannelError::LockSender(_) => RejectCode::StateMismatch,
            ChannelError::Signature(_) => RejectCode::BadSignature,
            ChannelError::AfterFinal => RejectCode::AfterFinal,
            ChannelError::ZeroVersion | ChannelError::NotNewer { .. } => RejectCode::WrongVersion,
            _ => RejectCode::Rules,
        };
        Reject {
            code,
            detail: e.to_string(),
        }
    }
}

/// `sha256(preimage)`.
pub fn hashlock_of(preimage: &B256) -> B256 {
    B256::from_slice(&Sha256::digest(preimage.0))
}

pub(crate) fn other(s: Side) -> Side {
    match s {
        Side::A => Side::B,
        Side::B => Side::A,
    }
}

pub(crate) fn bal(s: &mut State, side: Side) -> &mut u128 {
    match side {
        Side::A => &mut s.balanceA,
        Side::B => &mut s.balanceB,
    }
}

/// The state `kind` proposed by `by` makes from `prev`, the latest co-signed state: the
/// only state a receiver countersigns for that kind (see the crate docs for the rules).
pub(crate) fn next_state(
    chan: &ChannelRef,
    prev: &CoSigned,
    cfg: &Config,
    kind: &UpdateKind,
    by: Side,
    now: u64,
) -> Result<(State, Vec<Lock>), Reject> {
    if prev.state.isFinal {
        return rej(RejectCode::AfterFinal, "the latest state is final");
    }
    let mut s = prev.state.clone();
    s.version = s.version.checked_add(1).ok_or(Reject {
        code: RejectCode::WrongVersion,
        detail: "version overflow".into(),
    })?;
    let mut locks = prev.locks.clone();
    match kind {
        UpdateKind::Batch { changes } => {
            if changes.len() < 2 || changes.len() > MAX_BATCH {
                return rej(
                    RejectCode::Rules,
                    format!("a batch of {} changes (2 to {MAX_BATCH})", changes.len()),
                );
            }
            // Each hashlock once: a lock and its claim never in one state change (the
            // history would show the lock in no state).
            let mut named = std::collections::HashSet::new();
            for (i, change) in changes.iter().enumerate() {
                let hashlock = match change {
                    UpdateKind::Lock { lock } => lock.hashlock,
                    UpdateKind::Claim { hashlock, .. } => *hashlock,
                    _ => {
                        return rej(
                            RejectCode::Rules,
                            format!("change {i} of a batch: only locks and claims are batched"),
                        )
                    }
                };
                if !named.insert(hashlock) {
                    return rej(
                        RejectCode::Rules,
                        format!("change {i} of a batch: its hashlock is named twice"),
                    );
                }
                apply(chan, cfg, change, by, now, &mut s, &mut locks).map_err(|r| Reject {
                    code: r.code,
                    detail: format!("change {i} of a batch: {}", r.detail),
                })?;
            }
        }
        one => apply(chan, cfg, one, by, now, &mut s, &mut locks)?,
    }
    s.locksHash = locks_hash(&locks);
    Ok((s, locks))
}

/// One change's rule: `kind` by `by` on the state `s` with `locks` (changed in place; left
/// half-changed on a refusal, which refuses the whole update).
fn apply(
    chan: &ChannelRef,
    cfg: &Config,
    kind: &UpdateKind,
    by: Side,
    now: u64,
    s: &mut State,
    locks: &mut Vec<Lock>,
) -> Result<(), Reject> {
    let earliest = now.saturating_add(cfg.min_expiry_margin);
    let find = |locks: &[Lock], h: &B256| locks.iter().position(|l| l.hashlock == *h);
    match kind {
        UpdateKind::Lock { lock } => {
            let lock = Lock::from(lock);
            if lock.from != chan.party(by) {
                return rej(RejectCode::StateMismatch, "a lock from the non-proposer");
            }
            if lock.amount == 0 {
                return rej(RejectCode::StateMismatch, "a lock of zero");
            }
            if locks.len() >= MAX_LOCKS {
                return rej(
                    RejectCode::TooManyLocks,
                    format!("{MAX_LOCKS} locks pending"),
                );
            }
            if lock.expiry < earliest || lock.expiry > now.saturating_add(MAX_LOCK_TTL) {
                return rej(
                    RejectCode::BadExpiry,
                    format!("lock expiry {} at now {now}", lock.expiry),
                );
            }
            if find(locks, &lock.hashlock).is_some() {
                return rej(RejectCode::DuplicateHashlock, "hashlock already pending");
            }
            let b = bal(s, by);
            *b = b.checked_sub(lock.amount).ok_or(Reject {
                code: RejectCode::InsufficientBalance,
                detail: format!("lock of {} beyond the balance {}", lock.amount, b),
            })?;
            locks.push(lock);
        }
        UpdateKind::Claim { hashlock, preimage } => {
            let i = find(locks, hashlock).ok_or(Reject {
                code: RejectCode::BadPreimage,
                detail: "no pending lock on this hashlock".into(),
            })?;
            if hashlock_of(preimage) != *hashlock {
                return rej(RejectCode::BadPreimage, "sha256(preimage) != hashlock");
            }
            if now >= locks[i].expiry {
                return rej(
                    RejectCode::LockExpired,
                    "claim at or after the lock's expiry",
                );
            }
            let l = locks.remove(i);
            let to = chan.side_of(l.from).map(other).ok_or(Reject {
                code: RejectCode::StateMismatch,
                detail: "lock from neither party".into(),
            })?;
            credit(s, to, l.amount)?;
        }
        UpdateKind::CancelExpired { hashlock } => {
            let i = find(locks, hashlock).ok_or(Reject {
                code: RejectCode::StateMismatch,
                detail: "no pending lock on this hashlock".into(),
            })?;
            if now < locks[i].expiry {
                return rej(
                    RejectCode::LockNotExpired,
                    "cancel before the lock's expiry",
                );
            }
            let l = locks.remove(i);
            let from = chan.side_of(l.from).ok_or(Reject {
                code: RejectCode::StateMismatch,
                detail: "lock from neither party".into(),
            })?;
            credit(s, from, l.amount)?;
        }
        UpdateKind::Withdraw { amount, expiry } => {
            if *amount == 0 {
                return rej(RejectCode::StateMismatch, "a withdrawal of zero");
            }
            if *expiry < earliest {
                return rej(RejectCode::BadExpiry, "withdrawal expiring too soon");
            }
            let b = bal(s, by);
            *b = b.checked_sub(*amount).ok_or(Reject {
                code: RejectCode::InsufficientBalance,
                detail: format!("withdrawal of {amount} beyond the balance {b}"),
            })?;
            let w = match by {
                Side::A => &mut s.withdrawnA,
                Side::B => &mut s.withdrawnB,
            };
            *w = w.checked_add(*amount).ok_or(Reject {
                code: RejectCode::Capacity,
                detail: "withdrawn total overflow".into(),
            })?;
            s.withdrawExpiry = *expiry;
        }
        UpdateKind::TopUp { amount } => {
            if *amount == 0 {
                return rej(RejectCode::StateMismatch, "a top-up of zero");
            }
            let d = match by {
                Side::A => &mut s.depositA,
                Side::B => &mut s.depositB,
            };
            *d = d.checked_add(*amount).ok_or(Reject {
                code: RejectCode::Capacity,
                detail: "deposit total overflow".into(),
            })?;
            credit(s, by, *amount)?;
        }
        UpdateKind::Close => {
            if !locks.is_empty() {
                return rej(
                    RejectCode::StateMismatch,
                    "a final state with pending locks",
                );
            }
            s.isFinal = true;
        }
        UpdateKind::Batch { .. } => return rej(RejectCode::Rules, "a batch inside a batch"),
    }
    Ok(())
}

fn credit(s: &mut State, side: Side, amount: u128) -> Result<(), Reject> {
    let b = bal(s, side);
    *b = b.checked_add(amount).ok_or(Reject {
        code: RejectCode::Capacity,
        detail: "balance overflow".into(),
    })?;
    Ok(())
}
