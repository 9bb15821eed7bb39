//! The peer side: accept channel connections (announcements and updates) and run the
//! channel watcher every tick.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use eth_channel::{SecretMap, WatchConfig, Watcher};
use tracing::{info, warn};

use super::Ctx;

/// Serves channel peers on `listen` and runs the watcher every `tick` until the task ends.
pub async fn serve(ctx: Arc<Ctx>, listen: &str, tick: Duration) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("channel listener on {listen}"))?;
    let node = ctx.node.clone();
    let served = tokio::spawn(async move { node.serve(listener).await });
    let mut watcher = Watcher::new(
        ctx.provider.clone(),
        ctx.signer.clone(),
        (*ctx.store).clone(),
        Arc::new(SecretMap::new()),
        WatchConfig::default(),
    );
    loop {
        // Channels announced since the last tick are watched too, from the block they were
        // opened in (recorded at open or announcement; block 0 for older records).
        for id in ctx.store.channel_ids()? {
            watcher.watch(id, ctx.store.open_block(id)?.unwrap_or(0));
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
        if served.is_finished() {
            anyhow::bail!("the channel listener stopped");
        }
        tokio::time::sleep(tick).await;
    }
}
