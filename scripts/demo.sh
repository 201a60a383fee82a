#!/usr/bin/env bash
# demo.sh: the main job on a fresh Debian machine. Brings up a Docker
# engine if none answers (as root), builds nmap-mcp and the pinned scanner
# image (offline if need be), then runs one real sandboxed scan of this
# machine's loopback. Extra arguments go to "nmap-mcp scan".
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/engine.sh
go build -o bin/nmap-mcp ./cmd/nmap-mcp
bin/nmap-mcp image build
if [ $# -eq 0 ]; then
	set -- --top-ports 100 127.0.0.1
fi
exec bin/nmap-mcp scan "$@"
