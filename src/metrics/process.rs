//! The process metrics every Prometheus client library exports, read from `/proc` at scrape
//! time (no collector crate, no background task): `process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, `process_virtual_memory_bytes`, `process_open_fds`,
//! `process_max_fds`, `process_start_time_seconds`. Elsewhere than Linux there is no
//! `/proc`, and these are simply absent.

use std::fs;

/// Clock ticks per second of `/proc/*/stat` times: `USER_HZ`, 100 on every Linux ABI.
const TICKS_PER_SECOND: f64 = 100.0;

/// What `/proc` says of this process now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Process {
    /// User and system CPU time, in seconds.
    pub cpu_seconds: Option<f64>,
    /// Resident set size, in bytes.
    pub resident_memory_bytes: Option<u64>,
    /// Virtual memory size, in bytes.
    pub virtual_memory_bytes: Option<u64>,
    /// Open file descriptors.
    pub open_fds: Option<u64>,
    /// The soft limit on open file descriptors.
    pub max_fds: Option<u64>,
    /// When the process started, in seconds since the Unix epoch.
    pub start_time_seconds: Option<f64>,
}

impl Process {
    /// Reads `/proc/self`.
    pub fn read() -> Self {
        let stat = fs::read_to_string("/proc/self/stat").ok();
        let fields = stat.as_deref().map(stat_fields).unwrap_or_default();
        // Fields after the command, numbered as in proc(5): utime is 14, so index 11 here.
        let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
        let cpu_seconds = field(14)
            .zip(field(15))
            .map(|(user, system)| (user + system) as f64 / TICKS_PER_SECOND);
        let status = fs::read_to_string("/proc/self/status").ok();
        let kilobytes = |name: &str| {
            status
                .as_deref()
                .and_then(|status| status_kilobytes(status, name))
                .map(|kb| kb * 1024)
        };
        let boot_time = fs::read_to_string("/proc/stat").ok().and_then(|stat| {
            stat.lines()
                .find_map(|line| line.strip_prefix("btime "))
                .and_then(|value| value.trim().parse::<u64>().ok())
        });
        Self {
            cpu_seconds,
            resident_memory_bytes: kilobytes("VmRSS:"),
            virtual_memory_bytes: kilobytes("VmSize:"),
            open_fds: fs::read_dir("/proc/self/fd")
                .ok()
                .map(|entries| entries.count() as u64),
            max_fds: fs::read_to_string("/proc/self/limits")
                .ok()
                .and_then(|limits| max_open_files(&limits)),
            start_time_seconds: boot_time
                .zip(field(22))
                .map(|(boot, ticks)| boot as f64 + ticks as f64 / TICKS_PER_SECOND),
        }
    }
}

/// The fields of `/proc/*/stat` after `(comm)` (which may hold spaces and parentheses),
/// starting with the state (field 3).
fn stat_fields(stat: &str) -> Vec<&str> {
    stat.rfind(')')
        .map(|end| stat[end + 1..].split_whitespace().collect())
        .unwrap_or_default()
}

/// A `Name:   123 kB` line of `/proc/*/status`, in kB.
fn status_kilobytes(status: &str, name: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(name))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The soft limit of `Max open files` in `/proc/*/limits`.
fn max_open_files(limits: &str) -> Option<u64> {
    limits
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_parse() {
        let stat = "4242 (my (odd) cmd) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 130 0 0 \
                    20 0 8 0 123456 1000000 2000 18446744073709551615";
        let fields = stat_fields(stat);
        assert_eq!(fields[0], "S");
        assert_eq!(fields[14 - 3], "250");
        assert_eq!(fields[15 - 3], "130");
        assert_eq!(fields[22 - 3], "123456");
        let status = "Name:\tx\nVmSize:\t  10240 kB\nVmRSS:\t    2048 kB\n";
        assert_eq!(status_kilobytes(status, "VmRSS:"), Some(2048));
        assert_eq!(status_kilobytes(status, "VmSize:"), Some(10240));
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(max_open_files(limits), Some(1024));
    }

    #[test]
    fn this_process_is_read_from_proc() {
        let process = Process::read();
        assert!(process.resident_memory_bytes.unwrap() > 0);
        assert!(process.open_fds.unwrap() >= 3);
        assert!(process.max_fds.unwrap() >= process.open_fds.unwrap());
        assert!(process.cpu_seconds.unwrap() >= 0.0);
        assert!(process.start_time_seconds.unwrap() > 1.6e9);
    }
}
