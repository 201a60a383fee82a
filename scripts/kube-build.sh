#!/usr/bin/env bash
# kube-build.sh: build the binaries of a single-node Kubernetes cluster
# (kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, etcd)
# from the Go module proxy only, into a cache outside the repository.
# Idempotent: a cache that is complete is left alone. Used by kube.sh.
#
# k8s.io/kubernetes replaces its k8s.io/* staging modules with ./staging
# paths, so "go install k8s.io/kubernetes/...@v1.37.2" is refused; a
# wrapper module that requires it and replaces each staging module with
# its published v0.37.2 builds it. etcd is a three-line main around
# etcdmain.Main.
set -euo pipefail

KUBE_VERSION=${KUBE_VERSION:-v1.37.2}
STAGING_VERSION=v0${KUBE_VERSION#v1}
ETCD_VERSION=${ETCD_VERSION:-v3.7.3}
CACHE=${NMAP_MCP_KUBE_CACHE:-$HOME/.cache/nmap-mcp-kube}
BIN="$CACHE/bin-$KUBE_VERSION-etcd$ETCD_VERSION"
BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubelet etcd)

log() { echo "kube-build.sh: $*" >&2; }

complete() {
	for b in "${BINARIES[@]}"; do [ -x "$BIN/$b" ] || return 1; done
}

if complete; then
	echo "$BIN"
	exit 0
fi

src="$CACHE/src-$KUBE_VERSION"
mkdir -p "$src/etcd" "$BIN"
cd "$src"
log "building Kubernetes $KUBE_VERSION and etcd $ETCD_VERSION into $BIN (cold: ~6 min with 2 cores to itself, up to ~1 h when they are shared; warm Go build cache: ~30 s)"

go mod download "k8s.io/kubernetes@$KUBE_VERSION"
upstream_mod=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
goline=$(grep -m1 '^go ' "$upstream_mod")
{
	echo "module nmap-mcp.local/kubebuild"
	echo
	echo "$goline"
	echo
	echo "require k8s.io/kubernetes $KUBE_VERSION"
	echo
	echo "replace ("
	# Every staging module upstream replaces with ./staging/..., except
	# the samples nothing imports.
	sed -n '/^replace (/,/^)/p' "$upstream_mod" | awk '$2 == "=>" && $3 ~ /^\.\/staging/ {print $1}' |
		grep -v '^k8s.io/sample-' | while read -r m; do
		echo "	$m => $m $STAGING_VERSION"
	done
	echo ")"
} >go.mod
cat >tools.go <<GO
//go:build tools

package kubebuild

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
GO
GOFLAGS=-mod=mod go mod tidy -e >/dev/null 2>&1 || true
# tidy cannot see build-tagged imports without the tag; make sure every
# package's requirements are recorded.
GOFLAGS=-mod=mod go get "k8s.io/kubernetes@$KUBE_VERSION" >/dev/null
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(echo "$KUBE_VERSION" | cut -d. -f2) -X k8s.io/component-base/version.gitTreeState=clean"
start=$(date +%s)
GOFLAGS=-mod=mod go build -trimpath -ldflags "$ldflags" -o "$BIN/" \
	k8s.io/kubernetes/cmd/kube-apiserver \
	k8s.io/kubernetes/cmd/kube-controller-manager \
	k8s.io/kubernetes/cmd/kube-scheduler \
	k8s.io/kubernetes/cmd/kubelet
log "kubernetes binaries built in $(($(date +%s) - start)) s"

cd "$src/etcd"
cat >go.mod <<GO
module nmap-mcp.local/etcd

$goline
GO
cat >main.go <<'GO'
// Command etcd runs etcd's own main.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
GOFLAGS=-mod=mod go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >/dev/null
GOFLAGS=-mod=mod go mod tidy >/dev/null
start=$(date +%s)
go build -trimpath -ldflags "-s -w" -o "$BIN/etcd" .
log "etcd built in $(($(date +%s) - start)) s"

complete
echo "$BIN"
