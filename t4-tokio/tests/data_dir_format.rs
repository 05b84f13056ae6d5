//! Data dirs this binary must not open: written by a newer t4, or not a t4 data dir. They
//! are refused with an error that says what to do, and left as they were.

#![allow(clippy::unwrap_used)]

mod common;

use common::snapshot_files;

#[tokio::test]
async fn a_data_dir_of_a_newer_format_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let node = common::open(dir.path()).await;
    node.put("k", "v").await.unwrap();
    node.close().await.unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("t4-format")).unwrap(),
        "1\n"
    );

    std::fs::write(dir.path().join("t4-format"), "2\n").unwrap();
    let before = snapshot_files(dir.path());
    let err = t4::Node::open(common::config(dir.path()))
        .await
        .unwrap_err();
    let message = err.to_string();
    eprintln!("{message}");
    assert!(matches!(err, t4::Error::DataDir { .. }), "{err:?}");
    assert!(message.contains("newer t4"), "{message}");
    assert!(message.contains("Upgrade t4"), "says what to do: {message}");
    assert!(
        message.contains(&dir.path().display().to_string()),
        "names the dir: {message}"
    );
    assert!(snapshot_files(dir.path()) == before, "nothing was touched");
}

#[tokio::test]
async fn a_format_file_that_is_not_a_number_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t4-format"), "banana").unwrap();
    let err = t4::Node::open(common::config(dir.path()))
        .await
        .unwrap_err();
    assert!(matches!(err, t4::Error::DataDir { .. }), "{err:?}");
    assert!(err.to_string().contains("not a format number"), "{err}");
    assert!(!dir.path().join("store").exists(), "no store was created");
}

#[tokio::test]
async fn a_wal_segment_of_a_newer_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config(dir.path());
    config.segment_max_age = std::time::Duration::from_secs(3600);
    let node = t4::Node::open(config.clone()).await.unwrap();
    node.put("k", "v").await.unwrap();
    node.close().await.unwrap();

    let segment = common::wal_files(dir.path()).pop().unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[6] = 2; // the segment format version
    let crc = crc32c::crc32c(&bytes[..16]);
    bytes[16..20].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&segment, &bytes).unwrap();
    let before = snapshot_files(dir.path());

    let err = t4::Node::open(config).await.unwrap_err();
    let message = err.to_string();
    eprintln!("{message}");
    assert!(matches!(err, t4::Error::Wal { .. }), "{err:?}");
    assert!(message.contains("format version 2"), "{message}");
    assert!(message.contains("Upgrade t4"), "{message}");
    assert!(snapshot_files(dir.path()) == before, "nothing was touched");
}
