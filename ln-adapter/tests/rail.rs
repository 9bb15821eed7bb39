//! The Lightning rail ([`LnRail`]) as the swap engine uses it: a leg paid at exactly its
//! agreed CLTV, seen held by the payee, claimed, and the preimage learned by the payer; a leg
//! failed back reads refunded on both sides and is never paid again; a cancelled leg is never
//! paid; a leg too close to its expiry is refused; the payer offline while the payee claims on
//! chain.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use ln_adapter::{LnNode, LnRail};
use swap_core::{
    Account, Amount, Asset, Cause, ChainFamily, Expiry, Finality, Hashlock, Height, HtlcParams,
    HtlcStatus, Preimage, Rail, RailBody, Sats, SwapId,
};

use crate::common::*;

struct Rails {
    node: devnet::regtest::RegtestNode,
    dirs: tempfile::TempDir,
    a: Arc<LnNode>,
    b: Arc<LnNode>,
    ra: LnRail,
    rb: LnRail,
}

/// A pair with a channel from `a` to `b` and a rail on each node.
async fn rails(capacity_sats: u64) -> Rails {
    let p = pair().await;
    open_channel(&p, capacity_sats).await;
    let Pair {
        node, a, b, dirs, ..
    } = p;
    let (a, b) = (Arc::new(a), Arc::new(b));
    Rails {
        ra: LnRail::new(Arc::clone(&a)),
        rb: LnRail::new(Arc::clone(&b)),
        node,
        dirs,
        a,
        b,
    }
}

fn asset_of(family: ChainFamily) -> Asset {
    match family {
        ChainFamily::Litecoin => Asset::Ltc,
        _ => Asset::Btc,
    }
}

/// A leg paying `amount` from `ra`'s node to `rb`'s, expiring `blocks` after the tip, with
/// `rb`'s hold invoice in its rail data.
async fn leg(r: &Rails, amount: u64, blocks: u64) -> (HtlcParams, Preimage) {
    let preimage = Preimage::random().unwrap();
    let hashlock = preimage.hashlock();
    let tip = r.node.height().await;
    let rail_data = r.rb.receive(hashlock, Sats(amount)).unwrap();
    let htlc = HtlcParams {
        swap_id: SwapId::random().unwrap(),
        key_index: 0,
        hashlock,
        asset: asset_of(r.node.chain_id().family),
        amount: Amount::Sats(Sats(amount)),
        sender: r.ra.me(),
        recipient: r.rb.me(),
        expiry: Expiry::Height(Height(tip + blocks)),
        watch_from: Height(tip),
        rail_data: Some(rail_data),
    };
    (htlc, preimage)
}

/// Waits (60 s at most) until `rail` reports a status for which `pred` holds.
async fn wait_status(
    rail: &LnRail,
    htlc: &HtlcParams,
    what: &str,
    pred: impl Fn(&HtlcStatus) -> bool,
) -> HtlcStatus {
    let started = Instant::now();
    let mut last = None;
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}; last status {last:?}"
        );
        // A transient error means "ask again" (e.g. a payment LDK ended whose outcome is not
        // recorded yet); any other error fails the test.
        match rail.htlc_status(htlc).await {
            Ok(status) if pred(&status) => return status,
            Ok(status) => last = Some(Ok(status)),
            Err(e) if e.is_transient() => last = Some(Err(e)),
            Err(e) => panic!("{what}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn outbound(n: &LnNode) -> u64 {
    n.channels().iter().map(|c| c.outbound_msat).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leg_paid_at_its_exact_cltv_held_claimed_and_learned() {
    let r = rails(500_000).await;
    let amount = 40_000;
    let (htlc, preimage) = leg(&r, amount, 300).await;
    assert_eq!(r.ra.htlc_status(&htlc).await.unwrap(), HtlcStatus::Absent);
    assert_eq!(r.rb.htlc_status(&htlc).await.unwrap(), HtlcStatus::Absent);
    // Blocks between the invoice and the payment: the CLTV stays the agreed one.
    r.node.mine(2).await;
    r.a.sync().await.unwrap();
    r.b.sync().await.unwrap();
    let before = outbound(&r.a);
    let txref = r.ra.lock(&htlc).await.unwrap();
    assert_eq!(
        r.ra.lock(&htlc).await.unwrap(),
        txref,
        "a second lock is the same"
    );

    let held = wait_status(&r.rb, &htlc, "held", |s| {
        matches!(s, HtlcStatus::Funded { .. })
    })
    .await;
    let HtlcStatus::Funded { lock, finality } = held else {
        unreachable!()
    };
    assert_eq!(finality, Finality::Irrevocable);
    assert_eq!(
        lock.expiry, htlc.expiry,
        "the payee sees the agreed CLTV exactly"
    );
    assert_eq!(lock.amount, htlc.amount);
    assert_eq!(lock.hashlock, htlc.hashlock);
    assert_eq!(lock.recipient, htlc.recipient);
    let HtlcStatus::Funded { lock: ours, .. } = r.ra.htlc_status(&htlc).await.unwrap() else {
        panic!("the payer sees its payment out")
    };
    assert_eq!(ours.expiry, htlc.expiry);
    assert_eq!(
        before - outbound(&r.a),
        amount * 1_000,
        "paid once, not twice"
    );
    // The payer cannot cancel what it sent.
    let err = r.ra.cancel_lock(&htlc).await.unwrap_err();
    assert_eq!(err.cause, Cause::AlreadySpent);

    // One more HTLC to the same hash (anyone who knows the hash and the invoice can send
    // one): LDK fails that one; the held payment stays held and claimable.
    let mut a_rx = r.a.subscribe();
    let Some(swap_core::RailBody::Lightning { payment_secret, .. }) =
        htlc.rail_data.as_ref().map(|d| d.body.clone())
    else {
        unreachable!()
    };
    r.a.pay(
        &ln_adapter::PaymentTarget {
            payee: r.b.node_id(),
            hashlock: htlc.hashlock,
            payment_secret,
            amount_msat: 2_000,
            final_cltv_delta: 200,
            route_hints: vec![],
        },
        [7; 32],
    )
    .unwrap();
    wait_event(&mut a_rx, "the extra HTLC failed", |e| {
        matches!(e, ln_adapter::LnEvent::PaymentFailed { payment_id, .. } if *payment_id == [7; 32])
    })
    .await;
    wait_until("the extra HTLC failed", || {
        r.b.channels().iter().all(|c| c.inbound_htlcs.len() == 1)
    })
    .await;
    assert!(matches!(
        r.rb.htlc_status(&htlc).await.unwrap(),
        HtlcStatus::Funded {
            finality: Finality::Irrevocable,
            ..
        }
    ));

    // A wrong preimage is refused before anything reaches the node.
    let wrong = Preimage::random().unwrap();
    assert_eq!(
        r.rb.claim(&htlc, &wrong).await.unwrap_err().cause,
        Cause::Invalid
    );
    r.rb.claim(&htlc, &preimage).await.unwrap();
    let learned = wait_status(&r.ra, &htlc, "the payer learns the preimage", |s| {
        matches!(s, HtlcStatus::Claimed { .. })
    })
    .await;
    assert_eq!(
        learned,
        HtlcStatus::Claimed {
            preimage: preimage.clone(),
            txref: txref.clone(),
            finality: Finality::Irrevocable
        }
    );
    wait_status(&r.rb, &htlc, "the claim final", |s| {
        matches!(
            s,
            HtlcStatus::Claimed {
                finality: Finality::Irrevocable,
                ..
            }
        )
    })
    .await;
    // Locking again after the payment succeeded pays nothing.
    let after = outbound(&r.a);
    assert_eq!(r.ra.lock(&htlc).await.unwrap(), txref);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(outbound(&r.a), after);
    // Funds: what the payer can still send over one channel.
    let funds = r.ra.funds(&htlc.asset).await.unwrap();
    assert!(funds.balance > 0 && funds.balance <= u128::from(500_000 - amount));
    assert!(r.ra.funds(&Asset::Eth).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leg_failed_back_is_refunded_on_both_sides_and_never_paid_again() {
    let r = rails(500_000).await;
    let (htlc, preimage) = leg(&r, 25_000, 300).await;
    let before = outbound(&r.a);
    r.ra.lock(&htlc).await.unwrap();
    wait_status(&r.rb, &htlc, "held", |s| {
        matches!(s, HtlcStatus::Funded { .. })
    })
    .await;
    r.b.fail_back(&htlc.hashlock).unwrap();
    wait_status(&r.ra, &htlc, "refunded (payer)", |s| {
        matches!(s, HtlcStatus::Refunded { .. })
    })
    .await;
    wait_status(&r.rb, &htlc, "refunded (payee)", |s| {
        matches!(s, HtlcStatus::Refunded { .. })
    })
    .await;
    wait_until("the amount is back", || outbound(&r.a) == before).await;
    assert_eq!(
        r.ra.lock(&htlc).await.unwrap_err().cause,
        Cause::AlreadySpent
    );
    assert!(
        r.rb.claim(&htlc, &preimage).await.is_err(),
        "a failed-back payment cannot be claimed"
    );
    assert!(matches!(
        r.rb.htlc_status(&htlc).await.unwrap(),
        HtlcStatus::Refunded { .. }
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(outbound(&r.a), before, "nothing was paid again");
}

/// A leg whose first send LDK failed for want of a route (as when the payee's node goes
/// away between LDK's route and its HTLC: none of it out) reads absent, and is sent again
/// with a new payment id (once, with two calls at once), held, claimed and learned, paying
/// exactly once; one failed so can be cancelled like one never sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leg_that_found_no_route_is_sent_again_and_pays_once() {
    let r = rails(500_000).await;
    let amount = 30_000;
    let (htlc, preimage) = leg(&r, amount, 300).await;
    let before = outbound(&r.a);
    r.ra.record_first_send_unrouted(&htlc).unwrap();
    assert_eq!(r.ra.htlc_status(&htlc).await.unwrap(), HtlcStatus::Absent);
    // Two calls at once: one hands the payment over, the other is told to ask again (or
    // finds it sent); one payment either way.
    let (one, two) = tokio::join!(r.ra.lock(&htlc), r.ra.lock(&htlc));
    let txref = match (one, two) {
        (Ok(t), Ok(u)) => {
            assert_eq!(t, u);
            t
        }
        (Ok(t), Err(e)) | (Err(e), Ok(t)) => {
            assert!(e.is_transient(), "{e}");
            t
        }
        (Err(e), Err(f)) => panic!("{e}; {f}"),
    };
    wait_status(&r.rb, &htlc, "held", |s| {
        matches!(s, HtlcStatus::Funded { .. })
    })
    .await;
    assert!(matches!(
        r.ra.htlc_status(&htlc).await.unwrap(),
        HtlcStatus::Funded { .. }
    ));
    assert_eq!(before - outbound(&r.a), amount * 1_000, "one HTLC out");
    // Sent: locking again sends nothing more.
    assert_eq!(r.ra.lock(&htlc).await.unwrap(), txref);
    r.rb.claim(&htlc, &preimage).await.unwrap();
    let learned = wait_status(&r.ra, &htlc, "the payer learns the preimage", |s| {
        matches!(s, HtlcStatus::Claimed { .. })
    })
    .await;
    assert!(matches!(learned, HtlcStatus::Claimed { preimage: p, .. } if p == preimage));
    wait_until("the claim settled in the channel", || {
        r.a.channels()
            .iter()
            .all(|c| c.outbound_htlcs == 0 && c.inbound_htlcs.is_empty())
    })
    .await;
    assert_eq!(outbound(&r.a), before - amount * 1_000, "paid exactly once");

    // Failed so, then cancelled: never sent.
    let (other, _) = leg(&r, 10_000, 300).await;
    r.ra.record_first_send_unrouted(&other).unwrap();
    assert_eq!(r.ra.cancel_lock(&other).await.unwrap().0, "");
    assert_eq!(r.ra.lock(&other).await.unwrap_err().cause, Cause::Invalid);
    assert_eq!(r.ra.htlc_status(&other).await.unwrap(), HtlcStatus::Absent);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(outbound(&r.a), before - amount * 1_000);
}

/// A leg LDK refuses for want of room in the channel (another leg's HTLC takes it) is told
/// of a change as soon as that HTLC leaves the channel (failed back here; nothing else
/// concerns the leg), not left to its retry's backoff; then it pays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leg_refused_for_want_of_room_is_woken_when_an_htlc_leaves_the_channel() {
    let r = rails(500_000).await;
    let sendable = |n: &LnNode| n.channels().iter().map(|c| c.sendable_msat).max().unwrap();
    let amount = sendable(&r.a) / 1_000 * 6 / 10;
    let (first, _) = leg(&r, amount, 300).await;
    let (second, _) = leg(&r, amount, 300).await;
    let mut changes =
        r.ra.changes()
            .expect("the Lightning rail tells its changes");
    r.ra.lock(&first).await.unwrap();
    wait_status(&r.rb, &first, "held", |s| {
        matches!(s, HtlcStatus::Funded { .. })
    })
    .await;
    assert!(
        sendable(&r.a) < amount * 1_000,
        "no room left for the second"
    );
    let e = r.ra.lock(&second).await.unwrap_err();
    assert!(e.is_transient(), "{e}");
    assert!(e.to_string().contains("no usable channel"), "{e}");
    assert_eq!(r.ra.htlc_status(&second).await.unwrap(), HtlcStatus::Absent);
    while changes.take().is_some() {}
    // The payee fails the first back: its amount is ours again once the HTLC is out.
    r.b.fail_back(&first.hashlock).unwrap();
    tokio::time::timeout(Duration::from_secs(20), async {
        while !changes.next().await.concerns(&second.hashlock) {}
    })
    .await
    .expect("the refused leg is told when the first HTLC leaves the channel");
    wait_until("the first HTLC out of the channel", || {
        r.a.channels().iter().all(|c| c.outbound_htlcs == 0)
    })
    .await;
    r.ra.lock(&second).await.unwrap();
    wait_status(&r.rb, &second, "the second held", |s| {
        matches!(s, HtlcStatus::Funded { .. })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_late_and_malformed_legs_are_never_paid() {
    let r = rails(500_000).await;
    let before = outbound(&r.a);
    // Cancelled before it was sent: never sent afterwards.
    let (htlc, _) = leg(&r, 10_000, 300).await;
    assert_eq!(r.ra.cancel_lock(&htlc).await.unwrap().0, "");
    assert_eq!(r.ra.lock(&htlc).await.unwrap_err().cause, Cause::Invalid);
    assert_eq!(r.ra.htlc_status(&htlc).await.unwrap(), HtlcStatus::Absent);

    // Too close to its expiry for the payee's minimum final delta.
    let (late, _) = leg(&r, 10_000, 20).await;
    let err = r.ra.lock(&late).await.unwrap_err();
    assert_eq!(err.cause, Cause::Invalid, "{err}");
    assert!(err.message.contains("too late"), "{err}");

    // The invoice's node is not the leg's recipient.
    let (mut other, _) = leg(&r, 10_000, 300).await;
    other.recipient = Account::PublicKey(swap_core::PublicKeyBytes([2; 33]));
    assert_eq!(r.ra.lock(&other).await.unwrap_err().cause, Cause::Invalid);
    // Not this rail's asset; no rail data; an amount in wei.
    let (mut eth, _) = leg(&r, 10_000, 300).await;
    eth.asset = Asset::Eth;
    assert_eq!(r.ra.lock(&eth).await.unwrap_err().cause, Cause::Invalid);
    let (mut bare, _) = leg(&r, 10_000, 300).await;
    bare.rail_data = None;
    assert_eq!(r.ra.lock(&bare).await.unwrap_err().cause, Cause::Invalid);
    // A leg between two other nodes is not ours to read.
    let (mut stranger, _) = leg(&r, 10_000, 300).await;
    stranger.sender = Account::PublicKey(swap_core::PublicKeyBytes([3; 33]));
    assert_eq!(
        r.ra.htlc_status(&stranger).await.unwrap_err().cause,
        Cause::Invalid
    );
    // Refunds are automatic: the rail never sends one.
    assert!(r.ra.refund(&htlc).await.is_err());
    // An unknown hash reads absent on both sides.
    let mut unknown = htlc.clone();
    unknown.hashlock = Hashlock([9; 32]);
    assert_eq!(
        r.rb.htlc_status(&unknown).await.unwrap(),
        HtlcStatus::Absent
    );

    // Checked before a swap is agreed: a leg the channel can carry passes on both sides; one
    // larger than our side, or to a node we have no channel with, says what to open.
    let (fits, _) = leg(&r, 10_000, 300).await;
    r.ra.check_leg(&fits).await.unwrap();
    r.rb.check_leg(&fits).await.unwrap();
    let (big, _) = leg(&r, 600_000, 300).await;
    let err = r.ra.check_leg(&big).await.unwrap_err();
    assert_eq!(err.cause, Cause::Invalid, "{err}");
    assert!(
        err.message.contains("the leg needs 600000") && err.message.contains("xswap ln open"),
        "{err}"
    );
    let elsewhere = {
        let secp = bitcoin::secp256k1::Secp256k1::new();
        let key = bitcoin::secp256k1::SecretKey::from_slice(&[7; 32]).unwrap();
        swap_core::PublicKeyBytes(key.public_key(&secp).serialize())
    };
    let (mut far, _) = leg(&r, 10_000, 300).await;
    far.recipient = Account::PublicKey(elsewhere);
    if let Some(RailBody::Lightning { node_id, .. }) = far.rail_data.as_mut().map(|d| &mut d.body) {
        *node_id = elsewhere;
    }
    let err = r.ra.check_leg(&far).await.unwrap_err();
    assert!(err.message.contains("no usable Lightning channel"), "{err}");
    // Neither ours to pay nor to receive; an invoice of another node than the recipient.
    assert_eq!(
        r.rb.check_leg(&far).await.unwrap_err().cause,
        Cause::Invalid
    );
    assert_eq!(
        r.ra.check_leg(&other).await.unwrap_err().cause,
        Cause::Invalid
    );

    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(outbound(&r.a), before, "nothing was paid");
}

/// The payer goes offline after its payment is held; the payee claims: it cannot settle in
/// the channel, so its node force-closes and claims the HTLC on chain before the CLTV. The
/// payer, started again, learns the preimage from the chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payer_offline_payee_claims_on_chain_and_the_payer_learns_the_preimage() {
    let r = rails(500_000).await;
    let (htlc, preimage) = leg(&r, 50_000, 120).await;
    r.ra.lock(&htlc).await.unwrap();
    wait_status(&r.rb, &htlc, "held", |s| {
        matches!(s, HtlcStatus::Funded { .. })
    })
    .await;
    let Rails {
        node,
        dirs,
        a,
        b,
        rb,
        ..
    } = r;
    // The payer stops (its state stays in its directory).
    a.stop().await.unwrap();
    drop(a);
    rb.claim(&htlc, &preimage).await.unwrap();
    assert!(matches!(
        rb.htlc_status(&htlc).await.unwrap(),
        HtlcStatus::Claimed { .. }
    ));
    // Blocks pass towards the CLTV: the payee's node goes on chain before it (force close,
    // then the HTLC claimed with the preimage once the commitment confirms).
    let Expiry::Height(Height(expiry)) = htlc.expiry else {
        unreachable!()
    };
    let started = Instant::now();
    let mut closed_at = None;
    loop {
        let height = node.height().await;
        assert!(
            height < expiry,
            "the payee did not claim on chain before the CLTV (height {height})"
        );
        assert!(started.elapsed() < Duration::from_secs(240), "timed out");
        node.mine(1).await;
        b.sync().await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        if closed_at.is_none() && b.channels().is_empty() {
            closed_at = Some(height);
        }
        let settled = node.rpc().get_raw_mempool().await.unwrap().is_empty();
        if closed_at.is_some_and(|c| height >= c + 8) && settled {
            break;
        }
    }
    assert!(matches!(
        rb.htlc_status(&htlc).await.unwrap(),
        HtlcStatus::Claimed { .. }
    ));
    // The payer comes back: it learns the preimage from the chain.
    let a = Arc::new(start_ln(&node, "a", 1, &dirs.path().join("a")).await);
    let ra = LnRail::new(Arc::clone(&a));
    let started = Instant::now();
    loop {
        node.mine(1).await;
        a.sync().await.unwrap();
        match ra.htlc_status(&htlc).await {
            Ok(HtlcStatus::Claimed { preimage: got, .. }) => {
                assert_eq!(got, preimage);
                break;
            }
            Ok(_) => {}
            // The payment ended and its preimage is not recorded yet: ask again.
            Err(e) => assert!(e.is_transient(), "{e}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the payer never learned the preimage: {:?}",
            ra.htlc_status(&htlc).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

/// A leg the rail reports locked is in the node's store: LDK keeps a payment whose HTLC
/// waits in its holding cell in its channel manager only, and a manager write with nothing
/// else in it may wait in memory (`gate.rs`), so the rail returns only once a committed
/// manager has the payment. The payer's database copied the moment each lock returns (what a
/// process killed right then would leave), started as a node: LDK knows each payment, and
/// the leg reads locked, never "ended with no outcome" (which, with the leg recorded as sent,
/// would never be paid again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leg_reported_locked_is_in_the_store() {
    let r = rails(500_000).await;
    let dir = r.dirs.path().join("a");
    let copies = tempfile::tempdir().unwrap();
    let mut legs = vec![];
    for i in 0..3 {
        let (htlc, _) = leg(&r, 20_000, 100).await;
        r.ra.lock(&htlc).await.unwrap();
        let copy = copies.path().join(format!("copy-{i}"));
        std::fs::create_dir_all(&copy).unwrap();
        node_db(&dir)
            .execute(
                "VACUUM INTO ?1",
                [copy.join(ln_adapter::DB_FILE).to_str().unwrap()],
            )
            .unwrap();
        legs.push((htlc, copy));
    }
    r.a.stop().await.unwrap();
    r.b.stop().await.unwrap();
    for (i, (htlc, copy)) in legs.iter().enumerate() {
        let node = Arc::new(start_ln(&r.node, "a", 1, copy).await);
        let status = LnRail::new(Arc::clone(&node)).htlc_status(htlc).await;
        node.stop().await.unwrap();
        assert!(
            matches!(status, Ok(HtlcStatus::Funded { .. })),
            "the store copied when lock {i} returned: {status:?}"
        );
    }
}
