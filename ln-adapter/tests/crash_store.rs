//! What a crash leaves: the paying node's database copied at the moments a channel monitor
//! update lands in it (what a process killed right then would leave), each copy started as a
//! node. Every start keeps the channel: no copy holds a monitor ahead of its channel manager
//! (LDK force-closes such a channel at start; see `gate.rs`).
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;

/// Copies the database in `dir` into a new directory under `into` each time a new record
/// lands in it under `primary` (a monitor, a monitor update), until `stop` (at most `max`
/// copies).
fn copy_at_each_new(
    primary: &'static str,
    dir: PathBuf,
    into: PathBuf,
    max: usize,
    stop: Arc<AtomicBool>,
) -> Vec<PathBuf> {
    let conn = node_db(&dir);
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    let newest = |c: &rusqlite::Connection| -> i64 {
        c.query_row(
            "SELECT coalesce(max(rowid), 0) FROM kv WHERE primary_ns = ?1",
            [primary],
            |r| r.get(0),
        )
        .unwrap()
    };
    let mut seen = newest(&conn);
    let mut copies = vec![];
    while !stop.load(Ordering::Relaxed) && copies.len() < max {
        let now = newest(&conn);
        if now == seen {
            std::thread::sleep(Duration::from_micros(100));
            continue;
        }
        seen = now;
        let copy = into.join(format!("copy-{}", copies.len()));
        std::fs::create_dir_all(&copy).unwrap();
        let target = copy.join(ln_adapter::DB_FILE);
        // One read transaction: the database as committed at one moment.
        conn.execute("VACUUM INTO ?1", [target.to_str().unwrap()])
            .unwrap();
        copies.push(copy);
    }
    copies
}

/// A thread running [`copy_at_each_new`] on `dir` until [`Copier::copies`].
struct Copier {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<PathBuf>>>,
    /// Where the copies are (removed when dropped).
    _into: tempfile::TempDir,
}

impl Copier {
    fn start(primary: &'static str, dir: PathBuf, max: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let into = tempfile::tempdir().unwrap();
        let thread = {
            let (into, stop) = (into.path().to_path_buf(), Arc::clone(&stop));
            Some(std::thread::spawn(move || {
                copy_at_each_new(primary, dir, into, max, stop)
            }))
        };
        Self {
            stop,
            thread,
            _into: into,
        }
    }

    /// Stops copying; the copies made, in order (valid while `self` lives).
    fn copies(&mut self) -> Vec<PathBuf> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .map(|t| t.join().unwrap())
            .unwrap_or_default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_at_any_monitor_update_restarts_with_its_channel_open() {
    let p = pair().await;
    let (channel, _) = open_channel(&p, 500_000).await;
    let mut copier = Copier::start("monitor_updates", p.dirs.path().join("a"), 8);
    for _ in 0..8 {
        hold_pay_and_claim(&p.a, &p.b, 2_000_000).await;
    }
    let copies = copier.copies();
    assert!(
        copies.len() >= 4,
        "{} copies: the payments wrote fewer monitor updates than expected",
        copies.len()
    );
    p.a.stop().await.unwrap();
    p.b.stop().await.unwrap();
    for (i, copy) in copies.iter().enumerate() {
        let node = start_ln(&p.node, "a", 1, copy).await;
        let open = node.channels().iter().any(|c| c.channel_id == channel);
        node.stop().await.unwrap();
        assert!(
            open,
            "the store copied at monitor update {i} started without its channel (force-closed: \
             a monitor ahead of the channel manager)"
        );
    }
}

/// The acceptor's store copied the moment its first monitor of a new channel lands (with the
/// manager that was waiting for it: the next manager write, which knows it completed, is not
/// in the copy), started again: the channel still becomes usable on both sides (LDK alone
/// would leave it waiting for that first persist forever; `gate::reconcile_started`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_at_a_new_channels_first_monitor_restarts_and_the_channel_becomes_usable() {
    let mut p = pair().await;
    let mut copier = Copier::start("monitors", p.dirs.path().join("b"), 1);
    let (channel, _) = open_channel(&p, 500_000).await;
    let copies = copier.copies();
    assert_eq!(
        copies.len(),
        1,
        "the acceptor's first monitor was never seen"
    );
    let listen = p.b.listen_addr();
    p.b.stop().await.unwrap();
    p.b = start_ln_on(&p.node, "b", 2, &copies[0], Some(listen)).await;
    assert!(
        p.b.channels().iter().any(|c| c.channel_id == channel),
        "the copy knows the channel"
    );
    // The opener reconnects on its own; connecting here only makes it sooner.
    let _ = p.a.connect(p.b.node_id(), p.b.listen_addr()).await;
    let usable = |n: &ln_adapter::LnNode| {
        n.channels()
            .iter()
            .any(|c| c.channel_id == channel && c.usable)
    };
    wait_until("the channel usable again on both sides", || {
        usable(&p.a) && usable(&p.b)
    })
    .await;
    hold_pay_and_claim(&p.a, &p.b, 2_000_000).await;
}

/// Most of LDK's manager writes carry no monitor write: the node keeps such a manager in
/// memory (each replaced by the next) and commits it at the watch task's next round
/// (`gate.rs`). After payments, writes were kept so; once the nodes are quiet the store's
/// manager is the one in memory on both sides, and after a stop too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_kept_in_memory_reaches_the_store() {
    let p = pair().await;
    open_channel(&p, 500_000).await;
    let before = [p.a.manager_writes(), p.b.manager_writes()];
    for _ in 0..4 {
        hold_pay_and_claim(&p.a, &p.b, 2_000_000).await;
    }
    let kept =
        p.a.manager_writes().kept - before[0].kept + p.b.manager_writes().kept - before[1].kept;
    assert!(kept > 0, "no manager write was kept in memory");
    wait_until("the stored managers are the ones in memory", || {
        p.a.stored_manager_is_current().unwrap() && p.b.stored_manager_is_current().unwrap()
    })
    .await;
    // One more payment, and the stop right after it: the last managers are in the store.
    hold_pay_and_claim(&p.a, &p.b, 2_000_000).await;
    p.a.stop().await.unwrap();
    p.b.stop().await.unwrap();
    assert!(
        p.a.stored_manager_is_current().unwrap(),
        "payer's manager after the stop"
    );
    assert!(
        p.b.stored_manager_is_current().unwrap(),
        "payee's manager after the stop"
    );
}

/// The opener's store copied the moment its channel's funding transaction reaches the chain
/// node (what a process killed right after sending it leaves), started again once the
/// funding confirmed: the node starts and keeps the channel. LDK hands the funding over once
/// the channel's first monitor completed; a manager that still waited for that monitor and
/// then sees the funding confirmed makes LDK panic ("Funding transaction broadcast by the
/// local client before it should have"), so the broadcaster commits a manager encoded after
/// LDK's call before it sends (`io.rs`), even one LDK's write would have kept in memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openers_store_when_its_funding_is_sent_restarts_once_it_confirmed() {
    let p = pair().await;
    let copy_dir = tempfile::tempdir().unwrap();
    let copy = copy_dir.path().to_path_buf();
    let watcher = {
        let rpc = btc_adapter::rpc::RpcClient::new(p.node.rpc_config(None)).unwrap();
        let (dir, copy) = (p.dirs.path().join("a"), copy.clone());
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            while rpc.get_raw_mempool().await.unwrap().is_empty() {
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "no funding sent"
                );
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            node_db(&dir)
                .execute(
                    "VACUUM INTO ?1",
                    [copy.join(ln_adapter::DB_FILE).to_str().unwrap()],
                )
                .unwrap();
        })
    };
    // Mined only once the copy is taken: a funding mined between two looks of the watcher
    // would never be seen in the mempool.
    let (channel, _) = open_between_then(&p.node, &p.a, &p.b, 500_000, async {
        watcher.await.unwrap();
    })
    .await;
    p.a.stop().await.unwrap();
    p.b.stop().await.unwrap();
    let node = start_ln(&p.node, "a", 1, &copy).await;
    let open = node.channels().iter().any(|c| c.channel_id == channel);
    node.stop().await.unwrap();
    assert!(open, "the copy started without its channel");
}
