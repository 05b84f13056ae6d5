//! Start-up errors with a bucket: clear messages, exit status 1, nothing served.

use std::time::Duration;

use t4_e2e::moto::Moto;
use t4_e2e::{t4_bin, tool};

#[test]
fn a_missing_bucket_stops_start_up_with_a_clear_error() {
    let moto = Moto::start("exists");
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data").display().to_string();
    let mut args: Vec<String> = ["run", "--listen", "127.0.0.1:0", "--data-dir", &dir]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let flags = moto.flags("t4");
    args.extend(flags.iter().map(|f| {
        if f == "exists" {
            "missing".to_string()
        } else {
            f.clone()
        }
    }));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let ran = tool::run(t4_bin!().as_ref(), &args, Duration::from_secs(60));
    assert_eq!(ran.status.and_then(|s| s.code()), Some(1), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("the bucket does not exist"),
        "{}",
        ran.stderr
    );
    assert!(
        !ran.stderr.contains("serving the etcd v3 API"),
        "{}",
        ran.stderr
    );
}
