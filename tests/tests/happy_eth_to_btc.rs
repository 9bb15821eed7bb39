//! Happy path, ETH -> BTC: the initiator locks ETH first (longer, timestamp expiry) and claims
//! the responder's BTC; the responder learns the secret from the Bitcoin witness.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use alloy::primitives::U256;
use swap_core::*;
use xswap_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eth_for_btc_both_parties_swap() {
    let nodes = start_nodes().await;
    let carol = Party::new(&nodes, "carol", 0xc0, 3).await; // initiator: sells ETH
    let dave = Party::new(&nodes, "dave", 0xd0, 4).await; // responder: sells BTC
    fund_btc(&nodes, &dave, 2 * SATS).await;
    let dave_eth0 = nodes.eth_bal(dave.eth.address()).await;
    let carol_btc0 = carol.btc_balance(&nodes).await;
    let dave_btc0 = dave.btc_balance(&nodes).await;

    let deal = agree(&nodes, &carol, &dave, Deal::EthForBtc).await;
    let out = run(&nodes, &[&carol, &dave], &deal.id, 60, 1).await;
    assert_eq!(out, vec![Some(Outcome::Swapped), Some(Outcome::Swapped)]);

    nodes.advance(1).await;
    let carol_btc = carol.btc_balance(&nodes).await - carol_btc0;
    assert!(
        carol_btc < SATS && carol_btc > SATS - 10_000,
        "carol got {carol_btc} sat"
    );
    let dave_btc_spent = dave_btc0 - dave.btc_balance(&nodes).await;
    assert!(
        dave_btc_spent > SATS && dave_btc_spent < SATS + 10_000,
        "dave spent {dave_btc_spent}"
    );
    let dave_gain = nodes.eth_bal(dave.eth.address()).await - dave_eth0;
    assert!(dave_gain < U256::from(WEI) && dave_gain > U256::from(WEI - 10u128.pow(16)));
}
