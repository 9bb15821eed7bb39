//! The `xswap channel` command line and its dispatch.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use clap::Subcommand;
use serde_json::Value;

use super::{cmd, ChannelCliError, Ctx};

/// `xswap channel ...`.
#[derive(Debug, Subcommand)]
pub enum ChannelAction {
    /// What a peer needs to open a channel with this installation: Ethereum address,
    /// transport key, listen address (no secrets).
    Info {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Open a channel as its party A: record it, deposit on chain, announce it to the peer.
    Open {
        /// The peer: TRANSPORT_KEY@HOST:PORT (its `xswap channel info`).
        #[arg(long)]
        peer: String,
        /// The peer's Ethereum address (party B).
        #[arg(long)]
        peer_address: String,
        /// Our deposit: `0.5eth`, `10token`, `2.5` (a decimal point: whole units), or a whole
        /// number of base units.
        #[arg(long)]
        amount: String,
        /// `eth` (default) or `erc20:0xTOKEN:DECIMALS`.
        #[arg(long)]
        token: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Announce an opened channel to its peer again (after `open` could not).
    Announce {
        /// The channel id (or a unique prefix of 6+ hex digits).
        id: String,
        /// Where the peer listens, if not where it was recorded.
        #[arg(long)]
        addr: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Deposit more on chain, then account it with the peer (a `top_up` update).
    Deposit {
        /// The channel id (or a unique prefix).
        id: String,
        /// How much.
        #[arg(long)]
        amount: String,
        /// The deposit is already on chain: only account it with the peer.
        #[arg(long)]
        already_deposited: bool,
        /// Where the peer listens, if not where it was recorded.
        #[arg(long)]
        addr: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Withdraw part of our balance: a co-signed withdrawal, then the on-chain `withdraw`.
    Withdraw {
        /// The channel id (or a unique prefix).
        id: String,
        /// How much.
        #[arg(long)]
        amount: String,
        /// Where the peer listens, if not where it was recorded.
        #[arg(long)]
        addr: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// The channels: balances, pending locks, on-chain status.
    List {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Close cooperatively (a co-signed final state, then one `cooperativeClose`).
    Close {
        /// The channel id (or a unique prefix).
        id: String,
        /// Where the peer listens, if not where it was recorded.
        #[arg(long)]
        addr: Option<String>,
        /// If the peer is unreachable, close unilaterally with the latest co-signed state
        /// (starts the challenge period).
        #[arg(long)]
        force: bool,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Serve channel peers on `[channel] listen` (announcements, updates) and run the
    /// channel watcher, until stopped.
    Serve,
}

fn print(v: &Value, json: bool) -> anyhow::Result<()> {
    if json {
        crate::say!("{}", serde_json::to_string_pretty(v)?);
        return Ok(());
    }
    let rows = match v {
        Value::Array(a) => a.clone(),
        other => vec![other.clone()],
    };
    for r in rows {
        if let Value::Object(m) = r {
            let line: Vec<String> = m
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => format!("{k}={s}"),
                    other => format!("{k}={other}"),
                })
                .collect();
            crate::say!("{}", line.join("  "));
        }
    }
    Ok(())
}

/// The poll interval of `serve`'s watcher (`XSWAP_POLL_MS`, default 5 s).
pub fn tick() -> Duration {
    Duration::from_millis(
        std::env::var("XSWAP_POLL_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(5_000),
    )
}

/// Runs `action` on the installation in `data_dir`.
pub async fn run(data_dir: &Path, action: ChannelAction) -> anyhow::Result<()> {
    let ctx = Arc::new(Ctx::open(data_dir).await?);
    let (v, json) = match action {
        ChannelAction::Info { json } => (cmd::info(&ctx), json),
        ChannelAction::Open {
            peer,
            peer_address,
            amount,
            token,
            json,
        } => (
            cmd::open(&ctx, &peer, &peer_address, &amount, token.as_deref()).await?,
            json,
        ),
        ChannelAction::Announce { id, addr, json } => {
            let id = ctx.find(&id)?;
            (cmd::announce(&ctx, id, addr.as_deref()).await?, json)
        }
        ChannelAction::Deposit {
            id,
            amount,
            already_deposited,
            addr,
            json,
        } => {
            let id = ctx.find(&id)?;
            (
                cmd::deposit(&ctx, id, &amount, addr.as_deref(), already_deposited).await?,
                json,
            )
        }
        ChannelAction::Withdraw {
            id,
            amount,
            addr,
            json,
        } => {
            let id = ctx.find(&id)?;
            (
                cmd::withdraw(&ctx, id, &amount, addr.as_deref()).await?,
                json,
            )
        }
        ChannelAction::List { json } => (cmd::list(&ctx).await?, json),
        ChannelAction::Close {
            id,
            addr,
            force,
            json,
        } => {
            let id = ctx.find(&id)?;
            (cmd::close(&ctx, id, addr.as_deref(), force).await?, json)
        }
        ChannelAction::Serve => {
            let listen = ctx
                .section
                .listen
                .clone()
                .ok_or_else(|| anyhow::anyhow!("set `listen` in [channel] of config.toml"))?;
            crate::say!(
                "channel peer {} (address {:#x}) serving on {listen}",
                ctx.node.public(),
                ctx.signer.address()
            );
            return super::serve(ctx.clone(), &listen, tick()).await;
        }
    };
    print(&v, json)
}

/// The exit code for an error of `xswap channel` (see [`ChannelCliError::exit_code`]).
pub fn exit_code(e: &anyhow::Error) -> i32 {
    e.downcast_ref::<ChannelCliError>()
        .map_or(1, ChannelCliError::exit_code)
}
