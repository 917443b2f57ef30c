#!/usr/bin/env bash
# Editable runtimes against their peers: the same three-layer stack served by spfs-fuse (an
# editable runtime: `mount --edit`), fuse-overlayfs and the kernel's overlayfs, each with an
# empty upper layer, and a plain directory; the same write workloads through each, every run on
# a fresh mount with an empty upper. Prints medians, spfs-fuse's ratios to fuse-overlayfs and
# the FUSE requests spfs-fuse served per run (they do not move with the CPU); then the read
# workloads on an editable runtime with an empty scratch against a read-only one.
#
#   ci/bench-edit.sh [--quick] [--reps N] [--files N] [--dirs N] [--big-mib N] [--dir DIR]
#                    [--only "WORKLOAD..."] [--no-io-uring]
#
# Workloads: untar (a tarball of the bottom layer's small files unpacked into the view), write
# (a new $big_mib MiB file, written with dd and flushed with fsync), append (1 MiB appended
# to the big lower file: a copy-up), rmtree (`rm -rf` of a lower tree: whiteouts), and
# reads (the lstat and read workloads of ci/bench.sh, editable against read-only). Linux only,
# as root. SPFS_FUSE_BIN=PATH benchmarks that binary.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

reps=5 files=24000 dirs=1000 big_mib=512 no_uring="" threads="" only="untar write append rmtree reads"
work=${BENCH_DIR:-/tmp/spfs-fuse-bench}
while [ $# -gt 0 ]; do
    case $1 in
    --quick) reps=3 files=600 dirs=40 big_mib=16 ;;
    --reps) reps=$2; shift ;;
    --files) files=$2; shift ;;
    --dirs) dirs=$2; shift ;;
    --big-mib) big_mib=$2; shift ;;
    --dir) work=$2; shift ;;
    --only) only=$2; shift ;;
    --no-io-uring) no_uring=1 ;;
    -h | --help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "ci/bench-edit.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
[ "$(uname -s)" = Linux ] || { echo "ci/bench-edit.sh: Linux only (it mounts overlayfs)" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "ci/bench-edit.sh: run as root: it mounts filesystems" >&2; exit 1; }
mkdir -p "$work"
work=$(cd "$work" && pwd)
mnt=$work/mnt-edit
. ci/bench/lib.sh

setup_bench
make_stack
tarball=$work/layer0-$files-$dirs.tar
[ -e "$tarball" ] || tar -cf "$tarball" --exclude=big.bin -C "$stack/layer0" .
mkdir -p "$mnt/spfs-fuse" "$mnt/spfs-fuse-ro" "$mnt/fuse-overlayfs" "$mnt/overlay"

# The upper (and work) directories of the overlays, emptied before every mount.
uppers=$work/uppers

up() {
    case $1 in
    spfs-fuse) up_spfs "$1" 1 "$spec" --edit ;;
    spfs-fuse-ro) up_spfs "$1" 1 "$spec" ;;
    fuse-overlayfs | overlay)
        rm -rf "${uppers:?}/$1"
        mkdir -p "$uppers/$1/upper" "$uppers/$1/work"
        local opts="lowerdir=$lowerdir,upperdir=$uppers/$1/upper,workdir=$uppers/$1/work"
        if [ "$1" = overlay ]; then
            mount -t overlay overlay -o "$opts,redirect_dir=off,metacopy=off,index=off" "$mnt/overlay"
        else
            fuse-overlayfs -o "$opts" "$mnt/fuse-overlayfs" 2>>"$work/fuse-overlayfs.log"
        fi
        ;;
    plain) rm -rf "$work/plain" && cp -a "$stack/layer0" "$work/plain" ;;
    esac
}

root_of() {
    case $1 in
    plain) echo "$work/plain" ;;
    *) echo "$mnt/$1" ;;
    esac
}

cleanup() {
    local s
    for s in spfs-fuse spfs-fuse-ro fuse-overlayfs overlay; do down "$s" || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# requests NAME: the FUSE requests NAME's service has served so far, summed over opcodes.
requests() {
    SPFS_FUSE_SOCKET=$work/$1.sock "$bin" status --json |
        python3 -c 'import json,sys; print(sum(r["count"] for r in json.load(sys.stdin)["requests"].values()))'
}

results=$work/results-edit.txt
: >"$results"

now() { date +%s%N; }

# run SERVING WORKLOAD TEMP: one timed run; appends "serving workload temp ns requests".
run() {
    local serving=$1 workload=$2 temp=$3 root before=0 after=0 start end
    root=$(root_of "$serving")
    case $serving in spfs-fuse*) before=$(requests "$serving") ;; esac
    start=$(now)
    case $workload in
    untar) mkdir "$root/untar" && tar -xf "$tarball" -C "$root/untar" ;;
    write) dd if=/dev/zero of="$root/new.bin" bs=1M count="$big_mib" conv=fsync status=none ;;
    append) dd if=/dev/zero of="$root/d00/big.bin" bs=1M count=1 oflag=append conv=notrunc,fsync status=none ;;
    rmtree) rm -rf "$root/d01" ;;
    lstat) "$driver" lstat "$root" "$stack/paths.list" >/dev/null ;;
    read) "$driver" read "$root" "$stack/files.list" >/dev/null ;;
    esac
    end=$(now)
    case $serving in spfs-fuse*) after=$(requests "$serving") ;; esac
    # The requests of `status` itself do not reach the mount: the difference is the workload's.
    echo "$serving $workload $temp $((end - start)) $((after - before))" >>"$results"
}

log "benchmarking editable runtimes: $reps repetitions, $files files, $dirs directories, $big_mib MiB"
for w in $only; do
    case $w in
    untar | write) bench cold "$w" spfs-fuse fuse-overlayfs overlay plain ;;
    append | rmtree) bench cold "$w" spfs-fuse fuse-overlayfs overlay ;;
    reads) bench cold-warm lstat spfs-fuse spfs-fuse-ro && bench cold-warm read spfs-fuse spfs-fuse-ro ;;
    *) echo "ci/bench-edit.sh: unknown workload $w" >&2; exit 2 ;;
    esac
done

machine=$(machine_line)
awk -v machine="$machine" -v reps="$reps" -v files="$files" -v big_mib="$big_mib" -f ci/bench/stats.awk -f ci/bench/report-edit.awk "$results"
