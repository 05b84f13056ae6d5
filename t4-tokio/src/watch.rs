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
use crate::store::FjallStore;

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
    store: FjallStore,
    /// Whether the cursor has caught up with the store and follows live batches.
    synced: bool,
}

impl Watch {
    pub(crate) fn start(
        range: KeyRange,
        options: &WatchOptions,
        live: broadcast::Receiver<Arc<[Event]>>,
        store: FjallStore,
    ) -> Result<Watch> {
        let view = store.view();
        let start = if options.start_revision <= 0 {
            view.revision() + 1
        } else {
            options.start_revision
        };
        if start < view.compact_revision() {
            return Err(Error::WatchCompacted {
                requested: start,
                compact_revision: view.compact_revision(),
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
            if !self.synced {
                let view = self.store.view();
                if self.cursor.next <= view.revision() {
                    match self.cursor.replay(&view, REPLAY_BATCH) {
                        Ok(events) if events.is_empty() => continue,
                        Ok(events) => return Ok(events),
                        Err(t4_core::Error::Compacted) => {
                            return Err(Error::WatchCompacted {
                                requested: self.cursor.next,
                                compact_revision: view.compact_revision(),
                            });
                        }
                        Err(e) => return Err(Error::Request(e)),
                    }
                }
                self.synced = true;
            }
            match self.live.recv().await {
                Ok(batch) => match self.cursor.accept_live(&batch) {
                    Some(events) if !events.is_empty() => return Ok(events),
                    Some(_) => {}
                    None => self.synced = false,
                },
                Err(RecvError::Lagged(_)) => self.synced = false,
                Err(RecvError::Closed) => return Err(Error::Closed),
            }
        }
    }

    /// The watch as a stream of single events. The stream ends after yielding an error.
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
