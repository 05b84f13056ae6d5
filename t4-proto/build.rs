//! Compiles the etcd v3 `.proto` files in `proto/` into Rust.
//!
//! `protox` parses the files in pure Rust (no system `protoc` needed) into a
//! `FileDescriptorSet`; `tonic-prost-build` turns that into prost messages and
//! tonic clients and servers. The encoded descriptor set is also written to
//! `OUT_DIR` so the crate can embed it for gRPC reflection, and `pbjson-build` writes serde
//! implementations of the etcd messages in the JSON form etcd's gateway uses.

use std::{env, fs, path::PathBuf};

use prost::Message as _;

/// The files compiled, relative to the `proto/` include directory.
const PROTOS: &[&str] = &[
    "mvccpb/kv.proto",
    "authpb/auth.proto",
    "etcdserverpb/rpc.proto",
    "v3lockpb/v3lock.proto",
    "v3electionpb/v3election.proto",
    "grpc/health/v1/health.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);

    let fds = protox::Compiler::new(["proto"])?
        .include_source_info(true)
        .include_imports(true)
        .open_files(PROTOS)?
        .file_descriptor_set();

    let encoded = fds.encode_to_vec();
    fs::write(out_dir.join("t4_descriptor.bin"), &encoded)?;

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .emit_rerun_if_changed(false)
        // A key-value's key and value as `bytes::Bytes`: a server answers with the store's
        // buffers instead of a copy of each (ranges of thousands of keys spent a tenth of
        // their time copying), and a client's decode slices the received buffer.
        .bytes(".mvccpb.KeyValue")
        .compile_fds(fds)?;

    // etcd's grpc-gateway writes proto field names (`create_revision`, `dbSize`), 64-bit
    // integers as strings and enums by name, leaves out default values, and ignores fields it
    // does not know; it reads both the proto and the camelCase names.
    pbjson_build::Builder::new()
        .register_descriptors(&encoded)?
        .preserve_proto_field_names()
        .ignore_unknown_fields()
        .build(&[
            ".etcdserverpb",
            ".mvccpb",
            ".authpb",
            ".v3lockpb",
            ".v3electionpb",
        ])?;

    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
