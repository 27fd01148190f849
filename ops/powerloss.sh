#!/usr/bin/env bash
# Simulated power losses in a row: each round runs `logplane up` on ext4 over a loop device, kills
# it with SIGKILL while 16 clients create ConfigMaps through the API, copies the device as the
# disk holds it (O_DIRECT), and starts `logplane log check` and `logplane up` on the copy; every
# acknowledged create must be there (TestPowerLossKeepsAcknowledgedWrites in cmd/logplane, which
# says why this emulates a power loss). Then one round with --durability lazy, which must lose
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
	grep -E '^(=== RUN|--- |\s+--- |PASS|FAIL|ok|\s+powerloss_test.go:(81|90|176))'
