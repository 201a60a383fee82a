#!/usr/bin/env bash
# Trace the system calls that nmap, the launcher and the fencer really make
# inside the scanner image, to build or check the seccomp allowlist in
# sandbox/seccomp.go. Run by hand (it is not part of the tests): it needs
# the engine (scripts/engine.sh) and the image (nmap-mcp image build).
#
# Every scan targets only containers this script starts on an --internal
# network it creates, or the container's own loopback; everything it makes
# is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
image=$(go run ./cmd/nmap-mcp image build 2>/dev/null | awk '/^tag:/{print $2}')
[ -n "$image" ] || { echo "no scanner image; run: go run ./cmd/nmap-mcp image build" >&2; exit 1; }
work=$(mktemp -d)
net=nmap-mcp-trace-$$
cleanup() {
  docker rm -f "$net-target" "$net-tracer" >/dev/null 2>&1 || true
  docker network rm "$net" >/dev/null 2>&1 || true
  docker rmi -f "$net-img" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
CGO_ENABLED=0 go build -o "$work/target" ./internal/testkit/target
printf 'FROM %s\nUSER 0\nRUN apt-get update && apt-get install -y --no-install-recommends strace\n' "$image" |
  docker build -q -t "$net-img" - >/dev/null
docker network create --internal --ipv6 --subnet 172.31.250.0/24 --subnet fd00:6e6d:6170::/64 "$net" >/dev/null
docker run -d --name "$net-target" --network "$net" --user 0 --cap-drop ALL --cap-add NET_RAW \
  --sysctl net.ipv6.conf.all.disable_ipv6=0 -v "$work/target:/target:ro" --entrypoint /target "$image" -tcp 22,80 >/dev/null
sleep 1
t4=$(docker inspect -f "{{(index .NetworkSettings.Networks \"$net\").IPAddress}}" "$net-target")
t6=$(docker inspect -f "{{(index .NetworkSettings.Networks \"$net\").GlobalIPv6Address}}" "$net-target")
launcher='"$0" "$@"; s=$?; printf "\n\036nmap-mcp-exit=%d\n" "$s"; exit "$s"'
run() { # run ARGS... : one traced nmap through the launcher
  docker run --rm --network "$net" --user 0 --cap-drop ALL --cap-add NET_RAW --cap-add NET_ADMIN --cap-add SYS_PTRACE \
    --sysctl net.ipv6.conf.all.disable_ipv6=0 --security-opt seccomp=unconfined -v "$work:/out" --entrypoint strace "$net-img" \
    -f -qq -o "/out/trace.$RANDOM" /bin/sh -c "$launcher" /usr/bin/nmap -oX - --stats-every 2s "$@" >/dev/null 2>&1 || true
}
run -sT -p 22,80,81 -- "$t4" 127.0.0.1
run -sS -p 22,80,81 -- "$t4"
run -sU -p 53,5353 -- "$t4"
run -sn -- "$t4"
run -O -p 22,80,81 -- "$t4"
run -sV -p 22,80 --script default,safe -- "$t4"
run -sT --traceroute -p 80 -- "$t4"
run -6 -sT -p 22,80 -- "$t6" ::1
run -6 -sS -p 22,80 -- "$t6"
run -6 -sn -- "$t6"
# The NSE script index (policy.IndexScript) with no network.
docker run --rm --network none --user 0 --cap-drop ALL --cap-add SYS_PTRACE --security-opt seccomp=unconfined \
  -v "$work:/out" --entrypoint strace "$net-img" -f -qq -o /out/trace.index /bin/sh -c \
  'cd /usr/share/nmap/scripts && cat script.db && grep -l -e newtargets -- *.nse; grep -l -e pcap_open -- *.nse; exit 0' >/dev/null 2>&1 || true
# The fencer: read a ruleset on stdin, check it, then sleep.
printf 'table inet t {\n\tchain o {\n\t\ttype filter hook output priority 0; policy accept;\n\t}\n}\n' |
  docker run -i --rm --network "$net" --user 0 --cap-drop ALL --cap-add NET_ADMIN --cap-add SYS_PTRACE \
    --security-opt seccomp=unconfined -v "$work:/out" --entrypoint strace "$net-img" -f -qq -o /out/trace.fencer \
    /bin/sh -c 'ls /sys/class/net | tr "\n" " "; nft -f - && nft list table inet t >/dev/null && timeout 1 sleep 5' >/dev/null 2>&1 || true
cat "$work"/trace.* | sed -n 's/^[0-9]* *\([a-z_0-9]*\)(.*/\1/p' | sort -u
