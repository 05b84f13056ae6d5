//! Running a workload: connections, preload, the client tasks, the watch measurement.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use hdrhistogram::Histogram;
use rand::rngs::SmallRng;
use rand::{Rng as _, RngCore as _, SeedableRng as _};
use t4_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use t4_proto::etcdserverpb::request_op::Request;
use t4_proto::etcdserverpb::response_op::Response;
use t4_proto::etcdserverpb::watch_client::WatchClient;
use t4_proto::etcdserverpb::watch_request::RequestUnion;
use t4_proto::etcdserverpb::{
    Compare, PutRequest, RangeRequest, RangeResponse, RequestOp, TxnRequest, WatchCreateRequest,
    WatchRequest,
};
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

use super::report::{LatencySummary, Report};
use super::unary::KvConn;
use super::{Plan, Workload};

/// Puts per txn when preloading; below etcd's default limit of 128 operations per txn.
const PRELOAD_BATCH: u64 = 64;

/// How long the watch workload waits for the events of the last puts.
const WATCH_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A txn compare-and-swap gives up after this many conflicts in a row.
const MAX_CAS_ATTEMPTS: u32 = 100;

/// Runs the plan; `progress` prints what happens before the measurement to stderr.
pub(crate) async fn run(plan: &Plan, progress: bool) -> anyhow::Result<Report> {
    let conns = connect(plan).await?;
    let plan = Arc::new(plan.clone());
    if plan.workload.preloads() {
        if progress {
            eprintln!("preloading {} keys...", plan.keys.keyspace());
        }
        preload(&plan, &conns).await?;
    }
    match plan.workload {
        Workload::Watch => run_watch(plan, &conns).await,
        Workload::Txn => {
            let known = learn_mod_revisions(&plan, &conns[0]).await?;
            run_clients(plan, &conns, known).await
        }
        _ => run_clients(plan, &conns, HashMap::new()).await,
    }
}

/// The mod revision of every benchmark key that exists, so that the `txn` clients start from
/// what a real compare-and-swap client would have read, instead of conflicting on the first
/// touch of keys left by an earlier run.
async fn learn_mod_revisions(plan: &Plan, conn: &KvConn) -> anyhow::Result<HashMap<u64, i64>> {
    let mut kv = conn.clone();
    let end = plan
        .keys
        .prefix_end()
        .expect("validated by BenchArgs::plan");
    let mut from = plan.keys.prefix().to_vec();
    let mut known = HashMap::new();
    loop {
        let resp = kv
            .range(&RangeRequest {
                key: from.clone(),
                range_end: end.clone(),
                limit: 1_000,
                keys_only: true,
                ..Default::default()
            })
            .await
            .context("reading the mod revisions of existing keys")?;
        for kv in &resp.kvs {
            if let Some(i) = plan.keys.index(&kv.key) {
                known.insert(i, kv.mod_revision);
            }
        }
        match next_page(&resp) {
            Some(next) => from = next,
            None => break,
        }
    }
    Ok(known)
}

/// Where the page after `page` starts (just after its last key), if the range has more.
fn next_page(page: &RangeResponse) -> Option<Vec<u8>> {
    let last = page.kvs.last().filter(|_| page.more)?;
    Some(t4_core::kv::key_after(&last.key).to_vec())
}

/// Opens `--conns` connections for KV calls, round-robin over the endpoints.
async fn connect(plan: &Plan) -> anyhow::Result<Vec<KvConn>> {
    let mut conns = Vec::with_capacity(plan.conns);
    for i in 0..plan.conns {
        conns.push(KvConn::connect(&plan.endpoints[i % plan.endpoints.len()]).await?);
    }
    Ok(conns)
}

/// A tonic connection to the first endpoint, for the watch stream.
async fn connect_watch(plan: &Plan) -> anyhow::Result<Channel> {
    let uri = &plan.endpoints[0];
    Endpoint::from_shared(uri.clone())
        .with_context(|| format!("bad endpoint {uri}"))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .with_context(|| format!("cannot connect to {uri}"))
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("constant bounds are valid")
}

/// Writes every key of the keyspace (in txns of `PRELOAD_BATCH` puts) so reads find them.
async fn preload(plan: &Arc<Plan>, conns: &[KvConn]) -> anyhow::Result<()> {
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..plan.clients.max(conns.len()) {
        let mut kv = conns[i % conns.len()].clone();
        let plan = Arc::clone(plan);
        let next = Arc::clone(&next);
        let value = random_value(plan.value_size, i as u64);
        tasks.push(tokio::spawn(async move {
            loop {
                let start = next.fetch_add(PRELOAD_BATCH, Ordering::Relaxed);
                if start >= plan.keys.keyspace() {
                    return Ok::<(), tonic::Status>(());
                }
                let end = (start + PRELOAD_BATCH).min(plan.keys.keyspace());
                let success = (start..end)
                    .map(|k| RequestOp {
                        request: Some(Request::RequestPut(PutRequest {
                            key: plan.keys.key(k),
                            value: value.clone(),
                            ..Default::default()
                        })),
                    })
                    .collect();
                kv.txn(&TxnRequest {
                    success,
                    ..Default::default()
                })
                .await?;
            }
        }));
    }
    for task in tasks {
        task.await
            .context("preload task panicked")?
            .context("preloading keys")?;
    }
    Ok(())
}

fn random_value(size: usize, seed: u64) -> Vec<u8> {
    let mut value = vec![0; size];
    SmallRng::seed_from_u64(0x7461_6c75_6500 ^ seed).fill_bytes(&mut value);
    value
}

/// Hands out operation numbers until `--ops` or `--duration` is reached.
struct Budget {
    next: AtomicU64,
    limit: Option<u64>,
    deadline: Option<Instant>,
}

impl Budget {
    fn new(plan: &Plan) -> Budget {
        Budget {
            next: AtomicU64::new(0),
            limit: plan.ops,
            deadline: plan.duration.map(|d| Instant::now() + d),
        }
    }

    fn claim(&self) -> Option<u64> {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return None;
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        match self.limit {
            Some(limit) if n >= limit => None,
            _ => Some(n),
        }
    }
}

/// What one client task measured.
struct ClientStats {
    latency: Histogram<u64>,
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    counters: BTreeMap<&'static str, u64>,
}

impl ClientStats {
    fn new() -> ClientStats {
        ClientStats {
            latency: new_histogram(),
            ok: 0,
            errors: 0,
            first_error: None,
            counters: BTreeMap::new(),
        }
    }

    fn count(&mut self, name: &'static str, n: u64) {
        *self.counters.entry(name).or_default() += n;
    }

    fn error(&mut self, e: impl std::fmt::Display) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(e.to_string());
        }
    }

    fn merge(&mut self, other: ClientStats) {
        self.latency
            .add(&other.latency)
            .expect("histograms with the same bounds merge");
        self.ok += other.ok;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        for (name, n) in other.counters {
            self.count(name, n);
        }
    }
}

/// One client task of the non-watch workloads.
struct Client {
    id: usize,
    plan: Arc<Plan>,
    kv: KvConn,
    rng: SmallRng,
    value: Vec<u8>,
    /// `txn`: the last mod revision this client saw of each of its keys.
    mod_revisions: HashMap<u64, i64>,
}

impl Client {
    fn random_key(&mut self) -> u64 {
        self.rng.random_range(0..self.plan.keys.keyspace())
    }

    fn get(&self, key: u64) -> RangeRequest {
        RangeRequest {
            key: self.plan.keys.key(key),
            serializable: self.plan.serializable,
            ..Default::default()
        }
    }

    fn put(&self, key: u64) -> PutRequest {
        PutRequest {
            key: self.plan.keys.key(key),
            value: self.value.clone(),
            ..Default::default()
        }
    }

    /// Performs operation `n`; counts workload-specific events in `stats`.
    async fn op(&mut self, n: u64, stats: &mut ClientStats) -> Result<(), tonic::Status> {
        match self.plan.workload {
            Workload::SeqPut | Workload::ParPut => {
                let req = self.put(n % self.plan.keys.keyspace());
                self.kv.put(&req).await?;
            }
            Workload::SeqGet | Workload::ParGet => {
                let key = self.random_key();
                let resp = self.kv.range(&self.get(key)).await?;
                if resp.kvs.is_empty() {
                    stats.count("misses", 1);
                }
            }
            Workload::Mixed => {
                let key = self.random_key();
                if self.rng.random::<f64>() < self.plan.read_ratio {
                    let resp = self.kv.range(&self.get(key)).await?;
                    stats.count("gets", 1);
                    if resp.kvs.is_empty() {
                        stats.count("misses", 1);
                    }
                } else {
                    self.kv.put(&self.put(key)).await?;
                    stats.count("puts", 1);
                }
            }
            Workload::Range => {
                let size = self.plan.range_size;
                let start = self.rng.random_range(0..=self.plan.keys.keyspace() - size);
                let req = RangeRequest {
                    key: self.plan.keys.key(start),
                    range_end: self.plan.keys.key(start + size),
                    limit: size as i64,
                    serializable: self.plan.serializable,
                    ..Default::default()
                };
                let resp = self.kv.range(&req).await?;
                stats.count("keys-read", resp.kvs.len() as u64);
            }
            Workload::List => self.list(stats).await?,
            Workload::Txn => self.compare_and_swap(stats).await?,
            Workload::Watch => unreachable!("the watch workload has its own driver"),
        }
        Ok(())
    }

    /// Pages through the whole keyspace, `--range-size` keys at a time, every page at the
    /// first page's revision, as a Kubernetes list with `limit` and continue tokens does.
    async fn list(&mut self, stats: &mut ClientStats) -> Result<(), tonic::Status> {
        let end = self
            .plan
            .keys
            .prefix_end()
            .expect("validated by BenchArgs::plan");
        let mut from = self.plan.keys.prefix().to_vec();
        let mut revision = 0;
        loop {
            let req = RangeRequest {
                key: from,
                range_end: end.clone(),
                limit: self.plan.range_size as i64,
                revision,
                serializable: self.plan.serializable,
                ..Default::default()
            };
            let resp = self.kv.range(&req).await?;
            stats.count("pages", 1);
            stats.count("keys-read", resp.kvs.len() as u64);
            if revision == 0 {
                revision = resp.header.as_ref().map_or(0, |h| h.revision);
            }
            match next_page(&resp) {
                Some(next) => from = next,
                None => return Ok(()),
            }
        }
    }

    /// `If(mod(k) == last seen) Then(Put k) Else(Get k)`, retried with the `Else` branch's
    /// answer until it succeeds.
    async fn compare_and_swap(&mut self, stats: &mut ClientStats) -> Result<(), tonic::Status> {
        // Client `id` of `clients` owns the keys congruent to `id`, so clients never conflict.
        let clients = self.plan.clients as u64;
        let id = self.id as u64;
        let owned = (self.plan.keys.keyspace() - id).div_ceil(clients);
        let key = id + clients * self.rng.random_range(0..owned);
        for _ in 0..MAX_CAS_ATTEMPTS {
            let expected = self.mod_revisions.get(&key).copied().unwrap_or(0);
            let req = TxnRequest {
                compare: vec![Compare {
                    result: CompareResult::Equal as i32,
                    target: CompareTarget::Mod as i32,
                    key: self.plan.keys.key(key),
                    target_union: Some(TargetUnion::ModRevision(expected)),
                    ..Default::default()
                }],
                success: vec![RequestOp {
                    request: Some(Request::RequestPut(self.put(key))),
                }],
                failure: vec![RequestOp {
                    request: Some(Request::RequestRange(RangeRequest {
                        key: self.plan.keys.key(key),
                        ..Default::default()
                    })),
                }],
            };
            let resp = self.kv.txn(&req).await?;
            if resp.succeeded {
                let revision = resp.header.map_or(0, |h| h.revision);
                self.mod_revisions.insert(key, revision);
                return Ok(());
            }
            stats.count("conflicts", 1);
            let current = match resp.responses.into_iter().next().and_then(|r| r.response) {
                Some(Response::ResponseRange(range)) => {
                    range.kvs.first().map_or(0, |kv| kv.mod_revision)
                }
                other => {
                    return Err(tonic::Status::internal(format!(
                        "txn failure branch answered {other:?}, not a range"
                    )));
                }
            };
            self.mod_revisions.insert(key, current);
        }
        Err(tonic::Status::aborted(format!(
            "compare-and-swap of key index {key} conflicted {MAX_CAS_ATTEMPTS} times in a row"
        )))
    }
}

/// Runs the client tasks of every workload but `watch`; `known` seeds the `txn` clients' views of
/// mod revisions.
async fn run_clients(
    plan: Arc<Plan>,
    conns: &[KvConn],
    known: HashMap<u64, i64>,
) -> anyhow::Result<Report> {
    let budget = Arc::new(Budget::new(&plan));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(plan.clients);
    for id in 0..plan.clients {
        let mut client = Client {
            id,
            plan: Arc::clone(&plan),
            kv: conns[id % conns.len()].clone(),
            rng: SmallRng::seed_from_u64(0x7434_6265_6e63 ^ id as u64),
            value: random_value(plan.value_size, id as u64),
            mod_revisions: known
                .iter()
                .filter(|(key, _)| **key % plan.clients as u64 == id as u64)
                .map(|(key, rev)| (*key, *rev))
                .collect(),
        };
        let budget = Arc::clone(&budget);
        tasks.push(tokio::spawn(async move {
            let mut stats = ClientStats::new();
            while let Some(n) = budget.claim() {
                let t = Instant::now();
                match client.op(n, &mut stats).await {
                    Ok(()) => {
                        stats.ok += 1;
                        stats
                            .latency
                            .saturating_record(t.elapsed().as_nanos() as u64);
                    }
                    Err(e) => stats.error(format!("{}: {}", e.code(), e.message())),
                }
            }
            stats
        }));
    }
    let mut total = ClientStats::new();
    for task in tasks {
        total.merge(task.await.context("benchmark client panicked")?);
    }
    let elapsed = started.elapsed();
    Ok(report(&plan, total, elapsed, BTreeMap::new()))
}

fn report(
    plan: &Plan,
    stats: ClientStats,
    elapsed: Duration,
    other_latencies_us: BTreeMap<&'static str, LatencySummary>,
) -> Report {
    let secs = elapsed.as_secs_f64();
    Report {
        workload: plan.workload.name(),
        endpoints: plan.endpoints.clone(),
        clients: plan.clients,
        conns: plan.conns,
        key_size: plan.keys.key_size(),
        value_size: plan.value_size,
        keyspace: plan.keys.keyspace(),
        ops: stats.ok,
        errors: stats.errors,
        first_error: stats.first_error,
        elapsed_secs: secs,
        ops_per_sec: if secs > 0.0 {
            stats.ok as f64 / secs
        } else {
            0.0
        },
        latency_us: LatencySummary::from_nanos(&stats.latency),
        other_latencies_us,
        counters: stats.counters,
    }
}

/// A put of the watch workload: its revision, when it was sent, when its response arrived.
struct AckedPut {
    revision: i64,
    sent: Instant,
    acked: Instant,
}

/// One watcher on the prefix, `--clients` putters; latency from put response to watch event.
async fn run_watch(plan: Arc<Plan>, conns: &[KvConn]) -> anyhow::Result<Report> {
    // The request stream must stay open for the watch to live: `requests` is dropped at the end.
    let (requests, rx) = tokio::sync::mpsc::channel(1);
    requests
        .send(WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key: plan.keys.prefix().to_vec(),
                range_end: plan
                    .keys
                    .prefix_end()
                    .expect("validated by BenchArgs::plan"),
                ..Default::default()
            })),
        })
        .await
        .expect("the receiver is alive");
    let mut stream = WatchClient::new(connect_watch(&plan).await?)
        .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .context("opening the watch stream")?
        .into_inner();
    let created = stream
        .message()
        .await
        .context("creating the watch")?
        .context("the server closed the watch stream before creating the watch")?;
    anyhow::ensure!(
        created.created && !created.canceled,
        "the server did not create the watch: {created:?}"
    );

    // Event arrival times by revision; the watcher stops at the target revision.
    let seen: Arc<Mutex<HashMap<i64, Instant>>> = Arc::default();
    let (target_tx, mut target_rx) = tokio::sync::watch::channel(i64::MAX);
    let watcher = {
        let seen = Arc::clone(&seen);
        tokio::spawn(async move {
            let mut newest = 0;
            while newest < *target_rx.borrow_and_update() {
                tokio::select! {
                    message = stream.message() => {
                        let response = match message {
                            Ok(Some(response)) => response,
                            Ok(None) => anyhow::bail!("the server closed the watch stream"),
                            Err(e) => anyhow::bail!("watch stream failed: {e}"),
                        };
                        let now = Instant::now();
                        anyhow::ensure!(
                            !response.canceled,
                            "the server cancelled the watch: {}",
                            response.cancel_reason
                        );
                        let mut seen = seen.lock().expect("no panics while holding the lock");
                        for kv in response.events.into_iter().filter_map(|e| e.kv) {
                            seen.entry(kv.mod_revision).or_insert(now);
                            newest = newest.max(kv.mod_revision);
                        }
                    }
                    changed = target_rx.changed() => {
                        if changed.is_err() {
                            return Ok(());
                        }
                    }
                }
            }
            Ok(())
        })
    };

    let budget = Arc::new(Budget::new(&plan));
    let started = Instant::now();
    let mut putters = Vec::with_capacity(plan.clients);
    for id in 0..plan.clients {
        let mut kv = conns[id % conns.len()].clone();
        let plan = Arc::clone(&plan);
        let budget = Arc::clone(&budget);
        let value = random_value(plan.value_size, id as u64);
        putters.push(tokio::spawn(async move {
            let mut stats = ClientStats::new();
            let mut puts = Vec::new();
            while let Some(n) = budget.claim() {
                let req = PutRequest {
                    key: plan.keys.key(n % plan.keys.keyspace()),
                    value: value.clone(),
                    ..Default::default()
                };
                let sent = Instant::now();
                match kv.put(&req).await {
                    Ok(resp) => {
                        let acked = Instant::now();
                        let revision = resp.header.map_or(0, |h| h.revision);
                        puts.push(AckedPut {
                            revision,
                            sent,
                            acked,
                        });
                    }
                    Err(e) => stats.error(format!("{}: {}", e.code(), e.message())),
                }
            }
            (stats, puts)
        }));
    }
    let mut stats = ClientStats::new();
    let mut puts = Vec::new();
    for task in putters {
        let (s, p) = task.await.context("benchmark putter panicked")?;
        stats.merge(s);
        puts.extend(p);
    }
    let elapsed = started.elapsed();
    let newest = puts.iter().map(|p| p.revision).max().unwrap_or(0);
    let _ = target_tx.send(newest);
    match tokio::time::timeout(WATCH_DRAIN_TIMEOUT, watcher).await {
        Ok(joined) => joined.context("watcher panicked")??,
        Err(_) => stats.error(format!(
            "watch events up to revision {newest} did not all arrive within {WATCH_DRAIN_TIMEOUT:?}"
        )),
    }

    let seen = seen.lock().expect("no panics while holding the lock");
    let mut since_sent = new_histogram();
    for put in &puts {
        let Some(&event) = seen.get(&put.revision) else {
            stats.count("missing-events", 1);
            continue;
        };
        stats.ok += 1;
        if event < put.acked {
            // etcd may deliver the event before the put's response reaches the client.
            stats.count("event-before-ack", 1);
        }
        stats
            .latency
            .saturating_record(event.saturating_duration_since(put.acked).as_nanos() as u64);
        since_sent.saturating_record(event.saturating_duration_since(put.sent).as_nanos() as u64);
    }
    drop(requests);
    let mut other = BTreeMap::new();
    other.insert("put-to-event", LatencySummary::from_nanos(&since_sent));
    Ok(report(&plan, stats, elapsed, other))
}
