//! Secrets at rest in the channel store: claims' preimages and the watcher's signed
//! transactions (a reveal carries its preimage) sealed with the installation's key; a clear
//! store sealed in place at its first keyed open and still working; a missing or wrong key
//! refused with the file unchanged.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};

use alloy::primitives::{hex, B256};
use eth_adapter::channel::Side;
use eth_channel::watcher::TxStatus;
use eth_channel::{
    hashlock_of, ChannelStore, Config, Party, SecretMap, SqliteChannelStore, StoreError,
    UpdateKind, WatchConfig, Watcher,
};
use swap_core::store::StoreKey;

use crate::common::*;
use crate::watcher::{no_errors, sent_kinds, Env, HOUR, ONE};

fn key(n: u8) -> StoreKey {
    StoreKey::from_bytes(&[n; 32])
}

/// Everything on disk of the SQLite file at `db`: the file, its write-ahead log and index.
fn disk(db: &Path) -> Vec<u8> {
    let mut out = vec![];
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        if let Ok(bytes) = std::fs::read(PathBuf::from(p)) {
            out.extend_from_slice(&bytes);
        }
    }
    out
}

/// Whether `pre` is on disk, as bytes or as hex digits.
fn holds(disk: &[u8], pre: &B256) -> bool {
    let hexed = hex::encode(pre.as_slice());
    disk.windows(32).any(|w| w == pre.as_slice())
        || disk
            .windows(64)
            .any(|w| w.eq_ignore_ascii_case(hexed.as_bytes()))
}

fn preimage(n: u8) -> B256 {
    // Distinct bytes, nothing a page of SQLite would hold by chance.
    B256::from(std::array::from_fn::<u8, 32, _>(|i| {
        n.wrapping_mul(31).wrapping_add(i as u8 * 7) ^ 0x5a
    }))
}

/// `by` locks 7 for the other on `pre`, the other claims it.
fn pay(pair: &mut Pair, by: Side, pre: B256) {
    let (p, _, _, _) = pair.roles(by);
    let step = p
        .propose_lock(7, hashlock_of(&pre), NOW + 3600, NOW, &chain())
        .unwrap();
    pair.exchange(by, step, NOW, &chain());
    let other = if by == Side::A { Side::B } else { Side::A };
    let (_, _, r, _) = pair.roles(by);
    let step = r.propose_claim(pre, NOW, &chain()).unwrap();
    pair.exchange(other, step, NOW, &chain());
}

fn claims(store: &SqliteChannelStore, id: B256) -> Vec<B256> {
    store
        .updates(id)
        .unwrap()
        .into_iter()
        .filter_map(|(_, k)| match k {
            Some(UpdateKind::Claim { preimage, .. }) => Some(preimage),
            _ => None,
        })
        .collect()
}

#[test]
fn a_clear_store_is_sealed_in_place_and_keeps_working_and_other_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb) = (dir.path().join("a.db"), dir.path().join("b.db"));
    let mut pair = Pair::with_stores(
        SqliteChannelStore::open(&pa).unwrap(),
        SqliteChannelStore::open(&pb).unwrap(),
    );
    let id = pair.a.id();
    let before = [preimage(1), preimage(2)];
    pay(&mut pair, Side::A, before[0]);
    pay(&mut pair, Side::B, before[1]);
    // Written in clear without a key (so the checks below can see a preimage at all).
    assert!(holds(&disk(&pa), &before[0]));

    // Restart mid-channel with keys: both files are sealed in place.
    pair.sa = SqliteChannelStore::open_with_key(&pa, key(1)).unwrap();
    pair.sb = SqliteChannelStore::open_with_key(&pb, key(2)).unwrap();
    pair.a = Party::resume(id, pair.ka.clone(), Config::default(), &pair.sa).unwrap();
    pair.b = Party::resume(id, pair.kb.clone(), Config::default(), &pair.sb).unwrap();
    assert_eq!(claims(&pair.sa, id), before);
    let after = [preimage(3), preimage(4)];
    pay(&mut pair, Side::A, after[0]);
    pay(&mut pair, Side::B, after[1]);
    assert_eq!(pair.a.latest().state.version, 8);
    // A pending proposal carrying a claim, sealed too, and read back.
    let step = pair
        .a
        .propose_lock(5, hashlock_of(&preimage(5)), NOW + 3600, NOW, &chain())
        .unwrap();
    pair.exchange(Side::A, step, NOW, &chain());
    let step = pair.b.propose_claim(preimage(5), NOW, &chain()).unwrap();
    let proposal = proposal_of(&step);
    pair.sb.save_proposal(id, &proposal).unwrap();
    assert_eq!(pair.sb.load(id).unwrap().unwrap().pending, Some(proposal));

    let all: Vec<B256> = before.iter().chain(&after).copied().collect();
    for (db, k) in [(&pa, 1), (&pb, 2)] {
        let store = SqliteChannelStore::open_with_key(db, key(k)).unwrap();
        assert_eq!(claims(&store, id), all);
        drop(store);
        let on_disk = disk(db);
        for pre in all.iter().chain([&preimage(5)]) {
            assert!(!holds(&on_disk, pre), "a preimage in clear in {db:?}");
        }
    }
    drop(pair);

    // Without a key, or with another, the store is refused and the file left as it was.
    let file = std::fs::read(&pa).unwrap();
    assert!(matches!(
        SqliteChannelStore::open(&pa),
        Err(StoreError::KeyRequired)
    ));
    assert!(matches!(
        SqliteChannelStore::open_with_key(&pa, key(2)),
        Err(StoreError::WrongKey)
    ));
    assert_eq!(std::fs::read(&pa).unwrap(), file);
    // The error texts name no key material.
    let text = StoreError::WrongKey.to_string();
    assert!(!text.contains("0101"), "{text}");

    // The history is still append-only after the sealing (its trigger put back).
    let conn = rusqlite::Connection::open(&pa).unwrap();
    assert!(conn
        .execute(
            "UPDATE channel_states SET kind_json = NULL WHERE version = 2",
            []
        )
        .is_err());
    // A sealed value moved to another version's row does not open there.
    conn.execute_batch(
        "DROP TRIGGER channel_states_no_update;
         UPDATE channel_states SET kind_json =
           (SELECT kind_json FROM channel_states WHERE version = 4 AND role = 'cosigned')
         WHERE version = 2 AND role = 'cosigned';",
    )
    .unwrap();
    drop(conn);
    let store = SqliteChannelStore::open_with_key(&pa, key(1)).unwrap();
    assert!(matches!(store.updates(id), Err(StoreError::Corrupt { .. })));
}

/// A watcher reveals a secret from a store sealed in place under it: the recorded reveal
/// (signed, before its broadcast) holds the preimage, sealed.
#[tokio::test]
async fn a_watchers_recorded_reveal_is_sealed() {
    let mut env = Env::start().await;
    env.pay(Side::A, ONE, 0x3c).await;
    let (pre, expiry) = env.lock(Side::A, 2 * ONE, 0x5a, 2 * HOUR).await;
    let db = env.dir.path().join("b.db");
    let secrets = SecretMap::new();
    secrets.insert(pre);
    let store = SqliteChannelStore::open_with_key(&db, key(7)).unwrap();
    let mut wb = Watcher::new(
        env.net.provider().clone(),
        env.net.signer(1),
        store.clone(),
        std::sync::Arc::new(secrets),
        WatchConfig {
            claim_window: 900,
            ..WatchConfig::default()
        },
    );
    wb.watch(env.chan.id(), 0);
    let now = env.now().await;
    env.net.advance_time(expiry - 800 - now).await;
    let r = wb.tick().await.unwrap();
    no_errors(&r);
    assert_eq!(sent_kinds(&r), ["reveal", "close"]);
    let r = wb.tick().await.unwrap();
    no_errors(&r);
    assert_eq!(r.finished.len(), 2, "{r:?}");
    let txs = store.watcher_txs(env.net.address(1)).unwrap();
    assert_eq!(txs.len(), 2);
    assert!(txs.iter().all(|t| t.status == TxStatus::Mined), "{txs:?}");
    // The reveal read back whole: its bytes hold the preimage.
    assert!(txs
        .iter()
        .any(|t| t.raw.windows(32).any(|w| w == pre.as_slice())));
    drop((wb, store));
    let on_disk = disk(&db);
    assert!(!holds(&on_disk, &pre), "the revealed preimage in clear");
    assert!(
        !holds(&on_disk, &B256::repeat_byte(0x3c)),
        "a claim in clear"
    );
    assert!(matches!(
        SqliteChannelStore::open(&db),
        Err(StoreError::KeyRequired)
    ));
}
