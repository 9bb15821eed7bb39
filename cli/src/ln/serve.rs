//! `xswap ln serve`: runs the node until stopped (SIGINT or SIGTERM): accepts Lightning
//! peers, keeps channels alive, claims payments held for our own invoices, and answers the
//! other `xswap ln` commands on the control socket. [`host`] does the same inside another
//! command's process (`xswap maker`, `xswap take`), which then owns the node.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ln_adapter::{LnEvent, LnNode};
use tokio::signal::unix::{signal, SignalKind};
use tokio::task::JoinHandle;

use super::cmd::claim_own;
use super::{control, Ctx, LnCliError};
use crate::config::Config;

/// Runs the node of the installation in `data_dir` until a signal stops it.
pub async fn serve(data_dir: &Path, cfg: &Config) -> anyhow::Result<()> {
    let ctx = Arc::new(Ctx::load(data_dir, cfg)?);
    let running = super::start(data_dir, cfg).await?;
    let node = Arc::clone(&running.node);
    let mut hosted = match host(Arc::clone(&node), Arc::clone(&ctx)) {
        Ok(h) => h,
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
    let outcome: anyhow::Result<()> = tokio::select! {
        ended = &mut hosted.task => match ended {
            Ok(Err(e)) => Err(e.into()),
            Ok(Ok(())) => Ok(()),
            Err(e) => Err(LnCliError::Node(format!("the node's task failed: {e}")).into()),
        },
        _ = term.recv() => Ok(()),
        _ = int.recv() => Ok(()),
    };
    hosted.stop();
    running.stop().await?;
    crate::say!("lightning node stopped");
    outcome
}

/// The node's chores run by this process: the control socket answered, our own invoices
/// claimed, closes swept. Stop it with [`Hosting::stop`] before stopping the node.
#[derive(Debug)]
pub struct Hosting {
    /// Ends with an error when the node stopped by itself.
    pub task: JoinHandle<Result<(), LnCliError>>,
    socket: std::path::PathBuf,
}

impl Hosting {
    /// Stops answering and removes the control socket.
    pub fn stop(self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Binds the control socket of `ctx` (the caller holds the node's lock) and runs the node's
/// chores in the background: what `xswap ln serve` does, inside any process that runs the
/// node, so that `xswap ln ...` commands reach it there.
pub fn host(node: Arc<LnNode>, ctx: Arc<Ctx>) -> Result<Hosting, LnCliError> {
    let listener = control::bind(&ctx.paths.socket)?;
    let socket = ctx.paths.socket.clone();
    let task = tokio::spawn(async move {
        let mut events = node.subscribe();
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
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
                        return Err(LnCliError::Node(format!("the node stopped: {why}")));
                    }
                }
            }
        }
    });
    Ok(Hosting { task, socket })
}
