//! Prometheus metrics in the text exposition format: requests by route and status, store call
//! latency (histogram per call), and swaps by state (read from the database when scraped, so
//! every server reports the same totals).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Latency bucket bounds, in seconds.
const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
    errors: u64,
}

/// The process's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, &'static str, u16), u64>>,
    store: Mutex<BTreeMap<&'static str, Histogram>>,
    leases: Mutex<BTreeMap<&'static str, u64>>,
    held: std::sync::atomic::AtomicU64,
}

impl Metrics {
    /// Counts one answered request.
    pub fn request(&self, method: &'static str, route: &'static str, status: u16) {
        let mut m = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry((method, route, status)).or_default() += 1;
    }

    /// Counts one event of this process's lease loop (`taken`, `released`, `lost_heartbeat`,
    /// `fenced_write`, ...).
    pub fn lease_event(&self, event: &'static str) {
        let mut m = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry(event).or_default() += 1;
    }

    /// How many swaps this process holds leases on now.
    pub fn set_leases_held(&self, n: usize) {
        self.held.store(
            u64::try_from(n).unwrap_or(u64::MAX),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Records one store call.
    pub fn store_call(&self, op: &'static str, took: Duration, ok: bool) {
        let mut m = self.store.lock().unwrap_or_else(|p| p.into_inner());
        let h = m.entry(op).or_default();
        let s = took.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if s <= *b {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += s;
        if !ok {
            h.errors += 1;
        }
    }

    /// The text exposition, with `swaps` (state, count) when the database answered.
    pub fn render(&self, swaps: Option<&[(String, i64)]>) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP xswap_api_requests_total HTTP requests answered, by route and status.\n",
        );
        out.push_str("# TYPE xswap_api_requests_total counter\n");
        for ((method, route, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "xswap_api_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        out.push_str("# HELP xswap_api_store_seconds Latency of the API's database calls.\n");
        out.push_str("# TYPE xswap_api_store_seconds histogram\n");
        let store = self.store.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for (op, h) in &store {
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "xswap_api_store_seconds_bucket{{op=\"{op}\",le=\"{b}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "xswap_api_store_seconds_bucket{{op=\"{op}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(out, "xswap_api_store_seconds_sum{{op=\"{op}\"}} {}", h.sum);
            let _ = writeln!(
                out,
                "xswap_api_store_seconds_count{{op=\"{op}\"}} {}",
                h.count
            );
        }
        out.push_str("# HELP xswap_api_store_errors_total The API's database calls that failed.\n");
        out.push_str("# TYPE xswap_api_store_errors_total counter\n");
        for (op, h) in &store {
            let _ = writeln!(
                out,
                "xswap_api_store_errors_total{{op=\"{op}\"}} {}",
                h.errors
            );
        }
        out.push_str("# HELP xswap_worker_lease_events_total This worker's lease events.\n");
        out.push_str("# TYPE xswap_worker_lease_events_total counter\n");
        for (event, n) in self.leases.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(
                out,
                "xswap_worker_lease_events_total{{event=\"{event}\"}} {n}"
            );
        }
        out.push_str("# HELP xswap_worker_leases Swaps this worker holds a lease on.\n");
        out.push_str("# TYPE xswap_worker_leases gauge\n");
        let _ = writeln!(
            out,
            "xswap_worker_leases {}",
            self.held.load(std::sync::atomic::Ordering::Relaxed)
        );
        out.push_str("# HELP xswap_swaps Swaps in the database, by state.\n");
        out.push_str("# TYPE xswap_swaps gauge\n");
        for (state, n) in swaps.unwrap_or_default() {
            // States are the engine's snake_case names: nothing to escape.
            let _ = writeln!(out, "xswap_swaps{{state=\"{state}\"}} {n}");
        }
        out.push_str("# HELP xswap_api_database_up Whether the database answered this scrape.\n");
        out.push_str("# TYPE xswap_api_database_up gauge\n");
        let _ = writeln!(out, "xswap_api_database_up {}", u8::from(swaps.is_some()));
        out
    }
}
