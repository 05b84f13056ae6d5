//! The backend quota: raises etcd's NOSPACE alarm when the data directory outgrows
//! `--quota-backend-bytes`. While the alarm is raised, writes that add data are refused
//! (see [`crate::services::Context::check_space`]); reads, deletes and compaction go on. As in
//! etcd the alarm stays until an operator disarms it (`etcdctl alarm disarm`); if the data is
//! still over quota then, it is raised again.

use std::time::Duration;

use t4_proto::etcdserverpb::AlarmType;

use crate::services::Shared;

/// How often the size is checked.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Checks the quota until the server shuts down.
pub async fn monitor(ctx: Shared) {
    let mut ticker = tokio::time::interval(CHECK_EVERY);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = ctx.shutting_down() => return,
        }
        let Ok(status) = ctx.node.status().await else {
            return;
        };
        let quota = ctx.settings.quota_backend_bytes;
        if status.db_size_bytes > quota
            && ctx
                .alarms
                .raise(ctx.id.member_id, AlarmType::Nospace as i32)
        {
            tracing::warn!(
                db_size = status.db_size_bytes,
                quota,
                "the data directory exceeds --quota-backend-bytes: NOSPACE alarm raised, writes \
                 are refused until space is freed (compact) and the alarm is disarmed"
            );
        }
    }
}
