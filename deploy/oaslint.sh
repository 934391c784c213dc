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

# shellcheck source=npmtool.sh
source "$(dirname "$0")/npmtool.sh"

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

ensure_node "Node.js 20.19 or later"
if ! node_ok; then
	log "Node.js $(node --version 2>/dev/null || echo '(none)') is too old for Redocly CLI $REDOCLY_VERSION; install Node.js 20.19 or later"
	exit 3
fi

npm_install_into "$dir" "@redocly/cli@$REDOCLY_VERSION" "@stoplight/spectral-cli@$SPECTRAL_VERSION"
printf '%s\n' "$bin"
