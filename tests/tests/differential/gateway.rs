//! The JSON gateway scenario: the same HTTP requests (`POST /v3/…` with JSON bodies, as curl
//! sends them) to etcd 3.4 and to t4, each answer recorded as its HTTP status, its
//! `Content-Type` and its JSON body with what must differ taken out (cluster and member ids,
//! the raft term, a lease's remaining TTL).

use std::time::Duration;

use serde_json::{Value, json};

use crate::session::Entry;

/// How long a streamed answer may take to bring its next line.
const LINE_WAIT: Duration = Duration::from_secs(10);

/// The writes to `k`…`l` the first watch of the scenario sees.
const WATCHED_EVENTS: usize = 11;

/// Takes out of `value`, at any depth, what differs between any two servers.
fn normalise(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for name in ["cluster_id", "member_id", "raft_term"] {
                map.remove(name);
            }
            // A lease's remaining TTL ticks; its granted TTL does not.
            if map.contains_key("grantedTTL") {
                map.remove("TTL");
            }
            map.values_mut().for_each(normalise);
        }
        Value::Array(items) => items.iter_mut().for_each(normalise),
        _ => {}
    }
}

fn render(text: &str) -> String {
    match serde_json::from_str::<Value>(text) {
        Ok(mut value) => {
            normalise(&mut value);
            value.to_string()
        }
        Err(_) => format!("(not JSON) {:?}", text.trim_end()),
    }
}

/// A streamed answer, read line by line.
struct Lines {
    response: reqwest::Response,
    pending: Vec<u8>,
}

impl Lines {
    /// The next line, or `None` when the answer ended.
    async fn next(&mut self) -> Option<String> {
        loop {
            if let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                return Some(String::from_utf8_lossy(&line).into_owned());
            }
            let chunk = tokio::time::timeout(LINE_WAIT, self.response.chunk())
                .await
                .expect("a streamed answer brings its next line within 10 s")
                .expect("reading a streamed answer");
            match chunk {
                Some(bytes) => self.pending.extend_from_slice(&bytes),
                None if self.pending.is_empty() => return None,
                None => return Some(String::from_utf8_lossy(&self.pending.split_off(0)).into()),
            }
        }
    }
}

/// One server's gateway and the transcript of what it answered.
struct Gateway {
    http: reqwest::Client,
    endpoint: String,
    transcript: Vec<Entry>,
}

impl Gateway {
    async fn send(&self, method: reqwest::Method, path: &str, body: &str) -> reqwest::Response {
        self.http
            .request(method, format!("{}{path}", self.endpoint))
            .body(body.to_string())
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn record(&mut self, step: String, outcome: String) {
        self.transcript.push(Entry { step, outcome });
    }

    /// `method path body`, answered with one body.
    async fn call_with(&mut self, method: reqwest::Method, path: &str, body: &str) {
        let response = self.send(method.clone(), path, body).await;
        let status = response.status().as_u16();
        let kind = content_type(&response);
        let text = response.text().await.expect("reading an answer");
        let outcome = if kind.starts_with("application/json") {
            format!("{status} {}", render(&text))
        } else {
            format!("{status} {kind} {:?}", text.trim_end())
        };
        self.record(format!("{method} {path} {body}"), outcome);
    }

    /// `POST path body`, answered with one body.
    async fn call(&mut self, path: &str, body: Value) {
        self.call_with(reqwest::Method::POST, path, &body.to_string())
            .await;
    }

    /// `POST path body` to a stream; records the first `count` lines of the answer, then
    /// leaves.
    async fn stream(&mut self, path: &str, body: &str, count: usize) -> Lines {
        let response = self.send(reqwest::Method::POST, path, body).await;
        let status = response.status().as_u16();
        let mut lines = Lines {
            response,
            pending: Vec::new(),
        };
        let mut seen = Vec::new();
        for _ in 0..count {
            match lines.next().await {
                Some(line) => seen.push(render(&line)),
                None => break,
            }
        }
        self.record(
            format!("POST {path} {body} (first {count} lines)"),
            format!("{status} {}", seen.join("\n")),
        );
        lines
    }
}

fn content_type(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// base64 of `text`, as the gateway carries keys and values.
fn b64(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// Runs the scenario against the server at `endpoint` (`http://host:port`).
pub async fn transcript(endpoint: &str) -> Vec<Entry> {
    let mut gw = Gateway {
        http: reqwest::Client::new(),
        endpoint: endpoint.to_string(),
        transcript: Vec::new(),
    };
    // A watch from before the first write sees every event as it happens.
    let mut watch = gw
        .stream(
            "/v3/watch",
            &json!({"create_request": {"key": b64("k"), "range_end": b64("l"), "prev_kv": true}})
                .to_string(),
            1,
        )
        .await;

    // KV: puts, ranges with options, deletes, in both name styles.
    for (key, value) in [("k1", "v1"), ("k2", "v2"), ("k3", "v3"), ("k1", "v1b")] {
        gw.call("/v3/kv/put", json!({"key": b64(key), "value": b64(value)}))
            .await;
    }
    gw.call(
        "/v3/kv/put",
        json!({"key": b64("k2"), "value": b64("v2b"), "prev_kv": true}),
    )
    .await;
    gw.call(
        "/v3/kv/put",
        json!({"key": b64("k3"), "ignoreValue": true, "prevKv": true}),
    )
    .await;
    gw.call("/v3/kv/range", json!({"key": b64("k1")})).await;
    gw.call(
        "/v3/kv/range",
        json!({"key": b64("k"), "range_end": b64("l")}),
    )
    .await;
    gw.call(
        "/v3/kv/range",
        json!({"key": b64("k"), "rangeEnd": b64("l"), "limit": 1, "sort_order": "DESCEND",
               "sort_target": "MOD"}),
    )
    .await;
    gw.call(
        "/v3/kv/range",
        json!({"key": b64("k"), "range_end": b64("l"), "keys_only": true, "revision": "3"}),
    )
    .await;
    gw.call(
        "/v3/kv/range",
        json!({"key": b64("k"), "range_end": "AA==", "count_only": true}),
    )
    .await;
    gw.call(
        "/v3/kv/range",
        json!({"key": b64("k1"), "min_mod_revision": 10, "serializable": true}),
    )
    .await;
    gw.call("/v3/kv/range", json!({"key": b64("nothing")}))
        .await;
    gw.call(
        "/v3/kv/deleterange",
        json!({"key": b64("k3"), "prev_kv": true}),
    )
    .await;

    // Txn: both branches, every compare target, nested.
    gw.call(
        "/v3/kv/txn",
        json!({
            "compare": [{"key": b64("k1"), "result": "EQUAL", "target": "VALUE",
                         "value": b64("v1b")},
                        {"key": b64("k2"), "result": "GREATER", "target": "MOD",
                         "mod_revision": "2"}],
            "success": [{"request_put": {"key": b64("k4"), "value": b64("v4")}},
                        {"requestRange": {"key": b64("k1")}}],
            "failure": [{"request_delete_range": {"key": b64("k1")}}]
        }),
    )
    .await;
    gw.call(
        "/v3/kv/txn",
        json!({
            "compare": [{"key": b64("k4"), "result": "LESS", "target": "VERSION", "version": 1},
                        {"key": b64("k9"), "target": "CREATE", "create_revision": 0}],
            "success": [{"request_put": {"key": b64("never"), "value": b64("x")}}],
            "failure": [{"request_txn": {"success": [
                            {"request_range": {"key": b64("k"), "range_end": b64("l")}}]}},
                        {"request_delete_range": {"key": b64("k4"), "prev_kv": true}}]
        }),
    )
    .await;

    // Leases: grant with a chosen id, attach a key, keep alive, look, revoke.
    gw.call("/v3/lease/grant", json!({"TTL": 60, "ID": 4242}))
        .await;
    gw.call(
        "/v3/kv/put",
        json!({"key": b64("k5"), "value": b64("leased"), "lease": "4242"}),
    )
    .await;
    gw.stream("/v3/lease/keepalive", r#"{"ID":4242} {"ID":99}"#, 3)
        .await;
    gw.call("/v3/lease/timetolive", json!({"ID": 4242, "keys": true}))
        .await;
    gw.call("/v3/kv/lease/timetolive", json!({"ID": 99})).await;
    gw.call("/v3/lease/leases", json!({})).await;
    gw.call("/v3/lease/revoke", json!({"ID": "4242"})).await;
    gw.call("/v3/kv/lease/revoke", json!({"ID": 4242})).await;
    gw.call("/v3/lease/grant", json!({"TTL": "9000000001"}))
        .await;

    // Every event the first watch saw, however the servers group them into responses.
    let mut events = Vec::new();
    while events.len() < WATCHED_EVENTS {
        let Some(line) = watch.next().await else {
            break;
        };
        let mut line: Value = serde_json::from_str(&line).unwrap_or_default();
        normalise(&mut line);
        match line["result"]["events"].as_array() {
            Some(batch) => events.extend(batch.iter().map(Value::to_string)),
            None => events.push(format!("(not events) {line}")),
        }
    }
    gw.record("the first watch's events".into(), events.join("\n"));
    drop(watch);

    // History, progress and filters on new watches; compaction.
    gw.stream(
        "/v3/watch",
        &json!({"create_request": {"key": b64("k1"), "start_revision": 2, "filters": ["NODELETE"]}})
            .to_string(),
        2,
    )
    .await;
    // (A progress request is answered once every watch of the stream has caught up: t4 may
    // answer a cancel sent after it first, so the two go on different streams.)
    gw.stream(
        "/v3/watch",
        r#"{"create_request":{"key":"azI=","watch_id":7}} {"progress_request":{}}"#,
        2,
    )
    .await;
    gw.stream(
        "/v3/watch",
        r#"{"create_request":{"key":"azI=","watch_id":3}}
           {"cancel_request":{"watch_id":3}}"#,
        2,
    )
    .await;
    gw.call(
        "/v3/kv/compaction",
        json!({"revision": 5, "physical": true}),
    )
    .await;
    gw.call("/v3/kv/compaction", json!({"revision": 4})).await;
    gw.call("/v3/kv/compaction", json!({"revision": 1000}))
        .await;
    gw.call("/v3/kv/range", json!({"key": b64("k1"), "revision": 3}))
        .await;
    gw.stream(
        "/v3/watch",
        &json!({"create_request": {"key": b64("k1"), "start_revision": 3}}).to_string(),
        2,
    )
    .await;

    // Lock and Election, held by a lease of a chosen id so that the keys match.
    gw.call("/v3/lease/grant", json!({"TTL": 60, "ID": 0x4343}))
        .await;
    gw.call("/v3/lock/lock", json!({"name": b64("gw"), "lease": 0x4343}))
        .await;
    gw.call("/v3/lock/unlock", json!({"key": b64("gw/4343")}))
        .await;
    gw.call(
        "/v3/election/campaign",
        json!({"name": b64("el"), "lease": 0x4343, "value": b64("me")}),
    )
    .await;
    gw.stream(
        "/v3/election/observe",
        &json!({"name": b64("el")}).to_string(),
        1,
    )
    .await;
    gw.call("/v3/election/leader", json!({"name": b64("el")}))
        .await;
    gw.call("/v3/election/leader", json!({"name": b64("nobody")}))
        .await;
    gw.call("/v3/election/resign", json!({})).await;

    // etcd's errors, as JSON with the mapped HTTP status.
    gw.call("/v3/kv/range", json!({})).await;
    gw.call("/v3/kv/put", json!({"value": b64("x")})).await;
    gw.call("/v3/kv/put", json!({"key": b64("k"), "lease": 12345}))
        .await;
    gw.call(
        "/v3/kv/txn",
        json!({"success": [{"request_put": {"key": b64("d"), "value": b64("1")}},
                           {"request_put": {"key": b64("d"), "value": b64("2")}}]}),
    )
    .await;
    gw.call("/v3/lease/revoke", json!({"ID": 5})).await;
    gw.call(
        "/v3/maintenance/transfer-leadership",
        json!({"targetID": 5}),
    )
    .await;
    gw.call(
        "/v3/auth/authenticate",
        json!({"name": "root", "password": "x"}),
    )
    .await;
    gw.call_with(reqwest::Method::POST, "/v3/kv/range", "")
        .await;
    gw.call_with(reqwest::Method::POST, "/v3/kv/range", "null")
        .await;
    gw.call_with(
        reqwest::Method::POST,
        "/v3/kv/range",
        r#"{"key":"azE=","no_such_field":{"x":[1]}}"#,
    )
    .await;
    gw.call_with(
        reqwest::Method::POST,
        "/v3beta/kv/range",
        r#"{"key":"azE="}"#,
    )
    .await;
    gw.call_with(reqwest::Method::GET, "/v3/kv/range", "").await;
    gw.call_with(reqwest::Method::POST, "/v3/kv/no-such-method", "{}")
        .await;
    gw.call_with(reqwest::Method::OPTIONS, "/v3/kv/put", "")
        .await;
    gw.transcript
}
