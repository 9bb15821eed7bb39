//! Ethereum payment channels for the integration tests: the channel contract deployed on the
//! test's anvil, a channel between two accounts funded on chain by both, and each side's
//! channel node (serving and connected over TCP on localhost) and rail.

use std::sync::Arc;
use std::time::Duration;

use alloy::eips::BlockNumberOrTag;
use alloy::network::EthereumWallet;
use alloy::primitives::{Address, B256, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use eth_adapter::bindings::Channel;
use eth_adapter::channel::{ChannelRef, Params, Side};
use eth_channel::{
    ChannelRail, ChannelStore, Config, Node, Party, RpcChain, SessionConfig, SqliteChannelStore,
};
use swap_core::Network;
use swap_net::Identity;
use tokio::net::TcpListener;

use crate::Nodes;

/// One side of a channel: its node, store and rail.
pub struct ChannelSide {
    /// Its transport identity.
    pub net_id: Identity,
    /// Its channel states.
    pub store: SqliteChannelStore,
    /// Its channel node.
    pub node: Node,
    /// Its rail (counting the channel).
    pub rail: ChannelRail,
    /// Its Ethereum account.
    pub addr: Address,
}

impl ChannelSide {
    /// (ours, theirs) in the latest co-signed state of `chan`.
    pub fn balances(&self, chan: &ChannelRef) -> (u128, u128) {
        self.node
            .with_party(chan.id(), |p| {
                let s = &p.latest().state;
                match p.side() {
                    Side::A => (s.balanceA, s.balanceB),
                    Side::B => (s.balanceB, s.balanceA),
                }
            })
            .unwrap()
    }

    /// Locks in the latest co-signed state of `chan`.
    pub fn locks(&self, chan: &ChannelRef) -> usize {
        self.node
            .with_party(chan.id(), |p| p.latest().locks.len())
            .unwrap()
    }
}

fn wallet(nodes: &Nodes, i: usize) -> DynProvider {
    ProviderBuilder::new()
        .wallet(EthereumWallet::from(nodes.eth.signer(i)))
        .connect_http(nodes.eth.url().parse().unwrap())
        .erased()
}

fn side(nodes: &Nodes, account: usize) -> ChannelSide {
    let net_id = Identity::generate().unwrap();
    let store = SqliteChannelStore::in_memory().unwrap();
    let chain = RpcChain {
        provider: nodes.eth.provider().clone(),
        at: BlockNumberOrTag::Latest,
    };
    let shared: Arc<dyn ChannelStore> = Arc::new(store.clone());
    let node = Node::new(
        net_id.clone(),
        nodes.eth.signer(account),
        Config {
            min_expiry_margin: 60,
        },
        SessionConfig {
            request_timeout: Duration::from_secs(5),
            ..SessionConfig::default()
        },
        shared.clone(),
        Arc::new(chain.clone()),
    );
    let addr = nodes.eth.address(account);
    let rail = ChannelRail::new(node.clone(), shared, chain, addr, Network::Regtest);
    ChannelSide {
        net_id,
        store,
        node,
        rail,
        addr,
    }
}

/// Deploys the channel contract, opens an ETH channel between accounts `a` (party A) and `b`
/// (party B) with deposits `deposits` (wei) made on chain, records it on both sides, and
/// connects A to B (B serving on a local port). Returns (A, B, the channel).
pub async fn open_eth_channel(
    nodes: &Nodes,
    (a, b): (usize, usize),
    deposits: (u128, u128),
) -> (ChannelSide, ChannelSide, ChannelRef) {
    let contract = *Channel::deploy(wallet(nodes, a)).await.unwrap().address();
    let chain_id = nodes.eth.provider().get_chain_id().await.unwrap();
    let chan = ChannelRef::new(
        Params {
            a: nodes.eth.address(a),
            b: nodes.eth.address(b),
            token: Address::ZERO,
            challengePeriod: 3600,
            salt: B256::repeat_byte(0x5a),
        },
        chain_id,
        contract,
    );
    for (i, wei) in [(a, deposits.0), (b, deposits.1)] {
        if wei == 0 {
            continue;
        }
        let receipt = Channel::new(contract, wallet(nodes, i))
            .deposit(chan.params.clone())
            .value(U256::from(wei))
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await
            .unwrap();
        assert!(receipt.status(), "deposit reverted");
    }
    let (sa, sb) = (side(nodes, a), side(nodes, b));
    for (s, me, key, peer) in [(&sa, Side::A, a, &sb), (&sb, Side::B, b, &sa)] {
        Party::open(
            chan.clone(),
            me,
            nodes.eth.signer(key),
            Config {
                min_expiry_margin: 60,
            },
            deposits.0,
            deposits.1,
            &s.store,
        )
        .unwrap();
        s.node.add_channel(chan.id(), peer.net_id.public()).unwrap();
        s.rail.add_channel(chan.id());
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let b_addr = listener.local_addr().unwrap();
    let node = sb.node.clone();
    tokio::spawn(async move { node.serve(listener).await });
    let (pa, pb) = (sa.net_id.public(), sb.net_id.public());
    sa.node.connect(b_addr, pb).await.unwrap();
    for _ in 0..500 {
        if sa.node.connected(pb) && sb.node.connected(pa) {
            return (sa, sb, chan);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the channel nodes never connected");
}
