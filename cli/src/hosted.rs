//! The installation's channel rails, run inside the process that runs swaps on them
//! (`xswap maker`, `xswap take`, `xswap resume`): the Lightning node when `[ln]` is
//! configured (this process takes the node's lock and answers `xswap ln ...` on its control
//! socket, as `xswap ln serve` does) and the Ethereum channel node when `[channel]` is
//! configured (peers served on `[channel] listen` when set, peers we know the address of
//! dialed, the watcher enforcing our channel claims).
//!
//! Before a swap is agreed, [`check_take`] and [`check_offer`] say exactly which channel to
//! open when none can carry a leg ([`NoChannel`]), before anything is locked.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::B256;
use eth_adapter::channel::Side;
use eth_channel::{ChannelRail, ChannelStore, RpcChain};
use ln_adapter::{LnNode, LnRail};
use swap_core::{Asset, Rail, RailKind};
use swap_net::{Offer, OfferLeg, PeerKey};
use tokio::task::JoinHandle;

use crate::amounts::format_amount;
use crate::config::Config;
use crate::{channel, ln};

mod contact;
pub use contact::with_maker_contact;

/// No channel can carry a leg: what to open (nothing was agreed or locked).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NoChannel {
    /// A rail the offer names is not configured here.
    #[error("the offer's {leg} leg is {rail}, which this installation does not run: {fix}")]
    NotConfigured {
        /// `sell` or `buy`.
        leg: &'static str,
        /// The rail.
        rail: &'static str,
        /// What to add to config.toml.
        fix: &'static str,
    },
    /// We pay over Lightning and no channel can send the amount.
    #[error(
        "no Lightning channel with {need_sat} sat outbound{have}: open one to the maker's \
         Lightning node: run `xswap ln open --peer {maker} --amount {suggest_sat}`{ask}, mine \
         until `xswap ln list` shows it usable, then take again"
    )]
    LightningOut {
        /// What the leg pays, in sats.
        need_sat: u64,
        /// What our channels can send now, when we have any.
        have: String,
        /// A capacity that carries it (the channel reserve held back included).
        suggest_sat: u64,
        /// The maker's node, `NODEID@HOST:PORT` as it told us ([`with_maker_contact`]), or
        /// that placeholder.
        maker: String,
        /// Where to find the maker's node when it did not say.
        ask: &'static str,
    },
    /// The maker pays us over Lightning and no channel of ours can receive the amount.
    #[error(
        "no Lightning channel that can receive {need_sat} sat{have}: the maker pays over \
         Lightning, so it needs a channel to you with that much on its side: ask it to run \
         `xswap ln open --peer {me} --amount {suggest_sat}`, then take again"
    )]
    LightningIn {
        /// What the leg pays, in sats.
        need_sat: u64,
        /// What our channels can receive now, when we have any.
        have: String,
        /// Our node, `NODEID@HOST:PORT`.
        me: String,
        /// A capacity that carries it.
        suggest_sat: u64,
    },
    /// The maker's offer pays over Lightning and no channel can send its smallest amount.
    #[error(
        "no Lightning channel that can send {need_sat} sat (the offer's smallest payment): \
         run `xswap ln open --peer NODEID@HOST:PORT --amount {suggest_sat}` to your takers' \
         nodes (their `xswap ln info`), mine until `xswap ln list` shows it usable, then \
         publish the offer again"
    )]
    MakerLightningOut {
        /// The offer's smallest payment, in sats.
        need_sat: u64,
        /// A capacity that carries it.
        suggest_sat: u64,
    },
    /// We pay in an Ethereum channel with the maker and none holds the amount on our side.
    #[error(
        "no Ethereum channel with the maker {peer} holding {need} on your side{have}: open a \
         channel with `xswap channel open --peer {maker} --peer-address {maker_address} \
         --amount {need_arg}`{ask}, or `xswap channel deposit` into yours, then take again"
    )]
    EthOut {
        /// The maker's transport key.
        peer: String,
        /// The maker's channel node, `KEY@HOST:PORT` as it told us ([`with_maker_contact`]),
        /// or with a placeholder for where it listens.
        maker: String,
        /// The maker's Ethereum address as it told us, or a placeholder.
        maker_address: String,
        /// Where to find what the maker did not say.
        ask: &'static str,
        /// The amount, as people read it.
        need: String,
        /// The amount, as `--amount` takes it (and for a token, `--token` naming it).
        need_arg: String,
        /// What our channels with it hold, when we have any.
        have: String,
    },
    /// The maker pays us in an Ethereum channel and none holds the amount on its side.
    #[error(
        "no Ethereum channel with the maker {peer} holding {need} on its side{have}: the maker \
         pays in the channel, so its side must hold it: ask it to open a channel with `xswap \
         channel open --peer {me} --peer-address {my_address} --amount {need_arg}` (or to \
         deposit into yours), then take again"
    )]
    EthIn {
        /// The maker's transport key.
        peer: String,
        /// The amount, as people read it.
        need: String,
        /// The amount, as `--amount` takes it (and for a token, `--token` naming it).
        need_arg: String,
        /// What the maker's side of our channels with it holds, when we have any.
        have: String,
        /// Our channel node, `KEY@HOST:PORT` (HOST:PORT our `[channel] listen`).
        me: String,
        /// Our Ethereum address.
        my_address: String,
    },
    /// The maker's offer pays in an Ethereum channel and none holds its smallest amount.
    #[error(
        "no Ethereum channel holding {need} on your side (the offer's smallest payment): open a \
         channel with `xswap channel open --peer KEY@HOST:PORT --peer-address 0xTAKER --amount \
         {need_arg}` to a taker (its `xswap channel info`), or `xswap channel deposit` into one, \
         then publish the offer again"
    )]
    MakerEthOut {
        /// The amount, as people read it.
        need: String,
        /// The amount, as `--amount` takes it (and for a token, `--token` naming it).
        need_arg: String,
    },
}

/// Where the taker finds the maker's Lightning node when the maker did not say.
const ASK_MAKER_NODE: &str = " (the maker's `xswap ln info` gives NODEID@HOST:PORT)";

/// Where the taker finds the maker's channel node when the maker did not say.
const ASK_MAKER_CHANNEL: &str =
    " (the maker's `xswap channel info` gives its [channel] listen address and Ethereum address)";

/// `xswap channel open`'s arguments for `amount` of `asset`: the amount in base units, and for a
/// token, the token (without it, the channel would hold ETH).
fn open_args(amount: u128, asset: &Asset) -> String {
    match asset {
        Asset::Erc20 { token, decimals } => format!(
            "{amount} --token erc20:0x{}:{decimals}",
            hex::encode(token.0)
        ),
        _ => amount.to_string(),
    }
}

/// The channel rails this process runs, and what keeps them running.
pub struct Hosted {
    /// The rails to register in the engine (beside the on-chain ones).
    pub rails: Vec<Arc<dyn Rail>>,
    /// The Lightning node, when `[ln]` is configured.
    pub ln: Option<Arc<LnNode>>,
    /// The Ethereum channel node and rail, when `[channel]` is configured.
    pub chan: Option<(Arc<channel::Ctx>, ChannelRail)>,
    running: Option<ln::Running>,
    hosting: Option<ln::Hosting>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Hosted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hosted")
            .field("rails", &self.rails.len())
            .field("ln", &self.ln.as_ref().map(|n| n.node_id()))
            .finish_non_exhaustive()
    }
}

impl Hosted {
    /// Tells `engine` where our nodes take channels, for takers that ask: the Lightning
    /// node's `NODEID@HOST:PORT`, and the channel node's `KEY@HOST:PORT` (its `[channel]
    /// listen`, when set) with our Ethereum address.
    pub fn tell_contacts(&self, engine: &swap_engine::Engine) {
        for rail in self.rails.iter().map(|r| r.params().rail()) {
            let contact = match rail.kind {
                RailKind::Lightning => self.ln.as_ref().map(|node| swap_engine::Contact {
                    address: format!("{}@{}", node.node_id(), node.listen_addr()),
                    account: None,
                }),
                RailKind::EvmChannel => self.chan.as_ref().and_then(|(ctx, _)| {
                    let listen = ctx.section.listen.as_ref()?;
                    Some(swap_engine::Contact {
                        address: format!("{}@{listen}", ctx.node.public()),
                        account: Some(format!("{:#x}", ctx.signer.address())),
                    })
                }),
                _ => None,
            };
            if let Some(c) = contact {
                engine.set_contact(rail, c);
            }
        }
    }
}

/// Starts the channel rails `cfg` configures for the installation in `data_dir` (none: an
/// empty [`Hosted`]). Fails with [`ln::LnCliError::NodeRunning`] when another process runs
/// the Lightning node.
pub async fn host(data_dir: &Path, cfg: &Config) -> anyhow::Result<Hosted> {
    host_only(data_dir, cfg, &[RailKind::Lightning, RailKind::EvmChannel]).await
}

/// [`host`] for the channel rails among `kinds` only (a take of an on-chain offer runs no
/// Lightning node, so it does not compete with a running `xswap ln serve`).
pub async fn host_only(
    data_dir: &Path,
    cfg: &Config,
    kinds: &[RailKind],
) -> anyhow::Result<Hosted> {
    let network = cfg.eth_chain()?.network;
    let mut h = Hosted {
        rails: Vec::new(),
        ln: None,
        chan: None,
        running: None,
        hosting: None,
        tasks: Vec::new(),
    };
    if cfg.ln.is_some() && kinds.contains(&RailKind::Lightning) {
        let running = ln::start(data_dir, cfg).await?;
        let node = Arc::clone(&running.node);
        let ctx = Arc::new(ln::Ctx::load(data_dir, cfg)?);
        match ln::host(Arc::clone(&node), ctx) {
            Ok(hosting) => h.hosting = Some(hosting),
            Err(e) => {
                running.stop().await?;
                return Err(e.into());
            }
        }
        h.running = Some(running);
        h.rails
            .push(Arc::new(LnRail::new(Arc::clone(&node))) as Arc<dyn Rail>);
        h.ln = Some(node);
    }
    if cfg.channel.is_some() && kinds.contains(&RailKind::EvmChannel) {
        let ctx = match channel::Ctx::open(data_dir).await {
            Ok(c) => Arc::new(c),
            Err(e) => {
                h.stop().await;
                return Err(e);
            }
        };
        let rail = ChannelRail::new(
            ctx.node.clone(),
            ctx.store.clone() as Arc<dyn ChannelStore>,
            RpcChain::new(ctx.provider.clone(), ctx.at),
            ctx.signer.address(),
            network,
        );
        for id in ctx.store.channel_ids()? {
            rail.add_channel(id);
        }
        let listen = ctx.section.listen.clone();
        let (c, r) = (Arc::clone(&ctx), rail.clone());
        h.tasks.push(tokio::spawn(async move {
            let tick = channel::args::tick();
            if let Err(e) = channel::serve_with(c, listen.as_deref(), tick, Some(r)).await {
                tracing::error!(error = %format!("{e:#}"), "channel service stopped");
            }
        }));
        h.tasks.push(tokio::spawn(redial(Arc::clone(&ctx))));
        h.rails.push(Arc::new(rail.clone()) as Arc<dyn Rail>);
        h.chan = Some((ctx, rail));
    }
    Ok(h)
}

/// Keeps the peers of our channels whose address we know connected (every 2 s).
async fn redial(ctx: Arc<channel::Ctx>) {
    loop {
        if let Ok(ids) = ctx.store.channel_ids() {
            for id in ids {
                let Ok(Some(peer)) = ctx.store.peer(id) else {
                    continue;
                };
                if peer.addr.is_none() || ctx.node.connected(PeerKey(peer.key)) {
                    continue;
                }
                if let Err(channel::DialError::Unreachable(e)) = ctx.dial(id, None).await {
                    tracing::debug!(channel = %id, error = %e, "channel peer not reachable yet");
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

impl Hosted {
    /// Waits (up to `secs`) until no Lightning HTLC is pending in our channels and no
    /// Ethereum channel update of ours awaits its countersignature: the peer's claims of what
    /// we paid settle with us online, off chain.
    pub async fn settle(&self, secs: u64) {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(secs) {
            let ln_busy = self.ln.as_ref().is_some_and(|n| {
                n.channels()
                    .iter()
                    .any(|c| !c.inbound_htlcs.is_empty() || c.outbound_htlcs > 0)
            });
            let chan_busy = self.chan.as_ref().is_some_and(|(ctx, _)| {
                ctx.store
                    .channel_ids()
                    .unwrap_or_default()
                    .iter()
                    .any(|id| {
                        ctx.store
                            .load(*id)
                            .ok()
                            .flatten()
                            .is_some_and(|s| s.pending.is_some())
                    })
            });
            if !ln_busy && !chan_busy {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stops the channel service and the Lightning node (its state persisted, then its lock
    /// released).
    pub async fn stop(self) {
        // The channel node first: from here it proposes and writes nothing (what is pending
        // stays in its store for the next start), and its callers are answered "stopped".
        if let Some((ctx, _)) = &self.chan {
            ctx.node.shutdown();
        }
        for t in &self.tasks {
            t.abort();
        }
        if let Some(h) = self.hosting {
            h.stop();
        }
        if let Some(r) = self.running {
            if let Err(e) = r.stop().await {
                tracing::warn!(error = %e, "stopping the Lightning node");
            }
        }
    }
}

fn sats_of(leg_asset: &Asset, units: u128) -> u64 {
    debug_assert!(matches!(leg_asset, Asset::Btc | Asset::Ltc));
    u64::try_from(units).unwrap_or(u64::MAX)
}

/// A capacity whose sendable part carries `sats` (LDK holds 1 % back as the channel reserve;
/// a margin for the commitment fee).
fn capacity_for(sats: u64) -> u64 {
    (sats.saturating_mul(102) / 100).saturating_add(20_000)
}

fn not_configured(leg: &'static str, kind: RailKind) -> NoChannel {
    let (rail, fix) = match kind {
        RailKind::Lightning => (
            "Lightning",
            "add an `[ln]` section to config.toml (`xswap ln` runs the node)",
        ),
        _ => (
            "an Ethereum channel",
            "add a `[channel]` section with the Channel contract to config.toml",
        ),
    };
    NoChannel::NotConfigured { leg, rail, fix }
}

/// The rail `kind` of the offer's `leg` (`sell` or `buy`) is one this installation runs.
pub fn rail_configured(cfg: &Config, leg: &'static str, kind: RailKind) -> anyhow::Result<()> {
    let ok = match kind {
        RailKind::Lightning => cfg.ln.is_some(),
        RailKind::EvmChannel => cfg.channel.is_some(),
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(not_configured(leg, kind).into())
    }
}

/// What each of our Ethereum channels with `peer` in `asset` holds: (channel, ours, theirs).
fn eth_channels_with(
    ctx: &channel::Ctx,
    peer: PeerKey,
    asset: &Asset,
) -> anyhow::Result<Vec<(B256, u128, u128)>> {
    let token = match asset {
        Asset::Eth => alloy::primitives::Address::ZERO,
        Asset::Erc20 { token, .. } => alloy::primitives::Address::from(token.0),
        _ => return Ok(Vec::new()),
    };
    let mut out = Vec::new();
    for id in ctx.store.channel_ids()? {
        let Some(p) = ctx.store.peer(id)? else {
            continue;
        };
        let Some(s) = ctx.store.load(id)? else {
            continue;
        };
        let st = &s.latest.state;
        if p.key != peer.0 || s.chan.params.token != token || st.isFinal {
            continue;
        }
        let (ours, theirs) = match s.me {
            Side::A => (st.balanceA, st.balanceB),
            Side::B => (st.balanceB, st.balanceA),
        };
        out.push((id, ours, theirs));
    }
    Ok(out)
}

fn have_text(rows: &[(B256, u128)], asset: &Asset) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = rows
        .iter()
        .map(|(id, v)| format!("{id:#x}: {}", format_amount(*v, asset)))
        .collect();
    format!(" (yours: {})", parts.join(", "))
}

/// How long a take waits for a channel to become usable (its peer reconnecting after this
/// process started the node).
const USABLE_WAIT: Duration = Duration::from_secs(20);

/// Before a take: a channel of ours can carry each channel leg of `offer` for `give` (what
/// we pay) and `get` (what we receive), else what to open. The Lightning node's channels
/// get `USABLE_WAIT` to come up (its peers reconnect when it starts).
pub async fn check_take(
    hosted: &Hosted,
    offer: &Offer,
    give: u128,
    get: u128,
) -> anyhow::Result<()> {
    // We pay on the offer's buy leg, we receive on its sell leg.
    for (leg, name, amount, we_pay) in [
        (&offer.buy, "buy", give, true),
        (&offer.sell, "sell", get, false),
    ] {
        match leg.rail {
            RailKind::Lightning => {
                let Some(node) = &hosted.ln else {
                    return Err(not_configured(name, leg.rail).into());
                };
                let need = sats_of(&leg.asset, amount);
                let started = Instant::now();
                loop {
                    let rows: Vec<(u64, u64, String)> = node
                        .channels()
                        .iter()
                        .filter(|c| c.usable)
                        .map(|c| {
                            (
                                c.sendable_msat / 1_000,
                                c.inbound_msat / 1_000,
                                c.counterparty.to_string(),
                            )
                        })
                        .collect();
                    let fits = rows
                        .iter()
                        .any(|(out, inb, _)| if we_pay { *out >= need } else { *inb >= need });
                    if fits {
                        break;
                    }
                    // Waiting helps only while a channel is not usable yet (its peer
                    // reconnecting).
                    let coming = node.channels().iter().any(|c| !c.usable);
                    if !coming || started.elapsed() >= USABLE_WAIT {
                        let have = if rows.is_empty() {
                            String::new()
                        } else {
                            let parts: Vec<String> = rows
                                .iter()
                                .map(|(o, i, p)| {
                                    if we_pay {
                                        format!("to {p}: {o} sat")
                                    } else {
                                        format!("from {p}: {i} sat")
                                    }
                                })
                                .collect();
                            format!(" (your usable channels: {})", parts.join(", "))
                        };
                        return Err(anyhow::Error::from(if we_pay {
                            NoChannel::LightningOut {
                                need_sat: need,
                                have,
                                suggest_sat: capacity_for(need),
                                maker: "NODEID@HOST:PORT".into(),
                                ask: ASK_MAKER_NODE,
                            }
                        } else {
                            NoChannel::LightningIn {
                                need_sat: need,
                                have,
                                me: format!("{}@{}", node.node_id(), node.listen_addr()),
                                suggest_sat: capacity_for(need),
                            }
                        }));
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
            RailKind::EvmChannel => {
                let Some((ctx, _)) = &hosted.chan else {
                    return Err(not_configured(name, leg.rail).into());
                };
                let rows = eth_channels_with(ctx, offer.maker, &leg.asset).unwrap_or_default();
                let ok = rows
                    .iter()
                    .any(|(_, ours, theirs)| if we_pay { *ours } else { *theirs } >= amount);
                if ok {
                    // The maker's node dials ours when this process starts serving: the swap
                    // waits for that connection (as long as a Lightning channel's), so that its
                    // first channel update is not proposed while the peer is away. Past the
                    // wait the take goes on (updates are sent again on connection).
                    let started = Instant::now();
                    while !ctx.node.connected(offer.maker) && started.elapsed() < USABLE_WAIT {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    continue;
                }
                let side: Vec<(B256, u128)> = rows
                    .iter()
                    .map(|(id, o, t)| (*id, if we_pay { *o } else { *t }))
                    .collect();
                let (need, need_arg, have) = (
                    format_amount(amount, &leg.asset),
                    open_args(amount, &leg.asset),
                    have_text(&side, &leg.asset),
                );
                let peer = hex::encode(offer.maker.0);
                return Err(anyhow::Error::from(if we_pay {
                    NoChannel::EthOut {
                        maker: format!("{peer}@HOST:PORT"),
                        peer,
                        maker_address: "0xMAKER".into(),
                        ask: ASK_MAKER_CHANNEL,
                        need,
                        need_arg,
                        have,
                    }
                } else {
                    NoChannel::EthIn {
                        peer,
                        need,
                        need_arg,
                        have,
                        me: format!(
                            "{}@{}",
                            ctx.node.public(),
                            ctx.section.listen.as_deref().unwrap_or("HOST:PORT")
                        ),
                        my_address: format!("{:#x}", ctx.signer.address()),
                    }
                }));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Before an offer is published: when the maker pays on a channel rail (the offer's sell
/// leg), a channel of ours can carry at least its smallest payment, else what to open. The
/// Lightning channels are read from the process that runs the node (a running `xswap maker`
/// or `xswap ln serve`), else from the node started for the check.
pub async fn check_offer(data_dir: &Path, cfg: &Config, sell: &OfferLeg) -> anyhow::Result<()> {
    let min = sell.min.base_units();
    match sell.rail {
        RailKind::Lightning => {
            if cfg.ln.is_none() {
                return Err(not_configured("sell", sell.rail).into());
            }
            let need = sats_of(&sell.asset, min);
            let rows = ln::ask_or_run(data_dir, cfg, ln::cmd::Request::List).await?;
            let fits = rows.as_array().into_iter().flatten().any(|c| {
                c["usable"] == true && c["sendable_msat"].as_u64().unwrap_or(0) / 1_000 >= need
            });
            if !fits {
                return Err(NoChannel::MakerLightningOut {
                    need_sat: need,
                    suggest_sat: capacity_for(need),
                }
                .into());
            }
        }
        RailKind::EvmChannel => {
            if cfg.channel.is_none() {
                return Err(not_configured("sell", sell.rail).into());
            }
            let ctx = channel::Ctx::open(data_dir).await?;
            let token = match &sell.asset {
                Asset::Erc20 { token, .. } => alloy::primitives::Address::from(token.0),
                _ => alloy::primitives::Address::ZERO,
            };
            let mut fits = false;
            for id in ctx.store.channel_ids()? {
                if let Some(s) = ctx.store.load(id)? {
                    let st = &s.latest.state;
                    let ours = match s.me {
                        Side::A => st.balanceA,
                        Side::B => st.balanceB,
                    };
                    fits |= s.chan.params.token == token && !st.isFinal && ours >= min;
                }
            }
            if !fits {
                return Err(NoChannel::MakerEthOut {
                    need: format_amount(min, &sell.asset),
                    need_arg: open_args(min, &sell.asset),
                }
                .into());
            }
        }
        _ => {}
    }
    Ok(())
}

/// The rail and, for a channel leg, the channel of `leg` in `record`, for `xswap list` and
/// `show`: `{"rail": "lightning", "peer": NODEID}` or `{"rail": "eth-channel", "channel":
/// 0x..., "peer": 0xADDRESS}` (the other party), `{"rail": "onchain"}`.
pub fn leg_rail(record: &swap_core::SwapRecord, leg: swap_core::Leg) -> serde_json::Value {
    use swap_core::{Account, RailBody, Role};
    let t = record.terms.leg(leg);
    let ours_to_send = matches!(
        (record.role, leg),
        (Role::Initiator, swap_core::Leg::X) | (Role::Responder, swap_core::Leg::Y)
    );
    let other = if ours_to_send {
        &t.recipient
    } else {
        &t.sender
    };
    let account = |a: &Account| match a {
        Account::PublicKey(k) => hex::encode(k.0),
        Account::Evm(a) => format!("0x{}", hex::encode(a.0)),
    };
    let kind = t.params.kind;
    let mut v = serde_json::json!({ "rail": rail_name(kind) });
    match (kind, t.rail_data.as_ref().map(|d| &d.body)) {
        (RailKind::EvmChannel, Some(RailBody::EvmChannel { channel_id })) => {
            v["channel"] = format!("0x{}", hex::encode(channel_id)).into();
            v["peer"] = account(other).into();
        }
        (RailKind::Lightning, _) => {
            v["peer"] = account(other).into();
        }
        _ => {}
    }
    v
}

/// A rail as the CLI names it (`--sell-rail`, `xswap list`).
pub fn rail_name(kind: RailKind) -> &'static str {
    match kind {
        RailKind::Lightning => "lightning",
        RailKind::EvmChannel => "eth-channel",
        _ => "onchain",
    }
}

/// A rail from its CLI name: `onchain`, `ln` / `lightning`, `eth-channel` / `channel`.
pub fn parse_rail(s: &str) -> anyhow::Result<RailKind> {
    Ok(match s.trim().to_ascii_lowercase().as_str() {
        "onchain" | "on-chain" => RailKind::OnChain,
        "ln" | "lightning" => RailKind::Lightning,
        "eth-channel" | "channel" => RailKind::EvmChannel,
        other => anyhow::bail!("rail {other:?}: use onchain, ln or eth-channel"),
    })
}

/// Whether `asset` can travel on `kind`: Lightning carries the Bitcoin-family coin, an
/// Ethereum channel ETH or an ERC-20.
pub fn rail_carries(kind: RailKind, asset: &Asset) -> bool {
    match kind {
        RailKind::Lightning => matches!(asset, Asset::Btc | Asset::Ltc),
        RailKind::EvmChannel => matches!(asset, Asset::Eth | Asset::Erc20 { .. }),
        _ => true,
    }
}
