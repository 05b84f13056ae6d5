//! Benchmark of S3 durability (`t4::Node` with an object store) against a real
//! S3-compatible server.
//!
//! ```sh
//! cargo bench -p t4-e2e --bench s3                     # starts moto_server on loopback
//! cargo bench -p t4-e2e --bench s3 -- --keys 200000    # recovery of 200,000 keys
//! cargo bench -p t4-e2e --bench s3 -- --only puts      # some sections
//! cargo bench -p t4-e2e --bench s3 -- --only puts --merge-min-objects 1000000  # no merges
//! cargo bench -p t4-e2e --bench s3 -- --endpoint http://127.0.0.1:9000 --bucket b
//! ```
//!
//! Sections: `puts` (throughput, latency and requests per 1,000 writes with sync upload at 1,
//! 16 and 64 closed-loop writers, beside the same without an object store) and `recovery`
//! (write `--keys` keys, checkpoint, change 1 % of them, checkpoint again, write a few more,
//! then recover the whole state from the bucket onto an empty data dir).
//!
//! Without `--endpoint`, it starts `moto_server` (installed by
//! `scripts/install-test-deps.sh`) on a free loopback port and creates a bucket. With
//! `--endpoint`, the bucket must exist and credentials come from the standard AWS
//! environment. Every request t4 makes goes through a counting [`ObjectStore`] wrapper, so
//! the requests per write and the bytes per checkpoint are exact. Results are recorded in
//! docs/benchmarks.md. moto is an in-memory Python server: its latencies are moto's, not S3's.
//!
//! Run by `cargo test` (no `--bench` argument), it does a small version of every section
//! (a few hundred keys, well under 10 s) and asserts that the numbers are sane, so it is a
//! test too.

// A benchmark measures wall-clock time; `expect` on setup failures is the right answer here.
#![allow(clippy::disallowed_methods, clippy::unwrap_used)]

use std::fmt;
use std::ops::Range;
use std::path::Path as FsPath;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use t4::object_store::path::Path;
use t4::object_store::{
    self, CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};
use t4::{Node, PutRequest, RangeRequest, RemoteConfig, RequestOp, TxnRequest};
use t4_e2e::moto::{self, Moto};
use t4_server::s3::S3Args;

/// How much work each section does.
struct Plan {
    /// How long each throughput run lasts.
    duration: Duration,
    /// Keys written before the recovery is timed.
    keys: u64,
    /// Puts after the last checkpoint, which recovery replays from the log.
    extra: u64,
    /// `RemoteConfig::merge_min_objects`; `None`: t4's default. A diagnostic: a huge value
    /// turns merging off, to see what merges cost the writers.
    merge_min_objects: Option<usize>,
}

const FULL: Plan = Plan {
    duration: Duration::from_secs(4),
    keys: 1_000_000,
    extra: 100,
    merge_min_objects: None,
};

const SMOKE: Plan = Plan {
    duration: Duration::from_millis(300),
    keys: 500,
    extra: 20,
    merge_min_objects: None,
};

const KEY_LEN: usize = 64;
const VALUE_LEN: usize = 256;
/// Puts per txn when loading keys (`Config::max_txn_ops` by default).
const TXN_PUTS: usize = 128;
/// Concurrent txn writers when loading keys.
const LOAD_WRITERS: usize = 16;
const WRITERS: [usize; 3] = [1, 16, 64];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value_of = |flag: &str| {
        args.iter().position(|a| a == flag).map(|i| {
            args.get(i + 1)
                .unwrap_or_else(|| panic!("{flag} needs a value"))
        })
    };
    // `cargo bench` passes `--bench`; `cargo test` runs benches without it.
    let full = args.iter().any(|a| a == "--bench");
    let mut plan = if full { FULL } else { SMOKE };
    if let Some(n) = value_of("--keys") {
        plan.keys = n.parse().expect("--keys needs a number");
    }
    if let Some(m) = value_of("--merge-min-objects") {
        plan.merge_min_objects = Some(m.parse().expect("--merge-min-objects needs a number"));
    }
    if let Some(s) = value_of("--seconds") {
        plan.duration = Duration::from_secs_f64(s.parse().expect("--seconds needs a number"));
    }
    let only: Option<Vec<String>> =
        value_of("--only").map(|list| list.split(',').map(str::to_string).collect());
    let run = |section: &str| only.as_ref().is_none_or(|o| o.iter().any(|s| s == section));

    // Kept alive until the end: dropping it kills moto.
    let (moto, endpoint, bucket) = match (value_of("--endpoint"), value_of("--bucket")) {
        (Some(endpoint), Some(bucket)) => (None, endpoint.clone(), bucket.clone()),
        (None, None) => {
            let moto = Moto::start("t4-bench");
            let (endpoint, bucket) = (moto.endpoint.clone(), moto.bucket.clone());
            (Some(moto), endpoint, bucket)
        }
        _ => panic!("--endpoint and --bucket go together"),
    };
    let s3 = s3_client(&endpoint, &bucket, moto.is_some());
    let store = Counting::new(s3);
    // A fresh prefix per run, so that a reused bucket starts empty for us.
    let run_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let prefix = |name: &str| format!("t4-bench-{run_id}/{name}");

    let base = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&base).expect("creating the benchmark directory");
    let dir = tempfile::tempdir_in(&base).expect("creating a temporary directory");
    println!(
        "t4 S3 durability benchmark: bucket {bucket} at {endpoint}{}, data in {}, {} CPUs, \
         keys of {KEY_LEN} B, values of {VALUE_LEN} B",
        if moto.is_some() {
            " (moto_server started by the bench)"
        } else {
            ""
        },
        dir.path().display(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");

    if run("puts") {
        rt.block_on(puts_section(&plan, dir.path(), &store, &prefix, full));
    }
    if run("recovery") {
        rt.block_on(recovery_section(
            &plan,
            dir.path(),
            &store,
            &prefix("recovery"),
        ));
    }
}

// ---------------------------------------------------------------------------------------
// The S3 server and client.

/// The S3 client `t4 run` builds from its `--s3-*` flags (`t4_server::s3::S3Args`): for
/// our own moto its dummy credentials and region; otherwise the AWS environment.
fn s3_client(endpoint: &str, bucket: &str, moto: bool) -> Arc<dyn ObjectStore> {
    let mut args = S3Args {
        s3_bucket: Some(bucket.to_string()),
        s3_endpoint: Some(endpoint.to_string()),
        ..S3Args::default()
    };
    if moto {
        args.s3_region = Some(moto::REGION.to_string());
        args.s3_access_key_id = Some(moto::ACCESS_KEY.to_string());
        args.s3_secret_access_key = Some(moto::SECRET_KEY.to_string());
    }
    args.require_store().expect("an S3 client")
}

// ---------------------------------------------------------------------------------------
// The counting object store.

/// What an object is, by t4's layout (docs/object-store-layout.md): the directory it is in
/// (`wal/`, `seg/`, `ckp/`, `data/`) or its name (`writer`, `manifest`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Wal,
    Seg,
    Ckp,
    Data,
    Manifest,
    Writer,
    Other,
}

const KINDS: [Kind; 7] = [
    Kind::Wal,
    Kind::Seg,
    Kind::Ckp,
    Kind::Data,
    Kind::Manifest,
    Kind::Writer,
    Kind::Other,
];

impl Kind {
    fn of(location: &Path) -> Kind {
        let mut parts = location.as_ref().rsplit('/');
        let name = parts.next().unwrap_or("");
        match (parts.next().unwrap_or(""), name) {
            ("wal", _) => Kind::Wal,
            ("seg", _) => Kind::Seg,
            ("ckp", _) => Kind::Ckp,
            ("data", _) => Kind::Data,
            (_, "manifest") => Kind::Manifest,
            (_, "writer") => Kind::Writer,
            _ => Kind::Other,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Wal => "wal",
            Kind::Seg => "seg",
            Kind::Ckp => "ckp",
            Kind::Data => "data",
            Kind::Manifest => "manifest",
            Kind::Writer => "writer",
            Kind::Other => "other",
        }
    }
}

/// Request counters, per object kind where the request names one object.
#[derive(Default)]
struct Counters {
    puts: [AtomicU64; KINDS.len()],
    put_bytes: [AtomicU64; KINDS.len()],
    gets: [AtomicU64; KINDS.len()],
    get_bytes: [AtomicU64; KINDS.len()],
    lists: AtomicU64,
    /// Objects deleted (S3 deletes up to 1,000 per `DeleteObjects` request).
    deletes: AtomicU64,
    /// `delete_stream` calls: t4 sends at most 1,000 keys per call, so on S3 each is one
    /// `DeleteObjects` request.
    delete_requests: AtomicU64,
    /// Everything else (multipart uploads, copies, renames): t4 is expected to make none.
    other: AtomicU64,
}

/// A copy of the counters at one moment; subtract two to get what happened in between.
#[derive(Clone, Copy, Debug, Default)]
struct Snapshot {
    puts: [u64; KINDS.len()],
    put_bytes: [u64; KINDS.len()],
    gets: [u64; KINDS.len()],
    get_bytes: [u64; KINDS.len()],
    lists: u64,
    deletes: u64,
    delete_requests: u64,
    other: u64,
}

impl Snapshot {
    fn puts_of(&self, kind: Kind) -> u64 {
        self.puts[kind as usize]
    }
    fn put_bytes_of(&self, kind: Kind) -> u64 {
        self.put_bytes[kind as usize]
    }
    fn total_puts(&self) -> u64 {
        self.puts.iter().sum()
    }
    fn total_put_bytes(&self) -> u64 {
        self.put_bytes.iter().sum()
    }
    fn total_gets(&self) -> u64 {
        self.gets.iter().sum()
    }
    fn total_get_bytes(&self) -> u64 {
        self.get_bytes.iter().sum()
    }
    /// `kind=count` for every kind with a request, e.g. `wal=12 manifest=1`.
    fn breakdown(counts: &[u64; KINDS.len()]) -> String {
        let parts: Vec<String> = KINDS
            .iter()
            .filter(|k| counts[**k as usize] > 0)
            .map(|k| format!("{}={}", k.name(), counts[*k as usize]))
            .collect();
        if parts.is_empty() {
            "-".into()
        } else {
            parts.join(" ")
        }
    }
}

impl std::ops::Sub for Snapshot {
    type Output = Snapshot;
    fn sub(self, before: Snapshot) -> Snapshot {
        let sub = |a: [u64; KINDS.len()], b: [u64; KINDS.len()]| {
            std::array::from_fn(|i| a[i].saturating_sub(b[i]))
        };
        Snapshot {
            puts: sub(self.puts, before.puts),
            put_bytes: sub(self.put_bytes, before.put_bytes),
            gets: sub(self.gets, before.gets),
            get_bytes: sub(self.get_bytes, before.get_bytes),
            lists: self.lists - before.lists,
            deletes: self.deletes - before.deletes,
            delete_requests: self.delete_requests - before.delete_requests,
            other: self.other - before.other,
        }
    }
}

/// An [`ObjectStore`] that forwards every call to `inner` and counts the requests.
#[derive(Clone, Debug)]
struct Counting {
    inner: Arc<dyn ObjectStore>,
    counters: Arc<Counters>,
}

impl Counting {
    fn new(inner: Arc<dyn ObjectStore>) -> Counting {
        Counting {
            inner,
            counters: Arc::default(),
        }
    }

    fn snapshot(&self) -> Snapshot {
        let c = &self.counters;
        let load =
            |a: &[AtomicU64; KINDS.len()]| std::array::from_fn(|i| a[i].load(Ordering::Relaxed));
        Snapshot {
            puts: load(&c.puts),
            put_bytes: load(&c.put_bytes),
            gets: load(&c.gets),
            get_bytes: load(&c.get_bytes),
            lists: c.lists.load(Ordering::Relaxed),
            deletes: c.deletes.load(Ordering::Relaxed),
            delete_requests: c.delete_requests.load(Ordering::Relaxed),
            other: c.other.load(Ordering::Relaxed),
        }
    }

    fn store(&self) -> Arc<dyn ObjectStore> {
        Arc::new(self.clone())
    }
}

impl fmt::Debug for Counters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Counters")
    }
}

impl fmt::Display for Counting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Counting({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for Counting {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let kind = Kind::of(location) as usize;
        // Counted whether or not it succeeds: a refused conditional PUT is still a request.
        self.counters.puts[kind].fetch_add(1, Ordering::Relaxed);
        self.counters.put_bytes[kind].fetch_add(payload.content_length() as u64, Ordering::Relaxed);
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.counters.other.fetch_add(1, Ordering::Relaxed);
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let kind = Kind::of(location) as usize;
        self.counters.gets[kind].fetch_add(1, Ordering::Relaxed);
        let got = self.inner.get_opts(location, options).await?;
        self.counters.get_bytes[kind].fetch_add(got.range.end - got.range.start, Ordering::Relaxed);
        Ok(got)
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        let kind = Kind::of(location) as usize;
        self.counters.gets[kind].fetch_add(ranges.len() as u64, Ordering::Relaxed);
        let got = self.inner.get_ranges(location, ranges).await?;
        let bytes: usize = got.iter().map(Bytes::len).sum();
        self.counters.get_bytes[kind].fetch_add(bytes as u64, Ordering::Relaxed);
        Ok(got)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.counters
            .delete_requests
            .fetch_add(1, Ordering::Relaxed);
        let counters = self.counters.clone();
        let counted = locations
            .inspect(move |_| {
                counters.deletes.fetch_add(1, Ordering::Relaxed);
            })
            .boxed();
        self.inner.delete_stream(counted)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.counters.lists.fetch_add(1, Ordering::Relaxed);
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.counters.lists.fetch_add(1, Ordering::Relaxed);
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.counters.lists.fetch_add(1, Ordering::Relaxed);
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.counters.other.fetch_add(1, Ordering::Relaxed);
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.counters.other.fetch_add(1, Ordering::Relaxed);
        self.inner.rename_opts(from, to, options).await
    }
}

// ---------------------------------------------------------------------------------------
// Nodes, keys and values.

/// A node on `data_dir`; with `store`, durable in it under `prefix` (sync upload), with
/// automatic checkpoints off so that only the bench's own checkpoints happen.
async fn open(plan: &Plan, data_dir: &FsPath, store: Option<&Counting>, prefix: &str) -> Node {
    let mut config = t4::Config::new(data_dir);
    config.seed = Some(1);
    if let Some(store) = store {
        config.object_store = Some(store.store());
        config.object_prefix = prefix.to_string();
        config.remote = RemoteConfig {
            sync_upload: true,
            checkpoint_interval: Duration::from_secs(24 * 3600),
            checkpoint_entries: u64::MAX,
            ..RemoteConfig::default()
        };
        if let Some(m) = plan.merge_min_objects {
            config.remote.merge_min_objects = m;
        }
    }
    Node::open(config).await.expect("opening the node")
}

/// A key of exactly [`KEY_LEN`] bytes: `tag/<n>` padded with `.`.
fn key(tag: &str, n: u64) -> Bytes {
    let mut key = format!("{tag}/{n:016}").into_bytes();
    assert!(key.len() <= KEY_LEN, "tag {tag:?} too long");
    key.resize(KEY_LEN, b'.');
    Bytes::from(key)
}

fn value(fill: u8) -> Bytes {
    Bytes::from(vec![fill; VALUE_LEN])
}

/// The first key after every key starting with `prefix`.
fn prefix_end(prefix: &str) -> Bytes {
    let mut end = prefix.as_bytes().to_vec();
    *end.last_mut().expect("a non-empty prefix") += 1;
    Bytes::from(end)
}

/// How many keys start with `prefix`.
async fn count(node: &Node, prefix: &str) -> i64 {
    node.range(RangeRequest {
        key: Bytes::from(prefix.to_string()),
        range_end: prefix_end(prefix),
        count_only: true,
        ..Default::default()
    })
    .await
    .expect("counting keys")
    .count
}

// ---------------------------------------------------------------------------------------
// Section 1 and 2: put throughput, latency, requests per write.

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
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

/// What one closed-loop run measured.
struct Run {
    puts: u64,
    rate: f64,
    latency: Percentiles,
}

/// `writers` tasks, each awaiting its put before sending the next, for `duration`.
async fn closed_loop_puts(node: &Node, writers: usize, duration: Duration) -> Run {
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let node = node.clone();
            tokio::spawn(async move {
                let value = value(b'v');
                let mut times = Vec::new();
                let mut n = 0u64;
                while Instant::now() < deadline {
                    let key = key(&format!("w{writers}/{w:02}"), n);
                    let started = Instant::now();
                    node.put(key, value.clone()).await.expect("put");
                    times.push(started.elapsed());
                    n += 1;
                }
                times
            })
        })
        .collect();
    let mut times = Vec::new();
    for t in tasks {
        times.extend(t.await.expect("writer task"));
    }
    let elapsed = start.elapsed();
    Run {
        puts: times.len() as u64,
        rate: times.len() as f64 / elapsed.as_secs_f64(),
        latency: percentiles(times),
    }
}

/// Throughput and latency at 1, 16 and 64 writers, local-only and with sync upload, and the
/// requests the sync runs made per 1,000 writes (start-up requests excluded).
async fn puts_section(
    plan: &Plan,
    dir: &FsPath,
    store: &Counting,
    prefix: &dyn Fn(&str) -> String,
    full: bool,
) {
    println!();
    println!(
        "== puts: closed-loop writers, {:.1} s per run, sync upload vs local only",
        plan.duration.as_secs_f64()
    );
    println!(
        "{:<26} {:>9} {:>11} {:>11}   per 1,000 writes (steady state)",
        "", "puts/s", "p50 ms", "p99 ms"
    );
    for writers in WRITERS {
        let local_dir = dir.join(format!("local-{writers}"));
        let node = open(plan, &local_dir, None, "").await;
        let local = closed_loop_puts(&node, writers, plan.duration).await;
        node.close().await.expect("closing the node");
        println!(
            "{:<26} {:>9.0} {:>11.3} {:>11.3}",
            format!("{writers:>2} writers, local only"),
            local.rate,
            millis(local.latency.p50),
            millis(local.latency.p99),
        );

        let s3_dir = dir.join(format!("s3-{writers}"));
        let node = open(
            plan,
            &s3_dir,
            Some(store),
            &prefix(&format!("puts-{writers}")),
        )
        .await;
        // Everything before this (term, manifest, marker) is start-up, not per write.
        let before = store.snapshot();
        let sync = closed_loop_puts(&node, writers, plan.duration).await;
        let requests = store.snapshot() - before;
        node.close().await.expect("closing the node");
        let per_k = |n: u64| n as f64 * 1000.0 / sync.puts as f64;
        println!(
            "{:<26} {:>9.0} {:>11.3} {:>11.3}   PUT {:.0} (wal {:.0}, seg {:.1}, manifest {:.1}), \
             GET {:.1}, LIST {:.1}, DELETE {:.1}; {:.0} KB up",
            format!("{writers:>2} writers, sync upload"),
            sync.rate,
            millis(sync.latency.p50),
            millis(sync.latency.p99),
            per_k(requests.total_puts()),
            per_k(requests.puts_of(Kind::Wal)),
            per_k(requests.puts_of(Kind::Seg)),
            per_k(requests.puts_of(Kind::Manifest)),
            per_k(requests.total_gets()),
            per_k(requests.lists),
            per_k(requests.deletes),
            per_k(requests.total_put_bytes()) / 1000.0,
        );
        println!(
            "{:<26} {} writes: PUTs {}, GETs {}, LISTs {}, objects deleted {} in {} requests",
            "",
            sync.puts,
            Snapshot::breakdown(&requests.puts),
            Snapshot::breakdown(&requests.gets),
            requests.lists,
            requests.deletes,
            requests.delete_requests
        );

        // A closed-loop writer has one put in flight, so a batch holds at most `writers`
        // puts, and sync upload makes one `wal/` PUT per batch.
        let wal = requests.puts_of(Kind::Wal);
        assert!(sync.puts > 0 && local.puts > 0, "both runs made progress");
        assert!(
            wal * writers as u64 >= sync.puts,
            "sync upload: {wal} wal PUTs for {} acknowledged puts by {writers} writers; a \
             batch holds at most {writers}",
            sync.puts
        );
        assert!(
            wal <= sync.puts + 1,
            "at most one wal PUT per write (+ the one in flight at the end): {wal} for {}",
            sync.puts
        );
        assert_eq!(
            requests.other, 0,
            "t4 makes no multipart, copy or rename requests"
        );
        if !full {
            assert!(
                sync.latency.p50 < Duration::from_secs(5),
                "sync put latency on loopback"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Sections 3 and 4: checkpoints and recovery.

/// Puts `key(tag, i)` = `fill` for every `i` in `indexes`, in txns of [`TXN_PUTS`] puts
/// from [`LOAD_WRITERS`] concurrent writers. Prints its progress every 10 s, so that a
/// slow load of many keys shows how long it will take.
async fn load(node: &Node, tag: &'static str, indexes: Vec<u64>, fill: u8) {
    let total = indexes.len();
    let chunks: Arc<Vec<Vec<u64>>> =
        Arc::new(indexes.chunks(TXN_PUTS).map(<[u64]>::to_vec).collect());
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let progress = {
        let done = done.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                let done = done.load(Ordering::Relaxed);
                println!(
                    "  ... {done} of {total} keys written, {:.0} keys/s",
                    done as f64 / started.elapsed().as_secs_f64()
                );
            }
        })
    };
    let tasks: Vec<_> = (0..LOAD_WRITERS)
        .map(|w| {
            let (node, chunks, done) = (node.clone(), chunks.clone(), done.clone());
            tokio::spawn(async move {
                let value = value(fill);
                for chunk in chunks.iter().skip(w).step_by(LOAD_WRITERS) {
                    let success = chunk
                        .iter()
                        .map(|i| {
                            RequestOp::Put(PutRequest {
                                key: key(tag, *i),
                                value: value.clone(),
                                ..Default::default()
                            })
                        })
                        .collect();
                    let txn = TxnRequest {
                        compare: vec![],
                        success,
                        failure: vec![],
                    };
                    assert!(node.txn(txn).await.expect("txn").succeeded);
                    done.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("load task");
    }
    progress.abort();
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

/// Writes `plan.keys` keys, checkpoints, changes 1 % of them, checkpoints again (the bytes
/// of both), writes `plan.extra` more, closes, deletes the data dir and times recovery from
/// the bucket.
async fn recovery_section(plan: &Plan, dir: &FsPath, store: &Counting, prefix: &str) {
    let n = plan.keys;
    println!();
    println!("== checkpoints and recovery: {n} keys, sync upload");
    let data_dir = dir.join("recovery");
    let node = open(plan, &data_dir, Some(store), prefix).await;

    let started = Instant::now();
    load(&node, "rec", (0..n).collect(), b'a').await;
    let loaded = started.elapsed();
    println!(
        "loaded {n} keys in txns of {TXN_PUTS} puts from {LOAD_WRITERS} writers: {:.1} s \
         ({:.0} keys/s)",
        loaded.as_secs_f64(),
        n as f64 / loaded.as_secs_f64()
    );

    let before = store.snapshot();
    let started = Instant::now();
    let first = node.checkpoint().await.expect("first checkpoint");
    let took = started.elapsed();
    let first_io = store.snapshot() - before;
    let first_bytes = first_io.put_bytes_of(Kind::Data) + first_io.put_bytes_of(Kind::Ckp);
    println!(
        "checkpoint of {n} keys:        {:>10.3} MB uploaded (t4 reports {:.3} MB), {} data \
         files, {:.1} s",
        mb(first_bytes),
        mb(first.uploaded_bytes),
        first_io.puts_of(Kind::Data),
        took.as_secs_f64()
    );

    let changed: Vec<u64> = (0..n).step_by(100).collect();
    let changed_count = changed.len() as u64;
    load(&node, "rec", changed, b'b').await;
    let before = store.snapshot();
    let started = Instant::now();
    let second = node.checkpoint().await.expect("second checkpoint");
    let took = started.elapsed();
    let second_io = store.snapshot() - before;
    let second_bytes = second_io.put_bytes_of(Kind::Data) + second_io.put_bytes_of(Kind::Ckp);
    let ratio = second_bytes as f64 / first_bytes as f64;
    println!(
        "checkpoint, 1 % changed ({changed_count} keys): {:>10.3} MB uploaded (t4 reports {:.3} \
         MB), {} data files, {:.2} s; {:.2} % of the first",
        mb(second_bytes),
        mb(second.uploaded_bytes),
        second_io.puts_of(Kind::Data),
        took.as_secs_f64(),
        ratio * 100.0
    );
    // What the changed keys alone weigh in a data file (their records, not the file header).
    let payload = changed_count * (KEY_LEN + VALUE_LEN) as u64;
    println!(
        "  the changed keys and values are {:.3} MB: the delta checkpoint uploaded {:.2}× that",
        mb(payload),
        second_bytes as f64 / payload as f64
    );

    for i in 0..plan.extra {
        node.put(key("rec/extra", i), value(b'c'))
            .await
            .expect("put after the checkpoint");
    }
    let revision = node.current_revision();
    node.close().await.expect("closing the node");
    std::fs::remove_dir_all(&data_dir).expect("deleting the data dir");

    let before = store.snapshot();
    let started = Instant::now();
    let node = open(plan, &data_dir, Some(store), prefix).await;
    let recovery = started.elapsed();
    let io = store.snapshot() - before;
    let keys = count(&node, "rec/").await;
    println!(
        "recovery of {keys} keys onto an empty data dir: {:.2} s; {} GETs ({}), {:.1} MB \
         down, {} LISTs, {} PUTs ({})",
        recovery.as_secs_f64(),
        io.total_gets(),
        Snapshot::breakdown(&io.gets),
        mb(io.total_get_bytes()),
        io.lists,
        io.total_puts(),
        Snapshot::breakdown(&io.puts),
    );

    assert_eq!(
        keys as u64,
        n + plan.extra,
        "recovery restores every key, the extra ones too"
    );
    assert!(
        node.current_revision() >= revision,
        "recovered revision {} < {revision} written before",
        node.current_revision()
    );
    let changed = node.get(key("rec", 0)).await.expect("get").expect("key 0");
    assert_eq!(changed.value, value(b'b'), "key 0 has its changed value");
    let unchanged = node.get(key("rec", 1)).await.expect("get").expect("key 1");
    assert_eq!(unchanged.value, value(b'a'), "key 1 has its first value");
    assert!(io.total_gets() > 0, "recovery read the bucket");
    assert!(
        first_bytes >= n * (KEY_LEN + VALUE_LEN) as u64 / 2,
        "a full checkpoint"
    );
    assert!(
        second_bytes < first_bytes / 4,
        "a 1 % change uploads a delta ({second_bytes} B), not a new base ({first_bytes} B)"
    );
    node.close().await.expect("closing the node");
}
