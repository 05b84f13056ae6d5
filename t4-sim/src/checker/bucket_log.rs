//! Checker 7: the log in the bucket never forks.
//!
//! Tail objects (`wal/<first index>`) hold WAL frames; merged segments
//! (`seg/<first>-<last>`) hold a segment header and frames (`docs/object-store-layout.md`).
//! Whatever writers did — a zombie waking up after a takeover, ambiguous PUTs retried — no
//! two objects may hold **different entries for one index**, and an object's first entry is
//! the one its name says; and terms never decrease along the log. Checkpoints are not read here: the recoverability check judges what
//! they hold.
//!
//! One exception: a term-start marker (an entry without operations) left at an index that a
//! merged segment already covers. A writer paused in the middle of its start-up can wake
//! after a newer writer created, merged and deleted tails at names its listing did not hold,
//! write its marker into the gap, and only then find, at its confirming manifest read, that
//! it is fenced. (A tail it *did* list being gone makes it confirm before writing anything,
//! so that case writes nothing.) Such a marker holds no client write and is never read
//! (recovery reads the tails after the last segment only), so it forks nothing; it is ignored.

use std::collections::BTreeMap;

use bytes::Bytes;
use t4_core::remote::layout::is_marker;
use t4_core::wal::frame::FrameRead;
use t4_core::wal::segment::SEGMENT_HEADER_LEN;
use t4_core::wal::{LogEntry, decode_entry, read_frame};

use super::{Kind, Violation};
use crate::objstore::SimObjectStore;

/// The entries in `bytes` from `offset` on, up to the first frame that does not decode.
pub fn decode_frames(bytes: &Bytes, mut offset: usize) -> Vec<LogEntry> {
    let mut out = Vec::new();
    while let FrameRead::Frame { payload, len } = read_frame(bytes, offset) {
        match decode_entry(&payload) {
            Ok(e) => out.push(e),
            Err(_) => break,
        }
        offset += len;
    }
    out
}

/// Every log entry the objects under `prefix` hold, by index, with the objects holding it;
/// and violations where two objects disagree.
pub fn scan(bucket: &SimObjectStore, prefix: &str) -> (BTreeMap<u64, LogEntry>, Vec<Violation>) {
    let root = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    };
    let mut seen: BTreeMap<u64, (LogEntry, String)> = BTreeMap::new();
    let mut out = Vec::new();
    let segments: Vec<(u64, u64)> = bucket
        .objects()
        .filter_map(|(key, _)| {
            let range = key.strip_prefix(&root)?.strip_prefix("seg/")?;
            let (first, last) = range.split_once('-')?;
            Some((first.parse().ok()?, last.parse().ok()?))
        })
        .collect();
    let merged = |index: u64| segments.iter().any(|&(f, l)| f <= index && index <= l);
    for (key, bytes) in bucket.objects() {
        let Some(rel) = key.strip_prefix(&root) else {
            continue;
        };
        let (first, offset) = if let Some(n) = rel.strip_prefix("wal/") {
            (n.parse::<u64>().ok(), 0)
        } else if let Some(range) = rel.strip_prefix("seg/") {
            let first = range.split('-').next().and_then(|n| n.parse::<u64>().ok());
            (first, SEGMENT_HEADER_LEN)
        } else {
            continue;
        };
        let entries = decode_frames(bytes, offset);
        if rel.starts_with("wal/") && is_marker(&entries) && merged(entries[0].index) {
            continue;
        }
        if let (Some(first), Some(e)) = (first, entries.first())
            && e.index != first
        {
            out.push(Violation::new(
                Kind::Fencing,
                format!("object {key} starts with entry {}, not {first}", e.index),
            ));
        }
        for e in entries {
            match seen.get(&e.index) {
                Some((other, holder)) if *other != e => out.push(Violation::new(
                    Kind::Fencing,
                    format!(
                        "the bucket's history forks at entry {}: {holder} holds term {}, {key} holds term {} with other contents",
                        e.index, other.term, e.term
                    ),
                )),
                Some(_) => {}
                None => {
                    seen.insert(e.index, (e, key.to_string()));
                }
            }
        }
    }
    // Terms never go backwards along the log: a writer of an older term that appends after
    // a newer term's entries was not fenced.
    let mut prev: Option<(u64, u64, &str)> = None;
    let mut regressions = Vec::new();
    for (index, (e, key)) in &seen {
        if let Some((pi, pt, pkey)) = prev
            && pi + 1 == *index
            && e.term < pt
        {
            regressions.push(format!(
                "the bucket's log goes back from term {pt} (entry {pi}, {pkey}) to term {} (entry {index}, {key}): a writer of an older term extended a newer term's log",
                e.term
            ));
        }
        prev = Some((*index, e.term, key));
    }
    if let Some(first) = regressions.first() {
        let more = regressions.len() - 1;
        let detail = if more > 0 {
            format!("{first} (and {more} more places)")
        } else {
            first.clone()
        };
        out.push(Violation::new(Kind::Fencing, detail));
    }
    (seen.into_iter().map(|(i, (e, _))| (i, e)).collect(), out)
}

/// Checks that the log in the bucket under `prefix` never forks.
pub fn check(bucket: &SimObjectStore, prefix: &str) -> Vec<Violation> {
    scan(bucket, prefix).1
}
