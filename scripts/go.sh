#!/usr/bin/env bash
# go.sh: print the directory of a Go toolchain new enough for go.mod, on
# standard output (messages go to standard error). demo.sh and test.sh put
# it first on PATH.
#
# The "go" on PATH is used when it is at least go.mod's "go" version.
# Otherwise (none, or Debian 12's golang-go 1.19, which is too old and
# predates Go's own toolchain switching) the toolchain that go.mod names
# ("toolchain" line, else the "go" line) is fetched once from the Go module
# proxy as the module golang.org/toolchain@v0.0.1-goX.Y.Z.OS-ARCH — the
# same zip "GOTOOLCHAIN=goX.Y.Z" makes a newer go download — checked
# against the checksum database (read through the same proxy), and
# unpacked into a cache outside the repository:
#
#   ${NMAP_MCP_GO_CACHE:-${XDG_CACHE_HOME:-~/.cache}/nmap-mcp-go}/goX.Y.Z
#
# Idempotent: later runs find the cache in milliseconds. Nothing
# system-wide changes (as root on Debian it installs curl and unzip when
# missing). Remove the cache folder to remove the toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "go.sh: $*" >&2; }
die() {
	log "$*"
	exit 1
}

# vnum go1.26.8 -> 001026008, for comparing versions as numbers; a
# pre-release (go1.27rc1) counts as its release's .0.
vnum() {
	local v=${1#go} a b c
	v=${v%%[!0-9.]*}
	IFS=. read -r a b c <<<"$v"
	printf '%03d%03d%03d\n' "$((10#${a:-0}))" "$((10#${b:-0}))" "$((10#${c:-0}))"
}

want_min=$(sed -n 's/^go \([0-9][0-9.a-z]*\).*/\1/p' go.mod | head -n1)
[ -n "$want_min" ] || die "go.mod has no go line"
want=$(sed -n 's/^toolchain \(go[0-9][0-9.a-z]*\).*/\1/p' go.mod | head -n1)
if [ -z "$want" ]; then
	want=go$want_min
	# Since Go 1.21 the first release of a line is goX.Y.0.
	case $want in go1.[0-9][0-9]) want=$want.0 ;; esac
fi

# The go on PATH, as it is (GOTOOLCHAIN=local: no switching while asking).
# Asked outside the module, so that go.mod's own line is not in the way.
if have=$(command -v go 2>/dev/null) && ver=$(cd / && GOTOOLCHAIN=local "$have" env GOVERSION 2>/dev/null) &&
	[ "$(vnum "$ver")" -ge "$(vnum "$want_min")" ]; then
	dirname "$have"
	exit 0
fi

cache=${NMAP_MCP_GO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nmap-mcp-go}
root=$cache/$want
if [ -x "$root/bin/go" ] && [ "$(cd / && "$root/bin/go" env GOVERSION 2>/dev/null)" = "$want" ]; then
	echo "$root/bin"
	exit 0
fi

case "$(uname -s)" in
Linux) os=linux ;;
Darwin) os=darwin ;;
*) die "no toolchain for $(uname -s); install Go $want_min or later from https://go.dev/dl/" ;;
esac
case "$(uname -m)" in
x86_64 | amd64) arch=amd64 ;;
aarch64 | arm64) arch=arm64 ;;
armv6l | armv7l) arch=armv6l ;;
i386 | i686) arch=386 ;;
ppc64le) arch=ppc64le ;;
s390x) arch=s390x ;;
riscv64) arch=riscv64 ;;
*) die "no toolchain for $(uname -m); install Go $want_min or later from https://go.dev/dl/" ;;
esac

need=()
command -v curl >/dev/null 2>&1 || need+=(curl ca-certificates)
command -v unzip >/dev/null 2>&1 || need+=(unzip)
if [ ${#need[@]} -gt 0 ]; then
	if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
		die "missing: ${need[*]}; install them (Debian: apt-get install ${need[*]}) or run this script as root"
	fi
	log "installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >/dev/null
	apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# The first proxy URL in GOPROXY (as the go command reads it).
proxy=
IFS=',|' read -r -a proxies <<<"${GOPROXY:-https://proxy.golang.org,direct}"
for p in "${proxies[@]}"; do
	case $p in http://* | https://*)
		proxy=${p%/}
		break
		;;
	esac
done
[ -n "$proxy" ] || die "GOPROXY=${GOPROXY:-} names no proxy to fetch Go $want from; install Go $want_min or later (https://go.dev/dl/)"

mod=golang.org/toolchain@v0.0.1-$want.$os-$arch
if [ -n "${have:-}" ]; then
	log "$have is ${ver:-too old to say} (go.mod needs $want_min): fetching $want into $root"
else
	log "no go on PATH (go.mod needs $want_min): fetching $want into $root"
fi
mkdir -p "$cache"
tmp=$(mktemp -d "$cache/.fetch-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
curl -fsSL --retry 3 -o "$tmp/go.zip" "$proxy/golang.org/toolchain/@v/v0.0.1-$want.$os-$arch.zip" ||
	die "could not fetch $mod from $proxy; install Go $want_min or later (https://go.dev/dl/)"

# The checksum database's hash of the module (dirhash "h1"), read through
# the proxy unless GOSUMDB=off: the SHA-256 of the
# sorted lines "SHA256(file)  path" of every file in the zip.
expect=
if [ "${GOSUMDB:-}" != off ]; then
	expect=$(curl -fsSL --retry 3 "$proxy/sumdb/sum.golang.org/lookup/$mod" |
		awk -v m="${mod%@*}" -v v="${mod#*@}" '$1 == m && $2 == v {print $3; exit}') ||
		die "could not read the checksum of $mod from $proxy/sumdb/sum.golang.org; set GOSUMDB=off to skip the check"
	[ -n "$expect" ] || die "the checksum database has no hash for $mod"
fi
mkdir "$tmp/x"
unzip -q "$tmp/go.zip" -d "$tmp/x"
rm "$tmp/go.zip"
if [ -n "$expect" ]; then
	hex=$(cd "$tmp/x" && find . -type f -printf '%P\n' | LC_ALL=C sort | tr '\n' '\0' |
		xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
	got="h1:$(printf "$(echo "$hex" | sed 's/../\\x&/g')" | base64)"
	[ "$got" = "$expect" ] || die "$mod: hash $got, but the checksum database says $expect; nothing installed"
fi
top=$tmp/x/$mod
# Module zips keep no file modes: make the commands executable again.
find "$top/bin" "$top/pkg/tool" -type f -exec chmod a+x {} +
got=$(cd / && "$top/bin/go" env GOVERSION) || die "the fetched $want does not run"
[ "$got" = "$want" ] || die "the fetched toolchain says $got, not $want"
rm -rf "$root"
mv "$top" "$root"
log "Go $want is in $root/bin"
echo "$root/bin"
