//! Logs recovery progress from the bucket and bucket outages, and publishes the loss window
//! of async upload. Only observes the core; decides nothing.

use std::time::Duration;

use t4_core::Core;
use t4_core::remote::{BootstrapPhase, BootstrapProgress};

use crate::store::FjallStore;

/// How often a long recovery logs where it stands within one phase.
const EVERY: Duration = Duration::from_secs(2);

/// What was last logged.
pub(super) struct Reporter {
    last: Option<(BootstrapPhase, std::time::Instant)>,
    outage: Option<String>,
}

impl Reporter {
    pub(super) fn new() -> Reporter {
        Reporter {
            last: None,
            outage: None,
        }
    }
}

fn log(progress: &BootstrapProgress) {
    tracing::info!(
        phase = ?progress.phase,
        files_loaded = progress.files_loaded,
        files_total = progress.files_total,
        entries_applied = progress.entries_applied,
        applied_index = progress.applied_index,
        "recovering from the bucket"
    );
}

/// Logs recovery progress (at each phase change, and every [`EVERY`] within a phase) and
/// the start and end of bucket outages.
#[allow(clippy::disallowed_methods)] // the adapter is where real time enters
pub(super) fn report(reporter: &mut Reporter, core: &Core<FjallStore>) {
    let outage = core.object_store_outage().map(str::to_string);
    if outage != reporter.outage {
        match &outage {
            Some(reason) => tracing::warn!(
                %reason,
                "the object store is unavailable: writes fail until it returns; reads continue"
            ),
            None => tracing::info!("the object store is reachable again; writes resume"),
        }
        reporter.outage = outage;
    }

    if reporter
        .last
        .is_some_and(|(phase, _)| phase == BootstrapPhase::Done)
    {
        return;
    }
    let progress = core.bootstrap_progress();
    let now = std::time::Instant::now();
    let due = match reporter.last {
        None => true,
        Some((phase, at)) => phase != progress.phase || now.duration_since(at) >= EVERY,
    };
    if due {
        if progress.phase == BootstrapPhase::Done {
            if reporter.last.is_some() {
                tracing::info!(
                    applied_index = core.applied_index(),
                    entries_applied = progress.entries_applied,
                    "recovered from the bucket; serving"
                );
            }
        } else {
            log(&progress);
        }
        reporter.last = Some((progress.phase, now));
    }
}
