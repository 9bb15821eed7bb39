//! What the bench binaries share: the process's CPU time and memory from `/proc`.

use std::time::Duration;

/// Process CPU time (user + system) so far, from `/proc/self/stat`.
pub fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    // Fields are 1-based in proc(5) and `rest` starts at field 3.
    let total = ticks(14 - 3) + ticks(15 - 3);
    // USER_HZ is 100 on every Linux platform Rust targets in practice (`getconf CLK_TCK`).
    Duration::from_millis(total * 10)
}

/// CPU time (user + system) of each of this process's threads, by thread name and id
/// (`/proc/self/task`): where a run's CPU went, and whether one thread is the bottleneck.
pub fn thread_cpu_times() -> Vec<(String, u32, Duration)> {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| {
            let tid: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let (head, rest) = stat.rsplit_once(')')?;
            let name = head.split_once('(')?.1.to_owned();
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
            Some((
                name,
                tid,
                Duration::from_millis((ticks(11) + ticks(12)) * 10),
            ))
        })
        .collect()
}

/// A `/proc/self/status` field in kB.
pub fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)
                .and_then(|r| r.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Resets the peak RSS (VmHWM) to the current RSS (`clear_refs` 5, Linux 4.0+).
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The `p`th percentile of `sorted` (nearest rank), zero when empty.
pub fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}
