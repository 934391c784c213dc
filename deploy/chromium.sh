#!/usr/bin/env bash
# Make a headless-capable Chromium available for hookd's browser tests
# (Asynqmon at /monitoring/). Idempotent, and quick when a browser is already
# installed: it only looks it up.
#
# Result: the browser's absolute path on stdout, exit 0.
# Exit 3: no browser and no way to install one (no apt-get, or not root and
#         no sudo); callers may skip their browser tests.
# Exit 1: apt-get was there but the install failed.
set -euo pipefail

log() { printf 'chromium: %s\n' "$*" >&2; }

find_browser() {
	local b p
	for b in chromium chromium-browser google-chrome-stable google-chrome; do
		if p=$(command -v "$b" 2>/dev/null); then
			printf '%s\n' "$p"
			return 0
		fi
	done
	return 1
}

if find_browser; then
	exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
	log "no chromium found and apt-get is not available; install chromium manually"
	exit 3
fi
SUDO=()
if [[ $(id -u) -ne 0 ]]; then
	if ! command -v sudo >/dev/null 2>&1; then
		log "no chromium found; installing it needs root or sudo"
		exit 3
	fi
	SUDO=(sudo -n)
fi

# Wait for a concurrent apt run instead of failing on its lock.
apt=("${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 -qq)
install() { "${apt[@]}" install -y --no-install-recommends chromium >/dev/null; }

log "installing Debian's chromium"
if ! install; then
	# The package lists may be missing or stale.
	log "apt-get update"
	"${apt[@]}" update || { log "apt-get update failed"; exit 1; }
	install || { log "apt-get install chromium failed"; exit 1; }
fi
find_browser || { log "chromium installed but not found on PATH"; exit 1; }
