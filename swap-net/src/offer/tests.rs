#![allow(clippy::unwrap_used, clippy::expect_used)]

use bech32::primitives::gf32::Fe32;
use bech32::{Bech32m, ByteIterExt, Fe32IterExt, Hrp};
use proptest::prelude::*;
use swap_core::{ChainFamily, EvmAddress, Network, Sats, TokenUnits, Wei};

use super::compact::{to_bytes, write_varint};
use super::*;
use crate::Identity;

/// The compact string of `bytes` with a good checksum, whatever they hold.
fn wrap(bytes: &[u8]) -> String {
    bech32::encode_lower::<Bech32m>(Hrp::parse("xso").unwrap(), bytes).unwrap()
}

fn chain(family: ChainFamily, network: Network) -> ChainId {
    ChainId::new(family, network)
}

fn offer(maker: PeerKey) -> Offer {
    Offer {
        v: 1,
        addr: "127.0.0.1:9000".into(),
        maker,
        sell: OfferLeg {
            rail: RailKind::OnChain,
            chain: chain(ChainFamily::Ethereum, Network::Regtest),
            asset: Asset::Eth,
            max: Amount::Wei(Wei(10u128.pow(18))),
            min: Amount::Wei(Wei(10u128.pow(15))),
        },
        buy: OfferLeg {
            rail: RailKind::OnChain,
            chain: chain(ChainFamily::Bitcoin, Network::Regtest),
            asset: Asset::Btc,
            max: Amount::Sats(Sats(5_000_000)),
            min: Amount::Sats(Sats(5_000)),
        },
        rate_num: 5,
        rate_den: 1_000_000_000_000,
        expires: Timestamp(2_000_000_000),
    }
}

fn usdc() -> Asset {
    Asset::Erc20 {
        token: EvmAddress::from_hex("a0b86991c6218b36c1d19d4a2e9eb0ce3606eb48").unwrap(),
        decimals: 6,
    }
}

/// `max` and `min` base units of `asset`.
fn leg(chain: ChainId, rail: RailKind, asset: Asset, max: u128, min: u128) -> OfferLeg {
    let units = |u: u128| match &asset {
        Asset::Btc | Asset::Ltc => Amount::Sats(Sats(u64::try_from(u).unwrap())),
        Asset::Eth => Amount::Wei(Wei(u)),
        Asset::Erc20 { decimals, .. } => Amount::Token(TokenUnits {
            units: u,
            decimals: *decimals,
        }),
    };
    OfferLeg {
        chain,
        rail,
        max: units(max),
        min: units(min),
        asset,
    }
}

/// Every rail and asset kind a leg can have, on mainnet.
fn every_leg() -> Vec<OfferLeg> {
    use ChainFamily::*;
    let (btc, ltc, eth) = (
        chain(Bitcoin, Network::Mainnet),
        chain(Litecoin, Network::Mainnet),
        chain(Ethereum, Network::Mainnet),
    );
    let mut legs = Vec::new();
    for rail in [RailKind::OnChain, RailKind::Lightning] {
        legs.push(leg(btc, rail, Asset::Btc, 50_000_000, 10_000));
        legs.push(leg(ltc, rail, Asset::Ltc, 5_000_000_000, 100_000));
    }
    for rail in [RailKind::OnChain, RailKind::EvmChannel] {
        legs.push(leg(eth, rail, Asset::Eth, 10u128.pow(21), 10u128.pow(16)));
        legs.push(leg(eth, rail, usdc(), 3 * 10u128.pow(12), 10u128.pow(7)));
    }
    legs
}

#[test]
fn every_rail_and_asset_round_trips_in_either_case() {
    let maker = Identity::generate().unwrap().public();
    let legs = every_leg();
    let mut pairs = 0;
    for sell in &legs {
        for buy in &legs {
            if sell.asset == buy.asset {
                continue;
            }
            let o = Offer {
                sell: sell.clone(),
                buy: buy.clone(),
                ..offer(maker)
            };
            let s = o.encode();
            assert!(s.starts_with("xso1"), "{s}");
            assert_eq!(Offer::decode(&s), Ok(o.clone()), "{s}");
            assert_eq!(Offer::decode(&s.to_ascii_uppercase()), Ok(o.clone()));
            pairs += 1;
        }
    }
    assert_eq!(pairs, 8 * 8 - 4 * 4, "every pair of different assets");
    // Every network, on every family (the names `ChainId` parses).
    for family in ["btc", "ltc"] {
        for network in ["mainnet", "testnet", "signet", "sepolia", "regtest"] {
            let mut o = offer(maker);
            o.buy.chain = format!("{family}-{network}").parse().unwrap();
            o.sell.chain = format!("eth-{network}").parse().unwrap();
            assert_eq!(Offer::decode(&o.encode()), Ok(o));
        }
    }
}

/// Offers as a maker on the internet publishes them: a public address, amounts past a u64 in
/// wei and 18-decimal tokens, a token contract on one side.
fn realistic(addr: &str, maker: PeerKey) -> Vec<Offer> {
    use ChainFamily::*;
    let eth = chain(Ethereum, Network::Mainnet);
    let btc = chain(Bitcoin, Network::Mainnet);
    let dai = Asset::Erc20 {
        token: EvmAddress::from_hex("6b175474e89094c44da98b954eedeac495271d0f").unwrap(),
        decimals: 18,
    };
    let base = |sell, buy, rate_num, rate_den| Offer {
        v: 1,
        addr: addr.into(),
        maker,
        sell,
        buy,
        rate_num,
        rate_den,
        expires: Timestamp(1_796_000_000),
    };
    let on = RailKind::OnChain;
    vec![
        // 1000 ETH for up to 3,000,000 USDC, at 333,333,333.3 wei per USDC unit.
        base(
            leg(eth, on, Asset::Eth, 10u128.pow(21), 10u128.pow(16)),
            leg(eth, on, usdc(), 3 * 10u128.pow(12), 10u128.pow(7)),
            10u128.pow(18),
            3_000_000_000,
        ),
        // 1,000,000 DAI for up to 15 BTC, over Lightning.
        base(
            leg(eth, on, dai.clone(), 10u128.pow(24), 10u128.pow(19)),
            leg(btc, RailKind::Lightning, Asset::Btc, 1_500_000_000, 10_000),
            6_666_666_666_666,
            1,
        ),
        // 20 BTC for up to 500 ETH, the ETH over a payment channel.
        base(
            leg(btc, on, Asset::Btc, 2_000_000_000, 100_000),
            leg(
                eth,
                RailKind::EvmChannel,
                Asset::Eth,
                5 * 10u128.pow(20),
                10u128.pow(16),
            ),
            1,
            25_000_000_000,
        ),
        // 500 ETH for USDC, the other way round.
        base(
            leg(eth, on, usdc(), 15 * 10u128.pow(11), 10u128.pow(7)),
            leg(eth, on, Asset::Eth, 5 * 10u128.pow(20), 10u128.pow(16)),
            3_000_000_000,
            10u128.pow(18),
        ),
    ]
}

/// True for the characters a QR code's alphanumeric mode holds.
fn qr_alphanumeric(c: char) -> bool {
    c.is_ascii_digit() || c.is_ascii_uppercase() || " $%*+-./:".contains(c)
}

#[test]
fn realistic_offers_fit_a_phone_qr_code() {
    let maker = Identity::generate().unwrap().public();
    let mut longest = 0;
    for addr in ["203.0.113.45:9735", "swap-maker.example-market.net:9735"] {
        for o in realistic(addr, maker) {
            o.check().unwrap();
            let s = o.encode();
            let old = o.encode_legacy();
            println!(
                "{addr}: {} sells {} for {}: {} characters (old form {})",
                o.sell.chain,
                o.sell.max,
                o.buy.max,
                s.len(),
                old.len()
            );
            assert!(s.len() <= 250, "{} characters: {s}", s.len());
            assert!(s.len() * 3 < old.len(), "{} vs {}", s.len(), old.len());
            let upper = s.to_ascii_uppercase();
            assert!(upper.chars().all(qr_alphanumeric), "{upper}");
            assert_eq!(Offer::decode(&upper), Ok(o.clone()));
            assert_eq!(Offer::decode(&old), Ok(o));
            longest = longest.max(s.len());
        }
    }
    println!("longest realistic offer: {longest} characters");
}

#[test]
fn a_typo_or_a_cut_is_damaged() {
    const CHARSET: &str = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";
    // A fixed key: the same strings every run.
    let o = realistic("swap-maker.example-market.net:9735", PeerKey([7; 32])).remove(0);
    let s = o.encode();
    let chars: Vec<char> = s.chars().collect();
    // Every other character of the alphabet, at every position after the prefix, and a few
    // outside it (`1` moves the separator, `b` is not in the alphabet, `Q` mixes cases).
    for i in 4..chars.len() {
        for typo in CHARSET.chars().chain(['1', 'b', 'Q']) {
            if typo == chars[i] {
                continue;
            }
            let mut c = chars.clone();
            c[i] = typo;
            let t: String = c.into_iter().collect();
            assert_eq!(Offer::decode(&t), Err(OfferError::Damaged), "{typo} at {i}");
        }
        // Two neighbours swapped.
        if i + 1 < chars.len() && chars[i] != chars[i + 1] {
            let mut c = chars.clone();
            c.swap(i, i + 1);
            let t: String = c.into_iter().collect();
            assert_eq!(Offer::decode(&t), Err(OfferError::Damaged), "swap at {i}");
        }
    }
    // Cut anywhere (keeping the prefix), or a character lost or added.
    for end in 4..s.len() {
        assert_eq!(Offer::decode(&s[..end]), Err(OfferError::Damaged), "{end}");
        let lost = format!("{}{}", &s[..end], &s[end + 1..]);
        assert_eq!(Offer::decode(&lost), Err(OfferError::Damaged), "{end}");
        let added = format!("{}q{}", &s[..end], &s[end..]);
        assert_eq!(Offer::decode(&added), Err(OfferError::Damaged), "{end}");
    }
    assert_eq!(Offer::decode(&s[..3]), Err(OfferError::Prefix));
    // Line breaks and spaces inside it are ignored.
    let wrapped: String = chars
        .chunks(40)
        .map(|c| format!("{}\n  ", c.iter().collect::<String>()))
        .collect();
    assert_eq!(Offer::decode(&wrapped), Ok(o));
}

#[test]
fn old_form_still_decodes_and_typos_are_caught() {
    let o = offer(Identity::generate().unwrap().public());
    let s = o.encode_legacy();
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

/// Where the sell leg starts in `to_bytes(o)`.
fn sell_at(o: &Offer) -> usize {
    let mut len = Vec::new();
    write_varint(&mut len, o.addr.len() as u128);
    1 + len.len() + o.addr.len() + 32
}

/// `to_bytes(o)` with its last field (the expiry) written as `tail`.
fn with_tail(o: &Offer, tail: &[u8]) -> Vec<u8> {
    let mut expiry = Vec::new();
    write_varint(&mut expiry, u128::from(o.expires.0));
    let mut b = to_bytes(o);
    b.truncate(b.len() - expiry.len());
    b.extend_from_slice(tail);
    b
}

#[test]
fn format_errors_are_typed() {
    use OfferError::*;
    let o = offer(Identity::generate().unwrap().public());
    let bytes = to_bytes(&o);
    assert_eq!(Offer::decode(&wrap(&bytes)), Ok(o.clone()));
    // Every proper prefix of the bytes, with a good checksum, is truncated.
    for end in 0..bytes.len() {
        assert_eq!(Offer::decode(&wrap(&bytes[..end])), Err(Truncated), "{end}");
    }
    let decode = |b: &[u8]| Offer::decode(&wrap(b));
    assert_eq!(
        decode(&[bytes.clone(), vec![0]].concat()),
        Err(TrailingBytes(1))
    );
    let mut v2 = bytes.clone();
    v2[0] = 2;
    assert_eq!(decode(&v2), Err(UnknownVersion(2)));

    // Numbers: past a u64 for the expiry, past 128 bits, longer than 19 bytes, not shortest.
    let mut big = Vec::new();
    write_varint(&mut big, u128::from(u64::MAX) + 1);
    assert_eq!(decode(&with_tail(&o, &big)), Err(VarintOverflow));
    let mut past_u128 = vec![0xff; 18];
    past_u128.push(0x04);
    assert_eq!(decode(&with_tail(&o, &past_u128)), Err(VarintOverflow));
    let mut twenty = vec![0x80; 19];
    twenty.push(0x01);
    assert_eq!(decode(&with_tail(&o, &twenty)), Err(VarintOverflow));
    let mut at_limit = vec![0xff; 18];
    at_limit.push(0x03);
    let mut max = Vec::new();
    write_varint(&mut max, u128::MAX);
    assert_eq!(at_limit, max, "u128::MAX is 18 full bytes and 2 bits");
    assert_eq!(decode(&with_tail(&o, &[0x81, 0x00])), Err(NonCanonical));
    assert_eq!(
        decode(&with_tail(&o, &[0x80, 0x80, 0x00])),
        Err(NonCanonical)
    );

    // Unknown tags, in the sell leg (ETH on regtest).
    let at = sell_at(&o);
    assert_eq!(bytes[at], 0x24, "ethereum (2), regtest (4)");
    for (i, byte, field, tag) in [
        (at, 0x34, "chain family", 3),
        (at, 0x25, "network", 5),
        (at + 1, 3, "rail", 3),
        (at + 2, 4, "asset", 4),
    ] {
        let mut b = bytes.clone();
        b[i] = byte;
        assert_eq!(decode(&b), Err(UnknownTag { field, tag }));
    }

    // Satoshis past a u64 (the buy leg's max).
    let mut huge = o.clone();
    huge.buy.asset = Asset::Eth;
    huge.buy.max = Amount::Wei(Wei(u128::from(u64::MAX) + 1));
    huge.buy.min = Amount::Wei(Wei(1));
    let mut b = to_bytes(&huge);
    // From the end: expiry (5 bytes), rate (1 + 6), min (1), max (10), then the asset tag.
    let buy_asset = b.len() - (5 + 1 + 6 + 1 + 10) - 1;
    assert_eq!(b[buy_asset], 2, "the buy leg's asset tag (ETH)");
    b[buy_asset] = 0;
    assert_eq!(decode(&b), Err(AmountDoesNotFit));

    // Well formed but not a valid offer: what `check` refuses.
    let mut bad = o.clone();
    bad.rate_den = 0;
    assert_eq!(decode(&to_bytes(&bad)), Err(Invalid("zero rate".into())));
    let mut bad = o.clone();
    bad.addr = "0.0.0.0:9000".into();
    assert!(matches!(decode(&to_bytes(&bad)), Err(Invalid(_))));
    let mut not_utf8 = bytes.clone();
    not_utf8[2] = 0xff;
    assert_eq!(
        decode(&not_utf8),
        Err(Invalid("the address is not UTF-8".into()))
    );

    // Non-zero padding bits: the same bytes, another string.
    let mut padded = o.clone();
    if (to_bytes(&padded).len() * 8).is_multiple_of(5) {
        padded.addr = "127.0.0.1:90000".into();
    }
    let mut fes: Vec<Fe32> = to_bytes(&padded).into_iter().bytes_to_fes().collect();
    let last = fes.pop().unwrap();
    fes.push(Fe32::try_from(last.to_u8() | 1).unwrap());
    let hrp = Hrp::parse("xso").unwrap();
    let s: String = fes
        .into_iter()
        .with_checksum::<Bech32m>(&hrp)
        .chars()
        .collect();
    assert_eq!(Offer::decode(&s), Err(Damaged));
    // A string too long for a bech32m code.
    assert_eq!(
        Offer::decode(&format!("xso1{}", "q".repeat(1100))),
        Err(Damaged)
    );
}

#[test]
fn an_address_too_long_for_the_compact_form_is_written_in_the_old_one() {
    let mut o = offer(Identity::generate().unwrap().public());
    o.addr = format!("{}:9000", "a".repeat(700));
    let s = o.encode();
    assert!(s.starts_with("xswap1"), "{s}");
    assert_eq!(Offer::decode(&s), Ok(o));
}

fn arb_chain() -> impl Strategy<Value = ChainId> {
    let family = prop_oneof![
        Just(ChainFamily::Bitcoin),
        Just(ChainFamily::Litecoin),
        Just(ChainFamily::Ethereum)
    ];
    let network = prop_oneof![
        Just(Network::Mainnet),
        Just(Network::Testnet),
        Just(Network::Signet),
        Just(Network::Sepolia),
        Just(Network::Regtest)
    ];
    (family, network).prop_map(|(f, n)| ChainId::new(f, n))
}

/// Numbers of every size: a random u128 shifted right by a random amount.
fn arb_u128() -> impl Strategy<Value = u128> {
    (any::<u128>(), 0u32..128).prop_map(|(x, s)| x >> s)
}

fn arb_leg() -> impl Strategy<Value = OfferLeg> {
    let asset = prop_oneof![
        Just(Asset::Btc),
        Just(Asset::Ltc),
        Just(Asset::Eth),
        (any::<[u8; 20]>(), any::<u8>()).prop_map(|(t, decimals)| Asset::Erc20 {
            token: EvmAddress(t),
            decimals
        }),
    ];
    let rail = prop_oneof![
        Just(RailKind::OnChain),
        Just(RailKind::Lightning),
        Just(RailKind::EvmChannel)
    ];
    (arb_chain(), rail, asset, arb_u128(), arb_u128()).prop_map(|(chain, rail, asset, a, b)| {
        let cap = |u: u128| match asset {
            Asset::Btc | Asset::Ltc => u % u128::from(u64::MAX) + 1,
            _ => u.max(1),
        };
        let (a, b) = (cap(a), cap(b));
        leg(chain, rail, asset, a.max(b), a.min(b))
    })
}

fn arb_offer() -> impl Strategy<Value = Offer> {
    let addr = prop_oneof!["[a-z0-9.-]{1,40}:[0-9]{1,5}", "\\PC{1,30}:[0-9]{0,5}"];
    (
        addr,
        any::<[u8; 32]>(),
        arb_leg(),
        arb_leg(),
        arb_u128(),
        arb_u128(),
        any::<u64>(),
    )
        .prop_map(|(addr, maker, sell, buy, num, den, expires)| Offer {
            v: 1,
            addr,
            maker: PeerKey(maker),
            sell,
            buy,
            rate_num: num.max(1),
            rate_den: den.max(1),
            expires: Timestamp(expires),
        })
        .prop_filter("a valid offer", |o| o.check().is_ok())
}

/// When `s` decodes, the offer is valid and is written back as the same string (one string
/// per offer), in lower case.
fn decodes_canonically(s: &str) -> Result<(), TestCaseError> {
    if let Ok(o) = Offer::decode(s) {
        prop_assert_eq!(o.check(), Ok(()));
        let bare: String = s.split_whitespace().collect();
        if !bare.starts_with(LEGACY_PREFIX) {
            prop_assert_eq!(o.encode(), bare.to_ascii_lowercase());
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_offers_round_trip(o in arb_offer()) {
        let s = o.encode();
        prop_assert!(s.starts_with("xso1"));
        prop_assert_eq!(Offer::decode(&s), Ok(o.clone()));
        prop_assert_eq!(Offer::decode(&s.to_ascii_uppercase()), Ok(o.clone()));
        prop_assert_eq!(Offer::decode(&o.encode_legacy()), Ok(o));
    }

    #[test]
    fn random_strings_never_panic_decode(
        any_text in "\\PC{0,300}",
        compact in "(xso1|XSO1)[qpzry9x8gf2tvdw0s3jn54khce6mua7l]{0,300}",
        legacy in "xswap1[1-9A-HJ-NP-Za-km-z]{0,300}",
    ) {
        for s in [any_text, compact, legacy] {
            decodes_canonically(&s)?;
        }
    }

    /// Two characters changed anywhere after the prefix.
    #[test]
    fn two_typos_are_damaged(
        o in arb_offer(),
        at in any::<[prop::sample::Index; 2]>(),
        by in any::<[prop::sample::Index; 2]>(),
    ) {
        const CHARSET: &[u8] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";
        let mut s = o.encode().into_bytes();
        let n = s.len() - 4;
        let (i, j) = (4 + at[0].index(n), 4 + at[1].index(n));
        prop_assume!(i != j);
        for (k, by) in [(i, &by[0]), (j, &by[1])] {
            let pos = CHARSET.iter().position(|&c| c == s[k]).unwrap();
            // Another character of the alphabet: never the one that was there.
            s[k] = CHARSET[(pos + 1 + by.index(CHARSET.len() - 1)) % CHARSET.len()];
        }
        let s = String::from_utf8(s).unwrap();
        prop_assert_eq!(Offer::decode(&s), Err(OfferError::Damaged));
    }

    /// Any bytes behind a good checksum: a typed error or a valid offer, never a panic.
    #[test]
    fn random_bytes_never_panic_decode(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        decodes_canonically(&wrap(&bytes))?;
    }

    /// A real offer's bytes with one byte changed, inserted or removed, behind a good checksum.
    #[test]
    fn damaged_offers_never_panic_decode(
        o in arb_offer(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        how in 0u8..3,
    ) {
        let mut b = to_bytes(&o);
        let i = at.index(b.len());
        match how {
            0 => b[i] = byte,
            1 => b.insert(i, byte),
            _ => {
                b.remove(i);
            }
        }
        decodes_canonically(&wrap(&b))?;
    }
}
