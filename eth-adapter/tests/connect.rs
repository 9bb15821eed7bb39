//! `EthChain::connect` refuses a wrong contract address or chain, and `Debug` never shows the
//! key or the RPC URL's path.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use crate::common;

use eth_adapter::{EthChain, EthConfig};

#[tokio::test]
async fn connect_checks_contract_and_chain() {
    let e = common::env().await;
    let good = EthConfig::new(e.net.url(), e.htlc, common::eth_params());
    EthChain::connect(good.clone(), e.net.signer(0))
        .await
        .unwrap();

    let mut wrong_addr = good.clone();
    wrong_addr.htlc = e.net.address(3);
    let err = EthChain::connect(wrong_addr, e.net.signer(0))
        .await
        .unwrap_err();
    assert!(!err.is_transient(), "{err}");

    let mut wrong_chain = good.clone();
    wrong_chain.expected_chain_id = Some(1);
    assert!(EthChain::connect(wrong_chain, e.net.signer(0))
        .await
        .is_err());

    let mut right_chain = good;
    right_chain.expected_chain_id = Some(31337);
    EthChain::connect(right_chain, e.net.signer(0))
        .await
        .unwrap();
}

#[tokio::test]
async fn debug_redacts_key_and_url() {
    let e = common::env().await;
    let mut cfg = EthConfig::new(
        format!("{}/v3/secret-api-key", e.net.url()),
        e.htlc,
        common::eth_params(),
    );
    cfg.poll_interval = std::time::Duration::from_millis(20);
    let signer = e.net.signer(0);
    let key_hex = hex::encode(signer.to_bytes());
    let chain = EthChain::new(cfg, signer).unwrap();
    let shown = format!("{chain:?}");
    assert!(!shown.contains(&key_hex), "{shown}");
    assert!(!shown.contains("secret-api-key"), "{shown}");
    assert!(shown.contains("127.0.0.1"), "{shown}");
}

#[tokio::test]
async fn errors_do_not_quote_the_rpc_url_path() {
    let mut e = common::env().await;
    let (p, _) = common::eth_swap(&e.net, 0, 1, 1, 3600).await;
    let cfg = EthConfig::new(
        format!("{}/v3/secret-api-key", e.net.url()),
        e.htlc,
        common::eth_params(),
    );
    let chain = EthChain::new(cfg, e.net.signer(0)).unwrap();
    e.net.stop();
    let err = swap_core::rail::Rail::htlc_status(&chain, &p)
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(!err.message.contains("secret-api-key"), "{err}");
}

/// An adapter made without `connect` whose HTLC address holds no contract (a typo in a config)
/// refuses to lock, claim or refund: nothing reaches that address, no nonce is used, and the
/// error says what is wrong.
#[tokio::test]
async fn a_wrong_contract_address_never_receives_funds() {
    use alloy::providers::Provider;
    use swap_core::rail::Rail;
    let e = common::env().await;
    let stranger = e.net.address(3);
    let wrong = common::chain_for(&e.net, stranger, 0);
    let (p, pre) = common::eth_swap(&e.net, 0, 1, 1_000_000, 3600).await;
    let before = common::balance(&e.net, stranger).await;
    let nonce = e
        .net
        .provider()
        .get_transaction_count(e.net.address(0))
        .await
        .unwrap();

    let err = wrong.lock(&p).await.unwrap_err();
    assert!(!err.is_transient(), "{err}");
    assert!(err.message.contains("not the xswap HTLC contract"), "{err}");
    assert!(wrong.claim(&p, &pre).await.is_err());
    assert!(wrong.refund(&p).await.is_err());
    assert!(matches!(
        wrong.verify().await,
        Err(eth_adapter::EthError::NotHtlcContract { .. })
    ));

    assert_eq!(common::balance(&e.net, stranger).await, before);
    assert_eq!(
        e.net
            .provider()
            .get_transaction_count(e.net.address(0))
            .await
            .unwrap(),
        nonce,
        "no transaction was sent"
    );
    // The right address still works through the same kind of adapter.
    e.alice.lock(&p).await.unwrap();
}

/// Rails issue, 7b: watching needs no private key. A watch-only adapter sees a lock and the
/// secret of its claim, and refuses to lock, claim or refund before anything is sent.
#[tokio::test]
async fn a_watch_only_adapter_observes_and_never_sends() {
    use alloy::providers::Provider;
    use swap_core::rail::{HtlcStatus, Rail};
    let e = common::env().await;
    let watched = e.net.address(5);
    let watcher = EthChain::watch_only(
        EthConfig::new(e.net.url(), e.htlc, common::eth_params()),
        watched,
    )
    .unwrap();
    assert!(watcher.is_watch_only());
    assert_eq!(watcher.address(), watched);
    let (p, pre) = common::eth_swap(&e.net, 0, 1, 1_000_000, 3600).await;
    e.alice.lock(&p).await.unwrap();
    assert!(matches!(
        watcher.htlc_status(&p).await.unwrap(),
        HtlcStatus::Funded { .. }
    ));
    e.bob.claim(&p, &pre).await.unwrap();
    match watcher.htlc_status(&p).await.unwrap() {
        HtlcStatus::Claimed { preimage, .. } => assert_eq!(preimage, pre),
        other => panic!("expected claimed, got {other:?}"),
    }
    let (mine, _) = common::eth_swap(&e.net, 5, 1, 1_000, 3600).await;
    let nonce = e
        .net
        .provider()
        .get_transaction_count(watched)
        .await
        .unwrap();
    for err in [
        watcher.lock(&mine).await.unwrap_err(),
        watcher.claim(&p, &pre).await.unwrap_err(),
        watcher.refund(&p).await.unwrap_err(),
    ] {
        assert!(!err.is_transient(), "{err}");
        assert_eq!(err.cause, swap_core::Cause::Invalid, "{err}");
    }
    assert_eq!(
        e.net
            .provider()
            .get_transaction_count(watched)
            .await
            .unwrap(),
        nonce
    );
    assert!(format!("{watcher:?}").contains("watch_only: true"));
    // Forgotten, the swap is no longer watched; asked again, it is found afresh.
    assert_eq!(watcher.watched_swaps().await, 1);
    watcher.forget(&p).await;
    assert_eq!(watcher.watched_swaps().await, 0);
    match watcher.htlc_status(&p).await.unwrap() {
        HtlcStatus::Claimed { preimage, .. } => assert_eq!(preimage, pre),
        other => panic!("expected claimed after a re-watch, got {other:?}"),
    }
}
