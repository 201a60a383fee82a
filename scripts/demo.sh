#!/usr/bin/env bash
# demo.sh: the main job on a fresh Debian machine. Brings up a Docker
# engine if none answers (as root), gets a Go toolchain if the machine's is
# missing or too old (scripts/go.sh), builds nmap-mcp and the pinned
# scanner image (offline if need be), then runs one real sandboxed scan of
# this machine's loopback: it opens a listener of its own on a free
# 127.0.0.1 port first, and ends by saying whether the scan found that
# port open. The listener stops when the demo ends.
#
# With arguments, they go to "nmap-mcp scan" as they are (no listener):
#   scripts/demo.sh --ports 22,80,443 127.0.0.1
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/engine.sh
godir=$(scripts/go.sh)
export PATH="$godir:$PATH"
go build -trimpath -ldflags='-s -w' -o bin/nmap-mcp ./cmd/nmap-mcp
bin/nmap-mcp image build
if [ $# -gt 0 ]; then
	exec bin/nmap-mcp scan "$@"
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/nmap-mcp-demo-XXXXXX")
listener=
stop() {
	if [ -n "$listener" ]; then
		kill "$listener" 2>/dev/null || true
		wait "$listener" 2>/dev/null || true
	fi
	rm -rf "$tmp"
}
trap stop EXIT
trap 'exit 130' INT TERM

go build -o "$tmp/listen" scripts/demolisten.go
"$tmp/listen" >"$tmp/port" &
listener=$!
port=
for _ in $(seq 1 100); do
	port=$(head -n1 "$tmp/port" 2>/dev/null || true)
	[ -n "$port" ] && break
	kill -0 "$listener" 2>/dev/null || break
	sleep 0.1
done
if [ -z "$port" ]; then
	echo "demo.sh: FAILED: the demo's listener did not start on 127.0.0.1" >&2
	exit 1
fi
echo "demo.sh: listening on 127.0.0.1:$port (this demo's own listener; it stops when the demo ends)"
echo "demo.sh: nmap-mcp scan --ports 22,80,443,$port 127.0.0.1"
echo
if ! bin/nmap-mcp scan --ports "22,80,443,$port" 127.0.0.1 | tee "$tmp/out"; then
	echo "demo.sh: FAILED: nmap-mcp scan failed (its message is above)" >&2
	exit 1
fi
echo
if grep -Eq "^[[:space:]]+$port/tcp[[:space:]]+open" "$tmp/out"; then
	echo "demo.sh: OK: the sandboxed scan found 127.0.0.1:$port open, the port this demo opened (22, 80 and 443 show whatever this machine runs)"
else
	echo "demo.sh: FAILED: the scan did not report 127.0.0.1:$port open, though this demo listens there" >&2
	exit 1
fi
