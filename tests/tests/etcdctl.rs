//! The real `etcdctl` (etcd 3.4's, installed by `scripts/install-test-deps.sh`) against the
//! `t4` binary built by cargo: runs `scripts/etcdctl-e2e.sh`, which starts the server on a free
//! loopback port with a temporary data dir and checks every answer of put/get/del, interactive
//! txn, watch, leases, compaction, endpoint status/health, member list and snapshot save.

use std::path::Path;
use std::process::Command;

#[test]
fn etcdctl_works_unchanged_against_t4() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/etcdctl-e2e.sh");
    let t4 = env!("CARGO_BIN_EXE_t4-e2e-server");
    assert!(
        Command::new("etcdctl").arg("version").output().is_ok(),
        "etcdctl is not installed: run scripts/install-test-deps.sh"
    );
    let out = Command::new("bash")
        .arg(&script)
        .arg(t4)
        .env("ETCDCTL_API", "3")
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{} {t4} failed ({}):\n{stdout}\n{stderr}",
        script.display(),
        out.status
    );
    assert!(
        stdout.contains("checks passed against t4"),
        "the script did not report its checks:\n{stdout}\n{stderr}"
    );
}
