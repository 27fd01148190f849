#!/usr/bin/env bash
# Runs the benchmarks behind the issues' targets, one after the other (they must not share the two
# cores with anything else), keeps the raw `go test -bench` output in ops/bench/results/<date>/,
# and prints a benchstat summary (medians) of each. The figures and commands go to
# docs/BENCHMARKS.md.
#
#   ops/bench/run.sh            every set (about 45 minutes on 2 cores)
#   ops/bench/run.sh log api    only the named sets: log, projections, api, pods, schedule, workloads, dns,
#                               ingress (ops/bench/ingress.sh: needs nginx-light), batch
#
# Needs root and containerd for the pods set (BenchmarkPodStartup), as the tests do.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:/usr/local/go/bin"
out=ops/bench/results/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$out"

run() { # name, package, bench regexp, extra go test flags... (COUNT: runs, default 5)
	local name=$1 pkg=$2 re=$3 count=${COUNT:-5}
	shift 3
	echo "--- $name: go test $pkg -run '^\$' -bench '$re' -count $count $*" | tee -a "$out/commands.txt"
	go test "$pkg" -run '^$' -bench "$re" -count "$count" -timeout 60m "$@" 2>/dev/null | grep -E '^(Benchmark|goos|goarch|pkg|cpu)' | tee -a "$out/$name.txt"
	go run -modfile=tools/go.mod golang.org/x/perf/cmd/benchstat "$out/$name.txt" | tee "$out/$name.stat"
}

sets=("$@")
has() { [ ${#sets[@]} -eq 0 ] || [[ " ${sets[*]} " == *" $1 "* ]]; }

{ uname -a; nproc; grep -m1 'model name' /proc/cpuinfo; go version; uptime; } > "$out/machine.txt"

if has log; then
	run append ./eventlog 'BenchmarkAppend$' -benchtime 5000x
	run readpath ./eventlog 'BenchmarkReadPath' -benchtime 3x
fi
if has projections; then
	run rebuild ./projections 'BenchmarkRebuild' -benchtime 3x
	COUNT=3 run restart ./projections 'BenchmarkRestart' -benchtime 3x
fi
if has api; then
	run api-create ./apiserver 'BenchmarkAPICreate' -benchtime 5000x
	run api-list ./apiserver 'BenchmarkAPIList' -benchtime 20x
	run watch ./apiserver 'BenchmarkWatchFanout' -benchtime 20x
	COUNT=3 run api-restart ./cmd/logplane 'BenchmarkAPIRestart' -benchtime 3x
fi
if has pods; then
	# One case per process, a minute apart, three rounds: on this machine's ext4 without a
	# journal, files created soon after many were deleted cost more, so back-to-back iterations
	# grow dearer (docs/BENCHMARKS.md). The last summary holds all three rounds.
	for round in 1 2 3; do
		for c in one-at-a-time paced-5ps burst; do
			sleep 65
			COUNT=1 run pod-startup ./nodeagent "BenchmarkPodStartup/$c\$" -benchtime 1x
		done
	done
fi
if has schedule; then
	run schedule ./reconcilers/scheduler 'BenchmarkSchedule$' -benchtime 1x
	COUNT=3 run schedule-sim ./nodeagent 'BenchmarkScheduleSim' -benchtime 1x
fi
if has workloads; then
	COUNT=3 run workloads ./reconcilers/sets 'BenchmarkDeploymentScale|BenchmarkRollout|BenchmarkNodeFailure|BenchmarkWorkSharing' -benchtime 1x
fi
if has batch; then
	COUNT=3 run jobs ./reconcilers/job 'BenchmarkJobs' -benchtime 1x
	COUNT=3 run cronjobs ./reconcilers/cronjob 'BenchmarkCronJobs' -benchtime 1x
fi
if has dns; then
	# One process a round: each round measures both servers (logplane's, CoreDNS built from
	# ops/bench/coredns) and the three names within a minute, so that a change in the machine's
	# load falls on all of them. The last summary holds all seven rounds.
	for round in 1 2 3 4 5 6 7; do
		COUNT=1 run dns ./dataplane/clusterdns 'BenchmarkDNS' -benchtime 60000x
	done
fi
if has ingress; then
	ROUNDS=${COUNT:-5} ops/bench/ingress.sh
fi
echo "results in $out"
