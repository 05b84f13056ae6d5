//! The node's object-store facing calls: waiting for recovery at start-up, on-demand
//! checkpoints, the loss window.

use tokio::sync::oneshot;

use crate::driver::{Command, Serving};
use crate::error::{Error, Result};
use crate::node::Node;

/// A checkpoint published in the bucket; see [`Node::checkpoint`].
pub use t4_core::remote::CheckpointInfo;

impl Node {
    /// Waits until the core serves (it recovers from the bucket first); a failure before that
    /// closes the node and is returned.
    pub(crate) async fn wait_serving(&self) -> Result<()> {
        let mut serving = self.shared.serving.clone();
        let state = serving
            .wait_for(|s| *s != Serving::Starting)
            .await
            .map(|s| s.clone())
            .map_err(|_| Error::Closed)?;
        match state {
            Serving::Failed(reason) => {
                let _ = self.close().await;
                Err(Error::Bootstrap { reason })
            }
            _ => Ok(()),
        }
    }

    /// Takes a checkpoint now and returns once it is published in the bucket: its index,
    /// revision and uploaded bytes. Checkpoints are also taken on their own, by
    /// [`crate::RemoteConfig::checkpoint_interval`] and
    /// [`crate::RemoteConfig::checkpoint_entries`]; this one is for backups on demand and
    /// tests. Fails with [`Error::Checkpoint`] when the node has no object store or the
    /// checkpoint could not be published.
    pub async fn checkpoint(&self) -> Result<CheckpointInfo> {
        let (reply, answer) = oneshot::channel();
        self.shared
            .commands
            .send(Command::Checkpoint { reply })
            .map_err(|_| Error::Closed)?;
        answer
            .await
            .map_err(|_| Error::Closed)?
            .map_err(|reason| Error::Checkpoint { reason })
    }

    /// How many acknowledged log entries are not in the bucket yet: what losing this
    /// machine's disk would lose. Always 0 without an object store; in sync-upload mode it
    /// is 0 too, as writes are acknowledged only once uploaded. A metric for async upload.
    pub fn unuploaded_entries(&self) -> u64 {
        *self.shared.unuploaded.borrow()
    }

    /// Waits until every acknowledged entry is in the bucket ([`Node::unuploaded_entries`]
    /// is 0): with async upload, call it before relying on the bucket alone. Returns at once
    /// without an object store or in sync-upload mode. Fails with [`Error::Closed`] if the
    /// node closes first.
    pub async fn wait_uploaded(&self) -> Result<()> {
        let mut unuploaded = self.shared.unuploaded.clone();
        unuploaded
            .wait_for(|n| *n == 0)
            .await
            .map_err(|_| Error::Closed)?;
        Ok(())
    }
}
