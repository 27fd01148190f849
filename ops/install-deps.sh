#!/usr/bin/env bash
# Installs, from Debian's packages, what a logplane node and the test suite need beside Go:
# containerd and runc (the container runtime), the CNI plugins (pod networking), busybox-static
# (the test images are built from it), iptables and nftables (service rules), iproute2.
# Safe to run again; it installs only what is missing.
set -euo pipefail

pkgs=(containerd runc containernetworking-plugins busybox-static iptables nftables iproute2 ca-certificates git)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	SUDO=""
	[ "$(id -u)" -eq 0 ] || SUDO=sudo
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
if ! command -v go >/dev/null 2>&1; then
	[ -x /usr/local/go/bin/go ] || { echo "install-deps: Go 1.26 is needed (https://go.dev/dl)" >&2; exit 1; }
fi
