//! Shared setup: one real regtest node, two Lightning nodes with their own wallets.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use bitcoin::{OutPoint, Transaction, Txid};
use btc_adapter::rpc::{coin_value_to_sats, RpcClient};
use devnet::regtest::RegtestNode;
use ln_adapter::{ChannelId, LnConfig, LnEvent, LnNode, PaymentTarget, Seed};
use serde_json::{json, Value};
use swap_core::Preimage;
use tokio::sync::broadcast;

/// The CLTV delta of the final hop (CLTV = height + this).
pub const FINAL_CLTV: u32 = 144;

pub struct Pair {
    pub node: RegtestNode,
    pub a: LnNode,
    pub b: LnNode,
    pub a_wallet: RpcClient,
    pub b_wallet: RpcClient,
    pub dirs: tempfile::TempDir,
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

pub async fn wallet(node: &RegtestNode, name: &str) -> RpcClient {
    let rpc = RpcClient::new(node.rpc_config(Some(name))).unwrap();
    rpc.create_or_load_wallet(name).await.unwrap();
    rpc
}

pub async fn start_ln(node: &RegtestNode, wallet: &str, seed: u8, dir: &Path) -> LnNode {
    start_ln_on(node, wallet, seed, dir, None).await
}

/// [`start_ln`] on a given Lightning port (a restart on the port the peers know).
pub async fn start_ln_on(
    node: &RegtestNode,
    wallet: &str,
    seed: u8,
    dir: &Path,
    listen: Option<std::net::SocketAddr>,
) -> LnNode {
    start_ln_keyed(node, wallet, seed, dir, listen, None)
        .await
        .unwrap()
}

/// [`start_ln_on`] with its data sealed with `key` (or in clear without one); the start's
/// error returned.
pub async fn start_ln_keyed(
    node: &RegtestNode,
    wallet: &str,
    seed: u8,
    dir: &Path,
    listen: Option<std::net::SocketAddr>,
    key: Option<swap_core::store::StoreKey>,
) -> Result<LnNode, ln_adapter::LnError> {
    start_ln_with(node, wallet, seed, dir, |config| {
        config.store_key = key;
        if let Some(listen) = listen {
            config.listen = listen;
        }
    })
    .await
}

/// A Lightning node on `node`'s wallet `wallet`, polling every 200 ms, with channels without
/// anchors whatever the chain (the tests of anchor channels ask for them: `anchors.rs`), and
/// whatever else `set` changes.
pub async fn start_ln_with(
    node: &RegtestNode,
    wallet: &str,
    seed: u8,
    dir: &Path,
    set: impl FnOnce(&mut LnConfig),
) -> Result<LnNode, ln_adapter::LnError> {
    let mut config = LnConfig::new(node.chain_id(), node.rpc_config(Some(wallet)), dir.into());
    config.poll_interval = Duration::from_millis(200);
    config.anchors = false;
    set(&mut config);
    LnNode::start(config, &Seed::new([seed; 32])).await
}

/// A regtest node, wallets `a` (10 coins) and `b` (empty), two Lightning nodes, connected.
pub async fn pair() -> Pair {
    pair_with(|_| {}).await
}

/// [`pair`] with whatever `set` changes in both Lightning nodes' configuration.
pub async fn pair_with(set: impl Fn(&mut LnConfig)) -> Pair {
    init_tracing();
    let node = RegtestNode::start().await;
    let a_wallet = wallet(&node, "a").await;
    let b_wallet = wallet(&node, "b").await;
    let addr = a_wallet.get_new_address("bech32").await.unwrap();
    node.send(&addr, 10_0000_0000).await;
    node.mine(1).await;
    let dirs = tempfile::tempdir().unwrap();
    let a = start_ln_with(&node, "a", 1, &dirs.path().join("a"), &set)
        .await
        .unwrap();
    let b = start_ln_with(&node, "b", 2, &dirs.path().join("b"), &set)
        .await
        .unwrap();
    a.connect(b.node_id(), b.listen_addr()).await.unwrap();
    Pair {
        node,
        a,
        b,
        a_wallet,
        b_wallet,
        dirs,
    }
}

/// Waits (30 s at most) for the first event matching `pred`.
pub async fn wait_event(
    rx: &mut broadcast::Receiver<LnEvent>,
    what: &str,
    pred: impl Fn(&LnEvent) -> bool,
) -> LnEvent {
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match rx.recv().await {
                Ok(e) if pred(&e) => return e,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => panic!("events closed: {what}"),
            }
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// A payment of `amount_msat` from `payer` to a hold invoice of `payee`, sent and held by the
/// payee (not claimed): what [`pay_until_held`] returns.
pub struct HeldPay {
    pub preimage: Preimage,
    pub payment_id: [u8; 32],
    /// The payer's height when it sent.
    pub send_height: u32,
    /// Just before the payer sent.
    pub started: Instant,
    /// The payee's `PaymentClaimable`.
    pub held: LnEvent,
    /// Both nodes' events since before the payment.
    pub payer_rx: broadcast::Receiver<LnEvent>,
    pub payee_rx: broadcast::Receiver<LnEvent>,
}

/// Pays a new hold invoice of `payee` from `payer` and waits until the payee holds it.
pub async fn pay_until_held(payer: &LnNode, payee: &LnNode, amount_msat: u64) -> HeldPay {
    let preimage = Preimage::random().unwrap();
    let hashlock = preimage.hashlock();
    let secret = payee
        .hold_invoice(hashlock, amount_msat, 3600, FINAL_CLTV as u16)
        .unwrap();
    let payer_rx = payer.subscribe();
    let mut payee_rx = payee.subscribe();
    let target = PaymentTarget {
        payee: payee.node_id(),
        hashlock,
        payment_secret: secret,
        amount_msat,
        final_cltv_delta: FINAL_CLTV,
        route_hints: vec![],
    };
    let payment_id = hashlock.0;
    let (_, send_height) = payer.best_block().await;
    let started = Instant::now();
    payer.pay(&target, payment_id).unwrap();
    let held = wait_event(
        &mut payee_rx,
        "payment held",
        |e| matches!(e, LnEvent::PaymentClaimable { hashlock: h, .. } if *h == hashlock),
    )
    .await;
    HeldPay {
        preimage,
        payment_id,
        send_height,
        started,
        held,
        payer_rx,
        payee_rx,
    }
}

/// `payer` pays `amount_msat` to a hold invoice of `payee` (payment id: the hashlock), and the
/// payment is waited for until `payee` holds it. Returns the preimage, not yet claimed.
pub async fn pay_held(payer: &LnNode, payee: &LnNode, amount_msat: u64) -> Preimage {
    pay_until_held(payer, payee, amount_msat).await.preimage
}

/// Waits until `cond` holds (30 s at most).
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let started = Instant::now();
    while !cond() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "timed out: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn mine_and_sync(p: &Pair, n: u64) {
    p.node.mine(n).await;
    p.a.sync().await.unwrap();
    p.b.sync().await.unwrap();
}

/// Opens a channel from `a` to `b` and waits until both can use it. Returns the channel id
/// and the funding transaction id.
pub async fn open_channel(p: &Pair, capacity_sats: u64) -> (ChannelId, Txid) {
    open_between(&p.node, &p.a, &p.b, capacity_sats).await
}

/// Opens a channel from `from` (connected to `to`, with a funded wallet) to `to` and waits
/// until both can use it. Returns the channel id and the funding transaction id.
pub async fn open_between(
    node: &RegtestNode,
    from: &LnNode,
    to: &LnNode,
    capacity_sats: u64,
) -> (ChannelId, Txid) {
    open_between_then(node, from, to, capacity_sats, async {}).await
}

/// [`open_between`], with `in_mempool` awaited once the funding is in the chain node's
/// mempool and before it is mined.
pub async fn open_between_then(
    node: &RegtestNode,
    from: &LnNode,
    to: &LnNode,
    capacity_sats: u64,
    in_mempool: impl std::future::Future<Output = ()>,
) -> (ChannelId, Txid) {
    let mut from_rx = from.subscribe();
    let mut to_rx = to.subscribe();
    from.open_channel(to.node_id(), capacity_sats, 0)
        .await
        .unwrap();
    let pending = wait_event(&mut from_rx, "channel pending", |e| {
        matches!(e, LnEvent::ChannelPending { .. })
    })
    .await;
    let LnEvent::ChannelPending {
        funding_txid,
        channel_id,
        ..
    } = pending
    else {
        unreachable!()
    };
    wait_in_mempool(node, &funding_txid).await;
    in_mempool.await;
    node.mine(3).await;
    from.sync().await.unwrap();
    to.sync().await.unwrap();
    wait_event(
        &mut from_rx,
        "channel ready (opener)",
        |e| matches!(e, LnEvent::ChannelReady { channel_id: c, .. } if *c == channel_id),
    )
    .await;
    wait_event(
        &mut to_rx,
        "channel ready (acceptor)",
        |e| matches!(e, LnEvent::ChannelReady { channel_id: c, .. } if *c == channel_id),
    )
    .await;
    let usable = |n: &LnNode| {
        n.channels()
            .iter()
            .any(|c| c.channel_id == channel_id && c.usable)
    };
    wait_until("channel usable", || usable(from) && usable(to)).await;
    (channel_id, funding_txid)
}

pub async fn wait_mempool(p: &Pair, txid: &Txid) {
    wait_in_mempool(&p.node, txid).await
}

pub async fn wait_in_mempool(node: &RegtestNode, txid: &Txid) {
    let started = Instant::now();
    loop {
        if node.rpc().get_raw_mempool().await.unwrap().contains(txid) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{txid} never reached the mempool"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A mempool transaction spending `outpoint` (waits for it).
pub async fn wait_spend(p: &Pair, outpoint: OutPoint) -> Transaction {
    let started = Instant::now();
    loop {
        for txid in p.node.rpc().get_raw_mempool().await.unwrap() {
            let tx: Transaction = p.node.rpc().get_raw_transaction(&txid, None).await.unwrap();
            if tx.input.iter().any(|i| i.previous_output == outpoint) {
                return tx;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "nothing spent {outpoint}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The fee the wallet paid for a transaction it sent.
pub async fn wallet_fee(wallet: &RpcClient, txid: &Txid) -> u64 {
    let v: Value = wallet
        .wallet_call("gettransaction", vec![json!(txid)])
        .await
        .unwrap();
    let fee = v["fee"].as_f64().expect("fee of a sent transaction");
    coin_value_to_sats(&json!(-fee)).unwrap()
}

/// Confirmed balance (1 confirmation) of a wallet.
pub async fn balance(wallet: &RpcClient) -> u64 {
    let v: Value = wallet
        .wallet_call("getbalance", vec![json!("*"), json!(1)])
        .await
        .unwrap();
    coin_value_to_sats(&v).unwrap()
}

/// Pays `amount_msat` from `payer` to `payee` through a hold invoice and claims it; returns
/// the time from sending to the payer's `PaymentSent`.
pub async fn hold_pay_and_claim(payer: &LnNode, payee: &LnNode, amount_msat: u64) -> Duration {
    hold_pay_and_claim_preimage(payer, payee, amount_msat)
        .await
        .0
}

/// [`hold_pay_and_claim`], returning the payment's preimage too.
pub async fn hold_pay_and_claim_preimage(
    payer: &LnNode,
    payee: &LnNode,
    amount_msat: u64,
) -> (Duration, Preimage) {
    // A claim just made settles in the commitments after the payer already saw it.
    wait_until("payer can send the amount", || {
        payer
            .channels()
            .iter()
            .any(|c| c.usable && c.sendable_msat >= amount_msat)
    })
    .await;
    let HeldPay {
        preimage,
        payment_id,
        send_height,
        started,
        held,
        mut payer_rx,
        mut payee_rx,
    } = pay_until_held(payer, payee, amount_msat).await;
    let hashlock = preimage.hashlock();
    let LnEvent::PaymentClaimable {
        amount_msat: got,
        claim_deadline,
        ..
    } = held
    else {
        unreachable!()
    };
    assert_eq!(got, amount_msat);
    let (_, height) = payee.best_block().await;
    let deadline = claim_deadline.expect("a claim deadline");
    assert!(deadline > height, "deadline {deadline} at height {height}");
    let htlc = payee
        .channels()
        .iter()
        .flat_map(|c| c.inbound_htlcs.clone())
        .find(|h| h.hashlock == hashlock)
        .expect("the held HTLC");
    assert_eq!(htlc.amount_msat, amount_msat);
    assert_eq!(
        htlc.cltv_expiry,
        send_height + 1 + FINAL_CLTV,
        "CLTV exactly (height + 1) + the agreed delta: LDK counts from the next block, and no \
         random offset"
    );
    assert_eq!(
        payee
            .held_payment(&hashlock)
            .unwrap()
            .map(|h| h.amount_msat),
        Some(amount_msat),
        "the held payment is recorded before it counts as handled"
    );
    payee.claim(&preimage).await.unwrap();
    let sent = wait_event(
        &mut payer_rx,
        "payment sent",
        |e| matches!(e, LnEvent::PaymentSent { hashlock: h, .. } if *h == hashlock),
    )
    .await;
    let elapsed = started.elapsed();
    let LnEvent::PaymentSent {
        preimage: revealed,
        payment_id: id,
        fee_paid_msat,
        ..
    } = sent
    else {
        unreachable!()
    };
    assert_eq!(revealed, preimage, "the payer learns the preimage");
    assert_eq!(
        payer.preimage_for(&hashlock).unwrap(),
        Some(preimage.clone()),
        "and has it recorded before the event counted as handled"
    );
    assert_eq!(id, payment_id);
    assert_eq!(
        fee_paid_msat.unwrap_or(0),
        0,
        "a direct channel charges no fee"
    );
    wait_event(&mut payee_rx, "payment claimed", |e| {
        matches!(e, LnEvent::PaymentClaimed { hashlock: h, amount_msat: a } if *h == hashlock && *a == amount_msat)
    })
    .await;
    (elapsed, preimage)
}

/// Waits until no HTLC is pending in any channel of either node.
pub async fn wait_settled(p: &Pair) {
    wait_until("no HTLC pending", || {
        [&p.a, &p.b].iter().all(|n| {
            n.channels()
                .iter()
                .all(|c| c.inbound_htlcs.is_empty() && c.outbound_htlcs == 0)
        })
    })
    .await;
}

/// The node database in `dir` ([`ln_adapter::DB_FILE`]), opened beside the node (tests look
/// at and change what it stores).
pub fn node_db(dir: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(dir.join(ln_adapter::DB_FILE)).unwrap()
}

/// How many values the node in `dir` stores under `primary`/`secondary`.
pub fn stored_values(dir: &Path, primary: &str, secondary: &str) -> usize {
    node_db(dir)
        .query_row(
            "SELECT count(*) FROM kv WHERE primary_ns = ?1 AND secondary_ns = ?2",
            [primary, secondary],
            |r| r.get::<_, i64>(0),
        )
        .map_or(0, |n| usize::try_from(n).unwrap_or(0))
}
