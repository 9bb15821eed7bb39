//! Domain newtypes: values that must never be mixed up get their own type.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Errors from parsing domain values out of text or bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// Not valid hexadecimal.
    #[error("invalid hex: {0}")]
    Hex(String),
    /// Wrong number of bytes.
    #[error("expected {expected} bytes, got {got}")]
    Length {
        /// Bytes required.
        expected: usize,
        /// Bytes given.
        got: usize,
    },
}

fn decode_fixed<const N: usize>(s: &str) -> Result<[u8; N], ParseError> {
    let bytes = hex::decode(s.trim()).map_err(|e| ParseError::Hex(e.to_string()))?;
    <[u8; N]>::try_from(bytes.as_slice()).map_err(|_| ParseError::Length {
        expected: N,
        got: bytes.len(),
    })
}

/// The swap secret: exactly 32 bytes, from the OS RNG, zeroized on drop.
///
/// `Debug` and `Display` never show the bytes. Use [`Preimage::expose_hex`] deliberately
/// (for example to build a claim) and never pass its result to a logger.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop, Serialize, Deserialize)]
pub struct Preimage(#[serde(with = "hex::serde")] [u8; 32]);

impl Preimage {
    /// A fresh random secret from the operating system's RNG.
    pub fn random() -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; 32];
        getrandom::getrandom(&mut bytes)?;
        Ok(Self(bytes))
    }

    /// Wraps 32 bytes (for example a preimage read from a claim on chain).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Parses a preimage from a byte slice, which must be exactly 32 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, ParseError> {
        <[u8; 32]>::try_from(bytes)
            .map(Self)
            .map_err(|_| ParseError::Length {
                expected: 32,
                got: bytes.len(),
            })
    }

    /// The raw secret bytes. Handle with care.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The secret as hex. Never log the result.
    pub fn expose_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The SHA-256 hashlock of this secret.
    pub fn hashlock(&self) -> Hashlock {
        Hashlock(Sha256::digest(self.0).into())
    }
}

impl fmt::Debug for Preimage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Preimage(<redacted>)")
    }
}

/// `H = SHA256(s)`: the same value works with `OP_SHA256`, the EVM's SHA-256 precompile and as a
/// Lightning payment hash.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Hashlock(#[serde(with = "hex::serde")] pub [u8; 32]);

impl Hashlock {
    /// True when `preimage` hashes to this lock.
    pub fn matches(&self, preimage: &Preimage) -> bool {
        preimage.hashlock() == *self
    }

    /// Parses 64 hex characters.
    pub fn from_hex(s: &str) -> Result<Self, ParseError> {
        decode_fixed(s).map(Self)
    }
}

impl fmt::Display for Hashlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Hashlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hashlock({self})")
    }
}

/// A block height.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
pub struct Height(pub u64);

/// Seconds since the Unix epoch (a block's timestamp, or the local clock).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The local clock now (0 if it is set before 1970).
    pub fn now() -> Self {
        Self(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        )
    }
}

impl fmt::Display for Height {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "height {}", self.0)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "time {}", self.0)
    }
}

/// When an HTLC becomes refundable: an absolute block height (CLTV on Bitcoin-family chains) or
/// a block timestamp (Ethereum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Expiry {
    /// Refundable in the first block whose height is greater than this one.
    Height(Height),
    /// Refundable in the first block whose timestamp is at least this one.
    Time(Timestamp),
}

impl fmt::Display for Expiry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expiry::Height(h) => h.fmt(f),
            Expiry::Time(t) => t.fmt(f),
        }
    }
}

/// Satoshis (or litoshis): the smallest unit of a Bitcoin-family coin.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
pub struct Sats(pub u64);

/// Wei: the smallest unit of ether.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
pub struct Wei(#[serde(with = "u128_decimal")] pub u128);

/// u128 as a decimal string in serialized forms: JSON numbers lose precision past 2^53 in many
/// readers, and serde's buffered (tagged-enum) formats do not support u128 at all.
mod u128_decimal {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(D::Error::custom)
    }
}

/// An amount of an ERC-20 token in its base units, with the token's decimals so that two tokens'
/// amounts are never compared without them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TokenUnits {
    /// Base units (the integer the contract sees).
    #[serde(with = "u128_decimal")]
    pub units: u128,
    /// The token's `decimals()`.
    pub decimals: u8,
}

/// How much of an asset a leg moves. Each variant has its own unit type; they never convert
/// into each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "unit", content = "value", rename_all = "snake_case")]
pub enum Amount {
    /// Bitcoin-family base units.
    Sats(Sats),
    /// Ether.
    Wei(Wei),
    /// ERC-20 base units.
    Token(TokenUnits),
}

impl Amount {
    /// True for a zero amount of any kind (never a valid swap leg).
    pub fn is_zero(&self) -> bool {
        match self {
            Amount::Sats(s) => s.0 == 0,
            Amount::Wei(w) => w.0 == 0,
            Amount::Token(t) => t.units == 0,
        }
    }

    /// The amount in its asset's base units (satoshis, wei, token units).
    pub fn base_units(&self) -> u128 {
        match self {
            Amount::Sats(s) => u128::from(s.0),
            Amount::Wei(w) => w.0,
            Amount::Token(t) => t.units,
        }
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Amount::Sats(s) => write!(f, "{} sat", s.0),
            Amount::Wei(w) => write!(f, "{} wei", w.0),
            Amount::Token(t) => write!(f, "{} units (decimals {})", t.units, t.decimals),
        }
    }
}

/// A 20-byte EVM address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EvmAddress(#[serde(with = "hex::serde")] pub [u8; 20]);

impl EvmAddress {
    /// Parses 40 hex characters, with or without `0x`.
    pub fn from_hex(s: &str) -> Result<Self, ParseError> {
        decode_fixed(s.trim().trim_start_matches("0x")).map(Self)
    }
}

impl fmt::Display for EvmAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{}", hex::encode(self.0))
    }
}

impl fmt::Debug for EvmAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EvmAddress({self})")
    }
}

/// A compressed secp256k1 public key (33 bytes), as used in Bitcoin-family HTLC scripts.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PublicKeyBytes(#[serde(with = "hex::serde")] pub [u8; 33]);

impl PublicKeyBytes {
    /// Parses 66 hex characters.
    pub fn from_hex(s: &str) -> Result<Self, ParseError> {
        decode_fixed(s).map(Self)
    }
}

impl fmt::Display for PublicKeyBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for PublicKeyBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKeyBytes({self})")
    }
}

/// Who can claim or refund an HTLC on a given chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Account {
    /// A key that signs a Bitcoin-family claim or refund.
    PublicKey(PublicKeyBytes),
    /// An Ethereum account.
    Evm(EvmAddress),
}

impl fmt::Display for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Account::PublicKey(k) => write!(f, "pubkey {k}"),
            Account::Evm(a) => write!(f, "{a}"),
        }
    }
}

/// What a leg moves.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Asset {
    /// Bitcoin.
    Btc,
    /// Litecoin.
    Ltc,
    /// Ether.
    Eth,
    /// An ERC-20 token.
    Erc20 {
        /// The token contract.
        token: EvmAddress,
        /// Its `decimals()`.
        decimals: u8,
    },
}

impl Asset {
    /// True when `amount` is denominated in this asset's unit.
    pub fn fits(&self, amount: &Amount) -> bool {
        match (self, amount) {
            (Asset::Btc | Asset::Ltc, Amount::Sats(_)) => true,
            (Asset::Eth, Amount::Wei(_)) => true,
            (Asset::Erc20 { decimals, .. }, Amount::Token(t)) => t.decimals == *decimals,
            _ => false,
        }
    }
}

/// Identifies a swap. Chosen at random by the initiator and carried in the proposal.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SwapId(#[serde(with = "hex::serde")] pub [u8; 16]);

impl SwapId {
    /// A fresh random id.
    pub fn random() -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; 16];
        getrandom::getrandom(&mut bytes)?;
        Ok(Self(bytes))
    }

    /// Parses 32 hex characters.
    pub fn from_hex(s: &str) -> Result<Self, ParseError> {
        decode_fixed(s).map(Self)
    }
}

impl fmt::Display for SwapId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for SwapId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SwapId({self})")
    }
}

impl std::str::FromStr for SwapId {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_hex(s)
    }
}

/// A reference to a transaction on some chain (a txid or transaction hash, as hex).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TxRef(pub String);

impl fmt::Display for TxRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preimage_debug_is_redacted() {
        let p = Preimage::from_bytes([0xab; 32]);
        let shown = format!("{p:?}");
        assert!(!shown.contains("abab"), "{shown}");
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn hashlock_is_sha256() {
        // SHA-256 of 32 zero bytes.
        let p = Preimage::from_bytes([0u8; 32]);
        assert_eq!(
            p.hashlock().to_string(),
            "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925"
        );
        assert!(p.hashlock().matches(&p));
        assert!(!p.hashlock().matches(&Preimage::from_bytes([1u8; 32])));
    }

    #[test]
    fn random_preimages_differ() {
        let a = Preimage::random().expect("rng");
        let b = Preimage::random().expect("rng");
        assert_ne!(a, b);
    }

    #[test]
    fn preimage_must_be_32_bytes() {
        assert!(Preimage::from_slice(&[0u8; 33]).is_err());
        assert!(Preimage::from_slice(&[0u8; 31]).is_err());
        assert!(Preimage::from_slice(&[0u8; 32]).is_ok());
    }

    #[test]
    fn amounts_do_not_mix() {
        assert!(Asset::Btc.fits(&Amount::Sats(Sats(1))));
        assert!(!Asset::Btc.fits(&Amount::Wei(Wei(1))));
        let token = Asset::Erc20 {
            token: EvmAddress([1; 20]),
            decimals: 6,
        };
        assert!(token.fits(&Amount::Token(TokenUnits {
            units: 5,
            decimals: 6
        })));
        assert!(!token.fits(&Amount::Token(TokenUnits {
            units: 5,
            decimals: 18
        })));
    }

    #[test]
    fn ids_roundtrip_through_hex() {
        let id = SwapId::random().expect("rng");
        assert_eq!(SwapId::from_hex(&id.to_string()), Ok(id));
        assert!(SwapId::from_hex("zz").is_err());
    }
}
