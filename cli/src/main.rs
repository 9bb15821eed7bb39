//! The `xswap` command-line tool.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::{Parser, Subcommand};
use swap_core::store::SqliteStore;
use swap_core::*;
use swap_net::{Offer, OfferLeg};
use xswap_cli::config::{self, Config};
use xswap_cli::keystore::Keystore;
use xswap_cli::{hosted, status};

mod swaps_cmd;

/// Atomic swaps between Bitcoin-family chains and Ethereum, peer to peer, no custodian.
#[derive(Parser)]
#[command(name = "xswap", version, about)]
struct Cli {
    /// Where the keystore, config.toml, offers and the swap database live.
    #[arg(long, global = true, env = "XSWAP_DATA_DIR", default_value_os_t = default_dir())]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

fn default_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".xswap")
}

#[derive(Subcommand)]
enum Command {
    /// Create this installation's seed (24 words, shown once) and a config.toml to edit.
    Init {
        /// Restore the seed from recovery words (read from standard input) instead.
        #[arg(long)]
        restore: bool,
    },
    /// Publish an offer (saved for `xswap maker`, which picks it up without a restart): prints
    /// the offer string and a QR code. `xswap offer list|remove|show` manage and inspect offers.
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Offer {
        #[command(subcommand)]
        action: Option<OfferAction>,
        /// What you sell: btc, ltc, eth or erc20:0xTOKEN:DECIMALS.
        #[arg(long, required = true)]
        sell: Option<String>,
        /// What you buy, same forms.
        #[arg(long, required = true)]
        buy: Option<String>,
        /// Base units of `sell` given per base unit of `buy`, as NUM/DEN.
        #[arg(long, required_unless_present = "price", conflicts_with = "price")]
        rate: Option<String>,
        /// Or: whole units of `sell` given per whole unit of `buy` (`--price 25` for 25 ETH
        /// per BTC).
        #[arg(long)]
        price: Option<String>,
        /// Smallest amount of `buy` a taker may give: `0.001btc`, `0.5eth`, or base units.
        #[arg(long, required = true)]
        min: Option<String>,
        /// Largest amount of `buy` a taker may give, same forms.
        #[arg(long, required = true)]
        max: Option<String>,
        /// Hours until the offer lapses (at least 1).
        #[arg(long, default_value_t = 24)]
        hours: u64,
        /// Where what you sell travels: onchain, ln (Lightning: the Bitcoin-family coin,
        /// `[ln]` configured) or eth-channel (an Ethereum channel with the taker: `[channel]`
        /// configured). You need a channel that can pay the offer's smallest amount.
        #[arg(long, default_value = "onchain")]
        sell_rail: String,
        /// Where what you buy travels, same forms (the taker needs the channel to you).
        #[arg(long, default_value = "onchain")]
        buy_rail: String,
    },
    /// Run as a maker: resume stored swaps and serve the saved offers until stopped.
    Maker,
    /// Take an offer: give `--give` of what the maker buys. Shows what will be locked and
    /// received and asks before going on (`--yes` for scripts).
    Take {
        /// The offer string (xso1..., or the older xswap1...).
        offer: String,
        /// What you give: `0.01btc`, `0.5eth`, `12.5` (whole units), or base units.
        #[arg(long)]
        give: String,
        /// Go on without asking.
        #[arg(long)]
        yes: bool,
    },
    /// What this installation's wallets hold, and what unfinished swaps will still lock.
    Balance {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// List swaps.
    List {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Show one swap: state, transactions, expiries, and what happens next.
    Show {
        /// The swap id.
        id: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Resume every unfinished swap and run them to their end (also done by `maker`).
    Resume,
    /// Refund your own lock of a swap now (only when its expiry allows it).
    Refund {
        /// The swap id.
        id: String,
    },
    /// After losing the swap database: restore the newest backup (or `--backup FILE`) and
    /// refund every expired Ethereum lock of this installation found on chain.
    Recover {
        /// The backup to restore (default: the newest in `backups/`).
        #[arg(long)]
        backup: Option<PathBuf>,
        /// Search the Ethereum contract's events from this block.
        #[arg(long, default_value_t = 0)]
        eth_from_block: u64,
    },
    /// Local regtest nodes for trying xswap by hand (litecoind or bitcoind, and anvil).
    Regtest {
        #[command(subcommand)]
        action: RegtestAction,
    },
    /// Ethereum payment channels: info, open, announce, deposit, withdraw, list, close, serve.
    Channel {
        #[command(subcommand)]
        action: xswap_cli::channel::args::ChannelAction,
    },
    /// The Lightning node (on the `[btc]` node and wallet): serve, info, connect, open,
    /// close, list, balance, invoice, claim, cancel, pay.
    Ln {
        #[command(subcommand)]
        action: xswap_cli::ln::args::LnAction,
    },
    /// Run two engines that swap BTC for ETH and an ERC-20 for BTC over the encrypted
    /// transport, on regtest nodes started for the occasion (litecoind or bitcoind, anvil).
    Demo,
}

#[derive(Subcommand)]
enum OfferAction {
    /// List the saved offers (numbered, with their state).
    List {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Remove saved offers: by number (from `list`), `expired`, or `all`.
    Remove {
        /// A number from `xswap offer list`, `expired` or `all`.
        which: String,
    },
    /// Show what an offer string says (anyone's), without taking it.
    Show {
        /// The offer string (xso1..., or the older xswap1...); line breaks inside it are ignored.
        offer: String,
    },
}

#[derive(Subcommand)]
enum RegtestAction {
    /// Start both nodes in the background, deploy the HTLC contract, configure and fund this
    /// installation.
    Up,
    /// Use the nodes another installation started (give its data directory).
    Join {
        /// The other installation's data directory.
        other: PathBuf,
    },
    /// Mine blocks (and move Ethereum time by as long).
    Mine {
        /// How many blocks.
        #[arg(default_value_t = 1)]
        blocks: u64,
    },
    /// Stop both nodes.
    Down,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// The exit code of a `take` that ended without swapping (refunded or aborted).
const EXIT_NOT_SWAPPED: i32 = 3;

fn parse_asset(s: &str, cfg: &Config) -> anyhow::Result<(ChainId, Asset)> {
    let btc = cfg.btc_chain()?;
    let eth = cfg.eth_chain()?;
    let parts: Vec<&str> = s.split(':').collect();
    Ok(match parts.as_slice() {
        ["btc"] if btc.family == ChainFamily::Bitcoin => (btc, Asset::Btc),
        ["ltc"] if btc.family == ChainFamily::Litecoin => (btc, Asset::Ltc),
        ["eth"] => (eth, Asset::Eth),
        ["erc20", token, decimals] => (
            eth,
            Asset::Erc20 {
                token: EvmAddress::from_hex(token)?,
                decimals: decimals.parse().context("decimals")?,
            },
        ),
        _ => bail!(
            "asset {s:?}: use {} , eth or erc20:0xTOKEN:DECIMALS (config chain is {btc})",
            if btc.family == ChainFamily::Litecoin {
                "ltc"
            } else {
                "btc"
            }
        ),
    })
}

use xswap_cli::amounts::{format_amount, parse_amount};

fn amount(asset: &Asset, units: u128) -> anyhow::Result<Amount> {
    Ok(xswap_cli::engine::with_units(asset, units)?)
}

fn now() -> u64 {
    Timestamp::now().0
}

fn driver_config() -> DriverConfig {
    DriverConfig {
        poll_interval: Duration::from_millis(
            std::env::var("XSWAP_POLL_MS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(5_000),
        ),
        max_backoff: Duration::from_secs(60),
    }
}

/// Prints each state change of `ids`, and with an engine the locks' confirmations and the
/// time left to our refund, until all are done.
async fn follow(
    engine: Option<&xswap_cli::engine::Engine>,
    store: &dyn SwapStore,
    ids: &[SwapId],
) -> anyhow::Result<()> {
    let mut seen = vec![0u64; ids.len()];
    let mut last = vec![String::new(); ids.len()];
    loop {
        let mut all_done = true;
        for (k, id) in ids.iter().enumerate() {
            let (record, state) = store.load(id).await?;
            let short = &id.to_string()[..8];
            for entry in store.history(id).await? {
                if entry.seq > seen[k] {
                    seen[k] = entry.seq;
                    xswap_cli::say!(
                        "{short} {:<20} {}",
                        swap_core::driver::state_name(&entry.state),
                        status::next_step(&record, &entry.state)
                    );
                }
            }
            if let (Some(e), false) = (engine, state.is_final()) {
                if let Ok(snap) = e.driver.observe(&record).await {
                    let line = status::progress(&record, &snap);
                    if line != last[k] {
                        xswap_cli::say!("{short} {:<20} {line}", "");
                        last[k] = line;
                    }
                }
            }
            all_done &= state.is_final();
        }
        if all_done {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// ` (Lightning)` / ` (Ethereum channel)` after a chain, nothing on chain.
fn rail_suffix(kind: RailKind) -> &'static str {
    match kind {
        RailKind::Lightning => " (Lightning)",
        RailKind::EvmChannel => " (Ethereum channel)",
        _ => "",
    }
}

/// `xswap take` once the offer is accepted by the user and our channel rails run: a channel
/// for each channel leg (else what to open, before the maker is asked), then the swap to its
/// end. Returns the exit code when it did not swap.
async fn take(
    dir: &Path,
    hosted: &hosted::Hosted,
    offer: &Offer,
    give: u128,
    get: u128,
) -> anyhow::Result<Option<i32>> {
    let engine = config::engine_with(dir, driver_config(), hosted.rails.clone()).await?;
    engine
        .verify_rails()
        .await
        .context("refusing to take the offer")?;
    engine.resume().await?;
    if let Err(e) = hosted::check_take(hosted, offer, give, get).await {
        return Err(hosted::with_maker_contact(e, &engine, offer).await);
    }
    let id = engine.take(offer, give).await?;
    xswap_cli::say!("swap {id} agreed; running it (Ctrl-C is safe: `xswap resume` goes on)");
    follow(Some(&engine), engine.driver.store().as_ref(), &[id]).await?;
    let (_, state) = engine.driver.store().load(&id).await?;
    match swap_core::driver::final_outcome(&state) {
        Some(Outcome::Swapped) => {
            xswap_cli::say!("swap {id}: {}", Outcome::Swapped);
            Ok(None)
        }
        Some(other) => {
            // Not what the user asked for: a script must see it.
            xswap_cli::say!("swap {id}: {other}");
            Ok(Some(EXIT_NOT_SWAPPED))
        }
        None => bail!("swap {id} stopped before it finished: `xswap resume` goes on"),
    }
}

/// `xswap resume` with our channel rails running: every unfinished swap to its end.
async fn resume(dir: &Path, hosted: &hosted::Hosted) -> anyhow::Result<()> {
    let engine = config::engine_with(dir, driver_config(), hosted.rails.clone()).await?;
    let ids: Vec<SwapId> = engine
        .driver
        .store()
        .unfinished()
        .await?
        .into_iter()
        .filter_map(|r| r.ok().map(|(rec, _)| rec.id()))
        .collect();
    let n = engine.resume().await?;
    xswap_cli::say!("{n} unfinished swap(s) resumed");
    follow(Some(&engine), engine.driver.store().as_ref(), &ids).await
}

/// mimalloc: glibc's malloc serializes frees of memory another thread allocated, the common
/// case under tokio's work stealing (README, figures).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,swap_core::driver=info".into()),
        )
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .compact()
        .init();
    let dir = cli.data_dir.clone();
    match cli.command {
        Command::Demo => runtime()?.block_on(xswap_cli::demo::run()),
        Command::Channel { action } => {
            use xswap_cli::channel::args;
            match runtime()?.block_on(args::run(&dir, action)) {
                Ok(()) => Ok(()),
                Err(e) => {
                    eprintln!("Error: {e:#}");
                    std::process::exit(args::exit_code(&e))
                }
            }
        }
        Command::Ln { action } => {
            use xswap_cli::ln::args;
            match runtime()?.block_on(args::run(&dir, action)) {
                Ok(()) => Ok(()),
                Err(e) => {
                    eprintln!("Error: {e:#}");
                    std::process::exit(args::exit_code(&e))
                }
            }
        }
        Command::Regtest { action } => runtime()?.block_on(async {
            use xswap_cli::regtest_cmd as r;
            match action {
                RegtestAction::Up => r::up(&dir).await,
                RegtestAction::Join { other } => r::join(&dir, &other).await,
                RegtestAction::Mine { blocks } => r::mine(&dir, blocks).await,
                RegtestAction::Down => r::down(&dir).await,
            }
        }),
        Command::Init { restore } => {
            std::fs::create_dir_all(&dir)?;
            let path = dir.join("keystore.json");
            let pw = config::new_password()?;
            let ks = if restore {
                let mut words = String::new();
                std::io::stdin().read_line(&mut words)?;
                let ks = Keystore::restore(&path, &words, &pw)?;
                xswap_cli::say!("seed restored into {}", path.display());
                ks
            } else {
                let (ks, words) = Keystore::create(&path, &pw)?;
                xswap_cli::say!(
                    "Your recovery words (write them down; they are shown only now):\n"
                );
                xswap_cli::say!("  {}\n", words.as_str());
                xswap_cli::say!("keystore: {} (mode 0600)", path.display());
                ks
            };
            Config::default().write_new(&dir)?;
            // Its secrets sealed with the seed's store key from the first swap on.
            SqliteStore::open_with_key(dir.join("swaps.sqlite"), ks.store_key()?)?;
            xswap_cli::say!(
                "config:   {} (edit it to point at your nodes)",
                Config::path(&dir).display()
            );
            Ok(())
        }
        Command::Offer {
            action: Some(action),
            ..
        } => match action {
            OfferAction::List { json } => xswap_cli::offers::list(&dir, json),
            OfferAction::Remove { which } => xswap_cli::offers::remove(&dir, &which),
            OfferAction::Show { offer } => {
                xswap_cli::offers::print(None, &Offer::decode(&offer)?);
                Ok(())
            }
        },
        Command::Offer {
            action: None,
            sell,
            buy,
            rate,
            price,
            min,
            max,
            hours,
            sell_rail,
            buy_rail,
        } => {
            let (Some(sell), Some(buy), Some(min), Some(max)) = (sell, buy, min, max) else {
                bail!("an offer needs --sell, --buy, --rate (or --price), --min and --max");
            };
            if hours == 0 {
                bail!("--hours must be at least 1");
            }
            let cfg = Config::load(&dir)?;
            let (sc, sa) = parse_asset(&sell, &cfg)?;
            let (bc, ba) = parse_asset(&buy, &cfg)?;
            let sell_rail = hosted::parse_rail(&sell_rail).context("--sell-rail")?;
            let buy_rail = hosted::parse_rail(&buy_rail).context("--buy-rail")?;
            for (flag, rail, asset) in [
                ("--sell-rail", sell_rail, &sa),
                ("--buy-rail", buy_rail, &ba),
            ] {
                if !hosted::rail_carries(rail, asset) {
                    bail!(
                        "{flag} {}: {} does not travel there (Lightning carries the \
                         Bitcoin-family coin, an Ethereum channel ETH or an ERC-20)",
                        hosted::rail_name(rail),
                        status::asset_text(asset)
                    );
                }
            }
            let min = parse_amount(&min, &ba).context("--min")?;
            let max = parse_amount(&max, &ba).context("--max")?;
            if min > max {
                bail!("--min must be at most --max");
            }
            let (rate_num, rate_den) = match (rate, price) {
                (_, Some(p)) => xswap_cli::amounts::rate_from_price(&p, &sa, &ba)?,
                (Some(rate), None) => {
                    let (num, den) = rate
                        .split_once('/')
                        .ok_or_else(|| anyhow!("--rate must be NUM/DEN"))?;
                    let num: u128 = num.trim().parse().context("rate numerator")?;
                    let den: u128 = den.trim().parse().context("rate denominator")?;
                    if num == 0 || den == 0 {
                        bail!("--rate must be two positive numbers NUM/DEN");
                    }
                    (num, den)
                }
                (None, None) => bail!("give --rate NUM/DEN or --price"),
            };
            let ks = config::open_keystore(&dir)?;
            let identity = swap_net::Identity::from_private(&ks.purpose_key("noise")?[..])?;
            let offer = Offer {
                v: 1,
                addr: cfg.net.offer_address().to_owned(),
                maker: identity.public(),
                sell: OfferLeg {
                    rail: sell_rail,
                    chain: sc,
                    asset: sa.clone(),
                    max: amount(&sa, max.saturating_mul(rate_num) / rate_den)?,
                    min: amount(&sa, min.saturating_mul(rate_num) / rate_den)?,
                },
                buy: OfferLeg {
                    rail: buy_rail,
                    chain: bc,
                    asset: ba.clone(),
                    max: amount(&ba, max)?,
                    min: amount(&ba, min)?,
                },
                rate_num,
                rate_den,
                expires: Timestamp(now() + hours.saturating_mul(3600)),
            };
            offer.check().map_err(|e| {
                anyhow!("{e} (`[net] public` in config.toml, or XSWAP_PUBLIC, sets the address offers carry)")
            })?;
            // A leg the maker pays on a channel rail needs a channel that can pay it now:
            // said before the offer is published, with what to open.
            for (name, leg) in [("buy", &offer.buy), ("sell", &offer.sell)] {
                hosted::rail_configured(&cfg, name, leg.rail)?;
            }
            runtime()?.block_on(hosted::check_offer(&dir, &cfg, &offer.sell))?;
            let text = offer.encode();
            Offer::decode(&text)?;
            let mut offers = xswap_cli::offers::load(&dir)?;
            offers.push(offer);
            xswap_cli::offers::save(&dir, &offers)?;
            // The QR code holds the upper-case spelling when it reads the same (the compact
            // form does): alphanumeric mode, a smaller code for a phone to scan.
            let upper = text.to_ascii_uppercase();
            let qr = xswap_cli::out::qr(if Offer::decode(&upper).is_ok() {
                &upper
            } else {
                &text
            })?;
            xswap_cli::say!(
                "{qr}\n{text}\n\nsaved; `xswap maker` serves it (a running maker picks it up)"
            );
            Ok(())
        }
        Command::Maker => runtime()?.block_on(async {
            let offers = xswap_cli::offers::load(&dir)?;
            if offers.is_empty() {
                bail!("no offers: publish one with `xswap offer` first");
            }
            let cfg = Config::load(&dir)?;
            // The Lightning node and the Ethereum channel service run in this process for
            // as long as it serves (`xswap ln ...` reach the node through its control socket).
            let hosted = hosted::host(&dir, &cfg).await?;
            let served = async {
                let engine =
                    config::engine_with(&dir, driver_config(), hosted.rails.clone()).await?;
                engine
                    .verify_rails()
                    .await
                    .context("refusing to serve offers")?;
                let resumed = engine.resume().await?;
                // Takers without a channel to our nodes ask where they are.
                hosted.tell_contacts(&engine);
                let listen = cfg.net.listen.clone();
                let listener = tokio::net::TcpListener::bind(&listen)
                    .await
                    .with_context(|| format!("listening on {listen}"))?;
                xswap_cli::say!(
                    "maker {} listening on {listen}, {} offer(s), {resumed} swap(s) resumed",
                    engine.identity.public(),
                    offers.len()
                );
                if let Some(node) = &hosted.ln {
                    xswap_cli::say!(
                        "lightning node {} serving peers on {}",
                        node.node_id(),
                        node.listen_addr()
                    );
                }
                if let Some(chan_listen) = cfg.channel.as_ref().and_then(|c| c.listen.as_ref()) {
                    xswap_cli::say!("channel peers served on {chan_listen}");
                }
                engine
                    .serve_book(
                        listener,
                        std::sync::Arc::new(xswap_cli::offers::FileOffers::new(&dir)),
                    )
                    .await;
                anyhow::Ok(())
            };
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = signal(SignalKind::terminate())?;
            let mut int = signal(SignalKind::interrupt())?;
            let outcome = tokio::select! {
                r = served => r,
                _ = term.recv() => Ok(()),
                _ = int.recv() => Ok(()),
            };
            hosted.stop().await;
            outcome
        }),
        Command::Take { offer, give, yes } => runtime()?.block_on(async {
            let offer = Offer::decode(&offer).map_err(|e| anyhow!("{e}"))?;
            if offer.expires.0 < now() {
                bail!("this offer has expired: ask the maker for a new one");
            }
            let give = parse_amount(&give, &offer.buy.asset).context("--give")?;
            let (lo, hi) = (offer.buy.min.base_units(), offer.buy.max.base_units());
            if !(lo..=hi).contains(&give) {
                bail!(
                    "this offer takes {} to {} per swap",
                    format_amount(lo, &offer.buy.asset),
                    format_amount(hi, &offer.buy.asset)
                );
            }
            let get = offer
                .quote(give)
                .ok_or_else(|| anyhow!("amount too large"))?;
            xswap_cli::say!(
                "you lock    {} on {}{} (first; it comes back to you after its expiry if the \
                 maker never locks)",
                format_amount(give, &offer.buy.asset),
                offer.buy.chain,
                rail_suffix(offer.buy.rail)
            );
            xswap_cli::say!(
                "you receive {} on {}{}",
                format_amount(get, &offer.sell.asset),
                offer.sell.chain,
                rail_suffix(offer.sell.rail)
            );
            xswap_cli::say!("maker       {} at {}", offer.maker, offer.addr);
            if !yes {
                if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                    bail!("add --yes to take the offer without being asked");
                }
                eprint!("go on? [y/N] ");
                let mut answer = String::new();
                std::io::stdin().read_line(&mut answer)?;
                if !matches!(answer.trim(), "y" | "Y" | "yes") {
                    bail!("not taken");
                }
            }
            let cfg = Config::load(&dir)?;
            for (name, leg) in [("buy", &offer.buy), ("sell", &offer.sell)] {
                hosted::rail_configured(&cfg, name, leg.rail)?;
            }
            // Our Lightning node and channel service run in this process for the swap (those
            // its legs use).
            let hosted = hosted::host_only(&dir, &cfg, &[offer.buy.rail, offer.sell.rail]).await?;
            let ran = take(&dir, &hosted, &offer, give, get).await;
            if ran.is_ok() {
                // What we paid on a channel is claimed by the maker with us online.
                hosted.settle(60).await;
            }
            hosted.stop().await;
            match ran? {
                Some(code) => std::process::exit(code),
                None => Ok(()),
            }
        }),
        Command::Balance { json } => runtime()?.block_on(async {
            let engine = config::engine(&dir, driver_config()).await?;
            let rows = engine.balances().await?;
            if json {
                let v: Vec<_> = rows
                    .iter()
                    .map(|b| {
                        serde_json::json!({
                            "chain": b.chain.to_string(),
                            "asset": status::asset_text(&b.asset),
                            "balance": b.balance.to_string(),
                            "reserved": b.reserved.to_string(),
                        })
                    })
                    .collect();
                xswap_cli::say!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for b in rows {
                    xswap_cli::say!(
                        "{:<14} {}  ({} promised to unfinished swaps)",
                        b.chain.to_string(),
                        format_amount(b.balance, &b.asset),
                        format_amount(b.reserved, &b.asset)
                    );
                }
            }
            Ok(())
        }),
        Command::Recover {
            backup,
            eth_from_block,
        } => runtime()?.block_on(async {
            let done = xswap_cli::recover::run(&dir, backup, eth_from_block).await?;
            xswap_cli::say!(
                "recover: {} refund(s) sent, {} lock(s) not expired yet{}",
                done.refunds.len(),
                done.waiting.len(),
                if done.restored.is_some() {
                    "; run `xswap resume` for the restored swaps"
                } else {
                    ""
                }
            );
            Ok(())
        }),
        Command::Resume => runtime()?.block_on(async {
            let hosted = hosted::host(&dir, &Config::load(&dir)?).await?;
            let resumed = resume(&dir, &hosted).await;
            if resumed.is_ok() {
                hosted.settle(60).await;
            }
            hosted.stop().await;
            resumed
        }),
        Command::List { json } => runtime()?.block_on(swaps_cmd::list(&dir, json)),
        Command::Show { id, json } => runtime()?.block_on(swaps_cmd::show(&dir, id, json)),
        Command::Refund { id } => runtime()?.block_on(swaps_cmd::refund(&dir, id)),
    }
}
