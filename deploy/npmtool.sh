# Shared by the scripts that install a test tool with npm (oaslint.sh,
# kubeschema.sh): source it after defining log(). Nothing here runs on its
# own.

# ensure_node installs Debian's nodejs and npm when either is missing.
# $1 names the Node.js the caller needs, for its messages. Exits 3 when
# there is no way to install them, 1 when the install fails.
ensure_node() {
	if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
		return 0
	fi
	if ! command -v apt-get >/dev/null 2>&1; then
		log "no node and npm, and apt-get is not available; install $1"
		exit 3
	fi
	local sudo=()
	if [[ $(id -u) -ne 0 ]]; then
		if ! command -v sudo >/dev/null 2>&1; then
			log "no node and npm; installing them needs root or sudo"
			exit 3
		fi
		sudo=(sudo -n)
	fi
	local apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 -qq)
	log "installing Debian's nodejs and npm"
	if ! "${apt[@]}" install -y --no-install-recommends nodejs npm >/dev/null; then
		log "apt-get update"
		"${apt[@]}" update || { log "apt-get update failed"; exit 1; }
		"${apt[@]}" install -y --no-install-recommends nodejs npm >/dev/null || { log "apt-get install nodejs npm failed"; exit 1; }
	fi
}

# npm_install_into installs the npm packages $2... (pinned name@version)
# into directory $1, marked complete by $1/.installed. It installs next to
# $1 and then moves the install into place, so that a failed or concurrent
# install never leaves a half-filled one behind. Exits 1 when it fails.
npm_install_into() {
	local dir=$1
	shift
	mkdir -p "$(dirname "$dir")"
	if [[ -d $dir && ! -f $dir/.installed ]]; then
		rm -rf "$dir" # without the marker: not a complete install
	fi
	local tmp
	tmp=$(mktemp -d "$dir.tmp.XXXXXX")
	log "npm install $* into $dir"
	printf '{"private": true}\n' >"$tmp/package.json"
	if ! npm install --prefix "$tmp" --no-audit --no-fund --no-update-notifier --loglevel=error --save-exact "$@" >&2; then
		rm -rf "$tmp"
		log "npm install failed"
		exit 1
	fi
	touch "$tmp/.installed"
	if ! mv -T "$tmp" "$dir" 2>/dev/null; then
		rm -rf "$tmp"
		# Another run finished first: use its install.
		[[ -f $dir/.installed ]] || { log "could not move the install into $dir"; exit 1; }
	fi
}
