#!/bin/bash
# Builds stand-ins for the WordPress example's images, `mariadb:10.6.4-focal` and
# `wordpress:latest`, from Debian bookworm packages (no registry holding the official
# images is reachable here), and loads them into an rcompose state root.
#
#   build.sh [--root DIR] [--cache DIR]
#
#   --root DIR    rcompose state root to load the images into (default: rcompose's own)
#   --cache DIR   keeps `docker save` archives of both images, keyed by a hash of this
#                 script and the entrypoints, and the downloaded .deb files
#                 (default /var/cache/rcompose-wordpress)
#   RCOMPOSE      the rcompose binary (default: target/release/rcompose of this checkout)
#   DEBIAN_MIRROR Debian mirror (default: the one apt is configured with)
#   KEEP_WORK=1   keep the build directory (rootfs trees, logs) to look at
#
# Needs root and debootstrap. A second run with unchanged scripts only loads the archives.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../../.." && pwd)
root=""
cache=/var/cache/rcompose-wordpress
suite=bookworm

usage() { sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
die() { echo "build.sh: $*" >&2; exit 1; }
say() { echo "==> $*" >&2; }

while [ $# -gt 0 ]; do
	case $1 in
	--root) root=${2:?--root needs a directory}; shift 2 ;;
	--root=*) root=${1#--root=}; shift ;;
	--cache) cache=${2:?--cache needs a directory}; shift 2 ;;
	--cache=*) cache=${1#--cache=}; shift ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; die "unknown argument: $1" ;;
	esac
done

[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot)"
rcompose=${RCOMPOSE:-${CARGO_TARGET_DIR:-$repo/target}/release/rcompose}
[ -x "$rcompose" ] || die "no rcompose binary at $rcompose (build it, or set RCOMPOSE)"
rc() {
	if [ -n "$root" ]; then
		"$rcompose" --root "$root" "$@"
	else
		"$rcompose" "$@"
	fi
}

# The Debian mirror apt already uses (one-line or deb822 sources), else deb.debian.org.
debian_mirror() {
	if [ -n "${DEBIAN_MIRROR:-}" ]; then
		echo "$DEBIAN_MIRROR"
		return
	fi
	local files=() url
	[ -f /etc/apt/sources.list ] && files+=(/etc/apt/sources.list)
	for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] && files+=("$f")
	done
	if [ ${#files[@]} -gt 0 ]; then
		url=$(grep -hoE '^(deb[[:space:]]+(\[[^]]*\][[:space:]]+)?|URIs:[[:space:]]*)[a-z]+://[^[:space:]]+' "${files[@]}" |
			grep -oE '[a-z]+://[^[:space:]]+' | grep -E '/debian/?$' | head -n1 || true)
		if [ -n "$url" ]; then
			echo "${url%/}"
			return
		fi
	fi
	echo http://deb.debian.org/debian
}

# Cache key: everything that decides the images' contents.
key=$(cat "${BASH_SOURCE[0]}" "$here/mariadb/docker-entrypoint.sh" \
	"$here/wordpress/docker-entrypoint.sh" "$here/wordpress/apache2-foreground" |
	sha256sum | cut -c1-16)
images_dir=$cache/images/$key
mkdir -p "$cache/debs" "$cache/images"

load_cached() {
	say "loading cached images ($images_dir)"
	rc image load -i "$images_dir/mariadb.tar"
	rc image load -i "$images_dir/wordpress.tar"
}

if [ -s "$images_dir/mariadb.tar" ] && [ -s "$images_dir/wordpress.tar" ]; then
	load_cached
	exit 0
fi

command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"
mirror=$(debian_mirror)
work=$(mktemp -d "$cache/work.XXXXXX")
mounts=()
cleanup() {
	local m
	for m in "${mounts[@]}"; do
		umount -l "$m" 2>/dev/null || true
	done
	if [ "${KEEP_WORK:-}" = 1 ]; then
		echo "build.sh: KEEP_WORK=1: left $work" >&2
	else
		rm -rf --one-file-system "$work"
	fi
}
trap cleanup EXIT

# Runs a command in the chroot with /proc, and the shared .deb cache as apt's archive.
in_chroot() {
	local dir=$1
	shift
	chroot "$dir" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
		DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 "$@"
}
mount_chroot() {
	local dir=$1
	mount -t proc proc "$dir/proc" && mounts+=("$dir/proc")
	mkdir -p "$dir/var/cache/apt/archives"
	mount --bind "$cache/debs" "$dir/var/cache/apt/archives" && mounts+=("$dir/var/cache/apt/archives")
}
unmount_chroot() {
	local dir=$1
	umount "$dir/var/cache/apt/archives" "$dir/proc"
	local kept=()
	local m
	for m in "${mounts[@]}"; do
		case $m in "$dir"/*) ;; *) kept+=("$m") ;; esac
	done
	mounts=("${kept[@]+"${kept[@]}"}")
}

# apt-get install inside the chroot; services are never started at install time.
apt_install() {
	local dir=$1
	shift
	printf '#!/bin/sh\nexit 101\n' >"$dir/usr/sbin/policy-rc.d"
	chmod +x "$dir/usr/sbin/policy-rc.d"
	mount_chroot "$dir"
	in_chroot "$dir" apt-get update -qq
	in_chroot "$dir" apt-get install -y -qq --no-install-recommends "$@" >/dev/null
	unmount_chroot "$dir"
	rm -f "$dir/usr/sbin/policy-rc.d"
}

# Drops what an image does not need and makes the rootfs tarball.
pack() {
	local dir=$1 out=$2
	rm -rf "$dir/var/lib/apt/lists/"* "$dir/usr/share/doc/"* "$dir/usr/share/man/"* \
		"$dir/usr/share/info/"* "$dir/var/log/"*.log "$dir/tmp/"* "${dir:?}/dev/"* \
		"$dir/var/cache/apt/"*.bin "$dir/var/cache/debconf/"*-old
	tar --numeric-owner --xattrs -C "$dir" -cf "$out" .
}

say "debootstrap $suite (minbase) from $mirror"
debootstrap --variant=minbase --cache-dir="$cache/debs" "$suite" "$work/base" "$mirror" >"$work/debootstrap.log" 2>&1 ||
	{ tail -n 20 "$work/debootstrap.log" >&2; die "debootstrap failed (log above)"; }
# The sources apt uses inside the images.
echo "deb $mirror $suite main" >"$work/base/etc/apt/sources.list"
# No docs or man pages, as Debian's own container images.
cat >"$work/base/etc/dpkg/dpkg.cfg.d/excludes" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
CFG
cp -a "$work/base" "$work/mariadb"
mv "$work/base" "$work/wordpress"

say "mariadb: installing mariadb-server"
db=$work/mariadb
# The official image's `mysql` user and group are 999; Debian's postinst keeps an existing one.
in_chroot "$db" groupadd --system --gid 999 mysql
in_chroot "$db" useradd --system --uid 999 --gid 999 --home-dir /var/lib/mysql --no-create-home \
	--shell /usr/sbin/nologin mysql
apt_install "$db" mariadb-server mariadb-client
# Listen on every address, or WordPress in the other container cannot connect.
sed -i -e 's/^\(bind-address\)/#\1/' "$db/etc/mysql/mariadb.conf.d/50-server.cnf"
# The entrypoint initialises the (volume) data directory on first start.
rm -rf "$db/var/lib/mysql" "$db/run/mysqld"
install -d -o 999 -g 999 -m 0755 "$db/var/lib/mysql" "$db/run/mysqld"
install -d "$db/docker-entrypoint-initdb.d"
install -m 0755 "$here/mariadb/docker-entrypoint.sh" "$db/usr/local/bin/docker-entrypoint.sh"
pack "$db" "$work/mariadb-rootfs.tar"
rm -rf --one-file-system "$db"

say "wordpress: installing apache2, PHP and wordpress"
wp=$work/wordpress
apt_install "$wp" apache2 libapache2-mod-php php-mysql wordpress wordpress-theme-twentytwentythree
# The code the entrypoint copies into the /var/www/html volume on first start. Debian's
# tree is full of symlinks into /etc, /var/lib and /usr/share/javascript (some relative):
# dereference them so the copy stands alone; the config comes from the entrypoint.
# Inside the chroot, so absolute links resolve there; dangling ones (.htaccess) are dropped.
in_chroot "$wp" sh -euc 'cd /usr/share/wordpress && find . -xtype l >/tmp/dangling &&
	mkdir -p /usr/src/wordpress && tar -X /tmp/dangling -chf - . | tar -C /usr/src/wordpress -xf - &&
	rm /tmp/dangling'
rm -f "$wp/usr/src/wordpress/wp-config.php"
chown -R 33:33 "$wp/usr/src/wordpress"
rm -rf "$wp/var/www/html"
install -d -o 33 -g 33 "$wp/var/www/html"
# Logs to the container's output, server name set, as the official image.
for log in access.log other_vhosts_access.log; do ln -sfT /dev/stdout "$wp/var/log/apache2/$log"; done
ln -sfT /dev/stderr "$wp/var/log/apache2/error.log"
echo "ServerName localhost" >"$wp/etc/apache2/conf-available/servername.conf"
in_chroot "$wp" a2enconf -q servername
in_chroot "$wp" a2enmod -q rewrite
# Pretty permalinks need .htaccess to work in the document root.
cat >"$wp/etc/apache2/conf-available/docker-php.conf" <<'CONF'
<Directory /var/www/>
	Options -Indexes
	AllowOverride All
</Directory>
DirectoryIndex index.php index.html
CONF
in_chroot "$wp" a2enconf -q docker-php
install -m 0755 "$here/wordpress/docker-entrypoint.sh" "$wp/usr/local/bin/docker-entrypoint.sh"
install -m 0755 "$here/wordpress/apache2-foreground" "$wp/usr/local/bin/apache2-foreground"
pack "$wp" "$work/wordpress-rootfs.tar"
rm -rf --one-file-system "$wp"

path='ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
say "importing mariadb:10.6.4-focal"
rc image import "$work/mariadb-rootfs.tar" mariadb:10.6.4-focal \
	--change "$path" \
	--change 'ENTRYPOINT ["docker-entrypoint.sh"]' \
	--change 'CMD ["mysqld"]' \
	--change 'VOLUME /var/lib/mysql' \
	--change 'EXPOSE 3306' \
	--change 'LABEL org.opencontainers.image.description="Stand-in for mariadb:10.6.4-focal built from Debian bookworm packages"'
say "importing wordpress:latest"
rc image import "$work/wordpress-rootfs.tar" wordpress:latest \
	--change "$path" \
	--change 'ENTRYPOINT ["docker-entrypoint.sh"]' \
	--change 'CMD ["apache2-foreground"]' \
	--change 'VOLUME /var/www/html' \
	--change 'WORKDIR /var/www/html' \
	--change 'EXPOSE 80' \
	--change 'STOPSIGNAL SIGWINCH' \
	--change 'LABEL org.opencontainers.image.description="Stand-in for wordpress:latest built from Debian bookworm packages"'

say "saving both images to $images_dir"
mkdir -p "$work/out"
rc image save -o "$work/out/mariadb.tar" mariadb:10.6.4-focal
rc image save -o "$work/out/wordpress.tar" wordpress:latest
rm -rf "$images_dir"
mv "$work/out" "$images_dir"
# Archives of older script versions are stale.
find "$cache/images" -mindepth 1 -maxdepth 1 ! -name "$key" -exec rm -rf {} +
say "done: mariadb:10.6.4-focal and wordpress:latest"
