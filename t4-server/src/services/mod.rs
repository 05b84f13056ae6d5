//! The etcd v3 services, one module each, sharing one [`Context`].
//!
//! Every service is a thin mapping onto [`t4::Node`]: it converts the message, calls the node,
//! and answers with a header carrying the revision the node reported for that data (Lock and
//! Election run etcd's recipes of [`concurrency`] over it). Streams (Watch, LeaseKeepAlive,
//! Snapshot, Observe, health Watch) and waiting locks end when the server shuts down, so a
//! graceful stop never waits on a client that keeps a call open.

pub mod access;
pub mod auth;
pub mod cluster;
pub mod concurrency;
pub mod election;
pub mod health;
pub mod jwt;
pub mod kv;
pub mod lease;
pub mod lock;
pub mod maintenance;
pub mod watch;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch as signal;
use tonic::Status;

use crate::header::Identity;
use crate::status::core_status;

/// This member as `MemberList` describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Member {
    /// Its name (`--node-id`).
    pub name: String,
    /// URLs clients reach it at (`--advertise-client-urls`).
    pub client_urls: Vec<String>,
    /// URLs peers reach it at (none until t4 has a peer listener).
    pub peer_urls: Vec<String>,
}

/// Server settings the services need.
#[derive(Clone, Debug)]
pub struct Settings {
    /// etcd's `--max-request-bytes`: larger write requests are refused.
    pub max_request_bytes: usize,
    /// Interval of `progress_notify` watch notifications.
    pub watch_progress_interval: Duration,
    /// Backend size above which the NOSPACE alarm is raised.
    pub quota_backend_bytes: u64,
    /// The bcrypt cost of password hashes (etcd's `--bcrypt-cost`).
    pub bcrypt_cost: u32,
}

/// Raised alarms: `(member id, etcd AlarmType number)`.
#[derive(Debug, Default)]
pub struct Alarms {
    raised: Mutex<BTreeSet<(u64, i32)>>,
}

impl Alarms {
    /// Raises an alarm; returns whether it was new.
    pub fn raise(&self, member: u64, alarm: i32) -> bool {
        self.lock().insert((member, alarm))
    }

    /// Clears an alarm; returns whether it was raised.
    pub fn clear(&self, member: u64, alarm: i32) -> bool {
        self.lock().remove(&(member, alarm))
    }

    /// Every raised alarm.
    pub fn list(&self) -> Vec<(u64, i32)> {
        self.lock().iter().copied().collect()
    }

    /// Whether any member has the NOSPACE alarm raised: writes that add data are refused.
    pub fn no_space(&self) -> bool {
        let nospace = t4_proto::etcdserverpb::AlarmType::Nospace as i32;
        self.lock().iter().any(|(_, a)| *a == nospace)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<(u64, i32)>> {
        // The set is always whole: a panic cannot leave it half-changed.
        self.raised.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What every service shares.
#[derive(Debug)]
pub struct Context {
    /// The embedded node.
    pub node: t4::Node,
    /// Cluster and member id for headers.
    pub id: Identity,
    /// This member.
    pub member: Member,
    /// Settings.
    pub settings: Settings,
    /// Raised alarms.
    pub alarms: Alarms,
    /// Tokens handed out by `Authenticate`.
    pub tokens: access::Tokens,
    /// Becomes `true` when the server starts shutting down.
    pub shutdown: signal::Receiver<bool>,
}

impl Context {
    /// Waits until the server starts shutting down.
    pub async fn shutting_down(&self) {
        let mut rx = self.shutdown.clone();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Why this member does not serve, if it does not: it is shutting down, or its node
    /// failed (a WAL or store write failed; restart it). The gRPC health service, the HTTP
    /// `/health` endpoint and the `t4_serving` metric all tell this.
    pub fn not_serving(&self) -> Option<String> {
        if *self.shutdown.borrow() {
            return Some(t4_core::Error::Stopped.to_string());
        }
        self.node.failure()
    }

    /// Refuses a request of `size` encoded bytes over `--max-request-bytes`, like etcd.
    pub fn check_size(&self, size: usize) -> Result<(), Status> {
        if size > self.settings.max_request_bytes {
            return Err(core_status(&t4_core::Error::RequestTooLarge));
        }
        Ok(())
    }

    /// Refuses a request that adds data while the NOSPACE alarm is raised, like etcd.
    pub fn check_space(&self) -> Result<(), Status> {
        if self.alarms.no_space() {
            return Err(core_status(&t4_core::Error::NoSpace));
        }
        Ok(())
    }
}

/// The shared context.
pub type Shared = Arc<Context>;
