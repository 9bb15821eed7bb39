//! Gas measurements of the HTLC on a devnet, from transaction receipts. Used by the gas
//! benchmark (`cargo bench -p eth-adapter --bench gas`) and by a test that keeps the figures
//! below their targets.

use alloy::network::EthereumWallet;
use alloy::primitives::{Address, B256, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use sha2::{Digest, Sha256};

use eth_adapter::bindings::HTLC;

use crate::anvil::Devnet;
use crate::test_contracts::TestToken;

/// Gas used by each operation (from receipts, so including the 21,000 base cost).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GasReport {
    /// `lock` (ETH).
    pub eth_lock: u64,
    /// `claim` (ETH), sent by the recipient.
    pub eth_claim: u64,
    /// `refund` (ETH), sent by the sender.
    pub eth_refund: u64,
    /// `lockToken`: the HTLC held none of the token, the sender keeps a balance and allowance.
    pub erc20_lock: u64,
    /// `claimToken`, sent by the recipient, who held none of the token; empties the HTLC.
    pub erc20_claim: u64,
    /// `refundToken`, sent by the sender; empties the HTLC.
    pub erc20_refund: u64,
    /// `claimBatch` of one ETH swap.
    pub batch_1: u64,
    /// `claimBatch` of twenty ETH swaps to the same recipient.
    pub batch_20: u64,
}

impl GasReport {
    /// Gas per swap added to a batch claim.
    pub fn batch_per_extra(&self) -> u64 {
        (self.batch_20 - self.batch_1) / 19
    }
}

/// Boltz EtherSwap/ERC20Swap v6 on anvil 1.7.1, the figures to beat (from issue 4):
/// ETH lock, claim, refund; ERC-20 lock, claim, refund.
pub const BOLTZ_V6: [u64; 6] = [47_621, 32_088, 31_583, 86_898, 53_704, 36_586];

fn wallet(net: &Devnet, i: usize) -> DynProvider {
    ProviderBuilder::new()
        .wallet(EthereumWallet::from(net.signer(i)))
        .connect_http(
            net.url()
                .parse()
                .unwrap_or_else(|e| panic!("devnet url: {e}")),
        )
        .erased()
}

fn secret(n: u64) -> (B256, B256) {
    let pre = B256::from(U256::from(n) + U256::from(1u128 << 100));
    (pre, B256::from_slice(&Sha256::digest(pre.0)))
}

macro_rules! gas {
    ($call:expr) => {{
        let r = $call
            .send()
            .await
            .unwrap_or_else(|e| panic!("send: {e}"))
            .get_receipt()
            .await
            .unwrap_or_else(|e| panic!("receipt: {e}"));
        assert!(r.status(), "reverted");
        r.gas_used
    }};
}

async fn now(net: &Devnet) -> u64 {
    net.provider()
        .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
        .await
        .unwrap_or_else(|e| panic!("rpc: {e}"))
        .unwrap_or_else(|| panic!("no latest block"))
        .header
        .timestamp
}

/// Deploys the HTLC and a test token on `net` and measures every operation.
///
/// # Panics
/// On any failure (it is a benchmark and test helper).
pub async fn measure(net: &Devnet) -> GasReport {
    let (pa, pb) = (wallet(net, 0), wallet(net, 1));
    let (alice, bob) = (net.address(0), net.address(1));
    let a = HTLC::deploy(pa.clone())
        .await
        .unwrap_or_else(|e| panic!("deploy: {e}"));
    let htlc = *a.address();
    let b = HTLC::new(htlc, pb.clone());
    let amt = U256::from(10u128.pow(18));
    let mut n = 0u64;
    let mut next = || {
        n += 1;
        secret(n)
    };

    let exp = U256::from(now(net).await + 3600);
    let (pre, hl) = next();
    let eth_lock = gas!(a.lock(hl, bob, exp).value(amt));
    let eth_claim = gas!(b.claim(pre, amt, alice, bob, exp));
    let (_, hl) = next();
    let exp_short = U256::from(now(net).await + 60);
    gas!(a.lock(hl, bob, exp_short).value(amt));
    net.advance_time(61).await;
    let eth_refund = gas!(a.refund(hl, amt, alice, bob, exp_short));

    let tok = TestToken::deploy(pa.clone(), "Bench".into(), 18)
        .await
        .unwrap_or_else(|e| panic!("deploy token: {e}"));
    let t = *tok.address();
    gas!(tok.mint(alice, amt * U256::from(1000)));
    gas!(tok.approve(htlc, amt * U256::from(1000)));
    let exp = U256::from(now(net).await + 3600);
    let (pre, hl) = next();
    let erc20_lock = gas!(a.lockToken(hl, t, amt, bob, exp));
    let erc20_claim = gas!(b.claimToken(pre, t, amt, alice, bob, exp));
    let (_, hl) = next();
    let exp_short = U256::from(now(net).await + 60);
    gas!(a.lockToken(hl, t, amt, bob, exp_short));
    net.advance_time(61).await;
    let erc20_refund = gas!(a.refundToken(hl, t, amt, alice, bob, exp_short));

    let exp = U256::from(now(net).await + 3600);
    let entry = HTLC::Swap {
        amount: amt,
        token: Address::ZERO,
        sender: alice,
        recipient: bob,
        expiry: exp,
    };
    let one: Vec<_> = (0..1).map(|_| next()).collect();
    let twenty: Vec<_> = (0..20).map(|_| next()).collect();
    for (_, hl) in one.iter().chain(twenty.iter()) {
        gas!(a.lock(*hl, bob, exp).value(amt));
    }
    let batch_1 = gas!(b.claimBatch(one.iter().map(|s| s.0).collect(), vec![entry.clone()]));
    let batch_20 = gas!(b.claimBatch(
        twenty.iter().map(|s| s.0).collect(),
        vec![entry.clone(); 20]
    ));
    GasReport {
        eth_lock,
        eth_claim,
        eth_refund,
        erc20_lock,
        erc20_claim,
        erc20_refund,
        batch_1,
        batch_20,
    }
}
