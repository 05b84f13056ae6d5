//! Operator-facing calls on a [`Node`]: status numbers, history hashes, snapshots and
//! restoring one into a fresh data directory.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use t4_core::mvcc::{KvHash, hash_kv};
use t4_core::snapshot::{SnapshotEncoder, SnapshotInfo, decode_file};
use t4_core::wal::segment_file_name;
use t4_core::{KeyRange, ReadView, Revision, Store};

use crate::error::{Error, Result};
use crate::node::Node;

/// A node's vital numbers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    /// The latest durable, visible revision.
    pub revision: Revision,
    /// The compact revision (0 if never compacted).
    pub compact_revision: Revision,
    /// Index of the last log entry applied to the store.
    pub applied_index: u64,
    /// Bytes the data directory takes on disk (store and WAL).
    pub db_size_bytes: u64,
}

/// Bytes a file occupies on disk: its allocated blocks, not its length, since the store
/// preallocates journal files sparsely.
#[cfg(unix)]
fn file_size(m: &std::fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    m.blocks() * 512
}

#[cfg(not(unix))]
fn file_size(m: &std::fs::Metadata) -> u64 {
    m.len()
}

fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(m) if m.is_dir() => dir_size(&entry.path()),
            Ok(m) => file_size(&m),
            // Files come and go (compaction, WAL deletion) while we walk: skip them.
            Err(_) => 0,
        })
        .sum()
}

async fn blocking<T: Send + 'static>(
    job: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(job)
        .await
        .map_err(|e| Error::Request(t4_core::Error::Store(format!("a store task failed: {e}"))))?
}

impl Node {
    /// The node's revision, compact revision, applied index and size on disk.
    pub async fn status(&self) -> Result<NodeStatus> {
        self.caught_up().await?;
        let shared = self.shared.clone();
        blocking(move || {
            let (revision, compact_revision, applied_index) = shared.store.read(|s| {
                let view = s.view();
                (
                    view.revision(),
                    view.compact_revision(),
                    view.applied_index(),
                )
            })?;
            Ok(NodeStatus {
                revision,
                compact_revision,
                applied_index,
                db_size_bytes: dir_size(&shared.data_dir),
            })
        })
        .await
    }

    /// etcd's `HashKV`: a CRC-32C of the retained history up to `revision` (0 = current);
    /// equal histories give equal hashes (see [`t4_core::mvcc::hash_kv`]).
    pub async fn hash_kv(&self, revision: Revision) -> Result<KvHash> {
        self.caught_up().await?;
        let shared = self.shared.clone();
        blocking(move || Ok(shared.store.read(|s| hash_kv(&s.view(), revision))??)).await
    }

    /// A consistent snapshot of the store at the current revision: every live key with its
    /// metadata, every lease and the auth state (see [`t4_core::snapshot`]). Iterate the encoder for the
    /// bytes; [`restore_snapshot`] turns them into a data directory.
    pub async fn snapshot(&self) -> Result<SnapshotEncoder> {
        self.caught_up().await?;
        let shared = self.shared.clone();
        blocking(move || {
            shared.store.read(|s| {
                let view = s.view();
                let leases = view.leases()?;
                let auth = s.auth()?;
                let revision = view.revision();
                let mut kvs = Vec::new();
                view.scan(&KeyRange::From(Bytes::new()), revision, &mut |kv| {
                    kvs.push(kv);
                    ControlFlow::Continue(())
                })?;
                Ok::<_, Error>(SnapshotEncoder::new(revision, leases, kvs).with_auth(auth))
            })?
        })
        .await
    }
}

/// Creates data directory `data_dir` from a snapshot file: either one saved by
/// `etcdctl snapshot save` from a t4 server (its SHA-256 digest is checked and stripped, with
/// the padding before it) or the bare bytes of [`Node::snapshot`] (see
/// [`t4_core::snapshot::decode_file`]). Checks the snapshot is complete and undamaged, then
/// writes it as the directory's only WAL segment, so that the first [`Node::open`] replays
/// it. `data_dir` must not exist or be empty; nothing is written if the snapshot is refused.
pub fn restore_snapshot(file: Bytes, data_dir: &Path) -> Result<SnapshotInfo> {
    let (snapshot, info) = decode_file(&file)?;
    let io = |context: &'static str, path: PathBuf| {
        move |source: std::io::Error| Error::Io {
            context,
            path,
            source,
        }
    };
    match std::fs::read_dir(data_dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(Error::DataDir {
                    path: data_dir.to_path_buf(),
                    reason: "is not empty; restore a snapshot into a new directory".into(),
                });
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("reading the data dir", data_dir.to_path_buf())(e)),
    }
    let wal = data_dir.join("wal");
    std::fs::create_dir_all(&wal).map_err(io("creating the WAL directory", wal.clone()))?;
    let file = wal.join(segment_file_name(1));
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(&file)?;
        f.write_all(&snapshot)?;
        f.sync_all()?;
        std::fs::File::open(&wal)?.sync_all()
    };
    write().map_err(io("writing the restored WAL segment", file.clone()))?;
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Config, PutRequest};

    #[tokio::test]
    async fn a_restored_snapshot_holds_the_same_keys_revisions_leases_and_hash() {
        let dir = tempfile::tempdir().expect("tempdir");
        let node = Node::open(Config::new(dir.path().join("a")))
            .await
            .expect("open");
        let lease = node.lease_grant(600, 0).await.expect("lease").id;
        node.put("a", "1").await.expect("put");
        node.put("b", "1").await.expect("put");
        node.put("a", "2").await.expect("put");
        node.delete("b").await.expect("delete");
        node.put_with(PutRequest {
            key: "c".into(),
            value: "leased".into(),
            lease,
            ..Default::default()
        })
        .await
        .expect("put");
        let revision = node.current_revision();
        let bytes: Vec<u8> = node.snapshot().await.expect("snapshot").flatten().collect();
        // Compacted at the snapshot revision, the origin has the restored history exactly.
        node.compact(revision, true).await.expect("compact");
        let want = node.hash_kv(revision).await.expect("hash");
        let a = node.get("a").await.expect("get");
        node.close().await.expect("close");

        let restored_dir = dir.path().join("b");
        let info = restore_snapshot(Bytes::from(bytes.clone()), &restored_dir).expect("restore");
        assert_eq!((info.revision, info.keys, info.leases), (revision, 2, 1));
        let restored = Node::open(Config::new(&restored_dir)).await.expect("open");
        assert_eq!(restored.current_revision(), revision);
        assert_eq!(restored.get("a").await.expect("get"), a);
        assert_eq!(restored.get("b").await.expect("get"), None);
        let c = restored.get("c").await.expect("get").expect("c restored");
        assert_eq!(c.lease, lease);
        let ttl = restored.lease_time_to_live(lease, true).await.expect("ttl");
        assert_eq!(ttl.keys, vec![Bytes::from_static(b"c")]);
        assert_eq!(restored.hash_kv(revision).await.expect("hash"), want);
        // Writes continue after the snapshot revision.
        assert_eq!(restored.put("d", "1").await.expect("put"), revision + 1);
        restored.close().await.expect("close");

        // The file etcdctl saves from the server restores the same snapshot.
        let file = t4_core::snapshot::encode_file(bytes.clone());
        let from_file = dir.path().join("from-file");
        assert_eq!(
            restore_snapshot(Bytes::from(file.clone()), &from_file).expect("restore"),
            info
        );
        let segment = from_file.join("wal").join(segment_file_name(1));
        assert_eq!(std::fs::read(&segment).expect("segment"), bytes);
        // A file with one byte changed is refused, and nothing is written.
        let mut damaged = file;
        damaged[bytes.len() / 2] ^= 0x04;
        let e = restore_snapshot(Bytes::from(damaged), &dir.path().join("damaged"))
            .expect_err("a damaged file is refused");
        assert!(e.to_string().contains("digest does not match"), "{e}");
        assert!(!dir.path().join("damaged").exists());

        // A restore never overwrites data, and never takes a cut snapshot.
        assert!(restore_snapshot(Bytes::from(bytes.clone()), &restored_dir).is_err());
        let cut = Bytes::from(bytes[..bytes.len() - 3].to_vec());
        assert!(matches!(
            restore_snapshot(cut, &dir.path().join("c")),
            Err(Error::Snapshot(_))
        ));
        assert!(!dir.path().join("c").exists());
    }
}
