//! The `xswap ln` command line and its dispatch: to a running `xswap ln serve` through its
//! control socket, else to a node started for the one command.

use std::path::Path;

use clap::Subcommand;
use serde_json::Value;

use super::cmd::{self, Request};
use super::LnCliError;
use crate::config::Config;

/// `xswap ln ...`.
#[derive(Debug, Subcommand)]
pub enum LnAction {
    /// Run the Lightning node until stopped: accept peers, keep channels alive, claim
    /// payments to our own invoices, answer the other `xswap ln` commands.
    Serve,
    /// This node: its id and where it accepts peers (what a peer needs to connect).
    Info {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Connect to a peer (kept connected from then on, also after restarts).
    Connect {
        /// The peer: NODEID@HOST:PORT.
        peer: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Open a channel to a peer, funded from the node wallet; prints the channel id and the
    /// funding transaction.
    Open {
        /// The peer: NODEID@HOST:PORT.
        #[arg(long)]
        peer: String,
        /// Capacity, in satoshis.
        #[arg(long)]
        amount: u64,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Close a channel: cooperatively (the peer must be connected), or `--force`.
    Close {
        /// The channel id (or a unique prefix of 6+ hex digits).
        channel: String,
        /// Close unilaterally: our balance comes back after the channel's delay.
        #[arg(long)]
        force: bool,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// The channels: id, peer, capacity, outbound/inbound balance, usable, anchors, pending
    /// HTLCs.
    List {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Sums over the channels: what we can send and receive, and what closes still return.
    Balance {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// An invoice: a hold invoice for `--hash` (a swap's), else for a fresh preimage that
    /// `serve` claims automatically. BOLT11 (text and QR) on Bitcoin, a one-line payment
    /// target on Litecoin.
    Invoice {
        /// Amount, in satoshis.
        #[arg(long)]
        amount: u64,
        /// The payment hash (64 hex digits) of a hold invoice; the payment is held until
        /// claimed with its preimage or failed back.
        #[arg(long)]
        hash: Option<String>,
        /// Seconds until the invoice expires.
        #[arg(long, default_value_t = 3600)]
        expiry: u32,
        /// The final hop's CLTV delta, in blocks.
        #[arg(long, default_value_t = 144)]
        cltv: u16,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Claim a payment held for one of our hold invoices (`invoice --hash`): the preimage
    /// is read from standard input (never an argument: those show in process lists). Reveals
    /// it to the payer.
    Claim {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Fail a held payment back to its payer (a hold invoice we will not claim).
    Cancel {
        /// Its payment hash (64 hex digits).
        hash: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Pay a BOLT11 invoice or a payment line (`xswapln:...`) once; waits for the outcome.
    Pay {
        /// The invoice or line.
        invoice: String,
        /// How long to wait for the payment to settle, in seconds.
        #[arg(long, default_value_t = 120)]
        wait: u64,
        /// Machine-readable output (includes the preimage learned).
        #[arg(long)]
        json: bool,
    },
}

/// Prints `v` as JSON, or as `key=value` lines (one per object), without `hidden` keys.
fn print(v: &Value, json: bool, hidden: &[&str]) -> anyhow::Result<()> {
    if json {
        crate::say!("{}", serde_json::to_string_pretty(v)?);
        return Ok(());
    }
    let rows = match v {
        Value::Array(a) => a.clone(),
        other => vec![other.clone()],
    };
    if rows.is_empty() {
        crate::say!("no channels");
    }
    for r in rows {
        if let Value::Object(m) = r {
            let line: Vec<String> = m
                .iter()
                .filter(|(k, _)| !hidden.contains(&k.as_str()))
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

/// An invoice, for a person: the invoice text (and a QR code of a BOLT11 invoice).
fn print_invoice(v: &Value) -> anyhow::Result<()> {
    let text = v["invoice"].as_str().unwrap_or_default();
    if v["kind"] == "bolt11" {
        crate::say!("{}", crate::out::qr(&text.to_ascii_uppercase())?);
    }
    crate::say!("{text}");
    crate::say!(
        "payment_hash={}  amount_sats={}  {}",
        v["payment_hash"].as_str().unwrap_or_default(),
        v["amount_sats"],
        if v["auto_claim"] == true {
            "claimed automatically by `xswap ln serve` when paid"
        } else {
            "hold invoice: held until claimed with its preimage or failed back"
        }
    );
    Ok(())
}

/// The request of an action and whether it wants JSON (`None` for `serve`).
fn request(action: LnAction) -> anyhow::Result<Option<(Request, bool)>> {
    Ok(Some(match action {
        LnAction::Serve => return Ok(None),
        LnAction::Claim { json } => {
            let mut line = zeroize::Zeroizing::new(String::new());
            std::io::stdin().read_line(&mut line)?;
            (
                Request::Claim {
                    preimage: cmd::Secret(line.trim().to_owned()),
                },
                json,
            )
        }
        LnAction::Cancel { hash, json } => (Request::Cancel { hash }, json),
        LnAction::Info { json } => (Request::Info, json),
        LnAction::Connect { peer, json } => (Request::Connect { peer }, json),
        LnAction::Open { peer, amount, json } => (
            Request::Open {
                peer,
                amount_sats: amount,
            },
            json,
        ),
        LnAction::Close {
            channel,
            force,
            json,
        } => (Request::Close { channel, force }, json),
        LnAction::List { json } => (Request::List, json),
        LnAction::Balance { json } => (Request::Balance, json),
        LnAction::Invoice {
            amount,
            hash,
            expiry,
            cltv,
            json,
        } => (
            Request::Invoice {
                amount_sats: amount,
                hash,
                expiry_secs: expiry,
                cltv,
            },
            json,
        ),
        LnAction::Pay {
            invoice,
            wait,
            json,
        } => (
            Request::Pay {
                target: invoice,
                wait_secs: wait,
            },
            json,
        ),
    }))
}

/// Runs `action` on the installation in `data_dir`.
pub async fn run(data_dir: &Path, action: LnAction) -> anyhow::Result<()> {
    let cfg = Config::load(data_dir)?;
    let Some((req, json)) = request(action)? else {
        return super::serve(data_dir, &cfg).await;
    };
    let v = super::ask_or_run(data_dir, &cfg, req.clone()).await?;
    match req {
        Request::Invoice { .. } if !json => print_invoice(&v),
        Request::Pay { .. } => print(&v, json, &["preimage"]),
        _ => print(&v, json, &[]),
    }
}

/// The exit code for an error of `xswap ln` (see [`LnCliError::exit_code`]).
pub fn exit_code(e: &anyhow::Error) -> i32 {
    e.downcast_ref::<LnCliError>()
        .map_or(1, LnCliError::exit_code)
}
