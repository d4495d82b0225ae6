#!/usr/bin/env bash
# Installs everything execdriver needs on a fresh Debian machine (as root),
# then runs the demo container or the whole test suite:
#
#   scripts/setup.sh demo        install, then run a demo container
#   scripts/setup.sh test [ARGS] install, then lint, type-check and run the tests:
#                                the fast tier as nobody, all of them (or ARGS) on
#                                this host, then (without ARGS) the v2 tier in
#                                a cgroup v2 + systemd guest (scripts/guest.sh)
#
# Debian packages: busybox-static (a static busybox for the tests' root
# filesystems), runc and crun (the peers that bench/ measures against),
# containerd (an engine that the tests drive execdriver with), python3 and
# python3-venv (the interpreter; see below), libnftables1 (nftables rules
# of published ports), iproute2 (the network tests' outside hosts).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-demo}
[ $# -gt 0 ] && shift

if [ "$(id -u)" -ne 0 ]; then
    echo "setup.sh: containers need root; run as root" >&2
    exit 1
fi

# python3-venv: the virtual environment, on Debian's own interpreter.
# containerd, podman (with conmon) and docker.io: the tests drive execdriver
# through them as engines would. libnftables1: published ports' rules;
# iproute2: the network tests build their outside hosts with ip.
# libseccomp2 compiles seccomp profiles; golang-github-containers-common's
# seccomp.json is the base of the default profile (seccomp.py says how).
# tini: --init's reaper (its static build is copied into the container).
# bubblewrap: a peer of the sandboxes in bench/sandbox.py.
packages=(busybox-static runc crun containerd podman conmon docker.io python3 python3-venv libnftables1 iproute2
          libseccomp2 golang-github-containers-common tini bubblewrap)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Debian's interpreter (statically linked, built with PGO and LTO) starts
# and runs faster than a shared-library build such as pyenv's, and every
# CLI start pays for it. Never a version-manager shim. PYTHON overrides.
python=${PYTHON:-/usr/bin/python3}
python=$("$python" -c 'import os, sys; print(os.path.realpath(sys.executable))')
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "setup.sh: $python is older than 3.11" >&2; exit 1; }
if [ -f .venv/pyvenv.cfg ] && ! grep -qx "executable = $python" .venv/pyvenv.cfg; then
    rm -rf .venv  # made with another interpreter
fi
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
# compat mode: a plain path in a .pth file, which bin/execdriver reads without site
# dev: the test tools; test: the Kubernetes test's CRI client (pyproject.toml says which is which)
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev,test]' --config-settings editable_mode=compat
# Our modules compiled into one file, which the command imports from, and the
# command itself compiled, started by the kernel as the venv's interpreter
# with -IS (no shell): see execdriver/freeze.py.
.venv/bin/python -m execdriver.freeze --launcher bin/execdriver .venv/bin/execdriver >/dev/null

# The guest's tier (README, "The guest"): every test file whose subject
# differs on a cgroup v2 + systemd host. Under qemu's TCG they run about four
# times slower than here, so the rest (networking, the CLI's terminals, docs,
# soak and fuzz runs, which behave alike on both) stay on this host.
GUEST_TIER=(tests/test_api.py tests/test_oci.py tests/test_security.py tests/test_userns.py tests/test_pool.py
            tests/test_cgroups.py tests/test_cgroup_v2.py tests/test_systemd.py tests/test_propagation.py
            tests/test_run.py tests/test_exec.py tests/test_update.py tests/test_containerd.py tests/test_podman.py
            tests/test_docker.py tests/test_sandbox.py)

case "$mode" in
demo)
    .venv/bin/execdriver sandbox --hostname demo -- sh -c '
        echo "hello from $(hostname): I am pid $$ in my own pid namespace"
        echo "processes I can see:"; ps -o pid,comm 2>/dev/null || ls /proc | grep -E "^[0-9]+$"
        echo "network interfaces: $(ls /sys/class/net | tr "\n" " ")"
        touch /etc/demo 2>/dev/null && echo "root is writable?!" || echo "the host root is read-only in here"
        echo scratch > /tmp/demo && echo "/tmp is private and writable"'
    ;;
test)
    .venv/bin/ruff check execdriver tests bench examples
    .venv/bin/mypy
    # The fast tier first (tests/fast, marked fast: pure functions, a few
    # seconds): a slip there shows before the minutes of containers. It runs
    # as user nobody, which proves it needs no root; that user may write
    # nowhere in the tree, hence no cache and no bytecode. A tree or .venv
    # that others cannot read (checked out under umask 077) leaves it to root.
    nobody=(setpriv --reuid=65534 --regid=65534 --clear-groups env PYTHONDONTWRITEBYTECODE=1)
    fast=(.venv/bin/python -m pytest -q -p no:cacheprovider -m fast tests/fast)
    if "${nobody[@]}" .venv/bin/python -c 'import execdriver.api, hypothesis, pytest, tests.fast.cgroupfs' 2>/dev/null; then
        "${nobody[@]}" "${fast[@]}"
    else
        echo "setup.sh: user nobody cannot read the tree or .venv; the fast tier runs as root" >&2
        "${fast[@]}"
    fi
    # Then every test as root, the fast tier again among them: as root its
    # code takes other paths (capabilities held, the session fixtures' checks).
    .venv/bin/python -m pytest "$@"
    # Our users' hosts run systemd on cgroup v2 alone; this kind of machine has
    # neither. So the tests of what differs there (cgroups, the systemd driver,
    # shared mounts, the pool, the engines' systemd managers) run again in a
    # Debian 12 guest that has both. Only the whole run does it: a developer
    # choosing tests chooses this host (scripts/guest.sh run ARGS for the guest).
    if [ $# -eq 0 ] && [ "${EXECDRIVER_GUEST:-1}" != 0 ]; then
        # Under emulation a test's timing can go several times over the host's: a
        # test that failed (exit 1) is run once more, in a fresh boot, and both
        # results are printed. Anything else (a guest that never reported) fails.
        report=$(mktemp)
        trap 'rm -f "$report"' EXIT
        status=0
        bash scripts/guest.sh run -q -p no:cacheprovider "${GUEST_TIER[@]}" | tee "$report" || status=$?
        if [ "$status" -eq 1 ]; then
            mapfile -t failed < <(sed -n 's/^\(FAILED\|ERROR\) \([^ ]*\).*/\2/p' "$report" | sort -u)
            if [ ${#failed[@]} -gt 0 ] && [ ${#failed[@]} -le 5 ]; then
                echo "setup.sh: the guest tier failed ${#failed[@]} test(s); running them once more: ${failed[*]}" >&2
                status=0
                bash scripts/guest.sh run -q -p no:cacheprovider "${failed[@]}" || status=$?
            fi
        fi
        exit "$status"
    fi
    ;;
*)
    echo "usage: scripts/setup.sh demo|test [pytest args]" >&2
    exit 2
    ;;
esac
