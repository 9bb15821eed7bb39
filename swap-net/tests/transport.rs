//! Two engines' transport over loopback: authentication, encryption, and hostile peers.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use swap_core::{Envelope, Leg, Message, SwapId, TxRef};
use swap_net::*;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// Answers every LockNotice with an Accept for the same swap, and counts what it saw.
struct Echo {
    seen: AtomicUsize,
}

#[async_trait::async_trait]
impl Handler for Echo {
    async fn handle(&self, _peer: PeerKey, msg: Envelope) -> Option<Envelope> {
        self.seen.fetch_add(1, Ordering::SeqCst);
        Some(Envelope::new(msg.swap_id, Message::Accept))
    }
}

async fn server() -> (String, Identity, Arc<Echo>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let id = Identity::generate().unwrap();
    let echo = Arc::new(Echo {
        seen: AtomicUsize::new(0),
    });
    tokio::spawn(serve(listener, id.clone(), echo.clone()));
    (addr, id, echo)
}

fn notice() -> Envelope {
    Envelope::new(
        SwapId([7; 16]),
        Message::LockNotice {
            leg: Leg::X,
            txref: TxRef("abcd".into()),
        },
    )
}

#[tokio::test]
async fn authenticated_request_and_reply() {
    let (addr, maker, echo) = server().await;
    let taker = Identity::generate().unwrap();
    let mut conn = Connection::connect(&addr, &taker, Some(maker.public()))
        .await
        .unwrap();
    assert_eq!(conn.remote(), maker.public());
    for _ in 0..3 {
        let reply = conn.request(&notice()).await.unwrap();
        assert_eq!(reply.swap_id, SwapId([7; 16]));
        assert_eq!(reply.body, Message::Accept);
    }
    assert_eq!(echo.seen.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_different_maker_key_is_refused() {
    let (addr, _maker, echo) = server().await;
    let taker = Identity::generate().unwrap();
    let impostor = Identity::generate().unwrap().public();
    let err = Connection::connect(&addr, &taker, Some(impostor))
        .await
        .unwrap_err();
    assert!(matches!(err, NetError::UnexpectedPeer { .. }), "{err}");
    assert_eq!(echo.seen.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn garbage_and_oversized_messages_do_not_stop_the_server() {
    let (addr, maker, echo) = server().await;

    // Raw garbage instead of a handshake: that connection dies, nothing else.
    for junk in [
        vec![0xffu8; 10],
        vec![0u8; 3],
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
    ] {
        let mut raw = TcpStream::connect(&addr).await.unwrap();
        raw.write_all(&junk).await.unwrap();
        drop(raw);
    }

    // A valid channel carrying malformed and oversized messages: each gets a Reject with the
    // reason, and the connection keeps working.
    let taker = Identity::generate().unwrap();
    let mut conn = Connection::connect(&addr, &taker, Some(maker.public()))
        .await
        .unwrap();
    conn.send_bytes(b"{not json").await.unwrap();
    match conn.recv().await.unwrap().body {
        Message::Reject { reason } => assert!(reason.contains("malformed"), "{reason}"),
        other => panic!("{other:?}"),
    }
    conn.send_bytes(&vec![b' '; swap_core::messages::MAX_MESSAGE_BYTES + 10])
        .await
        .unwrap();
    match conn.recv().await.unwrap().body {
        Message::Reject { reason } => assert!(reason.contains("exceeds"), "{reason}"),
        other => panic!("{other:?}"),
    }
    let reply = conn.request(&notice()).await.unwrap();
    assert_eq!(reply.body, Message::Accept);

    // And a fresh, well-behaved client is served as usual.
    let mut other =
        Connection::connect(&addr, &Identity::generate().unwrap(), Some(maker.public()))
            .await
            .unwrap();
    assert_eq!(
        other.request(&notice()).await.unwrap().body,
        Message::Accept
    );
    assert_eq!(echo.seen.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn too_large_for_a_frame_is_refused_before_sending() {
    let (addr, maker, _) = server().await;
    let mut conn = Connection::connect(&addr, &Identity::generate().unwrap(), Some(maker.public()))
        .await
        .unwrap();
    assert!(matches!(
        conn.send_bytes(&vec![0u8; MAX_FRAME]).await,
        Err(NetError::TooLarge(_))
    ));
}
