//! Gas measurements of the HTLC and of the payment channel contract on a devnet, from
//! transaction receipts. Used by the gas benchmark (`cargo bench -p eth-adapter --bench gas`)
//! and by tests that keep the figures below their targets.

use alloy::network::EthereumWallet;
use alloy::primitives::{Address, B256, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use sha2::{Digest, Sha256};

use eth_adapter::bindings::{Channel, HTLC};
use eth_adapter::channel::{locks_hash, ChannelRef, Lock, Params, Record, State};

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

/// The gas a successful call used (see [`receipt`]).
macro_rules! gas {
    ($call:expr) => {{
        receipt($call).await.gas_used
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

// ---------------------------------------------------------------- payment channels

/// Raiden's TokenNetwork gas (raiden-contracts gas.json, ERC-20 channels), the figures to beat:
/// open with deposit, deposit, cooperative settle, close, update non-closing balance proof,
/// settle, register secret, unlock one lock.
pub const RAIDEN: RaidenGas = RaidenGas {
    open_with_deposit: 146_956,
    deposit: 56_000,
    cooperative_settle: 112_270,
    close: 118_501,
    update: 90_516,
    settle: 108_569,
    register_secret: 46_181,
    unlock: 38_619,
};

/// Raiden's figure for each operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct RaidenGas {
    pub open_with_deposit: u64,
    pub deposit: u64,
    pub cooperative_settle: u64,
    pub close: u64,
    pub update: u64,
    pub settle: u64,
    pub register_secret: u64,
    pub unlock: u64,
}

impl RaidenGas {
    /// Close, update, register secret, settle and unlock one lock.
    pub fn unilateral_one_lock(&self) -> u64 {
        self.close + self.update + self.register_secret + self.settle + self.unlock
    }
}

/// Gas of each channel operation (receipts' `gasUsed`) for one asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelGas {
    /// First deposit by party A (opens the channel).
    pub open: u64,
    /// First deposit by party B (a top-up of an open channel).
    pub deposit: u64,
    /// Co-signed withdrawal paying A, sent by A.
    pub withdraw: u64,
    /// Cooperative close with a final state, sent by A, paying both.
    pub cooperative_close: u64,
    /// B ends a channel A is closing (without locks) at once with a final state, paying both.
    pub settle_final: u64,
    /// Unilateral close by A with a state holding one lock (A to B).
    pub close: u64,
    /// B replaces the closing state by a higher version (same lock).
    pub update: u64,
    /// B reveals the lock's preimage.
    pub reveal: u64,
    /// Settlement by B resolving the one lock (to B, revealed in time).
    pub settle_one_lock: u64,
    /// Settlement by B of a channel closed without locks.
    pub settle_no_lock: u64,
}

impl ChannelGas {
    /// Close, update, reveal and settle of a channel with one lock.
    pub fn unilateral_one_lock(&self) -> u64 {
        self.close + self.update + self.reveal + self.settle_one_lock
    }

    /// What one lock adds to a settlement (compare with Raiden's `unlock`).
    pub fn per_lock(&self) -> u64 {
        self.settle_one_lock.saturating_sub(self.settle_no_lock)
    }
}

/// Channel gas for ETH and for an ERC-20 (`contracts/test/TestToken.sol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelGasReport {
    /// ETH channels.
    pub eth: ChannelGas,
    /// ERC-20 channels.
    pub erc20: ChannelGas,
}

/// Deploys `Channel` (and a test token) on `net` and measures every channel operation, for ETH
/// and for an ERC-20. Parties are dev accounts 0 (A) and 1 (B); challenge period one hour.
///
/// # Panics
/// On any failure (it is a benchmark and test helper).
pub async fn measure_channel(net: &Devnet) -> ChannelGasReport {
    let (pa, pb) = (wallet(net, 0), wallet(net, 1));
    let ca = Channel::deploy(pa.clone())
        .await
        .unwrap_or_else(|e| panic!("deploy: {e}"));
    let contract = *ca.address();
    let tok = TestToken::deploy(pa.clone(), "Bench".into(), 18)
        .await
        .unwrap_or_else(|e| panic!("deploy token: {e}"));
    let t = *tok.address();
    let big = U256::from(10u128.pow(24));
    gas!(tok.mint(net.address(0), big));
    gas!(tok.mint(net.address(1), big));
    gas!(tok.approve(contract, big));
    gas!(TestToken::new(t, pb.clone()).approve(contract, big));
    let eth = measure_channel_asset(net, contract, Address::ZERO, 0).await;
    let erc20 = measure_channel_asset(net, contract, t, 100).await;
    ChannelGasReport { eth, erc20 }
}

async fn measure_channel_asset(
    net: &Devnet,
    contract: Address,
    token: Address,
    salt0: u8,
) -> ChannelGas {
    let chain_id = net
        .provider()
        .get_chain_id()
        .await
        .unwrap_or_else(|e| panic!("rpc: {e}"));
    let (ka, kb) = (net.signer(0), net.signer(1));
    let ca = Channel::new(contract, wallet(net, 0));
    let cb = Channel::new(contract, wallet(net, 1));
    let one: u128 = 10u128.pow(18);
    let chan = |salt: u8| {
        ChannelRef::new(
            Params {
                a: ka.address(),
                b: kb.address(),
                token,
                challengePeriod: 3600,
                salt: B256::repeat_byte(salt),
            },
            chain_id,
            contract,
        )
    };
    // Each party deposits `one`; returns the gas of A's and B's deposits.
    let fund = |c: ChannelRef| {
        let (ca, cb) = (ca.clone(), cb.clone());
        async move {
            let (a, b) = if token.is_zero() {
                (
                    gas!(ca.deposit(c.params.clone()).value(U256::from(one))),
                    gas!(cb.deposit(c.params.clone()).value(U256::from(one))),
                )
            } else {
                (
                    gas!(ca.depositToken(c.params.clone(), U256::from(one))),
                    gas!(cb.depositToken(c.params.clone(), U256::from(one))),
                )
            };
            (a, b)
        }
    };
    let t0 = now(net).await;
    let sign = |c: &ChannelRef, s: &State, locks: &[Lock]| {
        let sa = c
            .sign(&ka, s, locks, t0)
            .unwrap_or_else(|e| panic!("sign: {e}"));
        let sb = c
            .sign(&kb, s, locks, t0)
            .unwrap_or_else(|e| panic!("sign: {e}"));
        (sa, sb)
    };
    let state = |version: u64, a: u128, b: u128, locks: &[Lock]| State {
        version,
        balanceA: a,
        balanceB: b,
        locksHash: locks_hash(locks),
        depositA: one,
        depositB: one,
        withdrawnA: 0,
        withdrawnB: 0,
        withdrawExpiry: 0,
        isFinal: false,
    };

    // Open, top up, withdraw, cooperative close.
    let c1 = chan(salt0 + 1);
    let (open, deposit) = fund(c1.clone()).await;
    let mut w = state(1, one / 2, one, &[]);
    w.withdrawnA = one / 2;
    w.withdrawExpiry = t0 + 3600;
    let (sa, sb) = sign(&c1, &w, &[]);
    let withdraw = gas!(ca.withdraw(c1.params.clone(), w.clone(), vec![], sa, sb));
    let mut fin = state(2, one / 4, one + one / 4, &[]);
    fin.withdrawnA = one / 2;
    fin.isFinal = true;
    let (sa, sb) = sign(&c1, &fin, &[]);
    let cooperative_close = gas!(ca.cooperativeClose(c1.params.clone(), fin, sa, sb));

    // Unilateral path with one lock from A to B.
    let c2 = chan(salt0 + 2);
    fund(c2.clone()).await;
    let (pre, hashlock) = secret(u64::from(salt0) + 1_000);
    let lock = Lock {
        from: ka.address(),
        amount: one / 10,
        hashlock,
        expiry: now(net).await + 7200,
    };
    let locks = vec![lock];
    let s1 = state(1, one - one / 10, one, &locks);
    let (sa, sb) = sign(&c2, &s1, &locks);
    let r = receipt(ca.close(c2.params.clone(), s1, locks.clone(), sa, sb)).await;
    let close = r.gas_used;
    let rec = closing(&r);
    let s2 = state(2, one / 2, one + one / 2 - one / 10, &locks);
    let (sa, sb) = sign(&c2, &s2, &locks);
    let r = receipt(cb.update(c2.params.clone(), rec.frozen(), s2, locks.clone(), sa, sb)).await;
    let update = r.gas_used;
    let rec = closing(&r);
    let reveal = gas!(cb.reveal(pre));

    // A channel closed without locks, to isolate the cost of a lock at settlement.
    let c3 = chan(salt0 + 3);
    fund(c3.clone()).await;
    let s = state(1, one, one, &[]);
    let (sa, sb) = sign(&c3, &s, &[]);
    let rec3 = closing(&receipt(ca.close(c3.params.clone(), s, vec![], sa, sb)).await);

    // A channel closed by A and ended at once by B with a final state.
    let c4 = chan(salt0 + 4);
    fund(c4.clone()).await;
    let s = state(1, one, one, &[]);
    let (sa, sb) = sign(&c4, &s, &[]);
    let rec4 = closing(&receipt(ca.close(c4.params.clone(), s, vec![], sa, sb)).await);
    let mut fin = state(2, one / 2, one + one / 2, &[]);
    fin.isFinal = true;
    let (sa, sb) = sign(&c4, &fin, &[]);
    let settle_final = gas!(cb.settleFinal(c4.params.clone(), rec4.frozen(), fin, sa, sb));

    net.advance_time(3601).await;
    let settle_one_lock = gas!(cb.settle(c2.params.clone(), rec, locks));
    let settle_no_lock = gas!(cb.settle(c3.params.clone(), rec3, vec![]));
    ChannelGas {
        open,
        deposit,
        withdraw,
        cooperative_close,
        settle_final,
        close,
        update,
        reveal,
        settle_one_lock,
        settle_no_lock,
    }
}

async fn receipt<P, D>(
    call: alloy::contract::CallBuilder<P, D>,
) -> alloy::rpc::types::TransactionReceipt
where
    P: Provider,
    D: alloy::contract::CallDecoder,
{
    let r = call
        .send()
        .await
        .unwrap_or_else(|e| panic!("send: {e}"))
        .get_receipt()
        .await
        .unwrap_or_else(|e| panic!("receipt: {e}"));
    assert!(r.status(), "reverted");
    r
}

fn closing(r: &alloy::rpc::types::TransactionReceipt) -> Record {
    let log = r
        .decoded_log::<Channel::Closing>()
        .unwrap_or_else(|| panic!("no Closing event"));
    Record::from(&log.data)
}
