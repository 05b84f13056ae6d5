#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs the real peers the end-to-end tests
# talk to (etcdctl, an etcd 3.4 server for differential tests, moto_server for S3) if they
# are missing, then runs every test and a bounded simulator swarm.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-deps.sh

echo "== cargo test"
cargo test --workspace --all-targets
cargo test --workspace --doc

if [ -d t4-sim ]; then
  echo "== simulator swarm"
  # The base seed follows the commit, so every CI run explores new seeds and any failure
  # prints the command that replays it.
  base=$(( 16#$(git rev-parse --short=7 HEAD 2>/dev/null || echo 0) % 1000000 * 1000 ))
  cargo run -q -p t4-sim --release -- --seeds "${base}..$((base + 2000))"
fi
