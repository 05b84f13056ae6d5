//! Watches: a stream of events from a revision, exactly once and in order.
//!
//! A watch follows the core's published batches live. When it starts in the past, or falls
//! more than [`crate::Config::watch_buffer`] batches behind (a slow consumer), it catches up
//! from the store's history instead; writers never wait for watchers. The
//! [`t4_core::watch::WatchCursor`] makes both paths deliver each revision exactly once.

use std::sync::Arc;

use futures::Stream;
use t4_core::watch::{WatchCursor, WatchFilter};
use t4_core::{Event, KeyRange, ReadView, Revision, Store};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use crate::error::{Error, Result};
use crate::slot::StoreSlot;

/// Most events replayed from the store per batch.
const REPLAY_BATCH: usize = 1000;

/// What to watch and from where.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchOptions {
    /// First revision to deliver; 0 means "changes after now".
    pub start_revision: Revision,
    /// Include each key's previous value.
    pub prev_kv: bool,
    /// Skip put events.
    pub no_put: bool,
    /// Skip delete events.
    pub no_delete: bool,
}

/// A live watch. Use [`Watch::next_batch`] for revision-grouped batches, or turn it into a
/// [`Stream`] of single events with [`Watch::into_stream`].
pub struct Watch {
    cursor: WatchCursor,
    live: broadcast::Receiver<Arc<[Event]>>,
    store: Arc<StoreSlot>,
    /// Whether the cursor has caught up with the store and follows live batches.
    synced: bool,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("filter", &self.cursor.filter)
            .field("next_revision", &self.cursor.next)
            .field("synced", &self.synced)
            .finish_non_exhaustive()
    }
}

impl Watch {
    pub(crate) fn start(
        range: KeyRange,
        options: &WatchOptions,
        live: broadcast::Receiver<Arc<[Event]>>,
        store: Arc<StoreSlot>,
    ) -> Result<Watch> {
        let (revision, compact_revision) = store.read(|s| {
            let view = s.view();
            (view.revision(), view.compact_revision())
        })?;
        let start = if options.start_revision <= 0 {
            revision + 1
        } else {
            options.start_revision
        };
        if start < compact_revision {
            return Err(Error::WatchCompacted {
                requested: start,
                compact_revision,
            });
        }
        let filter = WatchFilter {
            range,
            no_put: options.no_put,
            no_delete: options.no_delete,
            prev_kv: options.prev_kv,
        };
        Ok(Watch {
            cursor: WatchCursor::new(filter, start),
            live,
            store,
            synced: false,
        })
    }

    /// The next revision this watch will deliver; every earlier revision has been delivered.
    pub fn next_revision(&self) -> Revision {
        self.cursor.next
    }

    /// Whether the watch has delivered everything applied so far it could know of (etcd's
    /// "synced" watcher).
    pub fn is_synced(&self) -> bool {
        self.synced
    }

    /// Waits for the next events: one or more whole revisions, in order. Fails with
    /// [`Error::WatchCompacted`] if the revisions it needs were compacted, and with
    /// [`Error::Closed`] when the node closes.
    pub async fn next_batch(&mut self) -> Result<Vec<Event>> {
        loop {
            let events = self.advance().await?;
            if !events.is_empty() {
                return Ok(events);
            }
        }
    }

    /// One step of the watch: like [`Watch::next_batch`], but it also returns, with no
    /// events, whenever the watch moved without a matching event — it caught up with the
    /// store, or a published batch held nothing for it. After each step
    /// [`Watch::next_revision`] and [`Watch::is_synced`] say where the watch stands, which is
    /// what a server needs to answer etcd's progress requests truthfully.
    pub async fn advance(&mut self) -> Result<Vec<Event>> {
        if !self.synced {
            let cursor = &mut self.cursor;
            let replayed = self.store.read(|store| {
                let view = store.view();
                if cursor.next > view.revision() {
                    return None;
                }
                Some(match cursor.replay(&view, REPLAY_BATCH) {
                    Ok(events) => Ok(events),
                    Err(t4_core::Error::Compacted) => Err(Error::WatchCompacted {
                        requested: cursor.next,
                        // etcd: the oldest revision still available, where a client that
                        // restarts its watch is served again.
                        compact_revision: view.events_floor(),
                    }),
                    Err(e) => Err(Error::Request(e)),
                })
            })?;
            if let Some(step) = replayed {
                return step;
            }
            self.synced = true;
            return Ok(Vec::new());
        }
        match self.live.recv().await {
            Ok(batch) => match self.cursor.accept_live(&batch) {
                Some(events) => Ok(events),
                None => {
                    self.synced = false;
                    Ok(Vec::new())
                }
            },
            Err(RecvError::Lagged(_)) => {
                self.synced = false;
                Ok(Vec::new())
            }
            Err(RecvError::Closed) => Err(Error::Closed),
        }
    }

    /// The watch as a stream of single events. The stream ends after yielding an error
    /// ([`Error::Closed`] when the node closes, [`Error::WatchCompacted`] if it fell behind
    /// a compaction).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), t4::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let node = t4::Node::open(t4::Config::new(dir.path())).await?;
    /// use futures::StreamExt;
    ///
    /// let watch = node.watch(t4::KeyRange::prefix("cfg/"), Default::default()).await?;
    /// let mut events = watch.into_stream();
    /// node.put("cfg/a", "1").await?;
    /// let event = events.next().await.expect("a watch stream only ends after an error")?;
    /// assert_eq!(event.kv.key, "cfg/a");
    /// # Ok(())
    /// # }
    /// ```
    pub fn into_stream(self) -> impl Stream<Item = Result<Event>> + Send + Unpin + 'static {
        let state = (self, std::collections::VecDeque::<Event>::new(), false);
        Box::pin(futures::stream::unfold(
            state,
            |(mut watch, mut queue, done)| async move {
                if done {
                    return None;
                }
                if let Some(event) = queue.pop_front() {
                    return Some((Ok(event), (watch, queue, false)));
                }
                match watch.next_batch().await {
                    Ok(events) => {
                        queue.extend(events);
                        let first = queue.pop_front().expect("batches are never empty");
                        Some((Ok(first), (watch, queue, false)))
                    }
                    Err(e) => Some((Err(e), (watch, queue, true))),
                }
            },
        ))
    }
}
