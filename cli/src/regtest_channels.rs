//! Channels between two parties on the regtest nodes ([`Nodes`]), for the demo's channel act
//! and the integration tests: a Lightning node per party on the Bitcoin-family node, a
//! Lightning channel between two of them, and an Ethereum payment channel (the channel
//! contract deployed on anvil, funded on chain by both) with each side's channel node and
//! rail.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::eips::BlockNumberOrTag;
use alloy::network::EthereumWallet;
use alloy::primitives::{Address, B256, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use anyhow::{anyhow, bail, ensure, Context};
use eth_adapter::bindings::Channel;
use eth_adapter::channel::{ChannelRef, Params, Side};
use eth_channel::{
    ChannelRail, ChannelStore, Config, Node, Party, RpcChain, SessionConfig, SqliteChannelStore,
    UpdateKind,
};
use ln_adapter::{LnConfig, LnEvent, LnNode, Seed};
use sha2::{Digest, Sha256};
use swap_core::Network;
use swap_net::Identity;
use tokio::net::TcpListener;

use crate::regtest::Nodes;

/// A Lightning node on the regtest node, funded from its own node wallet `wallet` (created
/// or loaded), its data in `dir/wallet`, polling the node every 200 ms.
pub async fn ln_node(
    nodes: &Nodes,
    wallet: &str,
    seed: [u8; 32],
    dir: &Path,
) -> anyhow::Result<Arc<LnNode>> {
    ln_node_with(nodes, wallet, seed, dir, |_| {}).await
}

/// [`ln_node`] with whatever `set` changes in its configuration.
pub async fn ln_node_with(
    nodes: &Nodes,
    wallet: &str,
    seed: [u8; 32],
    dir: &Path,
    set: impl FnOnce(&mut LnConfig),
) -> anyhow::Result<Arc<LnNode>> {
    nodes.btc.rpc().create_or_load_wallet(wallet).await?;
    let mut config = LnConfig::new(
        nodes.btc.chain_id(),
        nodes.btc.rpc_config(Some(wallet)),
        dir.join(wallet),
    );
    config.poll_interval = Duration::from_millis(200);
    set(&mut config);
    if config.anchors {
        // Anchor channels (Bitcoin) are accepted and opened only with the wallet's reserve
        // for their force-close fees.
        nodes
            .send_to_wallet(wallet, 4 * config.anchor_reserve_sats)
            .await?;
        nodes.btc.mine(1).await;
    }
    // Its data sealed as an installation's is, with a key of its own from its seed (the same
    // at every start on `dir`).
    let mut key = zeroize::Zeroizing::new([0u8; 32]);
    key.copy_from_slice(
        &Sha256::new_with_prefix(b"xswap/demo-ln-store/v1")
            .chain_update(seed)
            .finalize(),
    );
    config.store_key = Some(swap_core::store::StoreKey::from_bytes(&key));
    Ok(Arc::new(LnNode::start(config, &Seed::new(seed)).await?))
}

/// Funds `from`'s wallet `wallet` with `capacity_sats` and a margin for fees, opens a
/// Lightning channel of `capacity_sats` from `from` to `to`, and mines until both can use it.
pub async fn open_ln_channel(
    nodes: &Nodes,
    wallet: &str,
    (from, to): (&LnNode, &LnNode),
    capacity_sats: u64,
) -> anyhow::Result<()> {
    nodes
        .send_to_wallet(wallet, capacity_sats + 1_000_000)
        .await?;
    nodes.btc.mine(1).await;
    from.connect(to.node_id(), to.listen_addr()).await?;
    let mut events = from.subscribe();
    from.open_channel(to.node_id(), capacity_sats, 0).await?;
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Ok(LnEvent::ChannelPending { .. }) = events.recv().await {
                return;
            }
        }
    })
    .await
    .context("the Lightning channel's funding was never signed")?;
    let started = Instant::now();
    while !(from.channels().iter().any(|c| c.usable) && to.channels().iter().any(|c| c.usable)) {
        ensure!(
            started.elapsed() < Duration::from_secs(60),
            "the Lightning channel is not usable after 60 s"
        );
        nodes.btc.mine(1).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Ok(())
}

/// Closes every channel of `from` cooperatively and mines until none is left on either side.
pub async fn close_ln_channels(nodes: &Nodes, from: &LnNode, to: &LnNode) -> anyhow::Result<()> {
    // A swap ends when its claim is known; the commitment updates that settle the claimed
    // HTLCs may still be under way, and a channel with HTLCs cannot close cooperatively.
    let started = Instant::now();
    while ![from, to].iter().all(|n| {
        n.channels()
            .iter()
            .all(|c| c.inbound_htlcs.is_empty() && c.outbound_htlcs == 0)
    }) {
        ensure!(
            started.elapsed() < Duration::from_secs(30),
            "Lightning HTLCs still pending after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for c in from.channels() {
        from.close_channel(&c.channel_id, &c.counterparty)?;
    }
    let started = Instant::now();
    while !(from.channels().is_empty() && to.channels().is_empty()) {
        ensure!(
            started.elapsed() < Duration::from_secs(60),
            "the Lightning channels are not closed after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        nodes.btc.mine(1).await;
    }
    Ok(())
}

/// One side of an Ethereum channel: its node, store and rail.
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
    pub fn balances(&self, chan: &ChannelRef) -> anyhow::Result<(u128, u128)> {
        Ok(self.node.with_party(chan.id(), |p| {
            let s = &p.latest().state;
            match p.side() {
                Side::A => (s.balanceA, s.balanceB),
                Side::B => (s.balanceB, s.balanceA),
            }
        })?)
    }

    /// Locks in the latest co-signed state of `chan`.
    pub fn locks(&self, chan: &ChannelRef) -> anyhow::Result<usize> {
        Ok(self
            .node
            .with_party(chan.id(), |p| p.latest().locks.len())?)
    }

    /// Closes `chan` cooperatively: a final state co-signed with the peer, put on chain by us
    /// (one transaction, paying both sides at once). Returns the transaction's hash.
    pub async fn close(
        &self,
        nodes: &Nodes,
        account: usize,
        chan: &ChannelRef,
    ) -> anyhow::Result<B256> {
        self.node.propose(chan.id(), UpdateKind::Close).await?;
        let l = self.node.with_party(chan.id(), |p| p.latest().clone())?;
        let (sa, sb) = l
            .sigs()
            .ok_or_else(|| anyhow!("the final state is not co-signed"))?;
        let receipt = Channel::new(chan.contract, wallet(nodes, account))
            .cooperativeClose(chan.params.clone(), l.state.clone(), sa, sb)
            .send()
            .await?
            .get_receipt()
            .await?;
        ensure!(receipt.status(), "cooperativeClose reverted");
        Ok(receipt.transaction_hash)
    }
}

fn wallet(nodes: &Nodes, i: usize) -> DynProvider {
    ProviderBuilder::new()
        .wallet(EthereumWallet::from(nodes.eth.signer(i)))
        .connect_http(nodes.eth.url().parse().unwrap_or_else(|_| unreachable!()))
        .erased()
}

/// The least a channel lock must have left before its expiry to be accepted, seconds.
const MIN_EXPIRY_MARGIN: u64 = 60;

fn side(nodes: &Nodes, account: usize) -> anyhow::Result<ChannelSide> {
    let net_id = Identity::generate()?;
    // Sealed with a key of this side's own (random), as an installation's file is.
    let mut key = zeroize::Zeroizing::new([0u8; 32]);
    getrandom::getrandom(key.as_mut()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let store =
        SqliteChannelStore::in_memory_with_key(swap_core::store::StoreKey::from_bytes(&key))?;
    let chain = RpcChain::new(nodes.eth.provider().clone(), BlockNumberOrTag::Latest);
    let shared: Arc<dyn ChannelStore> = Arc::new(store.clone());
    let node = Node::new(
        net_id.clone(),
        nodes.eth.signer(account),
        Config {
            min_expiry_margin: MIN_EXPIRY_MARGIN,
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
    Ok(ChannelSide {
        net_id,
        store,
        node,
        rail,
        addr,
    })
}

/// Deploys the channel contract, opens an ETH channel between anvil accounts `a` (party A)
/// and `b` (party B) with `deposits` (wei) made on chain by each, records it on both sides,
/// and connects A to B (B serving on a local port). Returns (A, B, the channel, the on-chain
/// transactions it took: the deployment and the deposits).
pub async fn open_eth_channel(
    nodes: &Nodes,
    (a, b): (usize, usize),
    deposits: (u128, u128),
) -> anyhow::Result<(ChannelSide, ChannelSide, ChannelRef, usize)> {
    let contract = *Channel::deploy(wallet(nodes, a)).await?.address();
    let mut txs = 1;
    let chain_id = nodes.eth.provider().get_chain_id().await?;
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
            .await?
            .get_receipt()
            .await?;
        ensure!(receipt.status(), "the deposit reverted");
        txs += 1;
    }
    let (sa, sb) = (side(nodes, a)?, side(nodes, b)?);
    for (s, me, key, peer) in [(&sa, Side::A, a, &sb), (&sb, Side::B, b, &sa)] {
        Party::open(
            chan.clone(),
            me,
            nodes.eth.signer(key),
            Config {
                min_expiry_margin: MIN_EXPIRY_MARGIN,
            },
            deposits.0,
            deposits.1,
            &s.store,
        )?;
        s.node.add_channel(chan.id(), peer.net_id.public())?;
        s.rail.add_channel(chan.id());
    }
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let b_addr = listener.local_addr()?;
    let node = sb.node.clone();
    tokio::spawn(async move { node.serve(listener).await });
    let (pa, pb) = (sa.net_id.public(), sb.net_id.public());
    sa.node.connect(b_addr, pb).await?;
    for _ in 0..500 {
        if sa.node.connected(pb) && sb.node.connected(pa) {
            return Ok((sa, sb, chan, txs));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bail!("the channel nodes never connected")
}
