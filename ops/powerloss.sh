#!/usr/bin/env bash
# Simulated power losses in a row (TestPowerLossKeepsAcknowledgedWrites in cmd/logplane, which
# says why this emulates a power loss): `logplane up` on ext4 over a loop device, killed with
# SIGKILL while 16 clients create ConfigMaps through the API; the device is copied as the disk
# holds it (O_DIRECT); the next round mounts the copy, runs `logplane log check` and `logplane
# up` on it, finds every create acknowledged so far, writes on and is killed in turn. A last
# restart checks the last copy. Then one power loss with --durability lazy, which must lose
# acknowledged creates.
#
#   ops/powerloss.sh [ROUNDS]     (default 20; needs root, losetup and mkfs.ext4)
#
# Loop devices, mounts and image files are removed by the test, also when it fails.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-20}"
export LOGPLANE_POWERLOSS_ROUNDS="$rounds" LOGPLANE_REQUIRE_ROOT_TESTS=1
go test -count=1 -timeout 60m -run '^TestPowerLossKeepsAcknowledgedWrites$' -v ./cmd/logplane 2>&1 |
	grep -E '^(--- |\s+--- |PASS|FAIL|ok)|group commit|lazy:|lost|missing|log check'
