//! The `xswap-server` binary: `key create` prints a working key once (only its hash is
//! stored), `key revoke` ends it, `openapi` prints the served document, and `serve` without
//! an installation fails with a message instead of starting.

use std::process::Command;

use xswap_api::ServerConfig;

use crate::harness;

fn server(url: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_xswap-server"))
        .env("XSWAP_DATABASE_URL", url)
        .env("RUST_LOG", "warn")
        .args(args)
        .output()
        .expect("xswap-server runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_create_revoke_and_openapi_from_the_binary() {
    let api = harness::without_nodes("binary", ServerConfig::default()).await;
    let out = server(&api.url, &["key", "create", "--name", "ops"]);
    assert!(out.status.success(), "{out:?}");
    let key = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(key.starts_with("xsk_") && key.len() == 68, "{key}");
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(said.contains("shown once"), "{said}");
    assert!(!said.contains(&key), "the key is printed on stdout only");
    let id: String = said
        .split_whitespace()
        .nth(1)
        .expect("key <id> (ops) created")
        .to_owned();

    // The key works against a server on the same database; the database holds its hash only.
    let get = |key: &str| {
        api.client
            .get(format!("{}/v1/swaps", api.base))
            .bearer_auth(key)
    };
    let a = api.call("GET", "/v1/swaps", get(&key)).await;
    assert_eq!(a.status, 200, "{a:?}");
    let client = pg_store::testkit::TestCluster::shared()
        .connect(
            api.url
                .rsplit("dbname=")
                .next()
                .unwrap()
                .split(' ')
                .next()
                .unwrap(),
        )
        .await;
    let rows = client
        .query("SELECT key_sha256 FROM api_keys WHERE name = 'ops'", &[])
        .await
        .unwrap();
    let stored: Vec<u8> = rows[0].get(0);
    assert_eq!(stored, xswap_api::db::key_hash(&key).to_vec());

    let out = server(&api.url, &["key", "revoke", &id]);
    assert!(out.status.success(), "{out:?}");
    let a = api.call("GET", "/v1/swaps", get(&key)).await;
    assert_eq!((a.status, a.code()), (401, "unauthorized"));
    let out = server(&api.url, &["key", "revoke", &id]);
    assert!(!out.status.success(), "revoking twice fails");

    let out = server(&api.url, &["openapi"]);
    assert!(out.status.success());
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed, api.doc);

    let empty = tempfile::tempdir().unwrap();
    let out = server(
        &api.url,
        &[
            "serve",
            "--data-dir",
            empty.path().to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
    );
    assert!(!out.status.success(), "no installation: no server");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!said.contains("panicked"), "{said}");
}
