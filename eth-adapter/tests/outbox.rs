//! Every lock is recorded, signed, in the outbox before its broadcast: two processes on one
//! store, a process killed between recording and broadcasting, and a recorded lock whose nonce
//! went to another transaction never lock one swap twice, and never leave it unlocked.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::Address;
use alloy::providers::Provider;
use eth_adapter::{EthChain, EthConfig};
use serde_json::json;
use swap_core::rail::{HtlcParams, HtlcStatus, Rail};
use swap_core::store::{Outbox, SendKey, SqliteStore};
use swap_core::{TxKind, TxRef};

/// An adapter ("a process") for account 0 recording its locks in the store at `path`.
fn process(e: &common::Env, path: &std::path::Path) -> EthChain {
    process_with(e, path, Duration::from_secs(30))
}

/// [`process`], waiting `receipt_timeout` for a receipt.
fn process_with(e: &common::Env, path: &std::path::Path, receipt_timeout: Duration) -> EthChain {
    let mut cfg = EthConfig::new(e.net.url(), e.htlc, common::eth_params());
    cfg.poll_interval = Duration::from_millis(20);
    cfg.receipt_timeout = receipt_timeout;
    EthChain::new(cfg, e.net.signer(0))
        .unwrap()
        .with_outbox(Arc::new(SqliteStore::open(path).unwrap()))
}

async fn sent_count(e: &common::Env) -> u64 {
    e.net
        .provider()
        .get_transaction_count(e.net.address(0))
        .await
        .unwrap()
}

/// How many `method` calls `chain` started.
fn calls_of(chain: &EthChain, method: &str) -> u64 {
    chain
        .rpc_calls_by_method()
        .get(method)
        .copied()
        .unwrap_or(0)
}

/// Runs `make()`'s future until `chain` starts its next `method` call, then leaks it there
/// (checked after every poll; no destructor runs, as when the process is killed). A future
/// that ends first with an output `again` accepts is made anew, as the driver's next round
/// would; any other end is a failure.
async fn kill_at<Fut: std::future::Future<Output: std::fmt::Debug>>(
    chain: &EthChain,
    method: &str,
    make: impl Fn() -> Fut,
    again: impl Fn(&Fut::Output) -> bool,
) {
    let calls = || calls_of(chain, method);
    let before = calls();
    let mut fut = Box::pin(make());
    let stopped = std::future::poll_fn(|cx| loop {
        match fut.as_mut().poll(cx) {
            std::task::Poll::Ready(r) if again(&r) && calls() == before => {
                fut = Box::pin(make());
            }
            std::task::Poll::Ready(r) => panic!("finished before {method}: {r:?}"),
            std::task::Poll::Pending if calls() > before => return std::task::Poll::Ready(()),
            std::task::Poll::Pending => return std::task::Poll::Pending,
        }
    });
    tokio::time::timeout(Duration::from_secs(30), stopped)
        .await
        .unwrap_or_else(|_| panic!("no {method}"));
    std::mem::forget(fut);
}

/// [`kill_at`] for a lock, made again when it ends on a transient error first (a busy store
/// on a loaded machine).
async fn kill_lock_at(chain: &EthChain, p: &HtlcParams) {
    kill_at(
        chain,
        "eth_sendRawTransaction",
        || chain.lock(p),
        |r| matches!(r, Err(e) if e.is_transient()),
    )
    .await;
}

/// Locks until it succeeds (the driver's next rounds); only transient errors on the way.
async fn lock_until_done(chain: &EthChain, p: &HtlcParams) -> TxRef {
    let started = Instant::now();
    loop {
        match chain.lock(p).await {
            Ok(t) => return t,
            Err(e) => assert!(e.is_transient(), "{e}"),
        }
        assert!(started.elapsed() < Duration::from_secs(30), "never locked");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The swap is funded by exactly `tx`.
async fn funded_by(e: &common::Env, p: &HtlcParams, tx: &TxRef) {
    match e.bob.htlc_status(p).await.unwrap() {
        HtlcStatus::Funded { lock, .. } => assert_eq!(&lock.txref, tx),
        other => panic!("expected funded, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_lock_twice_across_processes_and_crashes() {
    let e = common::env().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("swaps.sqlite");

    // Two processes lock one swap at the same time: one transaction from the account.
    let (p, _) = common::eth_swap(&e.net, 0, 1, 10u128.pow(17), 3600).await;
    let (a, b) = (process(&e, &path), process(&e, &path));
    let before = sent_count(&e).await;
    let (ra, rb) = tokio::join!(a.lock(&p), b.lock(&p));
    for r in [&ra, &rb] {
        if let Err(err) = r {
            assert!(err.is_transient(), "{err}");
        }
    }
    if let (Ok(x), Ok(y)) = (&ra, &rb) {
        assert_eq!(x, y);
    }
    let tx = lock_until_done(&b, &p).await;
    assert_eq!(sent_count(&e).await, before + 1, "one lock transaction");
    funded_by(&e, &p, &tx).await;

    // A process killed as it broadcasts; another goes on at once: one lock.
    let (p, _) = common::eth_swap(&e.net, 0, 1, 10u128.pow(17), 3600).await;
    let before = sent_count(&e).await;
    let dead = process(&e, &path);
    kill_lock_at(&dead, &p).await;
    let tx = lock_until_done(&process(&e, &path), &p).await;
    assert_eq!(sent_count(&e).await, before + 1, "one lock transaction");
    funded_by(&e, &p, &tx).await;

    // A process killed after recording its lock, which never reached a block (dropped from the
    // pool) and whose nonce another transaction of the account then used: the recorded lock
    // can never be mined, so the next process builds a new one.
    let (p, _) = common::eth_swap(&e.net, 0, 1, 10u128.pow(17), 3600).await;
    e.net.rpc("evm_setAutomine", json!([false])).await;
    let dead = process(&e, &path);
    kill_lock_at(&dead, &p).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    e.net.rpc("anvil_dropAllTransactions", json!([])).await;
    let key = SendKey {
        swap: p.swap_id,
        rail: common::eth_params().rail(),
        kind: TxKind::Lock,
    };
    let store = SqliteStore::open(&path).unwrap();
    let recorded = store
        .signed(&key)
        .await
        .unwrap()
        .expect("recorded before broadcast");
    let me: Address = e.net.address(0);
    e.net
        .rpc(
            "eth_sendTransaction",
            json!([{"from": me, "to": me, "value": "0x0"}]),
        )
        .await;
    e.net.mine(1).await;
    e.net.rpc("evm_setAutomine", json!([true])).await;
    let tx = lock_until_done(&process(&e, &path), &p).await;
    assert_ne!(tx, recorded.txref, "a new lock");
    funded_by(&e, &p, &tx).await;
    assert_eq!(store.signed(&key).await.unwrap().map(|s| s.txref), Some(tx));
}

/// Rails issue, item 3: a lock recorded and sent but never mined (the process died; it waits in
/// a pool, or anyone who kept it may send it again) must never be mined after its swap gave up.
/// `cancel_lock` takes its nonce with a transfer to self and answers `Ok` only once that is
/// mined; the lock is then refused for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_that_never_got_mined_is_cancelled_for_good() {
    use swap_core::rail::RailOp;
    let e = common::env().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("swaps.sqlite");
    let (p, _) = common::eth_swap(&e.net, 0, 1, 10u128.pow(17), 3600).await;
    e.net.rpc("evm_setAutomine", json!([false])).await;
    let dead = process(&e, &path);
    kill_lock_at(&dead, &p).await;
    let key = SendKey {
        swap: p.swap_id,
        rail: common::eth_params().rail(),
        kind: TxKind::Lock,
    };
    let store = SqliteStore::open(&path).unwrap();
    let recorded = store.signed(&key).await.unwrap().expect("recorded");
    let before = sent_count(&e).await;

    let other = process(&e, &path);
    let cancel = |p: &HtlcParams| {
        let op = [RailOp::CancelLock(p.clone())];
        let other = &other;
        async move { other.execute(&op).await.pop().unwrap() }
    };
    let mut blocks = 0;
    let cancelled = loop {
        match cancel(&p).await {
            Ok(t) => break t,
            Err(err) => {
                assert!(
                    matches!(err.cause, swap_core::Cause::NotReady { .. }),
                    "{err}"
                );
                assert!(blocks < 5, "never final: {err}");
                e.net.mine(1).await;
                blocks += 1;
            }
        }
    };
    e.net.rpc("evm_setAutomine", json!([true])).await;
    assert!(blocks >= 1, "final before it was mined");
    assert_ne!(cancelled, recorded.txref);
    assert_eq!(
        sent_count(&e).await,
        before + 1,
        "one transaction: the cancel"
    );
    let lock_hash: alloy::primitives::B256 = recorded.txref.0.parse().unwrap();
    assert!(e
        .net
        .provider()
        .get_transaction_receipt(lock_hash)
        .await
        .unwrap()
        .is_none());
    assert_eq!(e.bob.htlc_status(&p).await.unwrap(), HtlcStatus::Absent);
    // The lock can never be mined now.
    let again = e.net.provider().send_raw_transaction(&recorded.raw).await;
    assert!(again.is_err(), "the cancelled lock was accepted again");
    // Idempotent; the swap may even lock anew (a new transaction).
    assert_eq!(cancel(&p).await.unwrap().0, "");
    let tx = lock_until_done(&other, &p).await;
    assert_ne!(tx, recorded.txref);
    funded_by(&e, &p, &tx).await;
    // A mined lock is not cancelled: it is refunded.
    let err = cancel(&p).await.unwrap_err();
    assert_eq!(err.cause, swap_core::Cause::AlreadySpent, "{err}");
    // A swap never locked: nothing to cancel.
    let (never, _) = common::eth_swap(&e.net, 0, 1, 10u128.pow(17), 3600).await;
    assert_eq!(cancel(&never).await.unwrap().0, "");
}

/// A round of ether locks goes out together (consecutive nonces, one outbox write), and two
/// processes on one store running the same round at once still lock each swap exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_of_locks_from_two_processes_locks_each_swap_once() {
    use swap_core::rail::RailOp;
    let e = common::env().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("swaps.sqlite");
    let (a, b) = (process(&e, &path), process(&e, &path));
    let mut swaps = Vec::new();
    for i in 0..10u128 {
        swaps.push(
            common::eth_swap(&e.net, 0, 1, 10u128.pow(15) + i, 3600)
                .await
                .0,
        );
    }
    let ops: Vec<RailOp> = swaps.iter().cloned().map(RailOp::Lock).collect();
    let before = sent_count(&e).await;
    let (ra, rb) = tokio::join!(a.execute(&ops), b.execute(&ops));
    // Every swap ends up locked once: what a round could not do (the other process had
    // recorded it) the next round finishes from the store.
    let mut locks = Vec::new();
    for (i, p) in swaps.iter().enumerate() {
        let tx = match (&ra[i], &rb[i]) {
            (Ok(x), Ok(y)) => {
                assert_eq!(x, y, "two lock transactions for one swap");
                x.clone()
            }
            (Ok(x), Err(_)) | (Err(_), Ok(x)) => x.clone(),
            (Err(_), Err(_)) => lock_until_done(&a, p).await,
        };
        funded_by(&e, p, &tx).await;
        locks.push(tx);
    }
    locks.sort_by(|x, y| x.0.cmp(&y.0));
    locks.dedup();
    assert_eq!(locks.len(), swaps.len(), "one lock transaction per swap");
    assert_eq!(
        sent_count(&e).await - before,
        swaps.len() as u64,
        "no transaction beyond one lock per swap"
    );
    // Their nonces are consecutive: the round's locks were signed together.
    let mut nonces = Vec::new();
    for tx in &locks {
        let hash: alloy::primitives::B256 = tx.0.parse().unwrap();
        let t = e
            .net
            .provider()
            .get_transaction_by_hash(hash)
            .await
            .unwrap()
            .unwrap();
        nonces.push(alloy::consensus::Transaction::nonce(&t));
    }
    nonces.sort_unstable();
    assert_eq!(
        nonces,
        (before..before + swaps.len() as u64).collect::<Vec<_>>()
    );
    // A second round answers the same transactions and sends nothing.
    for (r, tx) in a.execute(&ops).await.into_iter().zip(&swaps) {
        let _ = tx;
        assert!(locks.contains(&r.unwrap()));
    }
    assert_eq!(sent_count(&e).await - before, swaps.len() as u64);
}

/// A lock dropped from the node's pool while its caller waits for the receipt: the wait ends
/// with a "dropped" error at its next look (a quarter of the receipt timeout), not at the
/// deadline; the next attempt broadcasts the recorded lock again, and it is mined.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_dropped_from_the_pool_is_told_early_and_sent_again() {
    let e = common::env().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("swaps.sqlite");
    let a = Arc::new(process_with(&e, &path, Duration::from_secs(8)));
    let (p, _) = common::eth_swap(&e.net, 0, 1, 10u128.pow(16), 3600).await;
    let me: Address = e.net.address(0);
    let mined = sent_count(&e).await;
    e.net.rpc("evm_setAutomine", json!([false])).await;
    let waiting = {
        let (a, p) = (a.clone(), p.clone());
        tokio::spawn(async move { a.lock(&p).await })
    };
    // Sent (the node counts it as pending), then dropped.
    let started = Instant::now();
    loop {
        let pending = e
            .net
            .provider()
            .get_transaction_count(me)
            .pending()
            .await
            .unwrap();
        if pending > mined {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "never sent");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    e.net.rpc("anvil_dropAllTransactions", json!([])).await;
    let err = waiting.await.unwrap().expect_err("nothing was mined");
    assert!(err.is_transient(), "{err}");
    assert!(err.to_string().contains("dropped"), "{err}");
    e.net.rpc("evm_setAutomine", json!([true])).await;
    let tx = lock_until_done(&a, &p).await;
    funded_by(&e, &p, &tx).await;
    assert_eq!(sent_count(&e).await, mined + 1, "one lock transaction");
}

/// A recorded lock that never reached the node, whose nonce another transaction of ours now
/// holds in the pool (sent since: a claim, say): it is not broadcast again (it could outbid
/// that one); once that one is mined, a new lock is built.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_lock_is_not_sent_again_over_a_pending_transaction_of_ours() {
    let e = common::env().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("swaps.sqlite");
    let (p, _) = common::eth_swap(&e.net, 0, 1, 10u128.pow(16), 3600).await;
    let before = sent_count(&e).await;
    e.net.rpc("evm_setAutomine", json!([false])).await;
    let dead = process(&e, &path);
    kill_lock_at(&dead, &p).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    e.net.rpc("anvil_dropAllTransactions", json!([])).await;
    let me: Address = e.net.address(0);
    let other = e
        .net
        .rpc(
            "eth_sendTransaction",
            json!([{"from": me, "to": me, "value": "0x0"}]),
        )
        .await;
    let other: alloy::primitives::B256 = serde_json::from_value(other).unwrap();
    let err = process(&e, &path)
        .lock(&p)
        .await
        .expect_err("the recorded lock's nonce is taken");
    assert!(err.is_transient(), "{err}");
    assert!(
        err.to_string().contains("taken by a pending transaction"),
        "{err}"
    );
    assert!(
        e.net
            .provider()
            .get_transaction_by_hash(other)
            .await
            .unwrap()
            .is_some(),
        "the pending transaction was replaced"
    );
    e.net.mine(1).await;
    e.net.rpc("evm_setAutomine", json!([true])).await;
    let tx = lock_until_done(&process(&e, &path), &p).await;
    funded_by(&e, &p, &tx).await;
    assert_eq!(
        sent_count(&e).await,
        before + 2,
        "the other one, then one lock"
    );
}

/// Three locks recorded together at consecutive nonces, none at the node (the process died as
/// it broadcast them, and the pool was emptied); the last one's swap tries again first: its
/// lock is broadcast again above two free nonces, where it would wait for the account's next
/// send. Both are filled with transfers of nothing to self in that attempt, the lock is
/// mined, and the other swaps, whose recorded locks can now never be mined, get new ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_lock_above_free_nonces_has_them_filled() {
    let e = common::env().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("swaps.sqlite");
    let mut swaps = Vec::new();
    for _ in 0..3 {
        swaps.push(common::eth_swap(&e.net, 0, 1, 10u128.pow(16), 3600).await.0);
    }
    let before = sent_count(&e).await;
    let from_block = e.net.provider().get_block_number().await.unwrap();
    e.net.rpc("evm_setAutomine", json!([false])).await;
    let dead = process(&e, &path);
    let batch = swaps.iter().collect::<Vec<_>>();
    kill_at(
        &dead,
        "eth_sendRawTransaction",
        || dead.lock_htlcs(&batch),
        |_| false,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    e.net.rpc("anvil_dropAllTransactions", json!([])).await;
    e.net.rpc("evm_setAutomine", json!([true])).await;
    assert_eq!(sent_count(&e).await, before, "nothing mined yet");

    // A receipt timeout of 5 s: the lock at the top must be mined at the first attempt, or
    // `lock_until_done` would see it time out again and again.
    let b = process_with(&e, &path, Duration::from_secs(5));
    let first = Instant::now();
    let t3 = lock_until_done(&b, &swaps[2]).await;
    assert!(
        first.elapsed() < Duration::from_secs(5),
        "not mined at once"
    );
    funded_by(&e, &swaps[2], &t3).await;
    for p in &swaps[..2] {
        let t = lock_until_done(&b, p).await;
        funded_by(&e, p, &t).await;
    }
    assert_eq!(
        sent_count(&e).await,
        before + 5,
        "two transfers to self, the third lock, two new locks"
    );
    // What took the two free nonces: transfers of nothing to ourselves.
    let me: Address = e.net.address(0);
    let head = e.net.provider().get_block_number().await.unwrap();
    let mut fillers = Vec::new();
    for n in from_block + 1..=head {
        let block = e
            .net
            .rpc("eth_getBlockByNumber", json!([format!("{n:#x}"), true]))
            .await;
        for tx in block["transactions"].as_array().unwrap() {
            let nonce =
                u64::from_str_radix(tx["nonce"].as_str().unwrap().trim_start_matches("0x"), 16)
                    .unwrap();
            let ours = tx["from"]
                .as_str()
                .unwrap()
                .eq_ignore_ascii_case(&format!("{me:#x}"));
            if ours && (nonce == before || nonce == before + 1) {
                fillers.push((nonce, tx["to"].clone(), tx["value"].clone()));
            }
        }
    }
    fillers.sort_by_key(|f| f.0);
    let to_self = json!(format!("{me:#x}"));
    assert_eq!(
        fillers,
        vec![
            (before, to_self.clone(), json!("0x0")),
            (before + 1, to_self, json!("0x0"))
        ]
    );
}

/// A recorded lock the node still holds, parked in its pool, whose nonce was used all the same
/// (as anvil once left one under load, its nonce then given to another lock): it can never be
/// mined, so the next attempt builds a new lock instead of waiting on it for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_lock_the_node_holds_whose_nonce_was_used_is_built_anew() {
    let e = common::env().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("swaps.sqlite");
    let (p, _) = common::eth_swap(&e.net, 0, 1, 10u128.pow(16), 3600).await;
    let m = sent_count(&e).await;
    let me: Address = e.net.address(0);
    e.net.rpc("evm_setAutomine", json!([false])).await;
    // A transfer pending at nonce m; the lock goes out at m + 1 and is not mined in time.
    e.net
        .rpc(
            "eth_sendTransaction",
            json!([{"from": me, "to": me, "value": "0x0"}]),
        )
        .await;
    let err = process_with(&e, &path, Duration::from_secs(2))
        .lock(&p)
        .await
        .expect_err("not mined");
    assert!(err.is_transient(), "{err}");
    // The pool emptied, the lock alone is sent again: with nonce m free below it, the node
    // parks it. Then the account's nonce moves past both and a block is mined without it.
    e.net.rpc("anvil_dropAllTransactions", json!([])).await;
    let key = SendKey {
        swap: p.swap_id,
        rail: common::eth_params().rail(),
        kind: TxKind::Lock,
    };
    let recorded = SqliteStore::open(&path)
        .unwrap()
        .signed(&key)
        .await
        .unwrap()
        .expect("recorded before broadcast");
    let lock: alloy::primitives::B256 = recorded.txref.0.parse().unwrap();
    e.net
        .rpc(
            "eth_sendRawTransaction",
            json!([format!("0x{}", hex::encode(&recorded.raw))]),
        )
        .await;
    e.net
        .rpc("anvil_setNonce", json!([me, format!("{:#x}", m + 2)]))
        .await;
    e.net.mine(1).await;
    let node = e.net.provider();
    assert!(
        node.get_transaction_by_hash(lock).await.unwrap().is_some(),
        "the node still holds the lock"
    );
    assert!(node.get_transaction_receipt(lock).await.unwrap().is_none());
    assert_eq!(sent_count(&e).await, m + 2);
    e.net.rpc("evm_setAutomine", json!([true])).await;
    let tx = lock_until_done(&process_with(&e, &path, Duration::from_secs(5)), &p).await;
    assert_ne!(tx.0, format!("{lock:#x}"), "a new lock");
    funded_by(&e, &p, &tx).await;
    assert_eq!(sent_count(&e).await, m + 3);
    assert!(node.get_transaction_receipt(lock).await.unwrap().is_none());
}
