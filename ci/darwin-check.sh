#!/usr/bin/env bash
# Type-checks the whole workspace for aarch64-apple-darwin and x86_64-apple-darwin on Linux, so
# code behind cfg(target_os = "macos") always compiles (DESIGN.md §6).
#
# How: Debian bookworm-security ships a recent rustc (`rustc-web`) together with the matching std
# sources (`rust-web-src`, same version). We `apt-get download` those plus `libstd-rust-web-dev`,
# `libstd-rust-web-<x.y>` and the `libllvm<N>` they need, unpack them with `dpkg-deb -x` into a
# cache directory (never installed: they conflict with rustup), wrap that rustc in a script that
# sets LD_LIBRARY_PATH, and let the rustup cargo build std for the Apple targets from those
# sources (-Zbuild-std; RUSTC_BOOTSTRAP=1 unlocks -Z on a stable cargo). rustc finds its sysroot
# (and so the std sources under lib/rustlib/src/rust/library) from its own path, so nothing else
# needs pointing. The version is whatever apt offers at run time, so compiler and sources match.
#
# Two passes per run, both targets at once:
#   1. libraries and binaries, as shipped: a dependency that compiles C for the target fails here
#      (no Apple C toolchain on Linux), and must be kept out of macOS builds;
#   2. every target (tests, benches, examples), with a stub C compiler for the Apple targets:
#      a type check never links, so C objects of dev-dependencies (e.g. criterion -> alloca) are
#      not needed. Skip with DARWIN_CHECK_TESTS=0.
#
# Environment:
#   DARWIN_CHECK_CACHE       toolchain cache (default ${XDG_CACHE_HOME:-$HOME/.cache}/spfs-fuse/darwin-toolchain)
#   DARWIN_CHECK_TARGET_DIR  cargo target dir (default ${CARGO_TARGET_DIR:-target}/darwin-check)
#   DARWIN_CHECK_TARGETS     space-separated targets (default "aarch64-apple-darwin x86_64-apple-darwin")
#   DARWIN_CHECK_TESTS       0 to check libraries and binaries only
#   DARWIN_CHECK_UPDATE      1 to force `apt-get update`, 0 to never run it
set -euo pipefail
cd "$(dirname "$0")/.."
workspace=$PWD

say() { printf 'darwin-check: %s\n' "$*" >&2; }
die() {
    printf '\ndarwin-check: FAILED: %s\n' "$*" >&2
    exit 1
}

targets=${DARWIN_CHECK_TARGETS:-aarch64-apple-darwin x86_64-apple-darwin}
cache_root=${DARWIN_CHECK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/spfs-fuse/darwin-toolchain}
target_dir=${DARWIN_CHECK_TARGET_DIR:-${CARGO_TARGET_DIR:-$workspace/target}/darwin-check}
case "$target_dir" in /*) ;; *) target_dir=$workspace/$target_dir ;; esac

[ "$(uname -s)" = Linux ] || die "this script runs on Linux (Debian/Ubuntu with apt); on macOS run 'cargo check --workspace' instead"
command -v apt-get >/dev/null 2>&1 && command -v dpkg-deb >/dev/null 2>&1 ||
    die "apt-get and dpkg-deb are needed to fetch Debian's rustc-web (Debian bookworm or later)"
command -v cargo >/dev/null 2>&1 || die "cargo is missing: install Rust from https://rustup.rs"

as_root=()
[ "$(id -u)" -eq 0 ] || as_root=(sudo)

# The workspace's minimum Rust version, e.g. 1.88.
msrv=$(sed -n 's/^rust-version *= *"\([0-9.]*\)".*/\1/p' Cargo.toml | head -n1)

candidate() { apt-cache policy "$1" 2>/dev/null | sed -n 's/^ *Candidate: *//p' | grep -v '^(none)$' || true; }
upstream() { local v=${1#*:}; v=${v%%+*}; echo "${v%%-*}"; } # 1.96.0+dfsg1-1~deb12u2 -> 1.96.0
too_old() { [ -n "$msrv" ] && dpkg --compare-versions "$(upstream "$1")" lt "$msrv"; }

version=$(candidate rustc-web)
src_version=$(candidate rust-web-src)
need_update=0
case "${DARWIN_CHECK_UPDATE:-auto}" in
1) need_update=1 ;;
0) ;;
*)
    # Package lists missing, stale (a day) or offering a compiler older than the workspace needs.
    if [ -z "$version" ] || [ "$version" != "$src_version" ] || too_old "$version" ||
        [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -mmin -1440 2>/dev/null | head -n1)" ]; then
        need_update=1
    fi
    ;;
esac
if [ "$need_update" = 1 ]; then
    say "apt-get update (to see the newest rustc-web)"
    "${as_root[@]}" apt-get update -qq || die "apt-get update failed"
    version=$(candidate rustc-web)
    src_version=$(candidate rust-web-src)
fi

[ -n "$version" ] || die "apt offers no rustc-web package: add Debian's bookworm-security (or newer) to the apt sources"
[ "$version" = "$src_version" ] ||
    die "apt offers rustc-web $version but rust-web-src ${src_version:-(none)}: compiler and std sources must be the same version"
if too_old "$version"; then
    die "apt offers rustc-web $version, older than the workspace's rust-version $msrv: a newer rustc-web is needed (Debian bookworm-security)"
fi

short=$(upstream "$version")        # 1.96.0
minor=$(echo "$short" | cut -d. -f1,2) # 1.96
toolchain=$cache_root/$version
rustc_wrapper=$toolchain/bin/rustc

mkdir -p "$cache_root"
exec 9>"$cache_root/.lock"
if ! flock -n 9; then
    say "waiting for another darwin-check to finish preparing the toolchain"
    flock 9
fi

if [ -f "$toolchain/.complete" ]; then
    say "rustc-web $version: cached in $toolchain"
else
    say "rustc-web $version: fetching into $toolchain"
    llvm=$(apt-cache depends "libstd-rust-web-$minor=$version" 2>/dev/null |
        sed -n 's/^ *Depends: \(libllvm[0-9][0-9]*\)$/\1/p' | head -n1)
    [ -n "$llvm" ] || die "cannot tell which libllvm libstd-rust-web-$minor $version depends on (apt-cache depends)"
    llvm_version=$(candidate "$llvm")
    [ -n "$llvm_version" ] || die "apt offers no $llvm (needed by rustc-web $version)"

    stage=$cache_root/.stage-$version.$$
    rm -rf "$stage" "$toolchain"
    mkdir -p "$stage/debs" "$stage/root"
    trap 'rm -rf "$stage"' EXIT
    pkgs=("rustc-web=$version" "rust-web-src=$version" "libstd-rust-web-dev=$version"
        "libstd-rust-web-$minor=$version" "$llvm=$llvm_version")
    say "apt-get download ${pkgs[*]}"
    # _apt cannot write into root's directories; let it (or root) download without the warning.
    chmod 0777 "$stage/debs"
    (cd "$stage/debs" && apt-get download -q "${pkgs[@]}" 2>&1 | grep -v 'Download is performed unsandboxed' >&2) ||
        true
    [ "$(find "$stage/debs" -name '*.deb' | wc -l)" -eq "${#pkgs[@]}" ] ||
        die "apt-get download did not fetch all of: ${pkgs[*]}"
    say "unpacking with dpkg-deb -x"
    for deb in "$stage"/debs/*.deb; do dpkg-deb -x "$deb" "$stage/root" || die "dpkg-deb -x $deb failed"; done
    # Only library/ of the std sources is needed for -Zbuild-std: drop the compiler sources and docs.
    rm -rf "$stage/debs" "$stage/root/usr/share/doc" "$stage/root/usr/share/man" \
        "$stage"/root/usr/src/rustc-*/src "$stage"/root/usr/src/rustc-*/compiler
    [ -d "$stage/root/usr/lib/rustlib/src/rust/library/std" ] ||
        die "rust-web-src $version has no usr/lib/rustlib/src/rust/library/std"

    echo "$llvm" >"$stage/llvm-package"
    mv "$stage" "$toolchain"
    trap - EXIT
    touch "$toolchain/.complete"
    # Keep only this version.
    find "$cache_root" -mindepth 1 -maxdepth 1 -type d ! -name "$version" -exec rm -rf {} +
fi

# The shared libraries libLLVM needs (libz3, libxml2, ...) come from the host: install the missing ones.
missing=$(LD_LIBRARY_PATH=$toolchain/root/usr/lib/x86_64-linux-gnu \
    ldd "$toolchain/root/usr/bin/rustc" "$toolchain"/root/usr/lib/x86_64-linux-gnu/*.so* 2>/dev/null |
    sed -n 's/^[[:space:]]*\([^ ]*\) => not found.*/\1/p' | sort -u)
if [ -n "$missing" ]; then
    deps=$(apt-cache depends "$(cat "$toolchain/llvm-package")" 2>/dev/null | sed -n 's/^ *Depends: \([^<][^ ]*\)$/\1/p' |
        grep -v '^libllvm' | sort -u | tr '\n' ' ')
    say "rustc needs libraries this host lacks ($(echo "$missing" | tr '\n' ' ')): apt-get install $deps"
    [ -n "$deps" ] && DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends $deps >&2 ||
        die "cannot install the libraries rustc-web needs: $missing"
fi
flock -u 9

# The rustc wrapper. bash, not sh: dash drops environment variables whose names are not shell
# identifiers, such as the CARGO_BIN_EXE_spfs-fuse that integration tests read with env!().
mkdir -p "$toolchain/bin"
cat >"$toolchain/bin/rustc.new" <<'EOF'
#!/usr/bin/env bash
# Debian's rustc-web, unpacked (not installed) by ci/darwin-check.sh. rustc finds its sysroot
# (std for the host, std sources for -Zbuild-std) from its own path; it only needs its libraries.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/root
export LD_LIBRARY_PATH="$root/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
exec "$root/usr/bin/rustc" "$@"
EOF
if cmp -s "$toolchain/bin/rustc.new" "$rustc_wrapper"; then rm "$toolchain/bin/rustc.new"; else mv "$toolchain/bin/rustc.new" "$rustc_wrapper"; fi
chmod +x "$rustc_wrapper"

"$rustc_wrapper" -vV >/dev/null 2>&1 || die "the unpacked rustc does not run: try '$rustc_wrapper -vV'"
say "$("$rustc_wrapper" -V), $(cargo -V)"

# Stub C toolchain for pass 2: empty objects and archives (a type check never links them).
stub=$target_dir/stub-cc
mkdir -p "$stub"
cat >"$stub/cc.new" <<'EOF'
#!/bin/sh
# Stub C compiler for ci/darwin-check.sh: claims to be clang, writes empty objects.
for a in "$@"; do
    case "$a" in
    -E) echo '#pragma message "clang"'; exit 0 ;;
    '-?') exit 1 ;;
    --version) echo 'clang version 0 (darwin-check stub)'; exit 0 ;;
    esac
done
out=
while [ $# -gt 0 ]; do
    case "$1" in -o) out=$2; shift ;; -o*) out=${1#-o} ;; esac
    shift
done
[ -z "$out" ] || : >"$out"
EOF
cat >"$stub/ar.new" <<'EOF'
#!/bin/sh
# Stub archiver for ci/darwin-check.sh: writes an empty archive.
[ $# -ge 2 ] && case "$2" in *.a) [ -s "$2" ] || printf '!<arch>\n' >"$2" ;; esac
exit 0
EOF
for f in cc ar; do
    if cmp -s "$stub/$f.new" "$stub/$f"; then rm "$stub/$f.new"; else mv "$stub/$f.new" "$stub/$f"; fi
    chmod +x "$stub/$f"
done

target_args=()
for t in $targets; do target_args+=(--target "$t"); done
export RUSTC=$rustc_wrapper RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR=$target_dir
unset RUSTC_WRAPPER RUSTC_WORKSPACE_WRAPPER
# std,test in both passes: the tests pass needs `test`, and the same set lets it reuse pass 1's std.
check=(cargo check --workspace --locked -Zbuild-std=std,test -Zbuild-std-features=panic-unwind "${target_args[@]}")
log=$target_dir/last.log

explain() { # $1 = pass name; reads $log
    local crates first
    crates=$(sed -n 's/^error: failed to run custom build command for `\([^`]*\)`.*/\1/p' "$log" | sort -u |
        paste -sd, - | sed 's/,/, /g')
    first=$(echo "$crates" | cut -d' ' -f1)
    if grep -q 'cannot update the lock file' "$log"; then
        die "$1: Cargo.lock is out of date with the Cargo.toml files (the check runs with --locked): run 'cargo update -w' (or any cargo build) and commit Cargo.lock"
    elif grep -q 'error occurred in cc-rs\|unrecognized command-line option .-arch\|failed to find tool' "$log"; then
        die "$1: ${crates:-a dependency} compiles C for the Apple target, which cannot be done on Linux.
  Keep it out of macOS builds (a cfg(not(target_os = \"macos\")) dependency, or a feature that avoids the C code).
  'cargo tree --workspace --target aarch64-apple-darwin -e normal,build -i ${first:-<crate>}' shows who pulls it in."
    elif grep -q 'failed to run custom build command' "$log"; then
        die "$1: the build script of ${crates} failed for the Apple target (see above)"
    elif grep -q '^error\[E\|^error:' "$log"; then
        local where
        where=$(grep -A1 '^error' "$log" | sed -n 's/^ *--> \(.*\)/  \1/p' | sort -u | head -n 20)
        die "$1: the workspace does not compile for macOS ($targets); errors above, at:
${where:-  (see $log)}
  Make that code compile on macOS: gate Linux-only APIs behind cfg(target_os = \"linux\") and keep
  macOS code in its own module. Reproduce with ci/darwin-check.sh (full log: $log)"
    else
        die "$1: cargo check failed (log: $log)"
    fi
}

# Warnings count as errors here, as clippy's -D warnings does for Linux: code that only macOS
# compiles (or only Linux uses) would otherwise go unused on one side unseen.
no_warnings() { # $1 = pass name; reads $log
    if grep -q '^warning: `spfs-[a-z]*` (.*) generated' "$log"; then
        die "$1: the workspace compiles for macOS ($targets) with warnings (above); fix them.
  Reproduce with ci/darwin-check.sh (full log: $log)"
    fi
}

say "pass 1/2: libraries and binaries for $targets (target dir $target_dir)"
say "RUSTC=$RUSTC RUSTC_BOOTSTRAP=1 ${check[*]} --lib --bins"
mkdir -p "$target_dir"
if ! "${check[@]}" --lib --bins 2>&1 | tee "$log"; then explain "pass 1 (libraries and binaries)"; fi
no_warnings "pass 1 (libraries and binaries)"

if [ "${DARWIN_CHECK_TESTS:-1}" != 0 ]; then
    for t in $targets; do
        u=${t//-/_}
        export "CC_$u=$stub/cc" "AR_$u=$stub/ar"
    done
    say "pass 2/2: all targets (tests, benches, examples), C code of dependencies stubbed"
    say "${check[*]} --all-targets"
    if ! "${check[@]}" --all-targets 2>&1 | tee "$log"; then explain "pass 2 (all targets)"; fi
    no_warnings "pass 2 (all targets)"
fi

say "OK: the workspace type-checks for $targets with rustc-web $version"
