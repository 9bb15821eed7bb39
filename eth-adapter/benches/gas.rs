//! Gas benchmark: deploys the HTLC on a fresh anvil and prints the gas used (from receipts) by
//! each operation, beside Boltz EtherSwap/ERC20Swap v6 on anvil 1.7.1.
//!
//! Run: `cargo bench -p eth-adapter --bench gas`
//!
//! Conditions: the ETH claim is sent by the recipient and the refund by the sender (as Boltz's
//! own claim/refund do); the ERC-20 is `contracts/test/TestToken.sol` (plain mappings, finite
//! allowance that is decremented); each ERC-20 lock starts with the HTLC holding none of the
//! token, each claim pays a recipient holding none and empties the HTLC, each refund empties it.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use alloy::network::EthereumWallet;
use alloy::primitives::{Address, B256, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use eth_adapter::bindings::test_contracts::TestToken;
use eth_adapter::bindings::HTLC;
use eth_adapter::devnet::Devnet;
use sha2::{Digest, Sha256};

fn wallet(net: &Devnet, i: usize) -> DynProvider {
    ProviderBuilder::new()
        .wallet(EthereumWallet::from(net.signer(i)))
        .connect_http(net.url().parse().unwrap())
        .erased()
}

fn secret(n: u64) -> (B256, B256) {
    let pre = B256::from(U256::from(n) + U256::from(1u128 << 100));
    (pre, B256::from_slice(&Sha256::digest(pre.0)))
}

macro_rules! gas {
    ($call:expr) => {{
        let r = $call.send().await.unwrap().get_receipt().await.unwrap();
        assert!(r.status(), "reverted");
        r.gas_used
    }};
}

async fn now(net: &Devnet) -> u64 {
    net.provider()
        .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
        .await
        .unwrap()
        .unwrap()
        .header
        .timestamp
}

async fn run() {
    let net = Devnet::start().await;
    let (pa, pb) = (wallet(&net, 0), wallet(&net, 1));
    let (alice, bob) = (net.address(0), net.address(1));
    let a = HTLC::deploy(pa.clone()).await.unwrap();
    let htlc = *a.address();
    let b = HTLC::new(htlc, pb.clone());
    let amt = U256::from(10u128.pow(18));
    let mut n = 0u64;
    let mut next = || {
        n += 1;
        secret(n)
    };

    // ETH
    let exp = U256::from(now(&net).await + 3600);
    let (pre, hl) = next();
    let eth_lock = gas!(a.lock(hl, bob, exp).value(amt));
    let eth_claim = gas!(b.claim(pre, amt, alice, bob, exp));
    let (_, hl) = next();
    let exp_short = U256::from(now(&net).await + 60);
    gas!(a.lock(hl, bob, exp_short).value(amt));
    net.advance_time(61).await;
    let eth_refund = gas!(a.refund(hl, amt, alice, bob, exp_short));

    // ERC-20
    let tok = TestToken::deploy(pa.clone(), "Bench".into(), 18)
        .await
        .unwrap();
    let t = *tok.address();
    gas!(tok.mint(alice, amt * U256::from(1000)));
    gas!(tok.approve(htlc, amt * U256::from(1000)));
    let exp = U256::from(now(&net).await + 3600);
    let (pre, hl) = next();
    let erc_lock = gas!(a.lockToken(hl, t, amt, bob, exp));
    let erc_claim = gas!(b.claimToken(pre, t, amt, alice, bob, exp));
    let (_, hl) = next();
    let exp_short = U256::from(now(&net).await + 60);
    gas!(a.lockToken(hl, t, amt, bob, exp_short));
    net.advance_time(61).await;
    let erc_refund = gas!(a.refundToken(hl, t, amt, alice, bob, exp_short));

    // Batch claim (ETH, same recipient): batch of 1 versus batch of 20.
    let exp = U256::from(now(&net).await + 3600);
    let entry = HTLC::Swap {
        amount: amt,
        token: Address::ZERO,
        sender: alice,
        recipient: bob,
        expiry: exp,
    };
    let mut batch = |k: usize| {
        let v: Vec<_> = (0..k).map(|_| next()).collect();
        v
    };
    let one = batch(1);
    let twenty = batch(20);
    for (_, hl) in one.iter().chain(twenty.iter()) {
        gas!(a.lock(*hl, bob, exp).value(amt));
    }
    let g1 = gas!(b.claimBatch(one.iter().map(|s| s.0).collect(), vec![entry.clone()]));
    let g20 = gas!(b.claimBatch(
        twenty.iter().map(|s| s.0).collect(),
        vec![entry.clone(); 20]
    ));
    let per_extra = (g20 - g1) / 19;

    println!();
    println!("xswap HTLC gas (anvil, receipts' gasUsed; contract compiled by solc 0.8.33, see contracts/out/HTLC.json)");
    println!(
        "{:<34} {:>10} {:>12} {:>9}",
        "operation", "xswap", "Boltz v6", "delta"
    );
    let row = |name: &str, ours: u64, boltz: u64| {
        println!(
            "{:<34} {:>10} {:>12} {:>+9}",
            name,
            ours,
            boltz,
            ours as i64 - boltz as i64
        );
    };
    row("ETH lock", eth_lock, 47_621);
    row("ETH claim (by recipient)", eth_claim, 32_088);
    row("ETH refund (by sender)", eth_refund, 31_583);
    row("ERC-20 lock", erc_lock, 86_898);
    row("ERC-20 claim (by recipient)", erc_claim, 53_704);
    row("ERC-20 refund (by sender)", erc_refund, 36_586);
    println!("{:<34} {:>10} {:>12}", "batch claim, 1 swap", g1, "");
    println!("{:<34} {:>10} {:>12}", "batch claim, 20 swaps", g20, "");
    println!(
        "{:<34} {:>10} {:>12}",
        "batch claim, per additional swap", per_extra, "< 15,000"
    );
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(run());
}
