#!/usr/bin/env bash
# Orchestration benchmark: rcompose on its embedded engine against docker-compose 1.29
# (Debian's package) on Debian's dockerd, same machine, same run, same images:
#   - `up -d` of 50 busybox services (`sleep`) on one network, image already present;
#   - `down -t 0` of the same project;
#   - `logs` of a service that printed 200,000 lines;
#   - memory (PSS) of what keeps the 50 running: rcompose's supervisor and container
#     monitors, against dockerd + containerd + its shims.
#
# Usage: bench/up.sh [RUNS]   (default 5; needs root, apt-get, hyperfine)
# Writes bench/up-results.md. Removes its projects, images and state on exit.
set -euo pipefail

RUNS=${1:-5}
LOAD_AT_START=$(cut -d" " -f1-3 /proc/loadavg)
REPO=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
RESULTS=$REPO/bench/up-results.md
WORK=$(mktemp -d /tmp/rcompose-bench-up-XXXXXX)
ROOT=$WORK/root
RC=$TARGET/release/rcompose

need() { command -v "$1" >/dev/null || apt-get install -y -qq "$2" >/dev/null; }
need hyperfine hyperfine
need docker-compose docker-compose
need dockerd docker.io

DOCKER_HOST=$("$REPO/scripts/test-dockerd")
export DOCKER_HOST

cleanup() {
    set +e
    (cd "$WORK/p50" && "$RC" --root "$ROOT" -p bench50 down -t 0 -v >/dev/null 2>&1)
    (cd "$WORK/logs" && "$RC" --root "$ROOT" -p benchlogs down -t 0 -v >/dev/null 2>&1)
    (cd "$WORK/p50" && docker-compose -p bench50 down -t 0 -v >/dev/null 2>&1)
    (cd "$WORK/logs" && docker-compose -p benchlogs down -t 0 -v >/dev/null 2>&1)
    docker rmi -f rcbench-busybox:latest >/dev/null 2>&1
    grep " $WORK" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l
    rm -rf "$WORK"
}
trap cleanup EXIT

(cd "$REPO" && cargo build --release --quiet --bin rcompose)

# One busybox rootfs, imported into both engines under the same name.
(cd "$WORK" && apt-get download -q busybox-static >/dev/null && dpkg -x busybox-static_*.deb deb)
mkdir -p "$WORK/rootfs/bin" "$WORK/rootfs/etc" "$WORK/rootfs/tmp"
cp "$WORK/deb/bin/busybox" "$WORK/rootfs/bin/"
for applet in sh sleep seq echo cat; do ln -sf busybox "$WORK/rootfs/bin/$applet"; done
echo "root:x:0:0:root:/root:/bin/sh" > "$WORK/rootfs/etc/passwd"
echo "root:x:0:" > "$WORK/rootfs/etc/group"
tar -C "$WORK/rootfs" -cf "$WORK/busybox.tar" .
"$RC" --root "$ROOT" image import "$WORK/busybox.tar" rcbench-busybox:latest >/dev/null
docker import "$WORK/busybox.tar" rcbench-busybox:latest >/dev/null

mkdir -p "$WORK/p50" "$WORK/logs"
{
    echo "services:"
    for i in $(seq 1 50); do
        printf '  s%d:\n    image: rcbench-busybox:latest\n    command: ["sleep", "3600"]\n' "$i"
    done
} > "$WORK/p50/compose.yaml"
cat > "$WORK/logs/compose.yaml" <<'EOF'
services:
  talker:
    image: rcbench-busybox:latest
    command: ["sh", "-c", "seq 200000; sleep 3600"]
EOF

rc() { (cd "$1" && shift && "$RC" --root "$ROOT" "$@"); }
export -f rc
export RC ROOT WORK

hyperfine --runs "$RUNS" --export-markdown "$WORK/up.md" \
    --prepare "cd $WORK/p50 && $RC --root $ROOT -p bench50 down -t 0 >/dev/null 2>&1 || true" \
    -n "rcompose up -d (50)" "cd $WORK/p50 && $RC --root $ROOT -p bench50 up -d --progress quiet" \
    --prepare "cd $WORK/p50 && docker-compose -p bench50 down -t 0 >/dev/null 2>&1 || true" \
    -n "docker-compose up -d (50)" "cd $WORK/p50 && docker-compose -p bench50 up -d >/dev/null 2>&1"

hyperfine --runs "$RUNS" --export-markdown "$WORK/down.md" \
    --prepare "cd $WORK/p50 && $RC --root $ROOT -p bench50 up -d --progress quiet" \
    -n "rcompose down -t 0 (50)" "cd $WORK/p50 && $RC --root $ROOT -p bench50 down -t 0 --progress quiet" \
    --prepare "cd $WORK/p50 && docker-compose -p bench50 up -d >/dev/null 2>&1" \
    -n "docker-compose down -t 0 (50)" "cd $WORK/p50 && docker-compose -p bench50 down -t 0 >/dev/null 2>&1"

# Memory of what keeps 50 containers running.
rc "$WORK/p50" -p bench50 up -d --progress quiet
(cd "$WORK/p50" && docker-compose -p bench50 up -d >/dev/null 2>&1)
sleep 2
pss_of() { # pids... -> total PSS in KiB
    local total=0 pid
    for pid in "$@"; do
        total=$((total + $(awk '/^Pss:/ {s+=$2} END {print s+0}' "/proc/$pid/smaps_rollup" 2>/dev/null || echo 0)))
    done
    echo "$total"
}
rc_pids=$(pgrep -f "__rcompose-supervisor $ROOT bench50|__rcompose-runtime-helper" || true)
# A monitor works in its container's directory (the container's own processes are
# under .../merged).
rc_monitors=$(for p in /proc/[0-9]*; do
    cwd=$(readlink "$p/cwd" 2>/dev/null || true)
    case "$cwd" in "$ROOT"/containers/bench50-*/*) ;; "$ROOT"/containers/bench50-*) echo "${p#/proc/}" ;; esac
done)
# Each process once: the monitors are forks of the helper and match both lists.
rc_pss=$(pss_of $(printf '%s\n' $rc_pids $rc_monitors | sort -u))
docker_pids="$(cat /run/rcompose-test-docker.pid) $(pgrep -x containerd || true) $(pgrep -f containerd-shim || true)"
docker_pss=$(pss_of $docker_pids)
rc "$WORK/p50" -p bench50 down -t 0 --progress quiet
(cd "$WORK/p50" && docker-compose -p bench50 down -t 0 >/dev/null 2>&1)

# Logs of a service that printed 200,000 lines.
rc "$WORK/logs" -p benchlogs up -d --progress quiet
(cd "$WORK/logs" && docker-compose -p benchlogs up -d >/dev/null 2>&1)
for _ in $(seq 1 100); do
    n=$(rc "$WORK/logs" -p benchlogs logs --no-log-prefix talker 2>/dev/null | wc -l)
    [ "$n" -ge 200000 ] && break
    sleep 0.2
done
hyperfine --runs "$RUNS" --warmup 1 --export-markdown "$WORK/logs.md" \
    -n "rcompose logs (200k lines)" "cd $WORK/logs && $RC --root $ROOT -p benchlogs logs talker >/dev/null" \
    -n "docker-compose logs (200k lines)" "cd $WORK/logs && docker-compose -p benchlogs logs talker >/dev/null"

{
    echo "# Orchestration: rcompose (embedded engine) vs docker-compose 1.29 (dockerd)"
    echo
    echo "Generated by \`bench/up.sh $RUNS\` on $(date -u +%Y-%m-%dT%H:%MZ), commit \`$(cd "$REPO" && git rev-parse --short HEAD)\`."
    echo "Load average when it started: $LOAD_AT_START (other builds may share the machine)."
    echo "Machine: $(nproc) cores, kernel $(uname -r), $(docker version --format 'dockerd {{.Server.Version}}' 2>/dev/null)."
    echo
    echo "## up -d, 50 services"; echo; cat "$WORK/up.md"; echo
    echo "## down -t 0, 50 services"; echo; cat "$WORK/down.md"; echo
    echo "## logs of 200,000 lines"; echo; cat "$WORK/logs.md"; echo
    echo "## Memory (PSS) keeping the 50 running"
    echo
    echo "| engine | PSS |"
    echo "|---|---:|"
    echo "| rcompose: supervisor + helper + 50 monitors | $((rc_pss / 1024)) MiB |"
    echo "| dockerd + containerd + shims | $((docker_pss / 1024)) MiB |"
} > "$RESULTS"
cat "$RESULTS"
