#!/usr/bin/env bash
# Measures what one change in nats-server would do for a rebuild from the log. nats-server
# (2.15.2, the newest release) inflates an S2-compressed message block with io.ReadAll, which
# grows its buffer chunk by chunk, copies it into a right-sized one and then once more to append
# the checksum; the patch next to this script inflates the block once, into a buffer of the size
# the block's header records, taken from the store's own pool. The script builds the same
# benchmarks against the released server and against a patched copy of it (through a temporary
# go.mod with a replace; nothing in the repository changes) and runs them alternately, then
# prints benchstat's comparison.
#
#   ops/bench/upstream-decompress.sh        3 rounds (about 6 minutes on 2 cores)
#   ROUNDS=5 ops/bench/upstream-decompress.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:/usr/local/go/bin"
rounds=${ROUNDS:-3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

src=$(go list -m -f '{{.Dir}}' github.com/nats-io/nats-server/v2)
cp -r "$src" "$tmp/nats-server"
chmod -R u+w "$tmp/nats-server"
patch -s -d "$tmp/nats-server" -p1 < ops/bench/nats-server-s2-decompress.patch
cp go.mod "$tmp/patched.mod"
cp go.sum "$tmp/patched.sum"
echo "replace github.com/nats-io/nats-server/v2 => $tmp/nats-server" >> "$tmp/patched.mod"

out=ops/bench/results/$(date -u +%Y%m%dT%H%M%SZ)-upstream-decompress
mkdir -p "$out"
{ uname -a; nproc; grep -m1 'model name' /proc/cpuinfo; go version; uptime; } > "$out/machine.txt"
for pkg in eventlog projections; do
	go test -c -o "$tmp/$pkg.released" "./$pkg"
	go test -c -modfile="$tmp/patched.mod" -o "$tmp/$pkg.patched" "./$pkg"
done
for _ in $(seq "$rounds"); do
	for server in released patched; do
		"$tmp/eventlog.$server" -test.run '^$' -test.bench 'BenchmarkReadPath/compressed=true/read=(transport|replay)' -test.benchtime 3x 2>/dev/null |
			grep -E '^(Benchmark|goos|goarch|pkg|cpu)' >> "$out/$server.txt"
		"$tmp/projections.$server" -test.run '^$' -test.bench 'BenchmarkRebuild/blocks=s2' -test.benchtime 3x 2>/dev/null |
			grep -E '^(Benchmark|goos|goarch|pkg|cpu)' >> "$out/$server.txt"
	done
done
cd "$out"
go run -modfile="$OLDPWD/tools/go.mod" golang.org/x/perf/cmd/benchstat released.txt patched.txt | tee benchstat.txt
