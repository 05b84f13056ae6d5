#!/usr/bin/env bash
# Runs `t4 bench` against `t4 run` and against a real etcd (Debian's etcd 3.4, /usr/bin/etcd)
# started the same way on the same machine, in the same run, and prints a Markdown table of
# throughput and latency with the t4 ÷ etcd ratio. docs/benchmarks.md records its output.
#
#   scripts/bench-vs-etcd.sh                 # every workload, 20000 ops each
#   OPS=50000 scripts/bench-vs-etcd.sh par-put mixed
#   T4_RUN_FLAGS="--s3-bucket ..." scripts/bench-vs-etcd.sh   # extra `t4 run` flags
#   ROUNDS=5 OPS=5000 scripts/bench-vs-etcd.sh seq-put par-put   # alternate t4 and etcd 5 times
#   T4=target/release/t4 scripts/bench-vs-etcd.sh   # this binary (default: scripts/build-release.sh's)
#
# With ROUNDS > 1 each workload runs against t4, then etcd, then t4 again and so on, and the
# table gives each server's median throughput (and the latencies of its median round), the
# ratio of the medians, and every round's ratio: on a noisy machine one round can land in a
# slow moment for one server only.
# Both servers keep their data in fresh temporary directories on the same disk, with fsync on.
# Every workload uses 64-byte keys and 256-byte values; parallel workloads use 16 clients
# over 4 connections. Raw JSON reports are kept in $OUT (default target/bench-vs-etcd).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib/servers.sh
source "$here/lib/servers.sh"
servers_init

root=$(cd "$here/.." && pwd)
# The t4 under test: $T4 if given, else the profile-guided release build of
# scripts/build-release.sh (T4_BUILD=plain: `cargo build --release` instead).
if [ -z "${T4:-}" ]; then
  if [ "${T4_BUILD:-pgo}" = plain ]; then
    (cd "$root" && cargo build -q --release --bin t4)
    T4=$(find_t4 release)
  else
    T4=$("$here/build-release.sh")
  fi
fi
OPS=${OPS:-20000}
ROUNDS=${ROUNDS:-1}
OUT=${OUT:-$root/target/bench-vs-etcd}
mkdir -p "$OUT"

workloads=("$@")
if [ ${#workloads[@]} -eq 0 ]; then
  workloads=(seq-put par-put seq-get par-get mixed txn range watch)
fi

free_ports 3
servers_tempdir t4
t4_dir=$TEMPDIR
servers_tempdir etcd
etcd_dir=$TEMPDIR
start_t4 "$T4" "${PORTS[0]}" "$t4_dir"
start_etcd "${PORTS[1]}" "${PORTS[2]}" "$etcd_dir"

flags_for() {
  case "$1" in
  seq-* | watch) echo "--clients 1 --conns 1" ;;
  *) echo "--clients 16 --conns 4" ;;
  esac
}

run() { # run SERVER PORT WORKLOAD ROUND -> writes $OUT/SERVER-WORKLOAD-ROUND.json
  local server=$1 port=$2 workload=$3 round=$4
  # shellcheck disable=SC2046 # flags_for prints a list of flags
  "$T4" bench --endpoints "127.0.0.1:$port" --workload "$workload" --ops "$OPS" \
    --key-size 64 --value-size 256 $(flags_for "$workload") --json \
    >"$OUT/$server-$workload-$round.json"
}

echo "| workload | clients | t4 ops/s | etcd ops/s | t4 ÷ etcd | t4 p50 / p99 / p999 µs | etcd p50 / p99 / p999 µs | t4 ÷ etcd per round |"
echo "|---|---|---|---|---|---|---|---|"
for w in "${workloads[@]}"; do
  for round in $(seq "$ROUNDS"); do
    run t4 "${PORTS[0]}" "$w" "$round"
    run etcd "${PORTS[1]}" "$w" "$round"
  done
  python3 - "$OUT" "$w" "$ROUNDS" <<'EOF'
import json, sys
out, workload, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
def load(server):
    reports = [json.load(open(f"{out}/{server}-{workload}-{r}.json")) for r in range(1, rounds + 1)]
    for r in reports:
        if r["errors"]:
            sys.exit(f"{server} {workload}: {r['errors']} errors, first: {r['first_error']}")
    return reports
t4, etcd = load("t4"), load("etcd")
def median(reports):
    # The round with the median throughput (the lower middle one for an even count).
    return sorted(reports, key=lambda r: r["ops_per_sec"])[(len(reports) - 1) // 2]
# For the watch workload the latency that matters is put sent -> event received.
def lat(r):
    l = r["other_latencies_us"]["put-to-event"] if r["workload"] == "watch" else r["latency_us"]
    return "{:.0f} / {:.0f} / {:.0f}".format(*(l[k] for k in ("p50", "p99", "p999")))
t, e = median(t4), median(etcd)
per_round = ", ".join(f"{a['ops_per_sec'] / b['ops_per_sec']:.2f}×" for a, b in zip(t4, etcd))
print(f"| {workload} | {t['clients']} | {t['ops_per_sec']:,.0f} | {e['ops_per_sec']:,.0f} "
      f"| {t['ops_per_sec'] / e['ops_per_sec']:.2f}× | {lat(t)} | {lat(e)} | {per_round} |")
EOF
done

echo
echo "t4: $("$T4" --version); etcd: $(/usr/bin/etcd --version | head -1); ${OPS} ops per workload, ${ROUNDS} round(s); $(nproc) cores; raw reports in $OUT"
