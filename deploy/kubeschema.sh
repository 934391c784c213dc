#!/usr/bin/env bash
# Make the schema validator of hookd's Kubernetes manifests available: the npm package
# kubernetes-models, which checks objects against JSON schemas generated from the Kubernetes API's
# OpenAPI document (types, formats, required fields), offline. Pinned, installed with npm into a
# cache directory of its own (nothing global). Idempotent, and quick once installed: it only looks.
# deploy/kubeschema.js runs it; TestKubernetesManifests calls both.
#
# Result: the install directory on stdout (give it to kubeschema.js), exit 0.
# Exit 3: no Node.js and npm, and no way to install them; callers may skip, except on CI.
# Exit 1: the install failed.
#
#   bash deploy/kubeschema.sh      # HOOKD_KUBESCHEMA_DIR overrides where it goes
set -euo pipefail

# 4.5: the last line that runs on Node.js 14 and later (5.x asks for 22); its schemas are those of
# Kubernetes 1.33.
readonly MODELS_VERSION=4.5.1

log() { printf 'kubeschema: %s\n' "$*" >&2; }

cache=${XDG_CACHE_HOME:-$HOME/.cache}
dir=${HOOKD_KUBESCHEMA_DIR:-$cache/hookd/kubeschema-kubernetes-models-$MODELS_VERSION}

if [[ -f $dir/.installed && -d $dir/node_modules/kubernetes-models ]]; then
	printf '%s\n' "$dir"
	exit 0
fi

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
	if ! command -v apt-get >/dev/null 2>&1; then
		log "no node and npm, and apt-get is not available; install Node.js 14 or later"
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

# Install next to the final directory, then move it into place: a failed or concurrent install
# never leaves a half-filled one behind.
mkdir -p "$(dirname "$dir")"
if [[ -d $dir && ! -f $dir/.installed ]]; then
	rm -rf "$dir" # without the marker: not a complete install
fi
tmp=$(mktemp -d "$dir.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
log "npm install kubernetes-models@$MODELS_VERSION into $dir"
printf '{"private": true}\n' >"$tmp/package.json"
if ! npm install --prefix "$tmp" --no-audit --no-fund --no-update-notifier --loglevel=error --save-exact \
	"kubernetes-models@$MODELS_VERSION" >&2; then
	log "npm install failed"
	exit 1
fi
touch "$tmp/.installed"
if ! mv -T "$tmp" "$dir" 2>/dev/null; then
	# Another run finished first: use its install.
	[[ -f $dir/.installed ]] || { log "could not move the install into $dir"; exit 1; }
fi
printf '%s\n' "$dir"
