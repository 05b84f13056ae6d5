//! Multi-version storage: the store contract, the in-memory store, etcd's range semantics,
//! and the overlay of decided-but-unapplied writes.

#[cfg(any(test, feature = "test-suite"))]
pub mod conformance;
mod hash;
mod mem;
mod overlay;
mod range;
mod store;
mod versions;

pub use hash::{KvHash, hash_kv};
pub use mem::{MemStore, MemView};
pub use overlay::{Overlay, OverlayView};
pub use range::{range, read_revision};
pub use store::{CheckpointImage, ReadView, Store, StoreError};
