use super::*;

#[test]
fn lightning_networks() {
    let chain = |f, n| ChainId::new(f, n);
    assert_eq!(
        ldk_network(chain(ChainFamily::Litecoin, Network::Regtest)).ok(),
        Some(bitcoin::Network::Regtest)
    );
    assert_eq!(
        ldk_network(chain(ChainFamily::Bitcoin, Network::Mainnet)).ok(),
        Some(bitcoin::Network::Bitcoin)
    );
    assert!(ldk_network(chain(ChainFamily::Litecoin, Network::Mainnet)).is_err());
    assert!(ldk_network(chain(ChainFamily::Ethereum, Network::Regtest)).is_err());
}

#[test]
fn the_dust_exposure_limit_is_ldks_unless_set() {
    use lightning::util::config::MaxDustHTLCExposure;
    let chain = ChainId::new(ChainFamily::Litecoin, Network::Regtest);
    let rpc = btc_adapter::rpc::RpcConfig {
        url: "http://127.0.0.1:1".into(),
        auth: btc_adapter::rpc::Auth::UserPass("u".into(), "p".into()),
        wallet: None,
        timeout: Duration::from_secs(1),
    };
    let mut config = LnConfig::new(chain, rpc, std::path::PathBuf::from("/nonexistent"));
    assert_eq!(
        user_config(&config).channel_config.max_dust_htlc_exposure,
        UserConfig::default().channel_config.max_dust_htlc_exposure
    );
    config.max_dust_htlc_exposure_msat = Some(500_000_000);
    assert_eq!(
        user_config(&config).channel_config.max_dust_htlc_exposure,
        MaxDustHTLCExposure::FixedLimitMsat(500_000_000)
    );
}
