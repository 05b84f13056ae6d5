#!/usr/bin/env bash
# Builds the release `t4` binary with profile-guided optimisation (PGO) and prints its path.
#
#   scripts/build-release.sh            # -> target/pgo/t4 (or $CARGO_TARGET_DIR/pgo/t4)
#
# Three steps, each in its own target directory under target/pgo/ so that a rebuild after a
# code change recompiles only what changed:
#   1. an instrumented `t4` (rustc -Cprofile-generate), built for the host target so that
#      build scripts and proc-macros stay uninstrumented;
#   2. a training run: that binary serves `t4 run` on a loopback port with a fresh data dir on
#      disk, and the same binary drives it with every `t4 bench` workload (so the profile
#      covers the server's request path and the bench client's); the server is stopped with
#      SIGTERM so that it writes its profile;
#   3. the profiles are merged with the toolchain's own llvm-profdata (rustup's `llvm-tools`
#      component, added if missing: its LLVM must be rustc's) and `t4` is rebuilt with
#      -Cprofile-use.
# The release profile (Cargo.toml) already has fat LTO and one codegen unit; PGO takes about
# a fifth off the server's CPU per request on top (docs/benchmarks.md). A plain
# `cargo build --release` still gives a correct, slightly slower binary.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=lib/servers.sh
source "$here/lib/servers.sh"
servers_init

host=$(rustc -vV | sed -n 's/^host: //p')
profdata="$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata"
if [ ! -x "$profdata" ]; then
  echo "== adding rustup's llvm-tools component (for llvm-profdata)" >&2
  rustup component add llvm-tools >&2
fi
[ -x "$profdata" ] || {
  echo "no llvm-profdata at $profdata: install rustup's llvm-tools component" >&2
  exit 1
}

work=${CARGO_TARGET_DIR:-$root/target}/pgo
profiles=$work/profiles
rm -rf "$profiles"
mkdir -p "$profiles"

echo "== 1/3 building an instrumented t4" >&2
(cd "$root" && RUSTFLAGS="-Cprofile-generate=$profiles" CARGO_TARGET_DIR="$work/instrumented" \
  cargo build -q --release --target "$host" --bin t4)
instrumented=$work/instrumented/$host/release/t4

echo "== 2/3 training: every t4 bench workload against t4 run" >&2
free_ports 1
servers_tempdir pgo
log=$TEMPDIR/t4.log
"$instrumented" run --data-dir "$TEMPDIR/data" --listen "127.0.0.1:${PORTS[0]}" >"$log" 2>&1 &
T4_PID=$!
SERVERS_PIDS+=("$T4_PID")
# Ready once it logs its listening address (no etcdctl needed to build).
until grep -q "serving the etcd v3 API" "$log"; do
  kill -0 "$T4_PID" 2>/dev/null || {
    echo "the instrumented t4 run exited; its log:" >&2
    cat "$log" >&2
    exit 1
  }
  sleep 0.1
done
for workload in seq-put par-put seq-get par-get mixed txn range list watch; do
  case "$workload" in
  seq-* | watch) clients=(--clients 1 --conns 1) ;;
  *) clients=(--clients 16 --conns 4) ;;
  esac
  "$instrumented" bench --endpoints "127.0.0.1:${PORTS[0]}" --workload "$workload" \
    --ops 5000 --key-size 64 --value-size 256 "${clients[@]}" >>"$TEMPDIR/bench.log" 2>&1 || {
    echo "t4 bench --workload $workload failed; its output:" >&2
    cat "$TEMPDIR/bench.log" >&2
    exit 1
  }
done
# SIGTERM, then wait: the server writes its profile as it exits cleanly.
kill -TERM "$T4_PID"
wait "$T4_PID" || {
  echo "the instrumented t4 run did not exit cleanly (status $?); its log:" >&2
  cat "$log" >&2
  exit 1
}
servers_cleanup

echo "== 3/3 merging the profiles and building the optimised t4" >&2
"$profdata" merge -o "$work/t4.profdata" "$profiles"
(cd "$root" && RUSTFLAGS="-Cprofile-use=$work/t4.profdata" CARGO_TARGET_DIR="$work/optimized" \
  cargo build -q --release --target "$host" --bin t4)
cp "$work/optimized/$host/release/t4" "$work/t4"
echo "$work/t4"
