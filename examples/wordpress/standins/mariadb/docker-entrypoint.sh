#!/bin/sh
# Entrypoint of the MariaDB stand-in image: the environment contract of the official
# `mariadb` image (MARIADB_*/MYSQL_* variables and their _FILE variants), in POSIX sh.
set -eu

DATADIR=/var/lib/mysql
SOCKET=/run/mysqld/mysqld.sock

log() { printf '%s [Entrypoint]: %s\n' "$(date '+%Y-%m-%d %H:%M:%S')" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# file_env VAR: VAR, its MARIADB_/MYSQL_ twin, or the contents of a *_FILE twin.
file_env() {
	name=$1
	alias=MYSQL_${name#MARIADB_}
	for candidate in "$name" "$alias"; do
		eval "value=\${$candidate:-}"
		eval "file=\${${candidate}_FILE:-}"
		if [ -n "$value" ] && [ -n "$file" ]; then
			die "both $candidate and ${candidate}_FILE are set (but are exclusive)"
		fi
		if [ -n "$file" ]; then
			value=$(cat "$file")
		fi
		if [ -n "$value" ]; then
			eval "$name=\$value"
			return
		fi
	done
	eval "$name="
}

# SQL string literal: single quotes and backslashes escaped.
sql_quote() { printf "'%s'" "$(printf '%s' "$1" | sed -e "s/\\\\/\\\\\\\\/g" -e "s/'/\\\\'/g")"; }
# SQL identifier: backticks doubled.
# shellcheck disable=SC2016
sql_ident() { printf '`%s`' "$(printf '%s' "$1" | sed -e 's/`/``/g')"; }

setup_env() {
	file_env MARIADB_ROOT_PASSWORD
	file_env MARIADB_DATABASE
	file_env MARIADB_USER
	file_env MARIADB_PASSWORD
	file_env MARIADB_ROOT_HOST
	: "${MARIADB_ROOT_HOST:=%}"
	allow_empty=${MARIADB_ALLOW_EMPTY_ROOT_PASSWORD:-${MYSQL_ALLOW_EMPTY_PASSWORD:-}}
	random_root=${MARIADB_RANDOM_ROOT_PASSWORD:-${MYSQL_RANDOM_ROOT_PASSWORD:-}}
}

# Runs the SQL on standard input against the temporary server, as root.
temp_sql() { mariadb --protocol=socket -uroot --socket="$SOCKET" "$@"; }

init_database() {
	if [ -z "$MARIADB_ROOT_PASSWORD" ] && [ -z "$allow_empty" ] && [ -z "$random_root" ]; then
		die "Database is uninitialized and password option is not specified
	You need to specify one of MARIADB_ROOT_PASSWORD, MARIADB_ALLOW_EMPTY_ROOT_PASSWORD and MARIADB_RANDOM_ROOT_PASSWORD"
	fi
	if [ -n "$random_root" ]; then
		MARIADB_ROOT_PASSWORD=$(tr -dc 'A-Za-z0-9' </dev/urandom | head -c 32)
		log "GENERATED ROOT PASSWORD: $MARIADB_ROOT_PASSWORD"
	fi
	log "Initializing database files"
	mariadb-install-db --user=mysql --datadir="$DATADIR" --skip-test-db \
		--auth-root-authentication-method=normal --rpm >/dev/null
	log "Database files initialized"

	log "Starting temporary server"
	"$@" --skip-networking --default-time-zone=SYSTEM --socket="$SOCKET" \
		--wsrep_on=OFF --loose-innodb_buffer_pool_load_at_startup=0 &
	temp_pid=$!
	tries=0
	until temp_sql -e 'SELECT 1' >/dev/null 2>&1; do
		tries=$((tries + 1))
		kill -0 "$temp_pid" 2>/dev/null || die "the temporary server exited during initialisation"
		[ "$tries" -lt 300 ] || die "the temporary server did not start within 30 seconds"
		sleep 0.1
	done
	log "Temporary server started"

	root_pw=$(sql_quote "$MARIADB_ROOT_PASSWORD")
	{
		printf '%s\n' "SET @@SESSION.SQL_LOG_BIN=0;"
		printf '%s\n' "DROP USER IF EXISTS root@'127.0.0.1', root@'::1';"
		printf '%s\n' "EXECUTE IMMEDIATE CONCAT('DROP USER IF EXISTS root@''', @@hostname, '''');"
		printf '%s\n' "SET PASSWORD FOR root@localhost = PASSWORD($root_pw);"
		if [ "$MARIADB_ROOT_HOST" != localhost ]; then
			host=$(sql_quote "$MARIADB_ROOT_HOST")
			printf '%s\n' "CREATE USER root@$host IDENTIFIED BY $root_pw;"
			printf '%s\n' "GRANT ALL ON *.* TO root@$host WITH GRANT OPTION;"
		fi
		if [ -n "$MARIADB_DATABASE" ]; then
			log "Creating database ${MARIADB_DATABASE}"
			printf '%s\n' "CREATE DATABASE IF NOT EXISTS $(sql_ident "$MARIADB_DATABASE");"
		fi
		if [ -n "$MARIADB_USER" ] && [ -n "$MARIADB_PASSWORD" ]; then
			log "Creating user ${MARIADB_USER}"
			user=$(sql_quote "$MARIADB_USER")
			printf '%s\n' "CREATE USER $user@'%' IDENTIFIED BY $(sql_quote "$MARIADB_PASSWORD");"
			if [ -n "$MARIADB_DATABASE" ]; then
				log "Giving user ${MARIADB_USER} access to schema ${MARIADB_DATABASE}"
				printf '%s\n' "GRANT ALL ON $(sql_ident "$MARIADB_DATABASE").* TO $user@'%';"
			fi
		fi
		printf '%s\n' "FLUSH PRIVILEGES;"
	} | temp_sql --database=mysql

	for script in /docker-entrypoint-initdb.d/*; do
		case $script in
		*.sh)
			log "running $script"
			# shellcheck disable=SC1090
			. "$script"
			;;
		*.sql) log "running $script"; temp_sql -p"$MARIADB_ROOT_PASSWORD" "${MARIADB_DATABASE:-mysql}" <"$script" ;;
		*) ;;
		esac
	done

	log "Stopping temporary server"
	kill "$temp_pid"
	wait "$temp_pid" || true
	log "Temporary server stopped"
	log "MariaDB init process done. Ready for start up."
}

# `docker run mariadb --some-option`: options go to the server.
if [ "${1#-}" != "$1" ]; then
	set -- mysqld "$@"
fi

case ${1:-} in
mysqld | mariadbd)
	if [ "$(id -u)" = 0 ]; then
		mkdir -p "$DATADIR" /run/mysqld
		chown -R mysql:mysql /run/mysqld
		find "$DATADIR" \! -user mysql -exec chown mysql:mysql '{}' +
		# Continue as the unprivileged `mysql` user (uid 999, as upstream).
		exec setpriv --reuid=mysql --regid=mysql --init-groups "$0" "$@"
	fi
	setup_env
	if [ ! -d "$DATADIR/mysql" ]; then
		init_database "$@"
	fi
	log "Starting MariaDB"
	;;
esac

exec "$@"
