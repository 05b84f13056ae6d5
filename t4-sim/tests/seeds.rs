//! Seeds in the test suite.
//!
//! `T4_SEED=N cargo test -p t4-sim` replays seed `N` (add `T4_SEED_LYING=1` for the lying
//! disk, `T4_FAULTS=crash` for a fault mode); without `T4_SEED` a small fixed set runs. The
//! swarm test runs a modest number of seeds on every `cargo test`; CI runs the 2000-seed swarm
//! in release mode through the CLI (see docs/simulation.md).

use t4_sim::fault::FaultMode;
use t4_sim::{Scenario, run};

fn check(scenario: &Scenario) {
    let report = run(scenario);
    assert!(
        report.passed(),
        "{report}\nreplay with: {}\n        or: T4_SEED={} cargo test -p t4-sim --test seeds",
        scenario.replay_command(),
        scenario.seed
    );
}

#[test]
fn replay_seed_from_env_or_a_fixed_set() {
    match std::env::var("T4_SEED") {
        Ok(seed) => {
            let seed: u64 = seed
                .trim()
                .parse()
                .expect("T4_SEED must be an unsigned integer");
            let faults: FaultMode = std::env::var("T4_FAULTS")
                .map(|f| f.parse().expect("T4_FAULTS: none, crash, disk, net or all"))
                .unwrap_or_default();
            let scenario = Scenario {
                faults,
                lying_disk: std::env::var("T4_SEED_LYING").is_ok(),
                ..Scenario::new(seed)
            };
            let report = run(&scenario);
            println!("{report}");
            assert!(
                report.passed(),
                "replay with: {}",
                scenario.replay_command()
            );
        }
        Err(_) => {
            // Seeds that once found something, plus a few ordinary ones. 357808861: an
            // unknown delete of a lease's only key, then that lease's expiry, in one entry
            // (the checker once read the pair as the expiry alone). 558351916, 558343905 and
            // 900001822: a lease's revoke or expiry deleting its key, then later in the same
            // entry an unknown delete that only one request could have made (the checker once
            // gave that request to the revoke's revision and had none left for the later
            // delete). 900015731: a writer paused after listing `wal/` woke to find the
            // last tail it listed merged and deleted by a newer writer, took that for the end
            // of the log and uploaded its unacknowledged entries there.
            for seed in [
                0,
                1,
                110,
                1458,
                1534,
                2931,
                357_808_861,
                558_343_905,
                558_351_916,
                900_001_822,
                900_015_731,
            ] {
                check(&Scenario::new(seed));
            }
        }
    }
}

#[test]
fn a_small_swarm_passes() {
    for seed in 10_000..10_500 {
        check(&Scenario::new(seed));
    }
}
