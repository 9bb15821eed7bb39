//! A throwaway PostgreSQL cluster for tests: `initdb` in a temp dir, the server on a free port
//! of 127.0.0.1 with its socket in that dir, trust authentication, stopped and removed on drop.
//!
//! The binaries: `PG_BIN` (a directory), else `pg_config --bindir`, else the newest
//! `/usr/lib/postgresql/*/bin` (Debian's layout), else `initdb` on the `PATH`. A missing
//! binary panics naming the install step (`apt-get install -y postgresql`; `scripts/test` runs
//! it): tests never skip.
//!
//! PostgreSQL refuses to run as root. Under root (containers, CI) the cluster is made and run
//! as the user `PG_TEST_USER` (default `postgres`, which Debian's package creates) through
//! `runuser`, and its temp dir is handed to that user.
#![allow(clippy::panic, clippy::expect_used)]

use std::ffi::OsString;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex, Weak};

/// The superuser of a test cluster (trust authentication: no password).
pub const USER: &str = "xswap";

/// Where the PostgreSQL binaries are, from the environment and this machine.
///
/// # Panics
/// When none is found, naming the install step.
pub fn find_bindir() -> PathBuf {
    let pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dir| dir.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    // Newest major version first.
    debian.sort_by_key(|p| {
        std::cmp::Reverse(
            p.parent()
                .and_then(|v| v.file_name())
                .and_then(|v| v.to_str())
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(0),
        )
    });
    let pg_bin = std::env::var_os("PG_BIN");
    if let Some(dir) = &pg_bin {
        let dir = Path::new(dir);
        assert!(
            dir.join("initdb").is_file(),
            "PG_BIN={} has no initdb: point it at PostgreSQL's bin directory (Debian: \
             /usr/lib/postgresql/<version>/bin after `apt-get install -y postgresql`), or unset it",
            dir.display()
        );
    }
    find_bindir_with(pg_bin, pg_config, &debian, std::env::var_os("PATH")).unwrap_or_else(|| {
        panic!(
            "PostgreSQL not found (no initdb in $PG_BIN, `pg_config --bindir`, \
             /usr/lib/postgresql/*/bin or on PATH): run `apt-get install -y postgresql` \
             (scripts/test does), or set PG_BIN to the directory of initdb and pg_ctl. \
             Tests that need PostgreSQL never skip."
        )
    })
}

/// [`find_bindir`] with its inputs given: the first directory holding `initdb`.
pub fn find_bindir_with(
    pg_bin: Option<OsString>,
    pg_config_bindir: Option<PathBuf>,
    debian: &[PathBuf],
    path: Option<OsString>,
) -> Option<PathBuf> {
    let has_initdb = |d: &Path| d.join("initdb").is_file();
    if let Some(dir) = pg_bin {
        // Named explicitly: used or refused, never silently replaced by another.
        let dir = PathBuf::from(dir);
        return has_initdb(&dir).then_some(dir);
    }
    pg_config_bindir
        .into_iter()
        .chain(debian.iter().cloned())
        .chain(path.iter().flat_map(std::env::split_paths))
        .find(|d| has_initdb(d))
}

/// A TCP port free on 127.0.0.1 now (for a server a test starts).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// A running throwaway cluster.
#[derive(Debug)]
pub struct TestCluster {
    dir: tempfile::TempDir,
    bindir: PathBuf,
    port: u16,
    /// The user the server runs as (under root).
    run_as: Option<String>,
    running: bool,
}

/// The cluster [`TestCluster::shared`] hands out while someone holds it.
static SHARED: Mutex<Weak<TestCluster>> = Mutex::new(Weak::new());

impl TestCluster {
    /// A cluster shared by the tests of one process running at the same time (each makes a
    /// database of its own): started by the first, stopped and removed when the last one
    /// holding it drops it. A test that stops the server takes its own ([`TestCluster::start`]).
    ///
    /// # Panics
    /// As [`TestCluster::start`].
    pub fn shared() -> Arc<TestCluster> {
        let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(cluster) = shared.upgrade() {
            return cluster;
        }
        let cluster = Arc::new(TestCluster::start());
        *shared = Arc::downgrade(&cluster);
        cluster
    }

    /// Makes and starts a cluster.
    ///
    /// # Panics
    /// When PostgreSQL is missing or does not start (with its log).
    pub fn start() -> Self {
        let bindir = find_bindir();
        let dir = tempfile::Builder::new()
            .prefix("xswap-pg-")
            .tempdir()
            .expect("a temp dir");
        let run_as = is_root()
            .then(|| std::env::var("PG_TEST_USER").unwrap_or_else(|_| "postgres".to_owned()));
        if let Some(user) = &run_as {
            let out = Command::new("chown")
                .arg(user)
                .arg(dir.path())
                .output()
                .expect("chown runs");
            assert!(
                out.status.success(),
                "running as root, the cluster runs as the user {user:?} (PostgreSQL refuses \
                 root), which must exist: `apt-get install -y postgresql` creates `postgres`, or \
                 set PG_TEST_USER: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut cluster = Self {
            dir,
            bindir,
            port: free_port(),
            run_as,
            running: false,
        };
        let data = cluster.data_dir();
        cluster.run_ok(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                USER.as_ref(),
                "-A".as_ref(),
                "trust".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--no-sync".as_ref(),
                "--no-instructions".as_ref(),
            ],
        );
        cluster.start_again();
        cluster
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_file(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// Runs one of the binaries (as the cluster's user under root).
    fn run(&self, exe: &str, args: &[&std::ffi::OsStr]) -> Output {
        let exe = self.bindir.join(exe);
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.arg("-u").arg(user).arg("--").arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        cmd.args(args)
            .output()
            .unwrap_or_else(|e| panic!("{} does not run: {e}", exe.display()))
    }

    fn run_ok(&self, exe: &str, args: &[&std::ffi::OsStr]) {
        let out = self.run(exe, args);
        assert!(
            out.status.success(),
            "{exe} failed: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log_tail()
        );
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_file()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Starts the server again (same data, same port) after [`TestCluster::stop`].
    pub fn start_again(&mut self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        let data = self.data_dir();
        let log = self.log_file();
        self.run_ok(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-o".as_ref(),
                options.as_ref(),
                "-w".as_ref(),
                "-t".as_ref(),
                "60".as_ref(),
                "start".as_ref(),
            ],
        );
        self.running = true;
    }

    /// Stops the server (fast shutdown: open connections are closed); the data stays.
    pub fn stop(&mut self) {
        self.pg_ctl_stop("fast");
    }

    fn pg_ctl_stop(&mut self, mode: &str) {
        if !self.running {
            return;
        }
        let data = self.data_dir();
        let out = self.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-m".as_ref(),
                mode.as_ref(),
                "-w".as_ref(),
                "stop".as_ref(),
            ],
        );
        self.running = !out.status.success();
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The connection string of database `db` (which must exist; `postgres` always does).
    pub fn url(&self, db: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={USER} dbname={db} connect_timeout=5",
            self.port
        )
    }

    /// Creates an empty database `name`; answers its connection string.
    ///
    /// # Panics
    /// When the server does not answer.
    pub async fn create_database(&self, name: &str) -> String {
        let (client, conn) = tokio_postgres::connect(&self.url("postgres"), tokio_postgres::NoTls)
            .await
            .expect("connect to the test cluster");
        let task = tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .expect("CREATE DATABASE");
        drop(client);
        let _ = task.await;
        self.url(name)
    }

    /// A plain connection to database `db`, for a test's own SQL (its connection task runs on
    /// the current runtime).
    ///
    /// # Panics
    /// When the server does not answer.
    pub async fn connect(&self, db: &str) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.url(db), tokio_postgres::NoTls)
            .await
            .expect("connect to the test cluster");
        tokio::spawn(conn);
        client
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        self.pg_ctl_stop("immediate");
        // The temp dir (data, socket, log) is removed by its own drop.
    }
}
