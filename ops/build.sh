#!/usr/bin/env bash
# Builds the release binaries into ${1:-bin}/: logplane, lpctl and the demo server hello, without
# symbol tables and DWARF (-s -w) or build paths (-trimpath), and without containerd's dynamic
# plugin loader (tag no_dynamic_plugins: Go's plugin package makes the linker export every
# symbol and keep what it would otherwise drop). ops/up.sh and the e2e tests build with it.
# Sizes: docs/BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
out=${1:-bin}
mkdir -p "$out"
go build -trimpath -ldflags='-s -w' -tags=no_dynamic_plugins -o "$out/" ./cmd/logplane ./cmd/lpctl
CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$out/hello" ./cmd/hello
