//! Unit tests of the per-rail parameters (`params.rs`).

use super::*;

#[test]
fn a_routed_lightning_leg_is_visible_for_its_route_blocks_longer() {
    let chain = ChainId::new(ChainFamily::Bitcoin, Network::Regtest);
    let mut ln = ChainParams::for_rail(RailId::new(chain, RailKind::Lightning));
    let e = Expiry::Height(Height(1_000));
    let direct = ln.claims_final_after(e);
    ln.route_blocks = 72;
    assert!(ln.validate().is_ok());
    let routed = ln.claims_final_after(e);
    assert_eq!(
        (direct, routed),
        (
            Expiry::Height(Height(1_000 + u64::from(ln.claim_blocks))),
            Expiry::Height(Height(1_000 + u64::from(ln.claim_blocks) + 72))
        )
    );
    // Only a Lightning leg is routed; terms without the field read as direct.
    let mut on_chain = ChainParams::for_chain(chain);
    on_chain.route_blocks = 1;
    assert!(on_chain.validate().is_err());
    let json = serde_json::to_string(&ChainParams::for_chain(chain)).unwrap();
    assert!(!json.contains("route_blocks"), "old encodings unchanged");
}

#[test]
fn table_is_valid_for_every_chain() {
    for family in [
        ChainFamily::Bitcoin,
        ChainFamily::Litecoin,
        ChainFamily::Ethereum,
    ] {
        for network in [
            Network::Mainnet,
            Network::Testnet,
            Network::Signet,
            Network::Sepolia,
            Network::Regtest,
        ] {
            let p = ChainParams::for_chain(ChainId::new(family, network));
            p.validate().unwrap_or_else(|e| panic!("{}: {e}", p.chain));
            assert!(p.observe_lag > p.block_interval);
        }
    }
}

#[test]
fn rail_params_are_valid_and_channel_cutoffs_come_earlier() {
    for rail in [
        "btc-mainnet",
        "btc-mainnet/ln",
        "ltc-regtest/ln",
        "eth-mainnet/channel",
    ] {
        let id: RailId = rail.parse().expect(rail);
        assert_eq!(id.to_string(), rail);
        let p = ChainParams::for_rail(id);
        p.validate().unwrap_or_else(|e| panic!("{rail}: {e}"));
        assert_eq!(p.rail(), id);
    }
    assert!("eth-mainnet/ln".parse::<RailId>().is_err());
    assert!("btc-mainnet/channel".parse::<RailId>().is_err());
    assert!("btc-mainnet/x".parse::<RailId>().is_err());
    let on_chain = ChainParams::for_chain(ChainId::new(ChainFamily::Bitcoin, Network::Mainnet));
    let ln = ChainParams::for_rail(RailId::new(on_chain.chain, RailKind::Lightning));
    let e = Expiry::Height(Height(1_000));
    assert_eq!(on_chain.claim_cutoff(e), Expiry::Height(Height(994)));
    assert_eq!(ln.claim_cutoff(e), Expiry::Height(Height(954)));
    assert_eq!(ln.refunds(), RefundMode::Automatic);
    assert_eq!(on_chain.refunds(), RefundMode::Explicit);
    assert_eq!(ln.required_finality(), Finality::Irrevocable);
    assert_eq!(on_chain.required_finality(), Finality::Depth(3));
    let mut bad = ln;
    bad.enforcement_blocks = 5;
    assert!(bad.validate().is_err());
    let mut bad = on_chain;
    bad.enforcement_blocks = 5;
    assert!(bad.validate().is_err());
}

#[test]
fn finality_orders_mempool_depth_irrevocable() {
    assert!(Finality::Irrevocable.reaches(Finality::Depth(100)));
    assert!(Finality::Depth(3).reaches(Finality::Depth(3)));
    assert!(!Finality::Depth(2).reaches(Finality::Depth(3)));
    assert!(!Finality::Mempool.reaches(Finality::Depth(1)));
    assert!(!Finality::Depth(1_000).reaches(Finality::Irrevocable));
    assert_eq!(Finality::confirmations(0), Finality::Mempool);
    assert!(Finality::confirmations(0).is_pending());
    assert_eq!(Finality::confirmations(2).depth(), Some(2));
}

#[test]
fn records_from_before_rails_read_as_on_chain() {
    let p = ChainParams::for_chain(ChainId::new(ChainFamily::Litecoin, Network::Regtest));
    let mut v = serde_json::to_value(p).expect("json");
    let obj = v.as_object_mut().expect("object");
    obj.remove("kind");
    obj.remove("enforcement_blocks");
    let back: ChainParams = serde_json::from_value(v).expect("old record");
    assert_eq!(back, p);
}

#[test]
fn chain_ids_roundtrip_through_text() {
    for s in [
        "btc-mainnet",
        "ltc-regtest",
        "eth-sepolia",
        "btc-signet",
        "ltc-testnet",
    ] {
        let id: ChainId = s.parse().expect(s);
        assert_eq!(id.to_string(), s);
    }
    assert!("doge-mainnet".parse::<ChainId>().is_err());
    assert!("btc".parse::<ChainId>().is_err());
}

#[test]
fn btc_mainnet_matches_protocol_table() {
    let p = ChainParams::for_chain(ChainId::new(ChainFamily::Bitcoin, Network::Mainnet));
    assert_eq!(
        (
            p.block_interval,
            p.fast_factor_pct,
            p.slow_factor_pct,
            p.lock_confirmations,
            p.claim_blocks
        ),
        (600, 50, 250, 3, 6)
    );
    assert_eq!(p.blocks_secs(10, Pace::Fast), 3000);
    assert_eq!(p.blocks_secs(10, Pace::Slow), 15000);
    let tip = ChainTip {
        height: Height(100),
        time: Timestamp(0),
    };
    assert_eq!(
        p.secs_until(Expiry::Height(Height(90)), tip, Pace::Fast),
        -3000
    );
    assert_eq!(
        p.claim_deadline(Expiry::Height(Height(200))),
        Expiry::Height(Height(194))
    );
    assert!(p.refundable(Expiry::Height(Height(100)), tip));
    assert!(!p.refundable(Expiry::Height(Height(101)), tip));
}

#[test]
fn eth_time_conversions_apply_drift_against_us() {
    let p = ChainParams::for_chain(ChainId::new(ChainFamily::Ethereum, Network::Mainnet));
    let tip = ChainTip {
        height: Height(1),
        time: Timestamp(1_000),
    };
    let e = Expiry::Time(Timestamp(2_000));
    assert_eq!(p.secs_until(e, tip, Pace::Fast), 1_000 - 15);
    assert_eq!(p.secs_until(e, tip, Pace::Slow), 1_000 + 15);
    // 20 blocks * 12 s * 1.5 + 15 s drift
    assert_eq!(
        p.claim_deadline(e),
        Expiry::Time(Timestamp(2_000 - 360 - 15 - 1))
    );
    assert_eq!(p.claims_final_after(e), e);
}
