//! One round's locks are funded together: one wallet transaction with one output per HTLC.
//! Every funding is recorded in the outbox before its broadcast, so every HTLC is funded exactly
//! once with its amount: locking again changes nothing, and neither callers that give up midway,
//! a crash between the outbox steps, nor a second process on the same store fund one twice.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use swap_core::Finality;

use bitcoin::{ScriptBuf, Transaction, Txid};
use btc_adapter::BtcChain;
use swap_core::{Amount, ChainError, HtlcParams, HtlcStatus, Preimage, Rail, RailOp, Sats, TxRef};

/// `lock` on every params at once, each in its own task (as a library user may call it); the
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

fn locks(params: &[HtlcParams]) -> Vec<RailOp> {
    params.iter().cloned().map(RailOp::Lock).collect()
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
async fn a_round_of_locks_is_one_funding_transaction() {
    let env = common::env().await;
    // The driver shares one adapter between all its swaps and hands it a round's locks at once.
    let chain = Arc::new(common::chain_for(&env.node, "alice", 1, common::fees()));
    const N: usize = 40;
    let params = distinct_params(&env, N).await;
    // Three HTLCs are asked twice in the round: one output each.
    let calls: Vec<HtlcParams> = params.iter().chain(&params[..3]).cloned().collect();

    let answers = chain.execute(&locks(&calls)).await;
    let txrefs: Vec<TxRef> = answers
        .into_iter()
        .map(|r| r.expect("every lock succeeds"))
        .collect();
    for i in 0..3 {
        assert_eq!(txrefs[N + i], txrefs[i], "the same HTLC asked twice");
    }
    let txids: HashSet<&TxRef> = txrefs.iter().collect();
    println!(
        "{} locks of {N} HTLCs in one round: {} funding transaction(s)",
        calls.len(),
        txids.len()
    );
    assert_eq!(txids.len(), 1, "{} funding transactions", txids.len());

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

    // Locking again (one by one, concurrently) answers the same fundings and sends nothing.
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
    let answers = chain.execute(&locks(&params)).await;
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

    // Single locks from many tasks at once (a retry racing the first call): every HTLC funded
    // exactly once, and the locks asked while the first round ran go out together in the next
    // (16 calls, a round each, would make 8 fundings).
    let params = distinct_params(&env, 8).await;
    let calls: Vec<HtlcParams> = params.iter().chain(&params).cloned().collect();
    let answers = lock_all(&chain, &calls).await;
    env.node.mine(1).await;
    let block = tip_block_txs(&env).await;
    let outputs = htlc_outputs(&chain, &params, &block);
    let fundings: HashSet<Txid> = outputs.values().flatten().map(|(t, _)| *t).collect();
    println!(
        "16 single locks of 8 HTLCs from 16 tasks: {} funding transaction(s)",
        fundings.len()
    );
    assert!(
        fundings.len() <= 3,
        "{} fundings: the locks asked during a round were not taken together",
        fundings.len()
    );
    for (i, p) in params.iter().enumerate() {
        let script = chain.htlc(p).unwrap().script_pubkey();
        let paid = &outputs[&script];
        assert_eq!(paid.len(), 1, "HTLC {i} funded once");
        for answer in [&answers[i], &answers[i + 8]] {
            match answer {
                Ok(t) => assert_eq!(btc_adapter::chain::txid_of(t).unwrap(), paid[0].0),
                Err(e) => assert!(e.is_transient(), "{e}"),
            }
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

/// Runs `fut` until `chain` starts its next `method` call, then stops it right there (checked
/// after every poll, so the call's answer is never processed). `crash`: the future is leaked,
/// not dropped (no destructor runs, as when the process is killed); otherwise it is dropped (a
/// caller that gave up). Returns its answer if it finished without that call.
async fn stop_at<F: std::future::Future>(
    chain: &BtcChain,
    method: &str,
    fut: F,
    crash: bool,
) -> Option<F::Output> {
    let before = calls(chain, method);
    let mut fut = Box::pin(fut);
    let stopped = std::future::poll_fn(|cx| match fut.as_mut().poll(cx) {
        // The step's call was made and answered within one poll (a fast node): for a crash,
        // the process dies right after that step, its answer unseen.
        std::task::Poll::Ready(_) if crash && calls(chain, method) > before => {
            std::task::Poll::Ready(None)
        }
        std::task::Poll::Ready(out) => std::task::Poll::Ready(Some(out)),
        std::task::Poll::Pending if calls(chain, method) > before => std::task::Poll::Ready(None),
        std::task::Poll::Pending => std::task::Poll::Pending,
    });
    let out = tokio::time::timeout(Duration::from_secs(30), stopped)
        .await
        .unwrap_or_else(|_| panic!("no {method}"));
    if out.is_none() && crash {
        std::mem::forget(fut);
    }
    out
}

/// Locks `params` with `chain` until every answer is a success (the driver's next rounds);
/// only transient errors are allowed on the way.
async fn lock_until_funded(chain: &BtcChain, params: &[HtlcParams]) -> Vec<TxRef> {
    let started = Instant::now();
    loop {
        let answers = chain.execute(&locks(params)).await;
        if answers.iter().all(Result::is_ok) {
            return answers.into_iter().map(Result::unwrap).collect();
        }
        for a in &answers {
            if let Err(e) = a {
                assert!(e.is_transient(), "{e}");
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "never funded: {answers:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Mines the fundings and checks that each HTLC of `params` is paid exactly once, with its
/// amount, by the transaction its lock named.
async fn funded_exactly_once(
    env: &common::Env,
    chain: &BtcChain,
    params: &[HtlcParams],
    txrefs: &[TxRef],
) {
    env.node.mine(1).await;
    assert!(env.node.rpc().get_raw_mempool().await.unwrap().is_empty());
    let outputs = htlc_outputs(chain, params, &tip_block_txs(env).await);
    for (p, txref) in params.iter().zip(txrefs) {
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

/// An adapter ("a process") on the alice wallet recording its fundings in the store at `path`.
fn process(env: &common::Env, path: &std::path::Path) -> BtcChain {
    process_on(
        env,
        Arc::new(swap_core::store::SqliteStore::open(path).unwrap()),
    )
}

/// An adapter on the alice wallet recording its fundings in `outbox`.
fn process_on(env: &common::Env, outbox: Arc<dyn swap_core::store::Outbox>) -> BtcChain {
    let mut rpc = env.node.rpc_config(Some("alice"));
    rpc.timeout = Duration::from_secs(10);
    let mut config = btc_adapter::BtcConfig::new(env.node.chain_id(), rpc);
    config.fees = common::fees();
    BtcChain::new(config, &[1; 32]).unwrap().with_outbox(outbox)
}

/// The store of a process the test kills by leaking its round's future: the same records, but
/// no spend guard. A killed process's guard ends with it (its file lock and its database
/// session); a leaked future would hold this process's guard for ever instead.
struct Killed(swap_core::store::SqliteStore);

#[async_trait::async_trait]
impl swap_core::store::Outbox for Killed {
    async fn signed(
        &self,
        key: &swap_core::store::SendKey,
    ) -> Result<Option<swap_core::store::SignedTx>, swap_core::StoreError> {
        self.0.signed(key).await
    }
    async fn record_signed(
        &self,
        keys: &[swap_core::store::SendKey],
        tx: &swap_core::store::SignedTx,
    ) -> Result<(), swap_core::StoreError> {
        self.0.record_signed(keys, tx).await
    }
    async fn record_each(
        &self,
        items: &[(swap_core::store::SendKey, swap_core::store::SignedTx)],
    ) -> Result<Vec<swap_core::store::SendKey>, swap_core::StoreError> {
        self.0.record_each(items).await
    }
    async fn discard(
        &self,
        keys: &[swap_core::store::SendKey],
        txref: &TxRef,
    ) -> Result<usize, swap_core::StoreError> {
        self.0.discard(keys, txref).await
    }
    async fn spend_guard(
        &self,
        _wallet: &str,
    ) -> Result<swap_core::store::SpendGuard, swap_core::StoreError> {
        Ok(swap_core::store::SpendGuard::new(()))
    }
}

/// [`process`] for a process the test kills (see [`Killed`]).
fn killed_process(env: &common::Env, path: &std::path::Path) -> BtcChain {
    let store = swap_core::store::SqliteStore::open(path).unwrap();
    process_on(env, Arc::new(Killed(store)))
}

const STEPS: [&str; 4] = [
    "walletcreatefundedpsbt",
    "walletprocesspsbt",
    "finalizepsbt",
    "sendrawtransaction",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_funding_twice_across_crashes_cancels_and_processes() {
    let env = common::env().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("swaps.sqlite");
    const N: usize = 6;

    // A process killed at each step of a funding round; another process on the same store
    // goes on at once: it funds anew when the dead one recorded nothing, and broadcasts the
    // dead one's funding when it had recorded it.
    for step in STEPS {
        let params = distinct_params(&env, N).await;
        let dead = killed_process(&env, &path);
        let ops = locks(&params);
        assert!(stop_at(&dead, step, dead.execute(&ops), true)
            .await
            .is_none());
        let other = process(&env, &path);
        let txrefs = lock_until_funded(&other, &params).await;
        println!(
            "killed at {step}: the other process funded with {} transaction(s)",
            txrefs.iter().collect::<HashSet<_>>().len()
        );
        funded_exactly_once(&env, &other, &params, &txrefs).await;
    }

    // Two processes locking the same HTLCs at the same time.
    let (a, b) = (process(&env, &path), process(&env, &path));
    let params = distinct_params(&env, N).await;
    let ops = locks(&params);
    let (ra, rb) = tokio::join!(a.execute(&ops), b.execute(&ops));
    for (x, y) in ra.iter().zip(&rb) {
        for r in [x, y] {
            if let Err(e) = r {
                assert!(e.is_transient(), "{e}");
            }
        }
        if let (Ok(x), Ok(y)) = (x, y) {
            assert_eq!(x, y, "both processes answer the one funding");
        }
    }
    let txrefs = lock_until_funded(&b, &params).await;
    funded_exactly_once(&env, &b, &params, &txrefs).await;

    // A caller that gives up at each step (its future dropped): the next round funds at once.
    let slow = process(&env, &path);
    for step in STEPS {
        // The round is dropped once it has made the call; on a loaded machine the call's
        // answer can already be there at the next poll and the round ends first: then again
        // with other HTLCs (those are funded: the round finished).
        let mut tries = 0;
        let params = loop {
            let params = distinct_params(&env, N).await;
            let ops = locks(&params);
            if stop_at(&slow, step, slow.execute(&ops), false)
                .await
                .is_none()
            {
                break params;
            }
            tries += 1;
            assert!(
                tries < 5,
                "the round at {step} always finished before it could be dropped"
            );
        };
        let started = Instant::now();
        let txrefs = lock_until_funded(&slow, &params).await;
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the dropped round's claims block the next"
        );
        println!("cancelled at {step}: funded by the next round");
        funded_exactly_once(&env, &slow, &params, &txrefs).await;
    }
}

/// Fundings of processes on one wallet never choose the same coins: a funding round waits,
/// before asking the wallet for coins, while another holds the store's spend guard of the
/// wallet (here the test holds it, as a process between its choice of coins and its broadcast
/// would), and goes on once it is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_funding_waits_for_the_wallets_spend_guard() {
    use swap_core::store::Outbox;
    let env = common::env().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("swaps.sqlite");
    let chain = Arc::new(process(&env, &path));
    let other_process = swap_core::store::SqliteStore::open(&path).unwrap();
    let guard = other_process
        .spend_guard(&chain.spend_guard_name())
        .await
        .unwrap();
    let params = distinct_params(&env, 2).await;
    let round = {
        let chain = Arc::clone(&chain);
        let ops = locks(&params);
        tokio::spawn(async move { chain.execute(&ops).await })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        calls(&chain, "walletcreatefundedpsbt"),
        0,
        "no coins chosen while another holds the guard"
    );
    assert!(!round.is_finished());
    drop(guard);
    let answers = tokio::time::timeout(Duration::from_secs(30), round)
        .await
        .expect("the round goes on once the guard is released")
        .unwrap();
    let txrefs: Vec<TxRef> = answers.into_iter().map(Result::unwrap).collect();
    funded_exactly_once(&env, &chain, &params, &txrefs).await;
}

/// Rails issue, item 3: a funding recorded but never broadcast (the process died) must never be
/// mined after its swap gave up. `cancel_lock` spends one of its inputs back to the wallet and
/// answers `Ok` only once that is as deep as a lock must be; the funding is then refused for
/// good, and the other locks it carried can be funded anew.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_funding_that_never_got_out_is_cancelled_for_good() {
    let env = common::env().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("swaps.sqlite");
    let params = distinct_params(&env, 3).await;
    let other = process(&env, &path);
    // What a process that died between recording its funding and broadcasting it leaves: a
    // signed funding of the three HTLCs in the outbox, which no node has seen.
    let funding = record_unsent_funding(&env, &other, &path, &params).await;
    assert!(env.node.rpc().get_raw_mempool().await.unwrap().is_empty());

    // Cancel: sent, then not final before it is as deep as a lock must be.
    let cancel = |p: &HtlcParams| {
        let op = [RailOp::CancelLock(p.clone())];
        let other = &other;
        async move { other.execute(&op).await }
    };
    let mut blocks = 0;
    let cancelled = loop {
        match cancel(&params[0]).await.pop().unwrap() {
            Ok(t) => break t,
            Err(e) => {
                assert!(matches!(e.cause, swap_core::Cause::NotReady { .. }), "{e}");
                assert!(blocks < 10, "never final: {e}");
                env.node.mine(1).await;
                blocks += 1;
            }
        }
    };
    assert!(!cancelled.0.is_empty());
    assert!(blocks >= 1, "final before it was mined");
    println!("funding cancelled by {cancelled} after {blocks} block(s)");
    // The cancel spends an input of the funding back to the wallet.
    let txs = tip_block_txs(&env).await;
    let all_mined: Vec<Transaction> = {
        let mut v = txs;
        for back in 1..blocks {
            let h = env.node.height().await - back;
            let hash = env.node.rpc().get_block_hash(h).await.unwrap();
            let b = env.node.rpc().get_block_verbose(&hash).await.unwrap();
            v.extend(
                btc_adapter::scanner::parse_block_txs(
                    &hash.to_string(),
                    b.tx.iter().map(|t| (t.txid.as_str(), t.hex.as_str())),
                )
                .unwrap(),
            );
        }
        v
    };
    let c = all_mined
        .iter()
        .find(|t| t.compute_txid().to_string() == cancelled.0)
        .expect("cancel mined");
    assert!(c.input.iter().any(|i| funding
        .input
        .iter()
        .any(|f| f.previous_output == i.previous_output)));
    // The funding can never be mined now.
    let again = env.node.rpc().send_raw_transaction(&funding).await;
    assert!(again.is_err(), "the cancelled funding was accepted again");
    // Idempotent; the other locks the funding carried are dead with it (nothing to send) and
    // can be funded anew, exactly once.
    assert_eq!(cancel(&params[0]).await.pop().unwrap().unwrap().0, "");
    assert_eq!(cancel(&params[1]).await.pop().unwrap().unwrap().0, "");
    assert_eq!(cancel(&params[2]).await.pop().unwrap().unwrap().0, "");
    let txrefs = lock_until_funded(&other, &params[1..]).await;
    assert_ne!(
        btc_adapter::chain::txid_of(&txrefs[0]).unwrap(),
        funding.compute_txid()
    );
    funded_exactly_once(&env, &other, &params[1..], &txrefs).await;
    // A mined lock is not cancelled: it is refunded.
    let e = cancel(&params[2]).await.pop().unwrap().unwrap_err();
    assert_eq!(e.cause, swap_core::Cause::AlreadySpent, "{e}");
    // An HTLC never locked: nothing to cancel.
    let never = distinct_params(&env, 1).await;
    assert_eq!(cancel(&never[0]).await.pop().unwrap().unwrap().0, "");
}

/// What a process that died between recording a funding of `params` and broadcasting it
/// leaves behind: the signed funding in the outbox of the store at `path`, which no node has
/// seen.
async fn record_unsent_funding(
    env: &common::Env,
    chain: &BtcChain,
    path: &std::path::Path,
    params: &[HtlcParams],
) -> Transaction {
    use swap_core::store::{Outbox, SendKey};
    let pay: Vec<(String, u64)> = params
        .iter()
        .map(|p| {
            let Amount::Sats(Sats(sats)) = p.amount else {
                unreachable!()
            };
            (chain.htlc_address(p).unwrap(), sats)
        })
        .collect();
    let pay: Vec<(&str, u64)> = pay.iter().map(|(a, s)| (a.as_str(), *s)).collect();
    let w = &env.alice_wallet;
    let psbt = w.wallet_create_funded_psbt(&pay, 2).await.unwrap();
    let psbt = w.wallet_process_psbt(&psbt).await.unwrap();
    let funding = w.finalize_psbt(&psbt).await.unwrap();
    let recorded = swap_core::store::SignedTx {
        txref: TxRef(funding.compute_txid().to_string()),
        raw: bitcoin::consensus::serialize(&funding),
    };
    let store = swap_core::store::SqliteStore::open(path).unwrap();
    let keys: Vec<SendKey> = params
        .iter()
        .map(|p| SendKey {
            swap: p.swap_id,
            rail: chain.params().rail(),
            kind: swap_core::TxKind::Lock,
        })
        .collect();
    store.record_signed(&keys, &recorded).await.unwrap();
    funding
}

/// A funding recorded by a process that died before its broadcast, whose coins another process
/// on the same wallet spent meanwhile, can never be mined once that spend is mined: once a
/// lock's depth of blocks came after the tip at which the spend was first seen mined, the
/// locks it carried are funded anew, exactly once, each when it is asked. Before (the spend
/// only in the mempool: refused; mined, but too recently: not ready), never funded twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_funding_whose_coins_another_process_spent_is_funded_anew() {
    let env = common::env().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("swaps.sqlite");
    let params = distinct_params(&env, 2).await;
    // A lock must be 2 blocks deep here.
    let mut rpc = env.node.rpc_config(Some("alice"));
    rpc.timeout = Duration::from_secs(10);
    let mut config = btc_adapter::BtcConfig::new(env.node.chain_id(), rpc);
    config.fees = common::fees();
    config.params.lock_confirmations = 2;
    let store = swap_core::store::SqliteStore::open(&path).unwrap();
    let chain = BtcChain::new(config, &[1; 32])
        .unwrap()
        .with_outbox(Arc::new(store));
    let funding = record_unsent_funding(&env, &chain, &path, &params).await;

    // Another process on the wallet spends every coin, those of the recorded funding too.
    let w = &env.alice_wallet;
    let everything = w.get_balance().await.unwrap();
    let to = w.get_new_address("bech32").await.unwrap();
    let _: serde_json::Value = w
        .wallet_call(
            "sendtoaddress",
            vec![
                serde_json::json!(to),
                serde_json::json!(btc_adapter::rpc::sats_to_coin_string(everything)),
                serde_json::json!(""),
                serde_json::json!(""),
                serde_json::json!(true),
            ],
        )
        .await
        .unwrap();
    // The spend only in the mempool: the recorded funding may still be mined; refused.
    for answer in chain.execute(&locks(&params[..1])).await {
        let e = answer.expect_err("the spend in the mempool");
        assert!(!e.is_transient(), "{e}");
        assert!(e.message.contains("not funding twice"), "{e}");
    }
    // Mined: first seen dead at this tip, funded anew once 2 blocks came after it (a spend
    // seen once may be reorged out; the funding seen dead in a race with its own mining).
    for left in [2, 1] {
        env.node.mine(1).await;
        for answer in chain.execute(&locks(&params[..1])).await {
            let e = answer.expect_err("the spend not deep enough");
            assert!(
                matches!(e.cause, swap_core::Cause::NotReady { .. }),
                "{left}: {e}"
            );
            assert!(
                e.message.contains(&format!("after {left} more block(s)")),
                "{e}"
            );
        }
    }
    env.node.mine(1).await;
    // The first lock alone, then the other lock the dead funding carried, in a later round:
    // each funded anew, neither by the recorded funding.
    let mut txrefs = lock_until_funded(&chain, &params[..1]).await;
    txrefs.extend(lock_until_funded(&chain, &params[1..]).await);
    for t in &txrefs {
        assert_ne!(
            btc_adapter::chain::txid_of(t).unwrap(),
            funding.compute_txid()
        );
    }
    funded_exactly_once(&env, &chain, &params, &txrefs).await;
    // Asked again, the locks answer their new funding.
    assert_eq!(lock_until_funded(&chain, &params).await, txrefs);
}

/// A lock whose caller gave up while it waited for a round (its task ended: the swap may go on
/// to cancel it) is not funded by a later round: nobody would watch that HTLC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_whose_caller_gave_up_before_its_round_is_not_funded() {
    let env = common::env().await;
    let chain = Arc::new(common::chain_for(&env.node, "alice", 7, common::fees()));
    let params = distinct_params(&env, 3).await;
    let (a, b, c) = (params[0].clone(), params[1].clone(), params[2].clone());
    // A's round runs; B is asked meanwhile (it waits for the round, or rests after it: a round
    // rests as long as the last one took), and its caller gives up before B's round starts.
    let first = tokio::spawn({
        let (chain, a) = (chain.clone(), a.clone());
        async move { chain.lock(&a).await }
    });
    tokio::time::sleep(Duration::from_millis(1)).await;
    let gave_up = tokio::spawn({
        let (chain, b) = (chain.clone(), b.clone());
        async move { chain.lock(&b).await }
    });
    tokio::time::sleep(Duration::from_millis(2)).await;
    gave_up.abort();
    assert!(gave_up.await.unwrap_err().is_cancelled());
    first.await.unwrap().expect("A funded");
    // C's round takes the queue, B's abandoned entry included, and funds C only.
    chain.lock(&c).await.expect("C funded");
    env.node.mine(1).await;
    for (name, p, funded) in [("A", &a, true), ("B", &b, false), ("C", &c, true)] {
        let status = env.bob.htlc_status(p).await.unwrap();
        assert_eq!(status != HtlcStatus::Absent, funded, "{name}: {status:?}");
    }
}
