//! The node's data sealed at rest: a clear data directory (LDK's manager and monitors, our
//! ledger) sealed in place when the node restarts with a key mid-channel, and still working;
//! no preimage anywhere in its files after payments both ways; a missing or wrong key refused
//! with the files unchanged.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use ln_adapter::LnError;
use swap_core::store::StoreKey;
use swap_core::Preimage;

use crate::common::*;

fn key(n: u8) -> StoreKey {
    StoreKey::from_bytes(&[n; 32])
}

/// Every file under `dir`, with its bytes (but SQLite's shared-memory index of the node
/// database's log, which any reader rewrites: what is stored is in the database and its log).
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = vec![];
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else if p.to_string_lossy().ends_with("-shm") {
                continue;
            } else if let Ok(bytes) = std::fs::read(&p) {
                out.push((p, bytes));
            }
        }
    }
    out.sort();
    out
}

/// The files under `dir` holding `pre` (as bytes or hex digits).
fn holding(dir: &Path, pre: &Preimage) -> Vec<PathBuf> {
    let bytes = pre.as_bytes();
    let hexed = pre.expose_hex();
    files(dir)
        .into_iter()
        .filter(|(_, b)| {
            b.windows(32).any(|w| w == bytes)
                || b.windows(64)
                    .any(|w| w.eq_ignore_ascii_case(hexed.as_bytes()))
        })
        .map(|(p, _)| p)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clear_directory_is_sealed_mid_channel_and_other_keys_are_refused() {
    let mut p = pair().await;
    open_channel(&p, 400_000).await;
    let (_, first) = hold_pay_and_claim_preimage(&p.a, &p.b, 10_000_000).await;
    wait_settled(&p).await;
    let (a_dir, b_dir) = (p.dirs.path().join("a"), p.dirs.path().join("b"));
    let (a_addr, b_addr) = (p.a.listen_addr(), p.b.listen_addr());
    p.a.stop().await.unwrap();
    p.b.stop().await.unwrap();
    // Written in clear without a key (the checks below can see a preimage at all): the
    // payer's ledger and LDK's files both hold it.
    assert!(!holding(&a_dir, &first).is_empty());
    assert!(!holding(&b_dir, &first).is_empty());

    // Both restart with their keys: sealed in place, the channel goes on.
    p.a = start_ln_keyed(&p.node, "a", 1, &a_dir, Some(a_addr), Some(key(1)))
        .await
        .unwrap();
    p.b = start_ln_keyed(&p.node, "b", 2, &b_dir, Some(b_addr), Some(key(2)))
        .await
        .unwrap();
    assert_eq!(holding(&a_dir, &first), Vec::<PathBuf>::new());
    assert_eq!(holding(&b_dir, &first), Vec::<PathBuf>::new());
    assert_eq!(
        p.a.preimage_for(&first.hashlock()).unwrap(),
        Some(first.clone()),
        "the ledger's clear record still reads, sealed"
    );
    wait_until("channel usable after the sealing restart", || {
        p.a.channels().iter().any(|c| c.usable) && p.b.channels().iter().any(|c| c.usable)
    })
    .await;
    let (_, second) = hold_pay_and_claim_preimage(&p.a, &p.b, 8_000_000).await;
    let (_, third) = hold_pay_and_claim_preimage(&p.b, &p.a, 3_000_000).await;
    wait_settled(&p).await;
    p.a.stop().await.unwrap();
    p.b.stop().await.unwrap();
    for dir in [&a_dir, &b_dir] {
        for pre in [&first, &second, &third] {
            assert_eq!(holding(dir, pre), Vec::<PathBuf>::new(), "in {dir:?}");
        }
    }

    // Without its key, or with another, b is refused and its files are left as they were.
    let before = files(&b_dir);
    let Err(e) = start_ln_keyed(&p.node, "b", 2, &b_dir, None, None).await else {
        panic!("started without a key");
    };
    assert!(matches!(e, LnError::KeyRequired), "{e}");
    let Err(e) = start_ln_keyed(&p.node, "b", 2, &b_dir, None, Some(key(1))).await else {
        panic!("started with another key");
    };
    assert!(matches!(e, LnError::WrongKey), "{e}");
    assert!(files(&b_dir) == before, "files changed by a refused start");

    // With its key, both pay again.
    p.a = start_ln_keyed(&p.node, "a", 1, &a_dir, Some(a_addr), Some(key(1)))
        .await
        .unwrap();
    p.b = start_ln_keyed(&p.node, "b", 2, &b_dir, Some(b_addr), Some(key(2)))
        .await
        .unwrap();
    assert_eq!(p.b.preimage_for(&third.hashlock()).unwrap(), Some(third));
    wait_until("channel usable after restarting sealed", || {
        p.a.channels().iter().any(|c| c.usable) && p.b.channels().iter().any(|c| c.usable)
    })
    .await;
    hold_pay_and_claim(&p.a, &p.b, 2_000_000).await;
}
