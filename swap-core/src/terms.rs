//! Swap terms and the expiry rules that keep funds safe (`docs/protocol.md` rules 1-3).
//!
//! Leg X is the initiator's lock (longer expiry `E_X`), leg Y the responder's (shorter `E_Y`).
//! Every rule is evaluated "from now": each chain's tip is the reference point, heights convert
//! to seconds pessimistically (a height on X as early as the fast pace allows, one on Y as late
//! as the slow pace allows), timestamps convert with the clock drift against us.

use serde::{Deserialize, Serialize};

use crate::params::{ChainParams, ChainTip, Pace};
use crate::rail::{HtlcParams, ObservedLock, RailData, RAIL_DATA_VERSION};
use crate::types::{Account, Amount, Asset, Expiry, Hashlock, Height, SwapId};

/// Which HTLC of a swap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Leg {
    /// The initiator's lock (made first, longer expiry).
    X,
    /// The responder's lock (made second, shorter expiry).
    Y,
}

/// One side of a swap: who locks what for whom on which chain, until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegTerms {
    /// The chain and the parameters both parties agreed to compute expiries with.
    pub params: ChainParams,
    /// What is locked.
    pub asset: Asset,
    /// Exactly how much.
    pub amount: Amount,
    /// Who locks and can refund.
    pub sender: Account,
    /// Who can claim.
    pub recipient: Account,
    /// When the sender can refund.
    pub expiry: Expiry,
    /// What the leg's rail needs besides (required on a channel rail, absent on chain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rail_data: Option<RailData>,
}

/// Policy knobs of the rules that are not chain parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SafetyPolicy {
    /// Minimum seconds the initiator must still have to claim after the responder's lock is
    /// confirmed (rule 3).
    pub min_claim_window: u64,
    /// Extra seconds required on top of rule 2's worst case.
    pub margin: u64,
}

impl Default for SafetyPolicy {
    fn default() -> Self {
        Self {
            min_claim_window: 3600,
            margin: 1800,
        }
    }
}

/// Everything both parties agreed to. Constructed only through [`SwapTerms::new`] (or
/// deserialized from the store), which checks rules 1-3.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwapTerms {
    /// The swap.
    pub id: SwapId,
    /// `SHA256(s)`.
    pub hashlock: Hashlock,
    /// The initiator's lock.
    pub x: LegTerms,
    /// The responder's lock.
    pub y: LegTerms,
    /// The rule policy both agreed to.
    pub policy: SafetyPolicy,
}

/// Both chains' tips, seen at (about) the same moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Tips {
    /// Tip of the initiator's chain.
    pub x: ChainTip,
    /// Tip of the responder's chain.
    pub y: ChainTip,
}

/// Why terms were refused. Each rule violation names the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TermsError {
    /// Rule 1: the initiator could not get its claim mined in time.
    #[error(
        "rule 1 violated: the initiator's claim deadline on {chain} is {available}s away, \
         but locking, confirming and claiming need {needed}s"
    )]
    Rule1ClaimWindow {
        /// Chain Y.
        chain: String,
        /// Seconds (pessimistic) until the initiator's claim deadline.
        available: i128,
        /// Seconds the schedule needs before it.
        needed: i128,
    },
    /// Rule 2: the responder might not be able to claim after learning the secret.
    #[error(
        "rule 2 violated: the responder must be able to claim on {chain} {needed}s from now \
         (after the latest claim on the other chain and the time to notice it), but the \
         initiator may refund after {available}s"
    )]
    Rule2ResponderCannotReact {
        /// Chain X.
        chain: String,
        /// Seconds (pessimistic) until the responder's last chance to claim on X.
        available: i128,
        /// Seconds until the latest moment the responder can learn the secret, plus lag and
        /// margin.
        needed: i128,
    },
    /// Rule 3: the responder would lock with too little time left for the initiator to claim.
    #[error(
        "rule 3 violated: after the responder's lock confirms, the initiator would have \
         {available}s to claim; at least {needed}s are required"
    )]
    Rule3TooLateToLock {
        /// Seconds the initiator would have.
        available: i128,
        /// The configured minimum.
        needed: i128,
    },
    /// An amount of zero, or an amount in another asset's unit.
    #[error("leg {leg:?}: amount {amount} does not fit asset {asset:?} or is zero")]
    BadAmount {
        /// Which leg.
        leg: Leg,
        /// The amount.
        amount: Amount,
        /// The asset.
        asset: Asset,
    },
    /// An expiry not in the chain's unit (a timestamp for a height chain or vice versa).
    #[error("leg {leg:?}: expiry {expiry} is not a valid expiry on {chain}")]
    BadExpiryKind {
        /// Which leg.
        leg: Leg,
        /// The expiry.
        expiry: Expiry,
        /// The chain.
        chain: String,
    },
    /// An account that cannot exist on that chain, or the same account on both sides.
    #[error("leg {leg:?}: {reason}")]
    BadAccount {
        /// Which leg.
        leg: Leg,
        /// What is wrong.
        reason: String,
    },
    /// Rail data missing on a channel leg, present on an on-chain one, of another rail or of
    /// an unknown version.
    #[error("leg {leg:?}: rail data rejected: {reason}")]
    BadRailData {
        /// Which leg.
        leg: Leg,
        /// What is wrong.
        reason: String,
    },
    /// Chain parameters that make no sense, or that differ from ours.
    #[error("leg {leg:?}: chain parameters rejected: {reason}")]
    BadParams {
        /// Which leg.
        leg: Leg,
        /// What is wrong.
        reason: String,
    },
    /// A Lightning leg expiring further out (with its route budget) than Lightning nodes
    /// accept an HTLC: the payment would be refused.
    #[error(
        "leg {leg:?}: a Lightning HTLC {blocks} blocks out (its route included); nodes accept \
         at most {max}"
    )]
    LightningExpiryTooFar {
        /// Which leg.
        leg: Leg,
        /// Blocks from the tip to the expiry, plus the route budget.
        blocks: u64,
        /// The most Lightning nodes accept.
        max: u32,
    },
}

/// How a found lock differs from the agreed one (rule 4: an over- or under-funded lock is not
/// the agreed lock).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "mismatch", rename_all = "snake_case")]
#[non_exhaustive]
pub enum LockMismatch {
    /// Wrong amount.
    #[error("amount is {found}, agreed {expected}")]
    Amount {
        /// Agreed.
        expected: Amount,
        /// On chain.
        found: Amount,
    },
    /// Wrong asset or token.
    #[error("asset is {found:?}, agreed {expected:?}")]
    Asset {
        /// Agreed.
        expected: Asset,
        /// On chain.
        found: Asset,
    },
    /// Pays someone else.
    #[error("recipient is {found}, agreed {expected}")]
    Recipient {
        /// Agreed.
        expected: Account,
        /// On chain.
        found: Account,
    },
    /// Refunds to someone else.
    #[error("sender is {found}, agreed {expected}")]
    Sender {
        /// Agreed.
        expected: Account,
        /// On chain.
        found: Account,
    },
    /// Another hashlock.
    #[error("hashlock is {found}, agreed {expected}")]
    Hashlock {
        /// Agreed.
        expected: Hashlock,
        /// On chain.
        found: Hashlock,
    },
    /// An expiry other than agreed (or earlier than agreed, where later is acceptable).
    #[error("expiry is {found}, agreed {expected}")]
    Expiry {
        /// Agreed.
        expected: Expiry,
        /// On chain.
        found: Expiry,
    },
}

/// How strictly a lock's expiry must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiryMatch {
    /// Exactly the agreed expiry.
    Exact,
    /// The agreed expiry or later (only ever more time for the party checking).
    AtLeast,
}

impl LegTerms {
    /// Compares a lock found on chain with these terms.
    pub fn verify(
        &self,
        hashlock: &Hashlock,
        lock: &ObservedLock,
        expiry: ExpiryMatch,
    ) -> Result<(), LockMismatch> {
        if lock.asset != self.asset {
            return Err(LockMismatch::Asset {
                expected: self.asset.clone(),
                found: lock.asset.clone(),
            });
        }
        if lock.amount != self.amount {
            return Err(LockMismatch::Amount {
                expected: self.amount,
                found: lock.amount,
            });
        }
        if lock.recipient != self.recipient {
            return Err(LockMismatch::Recipient {
                expected: self.recipient,
                found: lock.recipient,
            });
        }
        if lock.sender != self.sender {
            return Err(LockMismatch::Sender {
                expected: self.sender,
                found: lock.sender,
            });
        }
        if lock.hashlock != *hashlock {
            return Err(LockMismatch::Hashlock {
                expected: *hashlock,
                found: lock.hashlock,
            });
        }
        let expiry_ok = match (expiry, self.expiry, lock.expiry) {
            (ExpiryMatch::Exact, a, b) => a == b,
            (ExpiryMatch::AtLeast, Expiry::Height(a), Expiry::Height(b)) => b >= a,
            (ExpiryMatch::AtLeast, Expiry::Time(a), Expiry::Time(b)) => b >= a,
            _ => false,
        };
        if !expiry_ok {
            return Err(LockMismatch::Expiry {
                expected: self.expiry,
                found: lock.expiry,
            });
        }
        Ok(())
    }

    /// The adapter-facing description of this leg's HTLC.
    pub fn htlc(
        &self,
        swap_id: SwapId,
        hashlock: Hashlock,
        key_index: u32,
        watch_from: Height,
    ) -> HtlcParams {
        HtlcParams {
            swap_id,
            key_index,
            hashlock,
            asset: self.asset.clone(),
            amount: self.amount,
            sender: self.sender,
            recipient: self.recipient,
            expiry: self.expiry,
            watch_from,
            rail_data: self.rail_data.clone(),
        }
    }

    fn check_shape(&self, leg: Leg) -> Result<(), TermsError> {
        self.params
            .validate()
            .map_err(|reason| TermsError::BadParams { leg, reason })?;
        if self.amount.is_zero() || !self.asset.fits(&self.amount) {
            return Err(TermsError::BadAmount {
                leg,
                amount: self.amount,
                asset: self.asset.clone(),
            });
        }
        // nLockTime/CLTV values from 500,000,000 on are timestamps, not heights.
        if matches!(self.expiry, Expiry::Height(h) if h.0 >= 500_000_000)
            || matches!(self.expiry, Expiry::Time(t) if t.0 >= u64::MAX / 4)
        {
            return Err(TermsError::BadExpiryKind {
                leg,
                expiry: self.expiry,
                chain: self.params.chain.to_string(),
            });
        }
        if !self.params.expiry_fits(self.expiry) {
            return Err(TermsError::BadExpiryKind {
                leg,
                expiry: self.expiry,
                chain: self.params.chain.to_string(),
            });
        }
        let account_fits = |a: &Account| {
            matches!(
                (self.params.expiry_kind(), a),
                (crate::params::ExpiryKind::Height, Account::PublicKey(_))
                    | (crate::params::ExpiryKind::Time, Account::Evm(_))
            )
        };
        if !account_fits(&self.sender) || !account_fits(&self.recipient) {
            return Err(TermsError::BadAccount {
                leg,
                reason: format!("accounts do not belong on {}", self.params.chain),
            });
        }
        if self.sender == self.recipient {
            return Err(TermsError::BadAccount {
                leg,
                reason: "sender and recipient are the same account".into(),
            });
        }
        let kind = self.params.kind;
        match &self.rail_data {
            None if kind.is_channel() => Err(TermsError::BadRailData {
                leg,
                reason: format!("a {kind:?} leg needs its rail data"),
            }),
            Some(_) if !kind.is_channel() => Err(TermsError::BadRailData {
                leg,
                reason: "an on-chain leg carries no rail data".into(),
            }),
            Some(d) if d.version != RAIL_DATA_VERSION => Err(TermsError::BadRailData {
                leg,
                reason: format!(
                    "rail data version {} (this build knows {RAIL_DATA_VERSION})",
                    d.version
                ),
            }),
            Some(d) if d.kind() != kind => Err(TermsError::BadRailData {
                leg,
                reason: format!("{:?} data on a {kind:?} leg", d.kind()),
            }),
            _ => Ok(()),
        }
    }
}

impl SwapTerms {
    /// Checks the terms' shape and rules 1-3 at the given tips, and returns them.
    pub fn new(
        id: SwapId,
        hashlock: Hashlock,
        x: LegTerms,
        y: LegTerms,
        policy: SafetyPolicy,
        tips: Tips,
    ) -> Result<Self, TermsError> {
        let terms = Self {
            id,
            hashlock,
            x,
            y,
            policy,
        };
        terms.x.check_shape(Leg::X)?;
        terms.y.check_shape(Leg::Y)?;
        terms.check_schedule(tips)?;
        terms.check_rule2_with(tips, terms.agreement_slack())?;
        terms.check_lightning_reach(tips)?;
        Ok(terms)
    }

    /// Builds terms with default expiries: the responder's about 12 hours out, the initiator's
    /// about 24 hours out or later when rule 2 needs more (never tighter than the rules allow).
    /// The `expiry` fields of `x` and `y` are overwritten.
    pub fn with_default_expiries(
        id: SwapId,
        hashlock: Hashlock,
        mut x: LegTerms,
        mut y: LegTerms,
        policy: SafetyPolicy,
        tips: Tips,
    ) -> Result<Self, TermsError> {
        y.expiry = y.params.expiry_after(tips.y, 12 * 3600);
        // Rule 1: where blocks may come much faster than expected (a testnet's 25 %), 12 hours
        // of blocks can be too few for the schedule: E_Y grows by what is missing, read at the
        // fast pace, plus a block.
        let mut extra = 0u64;
        for _ in 0..4 {
            let probe = Self {
                id,
                hashlock,
                x: x.clone(),
                y: y.clone(),
                policy,
            };
            let Err(TermsError::Rule1ClaimWindow {
                available, needed, ..
            }) = probe.check_schedule(tips)
            else {
                break;
            };
            let short = u64::try_from(needed - available).unwrap_or(0);
            extra +=
                short * 100 / u64::from(y.params.fast_factor_pct.max(1)) + y.params.block_interval;
            y.expiry = y.params.expiry_after(tips.y, 12 * 3600 + extra);
        }
        // The least E_X that satisfies rule 2 with the margin and the agreement slack.
        let needed = Self::rule2_needed(&y, tips.y, &policy)
            + 2 * x.params.blocks_secs(1, Pace::Slow)
            + y.params.blocks_secs(1, Pace::Slow);
        let min_x = match x.params.expiry_kind() {
            crate::params::ExpiryKind::Height => {
                // blocks * interval * fast / 100 >= needed
                let per_100 =
                    (x.params.block_interval as i128 * x.params.fast_factor_pct as i128).max(1);
                let blocks = (needed.max(0) * 100 + per_100 - 1) / per_100;
                Expiry::Height(Height(
                    tips.x.height.0 + x.params.cutoff_blocks() as u64 + blocks as u64 + 1,
                ))
            }
            crate::params::ExpiryKind::Time => {
                let budget = x
                    .params
                    .blocks_secs(x.params.cutoff_blocks() as i128, Pace::Slow)
                    as u64;
                Expiry::Time(crate::types::Timestamp(
                    tips.x.time.0 + 2 * x.params.clock_drift + budget + needed.max(0) as u64 + 1,
                ))
            }
        };
        let default_x = x.params.expiry_after(tips.x, 24 * 3600);
        x.expiry = match (min_x, default_x) {
            (Expiry::Height(a), Expiry::Height(b)) => Expiry::Height(a.max(b)),
            (Expiry::Time(a), Expiry::Time(b)) => Expiry::Time(a.max(b)),
            (a, _) => a,
        };
        Self::new(id, hashlock, x, y, policy, tips)
    }

    /// The terms of one leg.
    pub fn leg(&self, leg: Leg) -> &LegTerms {
        match leg {
            Leg::X => &self.x,
            Leg::Y => &self.y,
        }
    }

    /// Seconds from now until the visibility bound `V_Y` at its latest (the last moment a claim
    /// can still land on Y, plus the time to notice it), plus the margin: the responder must
    /// still be able to claim on X after that. Rule 2 is `C_X >= V_Y + margin`.
    fn rule2_needed(y: &LegTerms, tip_y: ChainTip, policy: &SafetyPolicy) -> i128 {
        let last_y = y.params.claims_final_after(y.expiry);
        // On a Bitcoin-family Y a late claim can land until the responder's refund is mined,
        // and the responder sends that refund only after it notices E_Y: one more lag.
        let refund_noticed = match y.expiry {
            Expiry::Height(_) => y.params.observe_lag as i128,
            Expiry::Time(_) => 0,
        };
        y.params.secs_until(last_y, tip_y, Pace::Slow)
            + refund_noticed
            + y.params.observe_lag as i128
            + policy.margin as i128
    }

    /// Seconds from now until the responder's claim cutoff on X, `C_X` at its earliest (the
    /// initiator refunds after `E_X`; the claim needs `claim_blocks` to get mined, and on a
    /// channel rail the enforcement delay before that).
    fn rule2_available(&self, tips: Tips) -> i128 {
        let deadline_x = self.x.params.claim_deadline(self.x.expiry);
        self.x.params.secs_until(deadline_x, tips.x, Pace::Fast)
    }

    /// Extra seconds rule 2 must hold by when terms are agreed, so that it still holds when the
    /// responder re-checks it before locking. Between blocks the rules' view of a chain stands
    /// still while real time passes: the re-check can find up to one slow block of each chain
    /// less slack than the agreement did.
    pub fn agreement_slack(&self) -> i128 {
        self.recheck_slack()
            + self.x.params.blocks_secs(1, Pace::Slow)
            + self.y.params.blocks_secs(1, Pace::Slow)
    }

    /// Extra seconds the responder's re-check before locking requires: the X tip it reads may
    /// be up to one slow block old, so "now" on X may be that much later.
    fn recheck_slack(&self) -> i128 {
        self.x.params.blocks_secs(1, Pace::Slow)
    }

    /// Rule 2: the responder can always react to the initiator's claim, however the chains'
    /// paces vary within their bounds.
    pub fn check_rule2(&self, tips: Tips) -> Result<(), TermsError> {
        self.check_rule2_with(tips, 0)
    }

    fn check_rule2_with(&self, tips: Tips, extra: i128) -> Result<(), TermsError> {
        let needed = Self::rule2_needed(&self.y, tips.y, &self.policy) + extra;
        let available = self.rule2_available(tips);
        if available < needed {
            return Err(TermsError::Rule2ResponderCannotReact {
                chain: self.x.params.chain.to_string(),
                available,
                needed,
            });
        }
        Ok(())
    }

    /// Seconds (pessimistic: reached early) until the initiator's claim deadline on Y.
    pub fn secs_to_initiator_deadline(&self, tip_y: ChainTip) -> i128 {
        let deadline = self.y.params.claim_deadline(self.y.expiry);
        self.y.params.secs_until(deadline, tip_y, Pace::Fast)
    }

    /// Rule 1 at agreement time: the whole schedule (initiator's lock confirmed and noticed,
    /// responder's lock confirmed and noticed, the minimum claim window) fits before the
    /// initiator's claim deadline.
    pub fn check_schedule(&self, tips: Tips) -> Result<(), TermsError> {
        let available = self.secs_to_initiator_deadline(tips.y);
        let needed = self.x.params.lock_secs()
            + self.x.params.observe_lag as i128
            + self.responder_lock_secs()
            + self.policy.min_claim_window as i128;
        if available < needed {
            return Err(TermsError::Rule1ClaimWindow {
                chain: self.y.params.chain.to_string(),
                available,
                needed,
            });
        }
        Ok(())
    }

    /// A Lightning leg's HTLC, on its first hop up to `route_blocks` after the expiry, is
    /// within what Lightning nodes accept ([`crate::params::LIGHTNING_MAX_CLTV_BLOCKS`]).
    fn check_lightning_reach(&self, tips: Tips) -> Result<(), TermsError> {
        for (leg, l, tip) in [(Leg::X, &self.x, tips.x), (Leg::Y, &self.y, tips.y)] {
            let (crate::params::RailKind::Lightning, Expiry::Height(e)) = (l.params.kind, l.expiry)
            else {
                continue;
            };
            let blocks = e.0.saturating_sub(tip.height.0) + u64::from(l.params.route_blocks);
            let max = crate::params::LIGHTNING_MAX_CLTV_BLOCKS;
            if blocks > u64::from(max) {
                return Err(TermsError::LightningExpiryTooFar { leg, blocks, max });
            }
        }
        Ok(())
    }

    /// Seconds (slow) for the responder's lock to become final and be noticed by the
    /// initiator.
    fn responder_lock_secs(&self) -> i128 {
        self.y.params.finality_secs() + self.y.params.observe_lag as i128
    }

    /// Rule 3, checked by the responder right before it locks: the initiator still has the
    /// minimum claim window after the responder's lock confirms, and rule 2 still holds.
    pub fn check_responder_may_lock(&self, tips: Tips) -> Result<(), TermsError> {
        let available = self.secs_to_initiator_deadline(tips.y) - self.responder_lock_secs();
        let needed = self.policy.min_claim_window as i128;
        if available < needed {
            return Err(TermsError::Rule3TooLateToLock { available, needed });
        }
        self.check_rule2_with(tips, self.recheck_slack())
    }

    /// Rule 1, checked by the initiator before it reveals the secret: its claim on Y can still
    /// be mined before the responder can refund.
    pub fn initiator_may_claim(&self, tip_y: ChainTip) -> bool {
        let deadline = self.y.params.claim_deadline(self.y.expiry);
        !self.y.params.reached(deadline, tip_y)
    }

    /// True once the initiator can refund its lock.
    pub fn x_refundable(&self, tip_x: ChainTip) -> bool {
        self.x.params.refundable(self.x.expiry, tip_x)
    }

    /// True once the responder can refund its lock.
    pub fn y_refundable(&self, tip_y: ChainTip) -> bool {
        self.y.params.refundable(self.y.expiry, tip_y)
    }
}

#[cfg(test)]
#[path = "terms_tests.rs"]
mod tests;
