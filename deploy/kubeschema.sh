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

# shellcheck source=npmtool.sh
source "$(dirname "$0")/npmtool.sh"

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

ensure_node "Node.js 14 or later"

npm_install_into "$dir" "kubernetes-models@$MODELS_VERSION"
printf '%s\n' "$dir"
