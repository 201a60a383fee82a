#!/usr/bin/env bash
# bench-binary.sh [BINARY...]: the server binary's weight (issue 21, item
# 7): its size, and the resident memory of an idle `serve --http` (VmRSS,
# and RssAnon: what is not pages of the binary or other files).
#
# With no argument it builds ./cmd/nmap-mcp twice, plainly and as release
# binaries are built (-trimpath -ldflags='-s -w'), into a temporary folder;
# otherwise it measures the binaries given (e.g. one built from an older
# commit, to compare). Each server runs with its own empty HOME, config
# and state under a temporary folder, listens on 127.0.0.1 on a port of
# its own choosing, and is measured after IDLE seconds (default 5) without
# a request. The Docker engine should be up (the server connects to it at
# start, as a user's does). Nothing is left behind.
#
# Targets: idle RSS <= 25 MB, anonymous <= 10 MB, stripped binary <= 40 MB.
set -euo pipefail
cd "$(dirname "$0")/.."

IDLE=${IDLE:-5}
tmp=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$tmp"
}
trap cleanup EXIT

bins=("$@")
if [ ${#bins[@]} -eq 0 ]; then
	go build -o "$tmp/nmap-mcp" ./cmd/nmap-mcp
	go build -trimpath -ldflags='-s -w' -o "$tmp/nmap-mcp-stripped" ./cmd/nmap-mcp
	bins=("$tmp/nmap-mcp" "$tmp/nmap-mcp-stripped")
fi

kb() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$2/status"; }

printf '%-40s %10s %10s %10s\n' binary "size MB" "RSS MB" "anon MB"
for b in "${bins[@]}"; do
	home=$(mktemp -d "$tmp/home.XXXX")
	HOME=$home XDG_CONFIG_HOME=$home/.config XDG_STATE_HOME=$home/.state \
		"$b" serve --http 127.0.0.1:0 --log-file "$home/log" </dev/null >/dev/null 2>&1 &
	pid=$!
	pids+=("$pid")
	sleep "$IDLE"
	if ! kill -0 "$pid" 2>/dev/null; then
		echo "bench-binary.sh: $b serve exited; its log:" >&2
		cat "$home/log" >&2 || true
		exit 1
	fi
	rss=$(kb VmRSS "$pid")
	anon=$(kb RssAnon "$pid")
	size=$(stat -c %s "$b")
	kill "$pid"
	wait "$pid" 2>/dev/null || true
	awk -v b="$b" -v s="$size" -v r="$rss" -v a="$anon" \
		'BEGIN {printf "%-40s %10.1f %10.1f %10.1f\n", b, s/1e6, r/1024, a/1024}'
done
