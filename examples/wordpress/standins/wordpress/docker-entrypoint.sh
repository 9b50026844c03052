#!/bin/sh
# Entrypoint of the WordPress stand-in image: the environment contract of the official
# `wordpress` image (WORDPRESS_DB_* variables and their _FILE variants), in POSIX sh.
set -eu

log() { printf '%s\n' "$*" >&2; }

# file_env VAR DEFAULT: VAR, the contents of VAR_FILE, or DEFAULT.
file_env() {
	eval "value=\${$1:-}"
	eval "file=\${$1_FILE:-}"
	if [ -n "$value" ] && [ -n "$file" ]; then
		log "error: both $1 and $1_FILE are set (but are exclusive)"
		exit 1
	fi
	if [ -n "$file" ]; then
		value=$(cat "$file")
	fi
	eval "$1=\${value:-\$2}"
}

# PHP single-quoted string literal.
php_quote() { printf "'%s'" "$(printf '%s' "$1" | sed -e "s/\\\\/\\\\\\\\/g" -e "s/'/\\\\'/g")"; }

populate_docroot() {
	if [ -e index.php ] && [ -e wp-includes/version.php ]; then
		return
	fi
	log "WordPress not found in $PWD - copying now..."
	if [ -n "$(ls -A)" ]; then
		log "WARNING: $PWD is not empty! (copying anyway)"
	fi
	tar -C /usr/src/wordpress -cf - . | tar -xf -
	chown -R www-data:www-data .
	log "Complete! WordPress has been successfully copied to $PWD"
}

write_config() {
	file_env WORDPRESS_DB_HOST mysql
	file_env WORDPRESS_DB_USER example username
	file_env WORDPRESS_DB_PASSWORD ''
	file_env WORDPRESS_DB_NAME wordpress
	file_env WORDPRESS_TABLE_PREFIX wp_
	file_env WORDPRESS_DEBUG ''
	file_env WORDPRESS_CONFIG_EXTRA ''
	debug=false
	[ -n "$WORDPRESS_DEBUG" ] && debug=true
	{
		printf '%s\n' '<?php'
		printf '%s\n' '// Written by docker-entrypoint.sh from WORDPRESS_* on first start; any Host header works.'
		printf '%s\n' "define( 'DB_NAME', $(php_quote "$WORDPRESS_DB_NAME") );"
		printf '%s\n' "define( 'DB_USER', $(php_quote "$WORDPRESS_DB_USER") );"
		printf '%s\n' "define( 'DB_PASSWORD', $(php_quote "$WORDPRESS_DB_PASSWORD") );"
		printf '%s\n' "define( 'DB_HOST', $(php_quote "$WORDPRESS_DB_HOST") );"
		printf '%s\n' "define( 'DB_CHARSET', 'utf8mb4' );"
		printf '%s\n' "define( 'DB_COLLATE', '' );"
		for key in AUTH_KEY SECURE_AUTH_KEY LOGGED_IN_KEY NONCE_KEY AUTH_SALT SECURE_AUTH_SALT LOGGED_IN_SALT NONCE_SALT; do
			eval "salt=\${WORDPRESS_$key:-}"
			if [ -z "$salt" ]; then
				salt=$(tr -dc 'A-Za-z0-9!#%()*+,-./:;<=>?@[]^_{|}~' </dev/urandom | head -c 64)
			fi
			printf '%s\n' "define( '$key', $(php_quote "$salt") );"
		done
		printf '%s\n' "\$table_prefix = $(php_quote "$WORDPRESS_TABLE_PREFIX");"
		printf '%s\n' "define( 'WP_DEBUG', $debug );"
		printf '%s\n' "define( 'WP_CORE_UPDATE', false );"
		printf '%s\n' "define( 'AUTOMATIC_UPDATER_DISABLED', true );"
		# Behind a TLS-terminating proxy, as the official image does.
		printf '%s\n' "if ( isset( \$_SERVER['HTTP_X_FORWARDED_PROTO'] ) && strpos( \$_SERVER['HTTP_X_FORWARDED_PROTO'], 'https' ) !== false ) { \$_SERVER['HTTPS'] = 'on'; }"
		[ -n "$WORDPRESS_CONFIG_EXTRA" ] && printf '%s\n' "$WORDPRESS_CONFIG_EXTRA"
		printf '%s\n' "if ( ! defined( 'ABSPATH' ) ) { define( 'ABSPATH', __DIR__ . '/' ); }"
		printf '%s\n' "require_once ABSPATH . 'wp-settings.php';"
	} >wp-config.php.tmp
	chown www-data:www-data wp-config.php.tmp
	mv wp-config.php.tmp wp-config.php
	log "wp-config.php written for database $WORDPRESS_DB_NAME on $WORDPRESS_DB_HOST"
}

case ${1:-} in
apache2* | php-fpm*)
	populate_docroot
	if [ ! -s wp-config.php ]; then
		write_config
	fi
	;;
esac

exec "$@"
