//! ERC-20 swaps through the adapter: a USDT-style token (approve path) claimed, an EIP-2612
//! token (permit path) refunded, and a DAI-style token (its own `permit`) locked by `approve`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use crate::common;

use alloy::network::EthereumWallet;
use alloy::primitives::U256;
use alloy::providers::ProviderBuilder;
use devnet::test_contracts::{DaiStyleToken, NoBoolToken, TestToken};
use swap_core::rail::{HtlcStatus, Rail};

#[tokio::test]
async fn erc20_claim_and_refund_through_the_adapter() {
    let e = common::env().await;
    // Account 2 deploys and mints (its provider caches nonces; account 0 is the adapter's).
    let p0 = ProviderBuilder::new()
        .wallet(EthereumWallet::from(e.net.signer(2)))
        .connect_http(e.net.url().parse().unwrap());
    let usdt = NoBoolToken::deploy(&p0).await.unwrap();
    usdt.mint(e.net.address(0), U256::from(5_000_000u64))
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let (p, pre) = common::token_swap(&e.net, *usdt.address(), 6, 0, 1, 1_234_567, 3600).await;
    let lock_tx = e.alice.lock(&p).await.unwrap();
    assert_eq!(e.alice.lock(&p).await.unwrap(), lock_tx);
    match e.bob.htlc_status(&p).await.unwrap() {
        HtlcStatus::Funded { lock, .. } => assert_eq!(lock.amount, p.amount),
        other => panic!("expected funded, got {other:?}"),
    }
    e.bob.claim(&p, &pre).await.unwrap();
    assert_eq!(
        usdt.balanceOf(e.net.address(1)).call().await.unwrap(),
        U256::from(1_234_567u64)
    );
    match e.alice.htlc_status(&p).await.unwrap() {
        HtlcStatus::Claimed { preimage, .. } => assert_eq!(preimage, pre),
        other => panic!("expected claimed, got {other:?}"),
    }

    let tok = TestToken::deploy(&p0, "Permit".into(), 18).await.unwrap();
    tok.mint(e.net.address(0), U256::from(10u64.pow(18)))
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let (p, _) = common::token_swap(&e.net, *tok.address(), 18, 0, 1, 10u128.pow(17), 100).await;
    e.alice.lock(&p).await.unwrap();
    let early = e.alice.refund(&p).await.unwrap_err();
    assert!(early.is_transient(), "{early}");
    assert!(
        matches!(early.cause, swap_core::Cause::NotReady { .. }),
        "{early:?}"
    );
    e.net.advance_time(101).await;
    let before = tok.balanceOf(e.net.address(0)).call().await.unwrap();
    let tx = e.alice.refund(&p).await.unwrap();
    assert_eq!(e.alice.refund(&p).await.unwrap(), tx);
    assert_eq!(
        tok.balanceOf(e.net.address(0)).call().await.unwrap() - before,
        U256::from(10u64.pow(17))
    );
}

#[tokio::test]
async fn wrong_decimals_are_refused() {
    let e = common::env().await;
    let p2 = ProviderBuilder::new()
        .wallet(EthereumWallet::from(e.net.signer(2)))
        .connect_http(e.net.url().parse().unwrap());
    let tok = TestToken::deploy(&p2, "Six".into(), 6).await.unwrap();
    // Terms that claim 18 decimals for a 6-decimals token: 10^12 times off.
    let (p, _) = common::token_swap(&e.net, *tok.address(), 18, 0, 1, 1_000, 3600).await;
    let err = e.alice.lock(&p).await.unwrap_err();
    assert!(!err.is_transient(), "{err}");
    assert!(err.message.contains("decimals"), "{err}");
    let err = e.bob.htlc_status(&p).await.unwrap_err();
    assert!(err.message.contains("decimals"), "{err}");
}

/// Rails issue, 7a: a token with `nonces()` and `DOMAIN_SEPARATOR()` but DAI's `permit`
/// signature used to fail to lock (the permit failed silently, then the transfer). The adapter
/// now tries the permit first and falls back to `approve`; the swap locks and is claimed.
#[tokio::test]
async fn a_dai_style_permit_falls_back_to_approve() {
    let e = common::env().await;
    let p2 = ProviderBuilder::new()
        .wallet(EthereumWallet::from(e.net.signer(2)))
        .connect_http(e.net.url().parse().unwrap());
    let dai = DaiStyleToken::deploy(&p2).await.unwrap();
    dai.mint(e.net.address(0), U256::from(10u64.pow(18)))
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let (p, pre) = common::token_swap(&e.net, *dai.address(), 18, 0, 1, 10u128.pow(17), 3600).await;
    let tx = e.alice.lock(&p).await.unwrap();
    assert_eq!(e.alice.lock(&p).await.unwrap(), tx, "never locked twice");
    match e.bob.htlc_status(&p).await.unwrap() {
        HtlcStatus::Funded { lock, .. } => assert_eq!(lock.amount, p.amount),
        other => panic!("expected funded, got {other:?}"),
    }
    e.bob.claim(&p, &pre).await.unwrap();
    assert_eq!(
        dai.balanceOf(e.net.address(1)).call().await.unwrap(),
        U256::from(10u64.pow(17))
    );
}
