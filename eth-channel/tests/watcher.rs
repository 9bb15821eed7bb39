//! The channel watcher against anvil and `Channel.sol`, one scenario per test: a stale close
//! answered, a lock enforced on chain, an expired lock left alone, a credit withdrawn, two
//! watchers on one store, a crash between recording and broadcasting.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;

use alloy::eips::BlockNumberOrTag;
use alloy::network::EthereumWallet;
use alloy::primitives::{Address, B256, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::TransactionReceipt;
use devnet::anvil::Devnet;
use devnet::test_contracts::ChannelParty;
use eth_adapter::bindings::Channel;
use eth_adapter::channel::{ChannelRef, OnChain, Params, Record, Side};
use eth_channel::watcher::{Action, TxStatus};
use eth_channel::{
    hashlock_of, ChannelStore, CoSigned, Config, Party, SecretMap, Skip, SqliteChannelStore,
    WatchConfig, Watcher,
};

use crate::common::deliver;

pub(crate) const ONE: u128 = 1_000_000_000_000_000_000;
pub(crate) const HOUR: u64 = 3600;

fn wallet(net: &Devnet, i: usize) -> DynProvider {
    ProviderBuilder::new()
        .wallet(EthereumWallet::from(net.signer(i)))
        .connect_http(net.url().parse().unwrap())
        .erased()
}

fn plain(net: &Devnet) -> DynProvider {
    ProviderBuilder::new()
        .connect_http(net.url().parse().unwrap())
        .erased()
}

async fn mined<C: alloy::sol_types::SolCall>(
    call: alloy::contract::SolCallBuilder<&DynProvider, C>,
) -> TransactionReceipt {
    let r = call.send().await.unwrap().get_receipt().await.unwrap();
    assert!(r.status(), "transaction reverted");
    r
}

/// Anvil, the contract, an ETH channel between accounts 0 (A) and 1 (B) funded with 10 and
/// 5 ETH, both parties with a store file in `dir`.
pub(crate) struct Env {
    pub(crate) net: Devnet,
    pub(crate) w: Vec<DynProvider>,
    pub(crate) chan: ChannelRef,
    pub(crate) a: Party,
    pub(crate) b: Party,
    pub(crate) sa: SqliteChannelStore,
    pub(crate) sb: SqliteChannelStore,
    pub(crate) dir: tempfile::TempDir,
}

impl Env {
    pub(crate) async fn start() -> Self {
        let net = Devnet::start().await;
        let w: Vec<DynProvider> = (0..3).map(|i| wallet(&net, i)).collect();
        let contract = *Channel::deploy(w[0].clone()).await.unwrap().address();
        let chain_id = net.provider().get_chain_id().await.unwrap();
        let chan = ChannelRef::new(
            Params {
                a: net.address(0),
                b: net.address(1),
                token: Address::ZERO,
                challengePeriod: HOUR,
                salt: B256::repeat_byte(1),
            },
            chain_id,
            contract,
        );
        for (i, wei) in [(0, 10 * ONE), (1, 5 * ONE)] {
            let c = Channel::new(contract, w[i].clone());
            mined(c.deposit(chan.params.clone()).value(U256::from(wei))).await;
        }
        let dir = tempfile::tempdir().unwrap();
        let sa = SqliteChannelStore::open(&dir.path().join("a.db")).unwrap();
        let sb = SqliteChannelStore::open(&dir.path().join("b.db")).unwrap();
        let cfg = Config::default();
        let a = Party::open(
            chan.clone(),
            Side::A,
            net.signer(0),
            cfg,
            10 * ONE,
            5 * ONE,
            &sa,
        )
        .unwrap();
        let b = Party::open(
            chan.clone(),
            Side::B,
            net.signer(1),
            cfg,
            10 * ONE,
            5 * ONE,
            &sb,
        )
        .unwrap();
        Self {
            net,
            w,
            chan,
            a,
            b,
            sa,
            sb,
            dir,
        }
    }

    pub(crate) async fn chain(&self) -> OnChain {
        self.chan
            .on_chain(self.net.provider(), BlockNumberOrTag::Latest)
            .await
            .unwrap()
    }

    pub(crate) async fn now(&self) -> u64 {
        self.chain().await.time
    }

    pub(crate) fn contract(&self, by: usize) -> Channel::ChannelInstance<DynProvider> {
        Channel::new(self.chan.contract, self.w[by].clone())
    }

    /// `by` proposes what `f` makes, the other countersigns.
    pub(crate) async fn update(
        &mut self,
        by: Side,
        f: impl FnOnce(&Party, u64, &OnChain) -> eth_channel::Step,
    ) {
        let chain = self.chain().await;
        let now = chain.time;
        match by {
            Side::A => {
                let step = f(&self.a, now, &chain);
                deliver(
                    &mut self.a,
                    &self.sa,
                    &mut self.b,
                    &self.sb,
                    step,
                    now,
                    &chain,
                )
            }
            Side::B => {
                let step = f(&self.b, now, &chain);
                deliver(
                    &mut self.b,
                    &self.sb,
                    &mut self.a,
                    &self.sa,
                    step,
                    now,
                    &chain,
                )
            }
        }
    }

    /// `by` locks `amount` for the other on `sha256(n n ...)` until `now + ttl`.
    pub(crate) async fn lock(&mut self, by: Side, amount: u128, n: u8, ttl: u64) -> (B256, u64) {
        let pre = B256::repeat_byte(n);
        let expiry = self.now().await + ttl;
        self.update(by, |p, now, c| {
            p.propose_lock(amount, hashlock_of(&pre), expiry, now, c)
                .unwrap()
        })
        .await;
        (pre, expiry)
    }

    /// A payment: a lock from `by` and its claim by the other (two updates).
    pub(crate) async fn pay(&mut self, by: Side, amount: u128, n: u8) {
        let (pre, _) = self.lock(by, amount, n, HOUR).await;
        let to = if by == Side::A { Side::B } else { Side::A };
        self.update(to, |p, now, c| p.propose_claim(pre, now, c).unwrap())
            .await;
    }

    /// A watcher for `side` (its dev account) on a new connection to its store file.
    pub(crate) fn watcher(&self, side: Side, secrets: &SecretMap, cfg: WatchConfig) -> Watcher {
        let (i, file) = match side {
            Side::A => (0, "a.db"),
            Side::B => (1, "b.db"),
        };
        let store = SqliteChannelStore::open(&self.dir.path().join(file)).unwrap();
        let mut w = Watcher::new(
            plain(&self.net),
            self.net.signer(i),
            store,
            Arc::new(secrets.clone()),
            cfg,
        );
        w.watch(self.chan.id(), 0);
        w
    }

    /// `by` closes with `s` (its own transaction); the record it committed.
    pub(crate) async fn close_with(&self, by: usize, s: &CoSigned) -> Record {
        let (sa, sb) = s.sigs().unwrap();
        let r = mined(self.contract(by).close(
            self.chan.params.clone(),
            s.state.clone(),
            s.locks.clone(),
            sa,
            sb,
        ))
        .await;
        Record::from(&r.decoded_log::<Channel::Closing>().unwrap().data)
    }

    pub(crate) async fn balance(&self, who: Address) -> U256 {
        self.net.provider().get_balance(who).await.unwrap()
    }

    pub(crate) async fn status(&self) -> u8 {
        self.contract(2)
            .status(self.chan.id())
            .call()
            .await
            .unwrap()
            .st
    }

    /// Transactions mined from `who` (its nonce).
    pub(crate) async fn sent_by(&self, who: Address) -> u64 {
        self.net
            .provider()
            .get_transaction_count(who)
            .latest()
            .await
            .unwrap()
    }

    /// What `tx` cost its sender in fees (waiting for its receipt: the watcher returns once
    /// the transaction is sent, and anvil may mine it a moment later on a loaded machine).
    pub(crate) async fn fee(&self, tx: B256) -> U256 {
        for _ in 0..100 {
            if let Some(r) = self
                .net
                .provider()
                .get_transaction_receipt(tx)
                .await
                .unwrap()
            {
                return U256::from(r.gas_used) * U256::from(r.effective_gas_price);
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("{tx} not mined in 10 s");
    }

    /// The latest `Closing` record of the channel.
    pub(crate) async fn record(&self) -> Record {
        let logs = self
            .contract(2)
            .Closing_filter()
            .topic1(self.chan.id())
            .from_block(0)
            .query()
            .await
            .unwrap();
        Record::from(&logs.last().expect("a Closing event").0)
    }
}

/// The transactions one tick broadcast, by action kind.
pub(crate) fn sent_kinds(r: &eth_channel::Report) -> Vec<&'static str> {
    r.sent
        .iter()
        .map(|(a, _)| match a {
            Action::Update { .. } => "update",
            Action::Reveal { .. } => "reveal",
            Action::Close { .. } => "close",
            Action::Settle { .. } => "settle",
            Action::SettleFinal { .. } => "settleFinal",
            Action::WithdrawCredit { .. } => "credit",
        })
        .collect()
}

pub(crate) fn no_errors(r: &eth_channel::Report) {
    assert!(r.errors.is_empty(), "{:?}", r.errors);
}

#[tokio::test]
async fn a_stale_close_is_answered_and_the_cheater_gets_only_the_latest_balance() {
    let mut env = Env::start().await;
    env.pay(Side::A, 3 * ONE, 1).await;
    let old = env.sb.history(env.b.id()).unwrap()[1].clone();
    assert_eq!(old.state.balanceB, 8 * ONE);
    env.pay(Side::B, 5 * ONE, 2).await;
    env.pay(Side::A, ONE, 3).await;
    let latest = env.a.latest().clone();
    assert_eq!(
        (
            latest.state.version,
            latest.state.balanceA,
            latest.state.balanceB
        ),
        (6, 11 * ONE, 4 * ONE)
    );
    let secrets = SecretMap::new();
    let mut wa = env.watcher(Side::A, &secrets, WatchConfig::default());
    // Open and nothing due: nothing sent.
    let r = wa.tick().await.unwrap();
    no_errors(&r);
    assert!(r.sent.is_empty(), "{r:?}");

    // B closes with version 2 (B: 8 ETH instead of 4).
    let rec = env.close_with(1, &old).await;
    assert_eq!(rec.version, 2);
    let r = wa.tick().await.unwrap();
    no_errors(&r);
    assert_eq!(sent_kinds(&r), ["update"]);
    let r = wa.tick().await.unwrap();
    no_errors(&r);
    assert!(r.sent.is_empty(), "{r:?}");
    assert_eq!(r.finished.len(), 1);
    assert_eq!(r.finished[0].status, TxStatus::Mined);
    assert_eq!(env.record().await.version, 6);
    // Before the deadline nothing else happens.
    assert!(wa.tick().await.unwrap().sent.is_empty());

    env.net.advance_time(HOUR + 1).await;
    let (a0, b0) = (
        env.balance(env.chan.params.a).await,
        env.balance(env.chan.params.b).await,
    );
    let held = env.balance(env.chan.contract).await;
    let r = wa.tick().await.unwrap();
    no_errors(&r);
    assert_eq!(sent_kinds(&r), ["settle"]);
    let settle_fee = env.fee(r.sent[0].1).await;
    wa.tick().await.unwrap();
    assert_eq!(env.status().await, 3, "settled");
    let (a1, b1) = (
        env.balance(env.chan.params.a).await,
        env.balance(env.chan.params.b).await,
    );
    assert_eq!(a1 + settle_fee - a0, U256::from(11 * ONE));
    assert_eq!(
        b1 - b0,
        U256::from(4 * ONE),
        "the cheater gets the latest state's balance"
    );
    assert_eq!(
        held - env.balance(env.chan.contract).await,
        U256::from(15 * ONE)
    );
    // Settled: nothing more to do, ever.
    let r = wa.tick().await.unwrap();
    no_errors(&r);
    assert!(r.sent.is_empty() && r.waiting.is_empty(), "{r:?}");
    let txs = env.sa.watcher_txs(env.chan.params.a).unwrap();
    assert_eq!(txs.len(), 2);
    assert!(txs.iter().all(|t| t.status == TxStatus::Mined), "{txs:?}");
}

#[tokio::test]
async fn a_lock_is_enforced_on_chain_when_the_peer_goes_silent() {
    let mut env = Env::start().await;
    env.pay(Side::A, ONE, 1).await;
    // A locks 2 ETH for B, then goes silent; B knows the preimage.
    let (pre, expiry) = env.lock(Side::A, 2 * ONE, 7, 2 * HOUR).await;
    let latest = env.b.latest().clone();
    assert_eq!(latest.locks.len(), 1);
    let secrets = SecretMap::new();
    secrets.insert(pre);
    let cfg = WatchConfig {
        claim_window: 900,
        ..WatchConfig::default()
    };
    let mut wb = env.watcher(Side::B, &secrets, cfg);
    let r = wb.tick().await.unwrap();
    no_errors(&r);
    assert!(r.sent.is_empty(), "not due yet: {r:?}");
    let hashlock = hashlock_of(&pre);
    assert_eq!(
        env.chan
            .revealed_at(env.net.provider(), hashlock)
            .await
            .unwrap(),
        None
    );

    // Inside the claim window: reveal and close.
    let now = env.now().await;
    env.net.advance_time(expiry - 800 - now).await;
    let r = wb.tick().await.unwrap();
    no_errors(&r);
    assert_eq!(sent_kinds(&r), ["reveal", "close"]);
    let r = wb.tick().await.unwrap();
    no_errors(&r);
    assert_eq!(r.finished.len(), 2, "{r:?}");
    let t = env
        .chan
        .revealed_at(env.net.provider(), hashlock)
        .await
        .unwrap();
    assert!(t.is_some_and(|t| t < expiry), "{t:?}");
    assert_eq!(env.status().await, 2, "closing");
    assert_eq!(env.record().await.version, latest.state.version);

    env.net.advance_time(HOUR + 1).await;
    let (a0, b0) = (
        env.balance(env.chan.params.a).await,
        env.balance(env.chan.params.b).await,
    );
    let r = wb.tick().await.unwrap();
    no_errors(&r);
    assert_eq!(sent_kinds(&r), ["settle"]);
    let fee = env.fee(r.sent[0].1).await;
    wb.tick().await.unwrap();
    assert_eq!(env.status().await, 3);
    let (a1, b1) = (
        env.balance(env.chan.params.a).await,
        env.balance(env.chan.params.b).await,
    );
    // A: 10 - 1 - 2; B: 5 + 1 + the lock.
    assert_eq!(latest.state.balanceA, 7 * ONE);
    assert_eq!(a1 - a0, U256::from(7 * ONE));
    assert_eq!(b1 + fee - b0, U256::from(latest.state.balanceB + 2 * ONE));
    assert_eq!(b1 + fee - b0 + (a1 - a0), U256::from(15 * ONE));
}

#[tokio::test]
async fn an_expired_lock_is_not_revealed_and_returns_to_its_sender() {
    let mut env = Env::start().await;
    let (pre, expiry) = env.lock(Side::A, 2 * ONE, 9, 700).await;
    let latest = env.a.latest().clone();
    let secrets = SecretMap::new();
    secrets.insert(pre);
    let mut wb = env.watcher(Side::B, &secrets, WatchConfig::default());
    // The watcher was not running until after the expiry.
    env.net.advance_time(800).await;
    let now = env.now().await;
    assert!(now >= expiry);
    let r = wb.tick().await.unwrap();
    no_errors(&r);
    assert!(r.sent.is_empty(), "{r:?}");
    let hashlock = hashlock_of(&pre);
    assert!(
        r.skipped
            .iter()
            .any(|s| matches!(s, Skip::Expired { hashlock: h, .. } if *h == hashlock)),
        "{r:?}"
    );
    // A closes with the latest state; B's watcher still does not reveal, and settles.
    env.close_with(0, &latest).await;
    let r = wb.tick().await.unwrap();
    no_errors(&r);
    assert!(r.sent.is_empty(), "{r:?}");
    env.net.advance_time(HOUR + 1).await;
    let (a0, b0) = (
        env.balance(env.chan.params.a).await,
        env.balance(env.chan.params.b).await,
    );
    let r = wb.tick().await.unwrap();
    no_errors(&r);
    assert_eq!(sent_kinds(&r), ["settle"]);
    let fee = env.fee(r.sent[0].1).await;
    wb.tick().await.unwrap();
    assert_eq!(env.status().await, 3);
    assert_eq!(
        env.chan
            .revealed_at(env.net.provider(), hashlock)
            .await
            .unwrap(),
        None
    );
    let (a1, b1) = (
        env.balance(env.chan.params.a).await,
        env.balance(env.chan.params.b).await,
    );
    assert_eq!(a1 - a0, U256::from(10 * ONE), "the lock went back to A");
    assert_eq!(b1 + fee - b0, U256::from(5 * ONE));
    let txs = env.sb.watcher_txs(env.chan.params.b).unwrap();
    assert_eq!(txs.len(), 1, "only the settle: {txs:?}");
}

#[tokio::test]
async fn a_credited_payout_is_withdrawn() {
    let mut env = Env::start().await;
    env.pay(Side::A, 2 * ONE, 1).await;
    // B's address refuses ETH (its key still signs and sends).
    let who = env.chan.params.b;
    let code = ChannelParty::DEPLOYED_BYTECODE.to_string();
    env.net
        .rpc("anvil_setCode", serde_json::json!([who, code]))
        .await;
    let party = ChannelParty::new(who, env.w[2].clone());
    party
        .setRejecting(true)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    // The final state, closed cooperatively by a third party: B's 7 ETH are credited.
    env.update(Side::A, |p, now, c| p.propose_close(now, c).unwrap())
        .await;
    let fin = env.a.latest().clone();
    assert!(fin.state.isFinal);
    let (sa, sb) = fin.sigs().unwrap();
    mined(
        env.contract(2)
            .cooperativeClose(env.chan.params.clone(), fin.state.clone(), sa, sb),
    )
    .await;
    let credit = env
        .contract(2)
        .credit(who, Address::ZERO)
        .call()
        .await
        .unwrap();
    assert_eq!(credit, U256::from(7 * ONE));

    let to = Address::repeat_byte(0x77);
    let cfg = WatchConfig {
        credit_to: Some(to),
        ..WatchConfig::default()
    };
    let mut wb = env.watcher(Side::B, &SecretMap::new(), cfg);
    let r = wb.tick().await.unwrap();
    no_errors(&r);
    assert_eq!(sent_kinds(&r), ["credit"]);
    let r = wb.tick().await.unwrap();
    no_errors(&r);
    assert!(r.sent.is_empty(), "{r:?}");
    assert_eq!(env.balance(to).await, U256::from(7 * ONE));
    let left = env
        .contract(2)
        .credit(who, Address::ZERO)
        .call()
        .await
        .unwrap();
    assert_eq!(left, U256::ZERO);
}

#[tokio::test]
async fn two_watchers_on_one_store_never_send_a_transaction_twice() {
    let mut env = Env::start().await;
    env.pay(Side::A, 3 * ONE, 1).await;
    let old = env.sb.history(env.b.id()).unwrap()[1].clone();
    env.pay(Side::B, 5 * ONE, 2).await;
    let secrets = SecretMap::new();
    let mut w1 = env.watcher(Side::A, &secrets, WatchConfig::default());
    let mut w2 = env.watcher(Side::A, &secrets, WatchConfig::default());
    let me = env.chan.params.a;
    let n0 = env.sent_by(me).await;
    env.close_with(1, &old).await;
    // Blocks only when asked: both watchers see each other's transactions pending.
    env.net
        .rpc("evm_setAutomine", serde_json::json!([false]))
        .await;
    let (mut sent, mut waited) = (0, 0);
    for round in 0..8 {
        if round == 4 {
            env.net.advance_time(HOUR + 1).await;
        }
        let (r1, r2) = tokio::join!(w1.tick(), w2.tick());
        let (r1, r2) = (r1.unwrap(), r2.unwrap());
        no_errors(&r1);
        no_errors(&r2);
        sent += r1.sent.len() + r2.sent.len();
        waited += r1.waiting.len() + r2.waiting.len();
        if round % 2 == 1 {
            env.net.mine(1).await;
        }
    }
    assert!(
        waited >= 2,
        "each action was seen pending by a watcher that did not send it"
    );
    assert_eq!(env.status().await, 3, "settled");
    // One update and one settle, whichever watcher sent them.
    assert_eq!(env.sent_by(me).await - n0, 2);
    assert_eq!(sent, 2);
    let txs = env.sa.watcher_txs(me).unwrap();
    assert_eq!(txs.len(), 2, "{txs:?}");
    assert!(txs.iter().all(|t| t.status == TxStatus::Mined));
}

#[tokio::test]
async fn a_watcher_restarted_after_recording_broadcasts_the_recorded_transaction() {
    let mut env = Env::start().await;
    env.pay(Side::A, 3 * ONE, 1).await;
    let old = env.sb.history(env.b.id()).unwrap()[1].clone();
    env.pay(Side::B, 5 * ONE, 2).await;
    let me = env.chan.params.a;
    env.close_with(1, &old).await;
    let secrets = SecretMap::new();
    let n0 = env.sent_by(me).await;
    let recorded = {
        let mut w = env.watcher(Side::A, &secrets, WatchConfig::default());
        let (planned, skipped) = w.plan_now(env.chan.id()).await.unwrap();
        assert!(skipped.is_empty());
        assert_eq!(planned.len(), 1);
        assert!(matches!(
            planned[0].action,
            Action::Update { version: 4, .. }
        ));
        w.prepare(&planned[0]).await.unwrap().expect("recorded")
        // Crash: dropped before the broadcast.
    };
    let node = env.net.provider();
    assert!(node
        .get_transaction_by_hash(recorded.hash)
        .await
        .unwrap()
        .is_none());
    assert_eq!(env.sent_by(me).await, n0);

    let mut w = env.watcher(Side::A, &secrets, WatchConfig::default());
    let mut finished = vec![];
    for _ in 0..4 {
        let r = w.tick().await.unwrap();
        no_errors(&r);
        assert!(r.sent.is_empty(), "nothing new is built: {r:?}");
        // The recorded transaction is out (broadcast again by the first tick).
        assert!(node
            .get_transaction_by_hash(recorded.hash)
            .await
            .unwrap()
            .is_some());
        finished.extend(r.finished);
    }
    assert_eq!(finished.len(), 1, "{finished:?}");
    assert_eq!(finished[0].tx, recorded.hash);
    assert_eq!(finished[0].status, TxStatus::Mined);
    assert_eq!(env.sent_by(me).await, n0 + 1);
    assert_eq!(env.record().await.version, 4);
    let txs = env.sa.watcher_txs(me).unwrap();
    assert_eq!(txs.len(), 1);
}

#[tokio::test]
async fn a_node_that_is_down_is_a_transient_error() {
    let env = Env::start().await;
    let store = SqliteChannelStore::open(&env.dir.path().join("a.db")).unwrap();
    // Nothing listens on port 1.
    let provider = ProviderBuilder::new()
        .connect_http("http://127.0.0.1:1".parse().unwrap())
        .erased();
    let mut w = Watcher::new(
        provider,
        env.net.signer(0),
        store,
        Arc::new(SecretMap::new()),
        WatchConfig::default(),
    );
    w.watch(env.chan.id(), 0);
    let e = w.tick().await.unwrap_err();
    assert!(e.is_transient(), "{e:?}");
    // Keys never show.
    let shown = format!("{w:?}");
    assert!(shown.contains(&format!("{:?}", env.chan.params.a)));
    let key = alloy::hex::encode(env.net.signer(0).to_bytes());
    assert!(!shown.contains(&key));
    let secrets = SecretMap::new();
    secrets.insert(B256::repeat_byte(0x42));
    assert!(!format!("{secrets:?}").contains(&alloy::hex::encode(B256::repeat_byte(0x42))));
}

#[tokio::test]
async fn a_close_racing_a_final_state_is_ended_at_once_by_settle_final() {
    let mut env = Env::start().await;
    env.pay(Side::A, 3 * ONE, 1).await;
    let old = env.sb.history(env.b.id()).unwrap()[1].clone();
    env.pay(Side::B, ONE, 2).await;
    env.update(Side::A, |p, now, c| p.propose_close(now, c).unwrap())
        .await;
    let fin = env.a.latest().clone();
    assert!(fin.state.isFinal);
    assert_eq!((fin.state.balanceA, fin.state.balanceB), (8 * ONE, 7 * ONE));
    let mut wa = env.watcher(Side::A, &SecretMap::new(), WatchConfig::default());
    // B closes with an old state instead of the cooperative close.
    env.close_with(1, &old).await;
    let (a0, b0) = (
        env.balance(env.chan.params.a).await,
        env.balance(env.chan.params.b).await,
    );
    let r = wa.tick().await.unwrap();
    no_errors(&r);
    assert_eq!(sent_kinds(&r), ["settleFinal"]);
    let fee = env.fee(r.sent[0].1).await;
    let r = wa.tick().await.unwrap();
    no_errors(&r);
    assert!(r.sent.is_empty());
    assert_eq!(env.status().await, 3, "settled before any deadline");
    let (a1, b1) = (
        env.balance(env.chan.params.a).await,
        env.balance(env.chan.params.b).await,
    );
    assert_eq!(a1 + fee - a0, U256::from(8 * ONE));
    assert_eq!(b1 - b0, U256::from(7 * ONE));
}

#[tokio::test]
async fn a_transaction_stuck_below_the_base_fee_is_replaced_with_higher_fees() {
    use alloy::consensus::Transaction as _;
    use alloy::eips::eip2718::Decodable2718;
    let mut env = Env::start().await;
    env.pay(Side::A, 3 * ONE, 1).await;
    let old = env.sb.history(env.b.id()).unwrap()[1].clone();
    env.pay(Side::B, 5 * ONE, 2).await;
    let me = env.chan.params.a;
    let cfg = WatchConfig {
        bump_after_blocks: 2,
        ..WatchConfig::default()
    };
    let mut wa = env.watcher(Side::A, &SecretMap::new(), cfg);
    env.close_with(1, &old).await;
    let n0 = env.sent_by(me).await;
    env.net
        .rpc("evm_setAutomine", serde_json::json!([false]))
        .await;
    let r = wa.tick().await.unwrap();
    no_errors(&r);
    assert_eq!(sent_kinds(&r), ["update"]);
    let first = r.sent[0].1;
    let txs = env.sa.watcher_txs(me).unwrap();
    let raw = txs[0].raw.clone();
    let max_fee = alloy::consensus::TxEnvelope::decode_2718(&mut raw.as_slice())
        .unwrap()
        .max_fee_per_gas();
    // Blocks whose base fee is above what it offers: it stays pending.
    let mine_above = |fee: u128| {
        let net = &env.net;
        async move {
            net.rpc(
                "anvil_setNextBlockBaseFeePerGas",
                serde_json::json!([format!("0x{fee:x}")]),
            )
            .await;
            net.mine(1).await;
        }
    };
    for _ in 0..2 {
        mine_above(max_fee + 1).await;
    }
    let node = env.net.provider();
    assert!(node.get_transaction_receipt(first).await.unwrap().is_none());
    let r = wa.tick().await.unwrap();
    no_errors(&r);
    assert!(r.sent.is_empty(), "{r:?}");
    let txs = env.sa.watcher_txs(me).unwrap();
    assert_eq!(txs.len(), 2, "{txs:?}");
    assert_eq!(
        (txs[0].status, txs[1].status),
        (TxStatus::Replaced, TxStatus::Pending)
    );
    assert_eq!(txs[0].nonce, txs[1].nonce);
    let second = txs[1].hash;
    // The replacement pays more than that base fee: mined in the next such block.
    mine_above(max_fee + 1).await;
    let r = wa.tick().await.unwrap();
    no_errors(&r);
    assert_eq!(r.finished.len(), 1, "{r:?}");
    assert_eq!(
        (r.finished[0].tx, r.finished[0].status),
        (second, TxStatus::Mined)
    );
    assert!(node.get_transaction_receipt(first).await.unwrap().is_none());
    assert_eq!(env.sent_by(me).await, n0 + 1);
    assert_eq!(env.record().await.version, 4);
}
