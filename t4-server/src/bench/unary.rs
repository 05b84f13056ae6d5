//! The load generator's KV calls: unary gRPC over one HTTP/2 connection, on the `h2` crate.
//!
//! tonic's client sends a unary request as three HTTP/2 frames — the headers, the message,
//! then an empty frame that ends the stream — and hands the body to a task of its own, so each
//! request costs several wake-ups and usually several `writev`s. On a machine that the load
//! generator shares with the server it measures, that CPU is taken from the server. Here a
//! request is its headers and one DATA frame that ends the stream, queued by the calling task
//! itself, as grpc-go (the client most etcd users run) frames it. The wire protocol is the same gRPC that etcd and `t4 run` speak: the server cannot tell
//! the difference, so measurements of both servers stay comparable.
//!
//! Only what `t4 bench` needs is here: no compression, no deadlines, no TLS, no retries.

use std::future::poll_fn;

use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};
use http::{HeaderValue, Method, Request, Uri, header};
use t4_proto::etcdserverpb::{
    PutRequest, PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use tokio::net::TcpStream;
use tonic::{Code, Status};

/// A stream's receive window: a response of up to this size never waits for a window update.
const STREAM_WINDOW: u32 = 4 << 20;

/// The connection's receive window, shared by its streams.
const CONNECTION_WINDOW: u32 = 16 << 20;

/// gRPC's length-prefixed message header: a compression flag and a big-endian length.
const MESSAGE_HEADER: usize = 5;

/// One HTTP/2 connection to an etcd v3 endpoint, for KV calls. Clones share the connection;
/// each client task keeps its own clone.
#[derive(Clone)]
pub(crate) struct KvConn {
    send: h2::client::SendRequest<Bytes>,
    put: Uri,
    range: Uri,
    txn: Uri,
}

impl KvConn {
    /// Connects to `endpoint` (`http://host:port`) and starts the connection's task.
    pub(crate) async fn connect(endpoint: &str) -> anyhow::Result<KvConn> {
        use anyhow::Context as _;
        let base: Uri = endpoint
            .parse()
            .with_context(|| format!("bad endpoint {endpoint}"))?;
        let authority = base
            .authority()
            .with_context(|| format!("no host:port in {endpoint}"))?
            .clone();
        let tcp = TcpStream::connect(authority.as_str())
            .await
            .with_context(|| format!("cannot connect to {endpoint}"))?;
        tcp.set_nodelay(true)?;
        let (send, connection) = h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .handshake::<_, Bytes>(tcp)
            .await
            .with_context(|| format!("HTTP/2 handshake with {endpoint}"))?;
        tokio::spawn(async move {
            // Ends when every clone of `send` is dropped or the server goes away; calls in
            // flight then fail with the connection's error.
            let _ = connection.await;
        });
        let uri = |method: &str| {
            Uri::builder()
                .scheme("http")
                .authority(authority.clone())
                .path_and_query(format!("/etcdserverpb.KV/{method}"))
                .build()
                .expect("a valid authority and path make a valid URI")
        };
        Ok(KvConn {
            send,
            put: uri("Put"),
            range: uri("Range"),
            txn: uri("Txn"),
        })
    }

    /// `KV.Put`.
    pub(crate) async fn put(&mut self, req: &PutRequest) -> Result<PutResponse, Status> {
        let uri = self.put.clone();
        self.call(uri, req).await
    }

    /// `KV.Range`.
    pub(crate) async fn range(&mut self, req: &RangeRequest) -> Result<RangeResponse, Status> {
        let uri = self.range.clone();
        self.call(uri, req).await
    }

    /// `KV.Txn`.
    pub(crate) async fn txn(&mut self, req: &TxnRequest) -> Result<TxnResponse, Status> {
        let uri = self.txn.clone();
        self.call(uri, req).await
    }

    /// One unary call: headers and the message in one DATA frame that ends the stream; then
    /// the response's headers, message and trailers (or a trailers-only error).
    async fn call<Req: prost::Message, Resp: prost::Message + Default>(
        &mut self,
        uri: Uri,
        req: &Req,
    ) -> Result<Resp, Status> {
        poll_fn(|cx| self.send.poll_ready(cx))
            .await
            .map_err(|e| transport("the connection", e))?;
        let mut request = Request::new(());
        *request.method_mut() = Method::POST;
        *request.uri_mut() = uri;
        let headers = request.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
        let (response, mut body_tx) = self
            .send
            .send_request(request, false)
            .map_err(|e| transport("sending the request", e))?;
        body_tx
            .send_data(encode_message(req), true)
            .map_err(|e| transport("sending the request", e))?;

        let response = response
            .await
            .map_err(|e| transport("awaiting the response", e))?;
        if response.status() != http::StatusCode::OK {
            return Err(Status::unknown(format!(
                "the server answered HTTP status {}",
                response.status()
            )));
        }
        let (parts, mut body) = response.into_parts();
        // A trailers-only response: the error is in the headers.
        if let Some(status) = Status::from_header_map(&parts.headers) {
            return Err(if status.code() == Code::Ok {
                Status::internal("the server answered a unary call with no message")
            } else {
                status
            });
        }
        let mut chunks = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(|e| transport("reading the response", e))?;
            let _ = body.flow_control().release_capacity(chunk.len());
            chunks.push(chunk);
        }
        // Usually one chunk, used as it is; several are joined.
        let message = match chunks.len() {
            1 => chunks.pop().expect("one chunk"),
            _ => Bytes::from(chunks.concat()),
        };
        let trailers = body
            .trailers()
            .await
            .map_err(|e| transport("reading the response's trailers", e))?;
        match trailers.as_ref().and_then(Status::from_header_map) {
            Some(status) if status.code() == Code::Ok => decode_message(message),
            Some(status) => Err(status),
            None => Err(Status::internal("the response ended without a grpc-status")),
        }
    }
}

/// An HTTP/2 failure as the status a gRPC client reports for it.
fn transport(doing: &str, e: h2::Error) -> Status {
    Status::unavailable(format!("{doing}: {e}"))
}

/// `msg` as one uncompressed gRPC message.
fn encode_message(msg: &impl prost::Message) -> Bytes {
    let len = msg.encoded_len();
    let mut buf = BytesMut::with_capacity(MESSAGE_HEADER + len);
    buf.put_u8(0);
    buf.put_u32(u32::try_from(len).expect("a request is far below 4 GiB"));
    msg.encode(&mut buf)
        .expect("the buffer has room for the encoded length");
    buf.freeze()
}

/// The single message of a unary response.
fn decode_message<M: prost::Message + Default>(mut data: Bytes) -> Result<M, Status> {
    if data.len() < MESSAGE_HEADER {
        return Err(Status::internal(format!(
            "a response of {} bytes is shorter than a gRPC message header",
            data.len()
        )));
    }
    let compressed = data.get_u8();
    let len = data.get_u32() as usize;
    if compressed != 0 {
        return Err(Status::internal("the server compressed a response unasked"));
    }
    if data.len() != len {
        return Err(Status::internal(format!(
            "a response message announced {len} bytes and carried {}",
            data.len()
        )));
    }
    M::decode(data).map_err(|e| Status::internal(format!("decoding the response: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_round_trips_through_the_grpc_framing() {
        let req = PutRequest {
            key: b"k".to_vec(),
            value: vec![7; 300],
            ..Default::default()
        };
        let framed = encode_message(&req);
        assert_eq!(framed[0], 0, "not compressed");
        assert_eq!(
            u32::from_be_bytes(framed[1..5].try_into().unwrap()) as usize,
            framed.len() - MESSAGE_HEADER
        );
        let back: PutRequest = decode_message(framed).unwrap();
        assert_eq!(back, req);
    }

    #[test]
    fn a_truncated_or_compressed_response_is_an_error() {
        let framed = encode_message(&PutResponse::default());
        let short = framed.slice(..3);
        assert!(
            decode_message::<PutResponse>(short)
                .unwrap_err()
                .message()
                .contains("shorter than a gRPC message header")
        );
        let mut long = BytesMut::from(&framed[..]);
        long[4] = long[4].wrapping_add(1);
        assert!(
            decode_message::<PutResponse>(long.freeze())
                .unwrap_err()
                .message()
                .contains("announced")
        );
        let mut compressed = BytesMut::from(&framed[..]);
        compressed[0] = 1;
        assert!(
            decode_message::<PutResponse>(compressed.freeze())
                .unwrap_err()
                .message()
                .contains("compressed")
        );
    }
}
