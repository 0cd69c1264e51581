#!/usr/bin/env bash
# Install the Debian packages Sanctum's tests drive for real, when they are missing.
# Usage: scripts/system-deps.sh [test|demo]
set -euo pipefail
want=()
need() { command -v "$1" >/dev/null 2>&1 || want+=("$2"); }
if [ "${1:-test}" = "test" ]; then
  need chromium chromium
  need pg_ctlcluster postgresql
  need bwrap bubblewrap
  need slurmctld slurm-wlm
  need munged munge
  need storescu dcmtk
fi
if [ "${1:-test}" = "demo" ]; then
  need bwrap bubblewrap
fi
if [ ${#want[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  echo "installing Debian packages: ${want[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
fi
# The PostgreSQL tests need a server on 127.0.0.1:5432; start the local cluster if it is down.
if [ "${1:-test}" = "test" ] && command -v pg_ctlcluster >/dev/null 2>&1; then
  if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    version=$(ls /etc/postgresql | sort -n | tail -1)
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
  fi
fi
