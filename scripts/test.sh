#!/usr/bin/env bash
# test.sh: the whole test suite on a fresh Debian machine. Brings up a
# Docker engine if none answers (as root), gets a Go toolchain if the
# machine's is missing or too old (scripts/go.sh), installs chromium for
# the web view's browser tests, builds the scanner image, brings up the
# real single-node Kubernetes cluster of the Kubernetes runner's tests
# (scripts/kube.sh; its binaries are built once and cached outside the
# repo: ~6 min alone on 2 cores, longer when the cores are shared), checks
# formatting and vet, runs every test with the race detector against the
# real engine and cluster, lists the tests that skipped and why, takes the
# cluster down again, then checks that nothing of ours was left behind.
#
# It ends with one verdict line, "test.sh: PASSED ..." (exit 0) or
# "test.sh: FAILED: <what> ..." (exit 1). On a failure the cluster's
# component logs, its pods' logs, and the pods and events seen during the
# run (Warning events of failing pods in a readable list) are kept in
# ./artifacts/kube/ before the cluster goes; go test's JSON stream is in
# ./artifacts/go-test.json either way.
set -euo pipefail
cd "$(dirname "$0")/.."

STATE=${NMAP_MCP_KUBE_STATE:-/var/lib/nmap-mcp-kube} # as scripts/kube.sh
KUBE_CACHE=${NMAP_MCP_KUBE_CACHE:-$HOME/.cache/nmap-mcp-kube}
PAUSE_IMAGE=nmap-mcp.local/pause:1 # built by scripts/kube.sh up when missing
ART=artifacts
t0=$(date +%s)
step="setup"
reason=
started_cluster=
watchers=()

log() { echo "test.sh: $*" >&2; }
fail() {
	reason=$*
	log "$*"
	exit 1
}
# apt_need WHY CMD... -- PKG...: installs the Debian packages (as root)
# when one of the commands is missing, else fails saying WHY.
apt_need() {
	local why=$1 c missing=
	shift
	while [ "$1" != -- ]; do
		command -v "$1" >/dev/null 2>&1 || missing=1
		shift
	done
	shift
	[ -z "$missing" ] && return 0
	if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
		fail "$why: install $* (Debian: apt-get install $*) or run this script as root"
	fi
	log "installing $*"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null ||
		{ apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null; }
}
# npm_need DIR WHY PKG@VERSION...: installs the npm packages into DIR
# (a cache folder outside the repo) unless each is there at its version.
npm_need() {
	local dir=$1 why=$2 pkg missing=
	shift 2
	for pkg in "$@"; do
		grep -qs "\"version\": \"${pkg##*@}" "$dir/node_modules/${pkg%@*}/package.json" || missing=1
	done
	[ -z "$missing" ] && return 0
	command -v npm >/dev/null 2>&1 || fail "$why needs Node.js and npm (Debian: apt-get install nodejs npm)"
	mkdir -p "$dir"
	log "installing $* into $dir"
	npm install --prefix "$dir" --no-audit --no-fund --silent "$@" >/dev/null
}
elapsed() {
	local s=$(($(date +%s) - t0))
	printf '%dm%02ds' $((s / 60)) $((s % 60))
}

# The test cluster's API, as its admin (the cluster's own CA and keys).
kube_api() { # path [curl options]
	local path=$1 server
	shift
	server=$(sed -n 's/^ *server: *//p' "$STATE/kubeconfig" | head -n1)
	curl -fsS --cacert "$STATE/pki/ca.crt" --cert "$STATE/pki/admin.crt" --key "$STATE/pki/admin.key" "$@" "$server$path"
}

# watch_kube RESOURCE FILE: append every change of RESOURCE (pods,
# events), cluster-wide, to FILE while the tests run — a test deletes its
# namespace, and with it its pods' events, when it ends, failed or not.
watch_kube() {
	(
		c=
		trap '[ -n "$c" ] && kill "$c" 2>/dev/null; exit 0' TERM
		while :; do
			kube_api "/api/v1/$1?watch=1" -N >>"$2" 2>/dev/null &
			c=$!
			wait "$c" || true
			sleep 1
		done
	) &
	watchers+=($!)
}

stop_watchers() {
	local w
	for w in "${watchers[@]}"; do
		kill "$w" 2>/dev/null || true
		wait "$w" 2>/dev/null || true
	done
	watchers=()
}

# keep_kube_artifacts: what a failed run needs to be understood, copied out
# of the cluster's state folder before kube.sh down removes it.
keep_kube_artifacts() {
	local d=$ART/kube
	mkdir -p "$d"
	cp -r "$STATE/log" "$d/logs" 2>/dev/null || true
	[ -d "$STATE/pod-logs" ] && cp -r "$STATE/pod-logs" "$d/pod-logs" 2>/dev/null
	cp "$STATE/env" "$d/env" 2>/dev/null || true
	kube_api "/api/v1/pods?pretty=true" --max-time 20 >"$d/pods-at-end.json" 2>/dev/null || true
	kube_api "/api/v1/events?pretty=true" --max-time 20 >"$d/events-at-end.json" 2>/dev/null || true
	# Readable: every Warning event seen during the run (failed pods,
	# back-offs, scheduling and admission refusals), once each.
	if [ -f "$d/events.jsonl" ]; then
		grep '"type":"Warning"' "$d/events.jsonl" |
			sed -nE 's/.*"involvedObject":\{"kind":"([^"]*)","namespace":"([^"]*)","name":"([^"]*)".*"reason":"([^"]*)","message":"(([^"\\]|\\.)*)".*/\2\/\3 (\1) \4: \5/p' |
			awk '!seen[$0]++' >"$d/warning-events.txt" || true
	fi
	if [ -f "$d/pods.jsonl" ]; then
		grep '"phase":"Failed"' "$d/pods.jsonl" |
			sed -nE 's/.*"metadata":\{"name":"([^"]*)",("generateName":"[^"]*",)?"namespace":"([^"]*)".*/\3\/\1/p' |
			awk '!seen[$0]++' >"$d/failed-pods.txt" || true
	fi
	log "kept the test cluster's logs, pods and events in $d/"
	if [ -s "$d/warning-events.txt" ]; then
		log "Warning events during the run ($(wc -l <"$d/warning-events.txt"), last 20; all in $d/warning-events.txt):"
		tail -n 20 "$d/warning-events.txt" | cut -c1-300 >&2
	fi
	if [ -s "$d/failed-pods.txt" ]; then
		log "pods that failed during the run: $(tr '\n' ' ' <"$d/failed-pods.txt" | cut -c1-500)"
	fi
}

finish() {
	local rc=$?
	set +e
	trap - EXIT
	stop_watchers
	if [ "$rc" -ne 0 ] && [ -z "$reason" ]; then
		reason="$step (exit $rc)"
	fi
	if [ "$rc" -ne 0 ] && [ -d "$STATE/log" ]; then
		keep_kube_artifacts
	fi
	if [ -n "$started_cluster" ]; then
		scripts/kube.sh down
		if ip netns list 2>/dev/null | grep -q '^nmap-mcp-kube\b' || ip link show nmk-host >/dev/null 2>&1; then
			log "LEAK: the test cluster's network namespace or veth remains"
			[ "$rc" -ne 0 ] || reason="the test cluster's network namespace or veth remains"
			rc=1
		fi
		# The pod sandbox ("pause") image kube.sh built on the scanner
		# image: it holds no layer of its own, but it keeps the scanner
		# image it was built on (206 MB) after that image is replaced.
		# kube.sh up builds it again when missing, in about a second.
		if docker image inspect "$PAUSE_IMAGE" >/dev/null 2>&1; then
			local mb
			mb=$(($(docker image inspect -f '{{.Size}}' "$PAUSE_IMAGE") / 1000000))
			if docker image rm "$PAUSE_IMAGE" >/dev/null 2>&1; then
				log "removed the test cluster's pause image $PAUSE_IMAGE (docker images lists it at $mb MB, all layers it shares with the scanner image; scripts/kube.sh up rebuilds it in about a second)"
			fi
		fi
	elif [ -f "$STATE/env" ]; then
		log "the test cluster was up before this run and stays up (scripts/kube.sh down takes it down; its pause image $PAUSE_IMAGE, 206 MB of layers shared with the scanner image, stays with it)"
	fi
	if [ "$rc" -eq 0 ]; then
		rm -rf "$ART/kube"
		echo "test.sh: PASSED in $(elapsed): ${counts:-every test passed}; gofmt and go vet clean; no container, network, veth or temp file left behind$([ -n "$started_cluster" ] && echo "; test cluster taken down")"
	else
		echo "test.sh: FAILED: $reason, after $(elapsed); go test's output in $ART/go-test.json$([ -d "$ART/kube" ] && echo ", the test cluster's logs and events in $ART/kube/")"
	fi
	exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT TERM

step="starting the Docker engine (scripts/engine.sh)"
scripts/engine.sh
step="getting a Go toolchain (scripts/go.sh)"
godir=$(scripts/go.sh)
export PATH="$godir:$PATH"
step="installing chromium (scripts/browser.sh)"
scripts/browser.sh
# The race detector needs cgo, so a C compiler (not on a minimal Debian).
step="installing gcc for go test -race"
apt_need "go test -race needs a C compiler" gcc -- gcc libc6-dev
# xsltproc and xmllint read a sharded scan's merged XML with nmap's own
# stylesheet and DTD (TestShardedXMLReadByNmapTools; the scanner image has
# neither tool, and nmap never runs on the host).
step="installing xsltproc and xmllint"
apt_need "the merged-XML test needs xsltproc and xmllint" xsltproc xmllint -- xsltproc libxml2-utils

# The TypeScript SDK, for the tests that drive the server as a TypeScript
# MCP client does (approval elicitation, tasks, OAuth): installed with the
# machine's Node.js and npm from the npm registry, cached outside the repo.
step="installing the MCP TypeScript SDK (npm)"
export NMAP_MCP_TS_SDK=${NMAP_MCP_TS_SDK:-${XDG_CACHE_HOME:-$HOME/.cache}/nmap-mcp-tssdk}
npm_need "$NMAP_MCP_TS_SDK" "the TypeScript SDK tests" @modelcontextprotocol/sdk@1.32

# The test OpenID Provider (internal/testkit/oidcop) for the OAuth tests:
# oidc-provider run by the machine's Node.js.
step="installing the test OpenID Provider (npm)"
export NMAP_MCP_OIDC_PROVIDER=${NMAP_MCP_OIDC_PROVIDER:-${XDG_CACHE_HOME:-$HOME/.cache}/nmap-mcp-oidcop}
npm_need "$NMAP_MCP_OIDC_PROVIDER" "the OAuth tests" oidc-provider@9.13.3

# The MCP conformance suite (TestConformanceSuite): it needs Node 22
# (fs.globSync), which the npm registry's `node` package ships; the suite
# runs with that binary, not the machine's Node.
step="installing the MCP conformance suite and Node 22 (npm)"
export NMAP_MCP_CONFORMANCE=${NMAP_MCP_CONFORMANCE:-${XDG_CACHE_HOME:-$HOME/.cache}/nmap-mcp-conformance}
npm_need "$NMAP_MCP_CONFORMANCE" "the conformance suite test" @modelcontextprotocol/conformance@0.2.0-alpha.12 node@22.23.3

tmp_before=$(ls -d "${TMPDIR:-/tmp}"/nmap-mcp-* 2>/dev/null | sort || true)
mkdir -p "$ART"
rm -rf "$ART/kube" "$ART/go-test.json" "$ART/go-test.txt"

step="building nmap-mcp"
go build -trimpath -ldflags='-s -w' -o bin/nmap-mcp ./cmd/nmap-mcp
go build -o bin/testsum scripts/testsum.go
step="building the scanner image"
bin/nmap-mcp image build >/dev/null

# The test cluster: taken down at the end if this script brought it up.
step="bringing up the test cluster (scripts/kube.sh up)"
if ! scripts/kube.sh status >/dev/null 2>&1; then
	if ! ls "$KUBE_CACHE"/bin-*/kubelet >/dev/null 2>&1; then
		log "first run on this machine: building the test cluster's Kubernetes and etcd into $KUBE_CACHE first (about 6 min alone on 2 cores, up to an hour when the cores are busy; cached for later runs)"
	fi
	started_cluster=1
	scripts/kube.sh up >/dev/null
fi
# The Kubernetes tests read the cluster from here; under CI they fail
# without it instead of skipping.
set -a
. "$STATE/env"
set +a
mkdir -p "$ART/kube"
watch_kube events "$ART/kube/events.jsonl"
watch_kube pods "$ART/kube/pods.jsonl"

step="gofmt"
unformatted=$(gofmt -l . | grep -v '^bin/' || true)
if [ -n "$unformatted" ]; then
	fail "not gofmt-clean: $(echo "$unformatted" | tr '\n' ' ')"
fi
step="go vet"
go vet ./...
step="go test"
log "go test -race -count=1 ./... (its JSON in $ART/go-test.json)"
if ! go test -race -count=1 -json ./... | tee "$ART/go-test.json" | bin/testsum | tee "$ART/go-test.txt"; then
	counts=$(grep '^tests: ' "$ART/go-test.txt" | tail -n1 | sed 's/^tests: //')
	fail "go test: ${counts:-see above}"
fi
counts=$(grep '^tests: ' "$ART/go-test.txt" | tail -n1 | sed 's/^tests: //')
stop_watchers

step="leak checks"
left=$(curl -fsS --unix-socket /var/run/docker.sock \
	'http://docker/containers/json?all=1&filters=%7B%22label%22%3A%5B%22nmap-mcp.managed%3Dtrue%22%5D%7D')
if [ "$left" != "[]" ]; then
	fail "LEAK: managed containers remain: $(echo "$left" | grep -o '"Names":\["/[^"]*' | sed 's/.*"\///' | tr '\n' ' ')"
fi
nets=$(curl -fsS --unix-socket /var/run/docker.sock \
	'http://docker/networks?filters=%7B%22label%22%3A%5B%22nmap-mcp.test%22%5D%7D')
if [ "$nets" != "[]" ]; then
	fail "LEAK: test networks remain: $(echo "$nets" | grep -o '"Name":"[^"]*' | sed 's/.*"//' | tr '\n' ' ')"
fi
if ip -o link show 2>/dev/null | grep -q ': nmt'; then
	fail "LEAK: test veth pairs remain: $(ip -o link show | grep -o ': nmt[^:@]*' | cut -c3- | tr '\n' ' ')"
fi
tmp_after=$(ls -d "${TMPDIR:-/tmp}"/nmap-mcp-* 2>/dev/null | sort || true)
if [ "$tmp_before" != "$tmp_after" ]; then
	fail "LEAK: temp files left: $(comm -13 <(echo "$tmp_before") <(echo "$tmp_after"))"
fi
step="taking the test cluster down"
# finish (the EXIT trap) takes the cluster down, checks it left nothing,
# and prints the verdict.
