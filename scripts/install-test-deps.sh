#!/usr/bin/env bash
# Installs the external programs the end-to-end tests use, if missing:
#   etcdctl and etcd (Debian's etcd-client / etcd-server, etcd 3.4), moto_server (PyPI), and
#   protoc (the `etcd-client` crate the end-to-end tests use generates its code with it).
set -euo pipefail

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi

apt_pkgs=()
command -v etcdctl >/dev/null 2>&1 || apt_pkgs+=(etcd-client)
command -v etcd >/dev/null 2>&1 || [ -x /usr/bin/etcd ] || apt_pkgs+=(etcd-server)
command -v protoc >/dev/null 2>&1 || apt_pkgs+=(protobuf-compiler)
# protoc's well-known types (google/protobuf/descriptor.proto, ...) live in libprotobuf-dev.
[ -f /usr/include/google/protobuf/descriptor.proto ] || apt_pkgs+=(libprotobuf-dev)
if [ ${#apt_pkgs[@]} -gt 0 ]; then
  echo "installing ${apt_pkgs[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${apt_pkgs[@]}" >/dev/null
fi

if ! command -v moto_server >/dev/null 2>&1; then
  echo "installing moto[server]"
  python3 -m pip install -q 'moto[server]' 2>/dev/null || python3 -m pip install -q --break-system-packages 'moto[server]'
fi
