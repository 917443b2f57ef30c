# The report of ci/bench.sh: the table of medians and ratios, and the same as JSON.
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
}