#!/usr/bin/env bash
# test.sh: the whole test suite on a fresh Debian machine. Brings up a
# Docker engine if none answers (as root), installs chromium for the web
# view's browser tests, builds the scanner image, brings up the real
# single-node Kubernetes cluster of the Kubernetes runner's tests
# (scripts/kube.sh; its binaries are built once, ~20 min, and cached
# outside the repo), checks formatting and vet, runs every test with the
# race detector against the real engine and cluster, takes the cluster
# down again, then checks that nothing of ours was left behind.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/engine.sh
scripts/browser.sh

tmp_before=$(ls -d "${TMPDIR:-/tmp}"/nmap-mcp-* 2>/dev/null | sort || true)

go build -o bin/nmap-mcp ./cmd/nmap-mcp
bin/nmap-mcp image build

# The test cluster: taken down at the end if this script brought it up.
if ! scripts/kube.sh status >/dev/null 2>&1; then
	trap 'scripts/kube.sh down' EXIT
	scripts/kube.sh up >/dev/null
fi
# The Kubernetes tests read the cluster from here; under CI they fail
# without it instead of skipping.
set -a
. /var/lib/nmap-mcp-kube/env
set +a

unformatted=$(gofmt -l . | grep -v '^bin/' || true)
if [ -n "$unformatted" ]; then
	echo "test.sh: not gofmt-clean:" >&2
	echo "$unformatted" >&2
	exit 1
fi
go vet ./...
go test -race -count=1 ./...

left=$(curl -fsS --unix-socket /var/run/docker.sock \
	'http://docker/containers/json?all=1&filters=%7B%22label%22%3A%5B%22nmap-mcp.managed%3Dtrue%22%5D%7D')
if [ "$left" != "[]" ]; then
	echo "test.sh: LEAK: managed containers remain: $left" >&2
	exit 1
fi
nets=$(curl -fsS --unix-socket /var/run/docker.sock \
	'http://docker/networks?filters=%7B%22label%22%3A%5B%22nmap-mcp.test%22%5D%7D')
if [ "$nets" != "[]" ]; then
	echo "test.sh: LEAK: test networks remain: $nets" >&2
	exit 1
fi
if ip -o link show 2>/dev/null | grep -q ': nmt'; then
	echo "test.sh: LEAK: test veth pairs remain: $(ip -o link show | grep ': nmt')" >&2
	exit 1
fi
if [ -n "$(trap -p EXIT)" ]; then
	trap - EXIT
	scripts/kube.sh down
	if ip netns list 2>/dev/null | grep -q '^nmap-mcp-kube\b' || ip link show nmk-host >/dev/null 2>&1; then
		echo "test.sh: LEAK: the test cluster's network namespace or veth remains" >&2
		exit 1
	fi
fi
tmp_after=$(ls -d "${TMPDIR:-/tmp}"/nmap-mcp-* 2>/dev/null | sort || true)
if [ "$tmp_before" != "$tmp_after" ]; then
	echo "test.sh: LEAK: temp files left: $(comm -13 <(echo "$tmp_before") <(echo "$tmp_after"))" >&2
	exit 1
fi
echo "test.sh: all tests passed; no container, network, veth or temp file left behind"
