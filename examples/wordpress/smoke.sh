#!/bin/bash
# Smoke test of the WordPress example on rcompose's embedded engine:
#
#   smoke.sh ROOT
#
# ROOT is an rcompose state root. `up -d` pulls `mariadb:10.6.4-focal` and
# `wordpress:latest` when ROOT lacks them (from Docker Hub, or its mirror in
# RCOMPOSE_REGISTRY_MIRRORS); standins/build.sh --root ROOT loads stand-ins there
# instead. Runs the unchanged compose.yaml:
# `up -d`, waits for the WordPress installer on http://127.0.0.1/, installs the site over
# HTTP, checks its title and `logs`, stops MariaDB from inside (`restart: always` brings
# it back), then `down` + `up -d` (the site stays installed: the data is in the db_data
# volume), and `down -v` (the volume is gone). Stops with a message at the first failed
# check. Needs root, curl and a free port 80.
#
#   RCOMPOSE      the rcompose binary (default: target/release/rcompose of this checkout)
#   WAIT_SECONDS  how long each wait may take (default 120)
#   KEEP=1        leave the project running when a check fails, to look at it
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
[ $# -eq 1 ] || { sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
root=$1
rcompose=${RCOMPOSE:-${CARGO_TARGET_DIR:-$repo/target}/release/rcompose}
wait_seconds=${WAIT_SECONDS:-120}
url=http://127.0.0.1
title="rcompose smoke $$"
volume=wordpress_db_data

step_started=$(date +%s.%N)
say() { printf '==> %s\n' "$*" >&2; }
fail() {
	printf 'smoke.sh: FAILED: %s\n' "$*" >&2
	exit 1
}
# Prints "WHAT N.Ns": the seconds since the step started, for the timings.
timing() {
	awk -v a="$step_started" -v b="$(date +%s.%N)" -v what="$1" \
		'BEGIN { printf "    %s %.1fs\n", what, b - a }' >&2
}
rc() { "$rcompose" --root "$root" -f "$here/compose.yaml" "$@"; }

running=0
on_exit() {
	local status=$?
	if [ "$status" -ne 0 ] && [ "$running" = 1 ]; then
		echo "--- rcompose ps / logs (last 40 lines) ---" >&2
		rc ps -a >&2 || true
		rc logs --no-color 2>&1 | tail -n 40 >&2 || true
		if [ "${KEEP:-}" = 1 ]; then
			echo "KEEP=1: left running; clean up with: $rcompose --root $root -f $here/compose.yaml down -v" >&2
		else
			rc down -v >&2 || true
		fi
	fi
	rm -f "${cookies:-}" "${body:-}"
}
trap on_exit EXIT

[ "$(id -u)" = 0 ] || fail "must run as root"
[ -x "$rcompose" ] || fail "no rcompose binary at $rcompose (build it, or set RCOMPOSE)"
command -v curl >/dev/null || fail "curl is not installed"
if curl -s -o /dev/null --max-time 2 "$url/"; then
	fail "something already answers on $url (port 80 must be free)"
fi
cookies=$(mktemp)
body=$(mktemp)

# wait_for WHAT PATTERN: polls $url/ (following redirects) until the page matches.
wait_for() {
	local what=$1 pattern=$2 deadline=$((SECONDS + wait_seconds)) code=none
	while [ "$SECONDS" -lt "$deadline" ]; do
		# A refused connection writes nothing: no stale page may match.
		: >"$body"
		code=$(curl -sL -o "$body" -w '%{http_code} %{url_effective}' --max-time 5 "$url/" || true)
		if grep -q -- "$pattern" "$body" 2>/dev/null || grep -q -- "$pattern" <<<"$code"; then
			return 0
		fi
		sleep 0.2
	done
	fail "$what: no page matching '$pattern' on $url/ within ${wait_seconds}s (last answer: $code)"
}

say "up -d"
step_started=$(date +%s.%N)
running=1
rc up -d || fail "rcompose up -d failed"
timing "up -d returned after"
wait_for "installer" "wp-admin/install.php"
timing "installer answering (up -d to wp-admin/install.php) after"

say "installing WordPress over HTTP"
step_started=$(date +%s.%N)
curl -sf -c "$cookies" -b "$cookies" -o "$body" --max-time 60 \
	--data-urlencode "weblog_title=$title" \
	--data-urlencode "user_name=admin" \
	--data-urlencode "admin_password=smoke-Passw0rd" \
	--data-urlencode "admin_password2=smoke-Passw0rd" \
	--data-urlencode "pw_weak=1" \
	--data-urlencode "admin_email=admin@example.com" \
	--data-urlencode "blog_public=0" \
	--data-urlencode "Submit=Install WordPress" \
	"$url/wp-admin/install.php?step=2" || fail "POST wp-admin/install.php?step=2 failed"
grep -q "Success!" "$body" || fail "the installation did not report success: $(sed -e 's/<[^>]*>//g' "$body" | tr -s ' \n' ' ' | cut -c1-300)"
timing "installed in"

say "fetching the site"
curl -sfL -o "$body" --max-time 30 "$url/" || fail "GET / failed after the installation"
grep -q "<title>$title" "$body" || fail "the home page does not show the title '$title'"

say "logs"
logs=$(rc logs --no-color 2>&1) || fail "rcompose logs failed"
for service in db wordpress; do
	grep -q "^$service-1 *|" <<<"$logs" || fail "rcompose logs shows no line of $service-1"
done

say "db stops on its own: restart: always brings it back"
ready_count() { rc logs --no-color db 2>/dev/null | grep -c "ready for connections" || true; }
before=$(ready_count)
rc exec db sh -c 'kill 1' || fail "could not signal the db container's main process"
deadline=$((SECONDS + wait_seconds))
until [ "$(ready_count)" -gt "$before" ]; do
	[ "$SECONDS" -lt "$deadline" ] || fail "db was not restarted within ${wait_seconds}s (restart: always)"
	sleep 0.2
done
wait_for "site after the db restarted" "<title>$title"

say "down, then up -d again"
rc down || fail "rcompose down failed"
"$rcompose" --root "$root" volume inspect "$volume" >/dev/null 2>&1 ||
	fail "volume $volume is gone after down (without -v)"
step_started=$(date +%s.%N)
rc up -d || fail "rcompose up -d (second time) failed"
wait_for "installed site after down/up" "<title>$title"
timing "installed site answering after"

say "down -v"
rc down -v || fail "rcompose down -v failed"
running=0
if "$rcompose" --root "$root" volume inspect "$volume" >/dev/null 2>&1; then
	fail "volume $volume still exists after down -v"
fi
# The first `down` (no -v) left the first wordpress container's anonymous volume
# (the image's VOLUME /var/www/html) behind, as Docker does: prune it.
"$rcompose" --root "$root" volume prune --force --filter label=com.docker.compose.project=wordpress >/dev/null ||
	fail "volume prune failed"
left=$("$rcompose" --root "$root" volume ls -q --filter label=com.docker.compose.project=wordpress)
[ -z "$left" ] || fail "volumes of the project left after down -v and prune: $left"
if curl -s -o /dev/null --max-time 2 "$url/"; then
	fail "port 80 still answers after down -v"
fi
say "WordPress smoke test passed"
