//! A missing node binary is a loud failure naming the install command, never a skip.

use btc_adapter::regtest::RegtestNode;

#[tokio::test]
#[should_panic(expected = "apt-get install -y litecoind")]
async fn missing_binary_panics_with_install_hint() {
    // This test binary runs only this test, so changing its environment is safe.
    std::env::remove_var("BITCOIND_EXE");
    std::env::set_var("LITECOIND_EXE", "/nonexistent/litecoind");
    let _node = RegtestNode::start().await;
}
