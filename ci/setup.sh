#!/usr/bin/env bash
# Installs what building, running and testing spfs-fuse needs on this host, and nothing else.
# Debian/Ubuntu: fuse3 (fusermount3, for mounting and clearing stale mounts), stress-ng and fio
# (the real tools cli/tests/editable_tools.rs runs inside an editable view), and, as root on
# Linux 6.14+, the kernel's switch for FUSE over io_uring, which the service then serves through.
# macOS: nothing is required to build; a FUSE backend (macFUSE or FUSE-T) is needed to mount,
# and `spfs-fuse doctor` says which one to install.
set -euo pipefail

case "$(uname -s)" in
Linux)
    need=()
    command -v fusermount3 >/dev/null 2>&1 || need+=(fuse3)
    command -v stress-ng >/dev/null 2>&1 || need+=(stress-ng)
    command -v fio >/dev/null 2>&1 || need+=(fio)
    # CPython's own test suite, for the opt-in test of an editable view of /usr
    # (cli/tests/editable_tools.rs): Debian ships it apart from the interpreter.
    if [ "${SPFS_FUSE_CPYTHON_TESTS:-}" = 1 ] &&
        ! /usr/bin/python3 -c 'import test.test_compileall' >/dev/null 2>&1; then
        need+=("libpython$(/usr/bin/python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')-testsuite")
    fi
    if [ "${#need[@]}" -gt 0 ]; then
        sudo_cmd=()
        [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
        "${sudo_cmd[@]}" apt-get update -qq
        DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${need[@]}"
    fi
    # Off by default in the kernel; it changes nothing for a FUSE server that does not ask
    # for it. Without root (or on an older kernel) the service reads /dev/fuse instead.
    uring=/sys/module/fuse/parameters/enable_uring
    if [ -w "$uring" ] && [ "$(cat "$uring")" != Y ]; then
        echo Y >"$uring"
        echo "note: turned on FUSE over io_uring ($uring)" >&2
    fi
    ;;
Darwin)
    if ! [ -e /usr/local/lib/libfuse-t.dylib ] && ! [ -d /Library/Filesystems/macfuse.fs ]; then
        echo "note: no FUSE backend is installed; 'spfs-fuse doctor' says how to get one" >&2
    fi
    ;;
esac
command -v cargo >/dev/null 2>&1 || { echo "error: cargo is missing: install Rust from https://rustup.rs" >&2; exit 1; }
