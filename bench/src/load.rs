//! The closed-loop load driver: `concurrency` workers each keep one request in flight, back
//! to back, for a warm-up and then a fixed measured duration.
//!
//! Only requests *started* inside the measured window count, so the warm-up's cold caches
//! and connection set-up never reach the numbers, and throughput is completions over the
//! window length. Latency (send to last byte of the response) goes into a per-worker HDR
//! histogram in microseconds; the histograms are merged at the end, so recording costs no
//! synchronisation. Failed requests are counted by kind and kept out of the histogram.
//!
//! While it runs, one line per second says which scenario, which phase and how far. At the
//! edges of the measured window the server process is sampled (CPU ticks, peak RSS), and so
//! are this process and the machine, to tell where the CPU went.

use std::{
    collections::BTreeMap,
    future::Future,
    io::Write,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use hdrhistogram::Histogram;
use tokio::time::Instant;

use crate::procfs::{self, Sample};

/// One unit of load: a worker's next request.
pub trait Worker: Send + 'static {
    /// Sends one request and waits for the whole response; `Err` names the failure kind
    /// (`grpc Unavailable`, `http 503`, …).
    fn call(&mut self) -> impl Future<Output = Result<(), String>> + Send;
}

/// How long and how hard.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Discarded lead-in.
    pub warmup: Duration,
    /// Measured window.
    pub duration: Duration,
}

/// What one worker saw in the measured window.
struct WorkerStats {
    latency: Histogram<u64>,
    errors: BTreeMap<String, u64>,
}

/// What a scenario measured.
#[derive(Debug, Clone)]
pub struct Measurement {
    /// Successful requests in the window.
    pub ok: u64,
    /// Failed requests by kind.
    pub errors: BTreeMap<String, u64>,
    /// Successful latencies, microseconds.
    pub latency: Histogram<u64>,
    /// Window length.
    pub seconds: f64,
    /// Resource use over the window.
    pub usage: procfs::Usage,
}

impl Measurement {
    /// Successful requests per second.
    pub fn rps(&self) -> f64 {
        self.ok as f64 / self.seconds
    }

    /// Every failure.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// A fresh latency histogram: 1 µs to 10 minutes at 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("static histogram bounds are valid")
}

/// Runs `workers` (one task each) under `plan`; `label` names the scenario in progress lines.
pub async fn drive<W: Worker>(
    label: &str,
    workers: Vec<W>,
    plan: Plan,
    server: Option<u32>,
) -> Measurement {
    let start = Instant::now();
    let measure_from = start + plan.warmup;
    let end = measure_from + plan.duration;
    let done = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = workers
        .into_iter()
        .map(|mut worker| {
            let done = done.clone();
            tokio::spawn(async move {
                let mut stats = WorkerStats {
                    latency: histogram(),
                    errors: BTreeMap::new(),
                };
                loop {
                    let sent = Instant::now();
                    if sent >= end {
                        break;
                    }
                    let result = worker.call().await;
                    if sent < measure_from {
                        continue;
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                    match result {
                        Ok(()) => {
                            let micros = sent.elapsed().as_micros().max(1);
                            stats
                                .latency
                                .saturating_record(u64::try_from(micros).unwrap_or(u64::MAX));
                        }
                        Err(kind) => *stats.errors.entry(kind).or_default() += 1,
                    }
                }
                stats
            })
        })
        .collect();

    let usage = watch(label, start, measure_from, end, Some(&done), server).await;

    let mut latency = histogram();
    let mut errors = BTreeMap::new();
    for task in tasks {
        match task.await {
            Ok(stats) => {
                latency.add(&stats.latency).ok();
                for (kind, n) in stats.errors {
                    *errors.entry(kind).or_default() += n;
                }
            }
            Err(error) => {
                *errors
                    .entry(format!("worker panicked: {error}"))
                    .or_default() += 1
            }
        }
    }
    Measurement {
        ok: latency.len(),
        errors,
        latency,
        seconds: plan.duration.as_secs_f64(),
        usage,
    }
}

/// Prints progress once a second (with the request count when `done` is known) and samples
/// resource use at the window's edges.
pub async fn watch(
    label: &str,
    start: Instant,
    measure_from: Instant,
    end: Instant,
    done: Option<&AtomicU64>,
    server: Option<u32>,
) -> procfs::Usage {
    let count = || done.map_or_else(|| "-".to_owned(), |d| d.load(Ordering::Relaxed).to_string());
    let mut before: Option<Sample> = None;
    let mut tick = start;
    loop {
        let now = Instant::now();
        if before.is_none() && now >= measure_from {
            before = Some(procfs::sample(server, true));
        }
        if now >= end {
            break;
        }
        let (phase, elapsed, total) = if now < measure_from {
            ("warm-up", now - start, measure_from - start)
        } else {
            ("measuring", now - measure_from, end - measure_from)
        };
        eprint!(
            "\r  {label:<22} {phase:<9} {:>3}/{:<3}s  {:>9} requests ",
            elapsed.as_secs(),
            total.as_secs(),
            count()
        );
        std::io::stderr().flush().ok();
        tick += Duration::from_secs(1);
        // Wake at the next whole second, or earlier at the window's next edge.
        let edge = if before.is_none() { measure_from } else { end };
        tokio::time::sleep_until(tick.min(edge)).await;
    }
    let after = procfs::sample(server, false);
    eprintln!(
        "\r  {label:<22} done      {:>9} requests                ",
        count()
    );
    procfs::usage(&before.unwrap_or_else(|| after.clone()), &after)
}

/// What a fixed-count block measured: requests sent, failures by kind, and how long it took.
#[derive(Debug, Clone)]
pub struct Counted {
    /// Requests sent (all of them, failed or not).
    pub sent: u64,
    /// Failed requests by kind.
    pub errors: BTreeMap<String, u64>,
    /// Wall time of the block.
    pub seconds: f64,
}

/// Runs exactly `total` requests over `workers` (each keeps one in flight and takes the next
/// request from a shared count until none is left), then hands the workers back so that the
/// next block reuses their connections. Counts rather than times are what an instruction
/// count per request needs: the server's total over the block divided by `total`.
pub async fn drive_count<W: Worker>(workers: Vec<W>, total: u64) -> (Vec<W>, Counted) {
    let start = Instant::now();
    let issued = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = workers
        .into_iter()
        .map(|mut worker| {
            let issued = issued.clone();
            tokio::spawn(async move {
                let mut errors = BTreeMap::new();
                while issued.fetch_add(1, Ordering::Relaxed) < total {
                    if let Err(kind) = worker.call().await {
                        *errors.entry(kind).or_insert(0_u64) += 1;
                    }
                }
                (worker, errors)
            })
        })
        .collect();
    let mut workers = Vec::with_capacity(tasks.len());
    let mut errors = BTreeMap::new();
    for task in tasks {
        match task.await {
            Ok((worker, worker_errors)) => {
                workers.push(worker);
                for (kind, n) in worker_errors {
                    *errors.entry(kind).or_default() += n;
                }
            }
            Err(error) => {
                *errors
                    .entry(format!("worker panicked: {error}"))
                    .or_default() += 1;
            }
        }
    }
    let counted = Counted {
        sent: total,
        errors,
        seconds: start.elapsed().as_secs_f64(),
    };
    (workers, counted)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts its calls in a shared total; every `fail_every`-th call of this worker fails.
    struct Counting {
        calls: Arc<AtomicU64>,
        own: u64,
        fail_every: u64,
    }

    impl Worker for Counting {
        async fn call(&mut self) -> Result<(), String> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            self.own += 1;
            tokio::task::yield_now().await;
            if self.own.is_multiple_of(self.fail_every) {
                Err("refused".into())
            } else {
                Ok(())
            }
        }
    }

    fn workers(n: usize, calls: &Arc<AtomicU64>, fail_every: u64) -> Vec<Counting> {
        (0..n)
            .map(|_| Counting {
                calls: calls.clone(),
                own: 0,
                fail_every,
            })
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_counted_block_sends_exactly_the_requested_number_across_workers() {
        let calls = Arc::new(AtomicU64::new(0));

        let (workers, counted) = drive_count(workers(7, &calls, u64::MAX), 1000).await;

        assert_eq!(calls.load(Ordering::Relaxed), 1000);
        assert_eq!(counted.sent, 1000);
        assert!(counted.errors.is_empty());
        assert_eq!(workers.len(), 7);
        assert_eq!(workers.iter().map(|w| w.own).sum::<u64>(), 1000);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_next_block_reuses_the_workers_and_counts_only_its_own_requests() {
        let calls = Arc::new(AtomicU64::new(0));
        let (workers, _) = drive_count(workers(3, &calls, u64::MAX), 30).await;

        let (workers, counted) = drive_count(workers, 12).await;

        assert_eq!(calls.load(Ordering::Relaxed), 42);
        assert_eq!(counted.sent, 12);
        assert_eq!(workers.iter().map(|w| w.own).sum::<u64>(), 42);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failures_are_counted_by_kind() {
        let calls = Arc::new(AtomicU64::new(0));

        // One worker, so its every 4th call is every 4th request: 25 of 100 fail.
        let (_, counted) = drive_count(workers(1, &calls, 4), 100).await;

        assert_eq!(counted.errors, BTreeMap::from([("refused".to_owned(), 25)]));
    }
}
