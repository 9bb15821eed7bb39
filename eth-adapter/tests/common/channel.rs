//! Helpers for the payment channel contract tests: an anvil with `Channel` deployed, one
//! provider per dev account, channels between dev accounts, states and signatures, and the
//! contract calls sent by a chosen account.

use alloy::network::EthereumWallet;
use alloy::primitives::{Address, B256, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::TransactionReceipt;
use alloy::signers::local::PrivateKeySigner;
use alloy::signers::SignerSync;
use devnet::anvil::Devnet;
use devnet::test_contracts::ChannelParty::{self, ChannelPartyInstance};
use eth_adapter::bindings::Channel::{self, ChannelInstance};
use eth_adapter::channel::{ChannelRef, Lock, Params, Record, Sig, State};
use serde_json::json;
use sha2::{Digest, Sha256};

pub const ONE: u128 = 1_000_000_000_000_000_000;
pub const HOUR: u64 = 3600;

/// Both parties' signatures (A's, B's).
pub type Sigs = (Sig, Sig);
/// A contract call sent by one of the dev accounts.
pub type Call<'a, C> = alloy::contract::SolCallBuilder<&'a DynProvider, C>;

pub struct ChannelEnv {
    pub net: Devnet,
    pub chain_id: u64,
    /// One provider per dev account 0..=5 (each caches its account's nonce).
    pub p: Vec<DynProvider>,
    /// The contract as seen by accounts 0..=5 (0 = A, 1 = B, 2 = a third party).
    pub c: Vec<ChannelInstance<DynProvider>>,
}

pub fn wallet(net: &Devnet, i: usize) -> DynProvider {
    ProviderBuilder::new()
        .wallet(EthereumWallet::from(net.signer(i)))
        .connect_http(net.url().parse().unwrap())
        .erased()
}

impl ChannelEnv {
    /// A fresh anvil with `Channel` deployed by account 0.
    pub async fn start() -> Self {
        let net = Devnet::start().await;
        let p: Vec<DynProvider> = (0..6).map(|i| wallet(&net, i)).collect();
        let addr = *Channel::deploy(p[0].clone()).await.unwrap().address();
        let c = p.iter().map(|w| Channel::new(addr, w.clone())).collect();
        let chain_id = net.provider().get_chain_id().await.unwrap();
        Self {
            net,
            chain_id,
            p,
            c,
        }
    }

    pub fn contract(&self) -> Address {
        *self.c[0].address()
    }

    pub fn key(&self, i: usize) -> PrivateKeySigner {
        self.net.signer(i)
    }

    /// The dev account key of `who`.
    pub fn key_of(&self, who: Address) -> PrivateKeySigner {
        (0..10)
            .map(|i| self.key(i))
            .find(|k| k.address() == who)
            .expect("a dev account")
    }

    /// A channel between accounts `a` and `b` (one hour challenge period).
    pub fn chan_between(&self, a: usize, b: usize, salt: u8, token: Address) -> ChannelRef {
        let params = Params {
            a: self.net.address(a),
            b: self.net.address(b),
            token,
            challengePeriod: HOUR,
            salt: B256::repeat_byte(salt),
        };
        ChannelRef::new(params, self.chain_id, self.contract())
    }

    /// An ETH channel between accounts 0 and 1.
    pub fn chan(&self, salt: u8) -> ChannelRef {
        self.chan_between(0, 1, salt, Address::ZERO)
    }

    /// An ETH channel between accounts 0 and 1 where each deposited `a` and `b` wei.
    pub async fn funded(&self, salt: u8, a: u128, b: u128) -> ChannelRef {
        let ch = self.chan(salt);
        mined(self.deposit(0, &ch, a)).await;
        mined(self.deposit(1, &ch, b)).await;
        ch
    }

    /// Both parties' signatures, checked by the Rust side first (at the wall clock's time:
    /// the tests move the chain's clock at most hours ahead of it, lock expiries are hours
    /// ahead of the chain).
    pub fn sign2(&self, ch: &ChannelRef, s: &State, locks: &[Lock]) -> Sigs {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let sa = ch.sign(&self.key_of(ch.params.a), s, locks, now).unwrap();
        let sb = ch.sign(&self.key_of(ch.params.b), s, locks, now).unwrap();
        (sa, sb)
    }

    /// Both parties' signatures without any check (what a careful client never signs).
    pub fn sign2_raw(&self, ch: &ChannelRef, s: &State) -> Sigs {
        (
            sign_raw(ch, &self.key_of(ch.params.a), s),
            sign_raw(ch, &self.key_of(ch.params.b), s),
        )
    }

    pub async fn balance(&self, who: Address) -> U256 {
        self.net.provider().get_balance(who).await.unwrap()
    }

    /// (status, depositA, depositB, withdrawnA, withdrawnB) from the `status` view.
    pub async fn status(&self, ch: &ChannelRef) -> (u8, U256, U256, U256, U256) {
        let s = self.c[0].status(ch.id()).call().await.unwrap();
        (s.st, s.depositA, s.depositB, s.withdrawnA, s.withdrawnB)
    }

    /// The next block gets timestamp `t`.
    pub async fn next_block_at(&self, t: u64) {
        self.net.rpc("evm_setNextBlockTimestamp", json!([t])).await;
    }

    /// Installs `ChannelParty` code at dev account `i` (its key still signs states) and
    /// returns a handle through which account 2 drives it. Account `i` must send no more
    /// transactions itself.
    pub async fn contract_party(&self, i: usize) -> ChannelPartyInstance<DynProvider> {
        let who = self.net.address(i);
        let code = ChannelParty::DEPLOYED_BYTECODE.to_string();
        self.net.rpc("anvil_setCode", json!([who, code])).await;
        ChannelParty::new(who, self.p[2].clone())
    }

    // Contract calls sent by account `by`.

    pub fn deposit(&self, by: usize, ch: &ChannelRef, wei: u128) -> Call<'_, Channel::depositCall> {
        self.c[by].deposit(ch.params.clone()).value(U256::from(wei))
    }

    pub fn close(
        &self,
        by: usize,
        ch: &ChannelRef,
        s: &State,
        locks: &[Lock],
        sigs: &Sigs,
    ) -> Call<'_, Channel::closeCall> {
        let (sa, sb) = sigs.clone();
        self.c[by].close(ch.params.clone(), s.clone(), locks.to_vec(), sa, sb)
    }

    /// `update` with the part of `rec` fixed at close (any record of this closing will do).
    pub fn update(
        &self,
        by: usize,
        ch: &ChannelRef,
        rec: &Record,
        s: &State,
        locks: &[Lock],
        sigs: &Sigs,
    ) -> Call<'_, Channel::updateCall> {
        let (sa, sb) = sigs.clone();
        self.c[by].update(
            ch.params.clone(),
            rec.frozen(),
            s.clone(),
            locks.to_vec(),
            sa,
            sb,
        )
    }

    pub fn settle(
        &self,
        by: usize,
        ch: &ChannelRef,
        rec: &Record,
        locks: &[Lock],
    ) -> Call<'_, Channel::settleCall> {
        self.c[by].settle(ch.params.clone(), rec.clone(), locks.to_vec())
    }

    pub fn coop(
        &self,
        by: usize,
        ch: &ChannelRef,
        s: &State,
        sigs: &Sigs,
    ) -> Call<'_, Channel::cooperativeCloseCall> {
        let (sa, sb) = sigs.clone();
        self.c[by].cooperativeClose(ch.params.clone(), s.clone(), sa, sb)
    }

    pub fn settle_final(
        &self,
        by: usize,
        ch: &ChannelRef,
        rec: &Record,
        s: &State,
        sigs: &Sigs,
    ) -> Call<'_, Channel::settleFinalCall> {
        let (sa, sb) = sigs.clone();
        self.c[by].settleFinal(ch.params.clone(), rec.frozen(), s.clone(), sa, sb)
    }

    pub fn withdraw(
        &self,
        by: usize,
        ch: &ChannelRef,
        s: &State,
        locks: &[Lock],
        sigs: &Sigs,
    ) -> Call<'_, Channel::withdrawCall> {
        let (sa, sb) = sigs.clone();
        self.c[by].withdraw(ch.params.clone(), s.clone(), locks.to_vec(), sa, sb)
    }
}

/// Sends `call`, waits for its receipt and asserts it succeeded.
pub async fn mined<C: alloy::sol_types::SolCall>(call: Call<'_, C>) -> TransactionReceipt {
    let r = call.send().await.unwrap().get_receipt().await.unwrap();
    assert!(r.status(), "transaction reverted");
    r
}

/// A state without locks or withdrawals.
pub fn st(version: u64, bal_a: u128, bal_b: u128, dep_a: u128, dep_b: u128) -> State {
    State {
        version,
        balanceA: bal_a,
        balanceB: bal_b,
        locksHash: B256::ZERO,
        depositA: dep_a,
        depositB: dep_b,
        withdrawnA: 0,
        withdrawnB: 0,
        withdrawExpiry: 0,
        isFinal: false,
    }
}

/// Signs the digest of `s` with `key` without any check.
pub fn sign_raw(ch: &ChannelRef, key: &PrivateKeySigner, s: &State) -> Sig {
    let sig = key.sign_hash_sync(&ch.digest(s)).unwrap();
    Sig {
        v: 27 + u8::from(sig.v()),
        r: sig.r().into(),
        s: sig.s().into(),
    }
}

/// Preimage `n n n ...` and its sha256.
pub fn secret(n: u8) -> (B256, B256) {
    let pre = B256::repeat_byte(n);
    (pre, B256::from_slice(&Sha256::digest(pre.0)))
}

/// The record committed by a `close`, `closeUnsigned` or `update` receipt.
pub fn record(r: &TransactionReceipt) -> Record {
    Record::from(
        &r.decoded_log::<Channel::Closing>()
            .expect("Closing event")
            .data,
    )
}
