//! Announcing a new channel (`Open` / `Opened`) over real TCP, checked against a real anvil:
//! accepted when the receiver is party B, on its chain and contract, with the channel open;
//! refused with a typed code, and nothing recorded, otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use alloy::eips::BlockNumberOrTag;
use alloy::network::EthereumWallet;
use alloy::primitives::{Address, B256, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use devnet::anvil::Devnet;
use eth_adapter::bindings::Channel;
use eth_adapter::channel::{ChannelRef, Params, Side};
use eth_channel::msg::UpdateKind;
use eth_channel::{
    ChannelStore, Config, Node, Party, RejectCode, RpcChain, SessionConfig, SessionError,
    SqliteChannelStore,
};
use swap_net::Identity;
use tokio::net::TcpListener;

const ONE: u128 = 1_000_000_000_000_000_000;

struct Who {
    key: PrivateKeySigner,
    net: Identity,
    store: Arc<SqliteChannelStore>,
    node: Node,
}

fn who(net: &Devnet, i: usize) -> Who {
    let key = net.signer(i);
    let id = Identity::generate().unwrap();
    let store = Arc::new(SqliteChannelStore::in_memory().unwrap());
    let chain = RpcChain::new(net.provider().clone(), BlockNumberOrTag::Latest);
    let node = Node::new(
        id.clone(),
        key.clone(),
        Config::default(),
        SessionConfig {
            request_timeout: Duration::from_secs(10),
            ..SessionConfig::default()
        },
        store.clone(),
        Arc::new(chain),
    );
    Who {
        key,
        net: id,
        store,
        node,
    }
}

fn wallet(net: &Devnet, i: usize) -> DynProvider {
    ProviderBuilder::new()
        .wallet(EthereumWallet::from(net.signer(i)))
        .connect_http(net.url().parse().unwrap())
        .erased()
}

struct Env {
    net: Devnet,
    contract: Address,
    chain_id: u64,
    a: Who,
    b: Who,
}

impl Env {
    /// Anvil, the contract, A (account 0) dialing B (account 1), which accepts channels of
    /// the contract on anvil's chain.
    async fn start() -> Self {
        let net = Devnet::start().await;
        let contract = *Channel::deploy(wallet(&net, 0)).await.unwrap().address();
        let chain_id = net.provider().get_chain_id().await.unwrap();
        let (a, b) = (who(&net, 0), who(&net, 1));
        assert!(b.node.accept_opens(chain_id, contract));
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let node = b.node.clone();
        tokio::spawn(async move { node.serve(l).await });
        a.node.connect(addr, b.net.public()).await.unwrap();
        for _ in 0..200 {
            if b.node.connected(a.net.public()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Self {
            net,
            contract,
            chain_id,
            a,
            b,
        }
    }

    fn chan(&self, b: Address, chain_id: u64, contract: Address, salt: u8) -> ChannelRef {
        ChannelRef::new(
            Params {
                a: self.a.key.address(),
                b,
                token: Address::ZERO,
                challengePeriod: 3600,
                salt: B256::repeat_byte(salt),
            },
            chain_id,
            contract,
        )
    }

    /// A deposits `wei` into `chan` on chain (opening it), if the chain and contract are ours.
    async fn fund(&self, chan: &ChannelRef, wei: u128) {
        let c = Channel::new(self.contract, wallet(&self.net, 0));
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

    /// A records `chan` with the deposits `(da, db)` and serves it with B.
    fn record(&self, chan: &ChannelRef, da: u128, db: u128) {
        Party::open(
            chan.clone(),
            Side::A,
            self.a.key.clone(),
            Config::default(),
            da,
            db,
            &*self.a.store,
        )
        .unwrap();
        self.a
            .node
            .add_channel(chan.id(), self.b.net.public())
            .unwrap();
    }

    /// A announces `chan`; B must refuse it with `code` and record nothing.
    async fn refused(&self, chan: &ChannelRef, code: RejectCode) {
        match self.a.node.announce(chan.id()).await {
            Err(SessionError::Refused { code: c, .. }) => assert_eq!(c, code),
            other => panic!("expected a refusal {code:?}, got {other:?}"),
        }
        assert_eq!(self.b.store.load(chan.id()).unwrap(), None);
        assert!(self.b.store.channel_ids().unwrap().is_empty());
        assert!(matches!(
            self.b.node.with_party(chan.id(), |_| ()),
            Err(SessionError::UnknownChannel(_))
        ));
    }
}

#[tokio::test]
async fn an_open_channel_is_accepted_with_deposits_read_from_the_chain() {
    let env = Env::start().await;
    let chan = env.chan(env.b.key.address(), env.chain_id, env.contract, 1);
    env.fund(&chan, 3 * ONE).await;
    env.record(&chan, 3 * ONE, 0);
    env.a.node.announce(chan.id()).await.unwrap();
    let saved = env.b.store.load(chan.id()).unwrap().unwrap();
    assert_eq!(saved.me, Side::B);
    assert_eq!(saved.chan, chan);
    assert_eq!(
        (saved.latest.state.depositA, saved.latest.state.depositB),
        (3 * ONE, 0)
    );
    assert_eq!(
        env.b.store.peer(chan.id()).unwrap().unwrap().key,
        env.a.net.public().0
    );
    // Announced again (a lost answer): the same answer, nothing new.
    env.a.node.announce(chan.id()).await.unwrap();
    assert_eq!(env.b.store.channel_ids().unwrap(), vec![chan.id()]);
    // B serves it: an update goes through.
    let v = env
        .a
        .node
        .propose(
            chan.id(),
            UpdateKind::Withdraw {
                amount: ONE,
                expiry: eth_channel::ChainView::now(&RpcChain::new(
                    env.net.provider().clone(),
                    BlockNumberOrTag::Latest,
                )) + 3600,
            },
        )
        .await
        .unwrap();
    assert_eq!(v, 1);
    let b_latest = env
        .b
        .node
        .with_party(chan.id(), |p| p.latest().clone())
        .unwrap();
    assert_eq!(b_latest.state.withdrawnA, ONE);
}

#[tokio::test]
async fn wrong_chain_contract_party_or_unopened_channels_are_refused_and_change_nothing() {
    let env = Env::start().await;
    // Another chain id (the contract of ours).
    let chan = env.chan(env.b.key.address(), env.chain_id + 1, env.contract, 2);
    env.record(&chan, ONE, 0);
    env.refused(&chan, RejectCode::WrongChain).await;
    // Another contract.
    let other = *Channel::deploy(wallet(&env.net, 2))
        .await
        .unwrap()
        .address();
    let chan = env.chan(env.b.key.address(), env.chain_id, other, 3);
    env.record(&chan, ONE, 0);
    env.refused(&chan, RejectCode::WrongContract).await;
    // B is not the receiver's key (account 2's channel, opened on chain).
    let chan = env.chan(env.net.address(2), env.chain_id, env.contract, 4);
    env.fund(&chan, ONE).await;
    env.record(&chan, ONE, 0);
    env.refused(&chan, RejectCode::NotParty).await;
    // Ours, but not open on chain yet.
    let chan = env.chan(env.b.key.address(), env.chain_id, env.contract, 5);
    env.record(&chan, ONE, 0);
    env.refused(&chan, RejectCode::NotOpen).await;
    // Once funded it is accepted.
    env.fund(&chan, ONE).await;
    env.a.node.announce(chan.id()).await.unwrap();
    assert_eq!(env.b.store.channel_ids().unwrap(), vec![chan.id()]);
}
