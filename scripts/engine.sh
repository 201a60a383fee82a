#!/usr/bin/env bash
# engine.sh: make sure a Docker engine answers, and that debootstrap is
# there for the offline base image. On Debian as root it installs what is
# missing (docker.io, debootstrap, iproute2) and starts dockerd in the
# background.
# Idempotent: it does nothing when all is in place.
set -euo pipefail

log() { echo "engine.sh: $*" >&2; }

ping_engine() {
	if [ -n "${DOCKER_HOST:-}" ]; then
		docker version >/dev/null 2>&1
	else
		[ -S /var/run/docker.sock ] && curl -fsS --max-time 2 --unix-socket /var/run/docker.sock http://docker/_ping >/dev/null 2>&1
	fi
}

need=()
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v ip >/dev/null 2>&1 || need+=(iproute2) # the fence tests make a veth pair
if ! ping_engine; then
	command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
fi

if [ ${#need[@]} -gt 0 ]; then
	if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
		log "missing: ${need[*]}; install them (Debian: apt-get install ${need[*]}) or run this script as root"
		exit 1
	fi
	log "installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >/dev/null
	apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if ping_engine; then
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	log "no Docker engine answers and this is not root: start one (sudo systemctl start docker) or set DOCKER_HOST"
	exit 1
fi
log "starting dockerd (log: /var/log/nmap-mcp-dockerd.log)"
setsid nohup dockerd >>/var/log/nmap-mcp-dockerd.log 2>&1 </dev/null &
for _ in $(seq 1 120); do
	if ping_engine; then
		log "engine is up"
		exit 0
	fi
	sleep 0.5
done
log "dockerd did not answer within 60 s; see /var/log/nmap-mcp-dockerd.log"
tail -n 20 /var/log/nmap-mcp-dockerd.log >&2 || true
exit 1
