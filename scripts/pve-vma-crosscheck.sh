#!/bin/bash
# Cross-checks `vzdump-zfs vma` against Proxmox's own `vma` tool, both ways: archives each one
# writes are read by the other, and the text both print (list, config, verify -v, extract -v,
# create -v) is compared line by line.
#
#   scripts/pve-vma-crosscheck.sh --vma /usr/bin/vma [--dataset ROOT]
#
# --dataset ROOT (an existing store root) adds the round trip through the store: the reference's
# archive is ingested as guest 999, restored, and the restored archive read by the reference; the
# guest dataset is destroyed afterwards (the script refuses to start if ROOT/999 exists).
#
# Not part of CI: PVE's vma is built from QEMU plus pve-qemu's patches and cannot be fetched on a
# plain Debian machine. docs/cli.md says how it was built for the check recorded there.
# Needs: bash, coreutils, cmp, diff, gzip (with --dataset: zfs, zstd, lzop); `npm run build` done (bin/vzdump-zfs runs dist/).
set -euo pipefail

usage() { echo "usage: $0 --vma PATH [--dataset ROOT]" >&2; exit 2; }
VMA=
DATASET=
while [ $# -gt 0 ]; do
  case "$1" in
    --vma) VMA=${2:-}; shift 2 || usage ;;
    --dataset) DATASET=${2:-}; shift 2 || usage ;;
    *) usage ;;
  esac
done
[ -n "$VMA" ] && [ -x "$VMA" ] || usage
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OURS="$ROOT/bin/vzdump-zfs"
SAMPLE="$ROOT/test/fixtures/pve-sample-truncated.vma.gz"
GUEST=999
if [ -n "$DATASET" ] && zfs list -H -o name "$DATASET/$GUEST" >/dev/null 2>&1; then
  echo "$DATASET/$GUEST exists - not touching it" >&2
  exit 2
fi
W=$(mktemp -d)
cleanup() {
  rm -rf "$W"
  if [ -n "$DATASET" ] && zfs list -H -o name "$DATASET/$GUEST" >/dev/null 2>&1; then zfs destroy -r "$DATASET/$GUEST"; fi
}
trap cleanup EXIT
export TZ=UTC
failed=0
pass() { echo "ok   - $*"; }
fail() { echo "FAIL - $*"; failed=$((failed + 1)); }
same() { # same DESCRIPTION FILE1 FILE2
  if cmp -s "$2" "$3"; then pass "$1"; else fail "$1"; diff "$2" "$3" | head -5 || true; fi
}
ours() { node "$OURS" vma "$@"; }
# the reference's seconds depend on its speed, so they are left out of the comparison
nodur() { sed -e 's/duration [0-9]* sec/duration - sec/' -e "s#$1#DIR#"; }

# ---- images: random, all-zero and partly zero 64 KiB clusters
rnd() { dd if=/dev/urandom of="$1" bs="$2" count=1 seek="$3" oflag=seek_bytes conv=notrunc status=none; }
truncate -s 64M "$W/a.raw"
rnd "$W/a.raw" 655360 0
rnd "$W/a.raw" 4096 $((20 * 65536))
rnd "$W/a.raw" 8192 $((30 * 65536 + 8192))
rnd "$W/a.raw" 100 $((64 * 1048576 - 100))
truncate -s 4608K "$W/b.raw"
rnd "$W/b.raw" 1048576 65536
truncate -s 3148288 "$W/c.raw" # not a multiple of 64 KiB: only our create (7.2's create fails on it)
rnd "$W/c.raw" 70000 1000000
head -c 5000 /dev/urandom >"$W/d.raw" # not a multiple of 512: stored as 5120
printf 'boot: order=scsi0\nscsi0: local:vm-100-disk-0,size=64M\n' >"$W/qemu-server.conf"
printf '[OPTIONS]\nenable: 1\n' >"$W/qemu-server.fw"
CFG=(-c "$W/qemu-server.conf" -c "$W/qemu-server.fw")

# ---- our archive, read by the reference
ours create "$W/ours.vma" "${CFG[@]}" -d "format=raw:drive-scsi0=$W/a.raw" -d "format=raw:drive-virtio1=$W/c.raw" -d "format=raw:drive-sata2=$W/d.raw"
if "$VMA" verify "$W/ours.vma"; then pass "reference verify accepts our archive"; else fail "reference verify rejects our archive"; fi
"$VMA" list "$W/ours.vma" >"$W/l1"; ours list "$W/ours.vma" >"$W/l2"
same "list of our archive" "$W/l1" "$W/l2"
"$VMA" extract "$W/ours.vma" "$W/x1" >/dev/null
for f in qemu-server.conf qemu-server.fw; do same "reference extract of our archive: $f" "$W/$f" "$W/x1/$f"; done
same "reference extract of our archive: disk-drive-scsi0.raw" "$W/a.raw" "$W/x1/disk-drive-scsi0.raw"
same "reference extract of our archive: disk-drive-virtio1.raw" "$W/c.raw" "$W/x1/disk-drive-virtio1.raw"
head -c 5120 <(cat "$W/d.raw" /dev/zero) >"$W/d.padded"
same "reference extract of our archive: disk-drive-sata2.raw (padded to 5120)" "$W/d.padded" "$W/x1/disk-drive-sata2.raw"

# ---- the reference's archive, read by us
"$VMA" create -v "$W/real.vma" "${CFG[@]}" "drive-scsi0=$W/a.raw" "drive-virtio1=$W/b.raw" 2>"$W/create-real.txt"
if ours verify "$W/real.vma"; then pass "our verify accepts the reference's archive"; else fail "our verify rejects the reference's archive"; fi
"$VMA" list "$W/real.vma" >"$W/l1"; ours list "$W/real.vma" >"$W/l2"
same "list of the reference's archive" "$W/l1" "$W/l2"
for c in qemu-server.conf qemu-server.fw; do
  "$VMA" config "$W/real.vma" -c "$c" >"$W/c1"; ours config "$W/real.vma" -c "$c" >"$W/c2"
  same "config -c $c" "$W/c1" "$W/c2"
done
ours extract "$W/real.vma" "$W/x2" >/dev/null
same "our extract of the reference's archive: disk-drive-scsi0.raw" "$W/a.raw" "$W/x2/disk-drive-scsi0.raw"
same "our extract of the reference's archive: disk-drive-virtio1.raw" "$W/b.raw" "$W/x2/disk-drive-virtio1.raw"

# ---- the text of -v
for a in ours real; do
  "$VMA" verify -v "$W/$a.vma" | nodur "$W" >"$W/v1"; ours verify -v "$W/$a.vma" | nodur "$W" >"$W/v2"
  same "verify -v of $a.vma" "$W/v1" "$W/v2"
  "$VMA" extract -v "$W/$a.vma" "$W/e1-$a" | nodur "$W/e1-$a" >"$W/v1"; ours extract -v "$W/$a.vma" "$W/e2-$a" | nodur "$W/e2-$a" >"$W/v2"
  same "extract -v of $a.vma" "$W/v1" "$W/v2"
done
# -r MAP: the targets the map names (qmrestore's way); `1:` targets hold old data, `0:` ones read as zeros
for who in real ours; do
  head -c "$(stat -c %s "$W/a.raw")" /dev/urandom >"$W/t1-$who.raw"
  truncate -s $(($(stat -c %s "$W/b.raw") + 1048576)) "$W/t2-$who.raw"
  printf 'format=raw:1:drive-scsi0=%s\nthrottling.bps=1048576:format=raw:cache=none:0:drive-virtio1=%s\ndone\n' \
    "$W/t1-$who.raw" "$W/t2-$who.raw" >"$W/map-$who"
done
"$VMA" extract -v -r "$W/map-real" "$W/real.vma" "$W/r1" | nodur "$W/r1" >"$W/v1"
ours extract -v -r "$W/map-ours" "$W/real.vma" "$W/r2" | nodur "$W/r2" >"$W/v2"
same "extract -v -r MAP output" "$W/v1" "$W/v2"
same "extract -r MAP: drive-scsi0 (1:, over old data)" "$W/t1-real.raw" "$W/t1-ours.raw"
same "extract -r MAP: drive-virtio1 (0:, 1 MiB larger target)" "$W/t2-real.raw" "$W/t2-ours.raw"
same "extract -r MAP: drive-scsi0 is the image" "$W/a.raw" "$W/t1-ours.raw"

ours create -v "$W/ours2.vma" "${CFG[@]}" "drive-scsi0=$W/a.raw" "drive-virtio1=$W/b.raw" 2>"$W/create-ours.txt"
grep '^image ' "$W/create-real.txt" >"$W/i1"; grep '^image ' "$W/create-ours.txt" >"$W/i2"
same "create -v image statistics" "$W/i1" "$W/i2"
# progress lines: the reference polls its writer, so only the last one is fixed (its first one,
# usually at 0 %, can come late on a busy machine)
for x in real ours; do grep '^progress ' "$W/create-$x.txt" | tail -n 1 >"$W/p-$x"; done
same "create -v last progress line" "$W/p-real" "$W/p-ours"

# ---- an archive without disks, and the truncated PVE sample (the reference does not check for missing clusters)
ours create "$W/diskless.vma" "${CFG[@]}"
"$VMA" verify -v "$W/diskless.vma" >"$W/v1"; ours verify -v "$W/diskless.vma" >"$W/v2"
same "verify -v of a diskless archive" "$W/v1" "$W/v2"
gzip -dc "$SAMPLE" >"$W/sample.vma"
"$VMA" verify -v "$W/sample.vma" >"$W/v1"; ours verify --allow-missing -v "$W/sample.vma" >"$W/v2"
same "verify -v of the truncated PVE sample (ours with --allow-missing)" "$W/v1" "$W/v2"

# ---- through the store: the reference's archive in, a restored archive out, read by the reference
if [ -n "$DATASET" ]; then
  name=vzdump-qemu-$GUEST-2026_11_10-02_00_00.vma
  cp "$W/real.vma" "$W/$name" && zstd -q --rm "$W/$name"
  node "$OURS" ingest "$W/$name.zst" --dataset "$DATASET" 2>/dev/null
  node "$OURS" restore $GUEST 2026_11_10-02_00_00 -o "$W/restored.vma.lzo" --dataset "$DATASET" 2>/dev/null
  lzop -dc "$W/restored.vma.lzo" >"$W/restored.vma"
  if "$VMA" verify "$W/restored.vma"; then pass "reference verify accepts the restored archive"; else fail "reference verify rejects the restored archive"; fi
  "$VMA" list "$W/real.vma" >"$W/l1"; "$VMA" list "$W/restored.vma" >"$W/l2"
  same "reference list: restored = original" "$W/l1" "$W/l2"
  "$VMA" extract "$W/restored.vma" "$W/x3" >/dev/null
  for f in qemu-server.conf qemu-server.fw; do same "reference extract of the restored archive: $f" "$W/$f" "$W/x3/$f"; done
  same "reference extract of the restored archive: disk-drive-scsi0.raw" "$W/a.raw" "$W/x3/disk-drive-scsi0.raw"
  same "reference extract of the restored archive: disk-drive-virtio1.raw" "$W/b.raw" "$W/x3/disk-drive-virtio1.raw"
  # as qmrestore drives it: the archive on stdin, target volumes named through a map on a FIFO
  mkdir "$W/vols"
  truncate -s "$(stat -c %s "$W/a.raw")" "$W/vols/scsi0.raw"
  truncate -s "$(stat -c %s "$W/b.raw")" "$W/vols/virtio1.raw"
  mkfifo "$W/map"
  printf 'format=raw:1:drive-scsi0=%s\nformat=raw:1:drive-virtio1=%s\ndone\n' "$W/vols/scsi0.raw" "$W/vols/virtio1.raw" >"$W/map" &
  if node "$OURS" restore $GUEST 2026_11_10-02_00_00 -o - --dataset "$DATASET" 2>/dev/null | "$VMA" extract -v -r "$W/map" - "$W/x4" >/dev/null; then
    pass "qmrestore's form: restore -o - | vma extract -v -r MAP - DIR"
  else
    fail "qmrestore's form: restore -o - | vma extract -v -r MAP - DIR"
  fi
  wait
  same "qmrestore's form: volume drive-scsi0" "$W/a.raw" "$W/vols/scsi0.raw"
  same "qmrestore's form: volume drive-virtio1" "$W/b.raw" "$W/vols/virtio1.raw"
fi

if [ "$failed" -ne 0 ]; then
  echo "$failed check(s) failed"
  exit 1
fi
echo "all checks passed"
