//! Prints claim and refund sizes and the time to scan one block of 2,000 transactions against
//! 1,000 watched HTLCs (block built in memory, as `getblock <hash> 2` would deliver it: hex).
//!
//! `CARGO_TARGET_DIR=/work/target-btc cargo run --release -p btc-adapter --example bench`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use bitcoin::consensus::encode::serialize_hex;
use bitcoin::hashes::{sha256, Hash};
use bitcoin::secp256k1::SecretKey;
use bitcoin::{
    absolute, transaction, Amount, BlockHash, OutPoint, ScriptBuf, Sequence, Transaction, TxIn,
    TxOut, Txid, WPubkeyHash, Witness,
};
use btc_adapter::scanner::{parse_block_txs, Scanner};
use btc_adapter::{build_claim, build_refund, FeePolicy, Htlc, HtlcOutput, SwapKey};
use swap_core::Preimage;

fn key(i: u32, salt: u8) -> SwapKey {
    let mut b = [salt; 32];
    b[..4].copy_from_slice(&(i + 1).to_be_bytes());
    SwapKey::from_secret(SecretKey::from_slice(&b).unwrap())
}

fn filler_tx(i: u32) -> Transaction {
    let h = |x: u32, y: u8| {
        let mut b = [y; 32];
        b[..4].copy_from_slice(&x.to_be_bytes());
        b
    };
    Transaction {
        version: transaction::Version::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: (0..2)
            .map(|k| TxIn {
                previous_output: OutPoint::new(Txid::from_byte_array(h(i, k)), k as u32),
                script_sig: ScriptBuf::new(),
                sequence: Sequence::MAX,
                witness: Witness::from_slice(&[vec![0x30; 71], vec![0x02; 33]]),
            })
            .collect(),
        output: (0..2)
            .map(|k| TxOut {
                value: Amount::from_sat(10_000 + i as u64),
                script_pubkey: ScriptBuf::new_p2wpkh(&WPubkeyHash::from_byte_array(
                    h(i, 100 + k)[..20].try_into().unwrap(),
                )),
            })
            .collect(),
    }
}

fn main() {
    // Sizes.
    let s = Preimage::from_bytes([7; 32]);
    let (c, r) = (key(0, 1), key(0, 2));
    let htlc = Htlc::new(c.public_key(), r.public_key(), s.hashlock().0, 1_500).unwrap();
    let out = HtlcOutput {
        outpoint: OutPoint::new(Txid::from_byte_array([3; 32]), 0),
        value: 1_000_000,
    };
    let dest = ScriptBuf::new_p2wpkh(&WPubkeyHash::from_byte_array([4; 20]));
    let fee = FeePolicy {
        feerate_sat_vb: 10,
        max_fee_bps: 500,
    };
    let claim = build_claim(&htlc, out, &dest, fee, &c, &s).unwrap();
    let refund = build_refund(&htlc, out, &dest, fee, &r).unwrap();
    println!("descriptor: {}", htlc.descriptor_string());
    println!(
        "claim:  {} vB ({} WU), fee at 10 sat/vB: {} sat",
        claim.vsize,
        claim.tx.weight().to_wu(),
        claim.fee
    );
    println!(
        "refund: {} vB ({} WU), fee at 10 sat/vB: {} sat",
        refund.vsize,
        refund.tx.weight().to_wu(),
        refund.fee
    );

    // 1,000 watched HTLCs.
    let t = Instant::now();
    let htlcs: Vec<Htlc> = (0..1_000u32)
        .map(|i| {
            let h = sha256::Hash::hash(&i.to_be_bytes()).to_byte_array();
            Htlc::new(
                key(i, 1).public_key(),
                key(i, 2).public_key(),
                h,
                10_000 + i as u64,
            )
            .unwrap()
        })
        .collect();
    println!("compiled 1000 HTLC descriptors in {:?}", t.elapsed());
    let mut scanner = Scanner::new();
    for h in &htlcs {
        scanner.watch(h.script_pubkey(), 100);
    }

    // A block of 2,000 transactions: 1,980 unrelated, 10 fundings of watched HTLCs, 10 spends.
    let mut txs: Vec<Transaction> = (0..1_980).map(filler_tx).collect();
    for i in 0..10usize {
        let mut f = filler_tx(10_000 + i as u32);
        f.output[1].script_pubkey = htlcs[i * 97].script_pubkey();
        let op = OutPoint::new(f.compute_txid(), 1);
        txs.push(f);
        let mut sp = filler_tx(20_000 + i as u32);
        sp.input[0].previous_output = op;
        txs.push(sp);
    }
    assert_eq!(txs.len(), 2_000);
    let hexes: Vec<(String, String)> = txs
        .iter()
        .map(|t| (t.compute_txid().to_string(), serialize_hex(t)))
        .collect();
    let bytes: usize = hexes.iter().map(|(_, h)| h.len() / 2).sum();
    println!("block: {} transactions, {} bytes", txs.len(), bytes);

    let hash = BlockHash::from_byte_array([9; 32]);
    let runs = 20;
    let mut parse_and_match = Duration::ZERO;
    let mut match_only = Duration::ZERO;
    for _ in 0..runs {
        scanner.rollback_to(99);
        let t = Instant::now();
        let parsed = parse_block_txs(
            "bench",
            hexes.iter().map(|(id, h)| (id.as_str(), h.as_str())),
        )
        .unwrap();
        scanner.apply_block(100, hash, None, &parsed).unwrap();
        parse_and_match += t.elapsed();

        scanner.rollback_to(99);
        let t = Instant::now();
        scanner.apply_block(100, hash, None, &txs).unwrap();
        match_only += t.elapsed();
    }
    let found: usize = htlcs
        .iter()
        .map(|h| scanner.view(&h.script_pubkey()).fundings.len())
        .sum();
    let spent: usize = htlcs
        .iter()
        .flat_map(|h| scanner.view(&h.script_pubkey()).fundings)
        .filter(|(_, s)| s.is_some())
        .count();
    assert_eq!((found, spent), (10, 10));
    println!(
        "scan 2000 tx vs 1000 watched HTLCs: hex decode + parse + match {:?}/block, match only {:?}/block (mean of {runs}); found {found} fundings, {spent} spends",
        parse_and_match / runs,
        match_only / runs
    );
}
