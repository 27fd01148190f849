#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what the tests need (root: containerd, CNI
# plugins, ...), checks formatting, vet, protobuf lint and generated code, then runs every test with
# the root-only tests required rather than skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
if [ "$(id -u)" -ne 0 ]; then
	exec sudo -E env "PATH=$PATH" "$0" "$@"
fi

ops/install-deps.sh

echo "--- gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go'))
[ -z "$unformatted" ] || { echo "gofmt would change: $unformatted" >&2; exit 1; }

echo "--- go vet"
go vet ./...

echo "--- buf lint and generated code"
go run -modfile=tools/go.mod github.com/bufbuild/buf/cmd/buf lint
go run -modfile=tools/go.mod github.com/bufbuild/buf/cmd/buf generate
git diff --exit-code -- proto/ || { echo "generated protobuf code is out of date: run buf generate" >&2; exit 1; }

echo "--- go test"
export LOGPLANE_REQUIRE_ROOT_TESTS=1
go test -timeout 25m -p 2 ./...

echo "--- go fuzz (15 s per target)"
for target in FuzzDecodeValidate FuzzPatch FuzzRequest; do
	go test -run '^$' -fuzz "^${target}\$" -fuzztime 15s ./apiserver/
done
