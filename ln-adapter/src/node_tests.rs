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
