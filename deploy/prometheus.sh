#!/usr/bin/env bash
# Make `prometheus` and `promtool` available on a Debian machine, for the
# checks of deploy/prometheus/ (promtool check/test) and the tests that run a
# real Prometheus. Idempotent and quick when both are already installed.
#
# Debian's package would start a system Prometheus on :9090 (and
# prometheus-node-exporter, a recommendation, on :9100). Neither is wanted:
# recommendations are not installed, service starts are refused during the
# install through policy-rc.d, and a system service that runs anyway is
# stopped and disabled. Tests start their own Prometheus on a free port.
#
#   bash deploy/prometheus.sh        # or: bash deploy/services.sh --with-prometheus
set -euo pipefail

readonly POLICY_RC=/usr/sbin/policy-rc.d

log() { printf 'prometheus: %s\n' "$*" >&2; }
die() { printf 'prometheus: ERROR: %s\n' "$*" >&2; exit 1; }

installed() { command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; }

if installed; then
	log "already installed: $(command -v prometheus), $(command -v promtool)"
	exit 0
fi

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
	if command -v sudo >/dev/null 2>&1; then
		SUDO=(sudo)
	else
		log "not running as root and sudo is not available; the install may fail"
	fi
fi
as_root() { "${SUDO[@]}" "$@"; }

command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install prometheus (with promtool) manually"

# Refuse service starts while the package installs, unless a policy already
# exists (Docker images ship one that refuses everything). Ours is removed
# again on exit, whatever happens.
OWN_POLICY=0
cleanup() {
	if [[ $OWN_POLICY -eq 1 ]]; then
		as_root rm -f "$POLICY_RC" || log "warning: could not remove $POLICY_RC"
	fi
}
trap cleanup EXIT
if [[ ! -e $POLICY_RC ]]; then
	printf '#!/bin/sh\n# Written by hookd deploy/prometheus.sh during an install; removed after it.\nexit 101\n' |
		as_root tee "$POLICY_RC" >/dev/null
	as_root chmod 0755 "$POLICY_RC"
	OWN_POLICY=1
fi

# Another apt run (a parallel test, services.sh) may hold the dpkg lock: wait
# for it rather than fail.
readonly APT_LOCK=(-o DPkg::Lock::Timeout=300)

apt_install() {
	as_root env DEBIAN_FRONTEND=noninteractive apt-get "${APT_LOCK[@]}" install -y -qq --no-install-recommends prometheus >/dev/null
}

log "apt-get install --no-install-recommends prometheus"
if ! apt_install; then
	log "install failed; apt-get update and retry"
	as_root apt-get "${APT_LOCK[@]}" update -qq || die "apt-get update failed"
	apt_install || die "apt-get install prometheus failed"
fi
installed || die "prometheus or promtool still not on PATH after the install"

# Should a system Prometheus run anyway (a policy that allowed it, systemd),
# stop it and keep it from starting at boot: nothing may linger on :9090.
if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
	as_root systemctl disable --now prometheus.service >/dev/null 2>&1 || true
elif [[ -x /etc/init.d/prometheus ]]; then
	if as_root /etc/init.d/prometheus status >/dev/null 2>&1; then
		log "stopping the system prometheus service the package started"
		as_root /etc/init.d/prometheus stop >/dev/null 2>&1 || log "warning: could not stop the system prometheus"
	fi
	if command -v update-rc.d >/dev/null 2>&1; then
		as_root update-rc.d prometheus disable >/dev/null 2>&1 || true
	fi
fi

log "installed: $(prometheus --version 2>&1 | head -n1)"
