//! The `xswap ln` operations on a running node. Each returns the JSON it reports; the same
//! code runs in `serve` (a request on its control socket) and in a one-shot process that
//! started the node itself.

use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, Instant};

use bitcoin::secp256k1::PublicKey;
use ln_adapter::invoice::{has_bolt11, LINE_PREFIX};
use ln_adapter::{ChannelInfo, LnEvent, LnNode, PaymentTarget};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use swap_core::{Hashlock, Preimage};
use tokio::sync::broadcast;

use super::{Ctx, LnCliError};

/// One request (the control socket's JSON, `{"cmd": "list"}` and so on).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Request {
    /// Node id and listen address.
    Info,
    /// Connect to a peer (`NODEID@HOST:PORT`), kept connected from then on.
    Connect {
        /// The peer.
        peer: String,
    },
    /// Open a channel funded from the node wallet.
    Open {
        /// The peer (`NODEID@HOST:PORT`).
        peer: String,
        /// Capacity, in satoshis.
        amount_sats: u64,
    },
    /// Close a channel.
    Close {
        /// Its id (or a unique prefix of 6+ hex digits).
        channel: String,
        /// Unilaterally.
        force: bool,
    },
    /// The channels.
    List,
    /// Sums over the channels.
    Balance,
    /// An invoice.
    Invoice {
        /// Amount, in satoshis.
        amount_sats: u64,
        /// A hold invoice for this payment hash (hex); none: a fresh preimage, claimed
        /// automatically by `serve`.
        hash: Option<String>,
        /// Seconds until it expires.
        expiry_secs: u32,
        /// The final hop's CLTV delta.
        cltv: u16,
    },
    /// Claim a payment held for a hold invoice with its preimage.
    Claim {
        /// The preimage (hex).
        preimage: Secret,
    },
    /// Fail a held payment back to its payer (and never claim it).
    Cancel {
        /// Its payment hash (hex).
        hash: String,
    },
    /// Pay an invoice (BOLT11) or a payment line.
    Pay {
        /// The invoice or line.
        target: String,
        /// How long to wait for the outcome.
        wait_secs: u64,
    },
}

/// A secret in a request (a preimage, hex): redacted in `Debug`, zeroed when dropped.
#[derive(Clone, Serialize, Deserialize, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The message of a request that failed on the node's side.
fn node_err(e: ln_adapter::LnError) -> LnCliError {
    LnCliError::from(e)
}

/// `NODEID@HOST:PORT`.
async fn parse_peer(s: &str) -> Result<(PublicKey, SocketAddr), LnCliError> {
    let bad = || LnCliError::BadArgument(format!("peer {s:?}: expected NODEID@HOST:PORT"));
    let (id, addr) = s.trim().split_once('@').ok_or_else(bad)?;
    let id = PublicKey::from_str(id).map_err(|_| bad())?;
    let addr = tokio::net::lookup_host(addr)
        .await
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(bad)?;
    Ok((id, addr))
}

/// A payment hash in hex.
fn parse_hash(s: &str) -> Result<Hashlock, LnCliError> {
    hex::decode(s.trim().trim_start_matches("0x"))
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .map(Hashlock)
        .ok_or_else(|| LnCliError::BadArgument(format!("hash {s:?}: 64 hex digits expected")))
}

/// Runs `req` on `node`.
pub async fn exec(node: &LnNode, ctx: &Ctx, req: Request) -> Result<Value, LnCliError> {
    match req {
        Request::Info => Ok(info(node)),
        Request::Connect { peer } => connect(node, &peer).await,
        Request::Open { peer, amount_sats } => open(node, &peer, amount_sats).await,
        Request::Close { channel, force } => close(node, &channel, force).await,
        Request::List => Ok(Value::Array(node.channels().iter().map(row).collect())),
        Request::Balance => balance(node).await,
        Request::Invoice {
            amount_sats,
            hash,
            expiry_secs,
            cltv,
        } => invoice(node, ctx, amount_sats, hash.as_deref(), expiry_secs, cltv),
        Request::Pay { target, wait_secs } => pay(node, ctx, &target, wait_secs).await,
        Request::Claim { preimage } => claim(node, &preimage.0).await,
        Request::Cancel { hash } => cancel(node, &hash),
    }
}

fn info(node: &LnNode) -> Value {
    let channels = node.channels();
    json!({
        "node_id": node.node_id().to_string(),
        "listen": node.listen_addr().to_string(),
        "chain": node.chain().to_string(),
        "channels": channels.len(),
        "usable_channels": channels.iter().filter(|c| c.usable).count(),
    })
}

async fn connect(node: &LnNode, peer: &str) -> Result<Value, LnCliError> {
    let (id, addr) = parse_peer(peer).await?;
    node.connect(id, addr)
        .await
        .map_err(|e| LnCliError::PeerUnreachable(e.to_string()))?;
    Ok(json!({"peer": id.to_string(), "address": addr.to_string(), "connected": true}))
}

/// Waits (`secs` at most) for the first event matching `pred`.
async fn wait_event<T>(
    rx: &mut broadcast::Receiver<LnEvent>,
    secs: u64,
    mut pred: impl FnMut(&LnEvent) -> Option<T>,
) -> Option<T> {
    tokio::time::timeout(Duration::from_secs(secs), async {
        loop {
            match rx.recv().await {
                Ok(e) => {
                    if let Some(t) = pred(&e) {
                        return Some(t);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
    .await
    .ok()
    .flatten()
}

/// Waits (`secs` at most, polling) until `cond` holds.
async fn wait_until(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while !cond() {
        if started.elapsed() > Duration::from_secs(secs) {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

async fn open(node: &LnNode, peer: &str, amount_sats: u64) -> Result<Value, LnCliError> {
    if amount_sats == 0 {
        return Err(LnCliError::BadArgument("--amount must be above 0".into()));
    }
    let (id, addr) = parse_peer(peer).await?;
    node.connect(id, addr)
        .await
        .map_err(|e| LnCliError::PeerUnreachable(e.to_string()))?;
    let mut rx = node.subscribe();
    node.open_channel(id, amount_sats, 0)
        .await
        .map_err(node_err)?;
    let pending = wait_event(&mut rx, 60, |e| match e {
        LnEvent::ChannelPending {
            channel_id,
            counterparty,
            funding_txid,
        } if *counterparty == id => Some(Ok((*channel_id, *funding_txid))),
        LnEvent::ChannelClosed {
            counterparty: Some(c),
            reason,
            ..
        } if *c == id => Some(Err(reason.clone())),
        _ => None,
    })
    .await;
    let (channel_id, funding_txid) = match pending {
        Some(Ok(opened)) => opened,
        Some(Err(reason)) => {
            return Err(LnCliError::Node(format!(
                "the channel open failed: {reason}"
            )))
        }
        None => {
            return Err(LnCliError::Timeout(
                "the peer did not sign the funding transaction in 60 s".into(),
            ))
        }
    };
    // The node broadcasts the funding transaction in the background: a one-shot process must
    // not end before the node has it.
    let started = Instant::now();
    while !node.knows_transaction(&funding_txid).await {
        if started.elapsed() > Duration::from_secs(30) {
            return Err(LnCliError::Timeout(format!(
                "funding transaction {funding_txid} not seen by the node in 30 s (LDK \
                 broadcasts it again while the node runs)"
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(json!({
        "channel_id": channel_id.to_string(),
        "funding_txid": funding_txid.to_string(),
        "peer": id.to_string(),
        "capacity_sats": amount_sats,
    }))
}

/// A channel from its id or a unique prefix of at least 6 hex digits.
fn find(node: &LnNode, s: &str) -> Result<ChannelInfo, LnCliError> {
    let t = s.trim().trim_start_matches("0x").to_ascii_lowercase();
    let found: Vec<ChannelInfo> = node
        .channels()
        .into_iter()
        .filter(|c| t.len() >= 6 && c.channel_id.to_string().starts_with(&t))
        .collect();
    match <[ChannelInfo; 1]>::try_from(found) {
        Ok([c]) => Ok(c),
        Err(_) => Err(LnCliError::UnknownChannel(s.to_owned())),
    }
}

async fn close(node: &LnNode, channel: &str, force: bool) -> Result<Value, LnCliError> {
    let chan = find(node, channel)?;
    let id = chan.channel_id;
    let peer = chan.counterparty;
    let mut rx = node.subscribe();
    if force {
        node.force_close(&id, &peer).map_err(node_err)?;
    } else {
        // A node just started reconnects its peers on its own: give it the time.
        if !wait_until(15, || node.is_connected(&peer)).await {
            return Err(LnCliError::PeerUnreachable(format!(
                "{peer} is not connected: channel {id} was NOT closed (`--force` closes it \
                 without the peer)"
            )));
        }
        node.close_channel(&id, &peer).map_err(|e| match e {
            ln_adapter::LnError::NotReady(why) => LnCliError::HtlcsPending(why),
            other => node_err(other),
        })?;
    }
    let reason = wait_event(&mut rx, 60, |e| match e {
        LnEvent::ChannelClosed {
            channel_id, reason, ..
        } if *channel_id == id => Some(reason.clone()),
        _ => None,
    })
    .await
    .ok_or_else(|| LnCliError::Timeout(format!("channel {id} not closed in 60 s")))?;
    // The closing transaction is broadcast in the background: wait until the node has it.
    let mut broadcast = false;
    if let Some(funding) = chan.funding {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if node.output_spent(&funding).await.unwrap_or(false) {
                broadcast = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(json!({
        "channel_id": id.to_string(),
        "peer": peer.to_string(),
        "closed": if force { "force" } else { "cooperative" },
        "closing_tx_broadcast": broadcast,
        "reason": reason,
        "note": if force {
            "our balance comes back to the wallet after the channel's delay: keep `xswap ln serve` running until `ln balance` shows nothing closing"
        } else {
            "the closing transaction pays both sides directly"
        },
    }))
}

fn row(c: &ChannelInfo) -> Value {
    json!({
        "channel_id": c.channel_id.to_string(),
        "peer": c.counterparty.to_string(),
        "funding_txid": c.funding.map(|f| f.txid.to_string()),
        "capacity_sats": c.capacity_sats,
        "outbound_msat": c.outbound_msat,
        "inbound_msat": c.inbound_msat,
        "sendable_msat": c.sendable_msat,
        "usable": c.usable,
        "opened_by_us": c.outbound,
        "anchors": c.anchors,
        "pending_htlcs": c.inbound_htlcs.len() + c.outbound_htlcs,
    })
}

async fn balance(node: &LnNode) -> Result<Value, LnCliError> {
    let channels = node.channels();
    let sum = |f: fn(&ChannelInfo) -> u64| channels.iter().map(f).sum::<u64>();
    // The wallet's reserve for anchor channels' force-close fees (none without them).
    let reserve = node.anchor_reserve().await.map_err(LnCliError::from)?;
    Ok(json!({
        "channels": channels.len(),
        "usable_channels": channels.iter().filter(|c| c.usable).count(),
        "outbound_msat": sum(|c| c.outbound_msat),
        "inbound_msat": sum(|c| c.inbound_msat),
        "usable_outbound_msat": channels.iter().filter(|c| c.usable).map(|c| c.outbound_msat).sum::<u64>(),
        "usable_inbound_msat": channels.iter().filter(|c| c.usable).map(|c| c.inbound_msat).sum::<u64>(),
        "pending_htlcs": channels.iter().map(|c| c.inbound_htlcs.len() + c.outbound_htlcs).sum::<usize>(),
        "closing_sats": node.sweeping_sats(),
        "anchor_channels": reserve.anchor_channels,
        "anchor_reserve_needed_sats": reserve.needed_sats,
        "anchor_reserve_held_sats": reserve.held_sats,
        "anchor_reserve_short": reserve.short(),
    }))
}

/// Moves the preimages of our own invoices that builds before this one kept in clear files
/// (`dir`, one file per payment hash) into the node's sealed store, then removes the files.
/// A file that cannot be read stays, reported.
pub(crate) fn seal_clear_preimages(node: &LnNode, dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy().to_string();
        if name.len() == 68 && name.ends_with(".tmp") {
            // A preimage an earlier build was still writing: its invoice was never made.
            if let Err(err) = std::fs::remove_file(e.path()) {
                tracing::warn!(file = %e.path().display(), error = %err, "removing an unfinished preimage file");
            }
            continue;
        }
        if name.len() != 64 {
            continue;
        }
        let done = ["claimed", "cancelled", "unclaimable"]
            .iter()
            .map(|m| dir.join(format!("{name}.{m}")))
            .filter(|m| m.exists())
            .collect::<Vec<_>>();
        let preimage = std::fs::read_to_string(e.path())
            .ok()
            .map(zeroize::Zeroizing::new)
            .and_then(|t| hex::decode(t.trim()).ok())
            .map(zeroize::Zeroizing::new)
            .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
            .map(Preimage::from_bytes)
            .filter(|p| hex::encode(p.hashlock().0) == name);
        let Some(preimage) = preimage else {
            tracing::warn!(file = %e.path().display(), "an unreadable preimage file of ours: left as it is");
            continue;
        };
        let moved = node.keep_own_preimage(&preimage).and_then(|()| {
            if done.is_empty() {
                Ok(())
            } else {
                node.settle_own(&preimage.hashlock())
            }
        });
        match moved {
            Ok(()) => {
                for f in done.iter().chain([&e.path()]) {
                    if let Err(err) = std::fs::remove_file(f) {
                        tracing::warn!(file = %f.display(), error = %err, "removing a preimage file moved into the node's store");
                    }
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "moving a preimage of ours into the node's store")
            }
        }
    }
}

/// Claims every held payment to one of our own invoices; returns the hashes claimed. Clear
/// preimage files of earlier builds still in `dir` (their move at start failed) are moved into
/// the node's store first, so that their payments are claimed too.
pub(crate) async fn claim_own(node: &LnNode, dir: &Path) -> Vec<Hashlock> {
    seal_clear_preimages(node, dir);
    let mut claimed = Vec::new();
    let own = match node.own_preimages() {
        Ok(own) => own,
        Err(e) => {
            tracing::warn!(error = %e, "reading our own invoices");
            return claimed;
        }
    };
    for preimage in own {
        let hashlock = preimage.hashlock();
        match node.held_payment(&hashlock) {
            Ok(Some(_)) => {}
            // Unpaid: once no payment to it can arrive any more, it is settled (the claimer
            // no longer reads it at every tick).
            Ok(None) => {
                match node.own_invoice_lapsed(&hashlock).await {
                    Ok(true) => {
                        settle(node, &hashlock);
                        tracing::info!(payment_hash = %hex::encode(hashlock.0), "an invoice of ours lapsed unpaid");
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "reading whether an invoice of ours lapsed")
                    }
                }
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading held payments");
                continue;
            }
        }
        match node.claim(&preimage).await {
            Ok(()) => {
                settle(node, &hashlock);
                tracing::info!(payment_hash = %hex::encode(hashlock.0), "claimed a payment to our invoice");
                claimed.push(hashlock);
            }
            Err(e) => {
                tracing::warn!(
                    payment_hash = %hex::encode(hashlock.0),
                    error = %e,
                    "claiming a payment to our invoice"
                );
                // Past its deadline or failed back: trying again every tick changes nothing.
                if !e.is_transient() {
                    settle(node, &hashlock);
                }
            }
        }
    }
    claimed
}

/// Marks our invoice of `hashlock` settled (claimed, cancelled, unclaimable): the claimer
/// skips it from then on.
fn settle(node: &LnNode, hashlock: &Hashlock) {
    if let Err(e) = node.settle_own(hashlock) {
        tracing::warn!(error = %e, "marking an invoice of ours settled");
    }
}

async fn claim(node: &LnNode, preimage: &str) -> Result<Value, LnCliError> {
    let preimage = zeroize::Zeroizing::new(hex::decode(preimage.trim()).unwrap_or_default());
    let preimage = <[u8; 32]>::try_from(preimage.as_slice())
        .ok()
        .map(Preimage::from_bytes)
        .ok_or_else(|| LnCliError::BadArgument("the preimage is not 64 hex digits".into()))?;
    let hashlock = preimage.hashlock();
    let held = node
        .held_payment(&hashlock)
        .map_err(node_err)?
        .ok_or_else(|| {
            LnCliError::Node(format!(
                "no payment held for {} (yet)",
                hex::encode(hashlock.0)
            ))
        })?;
    node.claim(&preimage).await.map_err(node_err)?;
    Ok(json!({
        "payment_hash": hex::encode(hashlock.0),
        "amount_msat": held.amount_msat,
        "claimed": true,
    }))
}

fn cancel(node: &LnNode, hash: &str) -> Result<Value, LnCliError> {
    let hashlock = parse_hash(hash)?;
    let own = node.is_own_invoice(&hashlock).map_err(node_err)?;
    node.fail_back(&hashlock).map_err(node_err)?;
    if own {
        settle(node, &hashlock);
    }
    Ok(json!({
        "payment_hash": hex::encode(hashlock.0),
        "failed_back": true,
    }))
}

fn invoice(
    node: &LnNode,
    ctx: &Ctx,
    amount_sats: u64,
    hash: Option<&str>,
    expiry_secs: u32,
    cltv: u16,
) -> Result<Value, LnCliError> {
    if amount_sats == 0 {
        return Err(LnCliError::BadArgument("--amount must be above 0".into()));
    }
    let amount_msat = amount_sats
        .checked_mul(1000)
        .ok_or_else(|| LnCliError::BadArgument("--amount too large".into()))?;
    let (hashlock, auto_claim) = match hash {
        Some(h) => (parse_hash(h)?, false),
        None => {
            let preimage =
                Preimage::random().map_err(|e| LnCliError::Node(format!("no randomness: {e}")))?;
            node.keep_own_invoice(&preimage, expiry_secs)
                .map_err(node_err)?;
            (preimage.hashlock(), true)
        }
    };
    // `route_hints`: how many of our channels' peers a payer with no channel to us can pay
    // through. LDK chooses a BOLT11 invoice's hints, so that count is read back from it.
    let (text, kind, route_hints) = if has_bolt11(ctx.chain) {
        let inv = node
            .bolt11_hold_invoice(hashlock, amount_msat, expiry_secs, cltv, "xswap")
            .map_err(node_err)?;
        let hints = parse_target(&inv, ctx)?.route_hints.len();
        (inv, "bolt11", hints)
    } else {
        let secret = node
            .hold_invoice(hashlock, amount_msat, expiry_secs, cltv)
            .map_err(node_err)?;
        let target = PaymentTarget {
            payee: node.node_id(),
            hashlock,
            payment_secret: secret,
            amount_msat,
            final_cltv_delta: u32::from(cltv),
            route_hints: node.route_hints(),
        };
        (target.to_line(ctx.chain), "line", target.route_hints.len())
    };
    Ok(json!({
        "invoice": text,
        "kind": kind,
        "route_hints": route_hints,
        "payment_hash": hex::encode(hashlock.0),
        "amount_sats": amount_sats,
        "expiry_secs": expiry_secs,
        "auto_claim": auto_claim,
    }))
}

/// Reads a BOLT11 invoice or a payment line.
pub fn parse_target(s: &str, ctx: &Ctx) -> Result<PaymentTarget, LnCliError> {
    let s = s.trim();
    let parsed = if s.starts_with(LINE_PREFIX) {
        PaymentTarget::from_line(s, ctx.chain)
    } else {
        PaymentTarget::from_bolt11(s, ctx.chain)
    };
    parsed.map_err(|e| LnCliError::BadArgument(e.to_string()))
}

async fn pay(node: &LnNode, ctx: &Ctx, target: &str, wait_secs: u64) -> Result<Value, LnCliError> {
    let target = parse_target(target, ctx)?;
    let hash = hex::encode(target.hashlock.0);
    let paid = |preimage: &Preimage, fee_msat: Option<u64>, already: bool| {
        json!({
            "payment_hash": hash,
            "payee": target.payee.to_string(),
            "amount_msat": target.amount_msat,
            "fee_msat": fee_msat,
            "already_paid": already,
            "preimage": hex::encode(preimage.as_bytes()),
        })
    };
    // Paid before (this invoice's payment succeeded): the same answer, nothing sent again.
    if let Some(preimage) = node.preimage_for(&target.hashlock).map_err(node_err)? {
        return Ok(paid(&preimage, None, true));
    }
    // A node just started needs its peers back before a channel is usable: one to the payee,
    // or to a node that the payee's route hints say forwards to it.
    let first_hops: Vec<[u8; 33]> = std::iter::once(target.payee.serialize())
        .chain(target.route_hints.iter().map(|h| h.src_node_id.0))
        .collect();
    wait_until(20, || {
        node.channels()
            .iter()
            .any(|c| c.usable && first_hops.contains(&c.counterparty.serialize()))
    })
    .await;
    let mut rx = node.subscribe();
    // The payment id comes from the payment hash (tagged apart from swaps' ids): paying the
    // same invoice again is refused by LDK as a duplicate instead of paying twice.
    let id = ln_adapter::rail::invoice_payment_id(&target.hashlock);
    node.pay(&target, id)
        .map_err(|e| LnCliError::PaymentFailed {
            payment_hash: hash.clone(),
            reason: e.to_string(),
        })?;
    let outcome = wait_event(&mut rx, wait_secs, |e| match e {
        LnEvent::PaymentSent {
            hashlock,
            preimage,
            fee_paid_msat,
            ..
        } if *hashlock == target.hashlock => Some(Ok((preimage.clone(), *fee_paid_msat))),
        LnEvent::PaymentFailed {
            payment_id, reason, ..
        } if *payment_id == id => Some(Err(reason.clone())),
        _ => None,
    })
    .await;
    match outcome {
        Some(Ok((preimage, fee))) => Ok(paid(&preimage, Some(fee.unwrap_or(0)), false)),
        Some(Err(reason)) => Err(LnCliError::PaymentFailed {
            payment_hash: hash,
            reason,
        }),
        None => Err(LnCliError::PaymentPending {
            payment_hash: hash,
            secs: wait_secs,
        }),
    }
}
