#!/usr/bin/env bash
# Runs Kubernetes' conformance suite (the [Conformance] tests of k8s.io/kubernetes test/e2e) against a
# logplane cluster of its own, and writes a summary by SIG and the JUnit reports to a results
# directory. See docs/conformance.md.
#
#   1. builds e2e.test, ginkgo, kubectl and agnhost of k8s.io/kubernetes VERSION from the Go module
#      proxy (build-e2e.sh, in a throwaway module under the cache), and logplane from this checkout;
#   2. builds stand-ins of the images the suite asks for (agnhost, busybox, pause, nginx, httpd, ...)
#      under their exact names, for a machine that reaches no registry;
#   3. brings up `logplane up` on a temporary data directory with its own containerd, a bridge and a
#      /24 of its own, free loopback ports, and an iptables rule that keeps the pods' traffic on the
#      bridge (only loopback and the cluster's own network namespaces see traffic);
#   4. runs the [Conformance] tests in parallel (ginkgo --nodes), then the [Serial] ones alone,
#      never the [Disruptive] or [Flaky] ones, each pass bounded by a timeout;
#   5. writes results/summary.md (passed/failed/skipped by SIG, each failure's first line), the
#      JUnit and JSON reports, the ginkgo output and logplane's log; then removes the cluster.
#
# Usage: ops/conformance/run.sh [flags]
#   --cache DIR      build cache (default ${XDG_CACHE_HOME:-~/.cache}/logplane-conformance); re-runs reuse it
#   --results DIR    where results go (default CACHE/results/<date>)
#   --version V      k8s.io/kubernetes version (default v1.34.4; logplane reports v1.34)
#   --nodes N        ginkgo parallel processes for the first pass (default 2)
#   --timeout D      bound of the parallel pass (default 3h); --serial-timeout D for the serial one (90m)
#   --focus RE       tests to run (default \[Conformance\])
#   --skip RE        tests not to run (default \[Disruptive\]|\[Flaky\]; [Serial] go to the second pass)
#   --no-serial      skip the serial pass
#   --keep-namespaces  keep failed tests' namespaces (--delete-namespace-on-failure=false)
#   --dry-run        build, then list the tests each pass would run (no cluster)
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
export PATH="$PATH:/usr/local/go/bin"

cache=${XDG_CACHE_HOME:-$HOME/.cache}/logplane-conformance
results=""
version=v1.34.4
nodes=2
timeout=3h
serial_timeout=90m
focus='\[Conformance\]'
skip='\[Disruptive\]|\[Flaky\]'
serial=1
dry_run=0
keep_ns=0
while [ $# -gt 0 ]; do
	case $1 in
	--cache) cache=$2; shift ;;
	--results) results=$2; shift ;;
	--version) version=$2; shift ;;
	--nodes) nodes=$2; shift ;;
	--timeout) timeout=$2; shift ;;
	--serial-timeout) serial_timeout=$2; shift ;;
	--focus) focus=$2; shift ;;
	--skip) skip=$2; shift ;;
	--no-serial) serial=0 ;;
	--keep-namespaces) keep_ns=1 ;;
	--dry-run) dry_run=1 ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "run.sh: unknown flag $1 (see --help)" >&2; exit 2 ;;
	esac
	shift
done
if [ "$dry_run" = 0 ] && [ "$(id -u)" -ne 0 ]; then
	exec sudo -E env "PATH=$PATH" "$0" "$@"
fi
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
log() { echo "conformance: $*" >&2; }

# 1. Binaries.
"$repo/ops/conformance/build-e2e.sh" "$cache" "$version"
kbin="$cache/bin"
bin="$cache/logplane-bin"
mkdir -p "$bin"
log "building logplane, lpctl and lpconformance from $repo"
go build -o "$bin/" ./cmd/logplane ./cmd/lpctl ./ops/conformance/lpconformance

# The suite's flags, for both passes.
suite_flags=(--provider=skeleton --kubectl-path="$kbin/kubectl" --disable-log-dump --non-blocking-taints=node-role.kubernetes.io/control-plane)
parallel_skip="\[Serial\]|$skip"
# The names of the tests each pass runs, as ginkgo's --focus and --skip select them.
list=$("$kbin/e2e.test" --list-tests "${suite_flags[@]}" | sed -E "s/^ *[^ ]+:[0-9]+: //" | grep -E -- "$focus" || true)
par=$(grep -Ev -- "$parallel_skip" <<<"$list" || true)
ser=$(grep -E -- '\[Serial\]' <<<"$list" | grep -Ev -- "$skip" || true)
if [ "$dry_run" = 1 ]; then
	echo "== parallel pass ($(grep -c . <<<"$par") tests, ginkgo --nodes=$nodes)"
	echo "$par"
	echo "== serial pass ($(grep -c . <<<"$ser") tests)"
	echo "$ser"
	echo "== by SIG (parallel + serial)"
	printf '%s\n%s\n' "$par" "$ser" | grep -o '\[sig-[a-z0-9-]*\]' | sort | uniq -c
	exit 0
fi

[ -n "$results" ] || results="$cache/results/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$results"
results=$(cd "$results" && pwd)
log "results in $results"

# 2.-3. The cluster: a data directory, a /24 (the same lock files as the tests use), a bridge.
data=$(mktemp -d "${TMPDIR:-/tmp}/lpconf-XXXXXX")
lockdir="${TMPDIR:-/tmp}/logplane-test-subnets"
mkdir -p "$lockdir"
chmod 700 "$lockdir"
lock="" subnet=""
for i in $(seq 0 149); do
	n=$((100 + (RANDOM + i) % 150))
	if (set -o noclobber; : >"$lockdir/$n") 2>/dev/null; then
		lock="$lockdir/$n" subnet="10.244.$n.0/24"
		break
	fi
done
[ -n "$lock" ] || { log "no free /24 in 10.244.100-249.0 (see $lockdir)"; exit 1; }
bridge="lpc$(head -c4 /dev/urandom | od -An -tx1 | tr -d ' \n')"
node=lpconf-node
rule=(FORWARD -i "$bridge" ! -o "$bridge" -j DROP -m comment --comment "logplane conformance $bridge")
up_pid="" touch_pid="" ginkgo_pid=""

cleanup() {
	set +e
	if [ -n "$ginkgo_pid" ] && kill -0 "$ginkgo_pid" 2>/dev/null; then
		# Interrupted: ginkgo reports what ran; its test processes are killed if it lingers.
		local children
		children=$(ps -o pid= --ppid "$ginkgo_pid")
		kill -INT "$ginkgo_pid"
		for _ in $(seq 30); do kill -0 "$ginkgo_pid" 2>/dev/null || break; sleep 1; done
		# shellcheck disable=SC2086 # children is a list of PIDs
		kill -KILL $children "$ginkgo_pid" 2>/dev/null
	fi
	log "removing the cluster"
	[ -n "$touch_pid" ] && kill "$touch_pid" 2>/dev/null
	if [ -n "$up_pid" ] && kill -0 "$up_pid" 2>/dev/null; then
		kill -TERM "$up_pid"
		for _ in $(seq 60); do kill -0 "$up_pid" 2>/dev/null || break; sleep 0.5; done
		kill -KILL "$up_pid" 2>/dev/null
		wait "$up_pid" 2>/dev/null
	fi
	cp "$data/logplane.log" "$results/" 2>/dev/null
	cp "$data/containerd/containerd.log" "$results/" 2>/dev/null
	# The pods logplane leaves running for adoption, the containerd namespace, then whatever
	# still runs from the data directory (shims, a daemon), mounts, bridge, rule, lock.
	"$bin/lpconformance" teardown -data-dir "$data" -bridge "$bridge" -pod-cidr "$subnet"
	grep -lsF -- "$data/" /proc/[0-9]*/cmdline | cut -d/ -f3 | while read -r pid; do
		[ "$pid" != $$ ] && kill -KILL "$pid" 2>/dev/null
	done
	grep -F " $data/" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l
	ip link show "$bridge" >/dev/null 2>&1 && ip link del "$bridge"
	iptables -D "${rule[@]}" 2>/dev/null
	rm -rf "$data"
	rm -f "$lock"
	log "results in $results"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
iptables -I "${rule[@]}"
# A run may outlast the two hours after which tests take a subnet lock for stale.
(while sleep 600; do touch "$lock"; done) &
touch_pid=$!

log "building the suite's images"
mkdir -p "$data/images"
mapfile -t images < <("$kbin/e2e.test" --list-images)
src="$(go env GOMODCACHE)/k8s.io/kubernetes@$version/test/images"
"$bin/lpconformance" images -agnhost "$kbin/agnhost" -agnhost-src "$src" -o "$cache/images-$version" "${images[@]}" | tee "$results/images.txt"
ln "$cache/images-$version"/*.tar "$data/images/" 2>/dev/null || cp "$cache/images-$version"/*.tar "$data/images/"

log "starting logplane up in $data (bridge $bridge, pods $subnet)"
# --resolv-conf "": pods get nameserver 127.0.0.1 rather than this machine's resolvers, so that
# no pod (hostNetwork ones included, which the bridge rule does not cover) asks anything off it.
"$bin/logplane" up --data-dir "$data" --listen 127.0.0.1:0 --nats-listen "" \
	--node-name "$node" --node-ip 127.0.0.1 --stream-listen 127.0.0.1:0 --resolv-conf "" \
	--bridge "$bridge" --pod-cidr "$subnet" --containerd own >"$data/logplane.log" 2>&1 &
up_pid=$!
kc="$data/kubeconfig"
kubectl=("$kbin/kubectl" --kubeconfig "$kc")
for _ in $(seq 240); do
	kill -0 "$up_pid" 2>/dev/null || { tail -40 "$data/logplane.log" >&2; log "logplane up exited"; exit 1; }
	[ -f "$kc" ] && "${kubectl[@]}" get node "$node" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null | grep -q True && break
	sleep 0.5
done
"${kubectl[@]}" get nodes -o wide | tee "$results/nodes.txt"
# Every test waits for the kube-root-ca.crt ConfigMap that the root CA publisher
# (reconcilers/rootcacert) puts in each namespace: say so at once if it does not.
for _ in $(seq 60); do
	"${kubectl[@]}" -n default get configmap kube-root-ca.crt >/dev/null 2>&1 && break
	sleep 0.5
done
"${kubectl[@]}" -n default get configmap kube-root-ca.crt >/dev/null 2>&1 ||
	log "warning: no kube-root-ca.crt in namespace default after 30 s: every test will fail in its setup"

# 4. The passes.
if [ "$keep_ns" = 1 ]; then suite_flags+=(--delete-namespace-on-failure=false); fi
run_pass() { # name timeout nodes focus skip tests
	local name=$1 t=$2 n=$3 f=$4 s=$5
	mkdir -p "$results/$name"
	echo "$6" >"$results/$name/tests.txt"
	log "pass $name: ginkgo --nodes=$n --timeout=$t --focus='$f' --skip='$s' (output in $results/$name/ginkgo.log)"
	local rc=0
	# In the background, so that a signal to this script removes the cluster at once (cleanup
	# stops ginkgo and its test processes).
	(cd "$results/$name" && exec "$kbin/ginkgo" --nodes="$n" --timeout="$t" --focus="$f" --skip="$s" \
		--no-color --silence-skips --poll-progress-after=10m \
		--junit-report=junit.xml --json-report=report.json --output-dir="$results/$name" \
		"$kbin/e2e.test" -- "${suite_flags[@]}" --kubeconfig="$kc" --report-dir="$results/$name" \
		>"$results/$name/ginkgo.log" 2>&1) &
	ginkgo_pid=$!
	wait "$ginkgo_pid" || rc=$?
	ginkgo_pid=""
	log "pass $name: ginkgo exited $rc; $(grep -aE '^(Ran [0-9]+ of|Ginkgo ran|Test Suite|Ginkgo timed out)' "$results/$name/ginkgo.log" | tr '\n' ' ')"
}
passes=(parallel)
run_pass parallel "$timeout" "$nodes" "$focus" "$parallel_skip" "$par"
if [ "$serial" = 1 ]; then
	passes+=(serial)
	run_pass serial "$serial_timeout" 1 "($focus).*\[Serial\]|\[Serial\].*($focus)" "$skip" "$ser"
fi

# 5. The summary: from ginkgo's JUnit report, or, when a suite timeout left a test process that
# would not stop and ginkgo wrote none, from its log.
args=()
for p in "${passes[@]}"; do
	if grep -q "<testcase" "$results/$p/junit.xml" 2>/dev/null; then
		args+=("$results/$p/junit.xml")
	else
		args=(-log "$results/$p/ginkgo.log" -tests "$results/$p/tests.txt" "${args[@]}")
	fi
done
"$bin/lpconformance" summary -match "$focus" -o "$results/summary.md" "${args[@]}"
sed -n '1,/^## Failed/p' "$results/summary.md"
