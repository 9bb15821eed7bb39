//! Happy path, ERC-20 -> BTC: the initiator sells a 6-decimals token for BTC.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use alloy::primitives::U256;
use swap_core::*;
use xswap_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_for_btc_both_parties_swap() {
    let nodes = start_nodes().await;
    let erin = Party::new(&nodes, "erin", 0xe0, 5).await; // initiator: sells tokens
    let frank = Party::new(&nodes, "frank", 0xf0, 6).await; // responder: sells BTC
    let token = token_for(&nodes, erin.eth.address(), 2 * TOKEN_UNITS).await;
    fund_btc(&nodes, &frank, 2 * SATS).await;
    let erin_btc0 = erin.btc_balance(&nodes).await;

    let deal = agree(&nodes, &erin, &frank, Deal::TokenForBtc(token)).await;
    let out = run(&nodes, &[&erin, &frank], &deal.id, 60, 1).await;
    assert_eq!(out, vec![Some(Outcome::Swapped), Some(Outcome::Swapped)]);

    // Token units move exactly; BTC minus the claim fee.
    assert_eq!(
        token_balance(&nodes, token, frank.eth.address()).await,
        U256::from(TOKEN_UNITS)
    );
    assert_eq!(
        token_balance(&nodes, token, erin.eth.address()).await,
        U256::from(TOKEN_UNITS)
    );
    nodes.advance(1).await;
    let got = erin.btc_balance(&nodes).await - erin_btc0;
    assert!(got < SATS && got > SATS - 10_000, "erin got {got} sat");
}
