//! The peer side: accept channel connections (announcements and updates) and run the
//! channel watcher every tick.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use eth_channel::{ChannelRail, SecretMap, WatchConfig, Watcher};
use tracing::{info, warn};

use super::Ctx;

/// Serves channel peers on `listen` and runs the watcher every `tick` until the task ends.
pub async fn serve(ctx: Arc<Ctx>, listen: &str, tick: Duration) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let outcome = tokio::select! {
        r = serve_with(ctx.clone(), Some(listen), tick, None) => r,
        _ = term.recv() => Ok(()),
        _ = int.recv() => Ok(()),
    };
    // Stopped on a signal (or the listener's end): nothing more proposed or written; what is
    // pending stays in the store for the next start.
    ctx.node.shutdown();
    outcome
}

/// [`serve`] in a process that also runs swaps on the channels: peers served on `listen`
/// when given; with `rail`, every stored channel (those announced since included) is counted
/// by the rail, and the watcher enforces the rail's claims (its secrets, a claim window of
/// at least the rail's claim budget) when the peer does not countersign them.
pub async fn serve_with(
    ctx: Arc<Ctx>,
    listen: Option<&str>,
    tick: Duration,
    rail: Option<ChannelRail>,
) -> anyhow::Result<()> {
    let served = match listen {
        Some(listen) => {
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("channel listener on {listen}"))?;
            let node = ctx.node.clone();
            Some(tokio::spawn(async move { node.serve(listener).await }))
        }
        None => None,
    };
    let (secrets, cfg): (Arc<dyn eth_channel::Secrets>, WatchConfig) = match &rail {
        Some(r) => {
            let d = WatchConfig::default();
            (
                Arc::new(r.secrets()),
                WatchConfig {
                    claim_window: d.claim_window.max(r.min_claim_window()),
                    ..d
                },
            )
        }
        None => (Arc::new(SecretMap::new()), WatchConfig::default()),
    };
    let mut watcher = Watcher::new(
        ctx.provider.clone(),
        ctx.signer.clone(),
        (*ctx.store).clone(),
        secrets,
        cfg,
    );
    loop {
        // Channels announced since the last tick are watched too, from the block they were
        // opened in (recorded at open or announcement; block 0 for older records).
        for id in ctx.store.channel_ids()? {
            watcher.watch(id, ctx.store.open_block(id)?.unwrap_or(0));
            if let Some(r) = &rail {
                r.add_channel(id);
            }
        }
        match watcher.tick().await {
            Ok(r) => {
                for (action, tx) in &r.sent {
                    info!(?action, %tx, "channel watcher sent a transaction");
                }
                for (id, e) in &r.errors {
                    warn!(channel = %id, error = %e, "channel watcher");
                }
            }
            Err(e) => warn!(error = %e, "channel watcher tick failed"),
        }
        if served.as_ref().is_some_and(|s| s.is_finished()) {
            anyhow::bail!("the channel listener stopped");
        }
        tokio::time::sleep(tick).await;
    }
}
