#!/usr/bin/env bash
# Serves one layer stack four ways -- spfs-fuse (shared layout, one runtime), fuse-overlayfs,
# the kernel's overlayfs, and the bottom layer as a plain directory -- and times the same
# workloads through each, cold (fresh mount, caches dropped) and warm. Prints a table of medians
# with spfs-fuse's ratios to fuse-overlayfs and to the kernel overlay from the same run, and
# writes the same as JSON.
#
#   ci/bench.sh [--quick] [--reps N] [--files N] [--dirs N] [--big-mib N] [--runtimes N]
#               [--threads N] [--no-io-uring] [--dir DIR] [--json PATH] [--only "WORKLOAD..."]
#
# Linux only, as root (it mounts). Installs fuse-overlayfs (and fuse3) with apt-get if missing,
# builds spfs-fuse with `cargo build --release --locked` and the workload driver
# (ci/bench/driver.c) with cc. The stack lives in $BENCH_DIR (default /tmp/spfs-fuse-bench) and
# is made once per size. --quick: a small stack and 3 repetitions, done in seconds. --only runs
# some of walk, lstat, read, big and routing (the table shows "-" for the rest).
# SPFS_FUSE_BIN=PATH benchmarks that binary instead of building one (to compare builds).
# spfs-fuse serves through FUSE over io_uring where the kernel's switch is on (ci/setup.sh turns
# it on as root); --no-io-uring makes it read /dev/fuse instead. The table says which was used.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

reps=5 files=24000 dirs=1000 big_mib=512 many=64 threads="" no_uring="" only="walk lstat read big routing"
work=${BENCH_DIR:-/tmp/spfs-fuse-bench} json=""
while [ $# -gt 0 ]; do
    case $1 in
    --quick) reps=3 files=600 dirs=40 big_mib=16 many=8 ;;
    --reps) reps=$2; shift ;;
    --files) files=$2; shift ;;
    --dirs) dirs=$2; shift ;;
    --big-mib) big_mib=$2; shift ;;
    --runtimes) many=$2; shift ;;
    --threads) threads=$2; shift ;;
    --dir) work=$2; shift ;;
    --json) json=$2; shift ;;
    --only) only=$2; shift ;;
    --no-io-uring) no_uring=1 ;;
    -h | --help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "ci/bench.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
[ "$(uname -s)" = Linux ] || { echo "ci/bench.sh: Linux only (it mounts overlayfs)" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "ci/bench.sh: run as root: it mounts filesystems" >&2; exit 1; }
mkdir -p "$work"
work=$(cd "$work" && pwd)
json=${json:-$work/results.json}

mnt=$work/mnt
. ci/bench/lib.sh

# --- set up ----------------------------------------------------------------------------------
setup_bench
make_stack

mkdir -p "$mnt/spfs-fuse" "$mnt/spfs-fuse-many" "$mnt/fuse-overlayfs" "$mnt/overlay"

# --- the servings ----------------------------------------------------------------------------
# up S mounts serving S (for spfs-fuse: starts a service and registers runtimes), down S undoes
# it, root_of S is where the merged tree appears. spfs-fuse-many is a second spfs-fuse service
# on a mount point of its own, with $many runtimes, so the routing cost is measured side by side.
root_of() {
    case $1 in
    spfs-fuse | spfs-fuse-many | fuse-overlayfs | overlay) echo "$mnt/$1" ;;
    plain) echo "$stack/layer0" ;;
    esac
}

up() {
    case $1 in
    spfs-fuse) up_spfs "$1" 1 "$spec" ;;
    spfs-fuse-many) up_spfs "$1" "$many" "$spec" ;;
    fuse-overlayfs) fuse-overlayfs -o "lowerdir=$lowerdir" "$mnt/fuse-overlayfs" 2>>"$work/fuse-overlayfs.log" ;;
    overlay) mount -t overlay overlay -o "ro,lowerdir=$lowerdir" "$mnt/overlay" ;;
    plain) ;;
    esac
}

cleanup() {
    local s
    for s in spfs-fuse spfs-fuse-many fuse-overlayfs overlay; do down "$s" || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- workloads -------------------------------------------------------------------------------
results=$work/results.txt
: >"$results"

# run SERVING WORKLOAD TEMP: one timed run of the driver; appends a result line.
run() {
    local serving=$1 workload=$2 temp=$3 root out
    root=$(root_of "$serving")
    case $workload in
    walk) out=$("$driver" walk "$root") ;;
    lstat | lstat-routing) out=$("$driver" lstat "$root" "$stack/paths.list") ;;
    read) out=$("$driver" read "$root" "$stack/files.list") ;;
    big) out=$("$driver" big "$root/d00/big.bin") ;;
    esac
    echo "$serving $workload $temp $out" >>"$results"
}

log "benchmarking: $reps repetitions, $files files, $dirs directories, $big_mib MiB big file"
for w in $only; do
    case $w in
    walk | lstat | read | big) bench cold-warm "$w" spfs-fuse fuse-overlayfs overlay plain ;;
    # Routing cost: the same lstat workload through a service with one runtime and one with $many.
    routing) bench cold-warm lstat-routing spfs-fuse spfs-fuse-many ;;
    *) echo "ci/bench.sh: unknown workload $w (walk, lstat, read, big, routing)" >&2; exit 2 ;;
    esac
done

# --- report ----------------------------------------------------------------------------------
machine=$(machine_line)
spfs_version=$(git -C "$repo" describe --always --dirty 2>/dev/null || echo unknown)
awk -v json="$json" -v machine="$machine" -v reps="$reps" -v files="$files" -v dirs="$dirs" \
    -v big_mib="$big_mib" -v many="$many" -v commit="$spfs_version" -f ci/bench/stats.awk -f ci/bench/report.awk "$results"
