//! Messages between the two parties: versioned, size-limited JSON. Messages are hints, the
//! chains are the truth: nothing a message says about a lock is acted on before it is checked
//! on chain. Malformed input is a typed error, never a panic.

use serde::{Deserialize, Serialize};

use crate::params::{ChainId, ChainParams, RailKind};
use crate::rail::RailData;
use crate::terms::{Leg, SafetyPolicy, SwapTerms, TermsError, Tips};
use crate::types::{Account, Amount, Asset, Hashlock, SwapId, TxRef};

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u16 = 1;

/// The largest encoded message accepted.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024;

/// The longest free-text reason carried (longer ones are cut).
pub const MAX_REASON_CHARS: usize = 256;

/// One message, with its version and swap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// Protocol version of the sender.
    pub version: u16,
    /// The swap it is about.
    pub swap_id: SwapId,
    /// The message.
    pub body: Message,
}

/// What the parties tell each other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    /// A taker asks a maker to quote a swap: the taker gives `give` on `give_chain` and wants
    /// `want` on `want_chain`.
    QuoteRequest {
        /// The taker's (initiator's) chain X.
        give_chain: ChainId,
        /// What the taker locks on X.
        give_asset: Asset,
        /// How much.
        give: Amount,
        /// The maker's chain Y.
        want_chain: ChainId,
        /// What the maker locks on Y.
        want_asset: Asset,
        /// How much.
        want: Amount,
        /// Where on X the taker locks (absent: on chain).
        #[serde(default, skip_serializing_if = "RailKind::is_on_chain")]
        give_rail: RailKind,
        /// Where on Y the maker locks (absent: on chain).
        #[serde(default, skip_serializing_if = "RailKind::is_on_chain")]
        want_rail: RailKind,
        /// The swap's hashlock, when the maker must prepare to receive on X before the terms
        /// (a Lightning hold invoice for it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hashlock: Option<Hashlock>,
        /// The taker's account on X, when the maker must prepare to receive on X from it (the
        /// channel of an Ethereum channel leg is one between the maker and this account).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        taker_x: Option<Account>,
    },
    /// The maker's answer: the accounts it uses for this swap.
    Quote {
        /// The maker's account on chain X (where it claims).
        maker_x: Account,
        /// The maker's account on chain Y (where it locks and refunds).
        maker_y: Account,
        /// What the taker needs to lock on X when X is a channel rail (the maker's hold
        /// invoice on Lightning): goes into the terms' X leg.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        x_rail_data: Option<RailData>,
    },
    /// The initiator proposes terms (assets, amounts, `H`, both parties' accounts, expiries,
    /// chain parameters).
    Proposal {
        /// The proposed terms.
        terms: Box<SwapTerms>,
    },
    /// The responder accepts the proposal as sent.
    Accept,
    /// The responder refuses.
    Reject {
        /// Why, for people.
        reason: String,
    },
    /// "I have locked": a hint to look at the chain now.
    LockNotice {
        /// Which leg.
        leg: Leg,
        /// The funding transaction.
        txref: TxRef,
    },
    /// The sender gives up before locking anything.
    Abort {
        /// Why, for people.
        reason: String,
    },
    /// A taker without a channel to carry its leg asks where to open one to the maker on
    /// `rail` (of `chain`), before any swap (the envelope's swap id is a fresh random one).
    ContactRequest {
        /// The leg's chain.
        chain: ChainId,
        /// The leg's rail.
        rail: RailKind,
    },
    /// The maker's answer: where its node on that rail takes channels (`NODEID@HOST:PORT` for
    /// Lightning, `KEY@HOST:PORT` for an Ethereum channel), when it says. A hint for people,
    /// checked by its reader.
    Contact {
        /// The address, at most [`MAX_CONTACT_CHARS`] characters.
        address: Option<String>,
        /// The maker's account on that rail when a channel names it (its Ethereum address
        /// for an Ethereum channel).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        account: Option<String>,
    },
}

/// The longest contact address carried in a [`Message::Contact`].
pub const MAX_CONTACT_CHARS: usize = 200;

/// Why a message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// Larger than [`MAX_MESSAGE_BYTES`].
    #[error("message of {size} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Not a message of this protocol.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// A version this build does not speak.
    #[error("unsupported protocol version {got} (this build speaks {supported})")]
    UnsupportedVersion {
        /// The message's version.
        got: u16,
        /// Ours.
        supported: u16,
    },
    /// The message is well formed but its swap id is not the one it claims (proposal id
    /// differs from the envelope's).
    #[error("message is about swap {envelope} but carries swap {inner}")]
    IdMismatch {
        /// Envelope id.
        envelope: SwapId,
        /// Id inside.
        inner: SwapId,
    },
}

fn cut(reason: &str) -> String {
    reason.chars().take(MAX_REASON_CHARS).collect()
}

impl Envelope {
    /// A message of the current version.
    pub fn new(swap_id: SwapId, body: Message) -> Self {
        let body = match body {
            Message::Reject { reason } => Message::Reject {
                reason: cut(&reason),
            },
            Message::Abort { reason } => Message::Abort {
                reason: cut(&reason),
            },
            other => other,
        };
        Self {
            version: PROTOCOL_VERSION,
            swap_id,
            body,
        }
    }

    /// Encodes the message; fails if it would exceed the size limit.
    pub fn encode(&self) -> Result<Vec<u8>, MessageError> {
        let bytes = serde_json::to_vec(self).map_err(|e| MessageError::Malformed(e.to_string()))?;
        if bytes.len() > MAX_MESSAGE_BYTES {
            return Err(MessageError::TooLarge {
                size: bytes.len(),
                max: MAX_MESSAGE_BYTES,
            });
        }
        Ok(bytes)
    }

    /// Decodes and checks a received message (size first, before parsing anything).
    pub fn decode(bytes: &[u8]) -> Result<Self, MessageError> {
        if bytes.len() > MAX_MESSAGE_BYTES {
            return Err(MessageError::TooLarge {
                size: bytes.len(),
                max: MAX_MESSAGE_BYTES,
            });
        }
        #[derive(Deserialize)]
        struct VersionOnly {
            version: u16,
        }
        let v: VersionOnly =
            serde_json::from_slice(bytes).map_err(|e| MessageError::Malformed(e.to_string()))?;
        if v.version != PROTOCOL_VERSION {
            return Err(MessageError::UnsupportedVersion {
                got: v.version,
                supported: PROTOCOL_VERSION,
            });
        }
        let env: Envelope =
            serde_json::from_slice(bytes).map_err(|e| MessageError::Malformed(e.to_string()))?;
        match &env.body {
            Message::Proposal { terms } if terms.id != env.swap_id => {
                return Err(MessageError::IdMismatch {
                    envelope: env.swap_id,
                    inner: terms.id,
                })
            }
            Message::Reject { reason } | Message::Abort { reason }
                if reason.chars().count() > MAX_REASON_CHARS =>
            {
                return Err(MessageError::Malformed("reason too long".into()))
            }
            _ => {}
        }
        Ok(env)
    }
}

/// Why a responder refuses a proposal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProposalError {
    /// The terms break a rule or are malformed.
    #[error(transparent)]
    Terms(#[from] TermsError),
    /// The proposal uses chain parameters other than ours for a leg.
    #[error("leg {leg:?}: proposed chain parameters differ from ours")]
    ParamsDiffer {
        /// Which leg.
        leg: Leg,
    },
    /// The proposal's margin or claim window is below ours.
    #[error("the proposed safety margin or claim window is below ours")]
    PolicyTooWeak,
    /// An expiry further out than we accept (our funds, or the swap, would be tied up too long).
    #[error("leg {leg:?}: expiry too far in the future")]
    ExpiryTooFar {
        /// Which leg.
        leg: Leg,
    },
    /// The proposal does not pay us on X, or does not take our lock on Y.
    #[error("leg {leg:?}: account {found} is not ours (expected {expected})")]
    NotOurAccount {
        /// Which leg.
        leg: Leg,
        /// Ours.
        expected: Account,
        /// In the proposal.
        found: Account,
    },
}

/// What a responder requires of proposals beyond the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcceptPolicy {
    /// The least margin and claim window the proposal's policy may use (a proposer must not
    /// choose the responder's safety margin for it).
    pub min: SafetyPolicy,
    /// The longest our own lock (Y) may stay locked, in seconds at the expected pace.
    pub max_responder_lock_secs: u64,
    /// The longest the initiator's lock (X) may run, in seconds at the expected pace.
    pub max_initiator_lock_secs: u64,
}

impl Default for AcceptPolicy {
    fn default() -> Self {
        Self {
            min: SafetyPolicy::default(),
            max_responder_lock_secs: 24 * 3600,
            max_initiator_lock_secs: 7 * 24 * 3600,
        }
    }
}

/// The responder's check of a received proposal: its chain parameters are exactly ours, it
/// pays our account on X and locks from our account on Y, its safety policy is at least ours,
/// its expiries are not absurdly far, and rules 1-3 hold at our tips. Deserialized terms
/// bypass [`SwapTerms::new`]: this re-runs all of its checks.
pub fn check_proposal(
    terms: &SwapTerms,
    ours_x: &ChainParams,
    ours_y: &ChainParams,
    our_x_account: &Account,
    our_y_account: &Account,
    tips: Tips,
    accept: &AcceptPolicy,
) -> Result<SwapTerms, ProposalError> {
    if terms.policy.margin < accept.min.margin
        || terms.policy.min_claim_window < accept.min.min_claim_window
    {
        return Err(ProposalError::PolicyTooWeak);
    }
    let nominal = |p: &ChainParams, e, tip| {
        p.secs_until(e, tip, crate::params::Pace::Slow) * 100 / p.slow_factor_pct as i128
    };
    if nominal(ours_y, terms.y.expiry, tips.y) > accept.max_responder_lock_secs as i128 {
        return Err(ProposalError::ExpiryTooFar { leg: Leg::Y });
    }
    if nominal(ours_x, terms.x.expiry, tips.x) > accept.max_initiator_lock_secs as i128 {
        return Err(ProposalError::ExpiryTooFar { leg: Leg::X });
    }
    if terms.x.params != *ours_x {
        return Err(ProposalError::ParamsDiffer { leg: Leg::X });
    }
    if terms.y.params != *ours_y {
        return Err(ProposalError::ParamsDiffer { leg: Leg::Y });
    }
    if terms.x.recipient != *our_x_account {
        return Err(ProposalError::NotOurAccount {
            leg: Leg::X,
            expected: *our_x_account,
            found: terms.x.recipient,
        });
    }
    if terms.y.sender != *our_y_account {
        return Err(ProposalError::NotOurAccount {
            leg: Leg::Y,
            expected: *our_y_account,
            found: terms.y.sender,
        });
    }
    Ok(SwapTerms::new(
        terms.id,
        terms.hashlock,
        terms.x.clone(),
        terms.y.clone(),
        terms.policy,
        tips,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance::sample_record;
    use crate::store::Role;

    #[test]
    fn roundtrip_and_limits() {
        let rec = sample_record(5, Role::Initiator);
        let env = Envelope::new(
            rec.id(),
            Message::Proposal {
                terms: Box::new(rec.terms.clone()),
            },
        );
        let bytes = env.encode().unwrap();
        assert_eq!(Envelope::decode(&bytes).unwrap(), env);

        assert!(matches!(
            Envelope::decode(&vec![b' '; MAX_MESSAGE_BYTES + 1]),
            Err(MessageError::TooLarge { .. })
        ));
        assert!(matches!(
            Envelope::decode(b"{\"version\":1,"),
            Err(MessageError::Malformed(_))
        ));
        let newer =
            String::from_utf8(bytes.clone())
                .unwrap()
                .replacen("\"version\":1", "\"version\":9", 1);
        assert!(matches!(
            Envelope::decode(newer.as_bytes()),
            Err(MessageError::UnsupportedVersion { got: 9, .. })
        ));
        let mut other = env.clone();
        other.swap_id = SwapId([0xaa; 16]);
        let bytes = serde_json::to_vec(&other).unwrap();
        assert!(matches!(
            Envelope::decode(&bytes),
            Err(MessageError::IdMismatch { .. })
        ));
        let long = Envelope::new(
            rec.id(),
            Message::Reject {
                reason: "x".repeat(10_000),
            },
        );
        match Envelope::decode(&long.encode().unwrap()).unwrap().body {
            Message::Reject { reason } => assert_eq!(reason.len(), MAX_REASON_CHARS),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn proposals_are_checked_against_our_params_accounts_and_rules() {
        let rec = sample_record(6, Role::Responder);
        let t = &rec.terms;
        let tips = rec.watch_from;
        let acc = AcceptPolicy::default();
        let check = |terms: &SwapTerms, px: &ChainParams, py: &ChainParams, ax: &Account| {
            check_proposal(terms, px, py, ax, &t.y.sender, tips, &acc)
        };
        assert_eq!(
            check(t, &t.x.params, &t.y.params, &t.x.recipient).as_ref(),
            Ok(t)
        );

        let mut looser = t.y.params;
        looser.lock_confirmations = 0;
        assert!(matches!(
            check(t, &t.x.params, &looser, &t.x.recipient),
            Err(ProposalError::ParamsDiffer { leg: Leg::Y })
        ));
        assert!(matches!(
            check(t, &t.x.params, &t.y.params, &t.x.sender),
            Err(ProposalError::NotOurAccount { leg: Leg::X, .. })
        ));
        // Tampered expiries (bypassing SwapTerms::new through serde) are caught.
        let mut bad = t.clone();
        bad.x.expiry = match t.x.expiry {
            crate::types::Expiry::Height(_) => crate::types::Expiry::Height(tips.x.height),
            e => e,
        };
        assert!(matches!(
            check(&bad, &t.x.params, &t.y.params, &t.x.recipient),
            Err(ProposalError::Terms(_))
        ));
        // The proposer cannot pick our margin for us.
        let mut weak = t.clone();
        weak.policy.margin = 0;
        assert!(matches!(
            check(&weak, &t.x.params, &t.y.params, &t.x.recipient),
            Err(ProposalError::PolicyTooWeak)
        ));
        // Nor tie our funds up for a year.
        let mut long = t.clone();
        long.y.expiry = long.y.params.expiry_after(tips.y, 365 * 24 * 3600);
        assert!(matches!(
            check(&long, &t.x.params, &t.y.params, &t.x.recipient),
            Err(ProposalError::ExpiryTooFar { leg: Leg::Y })
        ));
        // Heights that are really timestamps are refused.
        let mut huge = t.clone();
        huge.x.expiry = crate::types::Expiry::Height(crate::types::Height(600_000_000));
        assert!(check(&huge, &t.x.params, &t.y.params, &t.x.recipient).is_err());
    }
}
