//! The channel rail against real anvil and `Channel.sol`, two Nodes over TCP on localhost:
//! lock and claim, refund after expiry, idempotent lock, claim with the peer offline, a claim
//! the peer will not countersign enforced on chain by the watcher, typed rejects, and a whole
//! swap through `swap_core::Driver` with one leg on chain and one in the channel.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use alloy::eips::BlockNumberOrTag;
use alloy::network::EthereumWallet;
use alloy::primitives::{Address, B256, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use devnet::anvil::Devnet;
use eth_adapter::bindings::Channel;
use eth_adapter::channel::{ChannelRef, Params, Side};
use eth_channel::{
    ChainView, ChannelRail, ChannelStore, Config, Node, Party, RpcChain, SessionConfig,
    SqliteChannelStore, WatchConfig, Watcher,
};
use swap_core::params::{Finality, Network};
use swap_core::rail::{Cause, HtlcParams, HtlcStatus, Rail, RailBody, RailData};
use swap_core::types::{
    Account, Amount, Asset, EvmAddress, Expiry, Height, Preimage, SwapId, Timestamp, Wei,
};
use swap_net::Identity;
use tokio::net::TcpListener;

pub(crate) const ONE: u128 = 1_000_000_000_000_000_000;
pub(crate) const DEP_A: u128 = 10 * ONE;
pub(crate) const DEP_B: u128 = 5 * ONE;

pub(crate) fn wallet(net: &Devnet, i: usize) -> DynProvider {
    ProviderBuilder::new()
        .wallet(EthereumWallet::from(net.signer(i)))
        .connect_http(net.url().parse().unwrap())
        .erased()
}

pub(crate) fn plain(net: &Devnet) -> DynProvider {
    ProviderBuilder::new()
        .connect_http(net.url().parse().unwrap())
        .erased()
}

/// One side: its store, node and rail.
pub(crate) struct Peer {
    pub(crate) net_id: Identity,
    pub(crate) store: SqliteChannelStore,
    pub(crate) node: Node,
    pub(crate) rail: ChannelRail,
    pub(crate) addr: Address,
}

pub(crate) struct Env {
    pub(crate) net: Devnet,
    pub(crate) chan: ChannelRef,
    pub(crate) a: Peer,
    pub(crate) b: Peer,
    pub(crate) b_addr: std::net::SocketAddr,
    pub(crate) start: Height,
}

pub(crate) fn side(net: &Devnet, i: usize, margin: u64) -> Peer {
    let net_id = Identity::generate().unwrap();
    let store = SqliteChannelStore::in_memory().unwrap();
    let chain = RpcChain::new(plain(net), BlockNumberOrTag::Latest);
    let shared: Arc<dyn ChannelStore> = Arc::new(store.clone());
    let node = Node::new(
        net_id.clone(),
        net.signer(i),
        Config {
            min_expiry_margin: margin,
        },
        SessionConfig {
            request_timeout: Duration::from_secs(5),
            crossing_wait: Duration::from_secs(2),
            busy_retry: Duration::from_millis(50),
            ..SessionConfig::default()
        },
        shared.clone(),
        Arc::new(chain.clone()),
    );
    let rail = ChannelRail::new(
        node.clone(),
        shared,
        chain,
        net.address(i),
        Network::Regtest,
    );
    Peer {
        net_id,
        store,
        node,
        rail,
        addr: net.address(i),
    }
}

impl Env {
    /// Anvil, the contract, an ETH channel between accounts 0 (A) and 1 (B) funded with 10
    /// and 5 ETH; both nodes serve it, A connected to B.
    pub(crate) async fn start(salt: u8) -> Self {
        Self::start_with(salt, 2).await
    }

    /// [`Env::start`] with B refusing locks that expire within `margin_b` seconds.
    pub(crate) async fn start_with(salt: u8, margin_b: u64) -> Self {
        let net = Devnet::start().await;
        let w0 = wallet(&net, 0);
        let contract = *Channel::deploy(w0.clone()).await.unwrap().address();
        let chain_id = net.provider().get_chain_id().await.unwrap();
        let chan = ChannelRef::new(
            Params {
                a: net.address(0),
                b: net.address(1),
                token: Address::ZERO,
                challengePeriod: 3600,
                salt: B256::repeat_byte(salt),
            },
            chain_id,
            contract,
        );
        for (i, wei) in [(0, DEP_A), (1, DEP_B)] {
            let c = Channel::new(contract, wallet(&net, i));
            let r = c
                .deposit(chan.params.clone())
                .value(U256::from(wei))
                .send()
                .await
                .unwrap()
                .get_receipt()
                .await
                .unwrap();
            assert!(r.status());
        }
        let (a, b) = (side(&net, 0, 2), side(&net, 1, margin_b));
        for (s, me, peer) in [(&a, Side::A, &b), (&b, Side::B, &a)] {
            Party::open(
                chan.clone(),
                me,
                net.signer(if me == Side::A { 0 } else { 1 }),
                Config {
                    min_expiry_margin: 2,
                },
                DEP_A,
                DEP_B,
                &s.store,
            )
            .unwrap();
            s.node.add_channel(chan.id(), peer.net_id.public()).unwrap();
            s.rail.add_channel(chan.id());
        }
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let b_addr = l.local_addr().unwrap();
        let node = b.node.clone();
        tokio::spawn(async move { node.serve(l).await });
        let start = Height(net.provider().get_block_number().await.unwrap());
        let env = Self {
            net,
            chan,
            a,
            b,
            b_addr,
            start,
        };
        env.link().await;
        env
    }

    /// A dials B; returns once both ends have the connection up.
    pub(crate) async fn link(&self) {
        let (pa, pb) = (self.a.net_id.public(), self.b.net_id.public());
        self.a.node.connect(self.b_addr, pb).await.unwrap();
        for _ in 0..200 {
            if self.a.node.connected(pb) && self.b.node.connected(pa) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no connection");
    }

    pub(crate) fn unlink(&self) {
        self.a.node.disconnect(self.b.net_id.public());
        self.b.node.disconnect(self.a.net_id.public());
    }

    /// A leg locking `amount` wei from A to B on `sha256(pre)` until `now + ttl` (seconds).
    pub(crate) fn leg(&self, pre: &Preimage, amount: u128, ttl: u64) -> HtlcParams {
        let now = RpcChain::new(plain(&self.net), BlockNumberOrTag::Latest).now();
        HtlcParams {
            swap_id: SwapId([pre.as_bytes()[0]; 16]),
            key_index: 0,
            hashlock: pre.hashlock(),
            asset: Asset::Eth,
            amount: Amount::Wei(Wei(amount)),
            sender: Account::Evm(EvmAddress(self.a.addr.0 .0)),
            recipient: Account::Evm(EvmAddress(self.b.addr.0 .0)),
            expiry: Expiry::Time(Timestamp(now + ttl)),
            watch_from: self.start,
            rail_data: Some(RailData::new(RailBody::EvmChannel {
                channel_id: self.chan.id().0,
            })),
        }
    }

    /// Balances (A, B) and number of locks in each side's latest co-signed state; both
    /// sides must agree.
    pub(crate) fn state(&self) -> (u128, u128, usize) {
        let of = |s: &Peer| {
            s.node
                .with_party(self.chan.id(), |p| {
                    let l = p.latest();
                    (l.state.balanceA, l.state.balanceB, l.locks.len())
                })
                .unwrap()
        };
        let (a, b) = (of(&self.a), of(&self.b));
        assert_eq!(a, b, "both sides hold the same latest state");
        a
    }
}

pub(crate) fn pre(n: u8) -> Preimage {
    Preimage::from_bytes([n; 32])
}

fn assert_funded(s: &HtlcStatus, h: &HtlcParams) {
    match s {
        HtlcStatus::Funded { lock, finality } => {
            assert_eq!(*finality, Finality::Irrevocable);
            assert_eq!(lock.amount, h.amount);
            assert_eq!(lock.hashlock, h.hashlock);
            assert_eq!(lock.expiry, h.expiry);
            assert_eq!(lock.sender, h.sender);
            assert_eq!(lock.recipient, h.recipient);
        }
        other => panic!("expected funded, got {other:?}"),
    }
}

fn assert_claimed(s: &HtlcStatus, p: &Preimage) -> Finality {
    match s {
        HtlcStatus::Claimed {
            preimage, finality, ..
        } => {
            assert_eq!(preimage, p);
            *finality
        }
        other => panic!("expected claimed, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_then_claim_is_seen_on_both_sides() {
    let env = Env::start(1).await;
    let p = pre(1);
    let h = env.leg(&p, 2 * ONE, 3600);
    assert_eq!(
        env.a.rail.htlc_status(&h).await.unwrap(),
        HtlcStatus::Absent
    );
    env.a.rail.verify().await.unwrap();
    assert_eq!(env.a.rail.funds(&Asset::Eth).await.unwrap().balance, DEP_A);
    assert_eq!(env.b.rail.funds(&Asset::Eth).await.unwrap().balance, DEP_B);

    let r = env.a.rail.lock(&h).await.unwrap();
    assert_funded(&env.a.rail.htlc_status(&h).await.unwrap(), &h);
    assert_funded(&env.b.rail.htlc_status(&h).await.unwrap(), &h);
    assert_eq!(env.state(), (DEP_A - 2 * ONE, DEP_B, 1));
    // Only the recipient claims, only the sender locks.
    let e = env.b.rail.lock(&h).await.unwrap_err();
    assert_eq!(e.cause, Cause::Invalid);
    let e = env.a.rail.claim(&h, &p).await.unwrap_err();
    assert_eq!(e.cause, Cause::Invalid);
    // A wrong preimage is refused before anything is signed.
    let e = env.b.rail.claim(&h, &pre(9)).await.unwrap_err();
    assert_eq!(e.cause, Cause::Invalid);

    let c = env.b.rail.claim(&h, &p).await.unwrap();
    assert_ne!(c, r);
    for rail in [&env.a.rail, &env.b.rail] {
        let f = assert_claimed(&rail.htlc_status(&h).await.unwrap(), &p);
        assert_eq!(f, Finality::Irrevocable);
    }
    assert_eq!(env.state(), (DEP_A - 2 * ONE, DEP_B + 2 * ONE, 0));
    assert_eq!(
        env.a.rail.funds(&Asset::Eth).await.unwrap().balance,
        DEP_A - 2 * ONE
    );
    assert_eq!(
        env.b.rail.funds(&Asset::Eth).await.unwrap().balance,
        DEP_B + 2 * ONE
    );
    // Claiming again answers the same claim; locking again the same lock.
    assert_eq!(env.b.rail.claim(&h, &p).await.unwrap(), c);
    assert_eq!(env.a.rail.lock(&h).await.unwrap(), r);
    // A refund of a claimed lock: already spent.
    let e = env.a.rail.refund(&h).await.unwrap_err();
    assert_eq!(e.cause, Cause::AlreadySpent);
    assert_eq!(env.state(), (DEP_A - 2 * ONE, DEP_B + 2 * ONE, 0));

    // The swap finished: its lock leaves the rails' caches; asked for again, it is read
    // anew, still claimed (never absent). A second lock locked after that is seen too.
    let p2 = pre(2);
    let h2 = env.leg(&p2, ONE, 3600);
    for rail in [&env.a.rail, &env.b.rail] {
        rail.forget(&h).await;
        assert_eq!(rail.htlc_status(&h2).await.unwrap(), HtlcStatus::Absent);
        assert_claimed(&rail.htlc_status(&h).await.unwrap(), &p);
        rail.forget(&h).await;
    }
    env.a.rail.lock(&h2).await.unwrap();
    for rail in [&env.a.rail, &env.b.rail] {
        assert_funded(&rail.htlc_status(&h2).await.unwrap(), &h2);
        assert_claimed(&rail.htlc_status(&h).await.unwrap(), &p);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lock_is_refunded_by_a_cancel() {
    let env = Env::start(2).await;
    let p = pre(2);
    let h = env.leg(&p, ONE, 4);
    env.a.rail.lock(&h).await.unwrap();
    assert_eq!(env.state(), (DEP_A - ONE, DEP_B, 1));
    // Before the expiry: not ready, with the expiry as the time it may succeed.
    let e = env.a.rail.refund(&h).await.unwrap_err();
    assert_eq!(
        e.cause,
        Cause::NotReady {
            until: Some(h.expiry)
        }
    );
    assert!(e.is_transient());
    assert_eq!(env.state(), (DEP_A - ONE, DEP_B, 1));

    let Expiry::Time(t) = h.expiry else {
        unreachable!()
    };
    let clock = RpcChain::new(plain(&env.net), BlockNumberOrTag::Latest);
    while clock.now() < t.0 {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // A cancel is judged by the chain's time: a block at or after the expiry.
    env.net.mine(1).await;
    // Expired: the recipient can no longer claim it.
    let e = env.b.rail.claim(&h, &p).await.unwrap_err();
    assert!(!e.is_transient(), "{e:?}");
    let r = env.a.rail.refund(&h).await.unwrap();
    for rail in [&env.a.rail, &env.b.rail] {
        match rail.htlc_status(&h).await.unwrap() {
            HtlcStatus::Refunded { txref, finality } => {
                assert_eq!(txref, r);
                assert_eq!(finality, Finality::Irrevocable);
            }
            other => panic!("expected refunded, got {other:?}"),
        }
    }
    assert_eq!(env.state(), (DEP_A, DEP_B, 0));
    // Refunding again answers the same cancel; claiming now: already spent.
    assert_eq!(env.a.rail.refund(&h).await.unwrap(), r);
    let e = env.b.rail.claim(&h, &p).await.unwrap_err();
    assert_eq!(e.cause, Cause::AlreadySpent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locking_twice_makes_one_lock() {
    let env = Env::start(3).await;
    let p = pre(3);
    let h = env.leg(&p, ONE, 3600);
    let r1 = env.a.rail.lock(&h).await.unwrap();
    let r2 = env.a.rail.lock(&h).await.unwrap();
    assert_eq!(r1, r2);
    assert_eq!(env.state(), (DEP_A - ONE, DEP_B, 1));
    let history = env.a.store.history(env.chan.id()).unwrap();
    assert_eq!(history.len(), 1, "one co-signed update");

    // With the peer offline: the proposal stays pending, a second call sends no second one.
    let p2 = pre(4);
    let h2 = env.leg(&p2, ONE, 3600);
    env.unlink();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let e = env.a.rail.lock(&h2).await.unwrap_err();
    assert!(e.is_transient(), "{e:?}");
    assert_eq!(e.cause, Cause::Unavailable);
    // In flight: funded "in the mempool", not yet irrevocable.
    match env.a.rail.htlc_status(&h2).await.unwrap() {
        HtlcStatus::Funded { finality, .. } => assert_eq!(finality, Finality::Mempool),
        other => panic!("expected an update in flight, got {other:?}"),
    }
    assert_eq!(
        env.b.rail.htlc_status(&h2).await.unwrap(),
        HtlcStatus::Absent
    );
    let e = env.a.rail.lock(&h2).await.unwrap_err();
    assert!(e.is_transient(), "{e:?}");
    let pending = env
        .a
        .node
        .with_party(env.chan.id(), |p| p.pending().cloned());
    assert_eq!(pending.unwrap().unwrap().state.version, 2);
    // Reconnected: the same proposal completes; locking again answers it.
    env.link().await;
    let mut done = None;
    for _ in 0..100 {
        if let Ok(r) = env.a.rail.lock(&h2).await {
            done = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(done.is_some(), "the pending lock completed after reconnect");
    assert_eq!(env.state(), (DEP_A - 2 * ONE, DEP_B, 2));
    assert_eq!(env.a.store.history(env.chan.id()).unwrap().len(), 2);
    assert_funded(&env.b.rail.htlc_status(&h2).await.unwrap(), &h2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_with_the_peer_offline_completes_after_reconnect() {
    let env = Env::start(4).await;
    let p = pre(5);
    let h = env.leg(&p, 3 * ONE, 3600);
    env.a.rail.lock(&h).await.unwrap();
    env.unlink();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let e = env.b.rail.claim(&h, &p).await.unwrap_err();
    assert!(e.is_transient(), "{e:?}");
    assert_eq!(e.cause, Cause::Unavailable);
    // Nothing lost: the claim is signed and pending at B, the preimage is with the watcher's
    // source, and the lock still stands on both sides.
    assert!(env
        .b
        .node
        .with_party(env.chan.id(), |p| p.pending().is_some())
        .unwrap());
    use eth_channel::Secrets;
    assert_eq!(
        env.b.rail.secrets().preimage(&B256::from(h.hashlock.0)),
        Some(B256::from(*p.as_bytes()))
    );
    // A rail restarted on B's store (nothing in memory) still gives the watcher the secret
    // from the pending claim.
    let chain = RpcChain::new(plain(&env.net), BlockNumberOrTag::Latest);
    let shared: Arc<dyn ChannelStore> = Arc::new(env.b.store.clone());
    let node = Node::new(
        Identity::generate().unwrap(),
        env.net.signer(1),
        Config::default(),
        SessionConfig::default(),
        shared.clone(),
        Arc::new(chain.clone()),
    );
    node.add_channel(env.chan.id(), env.a.net_id.public())
        .unwrap();
    let fresh = ChannelRail::new(node, shared, chain, env.b.addr, Network::Regtest);
    assert_eq!(fresh.secrets().preimage(&B256::from(h.hashlock.0)), None);
    fresh.add_channel(env.chan.id());
    assert_eq!(
        fresh.secrets().preimage(&B256::from(h.hashlock.0)),
        Some(B256::from(*p.as_bytes()))
    );
    assert_funded(&env.a.rail.htlc_status(&h).await.unwrap(), &h);
    assert_funded(&env.b.rail.htlc_status(&h).await.unwrap(), &h);
    let e = env.b.rail.claim(&h, &p).await.unwrap_err();
    assert!(e.is_transient(), "{e:?}");
    assert_eq!(env.state(), (DEP_A - 3 * ONE, DEP_B, 1));

    // Reconnected (A dials): the pending claim goes out again and completes.
    env.link().await;
    let mut done = None;
    for _ in 0..100 {
        if let Ok(r) = env.b.rail.claim(&h, &p).await {
            done = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(done.is_some(), "the claim completed after reconnect");
    assert_claimed(&env.a.rail.htlc_status(&h).await.unwrap(), &p);
    assert_claimed(&env.b.rail.htlc_status(&h).await.unwrap(), &p);
    assert_eq!(env.state(), (DEP_A - 3 * ONE, DEP_B + 3 * ONE, 0));
    // The sender's store kept the peer's claim with its preimage: a rail restarted on that
    // store (a new node, nothing in memory) still reports it.
    let updates = env.a.store.updates(env.chan.id()).unwrap();
    assert!(matches!(
        updates.last().unwrap().1,
        Some(eth_channel::UpdateKind::Claim { .. })
    ));
    let chain = RpcChain::new(plain(&env.net), BlockNumberOrTag::Latest);
    let shared: Arc<dyn ChannelStore> = Arc::new(env.a.store.clone());
    let node = Node::new(
        Identity::generate().unwrap(),
        env.net.signer(0),
        Config::default(),
        SessionConfig::default(),
        shared.clone(),
        Arc::new(chain.clone()),
    );
    node.add_channel(env.chan.id(), env.b.net_id.public())
        .unwrap();
    let fresh = ChannelRail::new(node, shared, chain, env.a.addr, Network::Regtest);
    assert_claimed(&fresh.htlc_status(&h).await.unwrap(), &p);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_the_peer_ignores_is_enforced_on_chain_and_seen_by_the_sender() {
    let env = Env::start(5).await;
    let p = pre(6);
    // Expiring within the watcher's claim window: due for enforcement at once.
    let window = env.b.rail.min_claim_window();
    assert!(window > 0);
    let h = env.leg(&p, ONE, window / 2);
    env.a.rail.lock(&h).await.unwrap();
    // Observed twice at one tip: funded both times (the second answer from the first's
    // "not revealed at this block").
    for _ in 0..2 {
        let o = env.a.rail.observe(std::slice::from_ref(&h)).await.unwrap();
        assert_funded(o.statuses[0].as_ref().unwrap(), &h);
    }
    env.unlink();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let e = env.b.rail.claim(&h, &p).await.unwrap_err();
    assert!(e.is_transient(), "{e:?}");

    let mut w = Watcher::new(
        plain(&env.net),
        env.net.signer(1),
        env.b.store.clone(),
        Arc::new(env.b.rail.secrets()),
        WatchConfig {
            claim_window: window,
            ..WatchConfig::default()
        },
    );
    w.watch(env.chan.id(), env.start.0);
    let mut seen = None;
    for _ in 0..10 {
        let r = w.tick().await.unwrap();
        assert!(r.errors.is_empty(), "{r:?}");
        // Through one observation per tick, as the engine looks: the reveal is a new block,
        // so the remembered "not revealed" no longer answers once the rail reads the tip
        // again (it reuses a tip read for 250 ms).
        tokio::time::sleep(Duration::from_millis(300)).await;
        let o = env.a.rail.observe(std::slice::from_ref(&h)).await.unwrap();
        if let Ok(s @ HtlcStatus::Claimed { .. }) = &o.statuses[0] {
            seen = Some(s.clone());
            break;
        }
    }
    // A (the sender, offline to B) learns the preimage from the chain's secret registry.
    let s = seen.expect("the sender sees the on-chain reveal");
    // As deep as its block, and irrevocable once as deep as the chain's own HTLCs must be.
    let chain = swap_core::params::ChainParams::for_chain(env.b.rail.params().chain);
    match assert_claimed(&s, &p) {
        Finality::Depth(d) => {
            assert!(d >= 1 && !Finality::Depth(d).reaches(chain.required_finality()))
        }
        Finality::Irrevocable => {}
        f => panic!("an on-chain reveal is as deep as its block, got {f}"),
    }
    assert_claimed(&env.b.rail.htlc_status(&h).await.unwrap(), &p);
    // The sender can no longer refund it in the channel.
    let e = env.a.rail.refund(&h).await.unwrap_err();
    assert_eq!(e.cause, Cause::AlreadySpent);
}

/// A lock whose secret its receiver revealed on chain before the expiry belongs to the
/// receiver: the sender's cancel after the expiry is refused and changes nothing (a co-signed
/// cancel, a higher version, would replace the closing state that pays the receiver).
/// B reveals `p` in the contract's secret registry (mined).
async fn reveal_on_chain(env: &Env, p: &Preimage) {
    let c = Channel::new(env.chan.contract, wallet(&env.net, 1));
    let r = c
        .reveal(B256::from(*p.as_bytes()))
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(r.status());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_of_a_lock_revealed_in_time_is_refused() {
    let env = Env::start(9).await;
    let p = pre(10);
    let h = env.leg(&p, ONE, 4);
    env.a.rail.lock(&h).await.unwrap();
    let before = env.state();
    assert_eq!(before.2, 1);
    reveal_on_chain(&env, &p).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    // Expired by the chain's time too (a cancel is judged by it).
    env.net.mine(1).await;
    let e = env
        .a
        .node
        .propose(
            env.chan.id(),
            eth_channel::UpdateKind::CancelExpired {
                hashlock: B256::from(h.hashlock.0),
            },
        )
        .await
        .unwrap_err();
    match e {
        eth_channel::SessionError::Refused { code, .. } => {
            assert_eq!(code, eth_channel::RejectCode::SecretRevealed)
        }
        other => panic!("expected the cancel refused, got {other:?}"),
    }
    assert_eq!(env.state(), before, "nothing changed");
}

/// No lock on a hashlock whose secret is already in the contract's registry (it would pay
/// its receiver outright): refused, nothing proposed, also when the rail kept "not revealed"
/// answers for other locks at the tip before the reveal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_on_a_revealed_hashlock_is_refused() {
    let env = Env::start(12).await;
    let p = pre(12);
    let h = env.leg(&p, ONE, 3600);
    // Another lock, and its status: "not revealed" kept for the tip before the reveal.
    let other = pre(13);
    let h_other = env.leg(&other, ONE, 3600);
    env.a.rail.lock(&h_other).await.unwrap();
    assert_funded(&env.a.rail.htlc_status(&h_other).await.unwrap(), &h_other);
    reveal_on_chain(&env, &p).await;
    let before = env.state();
    // The rail's tip is kept 250 ms: the refusal does not depend on it being read again.
    let e = env.a.rail.lock(&h).await.unwrap_err();
    assert_eq!(e.cause, Cause::Invalid, "{e:?}");
    assert!(e.to_string().contains("already revealed"), "{e}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let e = env.a.rail.lock(&h).await.unwrap_err();
    assert_eq!(e.cause, Cause::Invalid, "{e:?}");
    assert_eq!(env.state(), before, "nothing proposed");
    assert_eq!(env.a.store.history(env.chan.id()).unwrap().len(), 1);
}

/// A reveal after a lock's expiry leaves that lock "not revealed in time" (its sender gets it
/// back), but it still forbids a new lock on the same hashlock: the status's answer is not
/// taken for the lock guard's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reveal_after_an_expiry_still_forbids_a_new_lock() {
    let env = Env::start(14).await;
    let p = pre(14);
    let first = env.leg(&p, ONE, 4);
    env.a.rail.lock(&first).await.unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    env.net.mine(1).await;
    reveal_on_chain(&env, &p).await;
    // The first lock's status: not claimed (revealed too late), kept for this tip.
    let o = env
        .a
        .rail
        .observe(std::slice::from_ref(&first))
        .await
        .unwrap();
    assert!(
        !matches!(o.statuses[0], Ok(HtlcStatus::Claimed { .. })),
        "{:?}",
        o.statuses[0]
    );
    let before = env.state();
    let second = env.leg(&p, 2 * ONE, 3600);
    let e = env.a.rail.lock(&second).await.unwrap_err();
    assert_eq!(e.cause, Cause::Invalid, "{e:?}");
    assert!(e.to_string().contains("already revealed"), "{e}");
    assert_eq!(env.state(), before, "nothing proposed");
}

/// Legs watched from the block the rail's first status read: their statuses at one tip
/// cost one read of the registry's events in all (not one lookup per leg), a reveal on
/// chain is found among the events of the blocks after (one lookup, for that leg alone,
/// for its time and preimage), a leg watched from before the scan's start is looked up on
/// its own, a reorganisation that brings a reveal into a block already read is seen (the
/// scan starts again), and so is a long gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_read_the_registrys_events_once_per_block() {
    let env = Env::start(40).await;
    let tip = env.net.provider().get_block_number().await.unwrap();
    let legs: Vec<HtlcParams> = (41..45)
        .map(|n| {
            let mut h = env.leg(&pre(n), ONE, 3600);
            h.watch_from = Height(tip);
            h
        })
        .collect();
    for h in &legs {
        env.a.rail.lock(h).await.unwrap();
    }
    // B, the receiver, has read nothing of the registry yet; A, the sender, looked each
    // hashlock up before locking on it, and began reading the blocks' events.
    assert_eq!(env.b.rail.registry_reads(), (0, 0));
    assert_eq!(env.a.rail.registry_reads(), (4, 1), "and began its scan");
    let o = env.b.rail.observe(&legs).await.unwrap();
    for (s, h) in o.statuses.iter().zip(&legs) {
        assert_funded(s.as_ref().unwrap(), h);
    }
    assert_eq!(
        env.b.rail.registry_reads(),
        (0, 1),
        "one event read, no lookup"
    );
    // The same tip read again after the rail's tip expired: nothing read.
    tokio::time::sleep(Duration::from_millis(300)).await;
    env.b.rail.observe(&legs).await.unwrap();
    assert_eq!(env.b.rail.registry_reads(), (0, 1));

    // B reveals the second leg's secret on chain (a block): found among the new block's
    // events, looked up alone.
    reveal_on_chain(&env, &pre(42)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let o = env.b.rail.observe(&legs).await.unwrap();
    assert_claimed(o.statuses[1].as_ref().unwrap(), &pre(42));
    for i in [0, 2, 3] {
        assert_funded(o.statuses[i].as_ref().unwrap(), &legs[i]);
    }
    assert_eq!(env.b.rail.registry_reads(), (1, 2));
    // The sender learns the preimage the same way.
    let o = env.a.rail.observe(&legs).await.unwrap();
    assert_claimed(o.statuses[1].as_ref().unwrap(), &pre(42));
    assert_funded(o.statuses[0].as_ref().unwrap(), &legs[0]);
    assert_eq!(env.a.rail.registry_reads(), (5, 2));

    // A leg watched from before the scan's first block: looked up on its own.
    let mut early = env.leg(&pre(45), ONE, 3600);
    early.watch_from = Height(tip - 1);
    env.a.rail.lock(&early).await.unwrap();
    let o = env
        .b
        .rail
        .observe(std::slice::from_ref(&early))
        .await
        .unwrap();
    assert_funded(o.statuses[0].as_ref().unwrap(), &early);
    assert_eq!(env.b.rail.registry_reads(), (2, 2));

    // A reorganisation that brings a reveal in below the block the scan reached: the scan
    // starts again at the new tip, which no leg's watch reaches back to (each is looked up),
    // and the reveal is found.
    let snapshot = env.net.rpc("evm_snapshot", serde_json::json!([])).await;
    env.net.mine(1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let o = env.b.rail.observe(&legs[2..]).await.unwrap();
    assert_funded(o.statuses[0].as_ref().unwrap(), &legs[2]);
    assert_eq!(env.b.rail.registry_reads(), (2, 3), "the empty block read");
    env.net
        .rpc("evm_revert", serde_json::json!([snapshot]))
        .await;
    reveal_on_chain(&env, &pre(43)).await;
    env.net.mine(1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let o = env.b.rail.observe(&legs[2..]).await.unwrap();
    assert_claimed(o.statuses[0].as_ref().unwrap(), &pre(43));
    assert_funded(o.statuses[1].as_ref().unwrap(), &legs[3]);
    assert_eq!(env.b.rail.registry_reads(), (4, 4));

    // A gap of more blocks than a scan walks (64): the scan starts again at the tip (one
    // block read), and the leg is looked up on its own.
    env.net.mine(70).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let o = env.b.rail.observe(&legs[3..]).await.unwrap();
    assert_funded(o.statuses[0].as_ref().unwrap(), &legs[3]);
    assert_eq!(env.b.rail.registry_reads(), (5, 5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_the_peer_refuses_is_rejected_with_its_code() {
    // B wants locks to run at least an hour; A proposes one of ten minutes.
    let env = Env::start_with(6, 3600).await;
    let p = pre(7);
    let h = env.leg(&p, ONE, 600);
    let e = env.a.rail.lock(&h).await.unwrap_err();
    assert_eq!(
        e.cause,
        Cause::Rejected {
            code: Some(eth_channel::rail::reject_number(
                eth_channel::RejectCode::BadExpiry
            ))
        }
    );
    assert!(!e.is_transient());
    assert_eq!(
        env.b.rail.htlc_status(&h).await.unwrap(),
        HtlcStatus::Absent
    );
    assert_eq!(env.state(), (DEP_A, DEP_B, 0));
    // Our own party refuses a lock beyond our balance before anything is signed.
    let h2 = env.leg(&pre(8), DEP_A + 1, 7200);
    let from_b = HtlcParams {
        sender: h2.recipient,
        recipient: h2.sender,
        ..h2
    };
    let e2 = env.b.rail.lock(&from_b).await.unwrap_err();
    assert!(matches!(e2.cause, Cause::Rejected { .. }), "{e2:?}");
    assert!(env
        .b
        .node
        .with_party(env.chan.id(), |p| p.pending().is_none())
        .unwrap());
}

/// A whole swap through `swap_core::Driver`: the initiator (B, account 1) locks ETH on chain
/// in the HTLC contract, the responder (A, account 0) locks ETH in the channel; the initiator
/// claims in the channel (revealing the secret to A), A claims on chain with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swap_with_one_leg_on_chain_and_one_in_the_channel() {
    use eth_adapter::{EthChain, EthConfig};
    use swap_core::params::{ChainFamily, ChainId, ChainParams, RailId, RailKind};
    use swap_core::store::SqliteStore;
    use swap_core::terms::{LegTerms, SafetyPolicy, SwapTerms, Tips};
    use swap_core::{Driver, DriverConfig, Outcome, Role, SwapRecord};

    let env = Env::start(7).await;
    let eth = ChainId::new(ChainFamily::Ethereum, Network::Regtest);
    let htlc = EthChain::deploy(&env.net.url(), env.net.signer(0))
        .await
        .unwrap();
    let on_chain = |i: usize| {
        let mut cfg = EthConfig::new(env.net.url(), htlc, ChainParams::for_chain(eth));
        cfg.poll_interval = Duration::from_millis(20);
        cfg.receipt_timeout = Duration::from_secs(30);
        Arc::new(EthChain::new(cfg, env.net.signer(i)).unwrap())
    };
    let (chain_a, chain_b) = (on_chain(0), on_chain(1));
    let tip = env.a.rail.tip().await.unwrap();
    let tips = Tips { x: tip, y: tip };
    let secret = pre(9);
    let (x_amount, y_amount) = (ONE, 2 * ONE);
    let evm = |a: Address| Account::Evm(EvmAddress(a.0 .0));
    let terms = SwapTerms::with_default_expiries(
        SwapId([9; 16]),
        secret.hashlock(),
        LegTerms {
            params: ChainParams::for_chain(eth),
            asset: Asset::Eth,
            amount: Amount::Wei(Wei(x_amount)),
            sender: evm(env.b.addr),
            recipient: evm(env.a.addr),
            expiry: Expiry::Time(Timestamp(0)),
            rail_data: None,
        },
        LegTerms {
            params: ChainParams::for_rail(RailId::new(eth, RailKind::EvmChannel)),
            asset: Asset::Eth,
            amount: Amount::Wei(Wei(y_amount)),
            sender: evm(env.a.addr),
            recipient: evm(env.b.addr),
            expiry: Expiry::Time(Timestamp(0)),
            rail_data: Some(RailData::new(RailBody::EvmChannel {
                channel_id: env.chan.id().0,
            })),
        },
        SafetyPolicy::default(),
        tips,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let driver = |name: &str, onchain: Arc<EthChain>, rail: &ChannelRail| {
        let store = Arc::new(SqliteStore::open(dir.path().join(name)).unwrap());
        Arc::new(Driver::new(
            store,
            [
                onchain as Arc<dyn Rail>,
                Arc::new(rail.clone()) as Arc<dyn Rail>,
            ],
            DriverConfig {
                poll_interval: Duration::from_millis(200),
                ..DriverConfig::default()
            },
        ))
    };
    let initiator = driver("b.db", chain_b, &env.b.rail);
    let responder = driver("a.db", chain_a, &env.a.rail);
    let record = |role, secret| SwapRecord {
        terms: terms.clone(),
        role,
        secret,
        key_index: 0,
        watch_from: tips,
    };
    initiator
        .create(&record(Role::Initiator, Some(secret.clone())))
        .await
        .unwrap();
    responder
        .create(&record(Role::Responder, None))
        .await
        .unwrap();
    let (bal_a0, bal_b0) = (
        env.net.provider().get_balance(env.a.addr).await.unwrap(),
        env.net.provider().get_balance(env.b.addr).await.unwrap(),
    );
    let id = terms.id;
    let (ri, rr) = tokio::time::timeout(Duration::from_secs(120), async {
        tokio::join!(initiator.run_swap(id), responder.run_swap(id))
    })
    .await
    .expect("the swap finishes");
    assert_eq!(ri.unwrap(), Outcome::Swapped);
    assert_eq!(rr.unwrap(), Outcome::Swapped);
    // Channel: A's 2 ETH moved to B, co-signed on both sides.
    assert_eq!(env.state(), (DEP_A - y_amount, DEP_B + y_amount, 0));
    // Chain: B paid 1 ETH (plus gas) to A, who paid only gas.
    let (bal_a1, bal_b1) = (
        env.net.provider().get_balance(env.a.addr).await.unwrap(),
        env.net.provider().get_balance(env.b.addr).await.unwrap(),
    );
    let gas_cap = U256::from(ONE / 100);
    assert!(bal_b1 <= bal_b0 - U256::from(x_amount));
    assert!(bal_b1 + gas_cap >= bal_b0 - U256::from(x_amount));
    assert!(bal_a1 + gas_cap >= bal_a0 + U256::from(x_amount));
    assert!(bal_a1 <= bal_a0 + U256::from(x_amount));
}
