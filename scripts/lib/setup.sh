# What a fresh Debian machine lacks, shared by .ci/run and scripts/wordpress (sourced).

# need CHECK PACKAGE: queues PACKAGE for apt-get when CHECK (a command on PATH, or an
# absolute path) is missing.
needed_packages=()
need() {
	case $1 in
	/*) [ -e "$1" ] && return 0 ;;
	*) command -v "$1" >/dev/null && return 0 ;;
	esac
	needed_packages+=("$2")
}

# Installs the queued packages, if any.
install_needed() {
	[ ${#needed_packages[@]} -gt 0 ] || return 0
	echo "==> apt-get install ${needed_packages[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq "${needed_packages[@]}" >/dev/null
	needed_packages=()
}

# Puts cargo on PATH: the one already there, rustup's in ~/.cargo, or a new stable
# toolchain from rustup (Debian's own rustc is too old for the dependencies).
ensure_rust() {
	command -v cargo >/dev/null && return 0
	if [ ! -x "$HOME/.cargo/bin/cargo" ]; then
		command -v curl >/dev/null || { need curl curl; install_needed; }
		echo "==> installing a stable Rust toolchain with rustup (into ~/.cargo)" >&2
		curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs |
			sh -s -- -y --quiet --profile minimal --default-toolchain stable >&2
	fi
	export PATH="$HOME/.cargo/bin:$PATH"
}

# Packages the build needs: a C toolchain (libcontainer's build scripts) and libseccomp
# (Docker's default seccomp profile), found through pkg-config.
need_build_packages() {
	need gcc build-essential
	need pkg-config pkg-config
	dpkg -s libseccomp-dev >/dev/null 2>&1 || needed_packages+=(libseccomp-dev)
}

# Tools the embedded engine runs: nftables for published ports and isolation, iptables
# where dockerd set FORWARD to DROP.
need_engine_packages() {
	need nft nftables
	need iptables iptables
}
