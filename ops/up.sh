#!/usr/bin/env bash
# Brings up a single-machine logplane cluster on the embedded default: installs containerd, runc and
# the CNI plugins from Debian's packages where missing, builds the release binaries of logplane and
# lpctl into bin/ (ops/build.sh), and runs `logplane up` (API server, embedded NATS JetStream log, reconcilers and a node agent for this
# machine, in one process) with its state in ${LOGPLANE_DATA:-/var/lib/logplane}.
# Stop it with Ctrl-C; run this again to bring every object back.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
if [ "$(id -u)" -ne 0 ]; then
	exec sudo -E env "PATH=$PATH" "$0" "$@"
fi
ops/install-deps.sh
ops/build.sh bin
ln -sf lpctl bin/kubectl-lp
data=${LOGPLANE_DATA:-/var/lib/logplane}
# The demo images, built here from busybox-static and ./cmd/hello: the node agent loads them at
# start, so pods run on a machine that reaches no registry.
mkdir -p "$data/images"
bin/lpctl image build busybox -o "$data/images/busybox.tar"
bin/lpctl image build hello --hello-binary bin/hello -o "$data/images/hello.tar"
echo "logplane: starting; then, in another terminal: export KUBECONFIG=$data/kubeconfig; kubectl get nodes"
exec bin/logplane up --data-dir "$data" "$@"
