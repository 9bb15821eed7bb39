//! The secret is extracted from a claim that the test assembles by hand from the raw script
//! (opcode by opcode), not with the adapter's builder.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use bitcoin::blockdata::opcodes::all::*;
use bitcoin::script::Builder;
use bitcoin::ScriptBuf;
use swap_core::Finality;
use swap_core::{Account, Expiry, HtlcStatus, Preimage, Rail};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_extracted_from_hand_built_claim() {
    let env = common::env().await;
    let s = Preimage::random().unwrap();
    let p = env.params(2_000_000, 40, &s).await;
    let key = |a: &Account| match a {
        Account::PublicKey(k) => bitcoin::PublicKey::from_slice(&k.0).unwrap(),
        _ => unreachable!(),
    };
    let Expiry::Height(e) = p.expiry else {
        unreachable!()
    };
    let script = Builder::new()
        .push_key(&key(&p.recipient))
        .push_opcode(OP_CHECKSIG)
        .push_opcode(OP_NOTIF)
        .push_key(&key(&p.sender))
        .push_opcode(OP_CHECKSIGVERIFY)
        .push_int(e.0 as i64)
        .push_opcode(OP_CLTV)
        .push_opcode(OP_ELSE)
        .push_opcode(OP_SIZE)
        .push_int(32)
        .push_opcode(OP_EQUALVERIFY)
        .push_opcode(OP_SHA256)
        .push_slice(p.hashlock.0)
        .push_opcode(OP_EQUAL)
        .push_opcode(OP_ENDIF)
        .into_script();
    // The adapter's miniscript compiles to exactly this script.
    let htlc = env.alice.htlc(&p).unwrap();
    assert_eq!(script, htlc.witness_script());
    assert_eq!(
        ScriptBuf::new_p2wsh(&script.wscript_hash()),
        htlc.script_pubkey()
    );

    let funding = common::fund(&env, &p).await;
    let (outpoint, value) = common::htlc_outpoint(&env, &env.alice, &p, &funding).await;
    let dest = common::wallet_script(&env.bob_wallet).await;
    let bob_key = env.bob.swap_key(common::KEY_INDEX).unwrap();
    let claim = common::hand_claim(
        &script,
        outpoint,
        value,
        &dest,
        3_000,
        bob_key.secret_key(),
        s.as_bytes(),
    );
    let txid = env.node.rpc().send_raw_transaction(&claim).await.unwrap();

    // Alice (who only watches) learns the secret from the mempool, then from the block.
    match env.alice.htlc_status(&p).await.unwrap() {
        HtlcStatus::Claimed {
            preimage,
            txref,
            finality,
        } => {
            assert_eq!(preimage, s);
            assert_eq!(txref.0, txid.to_string());
            assert_eq!(finality, Finality::confirmations(0));
        }
        other => panic!("expected claimed, got {other:?}"),
    }
    env.node.mine(1).await;
    // A fresh adapter (new process) finds it by scanning blocks only.
    let fresh = common::chain_for(&env.node, "alice", 1, common::fees());
    match fresh.htlc_status(&p).await.unwrap() {
        HtlcStatus::Claimed {
            preimage, finality, ..
        } => {
            assert_eq!(preimage, s);
            assert_eq!(finality, Finality::confirmations(1));
        }
        other => panic!("expected claimed, got {other:?}"),
    }
}
