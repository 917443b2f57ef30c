# Helpers of the benchmarks' reports (awk -f ci/bench/stats.awk -f REPORT): samples are kept
# in count[key] and sample[key, 1..count[key]] by the report, in nanoseconds.

# median(KEY): the median sample of KEY, -1 when there is none.
function median(key,    n, i, j, t, v) {
    n = count[key]
    if (n == 0) return -1
    for (i = 1; i <= n; i++) v[i] = sample[key, i]
    for (i = 2; i <= n; i++) for (j = i; j > 1 && v[j - 1] > v[j]; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
    return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
}
# ms(NS): nanoseconds as milliseconds, to 3 significant digits or so; "-" for none.
function ms(ns) { return ns < 0 ? "-" : sprintf(ns >= 1e8 ? "%.0f" : ns >= 1e7 ? "%.1f" : "%.2f", ns / 1e6) }
# ratio(A, B): A / B as "1.23x"; "-" when either is missing.
function ratio(a, b) { return (a < 0 || b <= 0) ? "-" : sprintf("%.2fx", a / b) }
