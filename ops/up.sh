#!/usr/bin/env bash
# Brings up a single-machine logplane cluster on the embedded default: installs containerd, runc and
# the CNI plugins from Debian's packages where missing, builds logplane and lpctl into bin/, and runs
# `logplane up` (API server, embedded NATS JetStream log, reconcilers and a node agent for this
# machine, in one process) with its state in ${LOGPLANE_DATA:-/var/lib/logplane}.
# Stop it with Ctrl-C; run this again to bring every object back.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
if [ "$(id -u)" -ne 0 ]; then
	exec sudo -E env "PATH=$PATH" "$0" "$@"
fi
ops/install-deps.sh
mkdir -p bin
go build -o bin/ ./cmd/logplane ./cmd/lpctl
ln -sf lpctl bin/kubectl-lp
data=${LOGPLANE_DATA:-/var/lib/logplane}
echo "logplane: starting; then, in another terminal: export KUBECONFIG=$data/kubeconfig; kubectl get nodes"
exec bin/logplane up --data-dir "$data" "$@"
