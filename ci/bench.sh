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
    -v big_mib="$big_mib" -v many="$many" -v commit="$spfs_version" '
function median(key,    n, i, j, t, v) {
    n = count[key]
    if (n == 0) return -1
    for (i = 1; i <= n; i++) v[i] = sample[key, i]
    for (i = 2; i <= n; i++) for (j = i; j > 1 && v[j - 1] > v[j]; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
    return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
}
function ms(ns) { return ns < 0 ? "-" : sprintf(ns >= 1e8 ? "%.0f" : ns >= 1e7 ? "%.1f" : "%.2f", ns / 1e6) }
function ratio(a, b) { return (a < 0 || b <= 0) ? "-" : sprintf("%.2fx", a / b) }
$3 != "warmup" {
    key = $1 SUBSEP $2 SUBSEP $3
    count[key]++
    sample[key, count[key]] = $4
    entries[key] = $5; bytes[key] = $6; errors[key] += $7
}
END {
    split("walk lstat read big", wl, " ")
    split("cold warm", tl, " ")
    split("spfs-fuse fuse-overlayfs overlay plain", sl, " ")
    bad = 0
    # The three merged servings must see the same tree; nothing may fail.
    for (k in errors) if (errors[k] > 0) { split(k, p, SUBSEP); printf "error: %s %s %s: %d failed operations\n", p[1], p[2], p[3], errors[k] > "/dev/stderr"; bad = 1 }
    for (w = 1; w <= 4; w++) for (t = 1; t <= 2; t++) {
        a = "spfs-fuse" SUBSEP wl[w] SUBSEP tl[t]; b = "overlay" SUBSEP wl[w] SUBSEP tl[t]; c = "fuse-overlayfs" SUBSEP wl[w] SUBSEP tl[t]
        if (entries[a] != entries[b] || bytes[a] != bytes[b] || entries[c] != entries[b] || bytes[c] != bytes[b]) {
            printf "error: %s %s: spfs-fuse saw %s entries / %s bytes, fuse-overlayfs %s / %s, overlay %s / %s\n", wl[w], tl[t], entries[a], bytes[a], entries[c], bytes[c], entries[b], bytes[b] > "/dev/stderr"; bad = 1
        }
    }
    printf "\nmedian ms of %d runs; %s files, %s dirs, %s MiB big file; %s\n", reps, files, dirs, big_mib, machine
    printf "ratios: spfs-fuse / fuse-overlayfs and spfs-fuse / kernel overlay (lower is better)\n\n"
    printf "| workload | spfs-fuse | fuse-overlayfs | kernel overlay | plain dir | vs fuse-overlayfs | vs kernel overlay |\n"
    printf "|---|---:|---:|---:|---:|---:|---:|\n"
    out = "{\n  \"machine\": \"" machine "\",\n  \"commit\": \"" commit "\",\n  \"repetitions\": " reps ",\n  \"files\": " files ",\n  \"dirs\": " dirs ",\n  \"big_mib\": " big_mib ",\n  \"runtimes_many\": " many ",\n  \"unit\": \"ns\",\n  \"results\": ["
    sep = ""
    for (w = 1; w <= 4; w++) for (t = 1; t <= 2; t++) {
        for (s = 1; s <= 4; s++) m[s] = median(sl[s] SUBSEP wl[w] SUBSEP tl[t])
        label = wl[w] " " tl[t]
        printf "| %s | %s | %s | %s | %s | %s | %s |\n", label, ms(m[1]), ms(m[2]), ms(m[3]), ms(m[4]), ratio(m[1], m[2]), ratio(m[1], m[3])
        out = out sep "\n    {\"workload\": \"" wl[w] "\", \"cache\": \"" tl[t] "\""
        for (s = 1; s <= 4; s++) {
            key = sl[s] SUBSEP wl[w] SUBSEP tl[t]
            out = out ", \"" sl[s] "\": {\"median\": " m[s] ", \"samples\": ["
            for (i = 1; i <= count[key]; i++) out = out (i > 1 ? ", " : "") sample[key, i]
            out = out "], \"vs_fuse_overlayfs\": " (m[2] > 0 ? m[s] / m[2] : "null") ", \"vs_overlay\": " (m[3] > 0 ? m[s] / m[3] : "null") "}"
        }
        out = out "}"
        sep = ","
    }
    for (t = 1; t <= 2; t++) {
        big = median("spfs-fuse" SUBSEP "big" SUBSEP tl[t]); floor_ = median("plain" SUBSEP "big" SUBSEP tl[t])
        if (big > 0 && floor_ > 0) printf "\nbig file %s: spfs-fuse %.0f MiB/s, plain dir %.0f MiB/s (%.0f%%)", tl[t], big_mib * 1e9 / big / 1, big_mib * 1e9 / floor_, 100 * floor_ / big
    }
    printf "\n\nrouting cost, lstat through spfs-fuse:\n\n| runtimes | cold | warm |\n|---:|---:|---:|\n"
    one_c = median("spfs-fuse" SUBSEP "lstat-routing" SUBSEP "cold"); one_w = median("spfs-fuse" SUBSEP "lstat-routing" SUBSEP "warm")
    n_c = median("spfs-fuse-many" SUBSEP "lstat-routing" SUBSEP "cold"); n_w = median("spfs-fuse-many" SUBSEP "lstat-routing" SUBSEP "warm")
    printf "| 1 | %s | %s |\n| %d | %s (%s) | %s (%s) |\n", ms(one_c), ms(one_w), many, ms(n_c), ratio(n_c, one_c), ms(n_w), ratio(n_w, one_w)
    out = out sep "\n    {\"workload\": \"lstat\", \"runtimes\": 1, \"cold\": " one_c ", \"warm\": " one_w "},"
    out = out "\n    {\"workload\": \"lstat\", \"runtimes\": " many ", \"cold\": " n_c ", \"warm\": " n_w "}\n  ]\n}\n"
    printf "%s", out > json
    printf "\nJSON: %s\n", json
    exit bad
}' "$results"
