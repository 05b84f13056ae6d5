//! `t4 inspect`: offline, read-only views of a data dir, checked against what the server
//! served, and checked to change nothing in the directory.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use t4_e2e::{T4, t4_bin, tool};

fn inspect(data_dir: &Path, args: &[&str]) -> tool::Ran {
    let mut all = vec!["inspect"];
    all.extend_from_slice(&args[..1]);
    let dir = data_dir.display().to_string();
    all.extend(["--data-dir", dir.as_str()]);
    all.extend_from_slice(&args[1..]);
    let ran = tool::run(t4_bin!().as_ref(), &all, Duration::from_secs(60));
    assert!(ran.success(), "t4 {all:?} failed: {}", ran.stderr);
    ran
}

/// Every file under `dir` with its size and modification time.
fn fingerprint(dir: &Path) -> BTreeMap<String, (u64, std::time::SystemTime)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir") {
            let entry = entry.expect("entry");
            let meta = entry.metadata().expect("metadata");
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                out.insert(
                    entry.path().display().to_string(),
                    (meta.len(), meta.modified().expect("mtime")),
                );
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_shows_what_the_server_served_and_changes_nothing() {
    let mut server = T4::start(t4_bin!(), &[]).await;
    let mut client = server.client().await;
    let r1 = client
        .put("/app/a", "1", None)
        .await
        .expect("put")
        .header()
        .expect("header")
        .revision();
    let r2 = client
        .put("/app/a", "2", None)
        .await
        .expect("put")
        .header()
        .expect("header")
        .revision();
    client.put("/app/b", "x", None).await.expect("put");
    client.put("/other", "y", None).await.expect("put");
    let r5 = client
        .delete("/app/b", None)
        .await
        .expect("delete")
        .header()
        .expect("header")
        .revision();
    client.put("/app/c", "new", None).await.expect("put");
    client.role_add("reader").await.expect("role add");
    // Killed, not stopped: the last writes are only in the WAL, and inspect must show them.
    server.stop_with("KILL", Duration::from_secs(10)).await;
    let dir = server.data_dir.clone();
    let before = fingerprint(&dir);

    let meta = inspect(&dir, &["meta"]).stdout;
    assert!(meta.contains("revision:          7"), "{meta}");
    assert!(meta.contains("format:            1"), "{meta}");
    assert!(meta.contains("WAL segments:"), "{meta}");
    assert!(
        meta.contains("authentication:    disabled (0 users, 1 roles, auth revision 1)"),
        "{meta}"
    );

    let list = inspect(&dir, &["list", "--prefix", "/app/", "--keys-only"]).stdout;
    assert_eq!(list, "/app/a\n/app/c\n");
    let all = inspect(&dir, &["list"]).stdout;
    assert_eq!(all.lines().count(), 3, "{all}");
    assert!(all.contains("/other\tcreate_revision=5"), "{all}");
    let old = inspect(
        &dir,
        &[
            "list",
            "--keys-only",
            "--revision",
            &r5.saturating_sub(1).to_string(),
        ],
    )
    .stdout;
    assert_eq!(old, "/app/a\n/app/b\n/other\n");

    let got = inspect(&dir, &["get", "/app/a"]).stdout;
    assert!(
        got.contains(&format!("create_revision={r1} mod_revision={r2} version=2")),
        "{got}"
    );
    assert!(got.trim_end().ends_with("\t2"), "{got}");
    let got = inspect(&dir, &["get", "/app/a", "--revision", &r1.to_string()]).stdout;
    assert!(got.trim_end().ends_with("\t1"), "{got}");

    let history = inspect(&dir, &["history", "/app/b"]).stdout;
    let lines: Vec<&str> = history.lines().collect();
    assert_eq!(lines.len(), 2, "{history}");
    assert!(
        lines[0].contains("PUT") && lines[0].ends_with("\tx"),
        "{history}"
    );
    assert_eq!(lines[1], format!("{r5}\tDELETE"));

    let diff = inspect(&dir, &["diff", "--from", &r2.to_string()]).stdout;
    assert!(
        !diff.contains("/app/b"),
        "created and deleted in between: {diff}"
    );
    assert!(diff.contains("+ /app/c"), "{diff}");
    assert!(diff.contains("+ /other"), "{diff}");
    assert!(!diff.contains("/app/a"), "unchanged since r2: {diff}");

    assert_eq!(fingerprint(&dir), before, "inspect changed the data dir");

    // The data dir still opens and serves the same state.
    let server = T4::start_in(t4_bin!(), &dir, &[]).await;
    let mut client = server.client().await;
    let got = client.get("/app/c", None).await.expect("get");
    assert_eq!(got.kvs()[0].value(), b"new");
}

#[test]
fn inspect_refuses_a_directory_that_is_not_a_data_dir() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dir_arg = dir.path().display().to_string();
    let ran = tool::run(
        t4_bin!().as_ref(),
        &["inspect", "meta", "--data-dir", &dir_arg],
        Duration::from_secs(30),
    );
    assert!(!ran.success());
    assert!(ran.stderr.contains("not a t4 data dir"), "{}", ran.stderr);
}
