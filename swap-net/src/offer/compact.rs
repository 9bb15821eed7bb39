//! The compact offer form: `xso1` + bech32m (BIP-350) of a binary encoding, short enough for a
//! QR code on a phone. Upper case reads the same (`XSO1...`), which a QR code stores in its
//! alphanumeric mode.
//!
//! The bytes, in order (every number an unsigned LEB128 varint in its shortest form):
//!
//! | field       | encoding                                                            |
//! |-------------|---------------------------------------------------------------------|
//! | version     | one byte, the offer's `v` (1)                                       |
//! | address     | varint length, then that many bytes of UTF-8 (`host:port`)          |
//! | maker       | 32 bytes                                                            |
//! | sell, buy   | each a leg (below)                                                  |
//! | rate        | varint `rate_num`, varint `rate_den`                                |
//! | expires     | varint, seconds since the Unix epoch                                |
//!
//! A leg: one byte chain (family in the high nibble, network in the low one), one byte rail
//! kind, one byte asset; for an ERC-20 token its 20-byte contract address and one byte of
//! decimals; then varint `max` and varint `min` in the asset's base units. The tags are the
//! `tags!` tables below; an unknown one is refused, never guessed.
//!
//! The bech32m checksum (6 characters) catches typos and cut-off copies; the decoder also refuses
//! non-zero padding bits, bytes after the offer and numbers not in their shortest form, so an
//! offer has exactly one compact string.

use bech32::primitives::decode::CheckedHrpstring;
use bech32::{Bech32m, Hrp};
use swap_core::{
    Amount, Asset, ChainFamily, ChainId, EvmAddress, Network, RailKind, Sats, Timestamp,
    TokenUnits, Wei,
};

use super::{Offer, OfferError, OfferLeg};
use crate::PeerKey;

/// The human-readable part: "xswap offer".
const HRP: &str = "xso";
/// How a compact offer starts (in either case).
pub(super) const PREFIX: &str = "xso1";

/// Defines a tag byte for each variant of an enum: `$to` (exhaustive, so a new variant does not
/// compile until it has a tag) and `$from` (an unknown tag is refused, naming `$field`).
macro_rules! tags {
    ($to:ident, $from:ident, $ty:ty, $field:literal { $($variant:path => $tag:literal),+ $(,)? }) => {
        fn $to(v: $ty) -> u8 {
            match v {
                $($variant => $tag,)+
            }
        }

        fn $from(tag: u8) -> Result<$ty, OfferError> {
            match tag {
                $($tag => Ok($variant),)+
                tag => Err(OfferError::UnknownTag { field: $field, tag }),
            }
        }
    };
}

tags!(family_tag, family_from, ChainFamily, "chain family" {
    ChainFamily::Bitcoin => 0,
    ChainFamily::Litecoin => 1,
    ChainFamily::Ethereum => 2,
});
tags!(network_tag, network_from, Network, "network" {
    Network::Mainnet => 0,
    Network::Testnet => 1,
    Network::Signet => 2,
    Network::Sepolia => 3,
    Network::Regtest => 4,
});
tags!(rail_tag, rail_from, RailKind, "rail" {
    RailKind::OnChain => 0,
    RailKind::Lightning => 1,
    RailKind::EvmChannel => 2,
});

const ASSET_BTC: u8 = 0;
const ASSET_LTC: u8 = 1;
const ASSET_ETH: u8 = 2;
const ASSET_ERC20: u8 = 3;

/// The compact string of `offer` (lower case), or `None` when it would be longer than a bech32m
/// string can be (1023 characters: only an offer with an address of hundreds of bytes).
pub(super) fn encode(offer: &Offer) -> Option<String> {
    let hrp = Hrp::parse(HRP).ok()?;
    bech32::encode_lower::<Bech32m>(hrp, &to_bytes(offer)).ok()
}

/// The offer in a compact string (either case; white space already removed). Checks the
/// checksum and the format, not what the offer says ([`Offer::check`] does).
pub(super) fn decode(s: &str) -> Result<Offer, OfferError> {
    let checked = CheckedHrpstring::new::<Bech32m>(s).map_err(|_| OfferError::Damaged)?;
    // (`Hrp` compares case-insensitively.)
    if Hrp::parse(HRP).ok() != Some(checked.hrp()) {
        // It started with `xso1`, so a `1` typed into the data moved the separator.
        return Err(OfferError::Damaged);
    }
    // At most 4 padding bits, all zero (BIP-173): one string per byte sequence.
    checked
        .validate_segwit_padding()
        .map_err(|_| OfferError::Damaged)?;
    let bytes: Vec<u8> = checked.byte_iter().collect();
    from_bytes(&bytes)
}

/// The binary encoding of an offer (see the module documentation).
pub(super) fn to_bytes(offer: &Offer) -> Vec<u8> {
    let mut out = Vec::with_capacity(160);
    out.push(offer.v);
    write_varint(&mut out, offer.addr.len() as u128);
    out.extend_from_slice(offer.addr.as_bytes());
    out.extend_from_slice(&offer.maker.0);
    for leg in [&offer.sell, &offer.buy] {
        write_leg(&mut out, leg);
    }
    write_varint(&mut out, offer.rate_num);
    write_varint(&mut out, offer.rate_den);
    write_varint(&mut out, u128::from(offer.expires.0));
    out
}

/// Reads the binary encoding of an offer: the whole of `bytes`, nothing after it.
pub(super) fn from_bytes(bytes: &[u8]) -> Result<Offer, OfferError> {
    let mut r = Reader(bytes);
    let v = r.byte()?;
    if v != 1 {
        return Err(OfferError::UnknownVersion(v));
    }
    let addr_len = usize::try_from(r.varint()?).map_err(|_| OfferError::Truncated)?;
    let addr = std::str::from_utf8(r.take(addr_len)?)
        .map_err(|_| OfferError::Invalid("the address is not UTF-8".into()))?
        .to_owned();
    let maker = PeerKey(r.array()?);
    let sell = read_leg(&mut r)?;
    let buy = read_leg(&mut r)?;
    let rate_num = r.varint()?;
    let rate_den = r.varint()?;
    let expires = Timestamp(u64::try_from(r.varint()?).map_err(|_| OfferError::VarintOverflow)?);
    if !r.0.is_empty() {
        return Err(OfferError::TrailingBytes(r.0.len()));
    }
    Ok(Offer {
        v,
        addr,
        maker,
        sell,
        buy,
        rate_num,
        rate_den,
        expires,
    })
}

fn write_leg(out: &mut Vec<u8>, leg: &OfferLeg) {
    out.push(family_tag(leg.chain.family) << 4 | network_tag(leg.chain.network));
    out.push(rail_tag(leg.rail));
    match &leg.asset {
        Asset::Btc => out.push(ASSET_BTC),
        Asset::Ltc => out.push(ASSET_LTC),
        Asset::Eth => out.push(ASSET_ETH),
        Asset::Erc20 { token, decimals } => {
            out.push(ASSET_ERC20);
            out.extend_from_slice(&token.0);
            out.push(*decimals);
        }
    }
    write_varint(out, leg.max.base_units());
    write_varint(out, leg.min.base_units());
}

fn read_leg(r: &mut Reader<'_>) -> Result<OfferLeg, OfferError> {
    let chain = r.byte()?;
    let chain = ChainId::new(family_from(chain >> 4)?, network_from(chain & 0x0f)?);
    let rail = rail_from(r.byte()?)?;
    let asset = match r.byte()? {
        ASSET_BTC => Asset::Btc,
        ASSET_LTC => Asset::Ltc,
        ASSET_ETH => Asset::Eth,
        ASSET_ERC20 => Asset::Erc20 {
            token: EvmAddress(r.array()?),
            decimals: r.byte()?,
        },
        tag => {
            return Err(OfferError::UnknownTag {
                field: "asset",
                tag,
            })
        }
    };
    let max = amount(&asset, r.varint()?)?;
    let min = amount(&asset, r.varint()?)?;
    Ok(OfferLeg {
        chain,
        rail,
        asset,
        max,
        min,
    })
}

/// `units` base units of `asset`, refused when its unit cannot hold them (satoshis are a u64).
fn amount(asset: &Asset, units: u128) -> Result<Amount, OfferError> {
    Ok(match asset {
        Asset::Btc | Asset::Ltc => Amount::Sats(Sats(
            u64::try_from(units).map_err(|_| OfferError::AmountDoesNotFit)?,
        )),
        Asset::Eth => Amount::Wei(Wei(units)),
        Asset::Erc20 { decimals, .. } => Amount::Token(TokenUnits {
            units,
            decimals: *decimals,
        }),
    })
}

/// Unsigned LEB128: seven bits a byte, least significant first, the high bit set on every byte
/// but the last.
pub(super) fn write_varint(out: &mut Vec<u8>, mut v: u128) {
    loop {
        let low = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(low);
            return;
        }
        out.push(low | 0x80);
    }
}

/// The bytes not read yet.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], OfferError> {
        if n > self.0.len() {
            return Err(OfferError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, OfferError> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], OfferError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    /// A u128 varint: at most 19 bytes, the last holding at most 2 bits, no zero last byte after
    /// the first (a longer spelling of a shorter number).
    fn varint(&mut self) -> Result<u128, OfferError> {
        let mut value = 0u128;
        for i in 0..19 {
            let b = self.byte()?;
            let low = u128::from(b & 0x7f);
            if i == 18 && low > 0b11 {
                return Err(OfferError::VarintOverflow);
            }
            value |= low << (7 * i);
            if b & 0x80 == 0 {
                if b == 0 && i > 0 {
                    return Err(OfferError::NonCanonical);
                }
                return Ok(value);
            }
        }
        Err(OfferError::VarintOverflow)
    }
}
