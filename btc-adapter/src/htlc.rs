//! The HTLC: a P2WSH output compiled by miniscript from
//! `or(and(pk(claim),sha256(H)),and(pk(refund),after(E)))`.
//!
//! miniscript's `sha256` fragment is `SIZE 32 EQUALVERIFY SHA256 <H> EQUAL`, so the script itself
//! enforces a 32-byte preimage (protocol rule). `after(E)` is `<E> CHECKLOCKTIMEVERIFY`: the
//! refund needs `nLockTime >= E`, so it can be mined from block `E + 1` on.

use std::str::FromStr;

use bitcoin::hashes::{sha256, Hash};
use bitcoin::{PublicKey, ScriptBuf};
use miniscript::policy::Concrete;
use miniscript::{Descriptor, Segwitv0};
use swap_core::{Account, ChainId, Expiry, HtlcParams};

use crate::keys::parse_public_key;
use crate::network::{segwit_address, NetworkError};

/// Heights at or above this are timestamps for `nLockTime`; HTLC expiries must be heights.
pub const LOCKTIME_THRESHOLD: u64 = 500_000_000;

/// Errors building an HTLC.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HtlcError {
    /// The expiry is not a block height in `1..500_000_000`.
    #[error("expiry must be a block height below 500000000, got {0}")]
    BadExpiry(Expiry),
    /// Claim and refund keys are the same key.
    #[error("claim and refund keys must differ")]
    SameKeys,
    /// Sender or recipient is not a public key.
    #[error("{0} is not a Bitcoin-family public key")]
    NotAPublicKey(Account),
    /// A key does not parse.
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// miniscript refused the policy (should not happen for valid inputs).
    #[error("miniscript: {0}")]
    Miniscript(String),
    /// Address encoding failed.
    #[error(transparent)]
    Network(#[from] NetworkError),
}

/// One HTLC: its keys, hashlock, expiry and the compiled descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Htlc {
    claim_key: PublicKey,
    refund_key: PublicKey,
    hashlock: sha256::Hash,
    expiry: u32,
    descriptor: Descriptor<PublicKey>,
}

/// Compiles the HTLC policy with miniscript's policy compiler.
fn compile(
    claim_key: &PublicKey,
    refund_key: &PublicKey,
    hashlock: &sha256::Hash,
    expiry_height: u64,
) -> Result<Descriptor<PublicKey>, HtlcError> {
    let policy = format!(
        "or(and(pk({claim_key}),sha256({hashlock})),and(pk({refund_key}),after({expiry_height})))"
    );
    let policy = Concrete::<PublicKey>::from_str(&policy)
        .map_err(|e| HtlcError::Miniscript(e.to_string()))?;
    let ms = policy
        .compile::<Segwitv0>()
        .map_err(|e| HtlcError::Miniscript(e.to_string()))?;
    Descriptor::new_wsh(ms).map_err(|e| HtlcError::Miniscript(e.to_string()))
}

/// The miniscript the compiler makes of the policy: claim `pk(C)` + `sha256(H)`, refund
/// `v:pk(R)` + `after(E)`. Parsing it costs microseconds; compiling costs milliseconds, which an
/// engine watching thousands of swaps pays for each one at start.
fn template(
    claim_key: &PublicKey,
    refund_key: &PublicKey,
    hashlock: &sha256::Hash,
    expiry_height: u64,
) -> Result<Descriptor<PublicKey>, HtlcError> {
    Descriptor::<PublicKey>::from_str(&format!(
        "wsh(andor(pk({claim_key}),sha256({hashlock}),and_v(v:pk({refund_key}),after({expiry_height}))))"
    ))
    .map_err(|e| HtlcError::Miniscript(e.to_string()))
}

/// Whether this miniscript version compiles the policy to [`template`] (checked once per
/// process on a sample). The compiler's choice depends only on the policy's shape: every
/// candidate holds the same two 33-byte keys, one hash and one `after(E)`, so neither the keys,
/// the hash nor the size of E can tip it. If a miniscript upgrade ever compiles differently,
/// every HTLC is compiled again (the tests compare both over random inputs).
fn compiled_shape_is_template() -> bool {
    static SAME: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SAME.get_or_init(|| {
        let secp = bitcoin::secp256k1::Secp256k1::signing_only();
        let key = |b: u8| {
            bitcoin::secp256k1::SecretKey::from_slice(&[b; 32]).map(|sk| {
                PublicKey::new(bitcoin::secp256k1::PublicKey::from_secret_key(&secp, &sk))
            })
        };
        let (Ok(c), Ok(r)) = (key(1), key(2)) else {
            return false;
        };
        let h = sha256::Hash::hash(&[9; 32]);
        matches!(
            (compile(&c, &r, &h, 1500), template(&c, &r, &h, 1500)),
            (Ok(a), Ok(b)) if a == b
        )
    })
}

impl Htlc {
    /// The HTLC for these keys, hashlock and expiry height: the miniscript compiler's output
    /// for the policy above.
    pub fn new(
        claim_key: PublicKey,
        refund_key: PublicKey,
        hashlock: [u8; 32],
        expiry_height: u64,
    ) -> Result<Self, HtlcError> {
        if expiry_height == 0 || expiry_height >= LOCKTIME_THRESHOLD {
            return Err(HtlcError::BadExpiry(Expiry::Height(swap_core::Height(
                expiry_height,
            ))));
        }
        if !claim_key.compressed || !refund_key.compressed {
            return Err(HtlcError::InvalidKey("keys must be compressed".into()));
        }
        if claim_key == refund_key {
            return Err(HtlcError::SameKeys);
        }
        let hashlock = sha256::Hash::from_byte_array(hashlock);
        let descriptor = if compiled_shape_is_template() {
            template(&claim_key, &refund_key, &hashlock, expiry_height)?
        } else {
            compile(&claim_key, &refund_key, &hashlock, expiry_height)?
        };
        descriptor
            .sanity_check()
            .map_err(|e| HtlcError::Miniscript(e.to_string()))?;
        Ok(Self {
            claim_key,
            refund_key,
            hashlock,
            // checked above: < 500_000_000
            expiry: expiry_height as u32,
            descriptor,
        })
    }

    /// The HTLC of a swap leg: `recipient` claims, `sender` refunds.
    pub fn from_params(params: &HtlcParams) -> Result<Self, HtlcError> {
        let key = |a: &Account| match a {
            Account::PublicKey(k) => {
                parse_public_key(k).map_err(|e| HtlcError::InvalidKey(e.to_string()))
            }
            other => Err(HtlcError::NotAPublicKey(*other)),
        };
        let expiry = match params.expiry {
            Expiry::Height(h) => h.0,
            e @ Expiry::Time(_) => return Err(HtlcError::BadExpiry(e)),
        };
        Self::new(
            key(&params.recipient)?,
            key(&params.sender)?,
            params.hashlock.0,
            expiry,
        )
    }

    /// The output descriptor, with checksum (`wsh(or_d(...))#xxxxxxxx`). Bitcoin Core's
    /// `deriveaddresses` gives the same address for it.
    pub fn descriptor_string(&self) -> String {
        self.descriptor.to_string()
    }

    /// The compiled descriptor.
    pub fn descriptor(&self) -> &Descriptor<PublicKey> {
        &self.descriptor
    }

    /// The witness script (the script whose SHA-256 the P2WSH output commits to).
    pub fn witness_script(&self) -> ScriptBuf {
        // A wsh descriptor always has an explicit script.
        self.descriptor
            .explicit_script()
            .unwrap_or_else(|_| ScriptBuf::new())
    }

    /// The P2WSH output script.
    pub fn script_pubkey(&self) -> ScriptBuf {
        self.descriptor.script_pubkey()
    }

    /// The HTLC's address on `chain` (`bc1..`, `tb1..`, `bcrt1..`, `ltc1..`, `tltc1..`, `rltc1..`).
    pub fn address(&self, chain: ChainId) -> Result<String, HtlcError> {
        Ok(segwit_address(chain, &self.script_pubkey())?)
    }

    /// Who can claim with the preimage.
    pub fn claim_key(&self) -> PublicKey {
        self.claim_key
    }

    /// Who can refund after the expiry.
    pub fn refund_key(&self) -> PublicKey {
        self.refund_key
    }

    /// `SHA256(preimage)`.
    pub fn hashlock(&self) -> [u8; 32] {
        self.hashlock.to_byte_array()
    }

    /// The expiry height: the refund's `nLockTime`.
    pub fn expiry_height(&self) -> u32 {
        self.expiry
    }

    /// If `witness` spends this HTLC through the claim branch, the 32-byte preimage in it
    /// (checked: its SHA-256 is the hashlock).
    pub fn preimage_in_witness<'a>(
        &self,
        witness: impl IntoIterator<Item = &'a [u8]>,
    ) -> Option<[u8; 32]> {
        extract_preimage(self.hashlock(), witness)
    }
}

/// Finds, among witness items, a 32-byte value whose SHA-256 is `hashlock`.
pub fn extract_preimage<'a>(
    hashlock: [u8; 32],
    witness: impl IntoIterator<Item = &'a [u8]>,
) -> Option<[u8; 32]> {
    witness.into_iter().find_map(|item| {
        let bytes = <[u8; 32]>::try_from(item).ok()?;
        (sha256::Hash::hash(&bytes).to_byte_array() == hashlock).then_some(bytes)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SwapKey;
    use bitcoin::secp256k1::SecretKey;
    use swap_core::{ChainFamily, Network};

    fn key(b: u8) -> PublicKey {
        SwapKey::from_secret(SecretKey::from_slice(&[b; 32]).unwrap()).public_key()
    }

    #[test]
    fn compiles_to_p2wsh_with_size_check() {
        let h = sha256::Hash::hash(&[9; 32]).to_byte_array();
        let htlc = Htlc::new(key(1), key(2), h, 1500).unwrap();
        let d = htlc.descriptor_string();
        assert!(d.starts_with("wsh("), "{d}");
        assert!(d.contains('#'));
        assert!(htlc.script_pubkey().is_p2wsh());
        let asm = htlc.witness_script().to_asm_string();
        assert!(
            asm.contains("OP_SIZE OP_PUSHBYTES_1 20 OP_EQUALVERIFY OP_SHA256"),
            "{asm}"
        );
        assert!(asm.contains("OP_CLTV"), "{asm}");
        let addr = htlc
            .address(ChainId::new(ChainFamily::Litecoin, Network::Regtest))
            .unwrap();
        assert!(addr.starts_with("rltc1q"));
        assert_eq!(addr.len(), 64);
        // Deterministic.
        assert_eq!(htlc, Htlc::new(key(1), key(2), h, 1500).unwrap());
        assert_ne!(
            htlc.script_pubkey(),
            Htlc::new(key(1), key(2), h, 1501).unwrap().script_pubkey()
        );
    }

    #[test]
    fn compiler_output_is_the_expected_miniscript() {
        // The compiled policy equals this hand-written miniscript: claim is `pk(C)` + `sha256`,
        // refund `v:pk(R)` + `after(E)`.
        let (c, r) = (key(1), key(2));
        let h = sha256::Hash::hash(&[9; 32]);
        let htlc = Htlc::new(c, r, h.to_byte_array(), 1500).unwrap();
        let expected = format!("wsh(andor(pk({c}),sha256({h}),and_v(v:pk({r}),after(1500))))");
        let expected = Descriptor::<PublicKey>::from_str(&expected).unwrap();
        assert_eq!(htlc.descriptor(), &expected);
    }

    #[test]
    fn template_is_what_the_compiler_makes_for_any_keys_hash_and_expiry() {
        assert!(compiled_shape_is_template());
        let expiries = [
            1,
            16,
            17,
            127,
            128,
            255,
            256,
            32_767,
            32_768,
            8_388_608,
            499_999_999,
        ];
        for i in 0..60u8 {
            let (c, r) = (key(i.wrapping_mul(3) + 1), key(i.wrapping_mul(3) + 2));
            let h = sha256::Hash::hash(&[i; 32]);
            let e = expiries[usize::from(i) % expiries.len()];
            assert_eq!(
                Htlc::new(c, r, h.to_byte_array(), e).unwrap().descriptor(),
                &compile(&c, &r, &h, e).unwrap(),
                "keys {c} {r}, expiry {e}"
            );
        }
    }

    #[test]
    fn refuses_bad_inputs() {
        let h = [0; 32];
        assert_eq!(Htlc::new(key(1), key(1), h, 10), Err(HtlcError::SameKeys));
        assert!(matches!(
            Htlc::new(key(1), key(2), h, 0),
            Err(HtlcError::BadExpiry(_))
        ));
        assert!(matches!(
            Htlc::new(key(1), key(2), h, 500_000_000),
            Err(HtlcError::BadExpiry(_))
        ));
    }

    #[test]
    fn extracts_only_matching_preimage() {
        let s = [5u8; 32];
        let h = sha256::Hash::hash(&s).to_byte_array();
        let items: Vec<Vec<u8>> = vec![vec![1; 71], vec![6; 32], s.to_vec(), vec![1]];
        assert_eq!(
            extract_preimage(h, items.iter().map(|v| v.as_slice())),
            Some(s)
        );
        let wrong: Vec<Vec<u8>> = vec![vec![6; 32], [s.as_slice(), &[0]].concat()];
        assert_eq!(
            extract_preimage(h, wrong.iter().map(|v| v.as_slice())),
            None
        );
    }
}
