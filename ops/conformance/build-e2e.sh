#!/usr/bin/env bash
# Builds Kubernetes' conformance tooling from the Go module proxy alone, into CACHE/bin:
#   e2e.test  the end-to-end suite (k8s.io/kubernetes/test/e2e, `go test -c`)
#   ginkgo    its runner, at the version the suite requires
#   agnhost   the suite's Swiss-army test image binary (k8s.io/kubernetes/test/images/agnhost), static
#   kubectl   the suite's kubectl, of the same release
# k8s.io/kubernetes is not meant to be a dependency: its go.mod replaces every k8s.io staging module
# with a path inside its own tree. The throwaway module written here (CACHE/mod, outside logplane's
# module) replaces each of them with the published k8s.io/<name> v0.<minor>.<patch> instead.
# Re-running it rebuilds only what changed (Go's build cache); the binaries are stamped with the
# version they were built at, so a new version rebuilds them.
# Usage: build-e2e.sh CACHE [VERSION]     (VERSION defaults to v1.34.4)
set -euo pipefail
cache=${1:?usage: build-e2e.sh CACHE [VERSION]}
version=${2:-v1.34.4}
export PATH="$PATH:/usr/local/go/bin"
export GOFLAGS=-mod=mod
mkdir -p "$cache/mod" "$cache/bin"
cache=$(cd "$cache" && pwd)
stamp="$cache/bin/.version"
# What the binaries were built from: a change of version or of this recipe rebuilds them.
recipe="$version ldflags-2"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$recipe" ] && [ -x "$cache/bin/e2e.test" ] &&
	[ -x "$cache/bin/ginkgo" ] && [ -x "$cache/bin/agnhost" ] && [ -x "$cache/bin/kubectl" ]; then
	echo "conformance: e2e.test, ginkgo, agnhost and kubectl $version already built in $cache/bin"
	exit 0
fi
cd "$cache/mod"
staging="v0.${version#v1.}"
# k8s.io/kubernetes's own go.mod names its staging modules (replace k8s.io/X => ./staging/src/k8s.io/X).
kmod=$(go mod download -json "k8s.io/kubernetes@$version" | sed -n 's/^\s*"GoMod": "\(.*\)",\?$/\1/p')
[ -f "$kmod" ] || { echo "conformance: could not download k8s.io/kubernetes@$version" >&2; exit 1; }
goversion=$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$kmod")
{
	echo "// Throwaway module of ops/conformance/build-e2e.sh: builds k8s.io/kubernetes $version's test binaries."
	echo "module logplane.local/conformance"
	echo
	echo "go $goversion"
	echo
	echo "require k8s.io/kubernetes $version"
	echo
	echo "replace ("
	sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/src/k8s.io/.*$#\t\1 => \1 '"$staging"'#p' "$kmod"
	echo ")"
} >go.mod
# The packages built, imported here so that `go mod tidy` puts everything they need in the build list.
cat >tools.go <<'GO'
//go:build tools

// Package conformance only names what ops/conformance/build-e2e.sh builds.
package conformance

import (
	_ "github.com/onsi/ginkgo/v2/ginkgo"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/test/e2e"
	_ "k8s.io/kubernetes/test/images/agnhost"
)
GO
# The suite's test files import these (test/e2e/e2e_test.go).
sed -n '/^import (/,/^)/p' "$(go env GOMODCACHE)/k8s.io/kubernetes@$version/test/e2e/e2e_test.go" 2>/dev/null |
	grep -o '"k8s.io/kubernetes/[^"]*"' | sort -u | sed 's/^/import _ /' >>tools.go || true
echo "conformance: resolving k8s.io/kubernetes $version's dependencies in $cache/mod"
go mod tidy -e >tidy.log 2>&1 || { cat tidy.log >&2; exit 1; }
# The version stamped in as Kubernetes' own build does (hack/lib/version.sh): kubectl prints it and
# refuses a version it cannot parse.
minor=${version#v1.}
minor=${minor%%.*}
ldflags=""
for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
	ldflags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
	ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
echo "conformance: building ginkgo, kubectl and agnhost"
go build -o "$cache/bin/ginkgo" github.com/onsi/ginkgo/v2/ginkgo
go build -ldflags "$ldflags" -o "$cache/bin/kubectl" k8s.io/kubernetes/cmd/kubectl
CGO_ENABLED=0 go build -ldflags '-s -w' -o "$cache/bin/agnhost" k8s.io/kubernetes/test/images/agnhost
echo "conformance: building e2e.test (several minutes on 2 cores)"
go test -c -ldflags "$ldflags" -o "$cache/bin/e2e.test" k8s.io/kubernetes/test/e2e
echo "$recipe" >"$stamp"
echo "conformance: built $cache/bin/{e2e.test,ginkgo,agnhost,kubectl} ($version)"
