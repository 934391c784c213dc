#!/usr/bin/env bash
# Make the OpenAPI linters of hookd's contract test available: Redocly CLI
# (`redocly lint`) and Spectral (`spectral lint`, ruleset spectral:oas), at
# pinned versions, installed with npm into a cache directory of their own
# (nothing global). Idempotent, and quick once installed: it only looks.
#
# Result: the directory holding the `redocly` and `spectral` commands on
# stdout, exit 0.
# Exit 3: no Node.js recent enough and no way to install one (Redocly CLI
#         needs Node.js 20.19 or 22.12 and later); callers may skip, except on CI.
# Exit 1: the install failed.
#
#   bash deploy/oaslint.sh      # HOOKD_OASLINT_DIR overrides where they go
set -euo pipefail

readonly REDOCLY_VERSION=2.77.0
readonly SPECTRAL_VERSION=6.16.3

log() { printf 'oaslint: %s\n' "$*" >&2; }

cache=${XDG_CACHE_HOME:-$HOME/.cache}
dir=${HOOKD_OASLINT_DIR:-$cache/hookd/oaslint-redocly-$REDOCLY_VERSION-spectral-$SPECTRAL_VERSION}
bin=$dir/node_modules/.bin

if [[ -f $dir/.installed && -x $bin/redocly && -x $bin/spectral ]]; then
	printf '%s\n' "$bin"
	exit 0
fi

# node_ok: Node.js and npm are on PATH, and Node.js is one Redocly CLI runs on.
node_ok() {
	command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 &&
		node -e 'const [a, b] = process.versions.node.split(".").map(Number);
			process.exit((a === 20 && b >= 19) || (a === 22 && b >= 12) || a > 22 ? 0 : 1)'
}

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
	if ! command -v apt-get >/dev/null 2>&1; then
		log "no node and npm, and apt-get is not available; install Node.js 20.19 or later"
		exit 3
	fi
	SUDO=()
	if [[ $(id -u) -ne 0 ]]; then
		if ! command -v sudo >/dev/null 2>&1; then
			log "no node and npm; installing them needs root or sudo"
			exit 3
		fi
		SUDO=(sudo -n)
	fi
	apt=("${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 -qq)
	install() { "${apt[@]}" install -y --no-install-recommends nodejs npm >/dev/null; }
	log "installing Debian's nodejs and npm"
	if ! install; then
		log "apt-get update"
		"${apt[@]}" update || { log "apt-get update failed"; exit 1; }
		install || { log "apt-get install nodejs npm failed"; exit 1; }
	fi
fi
if ! node_ok; then
	log "Node.js $(node --version 2>/dev/null || echo '(none)') is too old for Redocly CLI $REDOCLY_VERSION; install Node.js 20.19 or later"
	exit 3
fi

# Install next to the final directory, then move it into place: a failed or
# concurrent install never leaves a half-filled one behind.
mkdir -p "$(dirname "$dir")"
if [[ -d $dir && ! -f $dir/.installed ]]; then
	rm -rf "$dir" # without the marker: not a complete install
fi
tmp=$(mktemp -d "$dir.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
log "npm install @redocly/cli@$REDOCLY_VERSION @stoplight/spectral-cli@$SPECTRAL_VERSION into $dir"
printf '{"private": true}\n' >"$tmp/package.json"
if ! npm install --prefix "$tmp" --no-audit --no-fund --no-update-notifier --loglevel=error --save-exact \
	"@redocly/cli@$REDOCLY_VERSION" "@stoplight/spectral-cli@$SPECTRAL_VERSION" >&2; then
	log "npm install failed"
	exit 1
fi
touch "$tmp/.installed"
if ! mv -T "$tmp" "$dir" 2>/dev/null; then
	# Another run finished first: use its install.
	[[ -f $dir/.installed ]] || { log "could not move the install into $dir"; exit 1; }
fi
printf '%s\n' "$bin"
