//! The regtest harness itself: start, wallet, CLTV-active height, mine, reorg, restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use devnet::regtest::{NodeKind, RegtestNode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harness_starts_mines_reorgs_and_restarts() {
    let mut node = RegtestNode::start().await;
    let h = node.height().await;
    if node.kind() == NodeKind::Litecoind {
        assert!(h > 1351, "CLTV must be active, height {h}");
    }
    assert!(node.rpc().get_balance().await.unwrap() > 100_000_000);
    // The MWEB peg-in block (432 on litecoind) parses except for its HogEx.
    for height in 430..435u64.min(h) {
        let hash = node.rpc().get_block_hash(height).await.unwrap();
        let b = node.rpc().get_block_verbose(&hash).await.unwrap();
        btc_adapter::scanner::parse_block_txs(
            &hash.to_string(),
            b.tx.iter().map(|t| (t.txid.as_str(), t.hex.as_str())),
        )
        .unwrap_or_else(|e| panic!("block {height}: {e}"));
    }
    let hashes = node.mine(3).await;
    assert_eq!(node.height().await, h + 3);
    let new = node.reorg(2).await;
    assert_eq!(node.height().await, h + 3);
    assert_eq!(new.len(), 2);
    assert_eq!(node.rpc().get_block_hash(h + 1).await.unwrap(), hashes[0]);
    assert_ne!(node.rpc().get_block_hash(h + 2).await.unwrap(), hashes[1]);
    let block = node
        .rpc()
        .get_block_verbose(&node.rpc().get_block_hash(h + 3).await.unwrap())
        .await
        .unwrap();
    // Every block parses; on litecoind only the HogEx (last) is skipped.
    let txs = btc_adapter::scanner::parse_block_txs(
        "tip",
        block.tx.iter().map(|t| (t.txid.as_str(), t.hex.as_str())),
    )
    .unwrap();
    let skipped = if node.kind() == NodeKind::Litecoind {
        1
    } else {
        0
    };
    assert_eq!(txs.len() + skipped, block.tx.len());

    // The node derives the same address from our descriptor.
    let k = |b: u8| {
        btc_adapter::SwapKey::from_secret(
            bitcoin::secp256k1::SecretKey::from_slice(&[b; 32]).unwrap(),
        )
        .public_key()
    };
    let htlc = btc_adapter::Htlc::new(k(1), k(2), [5; 32], h + 100).unwrap();
    let ours = htlc.address(node.chain_id()).unwrap();
    match node
        .rpc()
        .call::<Vec<String>>(
            "deriveaddresses",
            vec![serde_json::json!(htlc.descriptor_string())],
        )
        .await
    {
        Ok(derived) => assert_eq!(derived, vec![ours]),
        // Core 0.21 (litecoind) has no miniscript descriptors: ask for the P2WSH of the script.
        Err(e) if e.code() == Some(-5) => {
            let v: serde_json::Value = node
                .rpc()
                .call(
                    "decodescript",
                    vec![serde_json::json!(htlc.witness_script().to_hex_string())],
                )
                .await
                .unwrap();
            // 0.21 answers `addresses: [..]`, later versions `address`.
            let addr = v["segwit"]["address"]
                .as_str()
                .or_else(|| v["segwit"]["addresses"][0].as_str());
            assert_eq!(addr, Some(ours.as_str()), "{v}");
        }
        Err(e) => panic!("{e}"),
    }
    // Batched mempool reads: one answer per txid, errors per item.
    let addr = node.rpc().get_new_address("bech32").await.unwrap();
    let sent = node.send(&addr, 1_000_000).await;
    let bogus: bitcoin::Txid = bitcoin::hashes::Hash::from_byte_array([7; 32]);
    let answers = node
        .rpc()
        .get_raw_transactions_hex(&[sent, bogus])
        .await
        .unwrap();
    assert_eq!(answers.len(), 2);
    let tx: bitcoin::Transaction =
        bitcoin::consensus::encode::deserialize_hex(answers[0].as_ref().unwrap()).unwrap();
    assert_eq!(tx.compute_txid(), sent);
    assert_eq!(answers[1].as_ref().unwrap_err().code(), Some(-5));
    node.mine(1).await;

    // Wrong credentials: a permanent error, not a retry loop.
    let mut bad = node.rpc_config(None);
    bad.auth = btc_adapter::rpc::Auth::UserPass("nobody".into(), "wrong".into());
    let err = btc_adapter::rpc::RpcClient::new(bad)
        .unwrap()
        .get_block_count()
        .await
        .unwrap_err();
    assert!(!err.is_transient(), "{err}");
    // A user/password client works where the cookie's credentials are given explicitly.
    let cookie = std::fs::read_to_string(node.datadir().join("regtest/.cookie")).unwrap();
    let (user, pass) = cookie.trim().split_once(':').unwrap();
    let mut good = node.rpc_config(None);
    good.auth = btc_adapter::rpc::Auth::UserPass(user.into(), pass.into());
    let client = btc_adapter::rpc::RpcClient::new(good).unwrap();
    assert_eq!(client.get_block_count().await.unwrap(), h + 4);

    node.restart().await;
    assert_eq!(node.height().await, h + 4);
    node.mine(1).await;
    assert_eq!(node.height().await, h + 5);
}
