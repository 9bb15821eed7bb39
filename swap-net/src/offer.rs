//! Offers: what a maker trades, at what rate and until when, as one `xswap1...` string.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use swap_core::{Amount, Asset, ChainId, RailId, RailKind, Timestamp};

use crate::PeerKey;

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
    /// Does not start with `xswap1`.
    #[error("not an xswap offer (it must start with \"xswap1\")")]
    Prefix,
    /// Longer than an offer can be.
    #[error("offer string too long")]
    TooLong,
    /// Not base58, or a damaged checksum (a typo or a cut-off copy).
    #[error(
        "offer is damaged (bad encoding or checksum): copy the whole string, from \"xswap1\" to \
         its last character"
    )]
    Damaged,
    /// Well encoded, but not a valid offer.
    #[error("invalid offer: {0}")]
    Invalid(String),
}

const OFFER_PREFIX: &str = "xswap1";
const MAX_OFFER_CHARS: usize = 4096;

impl Offer {
    /// What the maker gives for `give` base units of `buy` at this offer's rate (rounded down),
    /// or `None` on overflow.
    pub fn quote(&self, give: u128) -> Option<u128> {
        give.checked_mul(self.rate_num).map(|v| v / self.rate_den)
    }

    /// The shareable string: `xswap1` + base58(JSON + 4-byte SHA-256 checksum).
    pub fn encode(&self) -> String {
        let mut bytes = serde_json::to_vec(self).unwrap_or_default();
        let sum = Sha256::digest(&bytes);
        bytes.extend_from_slice(&sum[..4]);
        format!("{OFFER_PREFIX}{}", bs58::encode(bytes).into_string())
    }

    /// Checks what an offer says, as [`Offer::decode`] does and as a maker must before
    /// publishing: a known version, a rate, amounts that fit their assets with `0 < min <= max`,
    /// two different assets, and a reachable address (not an unspecified one like `0.0.0.0`).
    pub fn check(&self) -> Result<(), OfferError> {
        if self.v != 1 {
            return Err(OfferError::Invalid(format!(
                "unknown offer version {}",
                self.v
            )));
        }
        if self.rate_num == 0 || self.rate_den == 0 {
            return Err(OfferError::Invalid("zero rate".into()));
        }
        for leg in [&self.sell, &self.buy] {
            if !leg.asset.fits(&leg.max) || !leg.asset.fits(&leg.min) {
                return Err(OfferError::Invalid("amount does not fit its asset".into()));
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

    /// Parses and checks an offer string. White space inside it (a line-wrapped copy) is
    /// ignored.
    pub fn decode(s: &str) -> Result<Self, OfferError> {
        let s: String = s.split_whitespace().collect();
        let s = s.as_str();
        if s.len() > MAX_OFFER_CHARS {
            return Err(OfferError::TooLong);
        }
        let body = s.strip_prefix(OFFER_PREFIX).ok_or(OfferError::Prefix)?;
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
        let offer: Offer =
            serde_json::from_slice(json).map_err(|e| OfferError::Invalid(e.to_string()))?;
        offer.check()?;
        Ok(offer)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::Identity;
    use swap_core::{ChainFamily, Network, Sats, Wei};

    fn offer(maker: PeerKey) -> Offer {
        Offer {
            v: 1,
            addr: "127.0.0.1:9000".into(),
            maker,
            sell: OfferLeg {
                rail: swap_core::RailKind::OnChain,
                chain: ChainId::new(ChainFamily::Ethereum, Network::Regtest),
                asset: Asset::Eth,
                max: Amount::Wei(Wei(10u128.pow(18))),
                min: Amount::Wei(Wei(10u128.pow(15))),
            },
            buy: OfferLeg {
                rail: swap_core::RailKind::OnChain,
                chain: ChainId::new(ChainFamily::Bitcoin, Network::Regtest),
                asset: Asset::Btc,
                max: Amount::Sats(Sats(5_000_000)),
                min: Amount::Sats(Sats(5_000)),
            },
            rate_num: 5,
            rate_den: 1_000_000_000_000,
            expires: Timestamp(2_000_000_000),
        }
    }

    #[test]
    fn offers_roundtrip_and_typos_are_caught() {
        let id = Identity::generate().unwrap();
        let o = offer(id.public());
        let s = o.encode();
        assert!(s.starts_with("xswap1"));
        assert_eq!(Offer::decode(&s), Ok(o));
        // Every single-character change is detected.
        let chars: Vec<char> = s.chars().collect();
        for i in (6..chars.len()).step_by(7) {
            let mut c = chars.clone();
            c[i] = if c[i] == '2' { '3' } else { '2' };
            let t: String = c.into_iter().collect();
            assert!(Offer::decode(&t).is_err(), "typo at {i} not caught");
        }
        assert_eq!(Offer::decode("btc1qqq"), Err(OfferError::Prefix));
        assert_eq!(Offer::decode(&s[..s.len() - 3]), Err(OfferError::Damaged));
        assert_eq!(Offer::decode(&"x".repeat(5000)), Err(OfferError::TooLong));
    }
}
