#!/usr/bin/env bash
# t4-core must stay sans-IO: fail if its normal dependency tree holds a runtime or IO crate.
set -euo pipefail
cd "$(dirname "$0")/.."
forbidden='^(tokio|async-std|tonic|hyper|fjall|object_store)$'
found=$(cargo tree -p t4-core -e normal --prefix none --format '{p}' | awk '{print $1}' | sort -u | grep -E "$forbidden" || true)
if [ -n "$found" ]; then
  echo "t4-core must not depend on: $found" >&2
  exit 1
fi
echo "t4-core depends on no runtime, IO or storage crate"
