//! Response headers: who answered (cluster and member id) and at which revision.

use t4_proto::etcdserverpb::ResponseHeader;

/// The raft-term analogue t4 reports: a single node is always in its first term.
pub const TERM: u64 = 1;

/// The identity every response header carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The cluster id, generated once and kept in the data directory.
    pub cluster_id: u64,
    /// This member's id, derived from its name (`--node-id`).
    pub member_id: u64,
}

impl Identity {
    /// A header for data read (or written) at `revision`.
    pub fn header(&self, revision: i64) -> Option<ResponseHeader> {
        Some(ResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.member_id,
            revision,
            raft_term: TERM,
        })
    }
}

/// A stable, non-zero 64-bit id for a member name (FNV-1a; stable across builds and
/// platforms, unlike the standard library's hasher).
pub fn member_id(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_ids_are_stable_and_distinct() {
        assert_eq!(member_id("node-a"), member_id("node-a"));
        assert_ne!(member_id("node-a"), member_id("node-b"));
        // Pinned: a member keeps its id across releases.
        assert_eq!(member_id(""), 0xcbf2_9ce4_8422_2325);
    }
}
