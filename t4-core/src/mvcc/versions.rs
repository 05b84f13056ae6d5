//! Per-key version lists, shared by the in-memory store and the overlay.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::kv::{KeyRange, KeyValue, Revision};

/// The versions of one key, oldest first; `None` is a deletion.
pub(crate) type Versions = Vec<(Revision, Option<KeyValue>)>;

/// Versions of many keys, in key order.
pub(crate) type VersionMap = BTreeMap<Bytes, Versions>;

/// The state of a key at `rev`: `Some(None)` = deleted, `None` = no version at or before `rev`.
pub(crate) fn state_at(versions: &Versions, rev: Revision) -> Option<Option<&KeyValue>> {
    versions
        .iter()
        .rev()
        .find(|(r, _)| *r <= rev)
        .map(|(_, kv)| kv.as_ref())
}

/// The entries of `map` whose key falls in `range`, in key order.
pub(crate) fn in_range<'a>(
    map: &'a VersionMap,
    range: &KeyRange,
) -> Box<dyn Iterator<Item = (&'a Bytes, &'a Versions)> + 'a> {
    match range {
        KeyRange::Single(k) => Box::new(map.get_key_value(k).into_iter()),
        KeyRange::From(s) => Box::new(map.range(s.clone()..)),
        KeyRange::Between(s, e) if e > s => Box::new(map.range(s.clone()..e.clone())),
        KeyRange::Between(..) => Box::new(std::iter::empty()),
    }
}
