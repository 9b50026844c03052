#!/usr/bin/env bash
# Container start benchmark: rcompose's embedded runtime against runc, on the same
# busybox rootfs, timing create+start+wait+delete of /bin/true.
#
# Rows:
#   rcompose plain dir / overlay  per-run lines printed by the bench_run example: one
#                                 long-lived helper serves every run, as in rcompose
#                                 (the supervisor keeps its helper), so each figure is
#                                 the whole create+start+wait+delete of one container,
#                                 timed in-process without the bench's own exec.
#   rcompose unconfined           plain dir with seccomp=unconfined: the filter's cost.
#   rcompose cold (1 run/process) hyperfine on `bench_run --warmup 0 ... 1`: adds the
#                                 exec of the binary and the helper's spawn, the
#                                 upper bound for a one-shot CLI.
#   runc (runc spec)              hyperfine on `runc run`: runc's default spec, args
#                                 /bin/true, terminal false, plus a cgroup namespace
#                                 so the namespaces match rcompose's (mount, network,
#                                 uts, pid, ipc, cgroup). No seccomp filter.
#   runc (rcompose's spec)        hyperfine on `runc run` with the exact OCI spec
#                                 rcompose hands libcontainer (Docker's seccomp
#                                 profile, masked paths, mounts, cgroups path).
# `runc run` is itself create+start+wait+delete, so every row measures the same work.
#
# Usage: bench/container.sh [RUNS]   (default 50; needs root, runc, hyperfine, apt-get)
# Writes bench/container-results.md. Cleans up mounts, cgroups and state on any exit.
set -euo pipefail

RUNS=${1:-50}
REPO=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
RESULTS=$REPO/bench/container-results.md
WORK=$(mktemp -d /tmp/rcompose-bench-XXXXXX)
RUNC_ROOT=$WORK/runc-root
RUNC_ID=rcbench-$$
# Every cgroup this run makes (bench_run's containers, both runc bundles) lives under
# this parent, so cleanup touches nothing else.
CGROUP_PARENT=/rcompose-bench-$$
CHILD=

# Runs a command in the background and waits, so a signal reaches the trap at once.
run_child() {
    "$@" &
    CHILD=$!
    wait "$CHILD"
    CHILD=
}

cgroup_dirs() { # every hierarchy's copy of our cgroup parent
    for hier in /sys/fs/cgroup /sys/fs/cgroup/*; do
        [ -d "$hier$CGROUP_PARENT" ] && echo "$hier$CGROUP_PARENT"
    done
}

cleanup() {
    set +e
    # The bench or hyperfine we started; a killed bench_run's helper exits with it.
    if [ -n "$CHILD" ]; then
        kill "$CHILD" 2>/dev/null
        wait "$CHILD" 2>/dev/null
    fi
    # runc containers a failed run may have left behind.
    if [ -d "$RUNC_ROOT" ]; then
        for id in $(runc --root "$RUNC_ROOT" list -q 2>/dev/null); do
            runc --root "$RUNC_ROOT" delete -f "$id" >/dev/null 2>&1
        done
    fi
    # Container inits orphaned by an interrupted run (a created container waits for
    # its start forever): only processes inside our own cgroups.
    for dir in $(cgroup_dirs); do
        find "$dir" -name cgroup.procs -exec cat {} + 2>/dev/null
    done | sort -u | while read -r pid; do kill -9 "$pid" 2>/dev/null; done
    # Overlays mounted under the work dir, deepest first.
    awk -v w="$WORK" 'index($5, w) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
        while read -r point; do umount -l "$point"; done
    # Killed processes leave their cgroups a moment later: retry.
    for _ in 1 2 3 4 5; do
        for dir in $(cgroup_dirs); do
            find "$dir" -depth -type d -exec rmdir {} \; 2>/dev/null
        done
        [ -z "$(cgroup_dirs)" ] && break
        sleep 0.2
    done
    [ -z "$(cgroup_dirs)" ] || echo "container.sh: could not remove $(cgroup_dirs)" >&2
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

need() { command -v "$1" >/dev/null || { echo "container.sh: $1 is required" >&2; exit 1; }; }
[ "$(id -u)" = 0 ] || { echo "container.sh: needs root" >&2; exit 1; }
for tool in cargo runc hyperfine jq apt-get dpkg; do need "$tool"; done

echo "== building bench_run (release)" >&2
(cd "$REPO" && CARGO_TARGET_DIR=$TARGET cargo build --release -q -p rcompose-runtime --example bench_run)
BENCH=$TARGET/release/examples/bench_run

echo "== busybox rootfs" >&2
mkdir -p "$WORK/deb" "$WORK/rootfs"
# apt-get download drops to the _apt user, which must reach the download dir.
chmod 755 "$WORK" && chmod 777 "$WORK/deb"
(cd "$WORK/deb" && apt-get download -q busybox-static >/dev/null)
dpkg -x "$WORK"/deb/busybox-static_*.deb "$WORK/unpacked"
ROOTFS=$WORK/rootfs
mkdir -p "$ROOTFS"/{bin,dev,etc,proc,sys,tmp,root}
cp "$WORK/unpacked/bin/busybox" "$ROOTFS/bin/busybox"
for applet in $("$ROOTFS/bin/busybox" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$ROOTFS/bin/$applet"
done
echo 'root:x:0:0:root:/root:/bin/sh' >"$ROOTFS/etc/passwd"
echo 'root:x:0:' >"$ROOTFS/etc/group"

echo "== runc bundles" >&2
# Default spec: runc spec, /bin/true, no terminal, cgroup namespace added.
mkdir -p "$WORK/bundle-default" "$WORK/bundle-rcompose" "$RUNC_ROOT"
(cd "$WORK/bundle-default" && runc spec)
jq --arg root "$ROOTFS" '
    .root = {path: $root, readonly: false}
    | .process.args = ["/bin/true"] | .process.terminal = false
    | .linux.namespaces += [{type: "cgroup"}]
    | .linux.cgroupsPath = $cgroup' --arg cgroup "$CGROUP_PARENT/runc-default" \
    "$WORK/bundle-default/config.json" >"$WORK/config.tmp"
mv "$WORK/config.tmp" "$WORK/bundle-default/config.json"
# rcompose's own spec (no runs: N=0, no warm-up).
BENCH_ARGS=(--cgroup-parent "$CGROUP_PARENT")
"$BENCH" "${BENCH_ARGS[@]}" --warmup 0 --emit-spec "$WORK/bundle-rcompose/config.json" \
    "$ROOTFS" "$WORK/state-spec" 0

# Per-run lines: "TOTAL_MS create=.. start=.. wait=.. delete=..".
echo "== rcompose plain dir ($RUNS runs)" >&2
run_child "$BENCH" "${BENCH_ARGS[@]}" "$ROOTFS" "$WORK/state-dir" "$RUNS" >"$WORK/rcompose-dir.txt"
echo "== rcompose overlay ($RUNS runs)" >&2
run_child "$BENCH" "${BENCH_ARGS[@]}" --overlay "$ROOTFS" "$WORK/state-overlay" "$RUNS" \
    >"$WORK/rcompose-overlay.txt"
echo "== rcompose plain dir, seccomp=unconfined ($RUNS runs)" >&2
run_child "$BENCH" "${BENCH_ARGS[@]}" --security-opt seccomp=unconfined \
    "$ROOTFS" "$WORK/state-unconfined" "$RUNS" \
    >"$WORK/rcompose-unconfined.txt"

hyperfine_json() { # NAME COMMAND
    run_child hyperfine -N --warmup 3 -r "$RUNS" --style none --export-json "$WORK/$1.json" "$2" >&2
}
echo "== rcompose cold, runc" >&2
hyperfine_json rcompose-cold \
    "$BENCH --cgroup-parent $CGROUP_PARENT --warmup 0 --overlay $ROOTFS $WORK/state-cold 1"
hyperfine_json runc-default "runc --root $RUNC_ROOT run -b $WORK/bundle-default $RUNC_ID"
hyperfine_json runc-rcompose "runc --root $RUNC_ROOT run -b $WORK/bundle-rcompose $RUNC_ID"

# min / median / mean (ms) of a column of numbers.
stats() {
    sort -n | awk '{ v[NR] = $1; s += $1 }
        END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2;
              printf "%.2f | %.2f | %.2f | %d", v[1], m, s / NR, NR }'
}
# mean of each step column of bench_run's lines.
steps() {
    awk '{ for (i = 2; i <= NF; i++) { split($i, kv, "="); s[kv[1]] += kv[2] } }
        END { printf "create %.2f, start %.2f, wait %.2f, delete %.2f",
              s["create"] / NR, s["start"] / NR, s["wait"] / NR, s["delete"] / NR }' "$1"
}
hyperfine_ms() { jq -r '.results[0].times[] * 1000' "$WORK/$1.json"; }

{
    echo "# Container start: rcompose runtime vs runc"
    echo
    echo "Generated by \`bench/container.sh\` on $(date -u +%Y-%m-%dT%H:%MZ)."
    echo "Commit \`$(git -C "$REPO" rev-parse --short HEAD)\`$(git -C "$REPO" diff --quiet HEAD -- runtime || echo ' (runtime/ has uncommitted changes)')."
    echo
    echo "Each figure is one create+start+wait+delete of \`/bin/true\` on the same"
    echo "busybox-static rootfs, in milliseconds. See the script's header for what each row runs."
    echo
    echo "| row | min | median | mean | runs |"
    echo "|---|---|---|---|---|"
    echo "| rcompose, plain dir (in-process, one helper) | $(stats <"$WORK/rcompose-dir.txt") |"
    echo "| rcompose, overlay (in-process, one helper) | $(stats <"$WORK/rcompose-overlay.txt") |"
    echo "| rcompose, plain dir, seccomp=unconfined (what the filter costs) | $(stats <"$WORK/rcompose-unconfined.txt") |"
    echo "| rcompose, overlay, cold (exec + helper spawn + 1 run) | $(hyperfine_ms rcompose-cold | stats) |"
    echo "| runc run, runc spec (+cgroup ns, no seccomp) | $(hyperfine_ms runc-default | stats) |"
    echo "| runc run, rcompose's spec (Docker seccomp) | $(hyperfine_ms runc-rcompose | stats) |"
    echo
    echo "Mean per step (ms), rcompose plain dir: $(steps "$WORK/rcompose-dir.txt")."
    echo "Mean per step (ms), rcompose overlay: $(steps "$WORK/rcompose-overlay.txt")."
    echo "Mean per step (ms), rcompose unconfined: $(steps "$WORK/rcompose-unconfined.txt")."
    echo
    echo "## Machine"
    echo
    echo "- CPU: $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo) ($(nproc) cores)"
    echo "- Kernel: $(uname -r); cgroups: $([ -f /sys/fs/cgroup/cgroup.controllers ] && echo v2 || echo v1)"
    echo "- runc: $(runc --version | head -1); hyperfine: $(hyperfine --version)"
    echo "- busybox-static: $(dpkg-deb -f "$WORK"/deb/busybox-static_*.deb Version)"
} >"$RESULTS"
cat "$RESULTS"
