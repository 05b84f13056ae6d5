//! The etcd v3 wire protocol, as used by t4.
//!
//! t4 speaks the etcd v3 gRPC API so that existing etcd clients (etcdctl, the
//! Go `clientv3`, the Rust `etcd-client` crate, ...) can talk to it. This crate
//! holds only the protocol: the `.proto` definitions in `proto/` (written for
//! t4, matching etcd's package, message, field and service names and numbers)
//! and the Rust code that prost and tonic generate from them at build time. It
//! has no logic of its own.
//!
//! Modules follow the protobuf packages:
//!
//! * [`etcdserverpb`]: the KV, Watch, Lease, Cluster, Maintenance and Auth
//!   services and their messages. Servers are reached as e.g.
//!   [`etcdserverpb::kv_server::KvServer`] with the
//!   [`etcdserverpb::kv_server::Kv`] trait, clients as
//!   [`etcdserverpb::kv_client::KvClient`].
//! * [`mvccpb`]: `KeyValue` and `Event`.
//! * [`authpb`]: users, roles and permissions.
//! * [`v3lockpb`] and [`v3electionpb`]: etcd's Lock and Election services.
//! * [`health::v1`]: the standard gRPC health service (`grpc.health.v1`).
//!
//! The messages of these packages (not the health service's) also implement
//! serde's `Serialize` and `Deserialize` in the JSON form of etcd's gRPC
//! gateway (proto field names, 64-bit integers as strings, bytes in base64,
//! default values left out).
//!
//! [`FILE_DESCRIPTOR_SET`] is the encoded descriptor set of all of these
//! files, for serving gRPC reflection.

/// Package `etcdserverpb`: the etcd v3 client-facing services and messages.
#[allow(missing_docs, clippy::all, clippy::pedantic, clippy::nursery)]
pub mod etcdserverpb {
    include!(concat!(env!("OUT_DIR"), "/etcdserverpb.rs"));
    include!(concat!(env!("OUT_DIR"), "/etcdserverpb.serde.rs"));
}

/// Package `mvccpb`: stored key-value pairs and watch events.
#[allow(missing_docs, clippy::all, clippy::pedantic, clippy::nursery)]
pub mod mvccpb {
    include!(concat!(env!("OUT_DIR"), "/mvccpb.rs"));
    include!(concat!(env!("OUT_DIR"), "/mvccpb.serde.rs"));
}

/// Package `authpb`: users, roles and permissions.
#[allow(missing_docs, clippy::all, clippy::pedantic, clippy::nursery)]
pub mod authpb {
    include!(concat!(env!("OUT_DIR"), "/authpb.rs"));
    include!(concat!(env!("OUT_DIR"), "/authpb.serde.rs"));
}

/// Package `v3lockpb`: etcd's Lock service (a mutex per name, held by a lease).
#[allow(missing_docs, clippy::all, clippy::pedantic, clippy::nursery)]
pub mod v3lockpb {
    include!(concat!(env!("OUT_DIR"), "/v3lockpb.rs"));
    include!(concat!(env!("OUT_DIR"), "/v3lockpb.serde.rs"));
}

/// Package `v3electionpb`: etcd's Election service (leader election by name).
#[allow(missing_docs, clippy::all, clippy::pedantic, clippy::nursery)]
pub mod v3electionpb {
    include!(concat!(env!("OUT_DIR"), "/v3electionpb.rs"));
    include!(concat!(env!("OUT_DIR"), "/v3electionpb.serde.rs"));
}

/// The gRPC health checking protocol.
pub mod health {
    /// Package `grpc.health.v1`: the `Health` service.
    #[allow(missing_docs, clippy::all, clippy::pedantic, clippy::nursery)]
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/grpc.health.v1.rs"));
    }
}

/// The encoded `google.protobuf.FileDescriptorSet` of every `.proto` file in
/// this crate (with their imports and source info), for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/t4_descriptor.bin"));
