//! etcd's Range semantics over any [`ReadView`]: revision checks, limit, count, sort,
//! revision filters, keys-only and count-only, exactly as etcd computes them.

use std::cmp::Ordering;
use std::ops::ControlFlow;

use super::store::{ReadView, StoreError};
use crate::error::Error;
use crate::kv::{KeyRange, KeyValue, Revision, key_after};
use crate::request::{RangeRequest, RangeResponse, SortOrder, SortTarget};

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Error {
        match e {
            StoreError::Compacted => Error::Compacted,
            other => Error::Store(other.to_string()),
        }
    }
}

/// The revision a read at `requested` (0 = current) is served at, after etcd's checks.
pub fn read_revision(view: &impl ReadView, requested: Revision) -> Result<Revision, Error> {
    let current = view.revision();
    if requested <= 0 {
        return Ok(current);
    }
    if requested > current {
        return Err(Error::FutureRevision);
    }
    if requested < view.compact_revision() {
        return Err(Error::Compacted);
    }
    Ok(requested)
}

fn default_ordering(target: SortTarget, order: SortOrder) -> bool {
    order == SortOrder::None || (target == SortTarget::Key && order == SortOrder::Ascend)
}

fn has_revision_filters(r: &RangeRequest) -> bool {
    r.min_mod_revision != 0
        || r.max_mod_revision != 0
        || r.min_create_revision != 0
        || r.max_create_revision != 0
}

/// A store's count as etcd's `count` field.
fn count_of(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A range that stopped at its limit tells `view` the count of the keys after its page: the
/// next page of a paged list (which starts right after the page's last key, or at the first
/// key it did not answer with) can then take its count without walking the rest again.
/// `kvs` are the first `limit + 1` keys of `keys` at `at`, in key order, and `total` the
/// count of all of them.
fn note_next_page(
    view: &impl ReadView,
    keys: &KeyRange,
    at: Revision,
    kvs: &[KeyValue],
    total: u64,
) {
    let [.., last, next] = kvs else {
        return;
    };
    let rest = total.saturating_sub(kvs.len() as u64 - 1);
    // No key lies between `last\0` and `next`: both start the same rest.
    view.note_count(&keys.starting_at(key_after(&last.key)), at, rest);
    view.note_count(&keys.starting_at(next.key.clone()), at, rest);
}

/// Serves `req` from `view` (the request's key must already be checked non-empty).
pub fn range(view: &impl ReadView, req: &RangeRequest) -> Result<RangeResponse, Error> {
    if req.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    let at = read_revision(view, req.revision)?;
    let mut resp = RangeResponse {
        revision: view.revision(),
        ..Default::default()
    };
    let keys = KeyRange::from_etcd(&req.key, &req.range_end);
    if keys.is_empty() {
        return Ok(resp);
    }

    // Like etcd: fetch one more than the limit to learn `more`, unless sorting or filtering
    // needs every key first.
    let fetch_all = !default_ordering(req.sort_target, req.sort_order) || has_revision_filters(req);
    let fetch_limit = if fetch_all || req.limit <= 0 {
        usize::MAX
    } else {
        (req.limit as usize).saturating_add(1)
    };
    if req.count_only {
        resp.count = count_of(view.count(&keys, at)?);
        return Ok(resp);
    }
    // The keys to answer with; then, if the scan stopped at the limit, the count of the
    // whole range, which a store can take without decoding (a paged list counts every key
    // after its page).
    let mut kvs: Vec<KeyValue> = Vec::new();
    view.scan(&keys, at, &mut |kv| {
        kvs.push(kv);
        if kvs.len() < fetch_limit {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break(())
        }
    })?;
    resp.count = if kvs.len() < fetch_limit {
        count_of(kvs.len() as u64)
    } else {
        let total = view.count(&keys, at)?;
        note_next_page(view, &keys, at, &kvs, total);
        count_of(total)
    };

    if req.max_mod_revision != 0 {
        kvs.retain(|kv| kv.mod_revision <= req.max_mod_revision);
    }
    if req.min_mod_revision != 0 {
        kvs.retain(|kv| kv.mod_revision >= req.min_mod_revision);
    }
    if req.max_create_revision != 0 {
        kvs.retain(|kv| kv.create_revision <= req.max_create_revision);
    }
    if req.min_create_revision != 0 {
        kvs.retain(|kv| kv.create_revision >= req.min_create_revision);
    }

    let mut order = req.sort_order;
    if req.sort_target != SortTarget::Key && order == SortOrder::None {
        order = SortOrder::Ascend;
    }
    if !default_ordering(req.sort_target, order) {
        let by = |a: &KeyValue, b: &KeyValue| -> Ordering {
            match req.sort_target {
                SortTarget::Key => a.key.cmp(&b.key),
                SortTarget::Version => a.version.cmp(&b.version),
                SortTarget::Create => a.create_revision.cmp(&b.create_revision),
                SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
                SortTarget::Value => a.value.cmp(&b.value),
            }
        };
        // Stable: ties keep key order.
        match order {
            SortOrder::Descend => kvs.sort_by(|a, b| by(b, a)),
            _ => kvs.sort_by(by),
        }
    }

    if req.limit > 0 && kvs.len() > req.limit as usize {
        kvs.truncate(req.limit as usize);
        resp.more = true;
    }
    if req.keys_only {
        for kv in &mut kvs {
            kv.value = Default::default();
        }
    }
    resp.kvs = kvs;
    Ok(resp)
}
