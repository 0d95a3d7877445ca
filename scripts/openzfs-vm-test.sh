#!/bin/bash
# openzfs-vm-test.sh - MANUAL check, not CI: runs the store, ingest and demo tests once inside the emulated
# Debian guest of ../shared/tools/openzfs-vm against real (kernel) OpenZFS instead of zfs-fuse.
#
# CI runs these tests on zfs-fuse. Our code writes into dataset mountpoints with plain fs calls, so
# the tests must run INSIDE the guest (bin/zfs forwarding is not enough). This script:
#   1. stages a self-contained copy of the repo (package.json, tsconfig.json, jest.config.js,
#      tsup.config.ts, src/, test/, bin/, node_modules/; no .git) in a temp dir and bundles dist/
#      there with the local tsup (`npx --no-install tsup`, what test/cli/store.test.ts would run;
#      nothing is downloaded), plus the host's node, lzop and pigz (+ liblzo2) - the guest has no
#      network and lacks lzop/pigz; host and guest are both Debian bookworm;
#   2. copies it as one tar through the 9p share into the guest's own disk (/root/vzdump-zfs;
#      jest's many small files are slow over 9p);
#   3. runs jest there (--runInBand, long timeout: TCG emulation is ~10x slower), output streamed
#      here and kept in $ZFSVM_HOME/share/vzdump-zfs-jest-<variant>.log; exits with jest's status.
# Jest's globalSetup finds kernel ZFS working and starts no zfs-fuse; each test file creates and
# destroys its own file-backed pool in the guest's /tmp.
#
# It builds no guest image and boots no guest unless asked:
#   scripts/openzfs-vm-test.sh [--variant bookworm|backports] [--build] [--start] [--stop] [-- jest args]
#     --variant V  guest image (default $ZFSVM_VARIANT or bookworm = zfs 2.1; backports = zfs 2.3)
#     --build      run the tools' build.sh first (one time, ~7 min, downloads Debian packages)
#     --start      boot the guest with the tools' start.sh if it is not running
#     --stop       stop the guest with the tools' stop.sh afterwards
#     -- ARGS      jest arguments/paths instead of: test/store test/ingest test/cli/store.test.ts test/demo
# Env: ZFSVM_TOOLS (default <repo>/../shared/tools/openzfs-vm), ZFSVM_HOME (default /var/tmp/openzfs-vm).
# A run of the default set takes about 10 minutes (staging included) with zfs 2.1 under TCG on 2 cores.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="${ZFSVM_TOOLS:-$REPO/../shared/tools/openzfs-vm}"
STATE="${ZFSVM_HOME:-/var/tmp/openzfs-vm}"
VARIANT="${ZFSVM_VARIANT:-bookworm}"
DO_BUILD=0 DO_START=0 DO_STOP=0
JEST_PATHS=(test/store test/ingest test/cli/store.test.ts test/demo)
while [ $# -gt 0 ]; do
  case "$1" in
    --variant) VARIANT="$2"; shift 2 ;;
    --build) DO_BUILD=1; shift ;;
    --start) DO_START=1; shift ;;
    --stop) DO_STOP=1; shift ;;
    --) shift; JEST_PATHS=("$@"); break ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "openzfs-vm-test: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
export ZFSVM_VARIANT="$VARIANT"
[ -x "$TOOLS/start.sh" ] || { echo "openzfs-vm-test: '$TOOLS' has no start.sh - set ZFSVM_TOOLS" >&2; exit 1; }
log() { printf '[openzfs-vm-test %s] %s\n' "$(date +%T)" "$*" >&2; }

if [ "$DO_BUILD" = 1 ]; then log "building the $VARIANT image"; "$TOOLS/build.sh" >&2; fi
if ! "$TOOLS/ssh.sh" true 2>/dev/null; then
  [ "$DO_START" = 1 ] || { echo "openzfs-vm-test: the $VARIANT guest is not running - pass --start (and --build the first time)" >&2; exit 1; }
  log "starting the $VARIANT guest"; "$TOOLS/start.sh" >/dev/null
fi

# 1. stage
STAGE="$(mktemp -d /var/tmp/vzdump-zfs-vmtest.XXXXXX)"
TAR="$STATE/share/vzdump-zfs-$VARIANT.tar"
cleanup_stage() { rm -rf -- "$STAGE"; rm -f -- "$TAR"; }
trap 'cleanup_stage; [ "$DO_STOP" = 1 ] && { "$TOOLS/stop.sh" >&2 || true; }' EXIT
T="$STAGE/vzdump-zfs"
mkdir -p "$T/tools/bin" "$T/tools/lib"
(cd "$REPO" && rsync -a --exclude .git package.json tsconfig.json jest.config.js tsup.config.ts src test bin node_modules "$T/")
(cd "$T" && npx --no-install tsup --silent) || { echo "openzfs-vm-test: bundling dist/ in the staged copy failed" >&2; exit 1; }
cp "$(readlink -f "$(command -v node)")" "$T/tools/bin/node"
for b in lzop pigz; do
  if command -v "$b" >/dev/null; then cp "$(readlink -f "$(command -v "$b")")" "$T/tools/bin/$b"; else log "no $b on the host: tests needing it will fail in the guest"; fi
done
if command -v lzop >/dev/null; then
  lib="$(ldd "$(command -v lzop)" | awk '/liblzo2/ {print $3}')"
  [ -n "$lib" ] && cp -L "$lib" "$T/tools/lib/"
fi
tar -C "$STAGE" -cf "$TAR" vzdump-zfs
log "staged $(du -sh "$TAR" | cut -f1) -> guest /root/vzdump-zfs"

# 2. copy into the guest's disk
"$TOOLS/ssh.sh" "rm -rf /root/vzdump-zfs && tar -C /root -xf '/mnt/host/$(basename "$TAR")'"
rm -f -- "$TAR"
"$TOOLS/ssh.sh" 'zfs version | head -1; uname -r' | while read -r l; do log "guest: $l"; done

# 3. run jest in the guest
LOG="$STATE/share/vzdump-zfs-jest-$VARIANT.log"
q=(); for a in "${JEST_PATHS[@]}"; do q+=("$(printf '%q' "$a")"); done
set +e
"$TOOLS/ssh.sh" "cd /root/vzdump-zfs && export PATH=/root/vzdump-zfs/tools/bin:\$PATH LD_LIBRARY_PATH=/root/vzdump-zfs/tools/lib && node node_modules/.bin/jest --runInBand --ci --testTimeout=600000 ${q[*]} 2>&1" | tee "$LOG"
rc=${PIPESTATUS[0]}
set -e
log "jest exited $rc; log: $LOG"
exit "$rc"
