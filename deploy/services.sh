#!/usr/bin/env bash
# Make local PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379) reachable
# for hookd on a Debian machine. Idempotent: services that already answer are
# left alone; missing ones are installed with apt and started without systemd
# (containers and CI runners usually have no systemd).
#
# Result:
#   postgres://hookd:hookd@127.0.0.1:5432/hookd?sslmode=disable
#   redis://127.0.0.1:6379/0
#
# With --with-prometheus it also makes prometheus and promtool available
# (deploy/prometheus.sh: Debian's package, no system service left running).
set -euo pipefail

WITH_PROMETHEUS=0
for arg in "$@"; do
	case $arg in
	--with-prometheus) WITH_PROMETHEUS=1 ;;
	-h | --help)
		printf 'usage: %s [--with-prometheus]\n' "$0" >&2
		exit 0
		;;
	*)
		printf 'services: unknown argument %s (want --with-prometheus)\n' "$arg" >&2
		exit 2
		;;
	esac
done

readonly PG_HOST=127.0.0.1
readonly PG_PORT=5432
readonly REDIS_HOST=127.0.0.1
readonly REDIS_PORT=6379
readonly HOOKD_DB_URL="postgres://hookd:hookd@${PG_HOST}:${PG_PORT}/hookd?sslmode=disable"
readonly REDIS_DIR=/var/lib/redis
readonly REDIS_LOG=/var/log/redis/hookd.log

log() { printf 'services: %s\n' "$*" >&2; }
die() { printf 'services: ERROR: %s\n' "$*" >&2; exit 1; }

# Privileged commands: run directly as root, through sudo otherwise.
SUDO=()
if [[ $(id -u) -ne 0 ]]; then
	if command -v sudo >/dev/null 2>&1; then
		SUDO=(sudo)
	else
		log "not running as root and sudo is not available; privileged steps may fail"
	fi
fi
as_root() { "${SUDO[@]}" "$@"; }

APT_UPDATED=0
apt_install() {
	command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install $* manually"
	if [[ $APT_UPDATED -eq 0 ]]; then
		log "apt-get update"
		as_root apt-get update -qq || die "apt-get update failed"
		APT_UPDATED=1
	fi
	log "apt-get install $*"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null ||
		die "apt-get install $* failed"
}

# ---------------------------------------------------------------- PostgreSQL

pg_ready() { pg_isready -q -h "$PG_HOST" -p "$PG_PORT" >/dev/null 2>&1; }

pg_server_installed() { compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null; }

# Highest installed major version, e.g. "15".
pg_latest_version() {
	local d v best=""
	for d in /usr/lib/postgresql/*/bin/pg_ctl; do
		v=${d#/usr/lib/postgresql/}
		v=${v%%/*}
		if [[ -z $best ]] || [[ $(printf '%s\n%s\n' "$best" "$v" | sort -V | tail -n1) == "$v" ]]; then
			best=$v
		fi
	done
	printf '%s\n' "$best"
}

start_postgres() {
	if ! pg_server_installed; then
		apt_install postgresql postgresql-client
	fi
	if ! command -v pg_lsclusters >/dev/null 2>&1 || ! command -v pg_ctlcluster >/dev/null 2>&1; then
		die "pg_lsclusters/pg_ctlcluster not found (package postgresql-common missing?)"
	fi

	# The apt postinst may already have started a cluster.
	if pg_ready; then
		log "postgres is up after install"
		return
	fi

	local clusters ver name port status rest
	clusters=$(pg_lsclusters -h 2>/dev/null || true)
	if [[ -z $clusters ]]; then
		ver=$(pg_latest_version)
		[[ -n $ver ]] || die "no PostgreSQL version found under /usr/lib/postgresql"
		log "no cluster found; creating cluster $ver/main on port $PG_PORT"
		as_root pg_createcluster --port "$PG_PORT" "$ver" main >/dev/null ||
			die "pg_createcluster $ver main failed"
		clusters=$(pg_lsclusters -h)
	fi

	while read -r ver name port status rest; do
		[[ -n ${ver:-} ]] || continue
		if [[ $status == online* ]]; then
			log "cluster $ver/$name (port $port) already online"
			continue
		fi
		log "starting cluster $ver/$name (port $port)"
		as_root pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" start ||
			log "warning: could not start cluster $ver/$name"
	done <<<"$clusters"

	local i
	for ((i = 0; i < 30; i++)); do
		pg_ready && return
		sleep 1
	done
	pg_lsclusters >&2 || true
	die "postgres did not answer on $PG_HOST:$PG_PORT within 30s (is a cluster configured for port $PG_PORT?)"
}

# Run psql as a superuser against database $1 with the remaining args.
# The working method is detected once and cached in PSQL_SUPER_METHOD.
PSQL_SUPER_METHOD=""
psql_super_try() {
	local method=$1 db=$2
	shift 2
	case $method in
	peer)
		# Peer auth over the Unix socket as the postgres OS user (fresh Debian install).
		if [[ $(id -u) -eq 0 ]]; then
			(cd / && runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -d "$db" "$@")
		elif [[ ${#SUDO[@]} -gt 0 ]]; then
			(cd / && sudo -u postgres psql -X -q -v ON_ERROR_STOP=1 -d "$db" "$@")
		else
			return 1
		fi
		;;
	tcp-postgres) psql -X -q -w -v ON_ERROR_STOP=1 -h "$PG_HOST" -p "$PG_PORT" -U postgres -d "$db" "$@" ;;
	tcp-root) psql -X -q -w -v ON_ERROR_STOP=1 -h "$PG_HOST" -p "$PG_PORT" -U root -d "$db" "$@" ;;
	*) return 1 ;;
	esac
}

psql_super() {
	local db=$1
	shift
	if [[ -z $PSQL_SUPER_METHOD ]]; then
		local m
		for m in peer tcp-postgres tcp-root; do
			if psql_super_try "$m" postgres -tAc 'SELECT 1' >/dev/null 2>&1; then
				PSQL_SUPER_METHOD=$m
				log "using superuser access method: $m"
				break
			fi
		done
		[[ -n $PSQL_SUPER_METHOD ]] ||
			die "cannot connect to postgres as a superuser (tried runuser -u postgres, -U postgres and -U root on $PG_HOST:$PG_PORT)"
	fi
	psql_super_try "$PSQL_SUPER_METHOD" "$db" "$@"
}

ensure_hookd_db() {
	log "ensuring role hookd and database hookd"
	psql_super postgres <<'SQL' || die "creating role/database hookd failed"
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'hookd') THEN
    CREATE ROLE hookd LOGIN PASSWORD 'hookd' CREATEDB;
  ELSE
    ALTER ROLE hookd LOGIN PASSWORD 'hookd' CREATEDB;
  END IF;
END
$$;
SELECT 'CREATE DATABASE hookd OWNER hookd'
WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_database WHERE datname = 'hookd')
\gexec
ALTER DATABASE hookd OWNER TO hookd;
SQL
	# Since PG15 the public schema is owned by pg_database_owner, so owning the
	# database suffices; the explicit grant also covers older versions/clusters.
	psql_super hookd -c 'GRANT ALL ON SCHEMA public TO hookd' >/dev/null ||
		die "granting schema public to hookd failed"

	psql -X -q -w "$HOOKD_DB_URL" -tAc 'SELECT 1' >/dev/null ||
		die "cannot connect as hookd with $HOOKD_DB_URL (check pg_hba.conf: host lines for 127.0.0.1 need scram-sha-256, md5 or trust)"
	log "postgres ok: $HOOKD_DB_URL"
}

setup_postgres() {
	if ! command -v pg_isready >/dev/null 2>&1 || ! command -v psql >/dev/null 2>&1; then
		if pg_server_installed; then
			apt_install postgresql-client
		else
			apt_install postgresql postgresql-client
		fi
	fi
	if pg_ready; then
		log "postgres already answering on $PG_HOST:$PG_PORT"
	else
		log "postgres not answering on $PG_HOST:$PG_PORT; starting it"
		start_postgres
	fi
	ensure_hookd_db
}

# --------------------------------------------------------------------- Redis

redis_ping() { redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null || true; }

wait_redis() {
	local i
	for ((i = 0; i < 15; i++)); do
		[[ $(redis_ping) == PONG ]] && return 0
		sleep 1
	done
	return 1
}

start_redis() {
	if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
		apt_install redis-server
		# The package's init script may have started it already.
		if [[ $(redis_ping) == PONG ]]; then
			log "redis is up after install"
			return
		fi
	fi

	# Optional-bind syntax ("-::1": skip if IPv6 is unavailable) needs Redis 7.
	local ver major bind=(127.0.0.1)
	ver=$(redis-server --version | sed -n 's/.* v=\([0-9][0-9.]*\).*/\1/p')
	major=${ver%%.*}
	if [[ ${major:-0} -ge 7 ]]; then
		bind+=("-::1")
	fi

	as_root mkdir -p "$REDIS_DIR" "$(dirname "$REDIS_LOG")"
	log "starting redis-server $ver on $REDIS_HOST:$REDIS_PORT"
	as_root redis-server --daemonize yes \
		--bind "${bind[@]}" \
		--port "$REDIS_PORT" \
		--save "" \
		--appendonly no \
		--maxmemory-policy noeviction \
		--dir "$REDIS_DIR" \
		--logfile "$REDIS_LOG" ||
		die "redis-server failed to start (see $REDIS_LOG)"

	if ! wait_redis; then
		as_root tail -n 20 "$REDIS_LOG" >&2 || true
		die "redis did not answer PONG on $REDIS_HOST:$REDIS_PORT within 15s"
	fi
}

setup_redis() {
	local pong policy
	if command -v redis-cli >/dev/null 2>&1; then
		pong=$(redis_ping)
	else
		pong=""
	fi
	if [[ $pong == PONG ]]; then
		log "redis already answering on $REDIS_HOST:$REDIS_PORT"
		policy=$(redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" config get maxmemory-policy 2>/dev/null | sed -n 2p || true)
		if [[ $policy != noeviction ]]; then
			log "WARNING: redis maxmemory-policy is '${policy:-unknown}', not 'noeviction'; asynq keys may be evicted under memory pressure (not changing it)"
		fi
	elif [[ -n $pong ]]; then
		die "something answers on $REDIS_HOST:$REDIS_PORT but not PONG: $pong"
	else
		log "redis not answering on $REDIS_HOST:$REDIS_PORT; starting it"
		start_redis
	fi
	log "redis ok: redis://$REDIS_HOST:$REDIS_PORT/0"
}

setup_postgres
setup_redis
if [[ $WITH_PROMETHEUS -eq 1 ]]; then
	bash "$(dirname "${BASH_SOURCE[0]}")/prometheus.sh"
fi
log "done"
