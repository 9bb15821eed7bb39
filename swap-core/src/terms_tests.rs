//! Unit tests of `terms.rs`.

use super::*;
use crate::params::{ChainFamily, ChainId, Network};
use crate::types::*;

pub(crate) fn btc_eth_legs() -> (LegTerms, LegTerms) {
    let btc = ChainParams::for_chain(ChainId::new(ChainFamily::Bitcoin, Network::Mainnet));
    let eth = ChainParams::for_chain(ChainId::new(ChainFamily::Ethereum, Network::Mainnet));
    let x = LegTerms {
        params: btc,
        asset: Asset::Btc,
        amount: Amount::Sats(Sats(100_000)),
        sender: Account::PublicKey(PublicKeyBytes([2; 33])),
        recipient: Account::PublicKey(PublicKeyBytes([3; 33])),
        expiry: Expiry::Height(Height(0)),
        rail_data: None,
    };
    let y = LegTerms {
        params: eth,
        asset: Asset::Eth,
        amount: Amount::Wei(Wei(10u128.pow(18))),
        sender: Account::Evm(EvmAddress([4; 20])),
        recipient: Account::Evm(EvmAddress([5; 20])),
        expiry: Expiry::Time(Timestamp(0)),
        rail_data: None,
    };
    (x, y)
}

fn tips() -> Tips {
    Tips {
        x: ChainTip {
            height: Height(800_000),
            time: Timestamp(1_700_000_000),
        },
        y: ChainTip {
            height: Height(18_000_000),
            time: Timestamp(1_700_000_000),
        },
    }
}

#[test]
fn default_expiries_satisfy_the_rules_both_directions() {
    let (x, y) = btc_eth_legs();
    let h = Preimage::from_bytes([7; 32]).hashlock();
    let id = SwapId([1; 16]);
    let t = SwapTerms::with_default_expiries(
        id,
        h,
        x.clone(),
        y.clone(),
        SafetyPolicy::default(),
        tips(),
    )
    .expect("btc->eth defaults");
    // BTC leg at least 24 h of blocks.
    assert!(matches!(t.x.expiry, Expiry::Height(Height(e)) if e >= 800_000 + 144));
    // ETH -> BTC: the initiator locks ETH.
    let rev_tips = Tips {
        x: tips().y,
        y: tips().x,
    };
    let t2 = SwapTerms::with_default_expiries(id, h, y, x, SafetyPolicy::default(), rev_tips)
        .expect("eth->btc defaults");
    t2.check_rule2(rev_tips).expect("rule 2");
}

#[test]
fn equal_expiries_violate_rule_2() {
    let (mut x, mut y) = btc_eth_legs();
    let tips = tips();
    x.expiry = x.params.expiry_after(tips.x, 12 * 3600);
    y.expiry = y.params.expiry_after(tips.y, 12 * 3600);
    let err = SwapTerms::new(
        SwapId([1; 16]),
        Hashlock([0; 32]),
        x,
        y,
        SafetyPolicy::default(),
        tips,
    )
    .expect_err("must be refused");
    assert!(
        matches!(err, TermsError::Rule2ResponderCannotReact { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("rule 2"));
}

#[test]
fn too_short_responder_expiry_violates_rule_1() {
    let (mut x, mut y) = btc_eth_legs();
    let tips = tips();
    x.expiry = x.params.expiry_after(tips.x, 48 * 3600);
    y.expiry = y.params.expiry_after(tips.y, 1800);
    let err = SwapTerms::new(
        SwapId([1; 16]),
        Hashlock([0; 32]),
        x,
        y,
        SafetyPolicy::default(),
        tips,
    )
    .expect_err("must be refused");
    assert!(matches!(err, TermsError::Rule1ClaimWindow { .. }), "{err}");
}

#[test]
fn shape_errors_are_typed() {
    let (x, mut y) = btc_eth_legs();
    y.amount = Amount::Sats(Sats(5));
    let err = SwapTerms::with_default_expiries(
        SwapId([1; 16]),
        Hashlock([0; 32]),
        x.clone(),
        y,
        SafetyPolicy::default(),
        tips(),
    )
    .expect_err("wrong unit");
    assert!(matches!(err, TermsError::BadAmount { leg: Leg::Y, .. }));
    let (_, mut y) = btc_eth_legs();
    y.recipient = y.sender;
    let err = SwapTerms::with_default_expiries(
        SwapId([1; 16]),
        Hashlock([0; 32]),
        x,
        y,
        SafetyPolicy::default(),
        tips(),
    )
    .expect_err("same account");
    assert!(matches!(err, TermsError::BadAccount { leg: Leg::Y, .. }));
}

#[test]
fn lock_verification_names_the_difference() {
    let (x, _) = btc_eth_legs();
    let h = Hashlock([9; 32]);
    let good = ObservedLock {
        txref: TxRef("aa".into()),
        asset: x.asset.clone(),
        amount: x.amount,
        sender: x.sender,
        recipient: x.recipient,
        hashlock: h,
        expiry: x.expiry,
    };
    assert_eq!(x.verify(&h, &good, ExpiryMatch::Exact), Ok(()));
    let mut more = good.clone();
    more.amount = Amount::Sats(Sats(100_001));
    assert!(matches!(
        x.verify(&h, &more, ExpiryMatch::Exact),
        Err(LockMismatch::Amount { .. })
    ));
    let mut later = good.clone();
    later.expiry = Expiry::Height(Height(5));
    assert!(x.verify(&h, &later, ExpiryMatch::AtLeast).is_ok());
    assert!(matches!(
        x.verify(&h, &later, ExpiryMatch::Exact),
        Err(LockMismatch::Expiry { .. })
    ));
    let mut other = good;
    other.recipient = x.sender;
    assert!(matches!(
        x.verify(&h, &other, ExpiryMatch::Exact),
        Err(LockMismatch::Recipient { .. })
    ));
}
