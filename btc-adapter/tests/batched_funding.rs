//! Concurrent locks are funded together: a few wallet transactions with one output per HTLC
//! instead of one transaction per lock. Every HTLC is funded exactly once with its amount,
//! locking again changes nothing, and callers that give up midway do not cause a second
//! funding.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use swap_core::Finality;

use bitcoin::{ScriptBuf, Transaction, Txid};
use btc_adapter::BtcChain;
use swap_core::{Amount, ChainError, HtlcParams, HtlcStatus, Preimage, Rail, Sats, TxRef};

/// `lock` on every params at once (each in its own task, as the driver runs swaps); the
/// answers in the order of `params`.
async fn lock_all(chain: &Arc<BtcChain>, params: &[HtlcParams]) -> Vec<Result<TxRef, ChainError>> {
    let mut set = tokio::task::JoinSet::new();
    for (i, p) in params.iter().enumerate() {
        let (chain, p) = (chain.clone(), p.clone());
        set.spawn(async move { (i, chain.lock(&p).await) });
    }
    let mut out: Vec<Option<Result<TxRef, ChainError>>> = params.iter().map(|_| None).collect();
    while let Some(joined) = set.join_next().await {
        let (i, r) = joined.unwrap();
        out[i] = Some(r);
    }
    out.into_iter().map(Option::unwrap).collect()
}

async fn distinct_params(env: &common::Env, n: usize) -> Vec<HtlcParams> {
    let mut params = Vec::with_capacity(n);
    for i in 0..n as u64 {
        let s = Preimage::random().unwrap();
        params.push(env.params(1_000_000 + i * 1_000, 60, &s).await);
    }
    params
}

async fn wallet_tx_count(env: &common::Env) -> u64 {
    let info: serde_json::Value = env
        .alice_wallet
        .wallet_call("getwalletinfo", vec![])
        .await
        .unwrap();
    info["txcount"].as_u64().unwrap()
}

/// The transactions of the best block.
async fn tip_block_txs(env: &common::Env) -> Vec<Transaction> {
    let rpc = env.node.rpc();
    let hash = rpc.get_best_block_hash().await.unwrap();
    let block = rpc.get_block_verbose(&hash).await.unwrap();
    btc_adapter::scanner::parse_block_txs(
        &hash.to_string(),
        block.tx.iter().map(|t| (t.txid.as_str(), t.hex.as_str())),
    )
    .unwrap()
}

/// Outputs per HTLC script (with their values) in `txs`.
fn htlc_outputs(
    chain: &BtcChain,
    params: &[HtlcParams],
    txs: &[Transaction],
) -> HashMap<ScriptBuf, Vec<(Txid, u64)>> {
    let scripts: HashSet<ScriptBuf> = params
        .iter()
        .map(|p| chain.htlc(p).unwrap().script_pubkey())
        .collect();
    let mut out: HashMap<ScriptBuf, Vec<(Txid, u64)>> = HashMap::new();
    for tx in txs {
        for o in &tx.output {
            if scripts.contains(&o.script_pubkey) {
                out.entry(o.script_pubkey.clone())
                    .or_default()
                    .push((tx.compute_txid(), o.value.to_sat()));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_locks_share_a_few_funding_transactions() {
    let env = common::env().await;
    // The driver shares one adapter between all its swaps.
    let chain = Arc::new(common::chain_for(&env.node, "alice", 1, common::fees()));
    const N: usize = 40;
    let params = distinct_params(&env, N).await;
    // Three HTLCs are locked twice at once (a retry racing the first call): one output each.
    let calls: Vec<HtlcParams> = params.iter().chain(&params[..3]).cloned().collect();

    let answers = lock_all(&chain, &calls).await;
    let txrefs: Vec<TxRef> = answers
        .into_iter()
        .map(|r| r.expect("every lock succeeds"))
        .collect();
    for i in 0..3 {
        assert_eq!(
            txrefs[N + i],
            txrefs[i],
            "the same HTLC locked twice at once"
        );
    }
    let txids: HashSet<&TxRef> = txrefs.iter().collect();
    println!(
        "{} concurrent locks of {N} HTLCs: {} funding transaction(s)",
        calls.len(),
        txids.len()
    );
    assert!(txids.len() <= 5, "{} funding transactions", txids.len());

    // Each HTLC is paid exactly once, with its exact amount, by the transaction its lock named.
    let mempool = env.node.rpc().get_raw_mempool().await.unwrap();
    assert_eq!(
        mempool.len(),
        txids.len(),
        "only the fundings are in the mempool"
    );
    let mut funding_txs = Vec::new();
    for t in &txids {
        let txid = btc_adapter::chain::txid_of(t).unwrap();
        funding_txs.push(
            env.node
                .rpc()
                .get_raw_transaction(&txid, None)
                .await
                .unwrap(),
        );
    }
    let outputs = htlc_outputs(&chain, &params, &funding_txs);
    assert_eq!(outputs.len(), N);
    for (p, txref) in params.iter().zip(&txrefs) {
        let script = chain.htlc(p).unwrap().script_pubkey();
        let Amount::Sats(Sats(amount)) = p.amount else {
            unreachable!()
        };
        let txid = btc_adapter::chain::txid_of(txref).unwrap();
        assert_eq!(outputs[&script], vec![(txid, amount)]);
    }

    env.node.mine(1).await;
    for (p, txref) in params.iter().zip(&txrefs) {
        match env.bob.htlc_status(p).await.unwrap() {
            HtlcStatus::Funded { lock, finality } => {
                assert_eq!(lock.amount, p.amount);
                assert_eq!(&lock.txref, txref);
                assert_eq!(finality, Finality::confirmations(1));
            }
            other => panic!("expected funded, got {other:?}"),
        }
    }

    // Locking again (all at once) answers the same fundings and sends nothing.
    let balance = env.alice_wallet.get_balance().await.unwrap();
    let tx_count = wallet_tx_count(&env).await;
    let again = lock_all(&chain, &params).await;
    for (r, txref) in again.into_iter().zip(&txrefs) {
        assert_eq!(&r.unwrap(), txref);
    }
    assert_eq!(env.alice_wallet.get_balance().await.unwrap(), balance);
    assert_eq!(wallet_tx_count(&env).await, tx_count);
    assert!(env.node.rpc().get_raw_mempool().await.unwrap().is_empty());
    println!("locking the {N} funded HTLCs again: same txids, wallet unchanged ({tx_count} txs)");

    // An output the wallet refuses (dust) fails its own lock only: the batch it was in is
    // funded output by output instead.
    let mut params = distinct_params(&env, 6).await;
    params[3].amount = Amount::Sats(Sats(100));
    let answers = lock_all(&chain, &params).await;
    for (i, r) in answers.iter().enumerate() {
        match (i, r) {
            (3, Err(e)) => assert!(!e.is_transient(), "{e}"),
            (3, Ok(t)) => panic!("a dust lock was funded: {t}"),
            (_, r) => assert!(r.is_ok(), "lock {i}: {r:?}"),
        }
    }
    env.node.mine(1).await;
    for (i, p) in params.iter().enumerate() {
        let status = env.bob.htlc_status(p).await.unwrap();
        if i == 3 {
            assert_eq!(status, HtlcStatus::Absent);
        } else {
            assert_eq!(common::confirmations(&status), Some(1));
        }
    }
}

/// How many `method` calls the adapter has made.
fn calls(chain: &BtcChain, method: &str) -> u64 {
    chain
        .rpc()
        .counts_by_method()
        .get(method)
        .copied()
        .unwrap_or(0)
}

/// Starts a lock for each params (each in its own task), waits until the adapter makes its
/// next `trigger` call (`None`: not at all) and drops every other lock at that moment; returns
/// how many locks succeeded, failed (transiently) and were cancelled.
async fn lock_and_cancel_half(
    chain: &Arc<BtcChain>,
    params: &[HtlcParams],
    trigger: Option<&str>,
) -> (usize, usize, usize) {
    let before = trigger.map(|m| calls(chain, m));
    let mut handles = Vec::new();
    for p in params {
        let (chain, p) = (chain.clone(), p.clone());
        handles.push(tokio::spawn(async move { chain.lock(&p).await }));
    }
    if let (Some(method), Some(before)) = (trigger, before) {
        let started = Instant::now();
        while calls(chain, method) == before {
            assert!(started.elapsed() < Duration::from_secs(30), "no {method}");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    for h in handles.iter().step_by(2) {
        h.abort();
    }
    let (mut funded, mut interrupted, mut cancelled) = (0, 0, 0);
    for (i, h) in handles.into_iter().enumerate() {
        match h.await {
            Ok(Ok(_)) => funded += 1,
            Ok(Err(e)) => {
                // Only a lock whose leader was dropped mid-batch fails, and only transiently.
                assert!(e.is_transient(), "lock {i}: {e}");
                interrupted += 1;
            }
            Err(e) => {
                assert!(e.is_cancelled());
                cancelled += 1;
            }
        }
    }
    (funded, interrupted, cancelled)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_locks_never_fund_twice() {
    let env = common::env().await;
    let chain = Arc::new(common::chain_for(&env.node, "alice", 1, common::fees()));
    const N: usize = 12;
    let mut interrupted_total = 0;
    // Every other lock is dropped right away (callers still queued), or while the batch
    // leader is in one of its wallet calls (if the leader is among them, its followers fail
    // transiently, and whether the funding went out depends on how far it got).
    let triggers = [
        None,
        Some("walletcreatefundedpsbt"),
        Some("walletprocesspsbt"),
        Some("finalizepsbt"),
        Some("sendrawtransaction"),
    ];
    for trigger in triggers.into_iter().chain(triggers) {
        let params = distinct_params(&env, N).await;
        let (funded, interrupted, cancelled) = lock_and_cancel_half(&chain, &params, trigger).await;
        interrupted_total += interrupted;
        // The driver retries: every HTLC ends up funded, each exactly once.
        let answers = lock_all(&chain, &params).await;
        let txrefs: Vec<TxRef> = answers.into_iter().map(Result::unwrap).collect();
        let distinct: HashSet<&TxRef> = txrefs.iter().collect();
        println!(
            "cancelled at {}: {funded} funded, {interrupted} interrupted, {cancelled} \
             cancelled; after the retry {} funding transaction(s)",
            trigger.unwrap_or("once started"),
            distinct.len()
        );
        env.node.mine(1).await;
        assert!(env.node.rpc().get_raw_mempool().await.unwrap().is_empty());
        let outputs = htlc_outputs(&chain, &params, &tip_block_txs(&env).await);
        for (p, txref) in params.iter().zip(&txrefs) {
            let script = chain.htlc(p).unwrap().script_pubkey();
            let Amount::Sats(Sats(amount)) = p.amount else {
                unreachable!()
            };
            let txid = btc_adapter::chain::txid_of(txref).unwrap();
            assert_eq!(
                outputs.get(&script),
                Some(&vec![(txid, amount)]),
                "HTLC {} funded exactly once",
                p.swap_id
            );
        }
    }
    println!("{interrupted_total} locks interrupted by a cancelled leader in all");
}
