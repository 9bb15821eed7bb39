//! `xswap ln`: the installation's Lightning node (issue 11) from the command line.
//!
//! LDK's state breaks if two processes run the same node, so exactly one process runs it:
//! whoever holds the exclusive lock on `lock` in the node's directory (`[ln] data_dir`, `ln`
//! under the installation by default) for as long as the node runs. `xswap ln serve` runs it
//! for good (accepts peers, keeps channels alive, claims payments to our own invoices) and
//! answers the other commands on a Unix socket in that directory (`control.sock`, mode 0600,
//! one JSON request per connection). Without a running `serve`, a command takes the lock,
//! starts the node for itself and stops it when done; a second starter gets
//! [`LnCliError::NodeRunning`] naming the process that runs it.
//!
//! Keys: the node's keys come from the installation seed (`ln_adapter::Seed`, from the
//! keystore's `lightning` purpose key). Preimages of our own invoices are kept in
//! `preimages/` (mode 0600); none is ever logged. A payer's `pay --json` prints the preimage
//! it learned (it owns it); text output never does.

pub mod args;
pub mod cmd;
mod control;
mod serve;

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ln_adapter::{LnConfig, LnNode, Seed};
use swap_core::ChainId;

use crate::config::{self, Config};

pub use serve::{host, serve, Hosting};

/// What `xswap ln` refuses or cannot do, typed (the exit code of [`LnCliError::exit_code`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LnCliError {
    /// Another process runs the node of this data directory.
    #[error(
        "another process (pid {pid}) runs the Lightning node of {dir}: LDK's state breaks if \
         two processes run one node. Stop it, or keep `xswap ln serve` running and other \
         commands talk to it"
    )]
    NodeRunning {
        /// The process that holds the lock (as it wrote it; `?` when unreadable).
        pid: String,
        /// The node's directory.
        dir: PathBuf,
    },
    /// A malformed argument.
    #[error("{0}")]
    BadArgument(String),
    /// Not a channel of this node.
    #[error("no channel {0} here (see `xswap ln list`)")]
    UnknownChannel(String),
    /// The peer could not be reached.
    #[error("peer unreachable: {0}")]
    PeerUnreachable(String),
    /// HTLCs are pending in the channel: a cooperative close waits until they are resolved.
    #[error("{0}: close again once they are resolved, or `--force`")]
    HtlcsPending(String),
    /// The payment failed for good (its HTLCs came back: nothing was paid).
    #[error("payment {payment_hash} failed: {reason}")]
    PaymentFailed {
        /// Its payment hash.
        payment_hash: String,
        /// LDK's reason.
        reason: String,
    },
    /// The payment was sent and is neither settled nor failed yet (the payee may hold it).
    #[error(
        "payment {payment_hash} is in flight, not settled after {secs} s (a hold invoice may \
         keep it): it is not sent again; `xswap ln pay` with the same invoice reports it once \
         settled"
    )]
    PaymentPending {
        /// Its payment hash.
        payment_hash: String,
        /// How long we waited.
        secs: u64,
    },
    /// Something did not happen in time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The Lightning node refused or failed.
    #[error("lightning node: {0}")]
    Node(String),
    /// The serving process answered with an error (its message and exit code).
    #[error("{message}")]
    Remote {
        /// Its message.
        message: String,
        /// Its exit code.
        exit: i32,
    },
    /// The control socket failed.
    #[error("control socket: {0}")]
    Control(String),
}

impl From<ln_adapter::LnError> for LnCliError {
    fn from(e: ln_adapter::LnError) -> Self {
        LnCliError::Node(e.to_string())
    }
}

impl LnCliError {
    /// The process exit code: 2 bad argument, 4 peer unreachable, 5 the node runs in another
    /// process, 6 payment failed, 7 payment still in flight, 1 anything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            LnCliError::BadArgument(_) => 2,
            LnCliError::PeerUnreachable(_) => 4,
            LnCliError::NodeRunning { .. } => 5,
            LnCliError::PaymentFailed { .. } => 6,
            LnCliError::PaymentPending { .. } => 7,
            LnCliError::Remote { exit, .. } => *exit,
            _ => 1,
        }
    }
}

/// The files of a node's directory.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The directory (mode 0700).
    pub dir: PathBuf,
    /// LDK's state.
    pub node: PathBuf,
    /// The lock held while the node runs (holds the pid of its process).
    pub lock: PathBuf,
    /// `serve`'s control socket.
    pub socket: PathBuf,
    /// Where builds before this one kept our own invoices' preimages in clear (one file per
    /// payment hash): moved into the node's sealed store when the node starts.
    pub preimages: PathBuf,
}

impl Paths {
    /// The files under `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Self {
            node: dir.join("node"),
            lock: dir.join("lock"),
            socket: dir.join("control.sock"),
            preimages: dir.join("preimages"),
            dir,
        }
    }

    /// The paths of the installation in `data_dir` (its `[ln] data_dir`).
    pub fn of(data_dir: &Path, cfg: &Config) -> Self {
        Self::new(cfg.ln().dir(data_dir))
    }
}

/// Creates `dir` (and parents) readable by the owner only.
pub(crate) fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// The exclusive lock on a node's directory, held for the node's lifetime (released when
/// dropped, or by the kernel when the process dies).
#[derive(Debug)]
pub struct NodeLock {
    /// The locked file (the lock lives as long as it is open).
    _file: File,
}

impl NodeLock {
    /// Takes the lock of `paths`, or says which process holds it.
    pub fn take(paths: &Paths) -> Result<Self, LnCliError> {
        let io = |e: std::io::Error| LnCliError::Node(format!("{}: {e}", paths.lock.display()));
        private_dir(&paths.dir).map_err(io)?;
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&paths.lock)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim();
                return Err(LnCliError::NodeRunning {
                    pid: if pid.is_empty() { "?" } else { pid }.to_owned(),
                    dir: paths.dir.clone(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        write!(file, "{}", std::process::id()).map_err(io)?;
        file.flush().map_err(io)?;
        Ok(Self { _file: file })
    }
}

/// A node this process runs, with the lock that makes it the only one.
pub struct Running {
    /// The node.
    pub node: Arc<LnNode>,
    /// Held as long as the node runs.
    lock: NodeLock,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl Running {
    /// Stops the node (its state persisted) and only then releases the lock.
    pub async fn stop(self) -> Result<(), LnCliError> {
        self.node.stop().await?;
        drop(self.lock);
        Ok(())
    }
}

/// What a command needs besides the node.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The node's chain (the `[btc]` chain).
    pub chain: ChainId,
    /// The node's files.
    pub paths: Paths,
}

impl Ctx {
    /// The context of the installation in `data_dir`.
    pub fn load(data_dir: &Path, cfg: &Config) -> anyhow::Result<Self> {
        Ok(Self {
            chain: cfg.btc_chain()?,
            paths: Paths::of(data_dir, cfg),
        })
    }
}

/// The poll interval of the node's block follower (`XSWAP_POLL_MS`, default 500 ms).
fn poll_interval() -> Duration {
    Duration::from_millis(
        std::env::var("XSWAP_POLL_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(500),
    )
}

/// Takes the lock and starts the node of the installation in `data_dir` (keystore password
/// from `XSWAP_PASSWORD` or the terminal).
pub async fn start(data_dir: &Path, cfg: &Config) -> anyhow::Result<Running> {
    let section = cfg.ln();
    let paths = Paths::of(data_dir, cfg);
    let lock = NodeLock::take(&paths)?;
    let listen = tokio::net::lookup_host(section.listen.as_str())
        .await
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| {
            LnCliError::BadArgument(format!("[ln] listen {:?} is not HOST:PORT", section.listen))
        })?;
    let (seed, store_key) = {
        let ks = config::open_keystore(data_dir)?;
        (Seed::new(*ks.purpose_key("lightning")?), ks.store_key()?)
    };
    let mut ln = LnConfig::new(cfg.btc_chain()?, cfg.btc_rpc()?, paths.node.clone());
    // LDK's files and the ledger (payment preimages) sealed with the installation's key, as
    // the swap and channel stores are; a node directory from before is sealed at this start.
    ln.store_key = Some(store_key);
    ln.listen = listen;
    ln.min_confirmations = section.min_confirmations;
    if let Some(anchors) = section.anchors {
        ln.anchors = anchors;
    }
    if let Some(reserve) = section.anchor_reserve_sats {
        ln.anchor_reserve_sats = reserve;
    }
    ln.poll_interval = poll_interval();
    let node = LnNode::start(ln, &seed).await.map_err(LnCliError::from)?;
    // Our own invoices' preimages are kept in the node's sealed store; earlier builds kept
    // them in clear files.
    cmd::seal_clear_preimages(&node, &paths.preimages);
    Ok(Running {
        node: Arc::new(node),
        lock,
    })
}

/// Runs `req` on the node of the installation in `data_dir`: through the control socket of
/// the process that runs it (`xswap ln serve`, `xswap maker`, `xswap take`), else on the node
/// started for this one request (and stopped after it).
pub async fn ask_or_run(
    data_dir: &Path,
    cfg: &Config,
    req: cmd::Request,
) -> anyhow::Result<serde_json::Value> {
    let ctx = Ctx::load(data_dir, cfg)?;
    Ok(match control::ask(&ctx.paths.socket, &req).await? {
        Some(v) => v,
        None => {
            // Nobody runs the node: this process runs it for the one request.
            let running = start(data_dir, cfg).await?;
            let result = cmd::exec(&running.node, &ctx, req).await;
            running.stop().await?;
            result?
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn a_second_lock_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path().join("ln"));
        let first = NodeLock::take(&paths).unwrap();
        let err = NodeLock::take(&paths).unwrap_err();
        assert_eq!(err.exit_code(), 5);
        assert!(
            err.to_string()
                .contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(first);
        assert!(NodeLock::take(&paths).is_ok());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&paths.dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}
