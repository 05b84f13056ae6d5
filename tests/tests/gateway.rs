//! etcd's JSON gateway on the client port of `t4 run` (`POST /v3/kv/put` with a JSON body, as
//! curl and non-gRPC clients send it): it and the gRPC API serve one store, bad input gets
//! etcd's error shapes and loses nothing, and streams end with an error line when the server
//! stops. `differential/gateway.rs` compares the answers with etcd 3.4's.

#![allow(clippy::disallowed_methods, clippy::unwrap_used)] // end-to-end tests: real time; unwrap is the assertion

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};
use t4_e2e::{T4, t4_bin};

/// An answer: HTTP status and JSON body.
async fn post(t4: &T4, path: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("http://{}{path}", t4.endpoint))
        .body(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {path}: {e}"));
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"));
    (status, json)
}

async fn post_json(t4: &T4, path: &str, body: Value) -> (u16, Value) {
    post(t4, path, body.to_string()).await
}

/// A streamed answer, read line by line.
struct Lines(reqwest::Response, Vec<u8>);

impl Lines {
    async fn open(t4: &T4, path: &str, body: &str) -> Lines {
        let response = reqwest::Client::new()
            .post(format!("http://{}{path}", t4.endpoint))
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        Lines(response, Vec::new())
    }

    /// The next line as JSON, or `None` when the answer ended.
    async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(end) = self.1.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.1.drain(..=end).collect();
                return Some(serde_json::from_slice(&line).unwrap());
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.0.chunk())
                .await
                .expect("the next line within 10 s")
                .unwrap();
            match chunk {
                Some(bytes) => self.1.extend_from_slice(&bytes),
                None => {
                    assert!(self.1.is_empty(), "a cut-off line: {:?}", self.1);
                    return None;
                }
            }
        }
    }
}

fn b64(bytes: &[u8]) -> String {
    BASE64.encode(bytes)
}

#[tokio::test]
async fn the_gateway_and_grpc_serve_one_store() {
    let t4 = T4::start(t4_bin!(), &[]).await;
    let mut client = t4.client().await;

    // A watch over the gateway; what follows its create request in the body is not a request,
    // which ends the requests but not the watch, as in etcd's gateway.
    let create = json!({"create_request": {"key": b64(b"w/"), "range_end": b64(b"w0")}});
    let mut watch = Lines::open(&t4, "/v3/watch", &format!("{create} not-json")).await;
    let created = watch.next().await.unwrap();
    assert_eq!(created["result"]["created"], true, "{created}");

    let (status, put) = post_json(
        &t4,
        "/v3/kv/put",
        json!({"key": b64(b"w/json"), "value": b64(b"from json")}),
    )
    .await;
    assert_eq!(status, 200, "{put}");
    let got = client.get("w/json", None).await.unwrap();
    assert_eq!(got.kvs()[0].value(), b"from json");
    assert_eq!(
        put["header"]["revision"],
        got.header().unwrap().revision().to_string()
    );

    client.put("w/grpc", "from grpc", None).await.unwrap();
    let (_, range) = post_json(
        &t4,
        "/v3/kv/range",
        json!({"key": b64(b"w/"), "range_end": b64(b"w0")}),
    )
    .await;
    assert_eq!(range["count"], "2", "{range}");
    assert_eq!(range["kvs"][0]["key"], b64(b"w/grpc"));
    assert_eq!(range["kvs"][0]["value"], b64(b"from grpc"));

    for key in [b"w/json".as_slice(), b"w/grpc"] {
        let event = watch.next().await.unwrap();
        assert_eq!(
            event["result"]["events"][0]["kv"]["key"],
            b64(key),
            "{event}"
        );
    }

    // Maintenance answers the 3.5 form (a header on Alarm, which etcd 3.4 leaves out).
    let (status, alarms) = post_json(&t4, "/v3/maintenance/alarm", json!({"action": "GET"})).await;
    assert_eq!(status, 200);
    assert!(alarms["header"]["revision"].is_string(), "{alarms}");
    let (_, status) = post_json(&t4, "/v3/maintenance/status", json!({})).await;
    assert_eq!(status["version"], "3.5.0", "{status}");
}

#[tokio::test]
async fn bad_json_gets_etcds_error_shape_and_loses_nothing() {
    let t4 = T4::start(t4_bin!(), &["--max-request-bytes", "1024"]).await;
    let key = b64(b"kept");
    let (status, _) = post_json(&t4, "/v3/kv/put", json!({"key": key, "value": "AA=="})).await;
    assert_eq!(status, 200);

    let error = |code: i64| {
        move |(status, body): (u16, Value)| {
            assert_eq!(body["code"], code, "{body}");
            assert_eq!(body["error"], body["message"], "{body}");
            assert!(!body["error"].as_str().unwrap().is_empty(), "{body}");
            (status, body["error"].as_str().unwrap().to_string())
        }
    };
    // Not JSON, a wrong type, bad base64, an unknown enum name: InvalidArgument, 400.
    for bad in [
        "{bad",
        r#"{"key":"a2V5","limit":"many"}"#,
        r#"{"key":"not base64!"}"#,
        r#"{"key":"a2V5","sort_order":"SIDEWAYS"}"#,
    ] {
        let (status, _) = error(3)(post(&t4, "/v3/kv/range", bad).await);
        assert_eq!(status, 400, "{bad}");
    }
    // Over --max-request-bytes: etcd's error, from the same check as over gRPC.
    let big = json!({"key": b64(b"big"), "value": b64(&[7; 1500])});
    let (status, message) = error(3)(post_json(&t4, "/v3/kv/put", big).await);
    assert_eq!(
        (status, message.as_str()),
        (400, "etcdserver: request is too large")
    );
    // A body far over what any request may take is not read to its end.
    let huge = format!(r#"{{"key":"{}"}}"#, "A".repeat(4 << 20));
    let (status, message) = error(8)(post(&t4, "/v3/kv/range", huge).await);
    assert_eq!(status, 429, "{message}");
    // A stream whose first message cannot be read: 500 with code Unknown, as etcd's gateway.
    let (status, _) = error(2)(post(&t4, "/v3/watch", r#"{"create_request":5}"#).await);
    assert_eq!(status, 500);
    let (status, _) = error(2)(post(&t4, "/v3/lease/keepalive", r#"{"ID":"abc"}"#).await);
    assert_eq!(status, 500);

    // The server still serves, and the first write is there.
    let (status, range) = post_json(&t4, "/v3/kv/range", json!({"key": key})).await;
    assert_eq!(status, 200);
    assert_eq!(range["kvs"][0]["value"], "AA==", "{range}");
    let mut client = t4.client().await;
    assert_eq!(client.get("kept", None).await.unwrap().count(), 1);
}

#[tokio::test]
async fn the_answers_carry_etcds_cors_headers_and_paths_like_etcds() {
    let t4 = T4::start(t4_bin!(), &[]).await;
    let http = reqwest::Client::new();
    let url = |path: &str| format!("http://{}{path}", t4.endpoint);
    let cors = |response: &reqwest::Response| {
        let header = |name: &str| response.headers()[name].to_str().unwrap().to_string();
        assert_eq!(header("access-control-allow-origin"), "*");
        assert_eq!(
            header("access-control-allow-methods"),
            "POST, GET, OPTIONS, PUT, DELETE"
        );
        assert_eq!(
            header("access-control-allow-headers"),
            "accept, content-type, authorization"
        );
    };
    let preflight = http
        .request(reqwest::Method::OPTIONS, url("/v3/kv/put"))
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 200);
    cors(&preflight);
    let answer = http.post(url("/v3beta/kv/range")).body(r#"{"key":"YQ=="}"#);
    let answer = answer.send().await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["content-type"], "application/json");
    cors(&answer);
    let get = http.get(url("/v3/kv/range")).send().await.unwrap();
    assert_eq!(get.status(), 405);
    let unknown = http
        .post(url("/v3/kv/rename"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    // Plain HTTP outside /v3/ is still the client port's /health and /version.
    let version = http.get(url("/version")).send().await.unwrap();
    assert_eq!(version.status(), 200);
}

#[tokio::test]
async fn a_snapshot_over_the_gateway_holds_the_same_bytes_as_over_grpc() {
    let t4 = T4::start(t4_bin!(), &[]).await;
    let mut client = t4.client().await;
    for i in 0..200 {
        client
            .put(format!("snap/{i:03}"), vec![i as u8; 500], None)
            .await
            .unwrap();
    }
    let mut over_grpc = Vec::new();
    let mut stream = client.snapshot().await.unwrap();
    while let Some(message) = stream.message().await.unwrap() {
        over_grpc.extend_from_slice(message.blob());
    }

    let mut lines = Lines::open(&t4, "/v3/maintenance/snapshot", "{}").await;
    let (mut over_json, mut messages, mut last_remaining) = (Vec::new(), 0, None);
    while let Some(line) = lines.next().await {
        let result = &line["result"];
        over_json.extend(BASE64.decode(result["blob"].as_str().unwrap()).unwrap());
        last_remaining = result.get("remaining_bytes").cloned();
        messages += 1;
    }
    assert!(messages > 1, "{messages} messages");
    assert_eq!(
        last_remaining, None,
        "the last message has 0 bytes remaining"
    );
    assert_eq!(over_json.len(), over_grpc.len());
    assert!(over_json == over_grpc, "the two snapshots differ");
}

#[tokio::test]
async fn streams_end_with_an_error_line_when_the_server_stops() {
    let mut t4 = T4::start(t4_bin!(), &[]).await;
    let mut watch = Lines::open(&t4, "/v3/watch", r#"{"create_request":{"key":"YQ=="}}"#).await;
    assert_eq!(watch.next().await.unwrap()["result"]["created"], true);
    let mut keepalive = Lines::open(&t4, "/v3/lease/keepalive", "").await;

    t4.signal("TERM");
    let last = watch.next().await.expect("an error line before the end");
    let error = &last["error"];
    assert_eq!(error["grpc_code"], 14, "{last}");
    assert_eq!(error["http_code"], 503, "{last}");
    assert_eq!(error["http_status"], "Service Unavailable", "{last}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .starts_with("etcdserver: "),
        "{last}"
    );
    assert_eq!(watch.next().await, None, "nothing after the error");
    // A keepalive stream whose body held no request ended at once, without an error.
    assert_eq!(keepalive.next().await, None);
    let status = t4.wait_for_exit(Duration::from_secs(15)).await;
    assert!(status.success(), "{status}: {}", t4.log());
}

#[tokio::test]
async fn gateway_calls_are_counted_as_the_grpc_calls_they_are() {
    let t4 = T4::start(t4_bin!(), &["--metrics-listen", "127.0.0.1:0"]).await;
    let scrape = || async {
        t4_e2e::http::get(&t4.metrics_endpoint(), "/metrics")
            .await
            .body
    };
    let calls = |text: &str, method: &str, code: &str| {
        t4_e2e::http::sample(
            text,
            "t4_grpc_requests_total",
            &[("method", method), ("code", code)],
        )
    };
    for i in 0..3 {
        let put = json!({"key": b64(format!("m{i}").as_bytes()), "value": "AA=="});
        assert_eq!(post_json(&t4, "/v3/kv/put", put).await.0, 200);
    }
    assert_eq!(post_json(&t4, "/v3/kv/range", json!({})).await.0, 400);
    assert_eq!(post(&t4, "/v3/kv/range", "{bad").await.0, 400);
    let mut keepalive = Lines::open(&t4, "/v3/lease/keepalive", r#"{"ID":5}"#).await;
    while keepalive.next().await.is_some() {}
    let mut watch = Lines::open(&t4, "/v3/watch", r#"{"create_request":{"key":"YQ=="}}"#).await;
    assert_eq!(watch.next().await.unwrap()["result"]["created"], true);
    drop(watch);
    let get = reqwest::get(format!("http://{}/v3/kv/range", t4.endpoint));
    assert_eq!(get.await.unwrap().status(), 405);

    // The dropped watch is counted once the server has seen its connection close.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = scrape().await;
        if calls(&text, "Watch", "Canceled").is_some() {
            break text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no canceled watch:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(calls(&text, "Put", "OK"), Some(3.0));
    assert_eq!(calls(&text, "Range", "InvalidArgument"), Some(2.0));
    assert_eq!(calls(&text, "LeaseKeepAlive", "OK"), Some(1.0));
    assert_eq!(calls(&text, "Watch", "Canceled"), Some(1.0));
    assert_eq!(
        t4_e2e::http::sample(
            &text,
            "t4_grpc_request_duration_seconds_count",
            &[("method", "Put")]
        ),
        Some(3.0)
    );
    // A refused method is no call.
    assert_eq!(calls(&text, "unknown", "Unimplemented"), None);
}

/// The gateway's `Authorization` header carries the token of `/v3/auth/authenticate`, as in
/// etcd (the bodies are etcd 3.4's, seen with curl).
#[tokio::test]
async fn the_authorization_header_carries_the_token() {
    let t4 = T4::start(t4_bin!(), &[]).await;
    let mut client = t4.client().await;
    client.put("/a", "1", None).await.unwrap();
    let mut auth = client.auth_client();
    auth.user_add("root", "rootpw", None).await.unwrap();
    auth.role_add("root").await.unwrap();
    auth.user_grant_role("root", "root").await.unwrap();
    auth.auth_enable().await.unwrap();
    let range = json!({ "key": b64(b"/a") });
    let refused =
        |message: &str, code: i32| json!({ "error": message, "message": message, "code": code });

    let (status, body) = post_json(&t4, "/v3/kv/range", range.clone()).await;
    assert_eq!(
        (status, body),
        (400, refused("etcdserver: user name is empty", 3))
    );
    let login = json!({ "name": "root", "password": "bad" });
    let (status, body) = post_json(&t4, "/v3/auth/authenticate", login).await;
    let failed = "etcdserver: authentication failed, invalid user ID or password";
    assert_eq!((status, body), (400, refused(failed, 3)));
    let login = json!({ "name": "root", "password": "rootpw" });
    let (status, body) = post_json(&t4, "/v3/auth/authenticate", login).await;
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().unwrap().to_string();

    let with = |token: &str| {
        reqwest::Client::new()
            .post(format!("http://{}/v3/kv/range", t4.endpoint))
            .header("Authorization", token)
            .body(range.to_string())
            .send()
    };
    let response = with(&token).await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(body["kvs"][0]["value"], b64(b"1"));
    let response = with("garbage.1").await.unwrap();
    assert_eq!(response.status(), 401);
    let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(body, refused("etcdserver: invalid auth token", 16));
}
