//! The JSON side of the gateway: reading request messages from a request body, and writing
//! response messages, errors and stream lines as etcd's grpc-gateway writes them.

use std::pin::Pin;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use http::{StatusCode, header};
use http_body::Frame;
use http_body_util::BodyExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::{Code, Status};

use crate::metrics::grpc::Call;

/// A request body.
pub type Body = tonic::service::AxumBody;
/// A gateway answer.
pub type Reply = http::Response<tonic::body::Body>;
/// The responses of a gRPC stream.
pub type Responses<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The gRPC code a whole answer stands for, in the extensions of the answers of unary calls
/// and errors (not sent): what the call's metrics record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answered(pub Code);

/// The HTTP status grpc-gateway (the version etcd 3.4 serves) answers a gRPC code with.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::REQUEST_TIMEOUT,
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::FailedPrecondition => StatusCode::PRECONDITION_FAILED,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Adds the headers etcd's default `--cors=*` answers every gateway request with.
pub fn with_cors(mut reply: Reply) -> Reply {
    let headers = reply.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        header::HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        header::HeaderValue::from_static("POST, GET, OPTIONS, PUT, DELETE"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        header::HeaderValue::from_static("accept, content-type, authorization"),
    );
    reply
}

/// An answer with `body` of type `content_type`.
pub fn reply(status: StatusCode, content_type: &'static str, body: tonic::body::Body) -> Reply {
    let mut reply = http::Response::new(body);
    *reply.status_mut() = status;
    reply.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    with_cors(reply)
}

/// The plain-text answer of etcd's gateway to a path or method it does not serve.
pub fn plain(status: StatusCode) -> Reply {
    let text = format!("{}\n", status.canonical_reason().unwrap_or_default());
    reply(
        status,
        "text/plain; charset=utf-8",
        tonic::body::Body::new(text),
    )
}

/// A response message as the JSON answer of a unary call.
pub fn message(response: &impl Serialize) -> Reply {
    match serde_json::to_vec(response) {
        Ok(json) => {
            let mut reply = reply(
                StatusCode::OK,
                "application/json",
                tonic::body::Body::new(http_body_util::Full::new(Bytes::from(json))),
            );
            reply.extensions_mut().insert(Answered(Code::Ok));
            reply
        }
        Err(e) => error(&Status::internal(format!("encoding the answer: {e}"))),
    }
}

/// An error in etcd's form: the mapped HTTP status and `{"error","message","code"}`.
pub fn error(status: &Status) -> Reply {
    #[derive(Serialize)]
    struct ErrorBody<'a> {
        error: &'a str,
        message: &'a str,
        code: i32,
    }
    let body = ErrorBody {
        error: status.message(),
        message: status.message(),
        code: status.code() as i32,
    };
    let json = serde_json::to_vec(&body).unwrap_or_default();
    let mut reply = reply(
        http_status(status.code()),
        "application/json",
        tonic::body::Body::new(http_body_util::Full::new(Bytes::from(json))),
    );
    reply.extensions_mut().insert(Answered(status.code()));
    reply
}

/// One line of a streamed answer: `{"result":…}` for a message, and for the error that ends
/// the stream `{"error":{"grpc_code","http_code","message","http_status"}}`.
fn stream_line<T: Serialize>(item: &Result<T, Status>) -> Bytes {
    #[derive(Serialize)]
    struct Result<'a, T> {
        result: &'a T,
    }
    #[derive(Serialize)]
    struct StreamError<'a> {
        grpc_code: i32,
        http_code: u16,
        message: &'a str,
        http_status: &'a str,
    }
    #[derive(Serialize)]
    struct Error<'a> {
        error: StreamError<'a>,
    }
    let encoded = match item {
        Ok(message) => serde_json::to_vec(&Result { result: message }),
        Err(status) => {
            let http = http_status(status.code());
            serde_json::to_vec(&Error {
                error: StreamError {
                    grpc_code: status.code() as i32,
                    http_code: http.as_u16(),
                    message: status.message(),
                    http_status: http.canonical_reason().unwrap_or_default(),
                },
            })
        }
    };
    let mut line = encoded.unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

/// A stream of responses as a chunked answer of JSON lines, ending after the first error.
/// `call` is recorded when the stream ends (as `Canceled` if the client leaves first).
pub fn lines<T: Serialize + Send + 'static>(responses: Responses<T>, call: Option<Call>) -> Reply {
    let lines = futures::stream::unfold(Some((responses, call)), |state| async move {
        let (mut responses, call) = state?;
        let Some(item) = responses.next().await else {
            if let Some(call) = call {
                call.finish(Code::Ok);
            }
            return None;
        };
        let line = stream_line(&item);
        let more = match &item {
            Ok(_) => Some((responses, call)),
            Err(status) => {
                if let Some(call) = call {
                    call.finish(status.code());
                }
                None
            }
        };
        Some((Ok::<_, Status>(Frame::data(line)), more))
    });
    reply(
        StatusCode::OK,
        "application/json",
        tonic::body::Body::new(http_body_util::StreamBody::new(lines)),
    )
}

/// How much of a body over the limit is read (and dropped) before the answer, so that a client
/// still sending gets the answer instead of a reset connection: this many times the limit.
const DRAINED_LIMITS: usize = 8;

/// Reads a whole body of at most `limit` bytes. A larger body is refused with
/// ResourceExhausted once it was read to its end (or as far as `DRAINED_LIMITS` allows).
pub async fn read_body(mut body: Body, limit: usize) -> Result<Bytes, Status> {
    let mut kept = Vec::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| Status::invalid_argument(format!("reading the request body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen = seen.saturating_add(data.len());
        if seen <= limit {
            kept.extend_from_slice(&data);
        } else if seen > limit.saturating_mul(DRAINED_LIMITS) {
            break;
        }
    }
    if seen > limit {
        return Err(Status::resource_exhausted(format!(
            "request body is larger than {limit} bytes"
        )));
    }
    Ok(Bytes::from(kept))
}

/// The request message at the start of `json`, as grpc-gateway reads a unary request: an
/// empty body or `null` is the empty message, and whatever follows the first value is
/// ignored.
pub fn first_message<T: DeserializeOwned + Default>(json: &[u8]) -> Result<T, Status> {
    let mut values = serde_json::Deserializer::from_slice(json).into_iter::<Option<T>>();
    match values.next() {
        None => Ok(T::default()),
        Some(Ok(message)) => Ok(message.unwrap_or_default()),
        Some(Err(e)) => Err(Status::invalid_argument(e.to_string())),
    }
}

/// The request messages of a streaming call, read from the body as they arrive: JSON
/// values one after the other, separated by nothing or whitespace.
pub struct MessageReader {
    body: Body,
    buffer: Vec<u8>,
    /// The body ended.
    ended: bool,
    /// The most bytes one message may take.
    limit: usize,
}

impl MessageReader {
    /// Reads messages of at most `limit` bytes each from `body`.
    pub fn new(body: Body, limit: usize) -> MessageReader {
        MessageReader {
            body,
            buffer: Vec::new(),
            ended: false,
            limit,
        }
    }

    /// The next message: `None` when the body ended between messages, an error when it is
    /// not a message of type `T` (or not JSON, or cut off).
    pub async fn next<T: DeserializeOwned + Default>(&mut self) -> Option<Result<T, String>> {
        loop {
            let blank = self
                .buffer
                .iter()
                .take_while(|b| b.is_ascii_whitespace())
                .count();
            self.buffer.drain(..blank);
            if !self.buffer.is_empty() {
                let mut values =
                    serde_json::Deserializer::from_slice(&self.buffer).into_iter::<Option<T>>();
                match values.next() {
                    Some(Ok(message)) => {
                        let used = values.byte_offset();
                        self.buffer.drain(..used);
                        return Some(Ok(message.unwrap_or_default()));
                    }
                    // Cut off: more may come.
                    Some(Err(e)) if e.is_eof() && !self.ended => {}
                    Some(Err(e)) => return Some(Err(e.to_string())),
                    None => {}
                }
            }
            if self.ended {
                return None;
            }
            if self.buffer.len() > self.limit {
                return Some(Err(format!(
                    "a request message is larger than {} bytes",
                    self.limit
                )));
            }
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buffer.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => return Some(Err(format!("reading the request body: {e}"))),
                None => self.ended = true,
            }
        }
    }

    /// `first` (the message already read, if any) and the messages after it, as the request
    /// stream of a gRPC call. Like etcd's gateway, a later message that cannot be read ends
    /// the requests, not the call.
    pub fn rest<T>(self, first: Option<T>) -> impl Stream<Item = Result<T, Status>> + Send + Unpin
    where
        T: DeserializeOwned + Default + Send + 'static,
    {
        let rest = futures::stream::unfold(self, |mut reader| async move {
            match reader.next::<T>().await? {
                Ok(message) => Some((Ok(message), reader)),
                Err(e) => {
                    tracing::debug!(error = %e, "gateway stream: ending the requests");
                    None
                }
            }
        });
        Box::pin(futures::stream::iter(first.map(Ok)).chain(rest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use t4_proto::etcdserverpb::{self as pb, watch_request::RequestUnion};

    fn body(chunks: Vec<Vec<u8>>) -> Body {
        Body::from_stream(futures::stream::iter(
            chunks.into_iter().map(Ok::<_, std::io::Error>),
        ))
    }

    fn block_on<F: Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(future)
    }

    async fn read_all(mut reader: MessageReader) -> Vec<Result<pb::WatchRequest, String>> {
        let mut out = Vec::new();
        while let Some(message) = reader.next::<pb::WatchRequest>().await {
            let failed = message.is_err();
            out.push(message);
            if failed {
                break;
            }
        }
        out
    }

    fn create(key: &[u8]) -> pb::WatchRequest {
        pb::WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(pb::WatchCreateRequest {
                key: key.to_vec(),
                ..Default::default()
            })),
        }
    }

    #[test]
    fn a_unary_body_is_its_first_value_and_empty_is_the_empty_message() {
        let range = |json: &str| first_message::<pb::RangeRequest>(json.as_bytes());
        assert_eq!(range("").unwrap(), pb::RangeRequest::default());
        assert_eq!(range(" null ").unwrap(), pb::RangeRequest::default());
        let expected = pb::RangeRequest {
            key: b"foo".to_vec(),
            range_end: b"fop".to_vec(),
            limit: 5,
            ..Default::default()
        };
        // Proto and camelCase names, 64-bit integers as numbers or strings, unknown fields
        // ignored, whatever follows the first value ignored (as etcd's gateway).
        assert_eq!(
            range(r#"{"key":"Zm9v","range_end":"Zm9w","limit":5} trailing"#).unwrap(),
            expected
        );
        assert_eq!(
            range(r#"{"key":"Zm9v","rangeEnd":"Zm9w","limit":"5","nope":[1]}"#).unwrap(),
            expected
        );
        for bad in [
            r#"{"key":"Zm9v!"}"#,
            r#"{"limit":"x"}"#,
            "[]",
            "{bad",
            r#"{"limit":1.5}"#,
        ] {
            let status = range(bad).unwrap_err();
            assert_eq!(status.code(), Code::InvalidArgument, "{bad}");
            assert!(!status.message().is_empty(), "{bad}");
        }
    }

    #[test]
    fn grpc_codes_map_to_grpc_gateways_http_statuses() {
        assert_eq!(http_status(Code::InvalidArgument), StatusCode::BAD_REQUEST);
        assert_eq!(http_status(Code::OutOfRange), StatusCode::BAD_REQUEST);
        assert_eq!(http_status(Code::NotFound), StatusCode::NOT_FOUND);
        assert_eq!(
            http_status(Code::FailedPrecondition),
            StatusCode::PRECONDITION_FAILED
        );
        assert_eq!(
            http_status(Code::Unavailable),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            http_status(Code::ResourceExhausted),
            StatusCode::TOO_MANY_REQUESTS
        );
    }

    #[test]
    fn a_stream_answers_result_lines_and_ends_with_its_error() {
        let responses: Responses<pb::LeaseKeepAliveResponse> =
            Box::pin(futures::stream::iter(vec![
                Ok(pb::LeaseKeepAliveResponse {
                    header: None,
                    id: 7,
                    ttl: 30,
                }),
                Err(Status::unavailable("etcdserver: server stopped")),
                Ok(pb::LeaseKeepAliveResponse::default()),
            ]));
        let reply = lines(responses, None);
        assert_eq!(reply.status(), StatusCode::OK);
        let body = block_on(reply.into_body().collect()).unwrap().to_bytes();
        assert_eq!(
            String::from_utf8_lossy(&body),
            concat!(
                r#"{"result":{"ID":"7","TTL":"30"}}"#,
                "\n",
                r#"{"error":{"grpc_code":14,"http_code":503,"#,
                r#""message":"etcdserver: server stopped","http_status":"Service Unavailable"}}"#,
                "\n"
            )
        );
    }

    #[test]
    fn an_error_answers_etcds_three_fields_with_the_mapped_status() {
        let reply = error(&Status::not_found("etcdserver: requested lease not found"));
        assert_eq!(reply.status(), StatusCode::NOT_FOUND);
        assert_eq!(reply.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        let body = block_on(reply.into_body().collect()).unwrap().to_bytes();
        assert_eq!(
            String::from_utf8_lossy(&body),
            r#"{"error":"etcdserver: requested lease not found","message":"etcdserver: requested lease not found","code":5}"#
        );
    }

    #[test]
    fn a_message_that_never_ends_or_is_too_large_is_an_error() {
        let cut = MessageReader::new(body(vec![br#"{"create_request":{"#.to_vec()]), 1024);
        let read = block_on(read_all(cut));
        assert_eq!(read.len(), 1);
        assert!(read[0].as_ref().unwrap_err().contains("EOF"), "{read:?}");

        let endless = vec![
            b"{\"create_request\":{\"key\":\"".to_vec(),
            vec![b'A'; 4096],
        ];
        let read = block_on(read_all(MessageReader::new(body(endless), 1024)));
        assert!(
            read[0].as_ref().unwrap_err().contains("larger than 1024"),
            "{read:?}"
        );
    }

    proptest! {
        /// However the body is cut into chunks, the reader finds the same messages.
        #[test]
        fn messages_are_read_whatever_the_chunking(
            keys in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..6),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
            separator in prop::sample::select(vec!["", " ", "\n", "\r\n\t "]),
        ) {
            let messages: Vec<pb::WatchRequest> = keys.iter().map(|k| create(k)).collect();
            let mut text = String::new();
            for message in &messages {
                text += &serde_json::to_string(message).unwrap();
                text += separator;
            }
            let bytes = text.into_bytes();
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
            points.sort_unstable();
            let mut chunks = Vec::new();
            let mut start = 0;
            for point in points.into_iter().chain([bytes.len()]) {
                chunks.push(bytes[start..point].to_vec());
                start = point;
            }
            let read = block_on(read_all(MessageReader::new(body(chunks), 1 << 20)));
            let read: Vec<pb::WatchRequest> = read.into_iter().map(|m| m.unwrap()).collect();
            prop_assert_eq!(read, messages);
        }
    }
}
