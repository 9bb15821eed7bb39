//! Garbage on the Lightning port is dropped; the node keeps working.

use std::io::{Read, Write};
use std::time::Duration;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_port_is_dropped() {
    let p = pair().await;
    let addr = p.b.listen_addr();
    tokio::task::spawn_blocking(move || {
        for junk in [
            vec![0u8; 50],
            vec![0xffu8; 5000],
            b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        ] {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let _ = s.write_all(&junk);
            // The node hangs up (or answers nothing useful); it must not crash.
            let _ = s.read(&mut [0u8; 64]);
        }
    })
    .await
    .unwrap();
    open_channel(&p, 300_000).await;
    hold_pay_and_claim(&p.a, &p.b, 1_000_000).await;
}

/// A Lightning node on the other Bitcoin-family chain (which LDK alone cannot tell apart on
/// regtest: both present Bitcoin's regtest chain hash) is refused in the handshake, both ways,
/// with an error that says so; nodes on the same chain still connect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_on_another_chain_is_refused_in_the_handshake() {
    use ln_adapter::{LnConfig, LnError, LnNode, Seed};
    use swap_core::{ChainFamily, ChainId, Network};

    let p = pair().await;
    let ours = p.node.chain_id();
    let other = ChainId::new(
        if ours.family == ChainFamily::Litecoin {
            ChainFamily::Bitcoin
        } else {
            ChainFamily::Litecoin
        },
        Network::Regtest,
    );
    let mut config = LnConfig::new(
        other,
        p.node.rpc_config(Some("b")),
        p.dirs.path().join("other"),
    );
    config.poll_interval = Duration::from_millis(200);
    let stranger = LnNode::start(config, &Seed::new([9; 32])).await.unwrap();

    // Whichever side reads the other's init first refuses it: the one that does says why
    // (`OtherChain`), the other sees it hang up during the handshake.
    let refused = |err: LnError, them: &LnNode| {
        let text = err.to_string();
        match err {
            LnError::OtherChain(_) => {
                assert!(text.contains(&them.node_id().to_string()), "{text}");
                assert!(text.contains("could not be funded"), "{text}");
            }
            LnError::NotReady(_) => {
                assert!(text.contains("hung up during the handshake"), "{text}")
            }
            other => panic!("unexpected error: {other}"),
        }
    };
    refused(
        p.a.connect(stranger.node_id(), stranger.listen_addr())
            .await
            .unwrap_err(),
        &stranger,
    );
    refused(
        stranger
            .connect(p.b.node_id(), p.b.listen_addr())
            .await
            .unwrap_err(),
        &p.b,
    );
    // Not connected afterwards, and not reconnected by the node's follower either.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!p.a.is_connected(&stranger.node_id()));
    assert!(!stranger.is_connected(&p.b.node_id()));
    // The pair (same chain) is still connected and works.
    assert!(p.a.is_connected(&p.b.node_id()));
    open_channel(&p, 300_000).await;
    hold_pay_and_claim(&p.a, &p.b, 1_000_000).await;
    stranger.stop().await.unwrap();
}
