//! Several `xswap-server` processes (the real binary) on one PostgreSQL database and one
//! installation, on regtest nodes (litecoind or bitcoind, anvil), with a maker engine in this
//! process serving its offer over the encrypted transport: what an exchange runs behind a load
//! balancer. Used by the failover test and the workers bench (`benches/workers.rs`).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use btc_adapter::rpc as btc_rpc;
use pg_store::testkit::{free_port, TestCluster};
use pg_store::PgStore;
use serde_json::{json, Value};
use swap_core::*;
use swap_net::OfferLeg;
use xswap_api::{ApiDb, Metrics};
use xswap_cli::config::{BtcSection, Config, EthSection};
use xswap_cli::regtest::{party, Nodes, Party};

/// Coin base units each swap gives (the server's side).
pub const GIVE: u64 = 100_000;
/// The maker's price: wei per coin base unit (one swap: 0.001 ether).
pub const WEI_PER_SAT: u128 = 10_000_000_000;
/// The installation's keystore password.
const PASSWORD: &str = "pw";

/// How the cluster runs.
#[derive(Debug, Clone)]
pub struct Setup {
    /// Server processes.
    pub servers: usize,
    /// Swaps the server wallet is funded for (one confirmed coin each).
    pub swaps: usize,
    /// Lease time to live, seconds.
    pub lease_ttl: f64,
    /// The servers' and the maker's poll interval.
    pub poll: Duration,
    /// A block (both chains) every this long.
    pub block_every: Duration,
}

/// One server process.
struct Server {
    port: u16,
    child: Option<Child>,
    log: PathBuf,
    starts: usize,
}

/// The servers, their database, the nodes and the maker.
pub struct Cluster {
    pub nodes: Arc<Nodes>,
    pub setup: Setup,
    /// The database's URL.
    pub url: String,
    /// The swap store on it (reads only: checks).
    pub store: Arc<PgStore>,
    /// An API key.
    pub key: String,
    /// The maker's offer, every server's default.
    pub offer: String,
    /// The Bitcoin-family height before the first swap.
    pub start_height: u64,
    pub client: reqwest::Client,
    _maker: Party,
    data_dir: PathBuf,
    servers: Mutex<Vec<Server>>,
    serving: tokio::task::JoinHandle<()>,
    miner: Mutex<Option<tokio::task::JoinHandle<()>>>,
    _tmp: tempfile::TempDir,
    _pg: Arc<TestCluster>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.serving.abort();
        if let Some(m) = lock(&self.miner).take() {
            m.abort();
        }
        for s in lock(&self.servers).iter_mut() {
            if let Some(mut c) = s.child.take() {
                // A stopped (SIGSTOP) process still dies of SIGKILL.
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// Where this process's log goes (the maker engine runs in it): set once per test process.
static MAKER_LOG: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Sends this process's log (info and up) to a file, once: what a failure prints of the
/// maker's side of a swap left over.
fn maker_log_to_file() {
    MAKER_LOG.get_or_init(|| {
        let path = std::env::temp_dir().join(format!("xswap-cluster-{}.log", std::process::id()));
        if let Ok(file) = std::fs::File::create(&path) {
            let _ = tracing_subscriber::fmt()
                .with_ansi(false)
                .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
                .with_writer(Mutex::new(file))
                .try_init();
        }
        path
    });
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What one creation attempt answered.
#[derive(Debug)]
pub enum Created {
    /// The swap's id.
    Swap(String),
    /// Try again (the same key): the server is down, or the maker refused for now.
    Retry(String),
    /// The key is held by a creation that will never finish (its server died): use another.
    Stuck,
}

/// The installation every server shares: keystore, config.toml for `nodes`, node wallet
/// `server` holding `swaps + 10` confirmed coins of 2 swaps' worth, 100 ether for claims.
async fn installation(nodes: &Nodes, dir: &Path, swaps: usize) {
    let (ks, _words) =
        xswap_cli::keystore::Keystore::create(&dir.join("keystore.json"), PASSWORD).unwrap();
    let rpc = nodes.btc.rpc_config(None);
    let btc_rpc::Auth::Cookie(cookie) = rpc.auth.clone() else {
        panic!("the regtest node is reached with its cookie");
    };
    let cfg = Config {
        btc: BtcSection {
            chain: nodes.btc.chain_id().to_string(),
            rpc_url: rpc.url.clone(),
            cookie: Some(cookie),
            user: None,
            password: None,
            wallet: "server".into(),
        },
        eth: EthSection {
            chain: "eth-regtest".into(),
            rpc_url: nodes.eth.url(),
            htlc: nodes.htlc.to_string(),
            account: 0,
        },
        ..Config::default()
    };
    cfg.write_new(dir).unwrap();
    let wallet = nodes.btc.rpc().with_wallet("server").unwrap();
    nodes
        .btc
        .rpc()
        .create_or_load_wallet("server")
        .await
        .unwrap();
    // One confirmed coin per swap: concurrent fundings never chain unconfirmed change.
    let mut outputs = serde_json::Map::new();
    while outputs.len() < swaps + 10 {
        let want = (swaps + 10 - outputs.len()).min(500);
        for a in wallet.get_new_addresses(want, "bech32").await.unwrap() {
            outputs.insert(
                a,
                Value::String(btc_adapter::rpc::sats_to_coin_string(2 * GIVE)),
            );
        }
    }
    let all: Vec<(String, Value)> = outputs.into_iter().collect();
    for chunk in all.chunks(500) {
        let chunk: serde_json::Map<String, Value> = chunk.iter().cloned().collect();
        let _: Value = nodes
            .btc
            .rpc()
            .wallet_call("sendmany", vec![json!(""), Value::Object(chunk)])
            .await
            .unwrap();
    }
    nodes.btc.mine(1).await;
    let who = xswap_cli::config::eth_signer(&ks, 0).unwrap().address();
    nodes
        .eth
        .rpc(
            "anvil_setBalance",
            json!([who.to_string(), "0x56bc75e2d63100000"]),
        )
        .await;
}

impl Cluster {
    /// Starts the nodes, the database, the maker and `setup.servers` servers (ready).
    pub async fn start(name: &str, setup: Setup) -> Arc<Cluster> {
        let nodes = Nodes::start()
            .await
            .expect("regtest nodes (litecoind or bitcoind, anvil)");
        let tmp = tempfile::tempdir().unwrap();
        let data_dir = tmp.path().join("exchange");
        installation(&nodes, &data_dir, setup.swaps).await;

        let fast = DriverConfig {
            poll_interval: setup.poll,
            max_backoff: setup.poll * 10,
        };
        maker_log_to_file();
        let maker = party(&nodes, tmp.path(), "maker", 2, fast).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let offer = maker.engine.offer(
            listener.local_addr().unwrap().to_string(),
            OfferLeg {
                rail: RailKind::OnChain,
                chain: nodes.eth_params().chain,
                asset: Asset::Eth,
                max: Amount::Wei(Wei(10u128.pow(19))),
                min: Amount::Wei(Wei(10u128.pow(13))),
            },
            OfferLeg {
                rail: RailKind::OnChain,
                chain: nodes.btc.chain_id(),
                asset: nodes.btc_asset(),
                max: Amount::Sats(Sats(10 * GIVE)),
                min: Amount::Sats(Sats(1_000)),
            },
            (WEI_PER_SAT, 1),
            Timestamp(u64::MAX / 2),
        );
        let serving = tokio::spawn(maker.engine.clone().serve(listener, vec![offer.clone()]));

        let pg = TestCluster::shared();
        let url = pg
            .create_database(&format!("workers_{name}_{}", std::process::id()))
            .await;
        // The servers seal the store's secrets with the installation's key: so does the
        // test's own handle (a keyless one is refused once they have).
        let ks =
            xswap_cli::keystore::Keystore::open(&data_dir.join("keystore.json"), PASSWORD).unwrap();
        let options = pg_store::PgOptions {
            key: Some(ks.store_key().unwrap()),
            ..Default::default()
        };
        let store = Arc::new(
            PgStore::connect_with(&url, options)
                .await
                .expect("pg store"),
        );
        let db = ApiDb::connect(&url, 2, Arc::new(Metrics::default()))
            .await
            .expect("api db");
        let (_, key) = db.create_key("cluster").await.unwrap();
        let start_height = nodes.btc.height().await;
        let servers = (0..setup.servers)
            .map(|i| Server {
                port: free_port(),
                child: None,
                log: tmp.path().join(format!("server-{i}.log")),
                starts: 0,
            })
            .collect();
        let cluster = Arc::new(Cluster {
            nodes: Arc::new(nodes),
            setup,
            url,
            store,
            key,
            offer: offer.encode(),
            start_height,
            // Shorter than a creation stalled with its server can take: retried elsewhere.
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
            _maker: maker,
            data_dir,
            servers: Mutex::new(servers),
            serving,
            miner: Mutex::new(None),
            _tmp: tmp,
            _pg: pg,
        });
        for i in 0..cluster.setup.servers {
            cluster.spawn(i);
        }
        for i in 0..cluster.setup.servers {
            cluster.wait_ready(i).await;
        }
        cluster
    }

    /// Starts mining: a block (and the same span on anvil) every `setup.block_every`.
    pub fn mine(&self) {
        let m = self.nodes.spawn_miner(self.setup.block_every).unwrap();
        if let Some(old) = lock(&self.miner).replace(m) {
            old.abort();
        }
    }

    /// Starts server `i` (its log appended to its file).
    pub fn spawn(&self, i: usize) {
        let mut servers = lock(&self.servers);
        let s = &mut servers[i];
        assert!(s.child.is_none(), "server {i} runs already");
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&s.log)
            .unwrap();
        writeln!(log, "=== start {} of server {i}", s.starts + 1).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_xswap-server"))
            .env("XSWAP_DATABASE_URL", &self.url)
            .env("XSWAP_PASSWORD", PASSWORD)
            .env(
                "RUST_LOG",
                "warn,xswap_api::worker=info,swap_core::driver=info",
            )
            .env("NO_COLOR", "1")
            .args(["serve", "--data-dir", self.data_dir.to_str().unwrap()])
            .args(["--listen", &format!("127.0.0.1:{}", s.port)])
            .args(["--offer", &self.offer])
            .args(["--lease-ttl", &self.setup.lease_ttl.to_string()])
            .args(["--poll-ms", &self.setup.poll.as_millis().to_string()])
            .args(["--rate", "100000", "--burst", "100000", "--pool-size", "8"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("xswap-server starts");
        s.child = Some(child);
        s.starts += 1;
    }

    /// SIGKILLs server `i` (no goodbye: its leases expire).
    pub fn kill(&self, i: usize) {
        if let Some(mut c) = lock(&self.servers)[i].child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// Sends `signal` (`STOP`, `CONT`) to server `i`.
    pub fn signal(&self, i: usize, signal: &str) {
        let pid = lock(&self.servers)[i]
            .child
            .as_ref()
            .expect("server runs")
            .id();
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .unwrap();
        assert!(ok.success(), "kill -{signal} {pid}");
    }

    /// The servers running now.
    pub fn live(&self) -> Vec<usize> {
        lock(&self.servers)
            .iter()
            .enumerate()
            .filter(|(_, s)| s.child.is_some())
            .map(|(i, _)| i)
            .collect()
    }

    /// The base URL of server `i`.
    pub fn base(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", lock(&self.servers)[i].port)
    }

    /// Waits until server `i` answers `/health`.
    pub async fn wait_ready(&self, i: usize) {
        let t0 = Instant::now();
        let base = self.base(i);
        loop {
            if let Ok(r) = self.client.get(format!("{base}/health")).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "server {i} did not start: {}",
                self.log(i)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// CPU time (user + system) the running server processes used so far.
    #[allow(dead_code)] // the workers bench's
    pub fn servers_cpu(&self) -> Duration {
        let pids: Vec<u32> = lock(&self.servers)
            .iter()
            .filter_map(|s| s.child.as_ref().map(Child::id))
            .collect();
        pids.iter()
            .map(|pid| proc_cpu(&format!("/proc/{pid}/stat")))
            .sum()
    }

    /// Server `i`'s log so far (every start).
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&lock(&self.servers)[i].log).unwrap_or_default()
    }

    /// The swaps whose lock was handed to a node by more than one server process, with the
    /// transactions they sent: a takeover after the lock was recorded in the outbox sends the
    /// recorded transaction again (the same txid), never a new one.
    pub fn locks_sent_by_several(&self) -> BTreeMap<String, Vec<String>> {
        let mut by_swap: BTreeMap<String, BTreeMap<(usize, usize), String>> = BTreeMap::new();
        for i in 0..self.setup.servers {
            let mut start = 0;
            for line in self.log(i).lines() {
                if line.starts_with("=== start") {
                    start += 1;
                }
                let field = |name: &str| {
                    line.split_whitespace()
                        .find_map(|w| w.strip_prefix(name))
                        .map(|v| v.trim_matches('"').to_owned())
                };
                if !line.contains(" sent ") || field("action=").as_deref() != Some("lock") {
                    continue;
                }
                if let (Some(id), Some(tx)) = (field("swap_id="), field("txref=")) {
                    by_swap.entry(id).or_default().insert((i, start), tx);
                }
            }
        }
        by_swap
            .into_iter()
            .filter(|(_, by)| by.len() > 1)
            .map(|(id, by)| (id, by.into_values().collect()))
            .collect()
    }

    /// Every line of the servers' logs about swap `id`, each with its server and start.
    pub fn lines_about(&self, id: &str) -> String {
        let mut out = String::new();
        for i in 0..self.setup.servers {
            let mut start = 0;
            for line in self.log(i).lines() {
                if line.starts_with("=== start") {
                    start += 1;
                }
                if line.contains(id) {
                    out.push_str(&format!("  server {i} start {start}: {line}\n"));
                }
            }
        }
        out
    }

    /// The worker name of server `i`'s latest start (from its log).
    pub fn worker_name(&self, i: usize) -> String {
        let log = self.log(i);
        let line = log
            .lines()
            .rev()
            .find(|l| l.contains("worker started"))
            .unwrap_or_else(|| panic!("server {i} has not started its worker:\n{log}"));
        line.split_whitespace()
            .find_map(|w| w.strip_prefix("worker="))
            .expect("the worker's name")
            .to_owned()
    }

    /// How many unfinished swaps the lease table gives to `worker` (expired or not).
    pub async fn leases_of(&self, worker: &str) -> i64 {
        let (client, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        let conn = tokio::spawn(conn);
        let row = client
            .query_one(
                "SELECT count(*) FROM swap_leases l JOIN swaps s ON s.id = l.swap_id
                 WHERE l.worker = $1 AND NOT s.finished",
                &[&worker],
            )
            .await
            .unwrap();
        drop(client);
        let _ = conn.await;
        row.get(0)
    }

    /// How many times server `i` was started.
    pub fn starts(&self, i: usize) -> usize {
        lock(&self.servers)[i].starts
    }

    /// One `POST /v1/swaps` of one swap's amount to server `i` with `idem`.
    pub async fn create(&self, i: usize, idem: &str) -> Created {
        let res = self
            .client
            .post(format!("{}/v1/swaps", self.base(i)))
            .bearer_auth(&self.key)
            .header("idempotency-key", idem)
            .json(&json!({ "give": GIVE.to_string() }))
            .send()
            .await;
        let res = match res {
            Ok(r) => r,
            Err(e) => return Created::Retry(format!("server {i}: {e}")),
        };
        let status = res.status().as_u16();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        match (status, body["code"].as_str()) {
            (201, _) => Created::Swap(body["id"].as_str().expect("an id").to_owned()),
            (409, Some("idempotency_key_in_progress")) => Created::Stuck,
            (409, Some("idempotency_key_reused")) | (400..=499, Some("unauthorized")) => {
                panic!("creation refused for good: {status} {body}")
            }
            _ => Created::Retry(format!("server {i}: {status} {body}")),
        }
    }

    /// Creates one swap through any live server (starting with the `k`-th), retrying through
    /// the others while servers die; answers its id.
    pub async fn create_any(&self, k: usize) -> String {
        let t0 = Instant::now();
        let mut attempt = 0usize;
        let mut idem = format!("order-{k}");
        let mut stuck = 0usize;
        loop {
            let live = self.live();
            if !live.is_empty() {
                let i = live[(k + attempt) % live.len()];
                match self.create(i, &idem).await {
                    Created::Swap(id) => return id,
                    Created::Stuck => {
                        stuck += 1;
                        // Its server died half-way: the key stays blocked; a new key.
                        if stuck >= 3 {
                            idem = format!("order-{k}-{attempt}");
                            stuck = 0;
                        }
                    }
                    Created::Retry(why) => {
                        assert!(
                            t0.elapsed() < Duration::from_secs(120),
                            "swap {k} could not be created in 2 minutes: {why}"
                        );
                    }
                }
            }
            attempt += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Every swap in the database with its latest state.
    pub async fn states(&self) -> Vec<(SwapRecord, SwapState)> {
        let mut out = Vec::new();
        for id in self.store.list().await.unwrap() {
            out.push(self.store.load(&id).await.unwrap());
        }
        out
    }

    /// How many swaps are in each state (the engine's names).
    pub async fn census(&self) -> BTreeMap<&'static str, usize> {
        let mut m = BTreeMap::new();
        for (_, s) in self.states().await {
            *m.entry(swap_core::driver::state_name(&s)).or_default() += 1;
        }
        m
    }

    /// Waits until every swap of the database has finished (or `limit` passes); answers how
    /// long it took and the Bitcoin-family blocks mined meanwhile.
    pub async fn wait_finished(&self, expect: usize, limit: Duration) -> (Duration, u64) {
        let t0 = Instant::now();
        let h0 = self.nodes.btc.height().await;
        let mut last = Instant::now();
        loop {
            let states = self.states().await;
            let done = states.iter().filter(|(_, s)| s.is_final()).count();
            if states.len() >= expect && done == states.len() {
                return (t0.elapsed(), self.nodes.btc.height().await - h0);
            }
            if last.elapsed() > Duration::from_secs(10) {
                last = Instant::now();
                eprintln!(
                    "  {done}/{} finished after {:.0} s: {:?}",
                    states.len(),
                    t0.elapsed().as_secs_f64(),
                    self.census().await
                );
            }
            if t0.elapsed() >= limit {
                // What the servers and the maker logged about the swaps left over, and the
                // maker's Ethereum nonces (for a failure's reader).
                let maker_log = MAKER_LOG
                    .get()
                    .and_then(|p| std::fs::read_to_string(p).ok())
                    .unwrap_or_default();
                let account = self._maker.eth.to_string();
                let mut nonces = Vec::new();
                for tag in ["latest", "pending"] {
                    let n: Value = self
                        .nodes
                        .eth
                        .rpc("eth_getTransactionCount", json!([account, tag]))
                        .await;
                    nonces.push(n);
                }
                eprintln!("maker account {account}: nonces (latest, pending) {nonces:?}");
                for (record, s) in states.iter().filter(|(_, s)| !s.is_final()) {
                    let id = record.id().to_string();
                    eprintln!("swap {id} left in {}:", swap_core::driver::state_name(s));
                    for i in 0..self.setup.servers {
                        let log = self.log(i);
                        let mut start = 0;
                        for line in log.lines() {
                            if line.starts_with("=== start") {
                                start += 1;
                            }
                            if line.contains(&id) {
                                eprintln!("  server {i} start {start}: {line}");
                            }
                        }
                    }
                    for line in maker_log.lines().filter(|l| l.contains(&id)) {
                        eprintln!("  maker: {line}");
                    }
                }
                panic!(
                    "not every swap finished within {limit:?}: {:?}",
                    self.census().await
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// How many outputs of the chain (blocks since the cluster started) pay each swap's coin
    /// HTLC: its funding count on chain.
    pub async fn coin_fundings(&self) -> BTreeMap<SwapId, usize> {
        let mut by_script: BTreeMap<String, SwapId> = BTreeMap::new();
        let mut count = BTreeMap::new();
        for (record, _) in self.states().await {
            let params = Driver::htlc(&record, Leg::X);
            let htlc = btc_adapter::Htlc::from_params(&params).unwrap();
            by_script.insert(hex::encode(htlc.script_pubkey().as_bytes()), record.id());
            count.insert(record.id(), 0usize);
        }
        let rpc = self.nodes.btc.rpc();
        let tip = self.nodes.btc.height().await;
        for h in self.start_height + 1..=tip {
            let hash = rpc.get_block_hash(h).await.unwrap();
            let block: Value = rpc
                .call("getblock", vec![json!(hash.to_string()), json!(2)])
                .await
                .unwrap();
            for tx in block["tx"].as_array().unwrap() {
                for out in tx["vout"].as_array().unwrap() {
                    let spk = out["scriptPubKey"]["hex"].as_str().unwrap_or_default();
                    if let Some(id) = by_script.get(spk) {
                        *count.get_mut(id).unwrap() += 1;
                    }
                }
            }
        }
        count
    }
}

/// CPU time of a process from its `/proc/<pid>/stat` (utime and stime, fields 14 and 15, in
/// clock ticks of 10 ms).
#[allow(dead_code)] // the workers bench's
pub fn proc_cpu(stat: &str) -> Duration {
    let text = std::fs::read_to_string(stat).unwrap_or_default();
    let rest = text.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // `rest` starts at field 3.
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// The machine's busy and total CPU time so far, in clock ticks (`/proc/stat`).
#[allow(dead_code)] // the workers bench's
pub fn machine_cpu() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<u64> = text
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let total: u64 = f.iter().sum();
    // idle and iowait.
    let idle = f.get(3).copied().unwrap_or(0) + f.get(4).copied().unwrap_or(0);
    (total - idle, total)
}
