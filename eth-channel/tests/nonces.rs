//! The watcher's nonces stay gap-free on anvil: a recorded transaction the node refuses for
//! good (its fee cap fell below the base fee before it went out) while a later one of ours
//! is recorded above it does not leave its nonce empty; everything recorded after it is
//! mined.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use alloy::providers::Provider;
use eth_adapter::channel::Side;
use eth_channel::watcher::{Action, TxStatus};
use eth_channel::{hashlock_of, SecretMap, WatchConfig};

use crate::watcher::{no_errors, Env, HOUR, ONE};

#[tokio::test]
async fn a_refused_recorded_transaction_leaves_no_nonce_gap() {
    let mut env = Env::start().await;
    // A locks 2 ETH for B; B holds the preimage and its watcher runs inside the claim window.
    let (pre, expiry) = env.lock(Side::A, 2 * ONE, 4, 2 * HOUR).await;
    let secrets = SecretMap::new();
    secrets.insert(pre);
    let cfg = WatchConfig {
        claim_window: 900,
        bump_after_blocks: 0,
        ..WatchConfig::default()
    };
    let now = env.now().await;
    env.net.advance_time(expiry - 800 - now).await;
    let me = env.chan.params.b;
    let n0 = env.sent_by(me).await;

    // The reveal is signed and recorded (nonce n0), then the process stops before sending.
    let mut w = env.watcher(Side::B, &secrets, cfg);
    let (planned, _) = w.plan_now(env.chan.id()).await.unwrap();
    assert!(
        matches!(planned[0].action, Action::Reveal { .. }),
        "{planned:?}"
    );
    assert!(
        matches!(planned[1].action, Action::Close { .. }),
        "{planned:?}"
    );
    let reveal = w.prepare(&planned[0]).await.unwrap().expect("recorded");
    assert_eq!(reveal.nonce, n0);
    // The base fee jumps above the recorded reveal's fee cap: the node refuses it for good.
    env.net
        .rpc(
            "anvil_setNextBlockBaseFeePerGas",
            serde_json::json!(["0x174876E800"]),
        )
        .await;
    env.net.mine(1).await;
    // Another process on the store records the close above it (nonce n0 + 1).
    let mut w2 = env.watcher(Side::B, &secrets, cfg);
    let close = w2.prepare(&planned[1]).await.unwrap().expect("recorded");
    assert_eq!(close.nonce, n0 + 1);
    drop(w2);

    let node = env.net.provider();
    let mut closed = false;
    for _ in 0..6 {
        let r = w.tick().await.unwrap();
        assert!(
            r.errors
                .iter()
                .all(|(_, e)| !matches!(e, eth_channel::WatchError::Store(_))),
            "{r:?}"
        );
        if env.status().await == 2
            && env
                .chan
                .revealed_at(node, hashlock_of(&pre))
                .await
                .unwrap()
                .is_some()
        {
            closed = true;
            break;
        }
    }
    assert!(closed, "the close and the reveal are mined");
    // Every nonce used, none waiting in the pool behind a gap.
    let r = w.tick().await.unwrap();
    no_errors(&r);
    let pending = node.get_transaction_count(me).pending().await.unwrap();
    let mined = env.sent_by(me).await;
    assert_eq!(pending, mined, "nothing queued behind a gap");
    let txs = env.sb.watcher_txs(me).unwrap();
    assert!(txs.iter().all(|t| t.status != TxStatus::Pending), "{txs:?}");
    let used: Vec<u64> = txs
        .iter()
        .filter(|t| t.status == TxStatus::Mined)
        .map(|t| t.nonce)
        .collect();
    let mut sorted = used.clone();
    sorted.sort();
    assert_eq!(sorted, (n0..mined).collect::<Vec<_>>(), "{txs:?}");
    assert!(txs
        .iter()
        .any(|t| t.hash == reveal.hash && t.status == TxStatus::Obsolete));
    assert!(txs
        .iter()
        .any(|t| t.intent == format!("fill:{n0}") && t.status == TxStatus::Mined));
}
