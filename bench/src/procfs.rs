//! Resource use from `/proc`: the server's CPU time and peak resident set, this process's
//! CPU time, and how busy the whole machine was (the service, PostgreSQL and the load
//! generator share its cores, so the split matters when reading a throughput figure).
//!
//! Peak RSS is per window: `VmHWM` is reset at the window's start by writing `5` to
//! `/proc/<pid>/clear_refs` (Linux >= 4.0; needs the same user), so each scenario reports its
//! own peak. If the reset is refused the figure is the peak since the process started.

use std::sync::atomic::{AtomicU64, Ordering};

/// Clock ticks per second of `/proc/*/stat` (`getconf CLK_TCK`; 100 on Linux in practice).
static CLOCK_TICKS: AtomicU64 = AtomicU64::new(100);

/// Sets the `/proc` clock tick rate.
pub fn set_clock_ticks(ticks: u64) {
    CLOCK_TICKS.store(ticks.max(1), Ordering::Relaxed);
}

/// Counters at one instant.
#[derive(Debug, Clone)]
pub struct Sample {
    server_ticks: Option<u64>,
    server_peak_kib: Option<u64>,
    own_ticks: Option<u64>,
    machine: Option<(u64, u64)>,
}

/// Resource use over a window.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// Server CPU seconds (user + system).
    pub server_cpu_seconds: Option<f64>,
    /// Server peak resident set in the window, KiB.
    pub server_peak_rss_kib: Option<u64>,
    /// This process's CPU seconds.
    pub generator_cpu_seconds: Option<f64>,
    /// Fraction of all cores busy (0..1), every process included.
    pub machine_busy: Option<f64>,
}

/// Samples the counters; `reset_peak` starts a new peak-RSS window for the server.
pub fn sample(server: Option<u32>, reset_peak: bool) -> Sample {
    if reset_peak && let Some(pid) = server {
        // Best effort: without it the peak covers the process's life.
        let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
    }
    Sample {
        server_ticks: server.and_then(|pid| cpu_ticks(&format!("/proc/{pid}/stat"))),
        server_peak_kib: server.and_then(peak_rss_kib),
        own_ticks: cpu_ticks("/proc/self/stat"),
        machine: machine_ticks(),
    }
}

/// The difference between two samples.
pub fn usage(before: &Sample, after: &Sample) -> Usage {
    let ticks = CLOCK_TICKS.load(Ordering::Relaxed) as f64;
    let seconds = |a: Option<u64>, b: Option<u64>| Some(b?.saturating_sub(a?) as f64 / ticks);
    let machine_busy = match (before.machine, after.machine) {
        (Some((busy0, total0)), Some((busy1, total1))) if total1 > total0 => {
            Some(busy1.saturating_sub(busy0) as f64 / (total1 - total0) as f64)
        }
        _ => None,
    };
    Usage {
        server_cpu_seconds: seconds(before.server_ticks, after.server_ticks),
        server_peak_rss_kib: after.server_peak_kib,
        generator_cpu_seconds: seconds(before.own_ticks, after.own_ticks),
        machine_busy,
    }
}

/// Peak resident set (`VmHWM`) of a process, KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// utime + stime of a `/proc/<pid>/stat` file, in clock ticks.
fn cpu_ticks(path: &str) -> Option<u64> {
    parse_cpu_ticks(&std::fs::read_to_string(path).ok()?)
}

fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) may contain spaces and parentheses: fields are counted
    // from the last `)`, after which field 3 (state) comes first.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// (busy, total) jiffies of all CPUs from `/proc/stat`.
fn machine_ticks() -> Option<(u64, u64)> {
    parse_machine_ticks(&std::fs::read_to_string("/proc/stat").ok()?)
}

fn parse_machine_ticks(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|line| line.starts_with("cpu "))?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let total: u64 = values.iter().take(8).sum();
    let idle = values.get(3)? + values.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_read_after_the_command_name() {
        let stat = "4242 (customer api) S 1 4242 4242 0 -1 4194560 500 0 0 0 731 269 0 0 20 0 9 0";
        assert_eq!(parse_cpu_ticks(stat), Some(1000));
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[test]
    fn machine_busy_excludes_idle_and_iowait() {
        let stat = "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3\n";
        assert_eq!(parse_machine_ticks(stat), Some((150, 1000)));
    }
}
