#!/usr/bin/env bash
# Sends fuzzed requests to a logplane API server and counts the answers by status code
# (ops/fuzz/lpfuzz: mutated manifests, patches, query strings, headers), failing on any 500, on
# an error answer that is no Kubernetes Status, on a request left unanswered, or on a crash; then
# checks with `logplane log check` that no fuzzed request put an unreadable event into the log.
#
#   ops/fuzz/run.sh [lpfuzz flags]      e.g. -n 1000000 -duration 45m -workers 16
#
# By default the server runs in-process over a log in a temporary data directory (kept when
# something failed, or with LPFUZZ_KEEP=1). With -kubeconfig it fuzzes that server instead (a
# `logplane up` on 127.0.0.1; its log is then not checked here: run `logplane log check` on its
# data directory). Only loopback addresses are ever sent to.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:/usr/local/go/bin"
work=$(mktemp -d /tmp/lpfuzz.XXXXXX)
keep=${LPFUZZ_KEEP:-0}
cleanup() { if [ "$keep" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi; }
trap cleanup EXIT

go build -o "$work/lpfuzz" ./ops/fuzz/lpfuzz
go build -o "$work/logplane" ./cmd/logplane

external=0
for a in "$@"; do case "$a" in -kubeconfig|--kubeconfig|-kubeconfig=*|--kubeconfig=*) external=1 ;; esac; done

status=0
if [ "$external" = 1 ]; then
	"$work/lpfuzz" -failures "$work/failures.txt" "$@" || status=$?
else
	"$work/lpfuzz" -data-dir "$work/data" -failures "$work/failures.txt" "$@" || status=$?
fi
if [ "$external" = 0 ]; then
	# The log is checked whatever the requests found: no fuzzed request may have put an
	# unreadable event into it.
	echo "--- logplane log check"
	if ! "$work/logplane" log check --data-dir "$work/data"; then
		keep=1
		echo "the log holds what it should not (see above)" >&2
		status=1
	fi
fi
if [ "$status" -ne 0 ]; then
	keep=1
	echo "failed (exit $status): the failed requests are in $work/failures.txt" >&2
fi
exit "$status"
