//! Claim and refund transactions: one HTLC input, one output (normally P2WPKH), BIP-125 RBF.
//!
//! The fee is `vsize * feerate`, where the vsize is that of the transaction with the witness
//! miniscript produces for the chosen branch, using a maximum-size (72-byte) signature: the
//! signed transaction (low-R signature, 71 bytes) is never smaller than what the fee paid for.
//! A claim that replaces the counterparty's unconfirmed refund pays instead the least fee
//! BIP-125 accepts for it ([`replacement_fee`]), or its own feerate if that is more.

use bitcoin::absolute::LockTime;
use bitcoin::ecdsa;
use bitcoin::hashes::{sha256, Hash};
use bitcoin::secp256k1::{ecdsa::Signature, Message, Secp256k1};
use bitcoin::sighash::{EcdsaSighashType, SighashCache};
use bitcoin::transaction::Version;
use bitcoin::{
    absolute, Amount, OutPoint, PublicKey, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness,
};
use miniscript::{Preimage32, Satisfier};
use swap_core::Preimage;

use crate::htlc::Htlc;
use crate::keys::SwapKey;

/// BIP-125 opt-in RBF, and not final (so `nLockTime` is enforced).
pub const RBF_SEQUENCE: Sequence = Sequence(0xffff_fffd);

/// Errors building a claim or refund.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TxError {
    /// The fee would exceed the configured share of the HTLC amount.
    #[error("fee {fee} sat exceeds {max_bps} bps of the {amount} sat HTLC")]
    FeeTooHigh {
        /// The fee the feerate asks for.
        fee: u64,
        /// The HTLC amount.
        amount: u64,
        /// The configured cap, in basis points of the amount.
        max_bps: u32,
    },
    /// What is left after the fee is below the output's dust limit.
    #[error("output of {value} sat after fees is dust (limit {dust})")]
    Dust {
        /// What would be left.
        value: u64,
        /// The dust limit of the destination script.
        dust: u64,
    },
    /// The preimage does not hash to the HTLC's hashlock.
    #[error("preimage does not match the hashlock")]
    WrongPreimage,
    /// The signing key is not the HTLC's claim (or refund) key.
    #[error("signing key is not the HTLC's {0} key")]
    WrongKey(&'static str),
    /// A BIP-125 replacement would need a feerate above the configured maximum.
    #[error("replacement needs {needed} sat/vB, above the {max} sat/vB maximum")]
    FeerateTooHigh {
        /// The feerate the replacement needs (its fee over its vsize, rounded up).
        needed: u64,
        /// The configured maximum.
        max: u64,
    },
    /// The feerate is zero.
    #[error("feerate must be at least 1 sat/vB")]
    ZeroFeerate,
    /// miniscript could not satisfy the branch (should not happen for valid inputs).
    #[error("miniscript satisfaction: {0}")]
    Satisfy(String),
    /// Sighash computation failed.
    #[error("sighash: {0}")]
    Sighash(String),
}

/// Fee settings for one spend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeePolicy {
    /// Sat per virtual byte.
    pub feerate_sat_vb: u64,
    /// The largest fee accepted, in basis points (1/10000) of the HTLC amount.
    pub max_fee_bps: u32,
}

/// What a BIP-125 replacement must outbid: the transaction it replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replaced {
    /// Its absolute fee, in satoshis.
    pub fee: u64,
    /// Its virtual size.
    pub vsize: u64,
}

/// Fee settings for a spend that replaces another spend of the same output (BIP-125).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplacementPolicy {
    /// The feerate (sat/vB) the spend would pay on its own: it pays at least that.
    pub feerate_sat_vb: u64,
    /// The node's incremental relay feerate (sat/vB): the least extra fee per vbyte of the
    /// replacement.
    pub incremental_sat_vb: u64,
    /// The highest feerate (sat/vB) accepted: a replacement that needs more is refused
    /// ([`TxError::FeerateTooHigh`]).
    pub max_sat_vb: u64,
    /// The largest fee accepted, in basis points (1/10000) of the HTLC amount.
    pub max_fee_bps: u32,
    /// The transaction replaced.
    pub replaced: Replaced,
}

/// The least fee (sat) a replacement of `vsize` vbytes pays under `policy`: the most of
/// - its own feerate: `vsize * feerate_sat_vb`;
/// - BIP-125 rules 3 and 4: the replaced fee plus `incremental_sat_vb * vsize`;
/// - a feerate strictly higher than the replaced one's, as the node compares them (sat/kvB,
///   rounded down): `fee * 1000 / vsize > replaced.fee * 1000 / replaced.vsize`.
///
/// A real transaction no larger than `vsize` paying this fee meets all three.
pub fn replacement_fee(vsize: u64, policy: &ReplacementPolicy) -> u64 {
    let own = vsize.saturating_mul(policy.feerate_sat_vb);
    let rules_3_4 = policy
        .replaced
        .fee
        .saturating_add(policy.incremental_sat_vb.saturating_mul(vsize));
    let old_sat_kvb = policy.replaced.fee.saturating_mul(1000) / policy.replaced.vsize.max(1);
    let higher_rate = old_sat_kvb
        .saturating_add(1)
        .saturating_mul(vsize)
        .div_ceil(1000);
    own.max(rules_3_4).max(higher_rate)
}

/// How a spend's fee is set.
#[derive(Debug, Clone, Copy)]
enum Fee {
    /// `vsize * feerate`.
    Rate(FeePolicy),
    /// A BIP-125 replacement ([`replacement_fee`]).
    Replace(ReplacementPolicy),
}

impl Fee {
    fn feerate(&self) -> u64 {
        match self {
            Fee::Rate(p) => p.feerate_sat_vb,
            Fee::Replace(p) => p.feerate_sat_vb,
        }
    }

    fn max_fee_bps(&self) -> u32 {
        match self {
            Fee::Rate(p) => p.max_fee_bps,
            Fee::Replace(p) => p.max_fee_bps,
        }
    }

    /// The fee for an (estimated) `vsize`, and the feerate it amounts to (rounded up).
    fn for_vsize(&self, vsize: u64) -> Result<(u64, u64), TxError> {
        match self {
            Fee::Rate(p) => Ok((vsize.saturating_mul(p.feerate_sat_vb), p.feerate_sat_vb)),
            Fee::Replace(p) => {
                let fee = replacement_fee(vsize, p);
                let rate = fee.div_ceil(vsize.max(1));
                if fee > vsize.saturating_mul(p.max_sat_vb) {
                    return Err(TxError::FeerateTooHigh {
                        needed: rate,
                        max: p.max_sat_vb,
                    });
                }
                Ok((fee, rate))
            }
        }
    }
}

/// The HTLC output being spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HtlcOutput {
    /// Funding transaction and output index.
    pub outpoint: OutPoint,
    /// Its value in satoshis.
    pub value: u64,
}

/// A built, signed spend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedSpend {
    /// The transaction, ready to broadcast.
    pub tx: Transaction,
    /// The fee it pays.
    pub fee: u64,
    /// Its virtual size.
    pub vsize: u64,
    /// The feerate asked for (for a replacement: its fee over the estimated vsize, rounded
    /// up).
    pub feerate_sat_vb: u64,
}

/// Which branch to satisfy, with what.
struct BranchSatisfier {
    key: PublicKey,
    sig: ecdsa::Signature,
    hashlock: Option<(sha256::Hash, Preimage32)>,
    lock_time: Option<absolute::LockTime>,
}

impl Satisfier<PublicKey> for BranchSatisfier {
    fn lookup_ecdsa_sig(&self, pk: &PublicKey) -> Option<ecdsa::Signature> {
        (*pk == self.key).then_some(self.sig)
    }

    fn lookup_sha256(&self, h: &sha256::Hash) -> Option<Preimage32> {
        self.hashlock.and_then(|(hl, p)| (hl == *h).then_some(p))
    }

    fn check_after(&self, n: absolute::LockTime) -> bool {
        self.lock_time.is_some_and(|lt| n.is_implied_by(lt))
    }
}

/// A maximum-size low-S signature (72 bytes with the sighash byte) for weight estimation.
fn dummy_signature() -> ecdsa::Signature {
    let mut compact = [0u8; 64];
    compact[0] = 0x80; // r needs a 0x00 pad in DER: 33 bytes
    compact[32] = 0x7f; // s stays low: 32 bytes
    compact[63] = 1;
    ecdsa::Signature {
        // A structurally valid signature; never broadcast.
        signature: Signature::from_compact(&compact).unwrap_or_else(|_| {
            Signature::from_compact(&[1; 64]).unwrap_or_else(|_| unreachable_sig())
        }),
        sighash_type: EcdsaSighashType::All,
    }
}

#[allow(clippy::panic)]
fn unreachable_sig() -> Signature {
    panic!("constant compact signature failed to parse")
}

fn unsigned(
    out: HtlcOutput,
    destination: &ScriptBuf,
    value: u64,
    lock_time: LockTime,
) -> Transaction {
    Transaction {
        version: Version::TWO,
        lock_time,
        input: vec![TxIn {
            previous_output: out.outpoint,
            script_sig: ScriptBuf::new(),
            sequence: RBF_SEQUENCE,
            witness: Witness::new(),
        }],
        output: vec![TxOut {
            value: Amount::from_sat(value),
            script_pubkey: destination.clone(),
        }],
    }
}

fn build(
    htlc: &Htlc,
    out: HtlcOutput,
    destination: &ScriptBuf,
    fee: Fee,
    key: &SwapKey,
    preimage: Option<&Preimage>,
) -> Result<SignedSpend, TxError> {
    if fee.feerate() == 0 {
        return Err(TxError::ZeroFeerate);
    }
    let (lock_time, hashlock) = match preimage {
        Some(p) => {
            if p.hashlock().0 != htlc.hashlock() {
                return Err(TxError::WrongPreimage);
            }
            if key.public_key() != htlc.claim_key() {
                return Err(TxError::WrongKey("claim"));
            }
            (
                LockTime::ZERO,
                Some((
                    sha256::Hash::from_byte_array(htlc.hashlock()),
                    *p.as_bytes(),
                )),
            )
        }
        None => {
            if key.public_key() != htlc.refund_key() {
                return Err(TxError::WrongKey("refund"));
            }
            let lt = LockTime::from_height(htlc.expiry_height())
                .map_err(|e| TxError::Satisfy(e.to_string()))?;
            (lt, None)
        }
    };
    let satisfier = |sig| BranchSatisfier {
        key: key.public_key(),
        sig,
        hashlock,
        lock_time: preimage.is_none().then_some(lock_time),
    };
    // Weight with a maximum-size signature.
    let mut tx = unsigned(out, destination, out.value, lock_time);
    let mut input = tx.input[0].clone();
    htlc.descriptor()
        .satisfy(&mut input, satisfier(dummy_signature()))
        .map_err(|e| TxError::Satisfy(e.to_string()))?;
    tx.input[0] = input;
    let vsize = tx.weight().to_vbytes_ceil();
    let (fee_sat, feerate_sat_vb) = fee.for_vsize(vsize)?;
    if u128::from(fee_sat) * 10_000 > u128::from(out.value) * u128::from(fee.max_fee_bps()) {
        return Err(TxError::FeeTooHigh {
            fee: fee_sat,
            amount: out.value,
            max_bps: fee.max_fee_bps(),
        });
    }
    let value = out.value.saturating_sub(fee_sat);
    let dust = destination.minimal_non_dust().to_sat();
    if value < dust {
        return Err(TxError::Dust { value, dust });
    }
    // Sign the real transaction.
    let mut tx = unsigned(out, destination, value, lock_time);
    let sighash = SighashCache::new(&tx)
        .p2wsh_signature_hash(
            0,
            &htlc.witness_script(),
            Amount::from_sat(out.value),
            EcdsaSighashType::All,
        )
        .map_err(|e| TxError::Sighash(e.to_string()))?;
    let secp = Secp256k1::signing_only();
    let sig = secp.sign_ecdsa_low_r(&Message::from(sighash), key.secret_key());
    let sig = ecdsa::Signature {
        signature: sig,
        sighash_type: EcdsaSighashType::All,
    };
    let mut input = tx.input[0].clone();
    htlc.descriptor()
        .satisfy(&mut input, satisfier(sig))
        .map_err(|e| TxError::Satisfy(e.to_string()))?;
    tx.input[0] = input;
    let vsize = tx.weight().to_vbytes_ceil();
    Ok(SignedSpend {
        tx,
        fee: fee_sat,
        vsize,
        feerate_sat_vb,
    })
}

/// Builds and signs the claim: spends `out` through the hashlock branch with `preimage`,
/// paying `destination`. `nLockTime` 0, sequence `0xfffffffd` (RBF).
pub fn build_claim(
    htlc: &Htlc,
    out: HtlcOutput,
    destination: &ScriptBuf,
    fee: FeePolicy,
    claim_key: &SwapKey,
    preimage: &Preimage,
) -> Result<SignedSpend, TxError> {
    build(
        htlc,
        out,
        destination,
        Fee::Rate(fee),
        claim_key,
        Some(preimage),
    )
}

/// Builds and signs a claim that replaces `policy.replaced`, an unconfirmed spend of the same
/// output (the counterparty's refund), under BIP-125: it pays [`replacement_fee`] for its
/// estimated vsize. Refused when that exceeds `policy.max_sat_vb`
/// ([`TxError::FeerateTooHigh`]) or `policy.max_fee_bps` of the amount
/// ([`TxError::FeeTooHigh`]). Otherwise like [`build_claim`].
pub fn build_replacement_claim(
    htlc: &Htlc,
    out: HtlcOutput,
    destination: &ScriptBuf,
    policy: ReplacementPolicy,
    claim_key: &SwapKey,
    preimage: &Preimage,
) -> Result<SignedSpend, TxError> {
    build(
        htlc,
        out,
        destination,
        Fee::Replace(policy),
        claim_key,
        Some(preimage),
    )
}

/// Builds and signs the refund: spends `out` through the timelock branch, paying
/// `destination`. `nLockTime` = the expiry height, sequence `0xfffffffd` (RBF, non-final).
/// The node accepts it once the tip is at or above the expiry height.
pub fn build_refund(
    htlc: &Htlc,
    out: HtlcOutput,
    destination: &ScriptBuf,
    fee: FeePolicy,
    refund_key: &SwapKey,
) -> Result<SignedSpend, TxError> {
    build(htlc, out, destination, Fee::Rate(fee), refund_key, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::secp256k1::SecretKey;
    use bitcoin::{Txid, WPubkeyHash};

    fn keys() -> (SwapKey, SwapKey) {
        (
            SwapKey::from_secret(SecretKey::from_slice(&[1; 32]).unwrap()),
            SwapKey::from_secret(SecretKey::from_slice(&[2; 32]).unwrap()),
        )
    }

    fn setup() -> (Htlc, SwapKey, SwapKey, Preimage, HtlcOutput, ScriptBuf) {
        let (c, r) = keys();
        let s = Preimage::from_bytes([7; 32]);
        let htlc = Htlc::new(c.public_key(), r.public_key(), s.hashlock().0, 1500).unwrap();
        let out = HtlcOutput {
            outpoint: OutPoint::new(Txid::from_byte_array([3; 32]), 1),
            value: 100_000,
        };
        let dest = ScriptBuf::new_p2wpkh(&WPubkeyHash::from_byte_array([4; 20]));
        (htlc, c, r, s, out, dest)
    }

    const FEE: FeePolicy = FeePolicy {
        feerate_sat_vb: 10,
        max_fee_bps: 500,
    };

    #[test]
    fn claim_is_small_rbf_and_pays_the_feerate() {
        let (htlc, c, _, s, out, dest) = setup();
        let spend = build_claim(&htlc, out, &dest, FEE, &c, &s).unwrap();
        assert!(spend.vsize <= 140, "claim vsize {}", spend.vsize);
        assert!(spend.fee >= spend.vsize * 10);
        assert!(spend.fee <= (spend.vsize + 1) * 10);
        assert_eq!(spend.tx.input[0].sequence, RBF_SEQUENCE);
        assert_eq!(spend.tx.lock_time, LockTime::ZERO);
        assert_eq!(spend.tx.output[0].value.to_sat(), out.value - spend.fee);
        let w: Vec<&[u8]> = spend.tx.input[0].witness.iter().collect();
        assert_eq!(
            htlc.preimage_in_witness(w.iter().copied()),
            Some(*s.as_bytes())
        );
        assert_eq!(w.last().copied(), Some(htlc.witness_script().as_bytes()));
        println!("claim vsize {}", spend.vsize);
    }

    #[test]
    fn refund_sets_locktime_and_no_preimage() {
        let (htlc, _, r, _, out, dest) = setup();
        let spend = build_refund(&htlc, out, &dest, FEE, &r).unwrap();
        assert_eq!(spend.tx.lock_time, LockTime::from_height(1500).unwrap());
        assert_eq!(spend.tx.input[0].sequence, RBF_SEQUENCE);
        assert!(spend.tx.input[0].sequence.enables_absolute_lock_time());
        assert!(spend.vsize <= 140, "refund vsize {}", spend.vsize);
        let w: Vec<&[u8]> = spend.tx.input[0].witness.iter().collect();
        assert_eq!(htlc.preimage_in_witness(w.iter().copied()), None);
        println!("refund vsize {}", spend.vsize);
    }

    #[test]
    fn typed_refusals() {
        let (htlc, c, r, s, out, dest) = setup();
        assert_eq!(
            build_claim(&htlc, out, &dest, FEE, &c, &Preimage::from_bytes([8; 32])),
            Err(TxError::WrongPreimage)
        );
        assert_eq!(
            build_claim(&htlc, out, &dest, FEE, &r, &s),
            Err(TxError::WrongKey("claim"))
        );
        assert_eq!(
            build_refund(&htlc, out, &dest, FEE, &c),
            Err(TxError::WrongKey("refund"))
        );
        let greedy = FeePolicy {
            feerate_sat_vb: 1000,
            max_fee_bps: 500,
        };
        assert!(matches!(
            build_claim(&htlc, out, &dest, greedy, &c, &s),
            Err(TxError::FeeTooHigh {
                amount: 100_000,
                max_bps: 500,
                ..
            })
        ));
        // Feerates that leave less than the dust limit are refused as dust.
        let mut dust_seen = false;
        for feerate_sat_vb in 690..=720 {
            let all = FeePolicy {
                feerate_sat_vb,
                max_fee_bps: 10_000,
            };
            match build_claim(&htlc, out, &dest, all, &c, &s) {
                Ok(spend) => assert!(spend.tx.output[0].value.to_sat() >= 294),
                Err(TxError::Dust { value, dust }) => {
                    assert!(value < dust);
                    dust_seen = true;
                }
                Err(TxError::FeeTooHigh { .. }) => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert!(dust_seen);
        let zero = FeePolicy {
            feerate_sat_vb: 0,
            max_fee_bps: 10_000,
        };
        assert_eq!(
            build_refund(&htlc, out, &dest, zero, &r),
            Err(TxError::ZeroFeerate)
        );
    }

    #[test]
    fn replacement_fee_meets_bip125() {
        let policy = |feerate_sat_vb, fee, vsize| ReplacementPolicy {
            feerate_sat_vb,
            incremental_sat_vb: 1,
            max_sat_vb: 1_000,
            max_fee_bps: 500,
            replaced: Replaced { fee, vsize },
        };
        // Rules 3 and 4: the refund's fee plus 1 sat/vB of the claim.
        assert_eq!(replacement_fee(139, &policy(5, 655, 131)), 655 + 139);
        // Our own feerate when it is more.
        assert_eq!(replacement_fee(139, &policy(20, 655, 131)), 139 * 20);
        // A high-feerate refund smaller than the claim: the feerate must still be higher
        // (100 sat/vB over 131 vB is 13,100 sat; 13,100 + 139 over 139 vB is < 100 sat/vB).
        let fee = replacement_fee(139, &policy(1, 13_100, 131));
        assert_eq!(fee, 13_901);
        assert!(fee * 1000 / 139 > 13_100 * 1000 / 131);
        assert!((fee - 1) * 1000 / 139 <= 13_100 * 1000 / 131);
        for (rate, old_fee, old_vsize, vsize) in [(1, 131, 131, 139), (3, 7_777, 131, 140)] {
            let p = policy(rate, old_fee, old_vsize);
            let fee = replacement_fee(vsize, &p);
            assert!(fee >= old_fee + vsize);
            assert!(fee * 1000 / vsize > old_fee * 1000 / old_vsize);
            assert!(fee >= rate * vsize);
        }
    }

    #[test]
    fn replacement_claim_outbids_the_refund_within_the_caps() {
        let (htlc, c, r, s, out, dest) = setup();
        let refund = build_refund(&htlc, out, &dest, FEE, &r).unwrap();
        let mut policy = ReplacementPolicy {
            feerate_sat_vb: 5,
            incremental_sat_vb: 1,
            max_sat_vb: 1_000,
            max_fee_bps: 500,
            replaced: Replaced {
                fee: refund.fee,
                vsize: refund.vsize,
            },
        };
        let claim = build_replacement_claim(&htlc, out, &dest, policy, &c, &s).unwrap();
        assert_eq!(claim.tx.input[0].previous_output, out.outpoint);
        assert_eq!(claim.tx.input[0].sequence, RBF_SEQUENCE);
        assert_eq!(claim.tx.output[0].value.to_sat(), out.value - claim.fee);
        assert!(claim.fee >= refund.fee + claim.vsize);
        assert!(claim.fee * 1000 / claim.vsize > refund.fee * 1000 / refund.vsize);
        assert_eq!(claim.feerate_sat_vb, claim.fee.div_ceil(claim.vsize));
        // The same feerate as the refund is not enough: refused, not capped silently.
        policy.max_sat_vb = 10;
        assert!(matches!(
            build_replacement_claim(&htlc, out, &dest, policy, &c, &s),
            Err(TxError::FeerateTooHigh { max: 10, .. })
        ));
        policy.max_sat_vb = 1_000;
        policy.max_fee_bps = 10;
        assert!(matches!(
            build_replacement_claim(&htlc, out, &dest, policy, &c, &s),
            Err(TxError::FeeTooHigh { max_bps: 10, .. })
        ));
    }

    #[test]
    fn estimate_covers_max_signature() {
        // The estimate uses a 72-byte signature; real low-R ones are 71 bytes.
        let (htlc, c, _, s, out, dest) = setup();
        let spend = build_claim(&htlc, out, &dest, FEE, &c, &s).unwrap();
        let sig_len = spend.tx.input[0].witness.iter().next().unwrap().len();
        assert!(sig_len <= 72);
        assert!(dummy_signature().to_vec().len() == 72);
    }
}
