//! Shared setup for the integration tests: an anvil, a deployed HTLC, two adapters.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs
)]

pub mod channel;

use std::time::Duration;

use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use devnet::anvil::Devnet;
use eth_adapter::{EthChain, EthConfig};
use swap_core::params::{ChainFamily, ChainId, ChainParams, Network};
use swap_core::rail::HtlcParams;
use swap_core::types::{
    Account, Amount, Asset, EvmAddress, Expiry, Height, Preimage, SwapId, Timestamp, TokenUnits,
    Wei,
};

pub struct Env {
    pub net: Devnet,
    pub htlc: Address,
    /// Account 0: locks.
    pub alice: EthChain,
    /// Account 1: claims.
    pub bob: EthChain,
}

pub fn eth_params() -> ChainParams {
    ChainParams::for_chain(ChainId::new(ChainFamily::Ethereum, Network::Regtest))
}

pub fn chain_for(net: &Devnet, htlc: Address, account: usize) -> EthChain {
    let mut cfg = EthConfig::new(net.url(), htlc, eth_params());
    cfg.poll_interval = Duration::from_millis(20);
    cfg.receipt_timeout = Duration::from_secs(30);
    cfg.mempool_preimages = true;
    EthChain::new(cfg, net.signer(account)).expect("adapter")
}

pub async fn env() -> Env {
    env_with(&[]).await
}

pub async fn env_with(args: &[&str]) -> Env {
    let net = Devnet::start_with(args).await;
    let htlc = EthChain::deploy(&net.url(), net.signer(0))
        .await
        .expect("deploy");
    let alice = chain_for(&net, htlc, 0);
    let bob = chain_for(&net, htlc, 1);
    Env {
        net,
        htlc,
        alice,
        bob,
    }
}

pub fn evm(a: Address) -> Account {
    Account::Evm(EvmAddress(a.into_array()))
}

pub async fn now(net: &Devnet) -> u64 {
    net.provider()
        .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
        .await
        .unwrap()
        .unwrap()
        .header
        .timestamp
}

pub async fn height(net: &Devnet) -> u64 {
    net.provider().get_block_number().await.unwrap()
}

/// ETH swap from account `from` to account `to`, expiring `secs` from now.
pub async fn eth_swap(
    net: &Devnet,
    from: usize,
    to: usize,
    wei: u128,
    secs: u64,
) -> (HtlcParams, Preimage) {
    let pre = Preimage::random().unwrap();
    let p = HtlcParams {
        swap_id: SwapId::random().unwrap(),
        key_index: 0,
        hashlock: pre.hashlock(),
        asset: Asset::Eth,
        amount: Amount::Wei(Wei(wei)),
        sender: evm(net.address(from)),
        recipient: evm(net.address(to)),
        expiry: Expiry::Time(Timestamp(now(net).await + secs)),
        watch_from: Height(height(net).await),
        rail_data: None,
    };
    (p, pre)
}

/// ERC-20 swap.
pub async fn token_swap(
    net: &Devnet,
    token: Address,
    decimals: u8,
    from: usize,
    to: usize,
    units: u128,
    secs: u64,
) -> (HtlcParams, Preimage) {
    let (mut p, pre) = eth_swap(net, from, to, 1, secs).await;
    p.asset = Asset::Erc20 {
        token: EvmAddress(token.into_array()),
        decimals,
    };
    p.amount = Amount::Token(TokenUnits { units, decimals });
    (p, pre)
}

pub async fn balance(net: &Devnet, who: Address) -> U256 {
    net.provider().get_balance(who).await.unwrap()
}

pub fn evm_addr(net: &Devnet, i: usize) -> Address {
    net.address(i)
}
