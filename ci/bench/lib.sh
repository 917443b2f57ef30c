# Shared by ci/bench.sh and ci/bench-edit.sh (sourced, not run). Expects: $repo, $work, $mnt,
# $files, $dirs, $big_mib, and optionally $threads and $no_uring; setup_bench sets $bin (the
# spfs-fuse binary) and $can_drop, make_stack the layer stack's variables.

log() { printf '%s\n' "$*" >&2; }

# setup_bench: installs what the benchmarks need and builds (or takes) the binary.
setup_bench() {
    "$repo/ci/setup.sh"
    local need=()
    command -v fuse-overlayfs >/dev/null 2>&1 || need+=(fuse-overlayfs)
    command -v cc >/dev/null 2>&1 || need+=(gcc)
    if [ "${#need[@]}" -gt 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
    fi
    if [ -n "${SPFS_FUSE_BIN:-}" ]; then
        bin=$SPFS_FUSE_BIN
    else
        log "building spfs-fuse (release)"
        (cd "$repo" && cargo build --release --locked -q -p spfs-fuse)
        local target_dir
        target_dir=$(cd "$repo" && cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
        bin=$target_dir/release/spfs-fuse
    fi
    can_drop=0
    if sync && echo 3 2>/dev/null >/proc/sys/vm/drop_caches; then can_drop=1; fi
    [ "$can_drop" = 1 ] || log "note: cannot drop the page cache here; cold means a fresh mount only"
}

# make_stack: builds the workload driver and, once per size, the three-layer stack of $files
# files in $dirs directories with a $big_mib MiB file; sets $driver, $stack, $layers, $spec (the
# env spec) and $lowerdir (the overlay option, top first).
make_stack() {
    driver=$work/driver
    cc -O2 -o "$driver" "$repo/ci/bench/driver.c" -lm
    stack=$work/stack-v2-$files-$dirs-$big_mib
    if ! [ -e "$stack/done" ]; then
        log "making the layer stack in $stack"
        rm -rf "$stack"
        mkdir -p "$stack"
        "$driver" gen "$stack" "$files" "$dirs" "$big_mib" >&2
        touch "$stack/done"
    fi
    layers=("$stack/layer0" "$stack/layer1" "$stack/layer2")
    spec=$(IFS=+; echo "${layers[*]}")
    lowerdir="$stack/layer2:$stack/layer1:$stack/layer0"
}

declare -A service_pid=() sleepers=()

# up_spfs NAME RUNTIMES SPEC [MOUNT ARGS...]: starts a service on $mnt/NAME and registers this
# script as a runtime root (so its children see the view) with MOUNT ARGS, plus RUNTIMES - 1
# read-only ones rooted at idle processes.
up_spfs() {
    local name=$1 runtimes=$2 spec=$3
    shift 3
    local -x SPFS_FUSE_SOCKET=$work/$name.sock
    local args=(service --mountpoint "$mnt/$name" --socket "$SPFS_FUSE_SOCKET")
    [ -z "${threads:-}" ] || args+=(--threads "$threads")
    [ -z "${no_uring:-}" ] || args+=(--no-io-uring)
    "$bin" "${args[@]}" >>"$work/$name.log" 2>&1 &
    service_pid[$name]=$!
    local tries=0
    until "$bin" status >/dev/null 2>&1; do
        tries=$((tries + 1))
        if [ $tries -gt 200 ] || ! kill -0 "${service_pid[$name]}" 2>/dev/null; then
            tail -20 "$work/$name.log" >&2
            log "the spfs-fuse service did not start"
            return 1
        fi
        sleep 0.05
    done
    "$bin" mount --root-process $$ "$@" "$spec" >/dev/null
    local i pid
    for ((i = 1; i < runtimes; i++)); do
        sleep 100000 &
        pid=$!
        sleepers[$name]+=" $pid"
        "$bin" mount --root-process "$pid" "$spec" >/dev/null
    done
}

# down_spfs NAME: shuts NAME's service down and ends its idle roots.
down_spfs() {
    local name=$1 pid
    local -x SPFS_FUSE_SOCKET=$work/$name.sock
    [ -n "${service_pid[$name]:-}" ] || return 0
    "$bin" shutdown >/dev/null 2>&1 || kill "${service_pid[$name]}" 2>/dev/null || true
    wait "${service_pid[$name]}" 2>/dev/null || true
    unset "service_pid[$name]"
    for pid in ${sleepers[$name]:-}; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    unset "sleepers[$name]"
    if mountpoint -q "$mnt/$name"; then fusermount3 -uz "$mnt/$name"; fi
}

# down SERVING: its mount gone (an spfs-fuse serving's service shut down too).
down() {
    case $1 in
    spfs-fuse*) down_spfs "$1" ;;
    fuse-overlayfs) unmount_fuse "$mnt/fuse-overlayfs" ;;
    overlay) if mountpoint -q "$mnt/overlay"; then umount "$mnt/overlay" || umount -l "$mnt/overlay"; fi ;;
    plain) ;;
    esac
}

# unmount_fuse DIR: a FUSE mount gone, politely if it can be.
unmount_fuse() {
    if mountpoint -q "$1"; then fusermount3 -u "$1" || fusermount3 -uz "$1"; fi
}

drop_caches() {
    if [ "$can_drop" = 1 ]; then
        sync
        echo 3 >/proc/sys/vm/drop_caches
    fi
}

# rotated I SERVING...: the servings, starting at the (I mod N)th, so none always goes first.
rotated() {
    local i=$1
    shift
    local n=$# k
    local all=("$@")
    for ((k = 0; k < n; k++)); do echo "${all[(i + k) % n]}"; done
}

# bench cold|cold-warm WORKLOAD SERVING...: REPS rounds of cold runs (each serving freshly
# mounted, with an empty upper where it has one, and the page cache dropped); with cold-warm
# then one untimed and REPS timed rounds of warm runs on the last mounts. The servings take
# turns within each round, so load from elsewhere on the machine hits them alike, and each round
# starts with the next one, so whatever the first run of a round pays (the previous workload's
# leftovers, a CPU waking up) falls on each alike. Uses the script's up, down and run.
bench() {
    local temps=$1 workload=$2 i s
    shift 2
    log "  $workload: $*"
    for ((i = 0; i < reps; i++)); do
        for s in $(rotated "$i" "$@"); do
            down "$s"
            up "$s"
            drop_caches
            run "$s" "$workload" cold
        done
    done
    if [ "$temps" = cold-warm ]; then
        for s in "$@"; do run "$s" "$workload" warmup; done
        for ((i = 0; i < reps; i++)); do
            for s in $(rotated "$i" "$@"); do run "$s" "$workload" warm; done
        done
    fi
    for s in "$@"; do down "$s"; done
}

# machine_line: cores, CPU, kernel and whether FUSE over io_uring was used, for every table.
machine_line() {
    local uring_switch=/sys/module/fuse/parameters/enable_uring uring
    case "$(cat "$uring_switch" 2>/dev/null || echo absent)" in
    Y) uring="FUSE over io_uring on${no_uring:+ but not used (--no-io-uring)}" ;;
    absent) uring="no FUSE over io_uring in this kernel" ;;
    *) uring="FUSE over io_uring off ($uring_switch)" ;;
    esac
    echo "$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), Linux $(uname -r), $uring"
}
