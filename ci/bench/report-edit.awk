# The report of ci/bench-edit.sh: the write workloads' table and the reads, editable against
# read-only.
$3 != "warmup" {
    key = $1 SUBSEP $2 SUBSEP $3
    count[key]++
    sample[key, count[key]] = $4
    reqs[key] = $5
}
END {
    printf "\nmedian ms of %d runs, each on a fresh mount with an empty upper; %s files, %s MiB; %s\n\n", reps, files, big_mib, machine
    printf "| workload | spfs-fuse | fuse-overlayfs | kernel overlay | plain dir | vs fuse-overlayfs | vs plain dir | spfs-fuse requests |\n"
    printf "|---|---:|---:|---:|---:|---:|---:|---:|\n"
    split("untar write append rmtree", wl, " ")
    for (w = 1; w <= 4; w++) {
        a = median("spfs-fuse" SUBSEP wl[w] SUBSEP "cold")
        if (a < 0) continue
        b = median("fuse-overlayfs" SUBSEP wl[w] SUBSEP "cold"); c = median("overlay" SUBSEP wl[w] SUBSEP "cold"); d = median("plain" SUBSEP wl[w] SUBSEP "cold")
        printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", wl[w], ms(a), ms(b), ms(c), ms(d), ratio(a, b), ratio(a, d), reqs["spfs-fuse" SUBSEP wl[w] SUBSEP "cold"]
    }
    a = median("spfs-fuse" SUBSEP "write" SUBSEP "cold"); d = median("plain" SUBSEP "write" SUBSEP "cold")
    if (a > 0 && d > 0) printf "\nbig write: spfs-fuse %.0f MiB/s, plain dir %.0f MiB/s (%.0f%%)\n", big_mib * 1e9 / a, big_mib * 1e9 / d, 100 * d / a
    split("lstat read", rl, " "); split("cold warm", tl, " ")
    first = 1
    for (w = 1; w <= 2; w++) for (t = 1; t <= 2; t++) {
        a = median("spfs-fuse" SUBSEP rl[w] SUBSEP tl[t]); b = median("spfs-fuse-ro" SUBSEP rl[w] SUBSEP tl[t])
        if (a < 0) continue
        if (first) { printf "\nreads, editable runtime with an empty scratch against a read-only one:\n\n| workload | editable | read-only | ratio |\n|---|---:|---:|---:|\n"; first = 0 }
        printf "| %s %s | %s | %s | %s |\n", rl[w], tl[t], ms(a), ms(b), ratio(a, b)
    }
}