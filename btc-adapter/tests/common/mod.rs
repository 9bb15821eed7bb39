//! Shared setup for the integration tests: one real regtest node per test, two parties.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use btc_adapter::rpc::{RpcClient, RpcConfig};
use btc_adapter::{BtcChain, BtcConfig, FeeConfig};
use devnet::regtest::RegtestNode;
use swap_core::{
    Account, Amount, Expiry, Height, HtlcParams, HtlcStatus, Preimage, Rail, Sats, SwapId,
};

/// Two parties on one node: Alice locks (sender), Bob claims (recipient). Each has its own
/// seed and its own node wallet, so balances can be checked.
pub struct Env {
    pub node: RegtestNode,
    pub alice: BtcChain,
    pub bob: BtcChain,
    pub alice_wallet: RpcClient,
    pub bob_wallet: RpcClient,
}

pub const KEY_INDEX: u32 = 7;

pub fn fees() -> FeeConfig {
    FeeConfig {
        fallback_sat_vb: 5,
        ..FeeConfig::default()
    }
}

pub async fn wallet(node: &RegtestNode, name: &str) -> RpcClient {
    let rpc = RpcClient::new(node.rpc_config(Some(name))).unwrap();
    rpc.create_or_load_wallet(name).await.unwrap();
    rpc
}

pub fn chain_for(node: &RegtestNode, wallet: &str, seed: u8, fees: FeeConfig) -> BtcChain {
    let mut rpc: RpcConfig = node.rpc_config(Some(wallet));
    rpc.timeout = Duration::from_secs(10);
    let mut config = BtcConfig::new(node.chain_id(), rpc);
    config.fees = fees;
    BtcChain::new(config, &[seed; 32]).unwrap()
}

pub async fn env() -> Env {
    env_with(fees()).await
}

pub async fn env_with(fees: FeeConfig) -> Env {
    let node = RegtestNode::start().await;
    let alice_wallet = wallet(&node, "alice").await;
    let bob_wallet = wallet(&node, "bob").await;
    let addr = alice_wallet.get_new_address("bech32").await.unwrap();
    node.send(&addr, 10_0000_0000).await;
    node.mine(1).await;
    let alice = chain_for(&node, "alice", 1, fees);
    let bob = chain_for(&node, "bob", 2, fees);
    Env {
        node,
        alice,
        bob,
        alice_wallet,
        bob_wallet,
    }
}

impl Env {
    /// Terms of an HTLC Alice funds for Bob, expiring `blocks` after the current tip.
    pub async fn params(&self, sats: u64, blocks: u64, preimage: &Preimage) -> HtlcParams {
        let tip = self.node.height().await;
        HtlcParams {
            swap_id: SwapId::random().unwrap(),
            key_index: KEY_INDEX,
            hashlock: preimage.hashlock(),
            asset: self.alice.asset(),
            amount: Amount::Sats(Sats(sats)),
            sender: Account::PublicKey(self.alice.swap_public_key(KEY_INDEX).unwrap()),
            recipient: Account::PublicKey(self.bob.swap_public_key(KEY_INDEX).unwrap()),
            expiry: Expiry::Height(Height(tip + blocks)),
            watch_from: Height(tip),
            rail_data: None,
        }
    }
}

/// The depth of a status (0 in the mempool), `None` when absent.
pub fn confirmations(status: &HtlcStatus) -> Option<u32> {
    status.finality().map(|f| f.depth().unwrap_or(0))
}

/// Funds `params` from Alice and mines one block; returns the funding txid.
pub async fn fund(env: &Env, params: &HtlcParams) -> swap_core::TxRef {
    let txref = env.alice.lock(params).await.unwrap();
    env.node.mine(1).await;
    txref
}

use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{Message, Secp256k1, SecretKey};
use bitcoin::sighash::{EcdsaSighashType, SighashCache};
use bitcoin::{
    absolute::LockTime, transaction::Version, Amount as BtcAmount, OutPoint, Script, ScriptBuf,
    Sequence, Transaction, TxIn, TxOut, Witness,
};

/// The HTLC output of `params` in the funding transaction `funding` (searched in the mempool,
/// then in the last 10 blocks).
pub async fn htlc_outpoint(
    env: &Env,
    chain: &BtcChain,
    params: &HtlcParams,
    funding: &swap_core::TxRef,
) -> (OutPoint, u64) {
    let script = chain.htlc(params).unwrap().script_pubkey();
    let txid = btc_adapter::chain::txid_of(funding).unwrap();
    let rpc = env.node.rpc();
    let mut tx = rpc.get_raw_transaction(&txid, None).await.ok();
    if tx.is_none() {
        let tip = rpc.get_block_count().await.unwrap();
        for h in (tip - 10..=tip).rev() {
            let hash = rpc.get_block_hash(h).await.unwrap();
            if let Ok(t) = rpc.get_raw_transaction(&txid, Some(&hash)).await {
                tx = Some(t);
                break;
            }
        }
    }
    let tx = tx.expect("funding transaction");
    let (vout, out) = tx
        .output
        .iter()
        .enumerate()
        .find(|(_, o)| o.script_pubkey == script)
        .expect("htlc output");
    (OutPoint::new(txid, vout as u32), out.value.to_sat())
}

/// A claim assembled by hand from the raw witness script, without the adapter's builder:
/// witness `[preimage, signature, witness_script]`, RBF sequence, nLockTime 0.
pub fn hand_claim(
    witness_script: &Script,
    outpoint: OutPoint,
    value: u64,
    destination: &ScriptBuf,
    fee: u64,
    key: &SecretKey,
    preimage: &[u8],
) -> Transaction {
    let mut tx = Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: outpoint,
            script_sig: ScriptBuf::new(),
            sequence: Sequence(0xffff_fffd),
            witness: Witness::new(),
        }],
        output: vec![TxOut {
            value: BtcAmount::from_sat(value - fee),
            script_pubkey: destination.clone(),
        }],
    };
    let sighash = SighashCache::new(&tx)
        .p2wsh_signature_hash(
            0,
            witness_script,
            BtcAmount::from_sat(value),
            EcdsaSighashType::All,
        )
        .unwrap();
    let secp = Secp256k1::new();
    let sig = secp.sign_ecdsa(&Message::from_digest(sighash.to_byte_array()), key);
    let mut sig = sig.serialize_der().to_vec();
    sig.push(EcdsaSighashType::All as u8);
    tx.input[0].witness = Witness::from_slice(&[preimage, &sig, witness_script.as_bytes()]);
    tx
}

/// A fresh P2WPKH script of a wallet.
pub async fn wallet_script(wallet: &RpcClient) -> ScriptBuf {
    let addr = wallet.get_new_address("bech32").await.unwrap();
    wallet.address_script_pubkey(&addr).await.unwrap()
}
