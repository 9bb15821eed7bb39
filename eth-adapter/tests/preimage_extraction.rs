//! The preimage revealed by a claim sent straight to the contract (by a third party) is
//! extracted from the chain by the sender's adapter; the recipient is paid.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use crate::common;

use alloy::network::EthereumWallet;
use alloy::primitives::{B256, U256};
use alloy::providers::ProviderBuilder;
use eth_adapter::bindings::HTLC;
use eth_adapter::EthHtlc;
use swap_core::rail::{HtlcStatus, Rail};

#[tokio::test]
async fn sender_learns_preimage_from_third_party_claim() {
    let e = common::env().await;
    let (p, pre) = common::eth_swap(&e.net, 0, 1, 5 * 10u128.pow(17), 3600).await;
    e.alice.lock(&p).await.unwrap();

    // Account 2 claims for Bob with a hand-made contract call.
    let h = EthHtlc::from_params(&p).unwrap();
    let carol = ProviderBuilder::new()
        .wallet(EthereumWallet::from(e.net.signer(2)))
        .connect_http(e.net.url().parse().unwrap());
    let htlc = HTLC::new(e.htlc, &carol);
    let bob_before = common::balance(&e.net, e.net.address(1)).await;
    let receipt = htlc
        .claim(
            B256::from(*pre.as_bytes()),
            h.amount,
            h.sender,
            h.recipient,
            U256::from(h.expiry),
        )
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(receipt.status());
    let bob_after = common::balance(&e.net, e.net.address(1)).await;
    assert_eq!(
        bob_after - bob_before,
        h.amount,
        "claim pays the recipient, not the caller"
    );

    match e.alice.htlc_status(&p).await.unwrap() {
        HtlcStatus::Claimed {
            preimage, txref, ..
        } => {
            assert_eq!(preimage, pre);
            assert_eq!(txref.0, format!("{:#x}", receipt.transaction_hash));
        }
        other => panic!("expected claimed, got {other:?}"),
    }
    // Bob's own claim now is success (already claimed), not a failure.
    let t = e.bob.claim(&p, &pre).await.unwrap();
    assert_eq!(t.0, format!("{:#x}", receipt.transaction_hash));
}
