//! The conformance suite every [`SwapStore`] implementation must pass.
//!
//! Call [`run`] with an empty store from the implementation's own tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::{
    Outbox, Role, SendKey, SignedTx, StoreError, SwapRecord, SwapState, SwapStore, TxKind,
};
use crate::machine::{initiator, responder, Outcome};
use crate::params::{ChainFamily, ChainId, ChainParams, ChainTip, Network};
use crate::terms::{LegTerms, SafetyPolicy, SwapTerms, Tips};
use crate::types::*;

/// A valid swap record, distinct for each `n`.
pub fn sample_record(n: u8, role: Role) -> SwapRecord {
    let secret = Preimage::from_bytes([n; 32]);
    let btc = ChainParams::for_chain(ChainId::new(ChainFamily::Bitcoin, Network::Regtest));
    let eth = ChainParams::for_chain(ChainId::new(ChainFamily::Ethereum, Network::Regtest));
    let tips = Tips {
        x: ChainTip {
            height: Height(1000),
            time: Timestamp(1_700_000_000),
        },
        y: ChainTip {
            height: Height(10),
            time: Timestamp(1_700_000_000),
        },
    };
    let x = LegTerms {
        params: btc,
        asset: Asset::Btc,
        amount: Amount::Sats(Sats(50_000 + n as u64)),
        sender: Account::PublicKey(PublicKeyBytes([2; 33])),
        recipient: Account::PublicKey(PublicKeyBytes([3; 33])),
        expiry: Expiry::Height(Height(0)),
        rail_data: None,
    };
    let y = LegTerms {
        params: eth,
        asset: Asset::Eth,
        amount: Amount::Wei(Wei(10u128.pow(17))),
        sender: Account::Evm(EvmAddress([4; 20])),
        recipient: Account::Evm(EvmAddress([5; 20])),
        expiry: Expiry::Time(Timestamp(0)),
        rail_data: None,
    };
    let terms = SwapTerms::with_default_expiries(
        SwapId([n; 16]),
        secret.hashlock(),
        x,
        y,
        SafetyPolicy::default(),
        tips,
    )
    .expect("sample terms are valid");
    SwapRecord {
        terms,
        role,
        secret: (role == Role::Initiator).then_some(secret),
        key_index: n as u32,
        watch_from: tips,
    }
}

/// Runs every check against `store`, which must start empty.
pub async fn run(store: &dyn SwapStore) {
    assert!(
        store.list().await.unwrap().is_empty(),
        "store must start empty"
    );
    assert!(store.unfinished().await.unwrap().is_empty());

    // Create and load, secret included.
    let a = sample_record(1, Role::Initiator);
    let b = sample_record(2, Role::Responder);
    create_initial(store, &[&a, &b]).await;
    // Sent transactions: in order, each (leg, kind, txref) once, per swap; unknown swap typed.
    use super::{SentTx, TxKind};
    use crate::terms::Leg;
    let tx = |kind, r: &str| SentTx {
        leg: Leg::X,
        kind,
        txref: TxRef(r.into()),
        at: Timestamp(1),
    };
    assert!(store.txs(&a.id()).await.unwrap().is_empty());
    store
        .record_tx(&a.id(), &tx(TxKind::Lock, "l1"))
        .await
        .unwrap();
    store
        .record_tx(&a.id(), &tx(TxKind::Claim, "c1"))
        .await
        .unwrap();
    store
        .record_tx(&a.id(), &tx(TxKind::Lock, "l1"))
        .await
        .unwrap();
    store
        .record_tx(&a.id(), &tx(TxKind::Claim, "c2"))
        .await
        .unwrap();
    let kinds: Vec<(TxKind, String)> = store
        .txs(&a.id())
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.kind, t.txref.0))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (TxKind::Lock, "l1".into()),
            (TxKind::Claim, "c1".into()),
            (TxKind::Claim, "c2".into())
        ]
    );
    assert!(store.txs(&b.id()).await.unwrap().is_empty());
    assert!(matches!(
        store
            .record_tx(&SwapId([99; 16]), &tx(TxKind::Lock, "x"))
            .await,
        Err(StoreError::UnknownSwap(_))
    ));
    assert!(matches!(
        store.txs(&SwapId([99; 16])).await,
        Err(StoreError::UnknownSwap(_))
    ));

    let (ra, sa) = store.load(&a.id()).await.unwrap();
    assert_eq!(ra, a);
    assert_eq!(ra.secret, a.secret, "the secret is stored with the swap");
    assert_eq!(sa, SwapState::Initiator(initiator::State::Negotiated));

    // Duplicates are refused and change nothing.
    assert!(matches!(
        store.create(&a, &SwapState::initial(Role::Initiator)).await,
        Err(StoreError::Duplicate(_))
    ));

    // An initiator without its secret, or with a wrong one, is refused.
    let mut no_secret = sample_record(3, Role::Initiator);
    no_secret.secret = None;
    assert!(matches!(
        store
            .create(&no_secret, &SwapState::initial(Role::Initiator))
            .await,
        Err(StoreError::Invalid { .. })
    ));
    let mut wrong_secret = sample_record(4, Role::Initiator);
    wrong_secret.secret = Some(Preimage::from_bytes([0xee; 32]));
    assert!(matches!(
        store
            .create(&wrong_secret, &SwapState::initial(Role::Initiator))
            .await,
        Err(StoreError::Invalid { .. })
    ));
    assert!(matches!(
        store.load(&no_secret.id()).await,
        Err(StoreError::UnknownSwap(_))
    ));

    // Append-only history, latest wins.
    let states = [
        initiator::State::Locking,
        initiator::State::Locked {
            txref: TxRef("ab".into()),
        },
        initiator::State::LockConfirmed,
    ];
    for s in &states {
        let latest = store.load_entry(&a.id()).await.unwrap().1.seq;
        let seq = store
            .append_state(&a.id(), latest, &SwapState::Initiator(s.clone()))
            .await
            .unwrap();
        assert!(seq > latest);
        assert_eq!(store.load_entry(&a.id()).await.unwrap().1.seq, seq);
    }
    // A writer that read an older state is refused, and writes nothing.
    let stale = store.history(&a.id()).await.unwrap()[0].seq;
    let latest = store.load_entry(&a.id()).await.unwrap().1.seq;
    assert!(matches!(
        store
            .append_state(&a.id(), stale, &SwapState::Initiator(initiator::State::Claiming))
            .await,
        Err(StoreError::Conflict { expected, found, .. }) if expected == stale && found == latest
    ));
    // Two writers that read the same state: exactly one of them wins.
    let a_id = a.id();
    let (one, two) = tokio::join!(
        store.append_state(
            &a_id,
            latest,
            &SwapState::Initiator(initiator::State::LockConfirmed),
        ),
        store.append_state(
            &a_id,
            latest,
            &SwapState::Initiator(initiator::State::LockConfirmed),
        ),
    );
    assert_eq!(
        [one.is_ok(), two.is_ok()].iter().filter(|ok| **ok).count(),
        1,
        "{one:?} {two:?}"
    );
    let history = store.history(&a.id()).await.unwrap();
    assert_eq!(history.len(), 5);
    assert!(history.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(
        history.last().unwrap().state,
        SwapState::Initiator(initiator::State::LockConfirmed)
    );
    assert_eq!(
        store.load(&a.id()).await.unwrap().1,
        SwapState::Initiator(initiator::State::LockConfirmed)
    );

    // A responder's learned secret is stored in its state.
    let learned = SwapState::Responder(responder::State::SecretLearned {
        preimage: Preimage::from_bytes([2; 32]),
    });
    let latest_b = store.load_entry(&b.id()).await.unwrap().1.seq;
    store
        .append_state(&b.id(), latest_b, &learned)
        .await
        .unwrap();
    assert_eq!(store.load(&b.id()).await.unwrap().1, learned);

    // A state for the wrong role, or an unknown swap, is refused.
    assert!(matches!(
        store
            .append_state(&a.id(), u64::MAX, &SwapState::initial(Role::Responder))
            .await,
        Err(StoreError::Invalid { .. })
    ));
    let unknown = SwapId([0xff; 16]);
    assert!(matches!(
        store
            .append_state(&unknown, 0, &SwapState::initial(Role::Initiator))
            .await,
        Err(StoreError::UnknownSwap(_))
    ));
    assert!(matches!(
        store.load(&unknown).await,
        Err(StoreError::UnknownSwap(_))
    ));
    assert!(matches!(
        store.history(&unknown).await,
        Err(StoreError::UnknownSwap(_))
    ));

    // Finished swaps leave the unfinished list, and stay listed.
    let latest_b = store.load_entry(&b.id()).await.unwrap().1.seq;
    store
        .append_state(
            &b.id(),
            latest_b,
            &SwapState::Responder(responder::State::Done {
                outcome: Outcome::Swapped,
            }),
        )
        .await
        .unwrap();
    let unfinished: Vec<SwapId> = store
        .unfinished()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.unwrap().0.id())
        .collect();
    assert_eq!(unfinished, vec![a.id()]);
    let listed = store.list().await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.contains(&a.id()) && listed.contains(&b.id()));

    // Hashlocks in use are found.
    assert!(store.hashlock_in_use(&a.terms.hashlock).await.unwrap());
    assert!(store.hashlock_in_use(&b.terms.hashlock).await.unwrap());
    assert!(!store
        .hashlock_in_use(&Preimage::from_bytes([0xcc; 32]).hashlock())
        .await
        .unwrap());

    // What unfinished swaps will still lock: our leg while our lock is ahead, nothing once it
    // is made or the swap ended, per chain and asset.
    let r1 = sample_record(31, Role::Initiator);
    let r2 = sample_record(32, Role::Responder);
    let r3 = sample_record(33, Role::Initiator);
    let (btc, eth) = (r1.terms.x.params.chain, r1.terms.y.params.chain);
    let before_btc = store.to_lock(btc, &Asset::Btc).await.unwrap();
    let before_eth = store.to_lock(eth, &Asset::Eth).await.unwrap();
    for r in [&r1, &r2, &r3] {
        store.create(r, &SwapState::initial(r.role)).await.unwrap();
    }
    let x = |r: &SwapRecord| r.terms.x.amount.base_units();
    assert_eq!(
        store.to_lock(btc, &Asset::Btc).await.unwrap(),
        before_btc + x(&r1) + x(&r3)
    );
    assert_eq!(
        store.to_lock(eth, &Asset::Eth).await.unwrap(),
        before_eth + r2.terms.y.amount.base_units()
    );
    assert_eq!(store.to_lock(eth, &Asset::Btc).await.unwrap(), 0);
    let seq = store.load_entry(&r1.id()).await.unwrap().1.seq;
    store
        .append_state(
            &r1.id(),
            seq,
            &SwapState::Initiator(initiator::State::LockConfirmed),
        )
        .await
        .unwrap();
    let seq = store.load_entry(&r2.id()).await.unwrap().1.seq;
    store
        .append_state(
            &r2.id(),
            seq,
            &SwapState::Responder(responder::State::Done {
                outcome: Outcome::Aborted {
                    reason: crate::machine::GiveUpReason::TooLate,
                },
            }),
        )
        .await
        .unwrap();
    assert_eq!(
        store.to_lock(btc, &Asset::Btc).await.unwrap(),
        before_btc + x(&r3)
    );
    assert_eq!(store.to_lock(eth, &Asset::Eth).await.unwrap(), before_eth);

    // Key indexes are never handed out twice.
    let k1 = store.allocate_key_index().await.unwrap();
    let k2 = store.allocate_key_index().await.unwrap();
    assert_ne!(k1, k2);

    // Several swaps at once: each its own answer, in order; one refused (unknown, stale,
    // other role) writes nothing and leaves the others written.
    let r4 = sample_record(34, Role::Initiator);
    let r5 = sample_record(35, Role::Responder);
    for r in [&r4, &r5] {
        store.create(r, &SwapState::initial(r.role)).await.unwrap();
    }
    let entries = store
        .load_entries(&[r4.id(), unknown, r5.id()])
        .await
        .into_iter()
        .map(|e| e.map(|(r, e)| (r.id(), e.seq)))
        .collect::<Vec<_>>();
    assert!(matches!(entries[1], Err(StoreError::UnknownSwap(_))));
    let (s4, s5) = (
        entries[0].as_ref().unwrap().1,
        entries[2].as_ref().unwrap().1,
    );
    assert_eq!(entries[0].as_ref().unwrap().0, r4.id());
    let locking = SwapState::Initiator(initiator::State::Locking);
    let waiting = SwapState::Responder(responder::State::AwaitCounterLock);
    let answers = store
        .append_states(&[
            (r4.id(), s4, locking.clone()),
            (unknown, 0, SwapState::initial(Role::Initiator)),
            (r5.id(), s5, SwapState::initial(Role::Initiator)),
            (r4.id(), s4, locking.clone()),
            (r5.id(), s5, waiting.clone()),
        ])
        .await;
    assert_eq!(answers.len(), 5);
    assert!(
        answers[0].as_ref().is_ok_and(|seq| *seq > s4),
        "{answers:?}"
    );
    assert!(matches!(answers[1], Err(StoreError::UnknownSwap(_))));
    assert!(matches!(answers[2], Err(StoreError::Invalid { .. })));
    assert!(matches!(answers[3], Err(StoreError::Conflict { .. })));
    assert!(answers[4].is_ok(), "{answers:?}");
    assert_eq!(store.history(&r4.id()).await.unwrap().len(), 2);
    assert_eq!(store.history(&r5.id()).await.unwrap().len(), 2);
    assert_eq!(store.load(&r4.id()).await.unwrap().1, locking);
    assert_eq!(store.load(&r5.id()).await.unwrap().1, waiting);
    assert!(store.append_states(&[]).await.is_empty());

    // What rails accepted: each transaction recorded, each state moved on as `after_sent`
    // says, in order, each with its own answer (an unknown swap is refused alone).
    use super::SentAction;
    use crate::machine::Action;
    let claiming = SwapState::Initiator(initiator::State::Claiming);
    let seq4 = store.load_entry(&r4.id()).await.unwrap().1.seq;
    store.append_state(&r4.id(), seq4, &claiming).await.unwrap();
    let claim = Action::Claim {
        leg: Leg::Y,
        preimage: Preimage::from_bytes([34; 32]),
    };
    let sent = |id, tx, action| SentAction { id, tx, action };
    let answers = store
        .record_sent(&[
            sent(r4.id(), Some(tx(TxKind::Claim, "c4")), claim.clone()),
            sent(
                unknown,
                Some(tx(TxKind::Lock, "u")),
                Action::Lock { leg: Leg::X },
            ),
            sent(r5.id(), None, Action::Lock { leg: Leg::Y }),
            // The same claim told again: its transaction is there, its state moved already.
            sent(r4.id(), Some(tx(TxKind::Claim, "c4")), claim),
        ])
        .await;
    assert_eq!(answers.len(), 4);
    let claim_sent = SwapState::Initiator(initiator::State::ClaimSent);
    assert!(answers[0].tx.is_ok(), "{answers:?}");
    assert_eq!(
        answers[0].state.as_ref().unwrap(),
        &Some(claim_sent.clone())
    );
    assert!(matches!(answers[1].tx, Err(StoreError::UnknownSwap(_))));
    assert!(matches!(answers[1].state, Err(StoreError::UnknownSwap(_))));
    assert!(answers[2].tx.is_ok() && matches!(answers[2].state, Ok(None)));
    assert!(answers[3].tx.is_ok() && matches!(answers[3].state, Ok(None)));
    assert_eq!(store.load(&r4.id()).await.unwrap().1, claim_sent);
    assert_eq!(store.history(&r4.id()).await.unwrap().len(), 4);
    assert_eq!(store.load(&r5.id()).await.unwrap().1, waiting);
    let sent_r4: Vec<String> = store
        .txs(&r4.id())
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.txref.0)
        .collect();
    assert_eq!(sent_r4, vec!["c4".to_string()]);
    assert!(store.txs(&r5.id()).await.unwrap().is_empty());
    assert!(store.record_sent(&[]).await.is_empty());
}

/// The outbox part of the suite: `a` and `b` are two handles on one outbox (two processes on
/// one store, or the same object twice).
pub async fn run_outbox(a: &dyn Outbox, b: &dyn Outbox) {
    let rail = ChainParams::for_chain(ChainId::new(ChainFamily::Bitcoin, Network::Regtest)).rail();
    let key = |n: u8, kind: TxKind| SendKey {
        swap: SwapId([n; 16]),
        rail,
        kind,
    };
    let (k1, k2, k3) = (
        key(1, TxKind::Lock),
        key(2, TxKind::Lock),
        key(1, TxKind::Claim),
    );
    let tx = SignedTx {
        txref: TxRef("aa".repeat(32)),
        raw: vec![1, 2, 3],
    };
    let other = SignedTx {
        txref: TxRef("bb".repeat(32)),
        raw: vec![4],
    };
    assert_eq!(a.signed(&k1).await.unwrap(), None);

    // One transaction serves two sends; both handles see it.
    a.record_signed(&[k1, k2], &tx).await.unwrap();
    for outbox in [a, b] {
        assert_eq!(outbox.signed(&k1).await.unwrap(), Some(tx.clone()));
        assert_eq!(outbox.signed(&k2).await.unwrap(), Some(tx.clone()));
    }
    // A second writer that built its own loses, all or nothing: k3 stays free.
    assert!(matches!(
        b.record_signed(&[k3, k2], &other).await,
        Err(StoreError::AlreadyRecorded { .. })
    ));
    assert_eq!(a.signed(&k3).await.unwrap(), None);
    assert_eq!(a.signed(&k2).await.unwrap(), Some(tx.clone()));
    // Another kind of send on the same swap is independent.
    b.record_signed(&[k3], &other).await.unwrap();
    assert_eq!(a.signed(&k3).await.unwrap(), Some(other.clone()));

    // Discarding needs the recorded transaction's id, and forgets only the sends named.
    assert_eq!(a.discard(&[k1], &other.txref).await.unwrap(), 0);
    assert_eq!(a.discard(&[k1], &tx.txref).await.unwrap(), 1);
    assert_eq!(b.signed(&k1).await.unwrap(), None);
    assert_eq!(b.signed(&k2).await.unwrap(), Some(tx.clone()));
    // Then a new one may be recorded for it.
    let newer = SignedTx {
        txref: TxRef("cc".repeat(32)),
        raw: vec![5, 6],
    };
    b.record_signed(&[k1], &newer).await.unwrap();
    assert_eq!(a.signed(&k1).await.unwrap(), Some(newer));
    assert_eq!(a.discard(&[k2, k3], &tx.txref).await.unwrap(), 1);
    assert_eq!(a.signed(&k2).await.unwrap(), None);
    assert_eq!(a.signed(&k3).await.unwrap(), Some(other.clone()));

    // A round's sends, each with its own transaction, in one write: all or nothing, naming
    // the sends already taken (k3 has `other`), then all once those are left out.
    let (k4, k5) = (key(4, TxKind::Lock), key(5, TxKind::Lock));
    let t4 = SignedTx {
        txref: TxRef("d4".repeat(32)),
        raw: vec![4, 4],
    };
    let t5 = SignedTx {
        txref: TxRef("d5".repeat(32)),
        raw: vec![5, 5],
    };
    let round = [(k4, t4.clone()), (k3, newer_or(&other)), (k5, t5.clone())];
    assert_eq!(b.record_each(&round).await.unwrap(), vec![k3]);
    assert_eq!(a.signed(&k4).await.unwrap(), None);
    assert_eq!(a.signed(&k5).await.unwrap(), None);
    assert_eq!(
        b.record_each(&[(k4, t4.clone()), (k5, t5.clone())])
            .await
            .unwrap(),
        Vec::<SendKey>::new()
    );
    assert_eq!(a.signed(&k4).await.unwrap(), Some(t4));
    assert_eq!(a.signed(&k5).await.unwrap(), Some(t5));
    assert_eq!(a.signed(&k3).await.unwrap(), Some(other));
}

/// Another transaction than `tx`.
fn newer_or(tx: &SignedTx) -> SignedTx {
    SignedTx {
        txref: TxRef("ee".repeat(32)),
        raw: tx.raw.iter().map(|b| b ^ 0xff).collect(),
    }
}

/// Creates each record with its role's first state.
async fn create_initial(store: &dyn SwapStore, records: &[&SwapRecord]) {
    for r in records {
        store.create(r, &SwapState::initial(r.role)).await.unwrap();
    }
}

/// Two swaps with fresh random preimages, for the tests of secrets at rest (see
/// [`super::seal`]): an initiator (swap `n`) with its secret, and a responder (swap `n + 1`)
/// that learned a preimage.
pub struct SecretSwaps {
    /// The initiator's swap, with `secrets[0]`.
    pub initiator: SwapRecord,
    /// The responder's swap.
    pub responder: SwapRecord,
    /// The responder's states after its first, holding `secrets[1]`: learned, then claiming.
    pub states: [SwapState; 2],
    /// The initiator's secret and the responder's learned preimage.
    pub secrets: [Preimage; 2],
}

/// [`SecretSwaps`] numbered `n` and `n + 1`.
pub fn secret_swaps(n: u8) -> SecretSwaps {
    let mine = Preimage::random().unwrap();
    let learned = Preimage::random().unwrap();
    let mut initiator = sample_record(n, Role::Initiator);
    initiator.terms.hashlock = mine.hashlock();
    initiator.secret = Some(mine.clone());
    let states = [
        responder::State::SecretLearned {
            preimage: learned.clone(),
        },
        responder::State::Claiming {
            preimage: learned.clone(),
        },
    ]
    .map(SwapState::Responder);
    SecretSwaps {
        initiator,
        responder: sample_record(n.wrapping_add(1), Role::Responder),
        states,
        secrets: [mine, learned],
    }
}

/// Stores [`secret_swaps`]`(n)` through `store` and checks they read back. Answers both
/// secrets, for the caller to look for in its raw storage with [`in_clear`].
pub async fn write_secrets(store: &dyn SwapStore, n: u8) -> [Preimage; 2] {
    let s = secret_swaps(n);
    let (a, b) = (&s.initiator, &s.responder);
    create_initial(store, &[a, b]).await;
    for state in &s.states {
        let seq = store.load_entry(&b.id()).await.unwrap().1.seq;
        store.append_state(&b.id(), seq, state).await.unwrap();
    }
    assert_eq!(&store.load(&a.id()).await.unwrap().0, a);
    assert_eq!(store.load(&b.id()).await.unwrap().1, s.states[1]);
    let history = store.history(&b.id()).await.unwrap();
    assert_eq!(history[history.len() - 2].state, s.states[0]);
    s.secrets
}

/// After [`write_secrets`] for swaps 1 and 3, the caller copied swap 1's sealed secret into
/// swap 3's row and swap 2's latest state into swap 4's, behind the store's back: swaps 3 and
/// 4 read as corrupt (a sealed secret opens only for its own swap), swaps 1 and 2 as before.
pub async fn moved_secrets_are_refused(store: &dyn SwapStore) {
    for moved in [3u8, 4] {
        match store.load(&SwapId([moved; 16])).await {
            Err(StoreError::Corrupt { swap, detail }) => {
                assert_eq!(swap, hex::encode([moved; 16]));
                assert!(detail.contains("another swap"), "{detail}");
            }
            other => panic!("swap {moved}: {other:?}"),
        }
    }
    for fine in [1u8, 2] {
        store.load(&SwapId([fine; 16])).await.unwrap();
    }
    let unfinished = store.unfinished().await.unwrap();
    assert_eq!(unfinished.iter().filter(|r| r.is_ok()).count(), 2);
}

/// Whether `raw` holds `secret` in clear: its 32 bytes, or its hex.
pub fn in_clear(raw: &[u8], secret: &Preimage) -> bool {
    let hex = secret.expose_hex();
    [secret.as_bytes().as_slice(), hex.as_bytes()]
        .iter()
        .any(|needle| raw.windows(needle.len()).any(|w| w == *needle))
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn memory_store_passes_conformance() {
        super::run(&super::super::MemoryStore::new()).await;
        let outbox = super::super::MemoryOutbox::new();
        super::run_outbox(&outbox, &outbox).await;
    }
}
