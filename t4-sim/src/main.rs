//! `t4-sim`: run one seed, or a swarm of seeds, and print the verdicts.
//!
//! ```text
//! cargo run -p t4-sim --release -- --seed 42            # one scenario, full report
//! cargo run -p t4-sim --release -- --seeds 0..200       # a swarm, one line per failure
//! cargo run -p t4-sim --release -- --seed 42 --trace    # also print every event
//! ```
//!
//! Exit status: 0 when every run passed, 1 when one failed, 2 on bad arguments.

use std::process::ExitCode;
use std::str::FromStr;

use t4_sim::fault::{BucketChoice, FaultMode};
use t4_sim::{Scenario, run};

const USAGE: &str = "\
usage: t4-sim (--seed N | --seeds A..B) [options]

  --seed N               run one scenario and print its full report
  --seeds A..B           run seeds A, A+1, ..., B-1 and print a summary
  --ops N                total client operations per run (default: drawn from the seed)
  --clients N            number of clients (default: drawn from the seed)
  --faults MODE          none | crash | disk | net | all (default: all)
  --lying-disk           run on a disk that acknowledges fsync and forgets (must FAIL)
  --no-sync-on-recovery  do not make recovered WAL bytes durable before serving
  --failed-is-definite   judge \"node failed\" answers as \"did not happen\" (they are not)
  --bucket MODE          drawn | none | sync | async (default: drawn from the seed)
  --zombie, --no-zombie  force the zombie-writer scenario on or off (default: drawn; sync bucket)
  --lying-bucket         run on a bucket that acknowledges creates and drops them (must FAIL)
  --trace                print the full event trace (with --seed)
  --verbose              print every report of a swarm, not only failures
";

struct Args {
    seeds: std::ops::Range<u64>,
    single: bool,
    template: Scenario,
    trace: bool,
    verbose: bool,
}

fn parse<T: FromStr>(flag: &str, v: Option<String>) -> Result<T, String> {
    let v = v.ok_or_else(|| format!("{flag} needs a value"))?;
    v.parse().map_err(|_| format!("{flag}: cannot parse {v:?}"))
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mut seeds = None;
    let mut single = false;
    let mut template = Scenario::new(0);
    let (mut trace, mut verbose) = (false, false);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--seed" => {
                let s: u64 = parse("--seed", it.next())?;
                seeds = Some(s..s + 1);
                single = true;
            }
            "--seeds" => {
                let v: String = parse("--seeds", it.next())?;
                let (a, b) = v
                    .split_once("..")
                    .ok_or_else(|| format!("--seeds: expected A..B, got {v:?}"))?;
                let a: u64 = parse("--seeds", Some(a.to_string()))?;
                let b: u64 = parse("--seeds", Some(b.to_string()))?;
                if b <= a {
                    return Err(format!("--seeds: empty range {a}..{b}"));
                }
                seeds = Some(a..b);
            }
            "--ops" => template.ops = Some(parse("--ops", it.next())?),
            "--clients" => template.clients = Some(parse("--clients", it.next())?),
            "--faults" => template.faults = parse::<String>("--faults", it.next())?.parse()?,
            "--lying-disk" => template.lying_disk = true,
            "--no-sync-on-recovery" => template.sync_on_recovery = false,
            "--failed-is-definite" => template.failed_is_definite = true,
            "--bucket" => template.bucket = parse::<String>("--bucket", it.next())?.parse()?,
            "--zombie" => template.zombie = Some(true),
            "--no-zombie" => template.zombie = Some(false),
            "--lying-bucket" => template.lying_bucket = true,
            "--trace" => trace = true,
            "--verbose" => verbose = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let seeds = seeds.ok_or("give --seed N or --seeds A..B")?;
    if template.faults == FaultMode::None && template.lying_disk {
        template.faults = FaultMode::Crash;
    }
    if template.zombie == Some(true) && template.bucket == BucketChoice::Drawn {
        template.bucket = BucketChoice::Sync;
    }
    if template.lying_disk && template.bucket == BucketChoice::Drawn {
        // The lie is about the local disk: judge it without a bucket to recover from.
        template.bucket = BucketChoice::Off;
    }
    if template.lying_bucket && template.bucket == BucketChoice::Drawn {
        template.bucket = BucketChoice::Sync;
    }
    Ok(Args {
        seeds,
        single,
        template,
        trace,
        verbose,
    })
}

/// Wall-clock time, only to report the simulator's speed (never inside a run).
#[allow(clippy::disallowed_methods)]
fn wall() -> std::time::Instant {
    std::time::Instant::now()
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("t4-sim: {e}\n");
            }
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let started = wall();
    let mut failed = Vec::new();
    let mut sim_nanos: u128 = 0;
    let mut ops = 0usize;
    let mut outage_lease_answers = 0usize;
    let count = args.seeds.end - args.seeds.start;
    for seed in args.seeds.clone() {
        let scenario = Scenario {
            seed,
            keep_trace: args.trace && args.single,
            ..args.template.clone()
        };
        let report = run(&scenario);
        sim_nanos += u128::from(report.sim_time.as_nanos());
        ops += report.stats.ops;
        outage_lease_answers += report.stats.outage_lease_answers;
        if args.single {
            if let Some(trace) = &report.trace {
                print!("{trace}");
            }
            print!("{report}");
        } else if !report.passed() || args.verbose {
            print!("{report}");
        }
        if !report.passed() {
            failed.push(scenario);
        }
    }
    let wall_secs = started.elapsed().as_secs_f64().max(1e-9);
    let sim_secs = sim_nanos as f64 / 1e9;
    if !args.single {
        println!(
            "{} seeds ({}..{}): {} passed, {} failed; {ops} operations ({outage_lease_answers} lease \
             answers during bucket outages), {:.0} simulated seconds in {:.1}s wall \
             ({:.0} simulated s per wall s, {:.0} seeds per minute)",
            count,
            args.seeds.start,
            args.seeds.end,
            count as usize - failed.len(),
            failed.len(),
            sim_secs,
            wall_secs,
            sim_secs / wall_secs,
            count as f64 * 60.0 / wall_secs
        );
    }
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!("FAILED seeds; replay each with:");
        for s in &failed {
            eprintln!("  {}", s.replay_command());
        }
        ExitCode::from(1)
    }
}
