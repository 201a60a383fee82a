#!/usr/bin/env bash
# browser.sh: make sure Debian's chromium is there for the web view's
# browser tests (internal/web). On Debian as root it installs it when
# missing. Idempotent.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
	exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
	echo "browser.sh: chromium is missing; install it (Debian: apt-get install chromium) or run this script as root" >&2
	exit 1
fi
echo "browser.sh: installing chromium" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends chromium >/dev/null
