//! Channel sessions over real TCP on localhost (swap-net's Noise transport): payments both
//! ways, crossing proposals over the wire, reconnects mid-update, hostile frames, routing by
//! channel id across several peers.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::B256;
use alloy::signers::local::PrivateKeySigner;
use common::*;
use eth_adapter::channel::{ChannelRef, OnChain, Side};
use eth_channel::msg::{Message, UpdateKind, WireLock};
use eth_channel::{
    hashlock_of, ChainView, ChannelStore, Config, Node, Party, RejectCode, SessionConfig,
    SessionError, SqliteChannelStore,
};
use swap_net::{Connection, Identity, NetError, PeerKey};
use tokio::net::TcpListener;

fn cfg() -> SessionConfig {
    SessionConfig {
        request_timeout: Duration::from_secs(10),
        crossing_wait: Duration::from_secs(3),
        busy_retry: Duration::from_millis(50),
        ..SessionConfig::default()
    }
}

/// One party: its keys, store and node.
struct Who {
    key: PrivateKeySigner,
    net: Identity,
    store: Arc<SqliteChannelStore>,
    node: Node,
}

fn who() -> Who {
    who_with(cfg())
}

fn who_with(cfg: SessionConfig) -> Who {
    who_on(cfg, Arc::new(Flaky::steady()))
}

/// A chain view with fixed amounts and time that fails chosen reads of a channel's amounts
/// (those numbered in `fail`, counted from 1), as a node that cannot be reached for a moment
/// does.
struct Flaky {
    reads: std::sync::atomic::AtomicUsize,
    fail: std::ops::Range<usize>,
    /// Every read fails while set.
    down: std::sync::atomic::AtomicBool,
}

impl Flaky {
    /// Never fails.
    fn steady() -> Self {
        Self {
            reads: 0.into(),
            fail: 0..0,
            down: false.into(),
        }
    }
}

#[async_trait::async_trait]
impl ChainView for Flaky {
    async fn on_chain(&self, _chan: &ChannelRef) -> Result<OnChain, SessionError> {
        let n = self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        if self.fail.contains(&n) || self.down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(SessionError::Chain("node unreachable".into()));
        }
        Ok(chain())
    }
    async fn revealed_at(
        &self,
        _chan: &ChannelRef,
        _hashlock: B256,
    ) -> Result<Option<u64>, SessionError> {
        Ok(None)
    }
    fn now(&self) -> u64 {
        NOW
    }
}

fn who_on(cfg: SessionConfig, view: Arc<dyn ChainView>) -> Who {
    let key = PrivateKeySigner::random();
    let net = Identity::generate().unwrap();
    let store = Arc::new(SqliteChannelStore::in_memory().unwrap());
    let node = Node::new(
        net.clone(),
        key.clone(),
        Config::default(),
        cfg,
        store.clone(),
        view,
    );
    Who {
        key,
        net,
        store,
        node,
    }
}

/// Opens a channel between `a` (side A) and `b` (side B) in both stores and nodes.
fn open(a: &Who, b: &Who, salt: u8) -> ChannelRef {
    let mut chan = chan_of(&a.key, &b.key);
    chan.params.salt = B256::repeat_byte(salt);
    for (w, side, peer) in [(a, Side::A, b.net.public()), (b, Side::B, a.net.public())] {
        Party::open(
            chan.clone(),
            side,
            w.key.clone(),
            Config::default(),
            DEP_A,
            DEP_B,
            &*w.store,
        )
        .unwrap();
        w.node.add_channel(chan.id(), peer).unwrap();
    }
    chan
}

async fn listen(w: &Who) -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let node = w.node.clone();
    tokio::spawn(async move { node.serve(l).await });
    addr
}

/// `a` dials `b` at `addr`; returns once both ends have the connection up.
async fn link(a: &Who, b: &Who, addr: std::net::SocketAddr) {
    a.node.connect(addr, b.net.public()).await.unwrap();
    for _ in 0..200 {
        if a.node.connected(b.net.public()) && b.node.connected(a.net.public()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no connection");
}

/// `a` connected to a raw stand-in for `b` (it completes the handshake as `b`, then does only
/// what the test does with the connection returned).
async fn raw_peer_of(a: &Who, b: &Who) -> Connection {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let bnet = b.net.clone();
    let accepted = tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        Connection::accept(s, &bnet).await.unwrap()
    });
    a.node.connect(addr, b.net.public()).await.unwrap();
    accepted.await.unwrap()
}

fn lock(chan: &ChannelRef, side: Side, n: u8, amount: u128) -> (B256, UpdateKind) {
    let pre = B256::repeat_byte(n);
    let kind = UpdateKind::Lock {
        lock: WireLock {
            from: chan.party(side),
            amount,
            hashlock: hashlock_of(&pre),
            expiry: NOW + 3600,
        },
    };
    (pre, kind)
}

fn claim(pre: B256) -> UpdateKind {
    UpdateKind::Claim {
        hashlock: hashlock_of(&pre),
        preimage: pre,
    }
}

fn latest(w: &Who, id: B256) -> eth_channel::CoSigned {
    w.node.with_party(id, |p| p.latest().clone()).unwrap()
}

async fn settled(a: &Who, b: &Who, id: B256, version: u64) {
    for _ in 0..200 {
        let (la, lb) = (latest(a, id), latest(b, id));
        if la.state.version >= version && la == lb {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "not settled at {version}: A {:?}, B {:?}",
        latest(a, id).state,
        latest(b, id).state
    );
}

#[tokio::test]
async fn payments_both_ways_over_tcp() {
    let (a, b) = (who(), who());
    let chan = open(&a, &b, 1);
    let id = chan.id();
    let addr = listen(&b).await;
    a.node.connect(addr, b.net.public()).await.unwrap();

    let (pre1, k) = lock(&chan, Side::A, 1, 100);
    assert_eq!(a.node.propose(id, k).await.unwrap(), 1);
    assert_eq!(b.node.propose(id, claim(pre1)).await.unwrap(), 2);
    let (pre2, k) = lock(&chan, Side::B, 2, 30);
    assert_eq!(b.node.propose(id, k).await.unwrap(), 3);
    assert_eq!(a.node.propose(id, claim(pre2)).await.unwrap(), 4);
    settled(&a, &b, id, 4).await;
    let l = latest(&a, id);
    assert_eq!(l.state.balanceA, DEP_A - 100 + 30);
    assert_eq!(l.state.balanceB, DEP_B + 100 - 30);
    assert!(l.locks.is_empty());
    assert_eq!(a.store.history(id).unwrap(), b.store.history(id).unwrap());
    // An invalid change of ours is refused locally, nothing sent or stored.
    let (_, k) = lock(&chan, Side::A, 3, DEP_A * 10);
    assert!(matches!(
        a.node.propose(id, k).await,
        Err(SessionError::Party(eth_channel::PartyError::Invalid(r))) if r.code == RejectCode::InsufficientBalance
    ));
    assert_eq!(latest(&a, id).state.version, 4);
}

#[tokio::test]
async fn crossing_proposals_over_the_wire_converge() {
    let (a, b) = (who(), who());
    let chan = open(&a, &b, 2);
    let id = chan.id();
    let addr = listen(&b).await;
    link(&a, &b, addr).await;
    let mut want_a = 0;
    let mut want_b = 0;
    for round in 0..4u8 {
        let (_, ka) = lock(&chan, Side::A, 10 + round, 10);
        let (_, kb) = lock(&chan, Side::B, 50 + round, 7);
        let (ra, rb) = tokio::join!(a.node.propose(id, ka), b.node.propose(id, kb));
        let (va, vb) = (ra.unwrap(), rb.unwrap());
        assert_ne!(va, vb);
        want_a += 10;
        want_b += 7;
        settled(&a, &b, id, va.max(vb)).await;
        let l = latest(&a, id);
        assert_eq!(l.state.balanceA, DEP_A - want_a);
        assert_eq!(l.state.balanceB, DEP_B - want_b);
        assert_eq!(l.locks.len(), 2 * usize::from(round + 1));
    }
    let (ha, hb) = (a.store.history(id).unwrap(), b.store.history(id).unwrap());
    assert_eq!(ha, hb);
    assert!(ha
        .windows(2)
        .all(|w| w[0].state.version < w[1].state.version));
    // The proposals did cross (both sent before either was answered): versions were skipped,
    // 8 changes, each co-signed once.
    assert_eq!(ha.len(), 8);
    assert!(ha.last().unwrap().state.version > 8, "no crossing happened");
}

/// Side B loses a crossing and proposes its change again; a chain read failing at any of
/// B's reads around it (its proposal, the crossing, the re-proposal) only delays the change:
/// a postponed re-proposal is tried again (it was dropped once, and the channel then refused
/// every later proposal of B's as busy).
#[tokio::test]
async fn a_re_proposal_postponed_by_an_unreadable_chain_is_tried_again() {
    for (first, reads) in (1..=5).flat_map(|f| [(f, 1), (f, 2)]) {
        let fail = format!("reads {first}..{}", first + reads);
        let view = Arc::new(Flaky {
            fail: first..first + reads,
            ..Flaky::steady()
        });
        let a = who();
        let b = who_on(cfg(), view.clone());
        let chan = open(&a, &b, 40 + u8::try_from(first * 2 + reads).unwrap());
        let id = chan.id();
        let addr = listen(&b).await;
        link(&a, &b, addr).await;
        let (_, ka) = lock(&chan, Side::A, 1, 10);
        let (_, kb) = lock(&chan, Side::B, 2, 7);
        let (ra, rb) = tokio::join!(a.node.propose(id, ka), b.node.propose(id, kb));
        // A failed read of B's own proposal fails that call (the caller tries again).
        let mut rb = rb;
        for _ in 0..reads {
            if matches!(rb, Err(SessionError::Chain(_))) {
                let (_, kb) = lock(&chan, Side::B, 2, 7);
                rb = b.node.propose(id, kb).await;
            }
        }
        let (va, vb) = (
            ra.unwrap_or_else(|e| panic!("{fail} failing: A {e}")),
            rb.unwrap_or_else(|e| panic!("{fail} failing: B {e}")),
        );
        settled(&a, &b, id, va.max(vb)).await;
        let l = latest(&a, id);
        assert_eq!(l.locks.len(), 2, "{fail} failing");
        assert!(view.reads.load(std::sync::atomic::Ordering::SeqCst) >= first);
        // And the channel takes B's next change.
        let (_, k) = lock(&chan, Side::B, 3, 5);
        assert!(b.node.propose(id, k).await.is_ok(), "{fail} failing");
    }
}

#[tokio::test]
async fn a_pending_proposal_goes_out_on_reconnect() {
    let view = Arc::new(Flaky::steady());
    let (a, b) = (who(), who_on(cfg(), view.clone()));
    let chan = open(&a, &b, 3);
    let id = chan.id();
    // Not connected: signed and kept, not lost.
    let (_, k) = lock(&chan, Side::A, 1, 100);
    match a.node.propose(id, k).await {
        Err(SessionError::NotConnected { version: 1, .. }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(
        a.store
            .load(id)
            .unwrap()
            .unwrap()
            .pending
            .unwrap()
            .state
            .version,
        1
    );
    // The peer comes up; connecting resends it and it completes.
    let addr = listen(&b).await;
    a.node.connect(addr, b.net.public()).await.unwrap();
    settled(&a, &b, id, 1).await;
    assert!(a.node.with_party(id, |p| p.pending().is_none()).unwrap());

    // Mid-update: the connection drops after B countersigned, before A heard. A raw client
    // plays A to control exactly what arrives; B answers the resent proposal with the same
    // countersignature.
    a.node.disconnect(b.net.public());
    let mut pa = Party::resume(id, a.key.clone(), Config::default(), &*a.store).unwrap();
    let (_, k) = lock(&chan, Side::A, 2, 40);
    let step = pa.propose(k, NOW, &chain()).unwrap();
    let bytes = pa.commit(step, &*a.store).unwrap().unwrap();
    let mut raw = Connection::connect(addr, &a.net, Some(b.net.public()))
        .await
        .unwrap();
    raw.send_bytes(&bytes).await.unwrap();
    let first = raw.recv_bytes().await.unwrap();
    drop(raw);
    // B's chain cannot be read now: a proposal it countersigned is answered the same all the
    // same (refusing it, or a guard's verdict, would drop a version B holds co-signed).
    view.down.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut raw = Connection::connect(addr, &a.net, Some(b.net.public()))
        .await
        .unwrap();
    raw.send_bytes(&bytes).await.unwrap();
    let second = raw.recv_bytes().await.unwrap();
    assert_eq!(first, second);
    assert!(matches!(Message::decode(&first).unwrap(), Message::Countersign(c) if c.version == 2));
    let done = pa.receive(&second, NOW, &chain()).unwrap();
    pa.commit(done, &*a.store).unwrap();
    assert_eq!(pa.latest(), &latest(&b, id));
    assert_eq!(b.store.history(id).unwrap().len(), 2);
}

async fn answer(raw: &mut Connection, bytes: &[u8]) -> Message {
    raw.send_bytes(bytes).await.unwrap();
    Message::decode(&raw.recv_bytes().await.unwrap()).unwrap()
}

fn code_of(m: &Message) -> RejectCode {
    match m {
        Message::Reject(r) => r.code,
        other => panic!("not a reject: {other:?}"),
    }
}

#[tokio::test]
async fn hostile_frames_get_typed_rejects_and_change_nothing() {
    let view = Arc::new(Flaky::steady());
    let (a, b) = (who(), who_on(cfg(), view.clone()));
    let reads = || view.reads.load(std::sync::atomic::Ordering::SeqCst);
    let chan = open(&a, &b, 4);
    let id = chan.id();
    let addr = listen(&b).await;
    let mut pa = Party::resume(id, a.key.clone(), Config::default(), &*a.store).unwrap();
    let mut raw = Connection::connect(addr, &a.net, Some(b.net.public()))
        .await
        .unwrap();
    let before = b.store.load(id).unwrap();

    // Garbage.
    assert_eq!(
        code_of(&answer(&mut raw, b"\x00\xffnot json").await),
        RejectCode::Malformed
    );
    // A wrong signature (signed by B's own key).
    let (_, k) = lock(&chan, Side::A, 1, 100);
    let good = proposal_of(&pa.propose(k.clone(), NOW, &chain()).unwrap());
    let mut bad = good.clone();
    bad.sig = raw_sig(&chan, &b.key, &bad.state);
    let read_before = reads();
    assert_eq!(
        code_of(&answer(&mut raw, &encode(&bad)).await),
        RejectCode::BadSignature
    );
    // Refused before any chain read.
    assert_eq!(reads(), read_before);
    // Over capacity: a balance raised, re-signed by A.
    let mut over = good.clone();
    over.state.balance_a += 1;
    let over = resign(&chan, &a.key, over);
    assert_eq!(
        code_of(&answer(&mut raw, &encode(&over)).await),
        RejectCode::Capacity
    );
    // A channel B does not hold.
    let mut other = chan.clone();
    other.params.salt = B256::repeat_byte(77);
    let mut wrong = good.clone();
    wrong.channel = other.id();
    assert_eq!(
        code_of(&answer(&mut raw, &encode(&wrong)).await),
        RejectCode::WrongChannel
    );
    assert_eq!(b.store.load(id).unwrap(), before);
    assert!(b.store.history(id).unwrap().is_empty());

    // The good one passes; then it again at an old version is answered idempotently, and an
    // old-version proposal of another change is refused.
    let step = pa.propose(k, NOW, &chain()).unwrap();
    let bytes = pa.commit(step, &*a.store).unwrap().unwrap();
    let m = answer(&mut raw, &bytes).await;
    assert!(
        matches!(&m, Message::Countersign(c) if c.version == 1),
        "{m:?}"
    );
    // A valid proposal of another change at version 1 (made from a fresh copy of A).
    let tmp = SqliteChannelStore::in_memory().unwrap();
    let fresh = Party::open(
        chan.clone(),
        Side::A,
        a.key.clone(),
        Config::default(),
        DEP_A,
        DEP_B,
        &tmp,
    )
    .unwrap();
    let (_, k2) = lock(&chan, Side::A, 2, 5);
    let old = proposal_of(&fresh.propose(k2, NOW, &chain()).unwrap());
    assert_eq!(old.state.version, 1);
    let read_before = reads();
    assert_eq!(
        code_of(&answer(&mut raw, &encode(&old)).await),
        RejectCode::WrongVersion
    );
    assert_eq!(reads(), read_before, "a replayed version read the chain");
    assert_eq!(b.store.history(id).unwrap().len(), 1);

    // Another peer key (a stranger) gets WrongChannel for this channel, though it is real.
    let stranger = Identity::generate().unwrap();
    let mut s = Connection::connect(addr, &stranger, Some(b.net.public()))
        .await
        .unwrap();
    assert_eq!(
        code_of(&answer(&mut s, &bytes).await),
        RejectCode::WrongChannel
    );
    // Enough garbage ends the stranger's connection.
    for _ in 0..SessionConfig::default().limits.max_bad_messages {
        let _ = s.send_bytes(b"junk").await;
        let _ = s.recv_bytes().await;
    }
    assert!(matches!(
        s.recv_bytes().await,
        Err(NetError::Closed | NetError::Io(_))
    ));
    assert_eq!(b.store.history(id).unwrap().len(), 1);
}

#[tokio::test]
async fn one_node_routes_channels_of_several_peers() {
    let (a, b, c) = (who(), who(), who());
    let ab = open(&a, &b, 5).id();
    let ab2 = open(&a, &b, 6).id();
    // a is side A with c too (c is side B).
    let chan_ac = open(&a, &c, 7);
    let ac = chan_ac.id();
    let addr = listen(&a).await;
    link(&b, &a, addr).await;
    link(&c, &a, addr).await;
    let chan_ab = b.node.with_party(ab, |p| p.channel().clone()).unwrap();
    let chan_ab2 = b.node.with_party(ab2, |p| p.channel().clone()).unwrap();
    let (_, k1) = lock(&chan_ab, Side::B, 1, 11);
    let (_, k2) = lock(&chan_ab2, Side::B, 2, 22);
    let (_, k3) = lock(&chan_ac, Side::B, 3, 33);
    let (r1, r2, r3) = tokio::join!(
        b.node.propose(ab, k1),
        b.node.propose(ab2, k2),
        c.node.propose(ac, k3)
    );
    assert_eq!((r1.unwrap(), r2.unwrap(), r3.unwrap()), (1, 1, 1));
    assert_eq!(latest(&a, ab).state.balanceB, DEP_B - 11);
    assert_eq!(latest(&a, ab2).state.balanceB, DEP_B - 22);
    assert_eq!(latest(&a, ac).state.balanceB, DEP_B - 33);
    // B speaking for the A-C channel (its own key, raw) is refused: routed by id, checked by
    // peer key.
    let mut raw = Connection::connect(addr, &b.net, Some(a.net.public()))
        .await
        .unwrap();
    let mut pc = Party::resume(ac, c.key.clone(), Config::default(), &*c.store).unwrap();
    let (_, k) = lock(&chan_ac, Side::B, 4, 1);
    let step = pc.propose(k, NOW, &chain()).unwrap();
    let bytes = pc.commit(step, &*c.store).unwrap().unwrap();
    assert_eq!(
        code_of(&answer(&mut raw, &bytes).await),
        RejectCode::WrongChannel
    );
    assert_eq!(latest(&a, ac).state.version, 1);
    let _: PeerKey = a.node.public();
}

#[test]
fn the_store_keeps_each_channels_peer() {
    let (a, b) = (who(), who());
    let id = open(&a, &b, 9).id();
    assert_eq!(a.store.channel_ids().unwrap(), vec![id]);
    assert_eq!(a.store.peer(id).unwrap(), None);
    a.store
        .set_peer(id, b.net.public().0, Some("127.0.0.1:1"))
        .unwrap();
    a.store
        .set_peer(id, b.net.public().0, Some("127.0.0.1:2"))
        .unwrap();
    let p = a.store.peer(id).unwrap().unwrap();
    assert_eq!(
        (p.key, p.addr.as_deref()),
        (b.net.public().0, Some("127.0.0.1:2"))
    );
    assert!(matches!(
        a.store.set_peer(B256::repeat_byte(1), [0; 32], None),
        Err(eth_channel::StoreError::UnknownChannel(_))
    ));
}

#[tokio::test]
async fn a_silent_peer_times_out_and_the_proposal_stays_pending() {
    let a = who_with(SessionConfig {
        request_timeout: Duration::from_millis(300),
        ..cfg()
    });
    let b = who();
    let chan = open(&a, &b, 10);
    let id = chan.id();
    // "B" completes the handshake, then reads and never answers.
    let mut c = raw_peer_of(&a, &b).await;
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(bytes) = c.recv_bytes().await {
            let _ = seen_tx.send(bytes);
        }
    });
    let (_, k) = lock(&chan, Side::A, 1, 100);
    match a.node.propose(id, k).await {
        Err(SessionError::Timeout { version: 1 }) => {}
        other => panic!("{other:?}"),
    }
    // It was sent, and it is kept (signed) for a resend.
    let sent = seen.recv().await.unwrap();
    assert!(matches!(Message::decode(&sent).unwrap(), Message::Propose(p) if p.state.version == 1));
    let saved = a.store.load(id).unwrap().unwrap();
    assert_eq!(saved.pending.unwrap().state.version, 1);
    assert_eq!(saved.latest.state.version, 0);
    // Nothing else may be proposed meanwhile.
    let (_, k) = lock(&chan, Side::A, 2, 1);
    assert!(matches!(
        a.node.propose(id, k).await,
        Err(SessionError::Busy { version: 1, .. })
    ));
}

/// A proposal (or its answer) lost on a live connection is sent again, without waiting for
/// the next connection: the same signed bytes once it has been pending a while, until
/// answered. (A lock's sender reads its pending lock as in flight and asks nothing more, so
/// nothing else would send it: a swap stalled so until its expiry.)
#[tokio::test]
async fn a_proposal_lost_on_a_live_connection_is_sent_again() {
    let a = who_with(SessionConfig {
        request_timeout: Duration::from_millis(300),
        resend_every: Duration::from_millis(200),
        ..cfg()
    });
    let b = who();
    let chan = open(&a, &b, 12);
    let id = chan.id();
    // "B" completes the handshake and answers nothing until told to.
    let mut raw = raw_peer_of(&a, &b).await;
    let (_, k) = lock(&chan, Side::A, 1, 100);
    match a.node.propose(id, k).await {
        Err(SessionError::Timeout { version: 1 }) => {}
        other => panic!("{other:?}"),
    }
    // The first copy, then the same bytes again and again on the same connection.
    let first = raw.recv_bytes().await.unwrap();
    assert!(
        matches!(Message::decode(&first).unwrap(), Message::Propose(p) if p.state.version == 1)
    );
    for _ in 0..2 {
        let again = tokio::time::timeout(Duration::from_secs(5), raw.recv_bytes())
            .await
            .expect("the pending proposal was not sent again")
            .unwrap();
        assert_eq!(again, first);
    }
    // B answers at last (its party countersigns): the proposal completes on A, no reconnect.
    let pb = Party::resume(id, b.key.clone(), Config::default(), &*b.store).unwrap();
    let step = pb.receive(&first, NOW, &chain()).unwrap();
    let mut pb = pb;
    let answer = pb.commit(step, &*b.store).unwrap().unwrap();
    raw.send_bytes(&answer).await.unwrap();
    for _ in 0..200 {
        if a.node.with_party(id, |p| p.pending().is_none()).unwrap() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(a.node.with_party(id, |p| p.pending().is_none()).unwrap());
    assert_eq!(latest(&a, id), *pb.latest());
    assert_eq!(latest(&a, id).state.version, 1);
    // Answered: nothing more is resent.
    let quiet = tokio::time::timeout(Duration::from_millis(700), raw.recv_bytes()).await;
    assert!(quiet.is_err(), "sent after it completed: {quiet:?}");
}

/// Our final proposal refused by the peer (not `Busy`) stays pending, as a final proposal is
/// never abandoned, and is not sent again every few seconds to be refused again: only on a
/// new connection, or when asked.
#[tokio::test]
async fn a_refused_final_proposal_is_not_sent_again_and_again() {
    let a = who_with(SessionConfig {
        request_timeout: Duration::from_millis(300),
        resend_every: Duration::from_millis(200),
        ..cfg()
    });
    let b = who();
    let chan = open(&a, &b, 16);
    let id = chan.id();
    let mut raw = raw_peer_of(&a, &b).await;
    let node = a.node.clone();
    let close = tokio::spawn(async move { node.propose(id, UpdateKind::Close).await });
    let first = raw.recv_bytes().await.unwrap();
    let Message::Propose(p) = Message::decode(&first).unwrap() else {
        panic!("no proposal");
    };
    assert!(p.state.is_final);
    let refusal = Message::Reject(eth_channel::msg::RejectMsg {
        channel: id,
        version: p.state.version,
        code: RejectCode::StateMismatch,
        text: "not that one".into(),
    });
    raw.send_bytes(&refusal.encode()).await.unwrap();
    match close.await.unwrap() {
        Err(SessionError::Refused {
            code: RejectCode::StateMismatch,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(
        a.node
            .with_party(id, |p| p.pending().map(|p| p.state.version))
            .unwrap(),
        Some(p.state.version),
        "a final proposal is never abandoned"
    );
    let quiet = tokio::time::timeout(Duration::from_millis(900), raw.recv_bytes()).await;
    assert!(quiet.is_err(), "a refused proposal sent again: {quiet:?}");
    // Asked for, it goes out again (the same signed bytes).
    assert!(a.node.resend_pending(id).unwrap());
    let again = tokio::time::timeout(Duration::from_secs(5), raw.recv_bytes())
        .await
        .expect("not sent when asked")
        .unwrap();
    assert_eq!(again, first);
}

/// What our changes not yet co-signed will take from our side: a lock in flight and one
/// waiting for its turn behind it both count; once their calls have returned, the pending
/// one no caller waits for still counts, the refused one no more.
#[tokio::test]
async fn locks_in_flight_and_waiting_count_against_our_side() {
    let a = who_with(SessionConfig {
        request_timeout: Duration::from_millis(600),
        ..cfg()
    });
    let b = who();
    let chan = open(&a, &b, 13);
    let id = chan.id();
    let outgoing = || a.node.with_party_outgoing(id, |_, o| o).unwrap();
    // "B" reads and never answers: the first lock stays in flight until its timeout.
    let mut c = raw_peer_of(&a, &b).await;
    tokio::spawn(async move { while c.recv_bytes().await.is_ok() {} });
    assert_eq!(outgoing(), 0);
    let (_, first) = lock(&chan, Side::A, 1, 100);
    let (_, second) = lock(&chan, Side::A, 2, 40);
    let node = a.node.clone();
    let one = tokio::spawn(async move { node.propose(id, first).await });
    for _ in 0..100 {
        if a.node.with_party(id, |p| p.pending().is_some()).unwrap() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let node = a.node.clone();
    let two = tokio::spawn(async move { node.propose(id, second).await });
    let mut seen = 0;
    for _ in 0..100 {
        seen = outgoing();
        if seen == 140 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(seen, 140, "both locks count while their calls run");
    assert!(matches!(
        one.await.unwrap(),
        Err(SessionError::Timeout { version: 1 })
    ));
    // The second had its answer (busy behind the pending first).
    assert!(two.await.unwrap().is_err());
    assert_eq!(outgoing(), 100, "the pending lock, no caller waiting");
    let u = a
        .node
        .with_party_outgoing(B256::repeat_byte(9), |_, o| o)
        .unwrap_err();
    assert!(matches!(u, SessionError::UnknownChannel(_)), "{u:?}");
}

/// A peer whose chain cannot be read answers our proposal busy: it is sent again after waits
/// that double (not every `busy_retry` for as long as the outage lasts), and completes once
/// the peer's chain is back.
#[tokio::test]
async fn resends_to_a_busy_peer_back_off() {
    let view = Arc::new(Flaky::steady());
    let a = who_with(SessionConfig {
        request_timeout: Duration::from_millis(300),
        resend_every: Duration::from_secs(600),
        ..cfg()
    });
    let b = who_on(cfg(), view.clone());
    let chan = open(&a, &b, 14);
    let id = chan.id();
    let addr = listen(&b).await;
    link(&a, &b, addr).await;
    view.down.store(true, std::sync::atomic::Ordering::SeqCst);
    let reads = || view.reads.load(std::sync::atomic::Ordering::SeqCst);
    let start = reads();
    let (_, k) = lock(&chan, Side::A, 1, 100);
    assert!(a.node.propose(id, k).await.is_err());
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    // busy_retry is 50 ms: flat, about 30 tries in 1.5 s; doubling (50, 100, 200, 400, 800
    // ms), at most 6.
    let tries = reads() - start;
    assert!((2..=7).contains(&tries), "{tries} tries in 1.5 s");
    view.down.store(false, std::sync::atomic::Ordering::SeqCst);
    settled(&a, &b, id, 1).await;
}

/// Locks and claims proposed at once on one channel go out together: fewer co-signed
/// states than changes, every caller answered with the version holding its change; a batch
/// with a bad change is proposed again change by change, so only that caller is refused.
#[tokio::test]
async fn concurrent_locks_and_claims_are_batched() {
    let (a, b) = (who(), who());
    let chan = open(&a, &b, 9);
    let id = chan.id();
    let addr = listen(&b).await;
    link(&a, &b, addr).await;
    let locks: Vec<(B256, UpdateKind)> = (1..=20u8)
        .map(|n| lock(&chan, Side::A, 100 + n, 5))
        .collect();
    let versions = propose_all(&a, id, &locks).await;
    let mut distinct = versions.clone();
    distinct.dedup();
    assert!(distinct.len() < 20, "no batch: {versions:?}");
    let l = latest(&a, id);
    assert_eq!(l.locks.len(), 20);
    assert_eq!(l.state.balanceA, DEP_A - 100);
    for ((_, k), v) in locks.iter().zip(&versions) {
        let UpdateKind::Lock { lock } = k else {
            unreachable!()
        };
        let held = a
            .store
            .history(id)
            .unwrap()
            .into_iter()
            .find(|s| s.state.version == *v);
        assert!(
            held.is_some_and(|s| s.locks.iter().any(|l| l.hashlock == lock.hashlock)),
            "version {v} does not hold its lock"
        );
    }
    // B claims them all at once, one of the claims with a wrong preimage.
    let mut claims: Vec<UpdateKind> = locks.iter().map(|(pre, _)| claim(*pre)).collect();
    claims[7] = UpdateKind::Claim {
        hashlock: hashlock_of(&locks[7].0),
        preimage: B256::repeat_byte(0xee),
    };
    let answers =
        futures::future::join_all(claims.iter().map(|k| b.node.propose(id, k.clone()))).await;
    for (i, r) in answers.iter().enumerate() {
        if i == 7 {
            assert!(
                matches!(r, Err(SessionError::Party(eth_channel::PartyError::Invalid(r))) if r.code == RejectCode::BadPreimage),
                "{r:?}"
            );
        } else {
            assert!(r.is_ok(), "claim {i}: {r:?}");
        }
    }
    let top = answers
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .max()
        .unwrap();
    settled(&a, &b, id, *top).await;
    let l = latest(&b, id);
    assert_eq!(l.locks.len(), 1, "only the badly claimed lock is left");
    assert_eq!(l.state.balanceB, DEP_B + 95);
    assert_eq!(a.store.history(id).unwrap(), b.store.history(id).unwrap());
    assert!(a.store.history(id).unwrap().len() < 1 + 40);
}

/// A peer that cannot read batches (batches off: it answers one as a build from before
/// batches does, bytes that are no message) is served one change at a time: the batch it
/// could not read is refused by that answer, its changes proposed again alone, every caller
/// answered, the channel usable and both histories equal.
#[tokio::test]
async fn a_peer_that_cannot_read_batches_gets_one_change_at_a_time() {
    let a = who();
    let b = who_with(SessionConfig {
        batches: false,
        ..cfg()
    });
    let chan = open(&a, &b, 9);
    let id = chan.id();
    let addr = listen(&b).await;
    link(&a, &b, addr).await;
    let locks: Vec<(B256, UpdateKind)> = (1..=12u8)
        .map(|n| lock(&chan, Side::A, 100 + n, 5))
        .collect();
    let versions = propose_all(&a, id, &locks).await;
    let mut distinct = versions.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 12, "one version per change: {versions:?}");
    // The batch was proposed and refused: its version was given up.
    assert!(
        distinct[11] - distinct[0] + 1 > 12,
        "no refused batch: {versions:?}"
    );
    let l = latest(&a, id);
    assert_eq!(l.locks.len(), 12);
    assert_eq!(l.state.balanceA, DEP_A - 60);
    // No co-signed state holds more than one change over the one before it.
    let history = a.store.history(id).unwrap();
    for w in history.windows(2) {
        assert!(
            w[1].locks.len() <= w[0].locks.len() + 1,
            "a batch was co-signed"
        );
    }
    // The peer's own changes go one at a time too.
    let claims =
        futures::future::join_all(locks.iter().map(|(pre, _)| b.node.propose(id, claim(*pre))))
            .await;
    for (i, r) in claims.iter().enumerate() {
        assert!(r.is_ok(), "claim {i}: {r:?}");
    }
    let top = claims.iter().filter_map(|r| r.as_ref().ok()).max().unwrap();
    settled(&a, &b, id, *top).await;
    let l = latest(&b, id);
    assert!(l.locks.is_empty());
    assert_eq!(l.state.balanceB, DEP_B + 60);
    assert_eq!(a.store.history(id).unwrap(), b.store.history(id).unwrap());
}

/// A batch pending with nobody waiting for it (proposed while disconnected, resent when the
/// connection starts) and answered as unreadable is refused as well: the channel is free for
/// the next change instead of busy for good.
#[tokio::test]
async fn an_unreadable_batch_resent_on_connection_is_refused() {
    let a = who();
    let b = who_with(SessionConfig {
        batches: false,
        ..cfg()
    });
    let chan = open(&a, &b, 9);
    let id = chan.id();
    let (_, l1) = lock(&chan, Side::A, 201, 5);
    let (_, l2) = lock(&chan, Side::A, 202, 5);
    let r = a.node.propose(id, UpdateKind::batch(vec![l1, l2])).await;
    assert!(matches!(r, Err(SessionError::NotConnected { .. })), "{r:?}");
    let addr = listen(&b).await;
    link(&a, &b, addr).await;
    let (_, l3) = lock(&chan, Side::A, 203, 5);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let v = loop {
        match a.node.propose(id, l3.clone()).await {
            Ok(v) => break v,
            Err(e) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let _ = e;
            }
            Err(e) => panic!("the channel stayed busy: {e:?}"),
        }
    };
    settled(&a, &b, id, v).await;
    let l = latest(&b, id);
    assert_eq!(l.locks.len(), 1, "only the single lock is held");
    assert_eq!(l.state.balanceA, DEP_A - 5);
}

/// Our batch loses a crossing, and the peer (a build from before batches) then answers it as
/// unreadable: the channel goes one change at a time, and the batch is not sent again after
/// the peer's change (to be refused again and counted as a bad message): its caller gets the
/// peer's refusal, as `Node::propose`'s batching splits such a batch. Our next changes go
/// one at a time.
#[tokio::test]
async fn a_crossed_batch_the_peer_cannot_read_is_not_sent_again() {
    let a = who();
    let b = who();
    let chan = open(&a, &b, 17);
    let id = chan.id();
    // We are B; "A" is a raw peer with A's party.
    let mut raw = raw_peer_of(&b, &a).await;
    let mut pa = Party::resume(id, a.key.clone(), Config::default(), &*a.store).unwrap();
    let (_, l1) = lock(&chan, Side::B, 1, 5);
    let (_, l2) = lock(&chan, Side::B, 2, 5);
    let node = b.node.clone();
    let batch =
        tokio::spawn(async move { node.propose(id, UpdateKind::batch(vec![l1, l2])).await });
    let first = raw.recv_bytes().await.unwrap();
    assert!(matches!(
        Message::decode(&first).unwrap(),
        Message::Propose(p) if matches!(p.kind, UpdateKind::Batch { .. }) && p.state.version == 1
    ));
    // A proposes at the same version: B gives its batch up for A's.
    let (_, la) = lock(&chan, Side::A, 3, 7);
    let step = pa.propose(la, NOW, &chain()).unwrap();
    let pa1 = pa.commit(step, &*a.store).unwrap().unwrap();
    raw.send_bytes(&pa1).await.unwrap();
    let crossed = raw.recv_bytes().await.unwrap();
    assert!(matches!(
        Message::decode(&crossed).unwrap(),
        Message::Reject(r) if r.code == RejectCode::Crossed
    ));
    // Then A's answer to the batch, as a build from before batches gives it.
    let unreadable = Message::Reject(eth_channel::msg::RejectMsg {
        channel: B256::ZERO,
        version: 0,
        code: RejectCode::Malformed,
        text: "malformed message: unknown variant `batch`".into(),
    });
    raw.send_bytes(&unreadable.encode()).await.unwrap();
    // A proposes again above; B countersigns.
    let step = pa.receive(&crossed, NOW, &chain()).unwrap();
    let pa2 = pa.commit(step, &*a.store).unwrap().unwrap();
    raw.send_bytes(&pa2).await.unwrap();
    let cs = raw.recv_bytes().await.unwrap();
    let step = pa.receive(&cs, NOW, &chain()).unwrap();
    assert!(
        matches!(step.event, eth_channel::Event::Completed(2)),
        "{:?}",
        step.event
    );
    assert!(pa.commit(step, &*a.store).unwrap().is_none());
    match tokio::time::timeout(Duration::from_secs(10), batch)
        .await
        .unwrap()
        .unwrap()
    {
        Err(SessionError::Refused {
            code: RejectCode::Malformed,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    let quiet = tokio::time::timeout(Duration::from_millis(500), raw.recv_bytes()).await;
    assert!(quiet.is_err(), "the batch was sent again: {quiet:?}");
    // Three locks at once: one at a time, none batched.
    let calls: Vec<_> = (4..=6u8)
        .map(|n| {
            let node = b.node.clone();
            let (_, k) = lock(&chan, Side::B, n, 5);
            tokio::spawn(async move { node.propose(id, k).await })
        })
        .collect();
    for _ in 0..3 {
        let bytes = raw.recv_bytes().await.unwrap();
        let Message::Propose(p) = Message::decode(&bytes).unwrap() else {
            panic!("no proposal");
        };
        assert!(!matches!(p.kind, UpdateKind::Batch { .. }), "batched");
        let step = pa.receive(&bytes, NOW, &chain()).unwrap();
        let answer = pa.commit(step, &*a.store).unwrap().unwrap();
        raw.send_bytes(&answer).await.unwrap();
    }
    for c in calls {
        assert!(c.await.unwrap().is_ok());
    }
    assert_eq!(pa.latest().locks.len(), 4);
}

/// A node shut down does nothing more on its own: a change crossed before (waiting to be
/// proposed again) is not proposed after the crossing wait, its caller is answered, the
/// connection is dropped, and a new call is refused. What it left pending stays in the store.
#[tokio::test]
async fn a_node_shut_down_proposes_nothing_more() {
    let a = who();
    let b = who_with(SessionConfig {
        crossing_wait: Duration::from_millis(300),
        ..cfg()
    });
    let chan = open(&a, &b, 18);
    let id = chan.id();
    let mut raw = raw_peer_of(&b, &a).await;
    let mut pa = Party::resume(id, a.key.clone(), Config::default(), &*a.store).unwrap();
    let (_, l1) = lock(&chan, Side::B, 1, 5);
    let node = b.node.clone();
    let call = tokio::spawn(async move { node.propose(id, l1).await });
    let first = raw.recv_bytes().await.unwrap();
    assert!(
        matches!(Message::decode(&first).unwrap(), Message::Propose(p) if p.state.version == 1)
    );
    let (_, la) = lock(&chan, Side::A, 3, 7);
    let step = pa.propose(la, NOW, &chain()).unwrap();
    let pa1 = pa.commit(step, &*a.store).unwrap().unwrap();
    raw.send_bytes(&pa1).await.unwrap();
    let crossed = raw.recv_bytes().await.unwrap();
    assert!(matches!(
        Message::decode(&crossed).unwrap(),
        Message::Reject(r) if r.code == RejectCode::Crossed
    ));
    let history = b.store.history(id).unwrap();
    b.node.shutdown();
    assert!(b.node.is_stopped());
    match tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .unwrap()
        .unwrap()
    {
        Err(SessionError::Stopped) => {}
        other => panic!("{other:?}"),
    }
    // Past the crossing wait: nothing proposed, nothing sent, the connection gone.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(b.node.with_party(id, |p| p.pending().is_none()).unwrap());
    assert_eq!(b.store.history(id).unwrap(), history);
    let closed = tokio::time::timeout(Duration::from_secs(5), raw.recv_bytes())
        .await
        .expect("the connection stayed up");
    assert!(closed.is_err(), "sent after shutdown: {closed:?}");
    let (_, l2) = lock(&chan, Side::B, 2, 5);
    assert!(matches!(
        b.node.propose(id, l2).await,
        Err(SessionError::Stopped)
    ));
}

/// Proposes every lock of `locks` on channel `id` at once; the version each landed at.
async fn propose_all(w: &Who, id: B256, locks: &[(B256, UpdateKind)]) -> Vec<u64> {
    futures::future::join_all(locks.iter().map(|(_, k)| w.node.propose(id, k.clone())))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect()
}
