#!/usr/bin/env bash
# Re-fetch the third-party web assets hookd embeds (Stoplight Elements for
# /docs, htmx for /portal/) from npm at the versions their ASSETS manifests
# pin, and check them: the package tarball against the manifest's npm
# integrity (sha512, the registry's dist.integrity), then every committed
# file against the package's and against the manifest's sha384. `go build`
# never needs it: the files are committed.
#
#   bash deploy/webassets.sh           # check: exit 1 when a file differs
#   bash deploy/webassets.sh --update  # write the files and their sha384
#                                      # (after changing a "package" line)
#
# Exit 3: no npm and no way to install it.
set -euo pipefail

# shellcheck source=npmtool.sh
source "$(dirname "$0")/npmtool.sh"

log() { printf 'webassets: %s\n' "$*" >&2; }

root=$(cd "$(dirname "$0")/.." && pwd)
manifests=("$root/app/docs/assets/ASSETS" "$root/app/portal/assets/ASSETS")
update=false
if [[ ${1:-} == --update ]]; then
	update=true
elif [[ $# -gt 0 ]]; then
	log "usage: $0 [--update]"
	exit 2
fi

ensure_node "Node.js and npm"

sri() { printf 'sha384-%s' "$(openssl dgst -sha384 -binary "$1" | base64 -w0)"; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=0
for manifest in "${manifests[@]}"; do
	dir=$(dirname "$manifest")
	spec=$(awk '$1 == "package" {print $2}' "$manifest")
	want=$(awk '$1 == "package" {print $3}' "$manifest")
	[[ -n $spec && -n $want ]] || { log "$manifest: no package line"; exit 1; }
	work=$tmp/$(basename "$(dirname "$dir")")
	mkdir -p "$work"
	log "npm pack $spec"
	got=$(cd "$work" && npm pack --json --no-update-notifier --loglevel=error "$spec" |
		node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const p=JSON.parse(s)[0];console.log(p.integrity+" "+p.filename)})')
	integrity=${got%% *}
	tarball=$work/${got#* }
	# npm checks the tarball against the registry's dist.integrity; this
	# checks it against the pin, and the file itself once more.
	if [[ $integrity != "$want" ]]; then
		log "$spec: npm integrity $integrity, want $want"
		exit 1
	fi
	actual="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
	if [[ $actual != "$want" ]]; then
		log "$spec: tarball sha512 $actual, want $want"
		exit 1
	fi
	tar -xzf "$tarball" -C "$work"
	new=$tmp/manifest
	: >"$new"
	while read -r first second rest; do
		if [[ -z $first || $first == "#" || $first == package ]]; then
			printf '%s\n' "$first${second:+ $second}${rest:+ $rest}" >>"$new"
			continue
		fi
		src=$work/package/$second
		name=$(basename "$second")
		[[ -f $src ]] || { log "$spec has no $second"; exit 1; }
		hash=$(sri "$src")
		if $update; then
			cp "$src" "$dir/$name"
		elif [[ $first != "$hash" ]]; then
			log "$spec $second: sha384 $hash, the manifest says $first"
			failed=1
		elif ! cmp -s "$src" "$dir/$name"; then
			log "$dir/$name differs from $spec $second"
			failed=1
		fi
		printf '%s %s\n' "$hash" "$second" >>"$new"
	done <"$manifest"
	if $update; then
		cp "$new" "$manifest"
		log "wrote $dir"
	fi
	rm -rf "$work"
done
if [[ $failed -ne 0 ]]; then
	exit 1
fi
log "ok"
