//! Batched updates: several locks and claims in one co-signed state. The rules apply each
//! change in order and refuse the whole batch for any bad one (naming it); batches hold no
//! cancels, no nested batches, no hashlock twice; a sealed store keeps a batch's preimages
//! sealed, each bound to its place.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use alloy::primitives::B256;
use eth_adapter::channel::Side;
use eth_channel::msg::{UpdateKind, WireLock, MAX_BATCH};
use eth_channel::{hashlock_of, ChannelStore, PartyError, RejectCode, SqliteChannelStore};
use swap_core::store::StoreKey;

use crate::common::*;

fn pre(n: u8) -> B256 {
    B256::from(std::array::from_fn::<u8, 32, _>(|i| {
        n.wrapping_mul(29).wrapping_add((i as u8).wrapping_mul(11)) ^ 0xa5
    }))
}

fn lock_kind(pair: &Pair, side: Side, n: u8, amount: u128) -> UpdateKind {
    UpdateKind::Lock {
        lock: WireLock {
            from: pair.chan.party(side),
            amount,
            hashlock: hashlock_of(&pre(n)),
            expiry: NOW + 3600,
        },
    }
}

fn claim_kind(n: u8) -> UpdateKind {
    UpdateKind::Claim {
        hashlock: hashlock_of(&pre(n)),
        preimage: pre(n),
    }
}

fn refused(pair: &Pair, kind: UpdateKind) -> eth_channel::Reject {
    match pair.a.propose(kind, NOW, &chain()) {
        Err(PartyError::Invalid(r)) => r,
        other => panic!("not refused: {other:?}"),
    }
}

#[test]
fn a_batch_of_locks_then_one_of_claims_is_two_states() {
    let mut pair = Pair::new();
    let locks: Vec<UpdateKind> = (1..=5).map(|n| lock_kind(&pair, Side::A, n, 10)).collect();
    let step = pair
        .a
        .propose(UpdateKind::batch(locks), NOW, &chain())
        .unwrap();
    pair.exchange(Side::A, step, NOW, &chain());
    let l = pair.a.latest().clone();
    assert_eq!(l.state.version, 1);
    assert_eq!(l.locks.len(), 5);
    assert_eq!(l.state.balanceA, DEP_A - 50);
    // B claims three of them at once (the claims in any order).
    let claims = vec![claim_kind(4), claim_kind(1), claim_kind(2)];
    let step = pair
        .b
        .propose(UpdateKind::batch(claims), NOW, &chain())
        .unwrap();
    pair.exchange(Side::B, step, NOW, &chain());
    let l = pair.b.latest().clone();
    assert_eq!(l.state.version, 2);
    assert_eq!(l.state.balanceB, DEP_B + 30);
    let left: Vec<B256> = l.locks.iter().map(|l| l.hashlock).collect();
    assert_eq!(left, [hashlock_of(&pre(3)), hashlock_of(&pre(5))]);
    // Both stores recorded each state with its batch, the claims' preimages readable.
    for store in [&pair.sa, &pair.sb] {
        let updates = store.updates(pair.chan.id()).unwrap();
        let (_, kind) = updates.last().unwrap();
        let kind = kind.clone().unwrap();
        assert_eq!(kind.parts().len(), 3);
        assert!(kind.parts().contains(&claim_kind(1)));
    }
}

#[test]
fn a_bad_change_refuses_the_whole_batch_and_is_named() {
    let pair = Pair::new();
    let batch = UpdateKind::batch(vec![
        lock_kind(&pair, Side::A, 1, 10),
        lock_kind(&pair, Side::A, 2, DEP_A),
    ]);
    let r = refused(&pair, batch);
    assert_eq!(r.code, RejectCode::InsufficientBalance);
    assert!(r.detail.contains("change 1"), "{}", r.detail);
    // A claim of a lock that is not there.
    let r = refused(
        &pair,
        UpdateKind::batch(vec![lock_kind(&pair, Side::A, 1, 10), claim_kind(9)]),
    );
    assert_eq!(r.code, RejectCode::BadPreimage);
    // A lock and its own claim in one batch, or one hashlock twice.
    let r = refused(
        &pair,
        UpdateKind::batch(vec![lock_kind(&pair, Side::A, 1, 10), claim_kind(1)]),
    );
    assert!(r.detail.contains("named twice"), "{}", r.detail);
    let r = refused(
        &pair,
        UpdateKind::batch(vec![
            lock_kind(&pair, Side::A, 1, 10),
            lock_kind(&pair, Side::A, 1, 11),
        ]),
    );
    assert_eq!(r.code, RejectCode::Rules);
    // Nothing was signed or stored by any of these.
    assert!(pair.a.pending().is_none());
    assert_eq!(pair.a.latest().state.version, 0);
}

#[test]
fn batches_hold_only_locks_and_claims_and_are_bounded() {
    let pair = Pair::new();
    let cancel = UpdateKind::CancelExpired {
        hashlock: hashlock_of(&pre(1)),
    };
    for bad in [
        UpdateKind::Batch {
            changes: vec![lock_kind(&pair, Side::A, 1, 10), cancel],
        },
        UpdateKind::Batch {
            changes: vec![
                lock_kind(&pair, Side::A, 1, 10),
                UpdateKind::Batch {
                    changes: vec![lock_kind(&pair, Side::A, 2, 10)],
                },
            ],
        },
        UpdateKind::Batch {
            changes: vec![lock_kind(&pair, Side::A, 1, 10), UpdateKind::Close],
        },
        // One change alone is no batch; more than MAX_BATCH is too many.
        UpdateKind::Batch {
            changes: vec![lock_kind(&pair, Side::A, 1, 10)],
        },
        UpdateKind::Batch {
            changes: (0..=MAX_BATCH as u8)
                .map(|n| lock_kind(&pair, Side::A, n, 1))
                .collect(),
        },
    ] {
        assert_eq!(refused(&pair, bad).code, RejectCode::Rules);
    }
    // `batch` of one change is that change.
    let one = lock_kind(&pair, Side::A, 1, 10);
    assert_eq!(UpdateKind::batch(vec![one.clone()]), one);
    // Its Debug shows no preimage.
    let shown = format!(
        "{:?}",
        UpdateKind::batch(vec![claim_kind(1), claim_kind(2)])
    );
    assert!(!shown.contains(&format!("{:x}", pre(1))), "{shown}");
}

#[test]
fn a_batchs_preimages_are_sealed_each_bound_to_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb) = (dir.path().join("a.db"), dir.path().join("b.db"));
    let mut pair = Pair::with_stores(
        SqliteChannelStore::open_with_key(&pa, StoreKey::from_bytes(&[3; 32])).unwrap(),
        SqliteChannelStore::open_with_key(&pb, StoreKey::from_bytes(&[4; 32])).unwrap(),
    );
    let id = pair.chan.id();
    let locks: Vec<UpdateKind> = (1..=3).map(|n| lock_kind(&pair, Side::A, n, 10)).collect();
    let step = pair
        .a
        .propose(UpdateKind::batch(locks), NOW, &chain())
        .unwrap();
    pair.exchange(Side::A, step, NOW, &chain());
    let claims: Vec<UpdateKind> = (1..=3).map(claim_kind).collect();
    let step = pair
        .b
        .propose(UpdateKind::batch(claims.clone()), NOW, &chain())
        .unwrap();
    pair.exchange(Side::B, step, NOW, &chain());
    let stored = |store: &SqliteChannelStore| store.updates(id).unwrap().pop().unwrap().1;
    assert_eq!(stored(&pair.sa), Some(UpdateKind::batch(claims.clone())));
    drop(pair);
    let conn = rusqlite::Connection::open(&pa).unwrap();
    let json: String = conn
        .query_row(
            "SELECT kind_json FROM channel_states WHERE version = 2 AND role = 'cosigned'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    for n in 1..=3 {
        let hexed = format!("{:x}", pre(n));
        assert!(
            !json.contains(hexed.trim_start_matches("0x")),
            "clear: {json}"
        );
    }
    // Two of the batch's sealed preimages swapped: they no longer open.
    let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let changes = v["changes"].as_array_mut().unwrap();
    let first = changes[0]["preimage"].clone();
    changes[0]["preimage"] = changes[1]["preimage"].clone();
    changes[1]["preimage"] = first;
    conn.execute_batch("DROP TRIGGER channel_states_no_update")
        .unwrap();
    conn.execute(
        "UPDATE channel_states SET kind_json = ?1 WHERE version = 2 AND role = 'cosigned'",
        [v.to_string()],
    )
    .unwrap();
    drop(conn);
    let store = SqliteChannelStore::open_with_key(&pa, StoreKey::from_bytes(&[3; 32])).unwrap();
    assert!(matches!(
        store.updates(id),
        Err(eth_channel::StoreError::Corrupt { .. })
    ));
}
