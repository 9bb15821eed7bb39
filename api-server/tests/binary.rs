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

    // Lease settings that cannot work are refused with what is wrong, before anything runs.
    for (args, says) in [
        (
            &["--lease-ttl", "3", "--heartbeat", "2"][..],
            "must be at most a third of the lease time to live",
        ),
        (&["--lease-ttl=-1"][..], "--lease-ttl must be a positive"),
        (&["--lease-ttl", "0"][..], "--lease-ttl must be a positive"),
        (&["--poll-ms", "0"][..], "--poll-ms must be positive"),
        (
            &["--worker-name", " "][..],
            "a worker's name must not be empty",
        ),
    ] {
        let mut all = vec!["serve", "--data-dir", empty.path().to_str().unwrap()];
        all.extend_from_slice(args);
        let out = server(&api.url, &all);
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(said.contains(says), "{args:?}: {said}");
        assert!(!said.contains("panicked"), "{said}");
    }
}

/// `target/<profile>/xswap`, built when missing (as the workspace's CLI tests do).
fn xswap_bin() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("xswap");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "xswap-cli", "--bin", "xswap"])
            .status()
            .expect("running cargo");
        assert!(
            status.success(),
            "cargo build -p xswap-cli --bin xswap failed"
        );
    }
    bin
}

fn xswap(dir: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(xswap_bin())
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env("XSWAP_PASSWORD", "pw")
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "xswap {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Stops what a test started even when it fails.
struct Cleanup(std::path::PathBuf, Option<std::process::Child>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(mut c) = self.1.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new(xswap_bin())
            .arg("--data-dir")
            .arg(&self.0)
            .args(["regtest", "down"])
            .env("XSWAP_PASSWORD", "pw")
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_an_installation_made_by_the_cli() {
    // An installation as an operator makes one: `xswap init`, nodes from `xswap regtest up`.
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("exchange");
    xswap(&dir, &["init"]);
    let up = xswap(&dir, &["regtest", "up"]);
    assert!(up.contains("regtest up"), "{up}");
    let mut cleanup = Cleanup(dir.clone(), None);

    // A database whose store has no key yet: the server seals it with its installation's.
    let (_cluster, url, _store) = harness::database_with("served", None).await;
    let out = server(&url, &["key", "create", "--name", "ops"]);
    assert!(out.status.success(), "{out:?}");
    let key = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_xswap-server"))
        .env("XSWAP_DATABASE_URL", &url)
        .env("XSWAP_PASSWORD", "pw")
        .env("RUST_LOG", "warn")
        .args(["serve", "--data-dir", dir.to_str().unwrap()])
        .args(["--listen", &format!("127.0.0.1:{port}"), "--lease-ttl", "5"])
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    cleanup.1 = Some(child);

    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let t0 = std::time::Instant::now();
    loop {
        if let Ok(r) = client.get(format!("{base}/health")).send().await {
            if r.status() == 200 {
                break;
            }
        }
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(60),
            "the server did not start"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // Ready: the database and both nodes of config.toml answer.
    let ready: serde_json::Value = client
        .get(format!("{base}/ready"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ok", "{ready}");
    assert_eq!(ready["nodes"].as_array().unwrap().len(), 2, "{ready}");
    let r = client
        .get(format!("{base}/v1/swaps"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client.get(format!("{base}/v1/swaps")).send().await.unwrap();
    assert_eq!(r.status(), 401);

    // SIGTERM: a graceful stop, exit 0.
    let killed = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let mut child = cleanup.1.take().unwrap();
    let t0 = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(30),
            "no stop after SIGTERM"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(status.success(), "{status:?}");

    // The store's secrets are sealed with the key of the installation's seed now.
    assert!(matches!(
        pg_store::PgStore::connect(&url).await,
        Err(swap_core::StoreError::KeyRequired)
    ));
    let ks = xswap_cli::keystore::Keystore::open(&dir.join("keystore.json"), "pw").unwrap();
    let options = pg_store::PgOptions {
        key: Some(ks.store_key().unwrap()),
        ..Default::default()
    };
    pg_store::PgStore::connect_with(&url, options)
        .await
        .unwrap();
}
