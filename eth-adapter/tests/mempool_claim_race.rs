//! A claim waiting in the mempool reveals the preimage to `htlc_status` (0 confirmations), but
//! is never taken as done by `claim`: the recipient still sends its own claim, and when that
//! one reverts because the other claim was mined first, the swap is claimed all the same and
//! `claim` reports the winning transaction.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use crate::common;

use std::sync::Arc;
use std::time::Duration;
use swap_core::Finality;

use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::primitives::{B256, U256};
use alloy::providers::{Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use alloy::sol_types::SolCall;
use eth_adapter::bindings::HTLC;
use eth_adapter::EthHtlc;
use serde_json::json;
use swap_core::rail::{HtlcStatus, Rail};

#[tokio::test]
async fn pending_claim_reveals_preimage_and_race_resolves() {
    let e = common::env().await;
    let (p, pre) = common::eth_swap(&e.net, 0, 1, 10u128.pow(17), 3600).await;
    e.alice.lock(&p).await.unwrap();
    e.net.rpc("evm_setAutomine", json!([false])).await;

    // Carol (account 2) claims for Bob with a high priority fee; it waits in the mempool.
    let h = EthHtlc::from_params(&p).unwrap();
    let call = HTLC::claimCall {
        preimage: B256::from(*pre.as_bytes()),
        amount: h.amount,
        sender: h.sender,
        recipient: h.recipient,
        expiry: U256::from(h.expiry),
    };
    let carol = ProviderBuilder::new()
        .wallet(EthereumWallet::from(e.net.signer(2)))
        .connect_http(e.net.url().parse().unwrap());
    let tx = TransactionRequest::default()
        .with_to(e.htlc)
        .with_input(call.abi_encode())
        .with_gas_limit(200_000)
        .with_max_fee_per_gas(100_000_000_000)
        .with_max_priority_fee_per_gas(50_000_000_000);
    let carol_tx = *carol.send_transaction(tx).await.unwrap().tx_hash();

    match e.alice.htlc_status(&p).await.unwrap() {
        HtlcStatus::Claimed {
            preimage,
            txref,
            finality,
        } => {
            assert_eq!(preimage, pre);
            assert_eq!(txref.0, format!("{carol_tx:#x}"));
            assert_eq!(finality, Finality::confirmations(0));
        }
        other => panic!("expected a pending claim, got {other:?}"),
    }

    // Bob's claim does not trust the pending claim: it sends its own.
    let bob = Arc::new(e.bob);
    let bob_nonce = e
        .net
        .provider()
        .get_transaction_count(e.net.address(1))
        .await
        .unwrap();
    let task = {
        let (b, p, pre) = (bob.clone(), p.clone(), pre.clone());
        tokio::spawn(async move { b.claim(&p, &pre).await })
    };
    for _ in 0..200 {
        let pending: serde_json::Value = e.net.rpc("txpool_status", json!([])).await;
        if pending["pending"].as_str() == Some("0x2") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Both in one block: Carol's (higher tip) first, Bob's reverts.
    e.net.mine(1).await;
    let won = task.await.unwrap().unwrap();
    assert_eq!(
        won.0,
        format!("{carol_tx:#x}"),
        "the mined claim is reported"
    );
    assert_eq!(
        e.net
            .provider()
            .get_transaction_count(e.net.address(1))
            .await
            .unwrap(),
        bob_nonce + 1,
        "Bob's own claim was sent (and reverted)"
    );
    match e.alice.htlc_status(&p).await.unwrap() {
        HtlcStatus::Claimed {
            preimage, finality, ..
        } => {
            assert_eq!(preimage, pre);
            assert_eq!(finality, Finality::confirmations(1));
        }
        other => panic!("expected claimed, got {other:?}"),
    }
}
