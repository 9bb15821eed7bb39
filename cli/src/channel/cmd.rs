//! The `xswap channel` subcommands. Each returns the JSON it reports (printed as is with
//! `--json`, as lines otherwise, by the caller).

use alloy::primitives::{Address, B256, U256};
use alloy::providers::Provider;
use anyhow::{anyhow, bail, Context};
use eth_adapter::bindings::{Channel, IERC20Permit};
use eth_adapter::channel::{ChannelRef, Params, Side};
use eth_adapter::scrub_urls;
use eth_channel::msg::UpdateKind;
use eth_channel::{ChainView, ChannelStore, Party, RpcChain, SessionError};
use serde_json::{json, Value};
use swap_core::{Asset, EvmAddress};
use swap_net::PeerKey;

use super::{ChannelCliError, Ctx, DialError};
use crate::amounts::{format_amount, parse_amount};

/// How long a one-shot command waits for a deposit to be final on chain.
const FINAL_WAIT: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// `KEY@HOST:PORT` (the peer's transport key, 64 hex digits, and where it listens).
fn parse_peer(s: &str) -> anyhow::Result<(PeerKey, String)> {
    let (key, addr) = s
        .split_once('@')
        .ok_or_else(|| anyhow!("--peer must be KEY@HOST:PORT (its `xswap channel info`)"))?;
    let bytes = hex::decode(key.trim_start_matches("0x")).context("--peer key: not hex")?;
    let key: [u8; 32] = bytes
        .try_into()
        .map_err(|_| anyhow!("--peer key: 64 hex digits expected"))?;
    if addr.is_empty() {
        bail!("--peer must be KEY@HOST:PORT");
    }
    Ok((PeerKey(key), addr.to_owned()))
}

/// The asset of `--token` (`eth`, default, or `erc20:0xTOKEN:DECIMALS`) and its address.
fn parse_token(s: Option<&str>) -> anyhow::Result<(Asset, Address)> {
    match s.map(|s| s.split(':').collect::<Vec<_>>()).as_deref() {
        None | Some(["eth"]) => Ok((Asset::Eth, Address::ZERO)),
        Some(["erc20", token, decimals]) => {
            let addr: Address = token.parse().context("--token address")?;
            if addr == Address::ZERO {
                bail!("--token: the zero address is not a token");
            }
            Ok((
                Asset::Erc20 {
                    token: EvmAddress(addr.into()),
                    decimals: decimals.parse().context("--token decimals")?,
                },
                addr,
            ))
        }
        _ => bail!("--token must be eth or erc20:0xTOKEN:DECIMALS"),
    }
}

/// The asset of a channel's token (an ERC-20's decimals read from it).
async fn asset_of(ctx: &Ctx, token: Address) -> anyhow::Result<Asset> {
    if token == Address::ZERO {
        return Ok(Asset::Eth);
    }
    let decimals = IERC20Permit::new(token, &ctx.provider)
        .decimals()
        .call()
        .await
        .map_err(|e| {
            anyhow!(
                "reading the token's decimals: {}",
                scrub_urls(&e.to_string())
            )
        })?;
    Ok(Asset::Erc20 {
        token: EvmAddress(token.into()),
        decimals,
    })
}

fn token_text(token: Address) -> String {
    if token == Address::ZERO {
        "eth".into()
    } else {
        format!("{token:#x}")
    }
}

/// Sends `call` from our account, waits for its receipt: its hash (a revert is an error).
async fn send<C: alloy::sol_types::SolCall>(
    call: alloy::contract::SolCallBuilder<&alloy::providers::DynProvider, C>,
    what: &'static str,
) -> anyhow::Result<B256> {
    let pending = call
        .send()
        .await
        .map_err(|e| anyhow!("sending {what}: {}", scrub_urls(&e.to_string())))?;
    let tx = *pending.tx_hash();
    let r = pending
        .get_receipt()
        .await
        .map_err(|e| anyhow!("waiting for {what} ({tx}): {}", scrub_urls(&e.to_string())))?;
    if !r.status() {
        return Err(ChannelCliError::Reverted { what, tx }.into());
    }
    Ok(tx)
}

/// Deposits `amount` of `chan`'s token for us (approving an ERC-20 first): the tx hashes.
async fn deposit_on_chain(ctx: &Ctx, chan: &ChannelRef, amount: u128) -> anyhow::Result<Vec<B256>> {
    let c = Channel::new(ctx.contract, ctx.wallet.clone());
    let p = chan.params.clone();
    if p.token == Address::ZERO {
        return Ok(vec![
            send(c.deposit(p).value(U256::from(amount)), "deposit").await?,
        ]);
    }
    let t = IERC20Permit::new(p.token, ctx.wallet.clone());
    let approve = send(t.approve(ctx.contract, U256::from(amount)), "approve").await?;
    let dep = send(c.depositToken(p, U256::from(amount)), "depositToken").await?;
    Ok(vec![approve, dep])
}

/// Waits until `chan` is open at a final block with our deposit total at least `want`: the
/// chain's amounts.
async fn wait_final(
    ctx: &Ctx,
    chan: &ChannelRef,
    side: Side,
    want: u128,
) -> anyhow::Result<eth_adapter::channel::OnChain> {
    let view = RpcChain::new(ctx.provider.clone(), ctx.at);
    let start = std::time::Instant::now();
    let mut said = false;
    loop {
        if let Some(on) = view.open_at_final(chan).await? {
            let mine = match side {
                Side::A => on.deposit_a,
                Side::B => on.deposit_b,
            };
            if mine >= want {
                return Ok(on);
            }
        }
        if start.elapsed() > FINAL_WAIT {
            bail!(
                "the deposit is not final after {} s: run the command again later",
                FINAL_WAIT.as_secs()
            );
        }
        if !said {
            crate::say!("waiting for the deposit to be final on chain...");
            said = true;
        }
        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    }
}

fn unreachable(ctx: &Ctx, id: B256, detail: String) -> anyhow::Error {
    let version = ctx
        .node
        .with_party(id, |p| p.latest().state.version)
        .unwrap_or(0);
    let challenge_period = ctx
        .node
        .with_party(id, |p| p.channel().params.challengePeriod)
        .unwrap_or(0);
    ChannelCliError::PeerUnreachable {
        channel: id,
        version,
        challenge_period,
        detail,
    }
    .into()
}

/// Dials channel `id`'s peer and waits for a pending proposal of ours (resent on connect)
/// to be answered.
async fn ready(ctx: &Ctx, id: B256, addr: Option<&str>) -> anyhow::Result<()> {
    match ctx.dial(id, addr).await {
        Ok(_) => {}
        Err(DialError::Unreachable(d)) => return Err(unreachable(ctx, id, d)),
        Err(DialError::Other(e)) => return Err(e),
    }
    for _ in 0..150 {
        if ctx.node.with_party(id, |p| p.pending().is_none())? {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Err(unreachable(
        ctx,
        id,
        "our earlier proposal is still unanswered".into(),
    ))
}

/// Proposes `kind` on `id`, mapping a missing answer to [`ChannelCliError::PeerUnreachable`].
async fn propose(ctx: &Ctx, id: B256, kind: UpdateKind) -> anyhow::Result<u64> {
    match ctx.node.propose(id, kind).await {
        Ok(v) => Ok(v),
        Err(e @ (SessionError::NotConnected { .. } | SessionError::Timeout { .. })) => {
            Err(unreachable(ctx, id, e.to_string()))
        }
        Err(SessionError::Refused { code, text }) => {
            Err(ChannelCliError::Refused { code, text }.into())
        }
        Err(e) => Err(e.into()),
    }
}

fn hashes(txs: &[B256]) -> Value {
    txs.iter().map(|h| Value::from(format!("{h:#x}"))).collect()
}

/// `xswap channel info`: what a peer needs to open a channel with us.
pub fn info(ctx: &Ctx) -> Value {
    json!({
        "address": format!("{:#x}", ctx.signer.address()),
        "transport_key": ctx.node.public().to_string(),
        "listen": ctx.section.listen,
        "contract": format!("{:#x}", ctx.contract),
        "chain_id": ctx.chain_id,
    })
}

/// `xswap channel open`.
pub async fn open(
    ctx: &Ctx,
    peer: &str,
    peer_address: &str,
    amount: &str,
    token: Option<&str>,
) -> anyhow::Result<Value> {
    let (key, addr) = parse_peer(peer)?;
    let b: Address = peer_address.parse().context("--peer-address")?;
    let me = ctx.signer.address();
    if b == me || b == Address::ZERO {
        bail!("--peer-address must be the peer's Ethereum address (not ours, not zero)");
    }
    let (asset, token) = parse_token(token)?;
    let amount = parse_amount(amount, &asset).context("--amount")?;
    if amount == 0 {
        bail!("--amount must be positive");
    }
    // Reach the peer before any funds move.
    let dial = ctx.node.connect(addr.as_str(), key);
    match tokio::time::timeout(std::time::Duration::from_secs(15), dial).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => bail!("peer unreachable at {addr} ({e}): nothing was opened"),
        Err(_) => bail!("peer unreachable at {addr} (no answer in 15 s): nothing was opened"),
    }
    let mut salt = [0u8; 32];
    getrandom::getrandom(&mut salt).map_err(|e| anyhow!("randomness: {e}"))?;
    let chan = ChannelRef::new(
        Params {
            a: me,
            b,
            token,
            challengePeriod: ctx.section.challenge_period,
            salt: B256::from(salt),
        },
        ctx.chain_id,
        ctx.contract,
    );
    let id = chan.id();
    // Recorded first: a crash after the deposit must not lose track of the funds.
    Party::open(
        chan.clone(),
        Side::A,
        ctx.signer.clone(),
        eth_channel::Config::default(),
        amount,
        0,
        &*ctx.store,
    )?;
    ctx.store.set_peer(id, key.0, Some(&addr))?;
    // Its events start after this block (no deposit yet): where its watcher starts.
    let head = ctx
        .provider
        .get_block_number()
        .await
        .map_err(|e| anyhow!("reading the chain's head: {}", scrub_urls(&e.to_string())))?;
    ctx.store.set_open_block(id, head)?;
    let txs = deposit_on_chain(ctx, &chan, amount).await?;
    let on = wait_final(ctx, &chan, Side::A, amount).await?;
    if (on.deposit_a, on.deposit_b) != (amount, 0) {
        return Err(ChannelCliError::OnChainMismatch {
            channel: id,
            detail: format!(
                "deposits on chain {} / {}, recorded {amount} / 0: do not use it, close it with --force",
                on.deposit_a, on.deposit_b
            ),
        }
        .into());
    }
    ctx.node.add_channel(id, key)?;
    announce_to(ctx, id, Some(&addr)).await?;
    Ok(json!({
        "channel": format!("{id:#x}"),
        "token": token_text(token),
        "deposit": amount.to_string(),
        "deposit_text": format_amount(amount, &asset),
        "peer": key.to_string(),
        "peer_address": format!("{b:#x}"),
        "txs": hashes(&txs),
    }))
}

/// Announces `id` to its peer.
async fn announce_to(ctx: &Ctx, id: B256, addr: Option<&str>) -> anyhow::Result<()> {
    let res = match ctx.dial(id, addr).await {
        Ok(_) => ctx.node.announce(id).await,
        Err(DialError::Unreachable(d)) => Err(SessionError::Chain(d)),
        Err(DialError::Other(e)) => return Err(e),
    };
    match res {
        Ok(()) => Ok(()),
        Err(SessionError::Refused { code, text }) => Err(anyhow::Error::from(ChannelCliError::Refused { code, text })
            .context(format!("channel {id} is open on chain but the peer refused it; `xswap channel close {id} --force` takes the funds back"))),
        Err(e) => Err(anyhow::Error::from(e).context(format!(
            "channel {id} is open on chain and recorded, but not announced: `xswap channel announce {id}` tries again"
        ))),
    }
}

/// `xswap channel announce`.
pub async fn announce(ctx: &Ctx, id: B256, addr: Option<&str>) -> anyhow::Result<Value> {
    announce_to(ctx, id, addr).await?;
    Ok(json!({ "channel": format!("{id:#x}"), "announced": true }))
}

/// `xswap channel list`.
pub async fn list(ctx: &Ctx) -> anyhow::Result<Value> {
    let mut rows = vec![];
    for id in ctx.store.channel_ids()? {
        let Some(s) = ctx.store.load(id)? else {
            continue;
        };
        let peer = ctx.store.peer(id)?;
        let st = &s.latest.state;
        let (mine, theirs) = match s.me {
            Side::A => (st.balanceA, st.balanceB),
            Side::B => (st.balanceB, st.balanceA),
        };
        let locked: u128 = s.latest.locks.iter().map(|l| l.amount).sum();
        let on = Channel::new(ctx.contract, &ctx.provider)
            .status(id)
            .call()
            .await;
        let on_chain = match on {
            Ok(o) => json!({
                "status": match o.st { 0 => "none", 1 => "open", 2 => "closing", 3 => "settled", _ => "unknown" },
                "deposit_a": o.depositA.to_string(),
                "deposit_b": o.depositB.to_string(),
                "withdrawn_a": o.withdrawnA.to_string(),
                "withdrawn_b": o.withdrawnB.to_string(),
            }),
            Err(e) => json!({ "status": "unreadable", "error": scrub_urls(&e.to_string()) }),
        };
        let asset = asset_of(ctx, s.chan.params.token).await.ok();
        rows.push(json!({
            "channel": format!("{id:#x}"),
            "side": match s.me { Side::A => "A", Side::B => "B" },
            "token": token_text(s.chan.params.token),
            "peer": peer.as_ref().map(|p| hex::encode(p.key)),
            "peer_addr": peer.and_then(|p| p.addr),
            "peer_address": format!("{:#x}", s.chan.party(if s.me == Side::A { Side::B } else { Side::A })),
            "version": st.version,
            "balance": mine.to_string(),
            "balance_text": asset.map(|a| format_amount(mine, &a)),
            "peer_balance": theirs.to_string(),
            "pending_locks": s.latest.locks.len(),
            "locked": locked.to_string(),
            "final": st.isFinal,
            "pending_proposal": s.pending.as_ref().map(|p| p.state.version),
            "watch_from": ctx.store.open_block(id)?,
            "on_chain": on_chain,
        }));
    }
    Ok(Value::Array(rows))
}

fn chan_of(ctx: &Ctx, id: B256) -> anyhow::Result<(ChannelRef, Side)> {
    ctx.node
        .with_party(id, |p| (p.channel().clone(), p.side()))
        .map_err(|_| ChannelCliError::UnknownChannel(id.to_string()).into())
}

/// `xswap channel deposit`: on chain, then the `TopUp` update.
pub async fn deposit(
    ctx: &Ctx,
    id: B256,
    amount: &str,
    addr: Option<&str>,
    already: bool,
) -> anyhow::Result<Value> {
    let (chan, side) = chan_of(ctx, id)?;
    let asset = asset_of(ctx, chan.params.token).await?;
    let amount = parse_amount(amount, &asset).context("--amount")?;
    if amount == 0 {
        bail!("--amount must be positive");
    }
    let recorded = ctx.node.with_party(id, |p| match side {
        Side::A => p.latest().state.depositA,
        Side::B => p.latest().state.depositB,
    })?;
    let want = recorded
        .checked_add(amount)
        .ok_or_else(|| anyhow!("--amount too large"))?;
    let txs = if already {
        vec![]
    } else {
        deposit_on_chain(ctx, &chan, amount).await?
    };
    wait_final(ctx, &chan, side, want).await?;
    ready(ctx, id, addr).await.map_err(|e| {
        e.context(format!(
            "the deposit is on chain; `xswap channel deposit {id} --amount ... --already-deposited` accounts it later"
        ))
    })?;
    let version = propose(ctx, id, UpdateKind::TopUp { amount }).await?;
    Ok(json!({
        "channel": format!("{id:#x}"),
        "deposit": amount.to_string(),
        "version": version,
        "txs": hashes(&txs),
    }))
}

/// `xswap channel withdraw`: the co-signed withdrawal, then the on-chain `withdraw`.
pub async fn withdraw(
    ctx: &Ctx,
    id: B256,
    amount: &str,
    addr: Option<&str>,
) -> anyhow::Result<Value> {
    let (chan, _) = chan_of(ctx, id)?;
    let asset = asset_of(ctx, chan.params.token).await?;
    let amount = parse_amount(amount, &asset).context("--amount")?;
    if amount == 0 {
        bail!("--amount must be positive");
    }
    ready(ctx, id, addr).await?;
    let now = RpcChain::new(ctx.provider.clone(), ctx.at).now();
    let version = propose(
        ctx,
        id,
        UpdateKind::Withdraw {
            amount,
            expiry: now + 3600,
        },
    )
    .await?;
    let l = ctx.node.with_party(id, |p| p.latest().clone())?;
    let (sa, sb) = l
        .sigs()
        .ok_or_else(|| anyhow!("the withdrawal state is not co-signed"))?;
    let c = Channel::new(ctx.contract, ctx.wallet.clone());
    let tx = send(
        c.withdraw(
            chan.params.clone(),
            l.state.clone(),
            l.locks.clone(),
            sa,
            sb,
        ),
        "withdraw",
    )
    .await?;
    Ok(json!({
        "channel": format!("{id:#x}"),
        "withdrawn": amount.to_string(),
        "version": version,
        "txs": hashes(&[tx]),
    }))
}

/// `xswap channel close`: the co-signed final state and `cooperativeClose`; with `force` and
/// the peer unreachable, the unilateral `close` with the latest co-signed state.
pub async fn close(ctx: &Ctx, id: B256, addr: Option<&str>, force: bool) -> anyhow::Result<Value> {
    let (chan, _) = chan_of(ctx, id)?;
    let st = Channel::new(ctx.contract, &ctx.provider)
        .status(id)
        .call()
        .await
        .map_err(|e| {
            anyhow!(
                "reading the channel's status: {}",
                scrub_urls(&e.to_string())
            )
        })?;
    if st.st != 1 {
        bail!(
            "channel {id} is not open on chain (status {}): nothing to close",
            st.st
        );
    }
    let already_final = ctx.node.with_party(id, |p| p.latest().state.isFinal)?;
    if !already_final {
        let got = match ready(ctx, id, addr).await {
            Ok(()) => propose(ctx, id, UpdateKind::Close).await.map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = got {
            // Without the peer (gone, or no address known to reach it) `--force` closes alone.
            let unreachable = matches!(
                e.downcast_ref::<ChannelCliError>(),
                Some(ChannelCliError::PeerUnreachable { .. } | ChannelCliError::NoPeerAddress(_))
            );
            if unreachable && force {
                return force_close(ctx, id, &chan).await;
            }
            return Err(e);
        }
    }
    let l = ctx.node.with_party(id, |p| p.latest().clone())?;
    let (sa, sb) = l
        .sigs()
        .ok_or_else(|| anyhow!("the final state is not co-signed"))?;
    let c = Channel::new(ctx.contract, ctx.wallet.clone());
    let tx = send(
        c.cooperativeClose(chan.params.clone(), l.state.clone(), sa, sb),
        "cooperativeClose",
    )
    .await?;
    Ok(json!({
        "channel": format!("{id:#x}"),
        "closed": "cooperative",
        "version": l.state.version,
        "paid_a": l.state.balanceA.to_string(),
        "paid_b": l.state.balanceB.to_string(),
        "txs": hashes(&[tx]),
    }))
}

async fn force_close(ctx: &Ctx, id: B256, chan: &ChannelRef) -> anyhow::Result<Value> {
    let l = ctx.node.with_party(id, |p| p.latest().clone())?;
    let c = Channel::new(ctx.contract, ctx.wallet.clone());
    let tx = match l.sigs() {
        Some((sa, sb)) => {
            send(
                c.close(
                    chan.params.clone(),
                    l.state.clone(),
                    l.locks.clone(),
                    sa,
                    sb,
                ),
                "close",
            )
            .await?
        }
        None => send(c.closeUnsigned(chan.params.clone()), "closeUnsigned").await?,
    };
    Ok(json!({
        "channel": format!("{id:#x}"),
        "closed": "unilateral",
        "version": l.state.version,
        "challenge_period": chan.params.challengePeriod,
        "next": "the challenge period runs; keep `xswap channel serve` (or `xswap maker`) running: its watcher settles the channel after the deadline",
        "txs": hashes(&[tx]),
    }))
}
