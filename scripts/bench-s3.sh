#!/usr/bin/env bash
# Runs `t4 bench` seq-put and par-put against `t4 run` twice, in the same run: local-only, and
# with sync upload to an S3-compatible bucket (moto_server on loopback). Prints a Markdown table
# of throughput and latency, and for the bucket runs the object-store requests per 1,000 writes,
# counted by moto itself (its request recorder), not by t4. docs/benchmarks.md records its
# output.
#
#   scripts/bench-s3.sh                  # 1, 16 and 64 clients, 5000 writes each
#   OPS=20000 CLIENTS="16 64" scripts/bench-s3.sh
#   BIN=target/release/t4 scripts/bench-s3.sh   # use this binary instead of building one
#
# Each measurement uses a fresh data directory (and a fresh bucket prefix). Request counts come
# from a second, separate run of the same workload with moto's recorder on, so recording does
# not slow the timed run. Every write is a 64-byte key and a 256-byte value.
set -euo pipefail
shopt -s inherit_errexit

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib/servers.sh
source "$here/lib/servers.sh"
servers_init

root=$(cd "$here/.." && pwd)
if [ -z "${BIN:-}" ]; then
  (cd "$root" && cargo build -q --release --bin t4)
  BIN=$(find_t4 release)
fi
OPS=${OPS:-5000}
CLIENTS=${CLIENTS:-1 16 64}
command -v moto_server >/dev/null || {
  echo "moto_server is not installed: run scripts/install-test-deps.sh" >&2
  exit 1
}

free_ports 1
moto_port=${PORTS[0]}
servers_tempdir moto
moto_dir=$TEMPDIR
# moto writes its recording into its working directory.
(cd "$moto_dir" && exec moto_server -H 127.0.0.1 -p "$moto_port" >"$moto_dir/moto.log" 2>&1) &
SERVERS_PIDS+=("$!")
moto="http://127.0.0.1:$moto_port"
for _ in $(seq 1 300); do
  curl -sf "$moto/" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -sf -X PUT "$moto/bench" >/dev/null
recorder() { curl -sf -X "$1" "$moto/moto-api/recorder/$2"; }

# measure MODE CLIENTS WORKLOAD [count]: starts a fresh `t4 run`, runs the workload, prints
# the JSON report (and, with `count`, moto's request counts as a JSON object on a second line).
measure() {
  local mode=$1 clients=$2 workload=$3 count=${4:-}
  free_ports 1
  local port=${PORTS[0]}
  servers_tempdir t4
  local dir=$TEMPDIR
  local flags=()
  if [ "$mode" = s3 ]; then
    flags=(--s3-bucket bench --s3-prefix "$(basename "$dir")" --s3-endpoint "$moto" --s3-region us-east-1
      --s3-access-key-id test --s3-secret-access-key test)
  fi
  "$BIN" run --data-dir "$dir/data" --listen "127.0.0.1:$port" "${flags[@]}" >"$dir/t4.log" 2>&1 &
  local pid=$!
  SERVERS_PIDS+=("$pid")
  wait_ready "t4" "$pid" "$port" "$dir/t4.log"
  if [ -n "$count" ]; then
    recorder POST reset-recording >/dev/null
    recorder POST start-recording >/dev/null
  fi
  local conns=$((clients < 4 ? clients : 4))
  "$BIN" bench --endpoints "127.0.0.1:$port" --workload "$workload" --ops "$OPS" \
    --key-size 64 --value-size 256 --clients "$clients" --conns "$conns" --json
  if [ -n "$count" ]; then
    recorder POST stop-recording >/dev/null
    recorder GET download-recording | python3 -c '
import collections, json, sys
counts = collections.Counter()
for line in sys.stdin:
    if line.strip():
        r = json.loads(line)
        url = r["url"]
        if "/moto-api/" in url:
            continue
        if r["method"] == "GET" and ("list-type=" in url or "prefix=" in url):
            counts["LIST"] += 1
        elif r["method"] == "POST" and "delete" in url:
            counts["DELETE"] += 1
        else:
            counts[r["method"]] += 1
print(json.dumps(counts))'
  fi
  kill "$pid"
  wait "$pid" 2>/dev/null || true
}

echo "| workload | clients | local ops/s | local p50 / p99 µs | S3 sync ops/s | S3 sync p50 / p99 µs | S3 requests per 1,000 writes |"
echo "|---|---|---|---|---|---|---|"
for clients in $CLIENTS; do
  workload=par-put
  [ "$clients" = 1 ] && workload=seq-put
  local_report=$(measure local "$clients" "$workload")
  s3_report=$(measure s3 "$clients" "$workload")
  counted=$(measure s3 "$clients" "$workload" count)
  python3 - "$local_report" "$s3_report" "$counted" "$OPS" <<'EOF'
import json, sys
local, s3 = json.loads(sys.argv[1]), json.loads(sys.argv[2])
counted_lines = sys.argv[3].strip().splitlines()
counted, counts = json.loads(counted_lines[0]), json.loads(counted_lines[-1])
for name, r in (("local", local), ("s3", s3), ("counted s3", counted)):
    if r["errors"]:
        sys.exit(f"{name} {r['workload']}: {r['errors']} errors, first: {r['first_error']}")
ops = int(sys.argv[4])
lat = lambda r: "{:.0f} / {:.0f}".format(r["latency_us"]["p50"], r["latency_us"]["p99"])
per = ", ".join(f"{k} {v * 1000 / ops:.0f}" for k, v in sorted(counts.items())) or "none"
print(f"| {local['workload']} | {local['clients']} | {local['ops_per_sec']:,.0f} | {lat(local)} "
      f"| {s3['ops_per_sec']:,.0f} | {lat(s3)} | {per} |")
EOF
done
echo
echo "t4: $("$BIN" --version); moto_server on loopback; ${OPS} writes per run; $(nproc) cores"
