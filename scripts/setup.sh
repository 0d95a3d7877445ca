#!/usr/bin/env bash
# Installs what vzdump-zfs needs on a fresh Debian machine, then builds it. Idempotent and quick
# when nothing is missing. Run as root (apt-get); without root it only checks and builds.
#
#   scripts/setup.sh          runtime tools + npm ci + build (for the demo and the benchmark)
#   scripts/setup.sh --test   also what the test suite needs
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have zstd || need+=(zstd)
have lzop || need+=(lzop)
have gzip || need+=(gzip)
have pigz || need+=(pigz)
have mkfs.ext4 || need+=(e2fsprogs)
have debugfs || need+=(e2fsprogs)
# real OpenZFS when the kernel has it; otherwise zfs-fuse gives the same CLI on a file vdev
if ! have zfs || ! have zpool; then need+=(zfs-fuse); fi
have rsync || need+=(rsync)          # the benchmark's classic pipeline
[ -x /usr/bin/time ] || need+=(time)   # the benchmark's peak-memory measurement
if [ "$want_test" = 1 ]; then
  have sshd || [ -x /usr/sbin/sshd ] || need+=(openssh-server)
  have perl || need+=(perl)
fi

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: missing packages: ${need[*]} (run as root, or: apt-get install ${need[*]})" >&2
    exit 1
  fi
  echo "setup: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # zfs-fuse's init script must not start a daemon here: tests and the demo start their own
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d.vzdump-zfs
  if [ ! -e /usr/sbin/policy-rc.d ]; then cp /usr/sbin/policy-rc.d.vzdump-zfs /usr/sbin/policy-rc.d; rm_policy=1; else rm_policy=0; fi
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  [ "$rm_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
  rm -f /usr/sbin/policy-rc.d.vzdump-zfs
fi

# npm ci only when the lock file changed since the last install
stamp=node_modules/.vzdump-zfs-lock.sha256
sum=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$sum" ]; then
  echo "setup: npm ci" >&2
  npm ci --no-audit --no-fund --loglevel=error
  echo "$sum" > "$stamp"
fi

npx --no-install tsup --silent >/dev/null
