//! Materialising a checkpoint from the bucket into a new data dir (`t4 restore checkpoint`).

use std::path::Path;

use t4_core::Store as _;
use t4_core::mvcc::CheckpointImage;

use crate::error::{Error, Result};
use crate::store::FjallStore;

/// Creates data directory `data_dir` holding `image` (a checkpoint's state at its log index),
/// durably. `data_dir` must not exist or be empty; a node opened on it serves the image's
/// keys at its revision, and with the same bucket continues from the log after its index.
pub fn restore_checkpoint(image: &CheckpointImage, data_dir: &Path) -> Result<()> {
    match std::fs::read_dir(data_dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(Error::DataDir {
                    path: data_dir.to_path_buf(),
                    reason: "is not empty; restore a checkpoint into a new directory".into(),
                });
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(Error::Io {
                context: "reading the data dir",
                path: data_dir.to_path_buf(),
                source,
            });
        }
    }
    std::fs::create_dir_all(data_dir).map_err(|source| Error::Io {
        context: "creating the data dir",
        path: data_dir.to_path_buf(),
        source,
    })?;
    crate::node::check_format(data_dir)?;
    let store = FjallStore::open(&data_dir.join("store"))?;
    store.load_checkpoint(image)?;
    store.persist()?;
    Ok(())
}
