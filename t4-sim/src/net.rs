//! A simulated network: latency, loss and partitions between endpoints.
//!
//! The network decides the fate of each message — delivered after some latency, or lost —
//! and the scheduler carries it. Messages between two endpoints may be reordered (each has
//! its own latency). Today it carries client↔node traffic, so a request or its answer can be
//! lost and the client is left with an *unknown outcome*; the cluster issue will add
//! node↔node traffic on the same model.

use std::collections::BTreeSet;
use std::fmt;

use crate::rng::SimRng;

/// Something that sends and receives messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Endpoint {
    /// A t4 node.
    Node(usize),
    /// A client.
    Client(usize),
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Node(n) => write!(f, "n{n}"),
            Endpoint::Client(c) => write!(f, "c{c}"),
        }
    }
}

/// How the network behaves; chosen per run by the fault plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetConfig {
    /// One-way latency bounds, in nanoseconds (log-uniform).
    pub latency: (u64, u64),
    /// Chance that a message is lost, in parts per million.
    pub drop_ppm: u32,
}

impl Default for NetConfig {
    fn default() -> NetConfig {
        NetConfig {
            latency: (100_000, 5_000_000),
            drop_ppm: 0,
        }
    }
}

/// The network between every endpoint.
#[derive(Debug)]
pub struct SimNet {
    rng: SimRng,
    config: NetConfig,
    /// Cut links, stored with the smaller endpoint first.
    cut: BTreeSet<(Endpoint, Endpoint)>,
    /// Messages delivered and lost.
    pub delivered: u64,
    /// Messages lost.
    pub lost: u64,
}

fn link(a: Endpoint, b: Endpoint) -> (Endpoint, Endpoint) {
    if a <= b { (a, b) } else { (b, a) }
}

impl SimNet {
    /// A fully connected network.
    pub fn new(rng: SimRng, config: NetConfig) -> SimNet {
        SimNet {
            rng,
            config,
            cut: BTreeSet::new(),
            delivered: 0,
            lost: 0,
        }
    }

    /// The fate of one message from `from` to `to`: `Some(latency)` if it arrives.
    pub fn send(&mut self, from: Endpoint, to: Endpoint) -> Option<u64> {
        if self.cut.contains(&link(from, to)) || self.rng.chance(self.config.drop_ppm) {
            self.lost += 1;
            return None;
        }
        self.delivered += 1;
        let (lo, hi) = self.config.latency;
        Some(self.rng.log_uniform(lo, hi))
    }

    /// Cuts the link between `a` and `b` (both directions).
    pub fn partition(&mut self, a: Endpoint, b: Endpoint) {
        self.cut.insert(link(a, b));
    }

    /// Restores the link between `a` and `b`.
    pub fn heal(&mut self, a: Endpoint, b: Endpoint) {
        self.cut.remove(&link(a, b));
    }

    /// Restores every link.
    pub fn heal_all(&mut self) {
        self.cut.clear();
    }

    /// Whether the link between `a` and `b` is cut.
    pub fn is_cut(&self, a: Endpoint, b: Endpoint) -> bool {
        self.cut.contains(&link(a, b))
    }

    /// Stops random message loss (the end of a run's fault phase).
    pub fn calm(&mut self) {
        self.config.drop_ppm = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_cut_both_directions_until_healed() {
        let mut n = SimNet::new(SimRng::new(1), NetConfig::default());
        let (a, b) = (Endpoint::Client(0), Endpoint::Node(0));
        assert!(n.send(a, b).is_some());
        n.partition(b, a);
        assert!(n.send(a, b).is_none());
        assert!(n.send(b, a).is_none());
        n.heal(a, b);
        assert!(n.send(b, a).is_some());
    }

    #[test]
    fn loss_follows_the_configured_rate() {
        let config = NetConfig {
            drop_ppm: 250_000,
            ..NetConfig::default()
        };
        let mut n = SimNet::new(SimRng::new(2), config);
        let lost = (0..4000)
            .filter(|_| n.send(Endpoint::Client(0), Endpoint::Node(0)).is_none())
            .count();
        assert!((800..1200).contains(&lost), "{lost}");
    }
}
