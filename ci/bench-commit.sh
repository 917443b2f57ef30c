#!/usr/bin/env bash
# Committing an editable runtime (issue 17) against its floor: copying the same files and
# hashing them. Each run starts a fresh editable runtime of an empty stack, writes the files
# into its view (untimed), drops the page cache, then times `spfs-fuse commit layer` into an
# empty repository; the baseline, in the same round, is `cp -a` of the same tree from a plain
# directory into an empty one followed by `sha256sum` over every copied file, also from a
# dropped cache. Prints medians and the ratio commit / (cp -a + sha256sum).
#
#   ci/bench-commit.sh [--quick] [--reps N] [--files N] [--dirs N] [--big-mib N] [--dir DIR]
#                      [--only "WORKLOAD..."]
#
# Workloads: small (the bottom layer of ci/bench.sh's stack: $files small files in $dirs
# directories) and big (one $big_mib MiB file). Linux only, as root. SPFS_FUSE_BIN=PATH
# benchmarks that binary.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

reps=5 files=20000 dirs=1000 big_mib=512 only="small big"
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
    -h | --help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "ci/bench-commit.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
[ "$(uname -s)" = Linux ] || { echo "ci/bench-commit.sh: Linux only" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "ci/bench-commit.sh: run as root: it mounts filesystems" >&2; exit 1; }
mkdir -p "$work"
work=$(cd "$work" && pwd)
mnt=$work/mnt-commit
. ci/bench/lib.sh

setup_bench
make_stack
# The trees committed: the small files of the bottom layer (without its big file), and one
# big file, each in a plain directory of its own.
sources=$work/commit-sources-$files-$dirs-$big_mib
if ! [ -e "$sources/done" ]; then
    rm -rf "$sources"
    mkdir -p "$sources/small" "$sources/big"
    tar -cf - --exclude=big.bin -C "$stack/layer0" . | tar -xf - -C "$sources/small"
    head -c "$((big_mib << 20))" /dev/urandom >"$sources/big/big.bin"
    touch "$sources/done"
fi
mkdir -p "$mnt/spfs-fuse"

cleanup() { down spfs-fuse || true; }
trap cleanup EXIT
trap 'exit 130' INT TERM

results=$work/results-commit.txt
: >"$results"
now() { date +%s%N; }

# empty_repo DIR: an empty spfs repository at DIR.
empty_repo() {
    rm -rf "$1"
    mkdir -p "$1/objects" "$1/payloads" "$1/tags"
}

# run_commit WORKLOAD: a fresh editable runtime holding the workload's tree, committed.
run_commit() {
    local w=$1 start end
    down spfs-fuse
    up_spfs spfs-fuse 1 - --edit
    # Entry by entry: the view's root keeps its own times and mode.
    cp -a "$sources/$w"/* "$mnt/spfs-fuse/"
    empty_repo "$work/commit-repo"
    drop_caches
    start=$(now)
    SPFS_FUSE_SOCKET=$work/spfs-fuse.sock "$bin" commit layer --root-process $$ --repo "$work/commit-repo" >/dev/null
    end=$(now)
    echo "commit $w cold $((end - start)) 0" >>"$results"
}

# run_copy WORKLOAD: cp -a of the tree then sha256sum of every copied file.
run_copy() {
    local w=$1 start end
    rm -rf "$work/commit-copy"
    drop_caches
    start=$(now)
    cp -a "$sources/$w" "$work/commit-copy"
    find "$work/commit-copy" -type f -print0 | xargs -0 sha256sum >/dev/null
    end=$(now)
    echo "copy-hash $w cold $((end - start)) 0" >>"$results"
}

log "benchmarking commit: $reps repetitions, $files files in $dirs directories, $big_mib MiB"
for w in $only; do
    log "  $w"
    for ((i = 0; i < reps; i++)); do
        if ((i % 2)); then run_copy "$w"; run_commit "$w"; else run_commit "$w"; run_copy "$w"; fi
    done
done
down spfs-fuse

machine_line
awk -f ci/bench/stats.awk -f /dev/stdin "$results" <<'EOF'
{ key = $1 " " $2; count[key]++; sample[key, count[key]] = $4; seen[$2] = 1 }
END {
    printf "| workload | commit (ms) | cp -a + sha256sum (ms) | ratio |\n|---|---:|---:|---:|\n"
    for (w in seen) {
        c = median("commit " w); b = median("copy-hash " w)
        printf "| %s | %s | %s | %s |\n", w, ms(c), ms(b), ratio(c, b)
    }
}
EOF
