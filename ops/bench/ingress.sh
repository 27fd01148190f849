#!/usr/bin/env bash
# BenchmarkIngress (issue 14): logplane's Ingress proxy and nginx as the same reverse proxy to the
# same backend, 64 keep-alive connections, a 13-byte response, the same load generator. Each
# round runs proxy=logplane then proxy=nginx in one process, so the two alternate; the raw output
# goes to ops/bench/results/ingress-<date>/ and the medians and ratios are printed at the end.
#
#   ROUNDS=6 N=100000 ops/bench/ingress.sh
#
# Needs Debian's nginx (apt-get install -y nginx-light); without it proxy=nginx is skipped. The
# load average is reported with each run (load1): on a shared machine, compare runs of similar load.
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${ROUNDS:-6}
n=${N:-100000}
out=ops/bench/results/ingress-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$out"
go test -c -o "$out/ingressproxy.test" ./dataplane/ingressproxy
{ uname -a; nproc; grep -m1 'model name' /proc/cpuinfo; go version; nginx -v 2>&1 || true; uptime; } > "$out/machine.txt"
echo "--- go test ./dataplane/ingressproxy -run '^\$' -bench 'BenchmarkIngress\$' -benchtime ${n}x, $rounds rounds" | tee "$out/commands.txt"
bin=$PWD/$out/ingressproxy.test
for r in $(seq "$rounds"); do
	(cd dataplane/ingressproxy && "$bin" -test.run '^$' -test.bench 'BenchmarkIngress$' -test.benchtime "${n}x") |
		grep '^Benchmark' | sed "s/^/round=$r /" | tee -a "$out/ingress.txt"
done
awk '
function median(arr, k,   i, j, t, m, v) {
	m = 0
	for (i in arr) if (index(i, k SUBSEP) == 1) v[++m] = arr[i]
	for (i = 2; i <= m; i++) { t = v[i]; for (j = i - 1; j >= 1 && v[j] > t; j--) v[j + 1] = v[j]; v[j + 1] = t }
	if (m == 0) return "-"
	return (m % 2) ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2
}
{
	split($1, a, "="); round = a[2]
	proxy = $2; sub(/.*proxy=/, "", proxy); sub(/-[0-9]+$/, "", proxy)
	for (i = 4; i < NF; i += 2) val[proxy, $(i + 1), round] = $i
	rounds[round] = 1
}
END {
	printf "%-10s %10s %10s %18s %18s %8s\n", "proxy", "req/s", "p99-ms", "proxy-cpu-us/req", "proxy-sys-us/req", "load1"
	for (p = 1; p <= 2; p++) {
		name = (p == 1) ? "logplane" : "nginx"
		for (k in val) { split(k, f, SUBSEP); if (f[1] == name) m[f[2], f[3]] = val[k] }
		printf "%-10s %10s %10s %18s %18s %8s\n", name, median(m, "req/s"), median(m, "p99-ms"), median(m, "proxy-cpu-us/req"), median(m, "proxy-sys-us/req"), median(m, "load1")
		delete m
	}
	for (r in rounds) if ((("nginx", "req/s", r) in val) && (("logplane", "req/s", r) in val)) {
		rr[r] = val["logplane", "req/s", r] / val["nginx", "req/s", r]
		pr[r] = val["logplane", "p99-ms", r] / val["nginx", "p99-ms", r]
		printf "round %s: req/s ratio %.2f, p99 ratio %.2f (load1 %s)\n", r, rr[r], pr[r], val["logplane", "load1", r]
	}
	for (r in rr) { x["rr", r] = rr[r]; x["pr", r] = pr[r]; x["l", r] = val["logplane", "req/s", r]; x["n", r] = val["nginx", "req/s", r]; x["lp", r] = val["logplane", "p99-ms", r]; x["np", r] = val["nginx", "p99-ms", r] }
	printf "ratio of medians: req/s %.2f (target >= 0.7), p99 %.2f (target <= 2)\n", median(x, "l") / median(x, "n"), median(x, "lp") / median(x, "np")
	printf "median of the rounds'"'"' ratios: req/s %.2f, p99 %.2f\n", median(x, "rr"), median(x, "pr")
}' "$out/ingress.txt" | tee "$out/summary.txt"
