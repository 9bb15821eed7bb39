//! Offers: what a maker trades, at what rate and until when, as one shareable string.
//!
//! Two forms are read: the compact one every offer is written in now (`xso1...`, bech32m of a
//! binary encoding, about 200 characters; its layout is in `docs/protocol.md`, "Offers") and
//! the older `xswap1...` (base58 of JSON and a 4-byte SHA-256 checksum, about 900 characters),
//! which [`Offer::encode_legacy`] still writes for takers on older builds.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use swap_core::{Amount, Asset, ChainId, RailId, RailKind, Timestamp};

use crate::PeerKey;

mod compact;
#[cfg(test)]
mod tests;

/// One side of an offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferLeg {
    /// The chain.
    pub chain: ChainId,
    /// Where on the chain this side's HTLC lives (absent: on chain).
    #[serde(default, skip_serializing_if = "RailKind::is_on_chain")]
    pub rail: RailKind,
    /// The asset.
    pub asset: Asset,
    /// The most the maker will trade in one swap.
    pub max: Amount,
    /// The least.
    pub min: Amount,
}

impl OfferLeg {
    /// The rail this side's HTLC lives on.
    pub fn rail_id(&self) -> RailId {
        RailId::new(self.chain, self.rail)
    }
}

/// What a maker publishes: where to reach it, who it is, what it sells and wants, at what rate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Offer {
    /// Format version.
    pub v: u8,
    /// Where the maker listens (`host:port`).
    pub addr: String,
    /// The maker's identity key.
    pub maker: PeerKey,
    /// What the maker gives.
    pub sell: OfferLeg,
    /// What the maker wants.
    pub buy: OfferLeg,
    /// Price: base units of `sell` the maker gives per base unit of `buy` it receives, as the
    /// ratio `rate_num / rate_den`.
    pub rate_num: u128,
    /// See `rate_num`.
    pub rate_den: u128,
    /// The offer is void after this time.
    pub expires: Timestamp,
}

/// Why an offer string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OfferError {
    /// Starts with neither `xso1` nor `xswap1`.
    #[error("not an xswap offer (it must start with \"xso1\" or \"xswap1\")")]
    Prefix,
    /// Longer than an offer can be.
    #[error("offer string too long")]
    TooLong,
    /// Not in its alphabet, or a damaged checksum (a typo or a cut-off copy).
    #[error(
        "offer is damaged (bad encoding or checksum): copy the whole string, from \"xso1\" (or \
         \"xswap1\") to its last character"
    )]
    Damaged,
    /// The checksum holds but the offer ends early (written by a broken encoder).
    #[error("offer is truncated: it ends before all its fields")]
    Truncated,
    /// Bytes after the last field.
    #[error("offer has {0} unexpected byte(s) after its last field")]
    TrailingBytes(usize),
    /// A format version this build does not read.
    #[error("unknown offer version {0} (written by a newer xswap?)")]
    UnknownVersion(u8),
    /// A number larger than its field holds.
    #[error("offer holds a number too large for its field")]
    VarintOverflow,
    /// A number not written in its shortest form (each offer has one string).
    #[error("offer holds a number not in its shortest form")]
    NonCanonical,
    /// A chain, network, rail or asset tag this build does not know.
    #[error("offer names an unknown {field} (tag {tag})")]
    UnknownTag {
        /// What the tag names.
        field: &'static str,
        /// The tag read.
        tag: u8,
    },
    /// An amount in a unit that is not its asset's, or larger than that unit holds.
    #[error("amount does not fit its asset")]
    AmountDoesNotFit,
    /// Well encoded, but not a valid offer.
    #[error("invalid offer: {0}")]
    Invalid(String),
}

const LEGACY_PREFIX: &str = "xswap1";
const MAX_OFFER_CHARS: usize = 4096;

impl Offer {
    /// What the maker gives for `give` base units of `buy` at this offer's rate (rounded down),
    /// or `None` on overflow.
    pub fn quote(&self, give: u128) -> Option<u128> {
        give.checked_mul(self.rate_num).map(|v| v / self.rate_den)
    }

    /// The shareable string, in the compact form: `xso1` + bech32m of the binary encoding (see
    /// `docs/protocol.md`, "Offers"), lower case. Its upper-case spelling reads the same and
    /// makes a smaller QR code (alphanumeric mode). An offer too long for a bech32m string (an
    /// address of hundreds of bytes) is written in the older form instead.
    pub fn encode(&self) -> String {
        compact::encode(self).unwrap_or_else(|| self.encode_legacy())
    }

    /// The older, longer form, which builds before the compact form read: `xswap1` +
    /// base58(JSON + 4-byte SHA-256 checksum).
    pub fn encode_legacy(&self) -> String {
        let mut bytes = serde_json::to_vec(self).unwrap_or_default();
        let sum = Sha256::digest(&bytes);
        bytes.extend_from_slice(&sum[..4]);
        format!("{LEGACY_PREFIX}{}", bs58::encode(bytes).into_string())
    }

    /// Checks what an offer says, as [`Offer::decode`] does and as a maker must before
    /// publishing: a known version, a rate, amounts that fit their assets with `0 < min <= max`,
    /// two different assets, and a reachable address (not an unspecified one like `0.0.0.0`).
    pub fn check(&self) -> Result<(), OfferError> {
        if self.v != 1 {
            return Err(OfferError::UnknownVersion(self.v));
        }
        if self.rate_num == 0 || self.rate_den == 0 {
            return Err(OfferError::Invalid("zero rate".into()));
        }
        for leg in [&self.sell, &self.buy] {
            if !leg.asset.fits(&leg.max) || !leg.asset.fits(&leg.min) {
                return Err(OfferError::AmountDoesNotFit);
            }
            if leg.min.is_zero() || leg.min.base_units() > leg.max.base_units() {
                return Err(OfferError::Invalid("limits must be 0 < min <= max".into()));
            }
        }
        if (self.sell.chain, &self.sell.asset) == (self.buy.chain, &self.buy.asset) {
            return Err(OfferError::Invalid("sells and buys the same asset".into()));
        }
        let host = self
            .addr
            .rsplit_once(':')
            .map(|(h, _)| h.trim_matches(['[', ']']))
            .unwrap_or("");
        if host.is_empty() || host == "0.0.0.0" || host == "::" {
            return Err(OfferError::Invalid(format!(
                "address {:?} is not one a taker can reach (set the public address)",
                self.addr
            )));
        }
        Ok(())
    }

    /// Parses and checks an offer string, in either form (the compact one in either case).
    /// White space inside it (a line-wrapped copy) is ignored.
    pub fn decode(s: &str) -> Result<Self, OfferError> {
        let s: String = s.split_whitespace().collect();
        if s.len() > MAX_OFFER_CHARS {
            return Err(OfferError::TooLong);
        }
        let offer = if let Some(body) = s.strip_prefix(LEGACY_PREFIX) {
            decode_legacy(body)?
        } else if s
            .get(..compact::PREFIX.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(compact::PREFIX))
        {
            compact::decode(&s)?
        } else {
            return Err(OfferError::Prefix);
        };
        offer.check()?;
        Ok(offer)
    }
}

/// The offer in the base58 body of an `xswap1` string (not checked yet).
fn decode_legacy(body: &str) -> Result<Offer, OfferError> {
    let bytes = bs58::decode(body)
        .into_vec()
        .map_err(|_| OfferError::Damaged)?;
    if bytes.len() < 5 {
        return Err(OfferError::Damaged);
    }
    let (json, sum) = bytes.split_at(bytes.len() - 4);
    if Sha256::digest(json)[..4] != *sum {
        return Err(OfferError::Damaged);
    }
    serde_json::from_slice(json).map_err(|e| OfferError::Invalid(e.to_string()))
}
