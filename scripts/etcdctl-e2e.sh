#!/usr/bin/env bash
# End-to-end test of `t4 run` with the real etcdctl (etcd 3.4's, ETCDCTL_API=3).
#
# Usage: scripts/etcdctl-e2e.sh [--against-etcd] [path/to/t4]
#
# Starts the t4 binary (the given path, else target/debug/t4 or target/release/t4) on a free
# loopback port with a temporary data directory, drives it with etcdctl — put/get/del with their
# options, interactive txn, watch (live, --prev-kv, --rev replay, compacted), leases, compaction,
# endpoint status/health (--cluster too), member list, move-leader, snapshot save — and checks
# every answer. `--against-etcd` runs the same checks against a real etcd (/usr/bin/etcd, or
# ETCD_BIN) instead, which checks the script's own expectations: they are etcd's behaviour.
#
# Exits 0 when every check passes; otherwise prints the failed check (command, expected and
# actual output, the end of the server log) and exits 1. SERVERS_KEEP=1 keeps the data
# directory and logs. `tests/tests/etcdctl.rs` runs this from `cargo test`.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib/servers.sh
. "$here/lib/servers.sh"

against=t4
bin=""
for arg in "$@"; do
  case "$arg" in
    --against-etcd) against=etcd ;;
    -h | --help)
      sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    -*)
      echo "unknown option $arg (try --help)" >&2
      exit 2
      ;;
    *) bin=$arg ;;
  esac
done

command -v etcdctl >/dev/null || {
  echo "etcdctl is not installed: run scripts/install-test-deps.sh" >&2
  exit 1
}
export ETCDCTL_API=3

servers_init
servers_tempdir etcdctl-e2e
work=$TEMPDIR
free_ports 2
port=${PORTS[0]}
peer_port=${PORTS[1]}
if [ "$against" = etcd ]; then
  start_etcd "$port" "$peer_port" "$work"
  server_log=$work/etcd.log
else
  if [ -z "$bin" ]; then bin=$(find_t4); fi
  start_t4 "$bin" "$port" "$work"
  server_log=$work/t4.log
fi
endpoint=127.0.0.1:$port
echo "etcdctl e2e against $against on $endpoint (work dir $work)"

passed=0

ctl_flags=(--endpoints="$endpoint" --dial-timeout=3s --command-timeout=10s)
ctl() {
  etcdctl "${ctl_flags[@]}" "$@"
}

# run ARGS...: runs etcdctl ARGS with stdin from $STDIN (if set); sets OUT, ERR and RC.
run() {
  set +e
  if [ -n "${STDIN+x}" ]; then
    OUT=$(printf '%b' "$STDIN" | ctl "$@" 2>"$work/stderr")
  else
    OUT=$(ctl "$@" 2>"$work/stderr" </dev/null)
  fi
  RC=$?
  set -e
  ERR=$(cat "$work/stderr")
}

fail() {
  {
    echo
    echo "FAIL: $1"
    shift
    for line in "$@"; do printf '%s\n' "$line" | sed 's/^/  /'; done
    echo "--- the end of the server log ($server_log):"
    tail -n 20 "$server_log" || true
  } >&2
  exit 1
}

pass() {
  passed=$((passed + 1))
  echo "ok $passed - $1"
}

show_result() {
  printf 'command: etcdctl %s\n' "$*"
  printf 'exit status: %s\n' "$RC"
  printf 'stdout:\n%s\n' "$OUT"
  printf 'stderr:\n%s\n' "$ERR"
}

# check DESC EXPECTED ARGS...: etcdctl ARGS succeeds and prints exactly EXPECTED (trailing
# newlines aside).
check() {
  local desc=$1 expected
  expected=$(printf '%s' "$2")
  shift 2
  run "$@"
  if [ "$RC" -ne 0 ] || [ "$OUT" != "$expected" ]; then
    local diff
    diff=$(diff -u <(printf '%s\n' "$expected") <(printf '%s\n' "$OUT") | tail -n +3 || true)
    fail "$desc" "$(show_result "$@")" "diff (- expected, + actual):" "$diff"
  fi
  pass "$desc"
}

# check_match DESC REGEX ARGS...: etcdctl ARGS succeeds and its whole stdout matches the
# extended regular expression REGEX.
check_match() {
  local desc=$1 regex=$2
  shift 2
  run "$@"
  if [ "$RC" -ne 0 ] || ! [[ "$OUT" =~ ^${regex}$ ]]; then
    fail "$desc" "$(show_result "$@")" "expected stdout to match: ^${regex}\$"
  fi
  pass "$desc"
}

# check_match_stderr DESC REGEX ARGS...: like check_match, for commands that report on stderr.
check_match_stderr() {
  local desc=$1 regex=$2
  shift 2
  run "$@"
  if [ "$RC" -ne 0 ] || ! [[ "$ERR" =~ ^${regex}$ ]]; then
    fail "$desc" "$(show_result "$@")" "expected stderr to match: ^${regex}\$"
  fi
  pass "$desc"
}

# check_error DESC MESSAGE ARGS...: etcdctl ARGS fails and its stderr contains MESSAGE.
check_error() {
  local desc=$1 message=$2
  shift 2
  run "$@"
  if [ "$RC" -eq 0 ] || [[ "$ERR" != *"$message"* ]]; then
    fail "$desc" "$(show_result "$@")" "expected a failure whose stderr contains: $message"
  fi
  pass "$desc"
}

# revision: the store's current revision.
revision() {
  run get nonexistent-key -w json
  [ "$RC" -eq 0 ] || fail "reading the current revision" "$(show_result get -w json)"
  [[ "$OUT" =~ \"revision\":([0-9]+) ]] || fail "no revision in the header" "$OUT"
  echo "${BASH_REMATCH[1]}"
}

# Background watchers: start_watch NAME ARGS... runs `etcdctl watch ARGS` with its output in
# $work/NAME.out; await_watch NAME DESC EXPECTED waits (up to 15 s) until that output is exactly
# EXPECTED, then stops the watcher.
declare -A watch_pids
start_watch() {
  local name=$1
  shift
  # exec: the background job is etcdctl itself, so that stop_watch and the cleanup kill it
  # (killing the subshell that runs `ctl` would leave etcdctl watching forever).
  (exec etcdctl "${ctl_flags[@]}" watch "$@") >"$work/$name.out" 2>"$work/$name.err" &
  watch_pids[$name]=$!
  SERVERS_PIDS+=("$!")
}

stop_watch() {
  kill "${watch_pids[$1]}" 2>/dev/null || true
  wait "${watch_pids[$1]}" 2>/dev/null || true
}

await_watch() {
  local name=$1 desc=$2 expected
  expected=$(printf '%s' "$3")
  local deadline=$((SECONDS + 15))
  while [ "$(cat "$work/$name.out")" != "$expected" ]; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      stop_watch "$name"
      local diff
      diff=$(diff -u <(printf '%s\n' "$expected") "$work/$name.out" | tail -n +3 || true)
      fail "$desc" "watch output after 15 s differs (- expected, + actual):" "$diff" \
        "watch stderr: $(cat "$work/$name.err")"
    fi
    sleep 0.05
  done
  stop_watch "$name"
  pass "$desc"
}

# ---------------------------------------------------------------------------------------------
echo "# put, get, del"

check "put answers OK" "OK" put foo bar
check "get returns key and value" $'foo\nbar' get foo
check_match "the first write of a fresh store is revision 2" \
  '\{"header":\{[^}]*"revision":2[,}].*"kvs":\[\{"key":"Zm9v","create_revision":2,"mod_revision":2,"version":1,"value":"YmFy"\}\],"count":1\}' \
  get foo -w json
check "put --prev-kv prints the previous pair" $'OK\nfoo\nbar' put foo baz --prev-kv
check_match "an overwrite keeps create_revision and bumps version" \
  '.*"create_revision":2,"mod_revision":3,"version":2,.*' get foo -w json
check "get --print-value-only" "baz" get foo --print-value-only
check "get of a missing key prints nothing" "" get missing
check "get --rev reads history" $'foo\nbar' get foo --rev=2
check "get --rev before the key existed prints nothing" "" get foo --rev=1
check "put with an empty value" "OK" put empty ""
check "get of an empty value" $'empty\n' get empty
check_error "put of an empty key is refused" "etcdserver: key is not provided" put "" x

for kv in "/p/a 1" "/p/b 2" "/p/c 3" "/q 4"; do
  # shellcheck disable=SC2086 # key and value
  check "put $kv" "OK" put $kv
done
check "get --prefix" $'/p/a\n1\n/p/b\n2\n/p/c\n3' get /p/ --prefix
check "get --prefix --keys-only" $'/p/a\n\n/p/b\n\n/p/c\n' get /p/ --prefix --keys-only
check "get --prefix --limit" $'/p/a\n1' get /p/ --prefix --limit=1
check_match "get --limit reports more and the full count" \
  '.*"more":true,"count":3\}' get /p/ --prefix --limit=1 -w json
check "get --sort-by=MODIFY --order=DESCEND" $'/p/c\n3\n/p/b\n2\n/p/a\n1' \
  get /p/ --prefix --sort-by=MODIFY --order=DESCEND
check "get --sort-by=VALUE --order=DESCEND --limit" $'foo\nbaz\n/q\n4' \
  get "" --from-key --sort-by=VALUE --order=DESCEND --limit=2
check "get of an explicit range [key, range_end)" $'/p/b\n2\n/p/c\n3' get /p/b /p/d
check "get --from-key" $'/p/c\n3\n/q\n4\nempty\n\nfoo\nbaz' get /p/c --from-key
check "get --consistency=s (serializable)" $'foo\nbaz' get foo --consistency=s

check "del --prev-kv prints the count and the deleted pair" $'1\n/p/a\n1' del /p/a --prev-kv
check "del of a missing key deletes nothing" "0" del /p/a
check "del --prefix" "2" del /p/ --prefix
check "the prefix is gone" "" get /p/ --prefix
check "del --from-key" "2" del empty --from-key
check "only /q is left" $'/q\n4' get "" --from-key

# ---------------------------------------------------------------------------------------------
echo "# txn (interactive)"

check "put k1" "OK" put k1 v1
STDIN='value("k1") = "v1"\nmod("k1") > "0"\nversion("k1") = "1"\ncreate("k1") != "0"\n\nput k2 yes\nget k1\n\nput k2 no\n\n'
check "txn -i: compares hold, the success branch runs" \
  $'compares:\nsuccess requests (get, put, del):\nfailure requests (get, put, del):\nSUCCESS\n\nOK\n\nk1\nv1' \
  txn -i
unset STDIN
check "the success branch wrote" $'k2\nyes' get k2
STDIN='value("k1") = "v1"\nvalue("k2") = "nope"\n\nput k2 yes\n\nput k2 no\ndel k1 --prev-kv\nget k2\n\n'
check "txn: one compare fails, the failure branch runs" \
  $'FAILURE\n\nOK\n\n1\nk1\nv1\n\nk2\nno' txn
unset STDIN
check "the failure branch wrote and deleted" $'k2\nno' get k1 k3
STDIN='version("k1") = "0"\nversion("k2") > "1"\nmod("k2") < "1000000"\n\n\n\n'
check "txn: compares on a deleted key and empty branches" "SUCCESS" txn
unset STDIN
STDIN='create("k2") = "1"\n\n\nget k2\n\n'
check "txn: a failing compare with an empty success branch" $'FAILURE\n\nk2\nno' txn
unset STDIN

# ---------------------------------------------------------------------------------------------
echo "# watch"

rev=$(revision)
start_watch live /w/ --prefix --rev=$((rev + 1))
check "put /w/a 1" "OK" put /w/a 1
check "put /w/b 2" "OK" put /w/b 2
check "put /w/a 3" "OK" put /w/a 3
check "del /w/a" "1" del /w/a
check "put outside the prefix" "OK" put /x 0
await_watch live "watch --prefix sees puts and deletes in order" \
  $'PUT\n/w/a\n1\nPUT\n/w/b\n2\nPUT\n/w/a\n3\nDELETE\n/w/a\n'

start_watch prev /w/ --prefix --prev-kv --rev=$((rev + 1))
await_watch prev "watch --prev-kv --rev replays history with previous values" \
  $'PUT\n/w/a\n1\nPUT\n/w/b\n2\nPUT\n/w/a\n1\n/w/a\n3\nDELETE\n/w/a\n3\n/w/a\n'

start_watch single /w/b --rev=1
await_watch single "watch of one key from revision 1" $'PUT\n/w/b\n2'

# A watcher without --rev only sees writes after it is created: probe until it sees one.
start_watch now /now/ --prefix
deadline=$((SECONDS + 15))
i=0
until grep -q "^/now/probe$" "$work/now.out"; do
  [ "$SECONDS" -lt "$deadline" ] || fail "a watch without --rev never saw a new write" \
    "watch output: $(cat "$work/now.out")" "watch stderr: $(cat "$work/now.err")"
  i=$((i + 1))
  ctl put /now/probe "$i" >/dev/null
  sleep 0.1
done
check "put /now/x after the watch is live" "OK" put /now/x live
# Every probe was acknowledged before /now/x was written, so its event comes last.
deadline=$((SECONDS + 15))
until [ "$(tail -n 3 "$work/now.out")" = $'PUT\n/now/x\nlive' ]; do
  [ "$SECONDS" -lt "$deadline" ] || {
    stop_watch now
    fail "a watch without --rev sees live writes" "watch output: $(cat "$work/now.out")"
  }
  sleep 0.05
done
stop_watch now
pass "a watch without --rev sees live writes"

# ---------------------------------------------------------------------------------------------
echo "# leases"

run lease grant 60
[[ "$RC" -eq 0 && "$OUT" =~ ^lease\ ([0-9a-f]+)\ granted\ with\ TTL\(60s\)$ ]] ||
  fail "lease grant 60" "$(show_result lease grant 60)"
lease=${BASH_REMATCH[1]}
pass "lease grant prints the id and the TTL"
check "put --lease" "OK" put --lease="$lease" /l/a 1
check "put --lease of a second key" "OK" put --lease="$lease" /l/b 2
check_match "lease timetolive --keys lists the attached keys" \
  "lease $lease granted with TTL\(60s\), remaining\((5[89]|60)s\), attached keys\(\[(/l/a /l/b|/l/b /l/a)\]\)" \
  lease timetolive "$lease" --keys
check_match "lease timetolive without --keys" \
  "lease $lease granted with TTL\(60s\), remaining\((5[89]|60)s\)" lease timetolive "$lease"
check "lease keep-alive --once" "lease $lease keepalived with TTL(60)" \
  lease keep-alive --once "$lease"
check "lease list" $'found 1 leases\n'"$lease" lease list
check_error "put with an unknown lease is refused" "etcdserver: requested lease not found" \
  put --lease=1234abcd /l/c 3
check_error "keep-alive of an unknown lease fails" "etcdserver: requested lease not found" \
  lease keep-alive --once 1234abcd
check "lease revoke" "lease $lease revoked" lease revoke "$lease"
check "revoking deleted the attached keys" "" get /l/ --prefix
check "timetolive of a revoked lease" "lease $lease already expired" lease timetolive "$lease"
check_error "revoking twice fails" "etcdserver: requested lease not found" \
  lease revoke "$lease"
check "lease list is empty" "found 0 leases" lease list

run lease grant 2
[[ "$RC" -eq 0 && "$OUT" =~ ^lease\ ([0-9a-f]+)\ granted\ with\ TTL\(([0-9]+)s\)$ ]] ||
  fail "lease grant 2" "$(show_result lease grant 2)"
short=${BASH_REMATCH[1]}
pass "lease grant 2"
check "put --lease of a short lease" "OK" put --lease="$short" /l/short x
deadline=$((SECONDS + 20))
while [ -n "$(ctl get /l/short)" ]; do
  [ "$SECONDS" -lt "$deadline" ] || fail "a 2 s lease did not expire within 20 s" \
    "$(ctl lease timetolive "$short" --keys 2>&1)"
  sleep 0.2
done
pass "an expired lease deletes its keys"
check "timetolive of an expired lease" "lease $short already expired" lease timetolive "$short"

# ---------------------------------------------------------------------------------------------
echo "# compaction"

check "put c 1" "OK" put c 1
check "put c 2" "OK" put c 2
rev=$(revision)
check "compact" "compacted revision $rev" compact "$rev"
check_error "get --rev of a compacted revision fails" \
  "etcdserver: mvcc: required revision has been compacted" get c --rev=$((rev - 1))
check "get --rev of the compaction revision still works" $'c\n2' get c --rev="$rev"
check_error "compacting an already compacted revision fails" \
  "etcdserver: mvcc: required revision has been compacted" compact $((rev - 1))
check_error "get --rev of a future revision fails" \
  "etcdserver: mvcc: required revision is a future revision" get c --rev=$((rev + 1000))
check_error "compacting a future revision fails" \
  "etcdserver: mvcc: required revision is a future revision" compact $((rev + 1000))
start_watch compacted c --rev=$((rev - 1))
deadline=$((SECONDS + 15))
while kill -0 "${watch_pids[compacted]}" 2>/dev/null; do
  [ "$SECONDS" -lt "$deadline" ] || {
    stop_watch compacted
    fail "a watch from a compacted revision was not cancelled within 15 s" \
      "watch output: $(cat "$work/compacted.out")"
  }
  sleep 0.05
done
grep -q "watch was canceled (etcdserver: mvcc: required revision has been compacted)" \
  "$work/compacted.err" || fail "a watch from a compacted revision is cancelled with etcd's message" \
  "watch stdout: $(cat "$work/compacted.out")" "watch stderr: $(cat "$work/compacted.err")"
pass "a watch from a compacted revision is cancelled with etcd's message"
check "put c 3" "OK" put c 3
check_match "compact --physical" "compacted revision $((rev + 1))" compact $((rev + 1)) --physical

# ---------------------------------------------------------------------------------------------
echo "# cluster and maintenance"

check_match "endpoint status" \
  "$endpoint, [0-9a-f]+, [0-9]+\.[0-9]+\.[0-9]+[^,]*, [0-9.]+ [kMGT]?B, true, false, [0-9]+, [0-9]+, [0-9]+, " \
  endpoint status
check_match "endpoint status -w json names this member the leader" \
  '\[\{"Endpoint":"'"$endpoint"'","Status":\{"header":\{"cluster_id":[0-9]+,"member_id":([0-9]+),"revision":[0-9]+,"raft_term":[0-9]+\},"version":"[^"]+","dbSize":[0-9]+,"leader":\1,.*' \
  endpoint status -w json
# etcdctl prints the health report on stderr.
check_match_stderr "endpoint health" "$endpoint is healthy: successfully committed proposal: took = .+" \
  endpoint health
# --cluster dials the client URLs of the member list as they are: etcd 3.4's client then sends
# the whole URL, scheme included, as the HTTP/2 :authority.
check_match "endpoint status --cluster" \
  "http://$endpoint, [0-9a-f]+, [0-9]+\.[0-9]+\.[0-9]+[^,]*, [0-9.]+ [kMGT]?B, true, false, [0-9]+, [0-9]+, [0-9]+, " \
  endpoint status --cluster
check_match_stderr "endpoint health --cluster" \
  "http://$endpoint is healthy: successfully committed proposal: took = .+" \
  endpoint health --cluster
check_match "member list shows one started member serving this endpoint" \
  "[0-9a-f]+, started, [^,]*, [^,]*, [^,]*http://$endpoint[^,]*, false" member list
# This member is the leader of a one-member cluster: a transfer to itself is done, a transfer to
# an id that is no member is refused.
member_hex=${OUT%%,*}
check "move-leader to this member" "Leadership transferred from $member_hex to $member_hex" \
  move-leader "$member_hex"
check_error "move-leader to an id that is no member" "etcdserver: bad leader transferee" \
  move-leader 1234
# The stream is the database (t4: its snapshot), 512-byte aligned, then its SHA-256: etcdctl
# refuses a stream without the digest ("sha256 checksum not found").
snap=$work/snapshot.db
check "snapshot save" "Snapshot saved at $snap" snapshot save "$snap"
size=$(stat -c %s "$snap")
[ $((size % 512)) -eq 32 ] || fail "a saved snapshot is 512-byte aligned plus a 32-byte digest" \
  "size: $size"
digest=$(tail -c 32 "$snap" | od -An -v -tx1 | tr -d ' \n')
actual=$(head -c $((size - 32)) "$snap" | sha256sum | cut -d' ' -f1)
[ "$digest" = "$actual" ] || fail "a saved snapshot ends with the SHA-256 of the rest" \
  "digest in the file: $digest" "SHA-256 of the rest: $actual"
pass "a saved snapshot ends with the SHA-256 of the rest"

echo "all $passed checks passed against $against"
