//! A missing node binary is a loud failure naming the install command, never a skip.

use devnet::regtest::{find_node_with, NodeKind, RegtestNode};

#[tokio::test]
#[should_panic(expected = "apt-get install -y litecoind")]
async fn a_configured_binary_that_is_missing_panics_with_install_hint() {
    let _node = RegtestNode::start_with(NodeKind::Litecoind, "/nonexistent/litecoind".into()).await;
}

#[test]
#[should_panic(expected = "apt-get install -y litecoind")]
fn no_binary_anywhere_panics_with_install_hint() {
    let _ = find_node_with(|_| None, |_| None);
}

#[test]
fn the_environment_picks_the_node_flavour() {
    let (kind, path) = find_node_with(
        |var| (var == "BITCOIND_EXE").then(|| "/opt/bitcoind".into()),
        |_| None,
    );
    assert_eq!((kind, path), (NodeKind::Bitcoind, "/opt/bitcoind".into()));
    let (kind, _) = find_node_with(|_| None, |name| Some(format!("/usr/bin/{name}").into()));
    assert_eq!(kind, NodeKind::Litecoind);
}
