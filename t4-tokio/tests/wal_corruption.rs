//! A damaged WAL on the real adapter: a torn tail (a crash mid-append) is cut and the node
//! opens with every acknowledged write; any other damage stops `Node::open` with an error
//! naming the file and byte offset, and leaves the data dir untouched.
//!
//! Closing a node keeps its active segment (segments are deleted only once sealed, and the
//! tests use a segment age of an hour), so the files are there to damage before reopening.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use common::{snapshot_files, wal_files};
use t4_core::wal::frame::FrameRead;
use t4_core::wal::segment::SEGMENT_HEADER_LEN;

fn config(dir: &Path) -> t4::Config {
    let mut config = common::config(dir);
    config.segment_max_age = Duration::from_secs(3600);
    config
}

async fn open(dir: &Path) -> t4::Result<t4::Node> {
    t4::Node::open(config(dir)).await
}

/// Writes `keys` (value = key) through a node, one entry each, and closes it.
async fn write_and_close(dir: &Path, keys: &[&str]) -> Vec<i64> {
    let node = open(dir).await.unwrap();
    let mut revs = Vec::new();
    for k in keys {
        revs.push(node.put(k.to_string(), k.to_string()).await.unwrap());
    }
    node.close().await.unwrap();
    revs
}

/// Byte offsets of the frames of a segment file.
fn frame_offsets(file: &Path) -> Vec<usize> {
    let buf = Bytes::from(std::fs::read(file).unwrap());
    let mut offsets = Vec::new();
    let mut off = SEGMENT_HEADER_LEN;
    while let FrameRead::Frame { len, .. } = t4_core::wal::read_frame(&buf, off) {
        offsets.push(off);
        off += len;
    }
    assert_eq!(off, buf.len(), "a clean segment is header + whole frames");
    offsets
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

fn only_segment(dir: &Path) -> PathBuf {
    let files = wal_files(dir);
    assert_eq!(files.len(), 1, "{files:?}");
    files.into_iter().next().unwrap()
}

#[tokio::test]
async fn a_torn_tail_is_cut_and_the_acknowledged_writes_before_it_are_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let acked = write_and_close(dir.path(), &["k0", "k1", "k2"]).await;

    // Produce the segment a crash would leave behind: a copy of the data dir writes three
    // more entries into a fresh segment; the last one is then cut mid-frame. The original
    // store has applied none of the three, so they can only come back from the WAL.
    let twin = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), twin.path());
    let twin_revs = write_and_close(twin.path(), &["t1", "t2", "t3"]).await;
    let next_segment = wal_files(twin.path()).pop().unwrap();
    let offsets = frame_offsets(&next_segment);
    assert_eq!(offsets.len(), 3, "one entry per put");
    let mut bytes = std::fs::read(&next_segment).unwrap();
    let cut_at = offsets[2] + 20; // inside the third frame
    bytes.truncate(cut_at);
    let torn = dir
        .path()
        .join("wal")
        .join(next_segment.file_name().unwrap());
    std::fs::write(&torn, &bytes).unwrap();

    let node = open(dir.path())
        .await
        .expect("a torn tail is recovered, not refused");
    for (k, rev) in ["k0", "k1", "k2"].iter().zip(&acked) {
        assert_eq!(node.get(*k).await.unwrap().unwrap().mod_revision, *rev);
    }
    for (k, rev) in ["t1", "t2"].iter().zip(&twin_revs) {
        let kv = node.get(*k).await.unwrap().expect("replayed from the WAL");
        assert_eq!((kv.value.as_ref(), kv.mod_revision), (k.as_bytes(), *rev));
    }
    assert_eq!(
        node.get("t3").await.unwrap(),
        None,
        "the torn write never happened"
    );
    assert_eq!(node.current_revision(), twin_revs[1]);
    // Its revision is given to the next write instead.
    assert_eq!(node.put("after", "x").await.unwrap(), twin_revs[2]);
    node.close().await.unwrap();

    // The tail really was cut: the segment is no longer the last one, and a torn frame
    // anywhere but the end would now be refused.
    let node = open(dir.path())
        .await
        .expect("reopens cleanly after the truncation");
    assert_eq!(
        node.get("after").await.unwrap().unwrap().mod_revision,
        twin_revs[2]
    );
    node.close().await.unwrap();
}

#[tokio::test]
async fn a_crash_while_creating_a_segment_leaves_nothing_to_replay() {
    let dir = tempfile::tempdir().unwrap();
    let acked = write_and_close(dir.path(), &["a", "b"]).await;
    // A new segment whose first append (header + first frame) was cut short.
    let next = acked.len() as u64 + 1;
    let name = format!("{next:020}.wal");
    let header = t4_core::wal::encode_segment_header(next);
    std::fs::write(dir.path().join("wal").join(&name), &header[..10]).unwrap();

    let node = open(dir.path()).await.unwrap();
    assert_eq!(node.current_revision(), acked[1]);
    assert_eq!(node.put("c", "c").await.unwrap(), acked[1] + 1);
    node.close().await.unwrap();
    let node = open(dir.path()).await.unwrap();
    assert_eq!(node.get("c").await.unwrap().unwrap().value, "c");
    node.close().await.unwrap();
}

#[tokio::test]
async fn a_flipped_byte_before_valid_frames_is_refused_naming_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    write_and_close(dir.path(), &["a", "b", "c", "d", "e"]).await;
    let segment = only_segment(dir.path());
    let offsets = frame_offsets(&segment);
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[offsets[2] + 12 + 3] ^= 0x40; // inside the third frame's payload
    std::fs::write(&segment, &bytes).unwrap();
    let before = snapshot_files(dir.path());

    let err = open(dir.path()).await.unwrap_err();
    let message = err.to_string();
    eprintln!("{message}");
    assert!(matches!(err, t4::Error::Wal { .. }), "{err:?}");
    let name = segment.file_name().unwrap().to_str().unwrap();
    assert!(message.contains(name), "names the file: {message}");
    assert!(
        message.contains(&format!("byte offset {}", offsets[2])),
        "names the offset {}: {message}",
        offsets[2]
    );
    assert!(
        message.contains("checksum"),
        "says what is wrong: {message}"
    );
    assert!(
        snapshot_files(dir.path()) == before,
        "a refused open changes nothing on disk"
    );

    // Refused again, the same way: nothing was skipped or repaired behind our back.
    let again = open(dir.path()).await.unwrap_err();
    assert_eq!(again.to_string(), message);
}

#[tokio::test]
async fn damage_in_a_segment_that_is_not_the_last_is_refused_even_at_its_end() {
    let dir = tempfile::tempdir().unwrap();
    write_and_close(dir.path(), &["a", "b", "c"]).await;
    let first = only_segment(dir.path());
    let first_bytes = std::fs::read(&first).unwrap();
    // A second run appends to a new segment; it may delete the first once the store has
    // persisted, so put the first back (as a node that crashed before deleting it would).
    write_and_close(dir.path(), &["d", "e"]).await;
    std::fs::write(&first, &first_bytes).unwrap();
    assert_eq!(wal_files(dir.path()).len(), 2);

    // Cutting the first segment's last frame looks like a torn tail, but a segment follows
    // it: entries would be skipped, so it is refused.
    let offsets = frame_offsets(&first);
    std::fs::write(&first, &first_bytes[..offsets[2] + 5]).unwrap();
    let before = snapshot_files(dir.path());
    let err = open(dir.path()).await.unwrap_err();
    let message = err.to_string();
    eprintln!("{message}");
    assert!(matches!(err, t4::Error::Wal { .. }), "{err:?}");
    assert!(message.contains(first.file_name().unwrap().to_str().unwrap()));
    assert!(
        message.contains(&format!("byte offset {}", offsets[2])),
        "{message}"
    );
    assert!(
        snapshot_files(dir.path()) == before,
        "a refused open changes nothing on disk"
    );
}
