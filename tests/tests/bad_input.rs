//! Bad input gets etcd's error, changes nothing, and leaves the server serving.

#![allow(clippy::disallowed_methods, clippy::unwrap_used)] // end-to-end tests: real time; unwrap is the assertion

use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp};
use t4_e2e::{T4, status, t4_bin};
use t4_proto::etcdserverpb as pb;
use tonic::Code;

async fn assert_intact(c: &mut etcd_client::Client, revision: i64) {
    let r = c.get("keep", None).await.expect("the server still serves");
    assert_eq!(r.kvs()[0].value(), b"safe");
    assert_eq!(
        r.header().unwrap().revision(),
        revision,
        "bad input changed nothing"
    );
}

#[tokio::test]
async fn invalid_requests_get_etcds_codes_and_messages() {
    let t4 = T4::start(
        t4_bin!(),
        &["--max-request-bytes", "10000", "--max-txn-ops", "4"],
    )
    .await;
    let mut c = t4.client().await;
    let rev = c
        .put("keep", "safe", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    let cases: Vec<(etcd_client::Error, Code, &str)> = vec![
        (
            c.put("", "v", None).await.unwrap_err(),
            Code::InvalidArgument,
            "etcdserver: key is not provided",
        ),
        (
            c.get("", None).await.unwrap_err(),
            Code::InvalidArgument,
            "etcdserver: key is not provided",
        ),
        (
            c.delete("", None).await.unwrap_err(),
            Code::InvalidArgument,
            "etcdserver: key is not provided",
        ),
        (
            c.put("big", vec![b'x'; 20_000], None).await.unwrap_err(),
            Code::InvalidArgument,
            "etcdserver: request is too large",
        ),
        (
            c.txn(
                Txn::new().and_then(
                    (0..5)
                        .map(|i| TxnOp::put(format!("t{i}"), "v", None))
                        .collect::<Vec<_>>(),
                ),
            )
            .await
            .unwrap_err(),
            Code::InvalidArgument,
            "etcdserver: too many operations in txn request",
        ),
        (
            c.txn(Txn::new().and_then([TxnOp::put("d", "1", None), TxnOp::put("d", "2", None)]))
                .await
                .unwrap_err(),
            Code::InvalidArgument,
            "etcdserver: duplicate key given in txn request",
        ),
        (
            c.txn(Txn::new().when([Compare::value("", CompareOp::Equal, "x")]))
                .await
                .unwrap_err(),
            Code::InvalidArgument,
            "etcdserver: key is not provided",
        ),
        (
            c.get("keep", Some(GetOptions::new().with_revision(rev + 5)))
                .await
                .unwrap_err(),
            Code::OutOfRange,
            "etcdserver: mvcc: required revision is a future revision",
        ),
        (
            c.lease_revoke(12345).await.unwrap_err(),
            Code::NotFound,
            "etcdserver: requested lease not found",
        ),
    ];
    for (err, code, message) in cases {
        let s = status(err);
        assert_eq!((s.code(), s.message()), (code, message));
    }
    assert_intact(&mut c, rev).await;
}

#[tokio::test]
async fn malformed_and_oversized_messages_are_refused_and_the_server_stays_up() {
    let t4 = T4::start(t4_bin!(), &["--max-request-bytes", "10000"]).await;
    let mut c = t4.client().await;
    let rev = c
        .put("keep", "safe", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();

    // Bytes that are not a PutRequest.
    let mut grpc = tonic::client::Grpc::new(t4.channel().await);
    grpc.ready().await.unwrap();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/etcdserverpb.KV/Put");
    let garbage = vec![0xff_u8; 64];
    let e = grpc
        .unary::<Vec<u8>, Vec<u8>, _>(tonic::Request::new(garbage), path, RawCodec)
        .await
        .unwrap_err();
    assert_ne!(e.code(), Code::Ok);
    // A method the server does not have: gRPC's Unimplemented, as from any gRPC server.
    grpc.ready().await.unwrap();
    let e = grpc
        .unary::<Vec<u8>, Vec<u8>, _>(
            tonic::Request::new(Vec::new()),
            tonic::codegen::http::uri::PathAndQuery::from_static("/etcdserverpb.KV/Nope"),
            RawCodec,
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unimplemented);

    // A message over --max-request-bytes plus gRPC overhead is not even read.
    let mut kv = pb::kv_client::KvClient::new(t4.channel().await);
    let huge = pb::PutRequest {
        key: b"huge".to_vec(),
        value: vec![0; 2 << 20],
        ..Default::default()
    };
    let e = kv.put(huge).await.unwrap_err();
    assert_ne!(e.code(), Code::Ok);
    // An unknown sort target (an unknown sort order is accepted, as in etcd 3.4).
    let e = kv
        .range(pb::RangeRequest {
            key: b"keep".to_vec(),
            sort_target: 9,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (Code::InvalidArgument, "etcdserver: invalid sort option")
    );

    assert_intact(&mut c, rev).await;
}

/// Sends and receives raw bytes, to put malformed messages on the wire.
#[derive(Clone, Copy, Debug, Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }
    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        let n = bytes::Buf::remaining(src);
        Ok(Some(bytes::Buf::copy_to_bytes(src, n).to_vec()))
    }
}
