//! A base fee above the configured cap is a transient error and nothing is sent; EIP-1559 fees
//! below the cap are used.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use crate::common;

use std::time::Duration;

use alloy::consensus::Transaction;
use alloy::primitives::B256;
use alloy::providers::Provider;
use eth_adapter::{EthChain, EthConfig};
use swap_core::rail::{HtlcStatus, Rail};

#[tokio::test]
async fn fee_cap_is_respected() {
    let e = common::env().await;
    let (p, _) = common::eth_swap(&e.net, 0, 1, 10u128.pow(16), 3600).await;
    let mut cfg = EthConfig::new(e.net.url(), e.htlc, common::eth_params());
    cfg.max_fee_per_gas = 1; // 1 wei: below anvil's base fee
    cfg.poll_interval = Duration::from_millis(20);
    let capped = EthChain::new(cfg, e.net.signer(0)).unwrap();
    let nonce = e
        .net
        .provider()
        .get_transaction_count(e.net.address(0))
        .await
        .unwrap();
    let err = capped.lock(&p).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(err.message.contains("cap"), "{err}");
    assert_eq!(
        e.net
            .provider()
            .get_transaction_count(e.net.address(0))
            .await
            .unwrap(),
        nonce,
        "nothing sent"
    );
    assert_eq!(e.bob.htlc_status(&p).await.unwrap(), HtlcStatus::Absent);

    // With the default cap the lock goes through as an EIP-1559 transaction within the cap.
    let tx = e.alice.lock(&p).await.unwrap();
    let hash: B256 = tx.0.parse().unwrap();
    let sent = e
        .net
        .provider()
        .get_transaction_by_hash(hash)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sent.inner.tx_type() as u8, 2);
    assert!(sent.inner.max_fee_per_gas() <= e.alice.config().max_fee_per_gas);
}
