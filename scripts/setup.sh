#!/usr/bin/env bash
# Installs everything execdriver needs on a fresh Debian machine (as root),
# then runs the demo container or the whole test suite:
#
#   scripts/setup.sh demo        install, then run a demo container
#   scripts/setup.sh test [ARGS] install, then lint, type-check and run the tests
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
packages=(busybox-static runc crun containerd podman conmon docker.io python3 python3-venv libnftables1 iproute2
          libseccomp2 golang-github-containers-common tini)
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
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]' --config-settings editable_mode=compat
# Our modules compiled into one file, which the command imports from, and the
# command itself compiled, started by the kernel as the venv's interpreter
# with -IS (no shell): see execdriver/freeze.py.
.venv/bin/python -m execdriver.freeze --launcher bin/execdriver .venv/bin/execdriver >/dev/null

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
    .venv/bin/python -m pytest "$@"
    ;;
*)
    echo "usage: scripts/setup.sh demo|test [pytest args]" >&2
    exit 2
    ;;
esac
