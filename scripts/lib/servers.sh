# Helpers sourced by scripts that start `t4 run` and a real etcd on loopback ports with
# temporary data directories: scripts/etcdctl-e2e.sh and scripts/bench-vs-etcd.sh.
#
# Everything a helper starts is remembered and stopped (by process id) and every temporary
# directory removed by `servers_cleanup`, which the sourcing script installs as its EXIT trap
# through `servers_init`.

# Process ids and directories to clean up.
SERVERS_PIDS=()
SERVERS_DIRS=()
# Set to 1 to keep the data directories and logs (for debugging a failure).
SERVERS_KEEP=${SERVERS_KEEP:-0}

servers_init() {
  trap servers_cleanup EXIT
  trap 'exit 130' INT TERM
}

servers_cleanup() {
  local pid
  for pid in "${SERVERS_PIDS[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      # Give it a moment to exit cleanly, then insist.
      for _ in 1 2 3 4 5 6 7 8 9 10; do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
      done
      kill -9 "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  done
  SERVERS_PIDS=()
  local dir
  for dir in "${SERVERS_DIRS[@]}"; do
    if [ "$SERVERS_KEEP" = 1 ]; then
      echo "kept $dir" >&2
    else
      rm -rf "$dir"
    fi
  done
  SERVERS_DIRS=()
}

# servers_tempdir NAME: sets TEMPDIR to a new temporary directory that cleanup removes.
servers_tempdir() {
  TEMPDIR=$(mktemp -d "${TMPDIR:-/tmp}/t4-$1.XXXXXX")
  SERVERS_DIRS+=("$TEMPDIR")
}

# free_ports N: sets the array PORTS to N distinct free loopback TCP ports.
free_ports() {
  mapfile -t PORTS < <(python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
for s in socks:
    print(s.getsockname()[1])
EOF
  )
  [ "${#PORTS[@]}" -eq "$1" ] || {
    echo "could not find $1 free ports" >&2
    return 1
  }
}

# find_t4 [PROFILE]: prints the path of the t4 binary in target/PROFILE (default: debug, then
# release), honouring CARGO_TARGET_DIR.
find_t4() {
  local root target
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
  target=${CARGO_TARGET_DIR:-$root/target}
  local profile
  for profile in ${1:-debug release}; do
    if [ -x "$target/$profile/t4" ]; then
      echo "$target/$profile/t4"
      return 0
    fi
  done
  echo "no t4 binary in $target/{${1:-debug,release}}: run 'cargo build --bin t4' first or pass its path" >&2
  return 1
}

# wait_ready NAME PID PORT LOG: waits until the etcd v3 endpoint on PORT answers, or fails
# (printing the end of LOG) when the process exits or 30 s pass.
wait_ready() {
  local name=$1 pid=$2 port=$3 log=$4
  local deadline=$((SECONDS + 30))
  while true; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "$name exited before serving on 127.0.0.1:$port; the end of $log:" >&2
      tail -n 30 "$log" >&2 || true
      return 1
    fi
    if ETCDCTL_API=3 etcdctl --endpoints="127.0.0.1:$port" --dial-timeout=1s \
      --command-timeout=2s endpoint health >/dev/null 2>&1; then
      return 0
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "$name did not become healthy on 127.0.0.1:$port within 30 s; the end of $log:" >&2
      tail -n 30 "$log" >&2 || true
      return 1
    fi
    sleep 0.1
  done
}

# start_t4 BIN PORT DIR: starts `BIN run` serving on 127.0.0.1:PORT with data in DIR/data and
# its log in DIR/t4.log; sets T4_PID. Extra `t4 run` flags may be given in T4_RUN_FLAGS.
start_t4() {
  local bin=$1 port=$2 dir=$3
  # shellcheck disable=SC2086 # T4_RUN_FLAGS is a list of flags
  "$bin" run --data-dir "$dir/data" --listen "127.0.0.1:$port" ${T4_RUN_FLAGS:-} \
    >"$dir/t4.log" 2>&1 &
  T4_PID=$!
  SERVERS_PIDS+=("$T4_PID")
  wait_ready "t4 ($bin)" "$T4_PID" "$port" "$dir/t4.log"
}

# start_etcd CLIENT_PORT PEER_PORT DIR: starts a single-member etcd (ETCD_BIN, default
# /usr/bin/etcd) on loopback with data in DIR/data and its log in DIR/etcd.log; sets ETCD_PID.
start_etcd() {
  local client=$1 peer=$2 dir=$3
  local bin=${ETCD_BIN:-/usr/bin/etcd}
  "$bin" --name default --data-dir "$dir/data" \
    --listen-client-urls "http://127.0.0.1:$client" \
    --advertise-client-urls "http://127.0.0.1:$client" \
    --listen-peer-urls "http://127.0.0.1:$peer" \
    --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "default=http://127.0.0.1:$peer" \
    --logger zap --log-level warn \
    >"$dir/etcd.log" 2>&1 &
  ETCD_PID=$!
  SERVERS_PIDS+=("$ETCD_PID")
  wait_ready "etcd ($bin)" "$ETCD_PID" "$client" "$dir/etcd.log"
}
