//! The history: every client operation's invocation and outcome, and every watch's
//! deliveries, as the clients saw them.
//!
//! Checkers judge the product by this record (plus the committed log). An operation whose
//! answer never came — the request or the reply was lost, or the node crashed — has an
//! [`Outcome::Unknown`] outcome: it may or may not have taken effect, and checkers must accept
//! both.

use std::fmt;

use t4_core::request::{RangeRequest, RangeResponse};
use t4_core::watch::WatchFilter;
use t4_core::{Error, Event, Instant, Request, Response, Revision};

/// Index of an operation in [`History::ops`].
pub type OpId = usize;

/// Index of a watch in [`History::watches`].
pub type WatchId = usize;

/// What a client asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    /// A plain read, served by the node from its store.
    Range(RangeRequest),
    /// A request serialised through the core.
    Request(Request),
    /// A request serialised through the core, whose caller a server checked against the
    /// auth state at `auth_revision` (refused if that state has changed since).
    Checked {
        /// The request.
        request: Request,
        /// The auth revision of the check.
        auth_revision: u64,
    },
}

impl Call {
    /// The request serialised through the core, if this is one.
    pub fn request(&self) -> Option<&Request> {
        match self {
            Call::Range(_) => None,
            Call::Request(request) | Call::Checked { request, .. } => Some(request),
        }
    }

    /// The auth revision its caller was checked at, if it was.
    pub fn auth_revision(&self) -> Option<u64> {
        match self {
            Call::Checked { auth_revision, .. } => Some(*auth_revision),
            _ => None,
        }
    }
}

/// A successful answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// To a [`Call::Range`].
    Range(RangeResponse),
    /// To a [`Call::Request`] or [`Call::Checked`].
    Response(Response),
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Still waiting (only while the run is going).
    Pending,
    /// Answered with success.
    Ok(Reply),
    /// Answered with an error.
    Err(Error),
    /// Never answered: it may or may not have happened.
    Unknown,
}

/// One operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    /// Its index.
    pub id: OpId,
    /// The client that issued it.
    pub client: usize,
    /// What was asked.
    pub call: Call,
    /// When the client sent it.
    pub invoke: Instant,
    /// When the client got the answer (`None` for pending and unknown outcomes).
    pub complete: Option<Instant>,
    /// The answer.
    pub outcome: Outcome,
}

impl Op {
    /// When the operation returned, or `Instant(u64::MAX)` if it never did.
    pub fn returned(&self) -> Instant {
        self.complete.unwrap_or(Instant(u64::MAX))
    }
}

/// Why a watch stopped delivering.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEnd {
    /// Still open.
    Open,
    /// Still open at the end of the run, having delivered every revision below `next`.
    Live {
        /// The first revision not delivered.
        next: Revision,
    },
    /// The stream broke (the node crashed) after delivering every revision below `next`.
    Closed {
        /// When.
        at: Instant,
        /// The first revision not delivered.
        next: Revision,
    },
    /// Cancelled because revision `next`, which it still had to deliver, was compacted.
    Compacted {
        /// When.
        at: Instant,
        /// The first revision not delivered.
        next: Revision,
    },
}

/// One delivery to a watch: one or more whole revisions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchBatch {
    /// When it was delivered.
    pub at: Instant,
    /// The events.
    pub events: Vec<Event>,
}

/// One watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watch {
    /// Its index.
    pub id: WatchId,
    /// The client that opened it.
    pub client: usize,
    /// What it selects.
    pub filter: WatchFilter,
    /// The start revision asked for (0 = "from now").
    pub requested_start: Revision,
    /// The first revision it must deliver, as the node resolved it.
    pub start: Revision,
    /// When the node created it.
    pub created: Instant,
    /// Its deliveries.
    pub batches: Vec<WatchBatch>,
    /// How it ended.
    pub end: WatchEnd,
}

/// Everything the clients saw in one run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    /// Operations, in invocation order.
    pub ops: Vec<Op>,
    /// Watches, in creation order.
    pub watches: Vec<Watch>,
    /// Start times of the database's lives after the first: when a disk was lost, the node
    /// started over empty and the history before is judged against the log before.
    pub epochs: Vec<Instant>,
    /// Successful answers that arrived after the client had given up (`(op, when, answer)`):
    /// the client never saw them, but a node acknowledged the operation, so it must not be
    /// lost either (a paused "zombie" node answers late).
    pub late: Vec<(OpId, Instant, Reply)>,
    /// `(when, revision)`: from then on a node served from a store rebuilt from a bucket
    /// checkpoint, whose history before `revision` is gone: it may answer "compacted" for
    /// earlier revisions although the log never compacted them.
    pub rebuilds: Vec<(Instant, Revision)>,
}

impl History {
    /// An empty history.
    pub fn new() -> History {
        History::default()
    }

    /// Records that `client` sent `call` at `now`.
    pub fn invoke(&mut self, client: usize, call: Call, now: Instant) -> OpId {
        let id = self.ops.len();
        self.ops.push(Op {
            id,
            client,
            call,
            invoke: now,
            complete: None,
            outcome: Outcome::Pending,
        });
        id
    }

    /// Records the answer to `op`.
    /// An answer to an operation already judged unknown (see [`History::new_epoch`]) is
    /// ignored.
    pub fn complete(&mut self, op: OpId, now: Instant, result: Result<Reply, Error>) {
        let op = &mut self.ops[op];
        if op.outcome != Outcome::Pending {
            return;
        }
        op.complete = Some(now);
        op.outcome = match result {
            Ok(r) => Outcome::Ok(r),
            Err(e) => Outcome::Err(e),
        };
    }

    /// Records a successful answer that arrived after the client gave up on `op`.
    ///
    /// An answer that arrives after a disk loss started a new epoch, for an operation sent
    /// before it, is dropped, as [`History::complete`] drops answers to operations judged
    /// unknown at an epoch's start: it was sent by a life of the database that is gone (it
    /// was in flight when the disk went), and the checkers judge answers by the epoch they
    /// arrive in, whose log cannot hold it.
    pub fn late_answer(&mut self, op: OpId, now: Instant, reply: Reply) {
        let invoked = self.ops[op].invoke;
        if self.epochs.iter().any(|e| invoked < *e && *e <= now) {
            return;
        }
        self.late.push((op, now, reply));
    }

    /// The latest revision below which history was lost to a rebuild by `at` (0: none).
    pub fn rebuild_floor(&self, at: Instant) -> Revision {
        self.rebuilds
            .iter()
            .filter(|(t, _)| *t <= at)
            .map(|(_, r)| *r)
            .max()
            .unwrap_or(0)
    }

    /// Records that the client gave up waiting for `op`.
    pub fn unknown(&mut self, op: OpId) {
        let op = &mut self.ops[op];
        if op.outcome == Outcome::Pending {
            op.outcome = Outcome::Unknown;
        }
    }

    /// Records a new watch.
    pub fn open_watch(
        &mut self,
        client: usize,
        filter: WatchFilter,
        requested_start: Revision,
        start: Revision,
        now: Instant,
    ) -> WatchId {
        let id = self.watches.len();
        self.watches.push(Watch {
            id,
            client,
            filter,
            requested_start,
            start,
            created: now,
            batches: Vec::new(),
            end: WatchEnd::Open,
        });
        id
    }

    /// Records a delivery.
    pub fn deliver(&mut self, watch: WatchId, now: Instant, events: Vec<Event>) {
        self.watches[watch]
            .batches
            .push(WatchBatch { at: now, events });
    }

    /// Records how a watch ended.
    pub fn end_watch(&mut self, watch: WatchId, end: WatchEnd) {
        self.watches[watch].end = end;
    }

    /// Starts a new life of the database at `now` (the disk was lost). Operations still
    /// waiting become unknown: an answer already on its way was decided by the old database,
    /// and an answer decided by the new one cannot be told apart from it.
    pub fn new_epoch(&mut self, now: Instant) {
        self.epochs.push(now);
        for op in &mut self.ops {
            if op.outcome == Outcome::Pending {
                op.outcome = Outcome::Unknown;
            }
        }
    }

    /// The `[start, end)` time bounds of each life of the database.
    pub fn epoch_bounds(&self) -> Vec<(Instant, Instant)> {
        let mut starts = vec![Instant::ZERO];
        starts.extend(self.epochs.iter().copied());
        let mut out = Vec::new();
        for (i, s) in starts.iter().enumerate() {
            let end = starts.get(i + 1).copied().unwrap_or(Instant(u64::MAX));
            out.push((*s, end));
        }
        out
    }
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Call::Range(r) => {
                write!(f, "range {}", show_range(&r.key, &r.range_end))?;
                if r.revision != 0 {
                    write!(f, " @{}", r.revision)?;
                }
                if r.limit != 0 {
                    write!(f, " limit={}", r.limit)?;
                }
                if r.count_only {
                    f.write_str(" count_only")?;
                }
                if r.keys_only {
                    f.write_str(" keys_only")?;
                }
                Ok(())
            }
            Call::Request(r) => show_request(f, r),
            Call::Checked {
                request,
                auth_revision,
            } => {
                show_request(f, request)?;
                write!(f, " (checked at auth revision {auth_revision})")
            }
        }
    }
}

/// Shows bytes as text when printable.
pub fn show_bytes(b: &[u8]) -> String {
    if b.iter().all(|c| c.is_ascii_graphic()) {
        String::from_utf8_lossy(b).into_owned()
    } else {
        format!("{b:02x?}")
    }
}

fn show_range(key: &[u8], end: &[u8]) -> String {
    if end.is_empty() {
        show_bytes(key)
    } else if end == [0] {
        format!("[{}..)", show_bytes(key))
    } else {
        format!("[{}..{})", show_bytes(key), show_bytes(end))
    }
}

fn show_request(f: &mut fmt::Formatter<'_>, r: &Request) -> fmt::Result {
    use t4_core::request::{CompareResult, CompareTarget, RequestOp};
    match r {
        Request::Put(p) => {
            write!(f, "put {}={}", show_bytes(&p.key), show_bytes(&p.value))?;
            if p.lease != 0 {
                write!(f, " lease={:x}", p.lease)?;
            }
            Ok(())
        }
        Request::DeleteRange(d) => write!(f, "delete {}", show_range(&d.key, &d.range_end)),
        Request::Txn(t) => {
            f.write_str("txn if")?;
            for c in &t.compare {
                let op = match c.result {
                    CompareResult::Equal => "==",
                    CompareResult::NotEqual => "!=",
                    CompareResult::Greater => ">",
                    CompareResult::Less => "<",
                };
                let (what, operand) = match &c.target {
                    CompareTarget::Version(v) => ("version", v.to_string()),
                    CompareTarget::Create(v) => ("create", v.to_string()),
                    CompareTarget::Mod(v) => ("mod", v.to_string()),
                    CompareTarget::Value(v) => ("value", show_bytes(v)),
                    CompareTarget::Lease(v) => ("lease", format!("{v:x}")),
                };
                write!(
                    f,
                    " {what}({}){op}{operand}",
                    show_range(&c.key, &c.range_end)
                )?;
            }
            let branch = |f: &mut fmt::Formatter<'_>, ops: &[RequestOp]| -> fmt::Result {
                for op in ops {
                    match op {
                        RequestOp::Range(r) => {
                            write!(f, " get {}", show_range(&r.key, &r.range_end))?
                        }
                        RequestOp::Put(p) => {
                            write!(f, " put {}={}", show_bytes(&p.key), show_bytes(&p.value))?
                        }
                        RequestOp::DeleteRange(d) => {
                            write!(f, " delete {}", show_range(&d.key, &d.range_end))?
                        }
                        RequestOp::Txn(_) => f.write_str(" txn{..}")?,
                    }
                }
                Ok(())
            };
            f.write_str(" then")?;
            branch(f, &t.success)?;
            f.write_str(" else")?;
            branch(f, &t.failure)
        }
        Request::Compact(c) => write!(
            f,
            "compact {}{}",
            c.revision,
            if c.physical { " physical" } else { "" }
        ),
        Request::LeaseGrant { id, ttl } => write!(f, "lease-grant {id:x} ttl={ttl}"),
        Request::LeaseRevoke { id } => write!(f, "lease-revoke {id:x}"),
        Request::LeaseKeepAlive { id } => write!(f, "lease-keepalive {id:x}"),
        Request::LeaseTimeToLive { id, .. } => write!(f, "lease-ttl {id:x}"),
        Request::LeaseLeases => f.write_str("lease-leases"),
        Request::Auth(change) => write!(f, "auth {change:?}"),
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Pending => f.write_str("pending"),
            Outcome::Unknown => f.write_str("unknown (no answer)"),
            Outcome::Err(e) => write!(f, "error: {e}"),
            Outcome::Ok(Reply::Range(r)) => {
                write!(f, "ok rev={} count={} [", r.revision, r.count)?;
                for (i, kv) in r.kvs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(
                        f,
                        "{}={} (mod {})",
                        show_bytes(&kv.key),
                        show_bytes(&kv.value),
                        kv.mod_revision
                    )?;
                }
                f.write_str("]")
            }
            Outcome::Ok(Reply::Response(r)) => write!(f, "ok {}", show_response(r)),
        }
    }
}

/// A short rendering of a response.
pub fn show_response(r: &Response) -> String {
    use t4_core::request::ResponseOp;
    match r {
        Response::Put(p) => format!("rev={}", p.revision),
        Response::DeleteRange(d) => format!("rev={} deleted={}", d.revision, d.deleted),
        Response::Txn(t) => {
            let mut s = format!("rev={} succeeded={}", t.revision, t.succeeded);
            for op in &t.responses {
                if let ResponseOp::Range(r) = op {
                    let kvs: Vec<String> = r
                        .kvs
                        .iter()
                        .map(|kv| {
                            format!(
                                "{}={} (mod {})",
                                show_bytes(&kv.key),
                                show_bytes(&kv.value),
                                kv.mod_revision
                            )
                        })
                        .collect();
                    s.push_str(&format!(" get=[{}]", kvs.join(", ")));
                }
            }
            s
        }
        Response::Compact(c) => format!("rev={}", c.revision),
        Response::LeaseGrant(g) => format!("rev={} id={:x} ttl={}", g.revision, g.id, g.ttl),
        Response::LeaseRevoke(v) => format!("rev={}", v.revision),
        Response::LeaseKeepAlive(k) => format!("rev={} ttl={}", k.revision, k.ttl),
        Response::LeaseTimeToLive(t) => {
            format!("rev={} ttl={} granted={}", t.revision, t.ttl, t.granted_ttl)
        }
        Response::LeaseLeases(l) => format!("rev={} leases={:x?}", l.revision, l.leases),
        Response::Auth(a) => format!("rev={} auth_revision={}", a.revision, a.state.revision),
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "op#{} c{} [{}",
            self.id,
            self.client,
            crate::trace::secs(self.invoke)
        )?;
        match self.complete {
            Some(t) => write!(f, " .. {}]", crate::trace::secs(t))?,
            None => f.write_str(" .. ?]")?,
        }
        write!(f, " {} -> {}", self.call, self.outcome)
    }
}

#[cfg(test)]
mod tests {
    use t4_core::request::{PutRequest, PutResponse};

    use super::*;

    #[test]
    fn a_late_answer_from_a_life_lost_with_its_disk_is_not_judged() {
        let ms = |n: u64| Instant(n * 1_000_000);
        let put = Call::Request(Request::Put(PutRequest {
            key: "k".into(),
            value: "v".into(),
            ..Default::default()
        }));
        let ok = Reply::Response(Response::Put(PutResponse {
            revision: 2,
            ..Default::default()
        }));
        let mut h = History::new();
        let before = h.invoke(0, put.clone(), ms(1));
        h.late_answer(before, ms(5), ok.clone());
        assert_eq!(h.late.len(), 1, "a late answer within one life is judged");
        h.new_epoch(ms(10));
        let across = h.invoke(0, put.clone(), ms(8));
        h.late_answer(across, ms(11), ok.clone());
        assert_eq!(
            h.late.len(),
            1,
            "sent before the disk loss, arrived after it"
        );
        let after = h.invoke(0, put, ms(12));
        h.late_answer(after, ms(13), ok);
        assert_eq!(h.late.len(), 2, "a late answer of the new life is judged");
    }
}
