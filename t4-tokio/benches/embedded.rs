//! Benchmark of the embedded API (`t4::Node`) on a real disk.
//!
//! ```sh
//! cargo bench -p t4-tokio --bench embedded                  # data in target/tmp
//! cargo bench -p t4-tokio --bench embedded -- --dir /mnt/x  # data on another disk
//! cargo bench -p t4-tokio --bench embedded -- --only gets,ranges  # some sections
//! cargo bench -p t4-tokio --bench embedded -- --only gets --read-keys 1000000
//! ```
//!
//! Sections: `baseline`, `latency`, `puts`, `pipelined`, `gets`, `ranges`, `fanout`.
//!
//! Prints, in one run on the same disk: the fdatasync baseline (write 200 B + fdatasync),
//! single-writer put latency and its ratio to the baseline, put throughput with closed-loop
//! writers and with pipelined writers, point gets and 100-key ranges on one thread, and
//! watch fan-out to 100 watchers. Results are recorded in docs/benchmarks.md.
//!
//! Run by `cargo test` (no `--bench` argument), it does a few operations of each kind, to
//! check that it still works.
//!
//! Like the `t4` binary, it runs on jemalloc: the allocator is the application's choice,
//! and on glibc's malloc the write sections lose a tenth to a fifth (docs/benchmarks.md).

// A benchmark measures wall-clock time; `expect` on setup failures is the right answer here.
#![allow(clippy::disallowed_methods, clippy::unwrap_used)]

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use t4::{KeyRange, Node, RangeRequest, WatchOptions};

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// How much work each section does.
struct Plan {
    /// Samples of the fdatasync baseline and of single-writer put latency.
    latency_samples: usize,
    /// How long each throughput section runs.
    duration: Duration,
    /// Keys preloaded for the read sections.
    read_keys: usize,
    /// Watchers and puts of the fan-out section.
    watchers: usize,
    fanout_puts: usize,
}

const FULL: Plan = Plan {
    latency_samples: 2000,
    duration: Duration::from_secs(3),
    read_keys: 100_000,
    watchers: 100,
    fanout_puts: 2000,
};

const SMOKE: Plan = Plan {
    latency_samples: 20,
    duration: Duration::from_millis(100),
    read_keys: 1000,
    watchers: 10,
    fanout_puts: 20,
};

const VALUE_LEN: usize = 100;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes `--bench`; `cargo test` runs benches without it.
    let mut plan = if args.iter().any(|a| a == "--bench") {
        FULL
    } else {
        SMOKE
    };
    if let Some(i) = args.iter().position(|a| a == "--read-keys") {
        let n = args.get(i + 1).and_then(|n| n.parse().ok());
        plan.read_keys = n.expect("--read-keys needs a number");
    }
    let base = match args.iter().position(|a| a == "--dir") {
        Some(i) => PathBuf::from(args.get(i + 1).expect("--dir needs a path")),
        None => PathBuf::from(env!("CARGO_TARGET_TMPDIR")),
    };
    let only: Option<Vec<String>> = args.iter().position(|a| a == "--only").map(|i| {
        let list = args.get(i + 1).expect("--only needs a list of sections");
        list.split(',').map(str::to_string).collect()
    });
    let run = |section: &str| only.as_ref().is_none_or(|o| o.iter().any(|s| s == section));
    std::fs::create_dir_all(&base).expect("creating the benchmark directory");
    let dir = tempfile::tempdir_in(&base).expect("creating a temporary directory");
    println!(
        "t4 embedded benchmark: data in {}, {} CPUs, values of {VALUE_LEN} B",
        dir.path().display(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    // Always measured: the other sections are compared with it.
    let baseline = fdatasync_baseline(dir.path(), plan.latency_samples);
    println!(
        "fdatasync baseline (write 200 B + fdatasync):    p50 {:>7.1} µs   p99 {:>7.1} µs",
        micros(baseline.p50),
        micros(baseline.p99)
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    // Each group of sections gets a fresh node, so that one does not measure the data
    // another left behind.
    let open = |name: &str| {
        rt.block_on(async {
            let mut config = t4::Config::new(dir.path().join(name));
            config.seed = Some(1);
            Node::open(config).await.expect("opening the node")
        })
    };
    let close = |node: Node| rt.block_on(node.close()).expect("closing the node");

    let node = open("writes");

    if run("latency") {
        let latency = rt.block_on(put_latency(&node, plan.latency_samples));
        println!(
            "single-writer put latency:                      p50 {:>7.1} µs   p99 {:>7.1} µs   \
             p50 = {:.2} × fdatasync p50",
            micros(latency.p50),
            micros(latency.p99),
            latency.p50.as_secs_f64() / baseline.p50.as_secs_f64()
        );
    }

    if run("puts") {
        for writers in [1, 16] {
            let rate = rt.block_on(closed_loop_puts(&node, writers, plan.duration));
            println!(
                "puts/s, {writers:>2} closed-loop writers (each awaits its put): {rate:>9.0}   \
                 (bound {writers} / fdatasync p50 = {:.0})",
                writers as f64 / baseline.p50.as_secs_f64()
            );
        }
    }
    if run("pipelined") {
        let rate = rt.block_on(pipelined_puts(&node, 16, 64, plan.duration));
        println!("puts/s, 16 writers × 64 puts in flight each:    {rate:>9.0}");
    }

    close(node);

    if run("gets") || run("ranges") {
        let node = open("reads");
        let keys = rt.block_on(preload(&node, plan.read_keys));
        if run("gets") {
            let gets = point_gets(&node, &keys, plan.duration);
            println!(
                "point gets/s, one thread ({} keys):        {gets:>9.0}",
                keys.len()
            );
        }
        if run("ranges") {
            let ranges = ranges_of_100(&node, &keys, plan.duration, false);
            println!("100-key ranges/s, one thread ([k, k+100)):      {ranges:>9.0}");
            let limited = ranges_of_100(&node, &keys, plan.duration / 3, true);
            println!(
                "  for contrast, `limit 100` over the rest of the {} keys (etcd counts the \
                 whole range): {limited:.0}/s",
                keys.len()
            );
        }
        close(node);
    }

    if run("fanout") {
        let node = open("fanout");
        let fanout = rt.block_on(watch_fanout(&node, plan.watchers, plan.fanout_puts));
        println!(
            "watch fan-out, {} watchers × {} puts (16 closed-loop writers): {:.0} events \
             delivered/s, put→event p50 {:.1} µs, p99 {:.1} µs",
            plan.watchers,
            plan.fanout_puts,
            fanout.events_per_sec,
            micros(fanout.latency.p50),
            micros(fanout.latency.p99)
        );
        close(node);
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

struct Percentiles {
    p50: Duration,
    p99: Duration,
}

fn percentiles(mut samples: Vec<Duration>) -> Percentiles {
    assert!(!samples.is_empty());
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    Percentiles {
        p50: at(0.50),
        p99: at(0.99),
    }
}

/// What one durable WAL append costs on this disk, without t4: append 200 bytes to a file
/// and fdatasync it, as the WAL thread does for a batch of one small put.
fn fdatasync_baseline(dir: &Path, samples: usize) -> Percentiles {
    let path = dir.join("fdatasync-baseline");
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .expect("creating the baseline file");
    let record = [0x5au8; 200];
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let start = Instant::now();
        file.write_all(&record).expect("write");
        file.sync_data().expect("fdatasync");
        times.push(start.elapsed());
    }
    drop(file);
    std::fs::remove_file(&path).expect("removing the baseline file");
    percentiles(times)
}

fn value() -> Bytes {
    Bytes::from(vec![b'v'; VALUE_LEN])
}

/// `prefix` followed by `n` as nine zero-padded decimal digits — what `format!("{n:09}")`
/// gives, without the formatting machinery: in the pipelined section `format!` was a
/// twentieth of all instructions, which the benchmark would count against t4.
fn numbered_key(prefix: &[u8], n: u64) -> Bytes {
    let mut digits = [b'0'; 9];
    let mut rest = n;
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    let mut key = Vec::with_capacity(prefix.len() + digits.len());
    key.extend_from_slice(prefix);
    key.extend_from_slice(&digits);
    // Checked whenever `cargo test` runs the bench (a debug build).
    debug_assert_eq!(key, [prefix, format!("{n:09}").as_bytes()].concat());
    Bytes::from(key)
}

async fn put_latency(node: &Node, samples: usize) -> Percentiles {
    let value = value();
    let mut times = Vec::with_capacity(samples);
    for i in 0..samples {
        let key = Bytes::from(format!("latency/{i:08}"));
        let start = Instant::now();
        node.put(key, value.clone()).await.expect("put");
        times.push(start.elapsed());
    }
    percentiles(times)
}

/// `writers` tasks, each awaiting its put before sending the next: at most `writers` puts
/// wait for any one fdatasync.
async fn closed_loop_puts(node: &Node, writers: usize, duration: Duration) -> f64 {
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let node = node.clone();
            let prefix = format!("closed{writers}/{w:02}/").into_bytes();
            tokio::spawn(async move {
                let value = value();
                let mut n = 0u64;
                while Instant::now() < deadline {
                    let key = numbered_key(&prefix, n);
                    node.put(key, value.clone()).await.expect("put");
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("writer task");
    }
    total as f64 / start.elapsed().as_secs_f64()
}

/// `writers` tasks, each keeping `depth` puts in flight.
async fn pipelined_puts(node: &Node, writers: usize, depth: usize, duration: Duration) -> f64 {
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let node = node.clone();
            let prefix = format!("pipelined/{w:02}/").into_bytes();
            tokio::spawn(async move {
                let value = value();
                let mut in_flight = FuturesUnordered::new();
                let mut sent = 0u64;
                let mut done = 0u64;
                loop {
                    let open = Instant::now() < deadline;
                    while open && in_flight.len() < depth {
                        let key = numbered_key(&prefix, sent);
                        in_flight.push(node.put(key, value.clone()));
                        sent += 1;
                    }
                    match in_flight.next().await {
                        Some(result) => {
                            result.expect("put");
                            done += 1;
                        }
                        None => return done,
                    }
                }
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("writer task");
    }
    total as f64 / start.elapsed().as_secs_f64()
}

/// Writes `n` keys `read/<index>` (pipelined) and returns them in order.
async fn preload(node: &Node, n: usize) -> Arc<Vec<Bytes>> {
    let keys: Arc<Vec<Bytes>> = Arc::new(
        (0..n)
            .map(|i| Bytes::from(format!("read/{i:08}")))
            .collect(),
    );
    let writers = 16;
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let (node, keys) = (node.clone(), keys.clone());
            tokio::spawn(async move {
                let value = value();
                let mut in_flight = FuturesUnordered::new();
                for key in keys.iter().skip(w).step_by(writers) {
                    in_flight.push(node.put(key.clone(), value.clone()));
                    if in_flight.len() >= 64
                        && let Some(result) = in_flight.next().await
                    {
                        result.expect("put");
                    }
                }
                while let Some(result) = in_flight.next().await {
                    result.expect("put");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("preload task");
    }
    keys
}

/// A small, fast PRNG so the benchmark loop measures t4, not the random number generator.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Random point gets of existing keys, one after another on this thread.
fn point_gets(node: &Node, keys: &[Bytes], duration: Duration) -> f64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime");
    rt.block_on(async {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let start = Instant::now();
        let mut n = 0u64;
        loop {
            for _ in 0..1024 {
                let key = keys[rng.below(keys.len())].clone();
                let kv = node.get(key).await.expect("get");
                assert!(kv.is_some(), "preloaded keys exist");
                n += 1;
            }
            if start.elapsed() >= duration {
                break n as f64 / start.elapsed().as_secs_f64();
            }
        }
    })
}

/// Random ranges of 100 keys on this thread: `[keys[i], keys[i + 100])`, or with `limited`,
/// `limit: 100` from `keys[i]` to the end of the preloaded keys.
fn ranges_of_100(node: &Node, keys: &[Bytes], duration: Duration, limited: bool) -> f64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime");
    let len = 100.min(keys.len() - 1);
    let span = keys.len() - len;
    rt.block_on(async {
        let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
        let start = Instant::now();
        let mut n = 0u64;
        loop {
            for _ in 0..16 {
                let i = rng.below(span);
                let (range_end, limit) = if limited {
                    (Bytes::from_static(b"read0"), len as i64)
                } else {
                    (keys[i + len].clone(), 0)
                };
                let resp = node
                    .range(RangeRequest {
                        key: keys[i].clone(),
                        range_end,
                        limit,
                        ..Default::default()
                    })
                    .await
                    .expect("range");
                assert_eq!(resp.kvs.len(), len);
                n += 1;
            }
            if start.elapsed() >= duration {
                break n as f64 / start.elapsed().as_secs_f64();
            }
        }
    })
}

struct Fanout {
    events_per_sec: f64,
    latency: Percentiles,
}

/// `watchers` watches on one prefix; 16 closed-loop writers put `puts` keys under it, each
/// value carrying the time its put started. Every watcher must receive every event.
async fn watch_fanout(node: &Node, watchers: usize, puts: usize) -> Fanout {
    let origin = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..watchers {
        let mut watch = node
            .watch(KeyRange::prefix("fanout/"), WatchOptions::default())
            .await
            .expect("watch");
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(puts);
            while latencies.len() < puts {
                let batch = watch.next_batch().await.expect("watch events");
                let now = origin.elapsed();
                for event in batch {
                    let sent = u64::from_le_bytes(event.kv.value[..8].try_into().expect("8"));
                    latencies.push(now.saturating_sub(Duration::from_nanos(sent)));
                }
            }
            (latencies, origin.elapsed())
        }));
    }
    let start = origin.elapsed();
    let writers = 16.min(puts);
    let writer_tasks: Vec<_> = (0..writers)
        .map(|w| {
            let node = node.clone();
            tokio::spawn(async move {
                for i in (w..puts).step_by(writers) {
                    let mut value = (origin.elapsed().as_nanos() as u64).to_le_bytes().to_vec();
                    value.resize(VALUE_LEN, b'v');
                    node.put(format!("fanout/{i:08}"), value)
                        .await
                        .expect("put");
                }
            })
        })
        .collect();
    for t in writer_tasks {
        t.await.expect("writer task");
    }
    let mut all = Vec::with_capacity(watchers * puts);
    let mut end = start;
    for t in tasks {
        let (latencies, finished) = t.await.expect("watcher task");
        assert_eq!(latencies.len(), puts, "every watcher gets every event");
        all.extend(latencies);
        end = end.max(finished);
    }
    let events = all.len();
    Fanout {
        events_per_sec: events as f64 / (end - start).as_secs_f64(),
        latency: percentiles(all),
    }
}
