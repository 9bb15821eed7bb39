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
    async fn handle(&self, _peer: Peer, msg: Envelope) -> Option<Envelope> {
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

async fn limited(limits: Limits) -> (String, Identity, Arc<Echo>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let id = Identity::generate().unwrap();
    let echo = Arc::new(Echo {
        seen: AtomicUsize::new(0),
    });
    tokio::spawn(serve_with(listener, id.clone(), echo.clone(), limits));
    (addr, id, echo)
}

/// A TCP connection from `local` (another loopback address stands for another machine).
async fn tcp_from(local: &str, addr: &str) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{local}:0").parse().unwrap()).unwrap();
    socket.connect(addr.parse().unwrap()).await.unwrap()
}

/// True when the server closed `s` (read returns end of file) within a second.
async fn closed_by_server(s: &mut TcpStream) -> bool {
    use tokio::io::AsyncReadExt;
    let mut b = [0u8; 1];
    matches!(
        tokio::time::timeout(std::time::Duration::from_secs(1), s.read(&mut b)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

async fn served(addr: &str, maker: &Identity, local: &str) -> bool {
    let stream = tcp_from(local, addr).await;
    match Connection::initiate(stream, &Identity::generate().unwrap(), Some(maker.public())).await {
        Ok(mut c) => matches!(c.request(&notice()).await, Ok(e) if e.body == Message::Accept),
        Err(_) => false,
    }
}

/// Issue 9, item 3b: idle connections from one address cannot exhaust the server; another
/// address is still served; past the global cap new connections are closed at once (the
/// engine's own file descriptors keep their room) until some close.
#[tokio::test]
async fn connection_caps_keep_room_for_everyone_else() {
    let limits = Limits {
        max_connections: 8,
        max_per_ip: 4,
        ..Limits::default()
    };
    let (addr, maker, _) = limited(limits).await;
    let mut idle = Vec::new();
    for _ in 0..10 {
        idle.push(tcp_from("127.0.0.2", &addr).await);
    }
    let mut refused = 0;
    for s in &mut idle {
        if closed_by_server(s).await {
            refused += 1;
        }
    }
    assert_eq!(
        refused, 6,
        "4 of 10 idle connections from one address are kept"
    );
    assert!(served(&addr, &maker, "127.0.0.1").await);
    // Fill the global cap from other addresses: then even a new address waits.
    let mut more = Vec::new();
    for local in ["127.0.0.3", "127.0.0.4"] {
        for _ in 0..2 {
            more.push(tcp_from(local, &addr).await);
        }
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(
        !served(&addr, &maker, "127.0.0.5").await,
        "over the global cap"
    );
    drop(idle);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(served(&addr, &maker, "127.0.0.5").await, "room again");
}

/// Issue 9, item 3: an idle connection is closed after the idle timeout; a flood of malformed
/// messages or of messages too fast closes that connection only.
#[tokio::test]
async fn idle_flooding_and_garbage_connections_are_closed() {
    let limits = Limits {
        idle_timeout: std::time::Duration::from_millis(300),
        max_bad_messages: 3,
        max_messages_per_sec: 5,
        ..Limits::default()
    };
    let (addr, maker, echo) = limited(limits).await;
    let key = Identity::generate().unwrap();

    let mut idle = Connection::connect(&addr, &key, Some(maker.public()))
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert!(
        idle.request(&notice()).await.is_err(),
        "idle connection closed"
    );

    let mut garbage = Connection::connect(&addr, &key, Some(maker.public()))
        .await
        .unwrap();
    for _ in 0..3 {
        garbage.send_bytes(b"{not json").await.unwrap();
        assert!(matches!(
            garbage.recv().await.unwrap().body,
            Message::Reject { .. }
        ));
    }
    assert!(garbage.request(&notice()).await.is_err(), "closed after 3");

    let mut fast = Connection::connect(&addr, &key, Some(maker.public()))
        .await
        .unwrap();
    let mut answered = 0;
    for _ in 0..50 {
        match fast.request(&notice()).await {
            Ok(_) => answered += 1,
            Err(_) => break,
        }
    }
    assert!(
        (5..50).contains(&answered),
        "a burst of 5 is served, then the connection is closed: {answered}"
    );
    let seen = echo.seen.load(Ordering::SeqCst);
    assert_eq!(seen, answered);
    // A well-behaved client is served all along.
    assert!(served(&addr, &maker, "127.0.0.1").await);
}
