//! Harness for xswap's integration tests: real nodes (litecoind or bitcoind regtest, anvil),
//! two parties with their own keys, wallets, stores and drivers. A missing node binary is a
//! loud failure naming its install step, never a skip.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;

use alloy::primitives::{Address, U256};
use btc_adapter::BtcChain;
use eth_adapter::EthChain;
use swap_core::store::SqliteStore;
use swap_core::*;

pub use alloy;

pub use xswap_cli::regtest_channels;

pub use xswap_cli::regtest::Nodes;

/// Starts both nodes, with test logging.
pub async fn start_nodes() -> Nodes {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
    Nodes::start().await.expect("regtest nodes")
}

/// One party: its keys, wallets, store and driver.
pub struct Party {
    pub name: &'static str,
    pub btc: Arc<BtcChain>,
    pub eth: Arc<EthChain>,
    pub wallet: String,
    pub driver: Arc<Driver>,
    pub db: tempfile::TempDir,
}

impl Party {
    /// A party with its own seed, its own node wallet named `name`, and anvil account
    /// `eth_account`.
    pub async fn new(nodes: &Nodes, name: &'static str, seed_byte: u8, eth_account: usize) -> Self {
        let (btc_cfg, mut eth_cfg) = nodes
            .adapter_configs(name, std::time::Duration::from_millis(20))
            .await
            .unwrap();
        let db = tempfile::tempdir().unwrap();
        // Secrets sealed, as the CLI keeps them (a key of the party's own, from its seed byte).
        let store = Arc::new(
            SqliteStore::open_with_key(
                db.path().join("swaps.sqlite"),
                swap_core::store::StoreKey::from_bytes(&[seed_byte; 32]),
            )
            .unwrap(),
        );
        let btc = Arc::new(
            BtcChain::new(btc_cfg, &[seed_byte; 64])
                .unwrap()
                .with_outbox(store.clone()),
        );
        eth_cfg.receipt_timeout = std::time::Duration::from_secs(60);
        let eth = Arc::new(
            EthChain::new(eth_cfg, nodes.eth.signer(eth_account))
                .unwrap()
                .with_outbox(store.clone()),
        );
        let driver = Arc::new(Driver::new(
            store,
            [btc.clone() as Arc<dyn Rail>, eth.clone() as Arc<dyn Rail>],
            DriverConfig::default(),
        ));
        Self {
            name,
            btc,
            eth,
            wallet: name.to_owned(),
            driver,
            db,
        }
    }

    pub fn btc_account(&self, key_index: u32) -> Account {
        Account::PublicKey(self.btc.swap_public_key(key_index).unwrap())
    }

    pub fn eth_account(&self) -> Account {
        self.eth.account()
    }

    pub async fn btc_balance(&self, nodes: &Nodes) -> u64 {
        nodes
            .btc
            .rpc()
            .with_wallet(&self.wallet)
            .unwrap()
            .get_balance()
            .await
            .unwrap()
    }

    /// One driver step; returns the outcome once the swap is done.
    pub async fn step(&self, id: &SwapId) -> Option<Outcome> {
        self.stepped(self.driver.step(id).await)
    }

    /// [`Party::step`], one state at a time ([`swap_core::Driver::step_one`]): for a test that
    /// stops a swap at a given state.
    pub async fn step_one(&self, id: &SwapId) -> Option<Outcome> {
        self.stepped(self.driver.step_one(id).await)
    }

    fn stepped(
        &self,
        r: Result<swap_core::driver::StepReport, swap_core::driver::DriverError>,
    ) -> Option<Outcome> {
        match r {
            Ok(r) => swap_core::driver::final_outcome(&r.state),
            Err(e) if e.is_transient() => {
                eprintln!("{}: transient error (retrying next round): {e}", self.name);
                None
            }
            Err(e) => panic!("{}: {e}", self.name),
        }
    }
}

/// Sends `sats` from the node's mining wallet to a party's wallet and confirms it.
pub async fn fund_btc(nodes: &Nodes, party: &Party, sats: u64) {
    let rpc = nodes.btc.rpc().with_wallet(&party.wallet).unwrap();
    let addr = rpc.get_new_address("bech32").await.unwrap();
    nodes.btc.send(&addr, sats).await;
    nodes.btc.mine(1).await;
}

/// The asset of the Bitcoin-family regtest chain.
pub fn btc_asset(nodes: &Nodes) -> Asset {
    nodes.btc_asset()
}

/// Both tips now.
pub async fn tips(x: &dyn Rail, y: &dyn Rail) -> Tips {
    Tips {
        x: x.tip().await.unwrap(),
        y: y.tip().await.unwrap(),
    }
}

/// Records for both parties of one swap.
pub fn records(
    terms: SwapTerms,
    secret: Preimage,
    i_key: u32,
    r_key: u32,
    watch_from: Tips,
) -> (SwapRecord, SwapRecord) {
    (
        SwapRecord {
            terms: terms.clone(),
            role: Role::Initiator,
            secret: Some(secret),
            key_index: i_key,
            watch_from,
        },
        SwapRecord {
            terms,
            role: Role::Responder,
            secret: None,
            key_index: r_key,
            watch_from,
        },
    )
}

/// What the initiator sells and buys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deal {
    /// Initiator sells BTC for ETH.
    BtcForEth,
    /// Initiator sells ETH for BTC.
    EthForBtc,
    /// Initiator sells an ERC-20 token for BTC.
    TokenForBtc(Address),
    /// Initiator sells BTC for an ERC-20 token.
    BtcForToken(Address),
}

pub const SATS: u64 = 1_000_000;
pub const WEI: u128 = 250_000_000_000_000_000;
pub const TOKEN_UNITS: u128 = 5_000_000_000; // 5,000 units of a 6-decimals token

/// A swap both parties have stored, ready to run.
pub struct Agreed {
    pub id: SwapId,
    pub terms: SwapTerms,
}

fn leg_btc(nodes: &Nodes, sender: Account, recipient: Account) -> LegTerms {
    LegTerms {
        params: nodes.btc_params(),
        asset: btc_asset(nodes),
        amount: Amount::Sats(Sats(SATS)),
        sender,
        recipient,
        expiry: Expiry::Height(Height(0)),
        rail_data: None,
    }
}

fn leg_eth(nodes: &Nodes, sender: Account, recipient: Account, token: Option<Address>) -> LegTerms {
    let (asset, amount) = match token {
        None => (Asset::Eth, Amount::Wei(Wei(WEI))),
        Some(t) => (
            Asset::Erc20 {
                token: EvmAddress(t.into_array()),
                decimals: 6,
            },
            Amount::Token(TokenUnits {
                units: TOKEN_UNITS,
                decimals: 6,
            }),
        ),
    };
    LegTerms {
        params: nodes.eth_params(),
        asset,
        amount,
        sender,
        recipient,
        expiry: Expiry::Time(Timestamp(0)),
        rail_data: None,
    }
}

/// Agrees default-expiry terms for `deal` between initiator `i` and responder `r` and stores
/// them on both sides.
pub async fn agree(nodes: &Nodes, i: &Party, r: &Party, deal: Deal) -> Agreed {
    let secret = Preimage::random().unwrap();
    let (x, y) = match deal {
        Deal::BtcForEth => (
            leg_btc(nodes, i.btc_account(0), r.btc_account(0)),
            leg_eth(nodes, r.eth_account(), i.eth_account(), None),
        ),
        Deal::BtcForToken(t) => (
            leg_btc(nodes, i.btc_account(0), r.btc_account(0)),
            leg_eth(nodes, r.eth_account(), i.eth_account(), Some(t)),
        ),
        Deal::EthForBtc => (
            leg_eth(nodes, i.eth_account(), r.eth_account(), None),
            leg_btc(nodes, r.btc_account(0), i.btc_account(0)),
        ),
        Deal::TokenForBtc(t) => (
            leg_eth(nodes, i.eth_account(), r.eth_account(), Some(t)),
            leg_btc(nodes, r.btc_account(0), i.btc_account(0)),
        ),
    };
    let (cx, cy): (&dyn Rail, &dyn Rail) = match deal {
        Deal::BtcForEth | Deal::BtcForToken(_) => (i.btc.as_ref(), i.eth.as_ref()),
        _ => (i.eth.as_ref(), i.btc.as_ref()),
    };
    let tips = tips(cx, cy).await;
    let terms = SwapTerms::with_default_expiries(
        SwapId::random().unwrap(),
        secret.hashlock(),
        x,
        y,
        SafetyPolicy::default(),
        tips,
    )
    .unwrap();
    let (ri, rr) = records(terms.clone(), secret, 0, 0, tips);
    i.driver.create(&ri).await.unwrap();
    r.driver.create(&rr).await.unwrap();
    Agreed {
        id: terms.id,
        terms,
    }
}

/// Deploys a 6-decimals test token and mints `units` to `to`.
pub async fn token_for(nodes: &Nodes, to: Address, units: u128) -> Address {
    use alloy::network::EthereumWallet;
    use alloy::providers::ProviderBuilder;
    use devnet::test_contracts::TestToken;
    let provider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(nodes.eth.signer(0)))
        .connect_http(nodes.eth.url().parse().unwrap());
    let token = TestToken::deploy(&provider, "Test USD".to_string(), 6u8)
        .await
        .unwrap();
    token
        .mint(to, U256::from(units))
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    *token.address()
}

/// The token balance of `who`.
pub async fn token_balance(nodes: &Nodes, token: Address, who: Address) -> U256 {
    use eth_adapter::bindings::IERC20Permit;
    IERC20Permit::new(token, nodes.eth.provider())
        .balanceOf(who)
        .call()
        .await
        .unwrap()
}

/// Steps each listed party once per round, letting one Bitcoin block interval pass between
/// rounds, until every listed party is done or `rounds` run out. `advance_by` blocks pass
/// per round (more makes waiting for an expiry quicker).
pub async fn run(
    nodes: &Nodes,
    parties: &[&Party],
    id: &SwapId,
    rounds: usize,
    advance_by: u64,
) -> Vec<Option<Outcome>> {
    let mut out = vec![None; parties.len()];
    for _ in 0..rounds {
        for (k, p) in parties.iter().enumerate() {
            if out[k].is_none() {
                out[k] = p.step(id).await;
            }
        }
        if out.iter().all(Option::is_some) {
            break;
        }
        nodes.advance(advance_by).await;
    }
    out
}

/// Ether balance (panics on RPC failure).
pub trait EthBal {
    /// The balance.
    fn eth_bal(&self, who: Address) -> impl std::future::Future<Output = U256>;
}

impl EthBal for Nodes {
    async fn eth_bal(&self, who: Address) -> U256 {
        self.eth_balance(who).await.unwrap()
    }
}

/// The `xswap` binary built next to the running test (`cargo test --workspace` builds it).
pub fn xswap_bin() -> std::path::PathBuf {
    // target/<profile>/deps/<this test> -> target/<profile>/xswap
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("xswap");
    if !bin.exists() {
        // `cargo test` builds no binary of another package: build it (scripts/test does too).
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args(["build", "-p", "xswap-cli", "--bin", "xswap"])
            .status()
            .expect("running cargo");
        assert!(
            status.success(),
            "cargo build -p xswap-cli --bin xswap failed"
        );
    }
    assert!(
        bin.exists(),
        "{} missing: build it with `cargo build -p xswap-cli --bin xswap`",
        bin.display()
    );
    bin
}

/// The `xswap` binary on data directory `dir` with `args`, as the CLI tests run it (the test
/// password, a fast poll, logs at `rust_log`, no stdin).
pub fn xswap_cmd(dir: &std::path::Path, args: &[&str], rust_log: &str) -> std::process::Command {
    let mut c = std::process::Command::new(xswap_bin());
    c.arg("--data-dir")
        .arg(dir)
        .args(args)
        .env("XSWAP_PASSWORD", "pw")
        .env("XSWAP_POLL_MS", "200")
        .env("RUST_LOG", rust_log)
        .env("RUST_BACKTRACE", "0")
        .stdin(std::process::Stdio::null());
    c
}

/// The standard output of a finished command, which must have succeeded (its output and
/// errors in the failure otherwise).
pub fn succeeded(out: std::process::Output, args: &[&str]) -> String {
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "xswap {args:?} failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// A TCP port free on 127.0.0.1 now (for a node or a maker to listen on).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

/// What `xswap <args> --json` printed, parsed (the text in the failure otherwise).
pub fn json_out(text: &str, args: &[&str]) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{args:?}: {e}: {text}"))
}

/// The offer string in what `xswap offer` printed (the line under its QR code).
pub fn offer_in(stdout: &str) -> String {
    stdout
        .lines()
        .find(|l| l.starts_with("xso1"))
        .unwrap_or_else(|| panic!("no offer string in:\n{stdout}"))
        .to_owned()
}
