//! `xswap ln serve`: runs the node until stopped (SIGINT or SIGTERM): accepts Lightning
//! peers, keeps channels alive, claims payments held for our own invoices, and answers the
//! other `xswap ln` commands on the control socket.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ln_adapter::LnEvent;
use tokio::signal::unix::{signal, SignalKind};

use super::cmd::claim_own;
use super::{control, Ctx, LnCliError};
use crate::config::Config;

/// Runs the node of the installation in `data_dir` until a signal stops it.
pub async fn serve(data_dir: &Path, cfg: &Config) -> anyhow::Result<()> {
    let ctx = Arc::new(Ctx::load(data_dir, cfg)?);
    let running = super::start(data_dir, cfg).await?;
    let node = Arc::clone(&running.node);
    let listener = match control::bind(&ctx.paths.socket) {
        Ok(l) => l,
        Err(e) => {
            running.stop().await?;
            return Err(e.into());
        }
    };
    crate::say!(
        "lightning node {} on {} serving peers on {}; control socket {}",
        node.node_id(),
        ctx.chain,
        node.listen_addr(),
        ctx.paths.socket.display()
    );
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut events = node.subscribe();
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    let outcome: anyhow::Result<()> = loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(control::answer(stream, Arc::clone(&node), Arc::clone(&ctx)));
                }
                Err(e) => tracing::warn!(error = %e, "control socket accept"),
            },
            event = events.recv() => {
                // A payment to one of our invoices is held: claim it now (the tick below
                // catches what arrived while nobody listened, e.g. before a restart).
                if matches!(event, Ok(LnEvent::PaymentClaimable { .. })) {
                    claim_own(&node, &ctx.paths.preimages).await;
                }
            }
            _ = tick.tick() => {
                claim_own(&node, &ctx.paths.preimages).await;
                // Outputs of closes back to the wallet now rather than at LDK's next
                // 30-second sweep (a no-op while a sweep is pending).
                if node.sweeping_sats() > 0 {
                    if let Err(e) = node.sweep_now().await {
                        tracing::debug!(error = %e, "sweep not built yet");
                    }
                }
                if let Some(why) = node.fatal() {
                    break Err(LnCliError::Node(format!("the node stopped: {why}")).into());
                }
            }
            _ = term.recv() => break Ok(()),
            _ = int.recv() => break Ok(()),
        }
    };
    let _ = std::fs::remove_file(&ctx.paths.socket);
    drop(listener);
    running.stop().await?;
    crate::say!("lightning node stopped");
    outcome
}
