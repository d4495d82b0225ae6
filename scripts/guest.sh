#!/usr/bin/env bash
# Runs the project's tests inside a Debian 12 guest VM under qemu: the
# guest boots with systemd as pid 1 and cgroup v2 alone, as our users' hosts
# do, whatever the machine running this script has (CI's is cgroup v1
# hybrid without systemd).
#
#   scripts/guest.sh build                 build the guest image, unless a cached one
#                                          for the same inputs is there already
#   scripts/guest.sh run [PYTEST ARGS...]  build if needed, boot the guest, run
#                                          `python -m pytest ARGS` in it on this
#                                          checkout's working tree, print its
#                                          report and exit with pytest's exit code
#
# The image is made from Debian's packages only (debootstrap, then apt in a
# chroot) and PyPI wheels (the venv of pyproject.toml's dependencies is built
# into the image); no prebuilt VM image is ever downloaded. It is cached in
# $EXECDRIVER_GUEST_CACHE (default /var/cache/execdriver-guest/), one
# directory per hash of its inputs.
#
# Environment (all optional):
#   EXECDRIVER_GUEST_TIMEOUT    limit for one guest run, as timeout(1) reads it (default 40m)
#   EXECDRIVER_GUEST_ACCEL      kvm or tcg (default: kvm where /dev/kvm is a usable one)
#   EXECDRIVER_GUEST_MEMORY     guest memory in MiB (default 4096)
#   EXECDRIVER_GUEST_CPUS       guest CPUs (default 2)
#   EXECDRIVER_GUEST_PASSENV    names of variables to pass to the guest's pytest (e.g. "FUZZ_EXAMPLES")
#   EXECDRIVER_GUEST_ARTIFACTS  a directory to copy the run's serial log, facts, pytest output and journal to
#   EXECDRIVER_GUEST_APPEND     more kernel arguments (e.g. "systemd.log_level=debug" to diagnose a boot)
#   EXECDRIVER_GUEST_MIRROR     Debian mirror (default: the host's, from /etc/apt/sources.list.d/debian.sources)
#
# Exit status of `run`: pytest's; 124 when the guest hit the time limit; 125
# when the guest never reported an exit code (failed boot or setup: the
# serial console's tail is printed); 2 for a usage error.
set -euo pipefail

# Everything is relative to the checkout, wherever the script is started from.
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${EXECDRIVER_GUEST_CACHE:-/var/cache/execdriver-guest}
script_start=$SECONDS

# Bumped by hand when the image changes in a way the hashed inputs below do
# not show (they already take in the image-building functions' code).
IMAGE_FORMAT=1
SUITE=bookworm

# What the guest boots with: the init system and device manager our users
# have, the kernel, kmod for the 9p modules, and the tools the job uses.
# apparmor: Debian's kernel enables AppArmor (CI's host kernel does not), and
# dockerd then refuses to start a container without apparmor_parser to load
# its docker-default profile; our users' hosts have it (docker.io recommends
# it), so the guest's containers get the profile as theirs do.
# libpam-systemd and dbus-user-session: a user's own systemd manager
# (user@UID.service) and its bus, as a desktop or a login has them: the
# rootless tests run containers in the cgroup subtree it is delegated.
BOOT_PACKAGES=(systemd systemd-sysv udev dbus kmod linux-image-amd64 procps util-linux e2fsprogs netbase apparmor
               libpam-systemd dbus-user-session)
# What the tests need: the same list as scripts/setup.sh installs on a host.
TEST_PACKAGES=(busybox-static runc crun containerd podman conmon docker.io python3 python3-venv libnftables1 iproute2
               libseccomp2 golang-github-containers-common tini)
# What this script needs on the host (python3-pip downloads the wheelhouse).
HOST_PACKAGES=(qemu-system-x86 qemu-utils debootstrap e2fsprogs python3 python3-pip git)

VENV=/opt/execdriver/venv

say() { printf 'guest.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

usage() {
    sed -n '7,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

need_root() {
    # debootstrap, chroot and mkfs -d must make root-owned files and device nodes.
    [ "$(id -u)" -eq 0 ] || die "run as root (building the image needs chroot and root-owned files)"
}

ensure_host_packages() {
    # CI runs on fresh machines: install what is missing, and refresh the
    # package lists first, since a fresh machine's may be stale or empty.
    local missing=() package
    for package in "${HOST_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        say "installing on the host: ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

# The mirror URI of a suite, from the host's deb822 sources (the mirror this
# machine is configured to reach), else Debian's default.
host_mirror() {
    local suite=$1 default=$2
    /usr/bin/python3 - "$suite" "$default" <<'PY'
import sys
suite, default = sys.argv[1], sys.argv[2]
try:
    text = open("/etc/apt/sources.list.d/debian.sources", encoding="utf-8").read()
except OSError:
    text = ""
for stanza in text.split("\n\n"):
    fields = {}
    for line in stanza.splitlines():
        if ":" in line and not line.startswith(("#", " ")):
            key, value = line.split(":", 1)
            fields[key.strip()] = value.split()
    if suite in fields.get("Suites", []) and fields.get("URIs"):
        print(fields["URIs"][0])
        break
else:
    print(default)
PY
}

# pyproject.toml's [project].dependencies and its dev extra, one a line, read
# with tomllib so that a dependency added there reaches the image (and its hash).
python_dependencies() {
    /usr/bin/python3 - "$repo/pyproject.toml" <<'PY'
import sys, tomllib
with open(sys.argv[1], "rb") as handle:
    project = tomllib.load(handle)["project"]
extras = project.get("optional-dependencies", {})
# From the test extra, numpy alone: the sandbox templates' preload (tests/test_sandbox.py runs here).
for requirement in project.get("dependencies", []) + extras.get("dev", []) + [
        r for r in extras.get("test", []) if r.startswith("numpy")]:
    print(requirement)
PY
}

# ---------------------------------------------------------------------------
# Building the image. The functions from here to the end of make_disk are
# hashed into the cache key (as `declare -f` prints them, so comments do not
# count), with the package lists and pyproject.toml's dependencies.

# Runs a command in the rootfs with a clean environment: the host's variables
# (PIP_*, proxies, locales) must not leak into the image or its installs.
in_root() {
    env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
        DEBIAN_FRONTEND=noninteractive chroot "$rootfs" "$@"
}

bootstrap_rootfs() {
    local mirror security
    mirror=${EXECDRIVER_GUEST_MIRROR:-$(host_mirror "$SUITE" http://deb.debian.org/debian)}
    security=$(host_mirror "$SUITE-security" http://deb.debian.org/debian-security)
    # minbase: only what apt needs; everything else is named below, with its
    # dependencies and (as setup.sh installs on a host) without recommends.
    debootstrap --variant=minbase --components=main "$SUITE" "$rootfs" "$mirror"
    # The point release alone is behind our users' hosts: take the updates
    # and the security fixes too (the kernel among them), as a host would.
    cat >"$rootfs/etc/apt/sources.list" <<EOF
deb $mirror $SUITE main
deb $mirror $SUITE-updates main
deb $security $SUITE-security main
EOF
    # No daemon may start in the chroot (docker.io's and containerd's
    # maintainer scripts would try): they would run on the host.
    printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
    chmod 0755 "$rootfs/usr/sbin/policy-rc.d"
    # Some maintainer scripts read /proc; the cleanup trap unmounts it.
    mount -t proc proc "$rootfs/proc"
    in_root apt-get update -qq
    in_root apt-get -y -qq -o Dpkg::Options::=--force-confold dist-upgrade
    in_root apt-get install -y -qq --no-install-recommends -o Dpkg::Options::=--force-confold \
        "${BOOT_PACKAGES[@]}" "${TEST_PACKAGES[@]}"
    in_root apt-get clean
    # The guest has no network: the lists would only take space.
    rm -rf "$rootfs"/var/lib/apt/lists/*
    rm -f "$rootfs/usr/sbin/policy-rc.d"
}

install_venv() {
    # The venv is built into the image: made inside the guest under TCG it
    # took minutes per run. The wheels are downloaded on the host (its pip
    # knows the registry; the guest and the chroot need no network), and
    # installed offline with the guest's own interpreter. The project itself
    # is not installed: each run brings its working tree.
    local wheelhouse=$build_tmp/wheelhouse dependencies
    mapfile -t dependencies < <(python_dependencies)
    /usr/bin/python3 -m pip download -q --only-binary=:all: -d "$wheelhouse" "${dependencies[@]}"
    cp -r "$wheelhouse" "$rootfs/tmp/wheelhouse"
    in_root python3 -m venv "$VENV"
    in_root "$VENV/bin/pip" install -q --no-cache-dir --disable-pip-version-check --no-index \
        --find-links /tmp/wheelhouse "${dependencies[@]}"
    rm -rf "$rootfs/tmp/wheelhouse"
}

configure_guest() {
    # Rootless tests run as another user, who must traverse /root to reach
    # the checkout (Debian makes it 0700).
    chmod 0755 "$rootfs/root"
    echo execdriver-guest >"$rootfs/etc/hostname"
    printf '127.0.0.1\tlocalhost\n127.0.1.1\texecdriver-guest\n::1\tlocalhost ip6-localhost ip6-loopback\n' \
        >"$rootfs/etc/hosts"
    # No network, no nameserver; and the host's own resolv.conf, which
    # debootstrap copied, is none of the guest's business.
    : >"$rootfs/etc/resolv.conf"
    # No fsck at boot (pass 0): the image is pristine (runs use -snapshot)
    # and fsck costs seconds under TCG.
    echo '/dev/vda / ext4 rw,errors=remount-ro 0 0' >"$rootfs/etc/fstab"
    # A fixed machine id: an empty one means "first boot", and
    # systemd-firstboot would then prompt on the console and stall the boot.
    rm -f "$rootfs/etc/machine-id"
    in_root systemd-machine-id-setup >/dev/null
    # The tests start dockerd and containerd of their own and check that no
    # other one left state in /run/containerd, as on a host where the
    # engines are installed but not running: keep the system's ones off, and
    # podman's API service and boot-time restarts too (podman's tests run
    # the podman command, which needs no service).
    in_root systemctl disable docker.service docker.socket containerd.service podman.service podman.socket \
        podman-restart.service podman-auto-update.service podman-auto-update.timer 2>/dev/null
    # Timers that would try the network (none) and fail, leaving the system
    # "degraded" for reasons of our making, or take CPU time from the tests.
    in_root systemctl mask apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer 2>/dev/null
    # e2scrub_reap looks for LVM snapshots (there is no LVM here) and held
    # up multi-user.target by about 10 s of each boot under TCG.
    in_root systemctl mask e2scrub_reap.service 2>/dev/null
    # AppArmor stays on, as on users' hosts, with apparmor_parser there for
    # the engines' own profiles (docker-default, containers-default). The
    # profiles the package ships (lsb_release, nvidia_modprobe) confine no
    # program the tests run, and compiling them delayed every boot by about
    # 15 s under TCG (the compiled cache would be lost with -snapshot).
    local profile
    for profile in "$rootfs"/etc/apparmor.d/*; do
        if [ -f "$profile" ]; then ln -sf "/etc/apparmor.d/${profile##*/}" "$rootfs/etc/apparmor.d/disable/"; fi
    done

    # A small initrd: Debian's (MODULES=most, 36 MB) costs about 10 s of
    # each boot under TCG to unpack and run, and the guest needs only its
    # virtio disk and ext4 to mount the root (udev loads the rest later).
    echo MODULES=list >"$rootfs/etc/initramfs-tools/conf.d/execdriver-guest"
    printf '%s\n' virtio_pci virtio_blk ext4 >>"$rootfs/etc/initramfs-tools/modules"
    in_root update-initramfs -u -k all

    # Baked into the image, and so kept tiny: mount the run's share and hand
    # over to the job script in it, which the host writes for each run (so
    # changing what a run does never needs a new image).
    cat >"$rootfs/usr/local/sbin/execdriver-guest-job" <<'EOF'
#!/bin/sh
set -e
# The 9p modules are modules in Debian's kernel, not in the initrd.
modprobe -a 9pnet_virtio 9p
mkdir -p /mnt/job
# A large msize: the default 8 KiB makes reading the checkout's tarball slow.
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 job /mnt/job
exec /bin/bash /mnt/job/job.sh
EOF
    chmod 0755 "$rootfs/usr/local/sbin/execdriver-guest-job"
    # A plain system service, so the tests run in
    # 0::/system.slice/execdriver-guest-job.service as on users' hosts (no
    # Delegate= or other cgroup settings). Type=exec rather than oneshot: a
    # oneshot's start job would last the whole run, and systemd would say
    # "starting" rather than "running" to the tests and the facts. Whichever
    # way the job ends, the guest powers off once the unit has stopped
    # (-force: without stopping every other unit first; everything is still
    # killed and unmounted, and the job has synced), and qemu, started with
    # -no-reboot, exits. Processes the tests left in the unit get SIGKILL
    # after TimeoutStopSec rather than the default 90 s.
    cat >"$rootfs/etc/systemd/system/execdriver-guest-job.service" <<'EOF'
[Unit]
Description=execdriver test job from the host's 9p share, then power off
After=multi-user.target
SuccessAction=poweroff-force
FailureAction=poweroff-force

[Service]
Type=exec
ExecStart=/usr/local/sbin/execdriver-guest-job
Environment=HOME=/root LANG=C.UTF-8
WorkingDirectory=/root
StandardOutput=journal+console
StandardError=journal+console
TimeoutStartSec=infinity
TimeoutStopSec=15s

[Install]
WantedBy=multi-user.target
EOF
    in_root systemctl enable execdriver-guest-job.service 2>/dev/null
}

make_disk() {
    local image=$1
    # The kernel and initrd boot the guest directly (-kernel/-initrd): no
    # boot loader to install, and no loop device needed.
    local kernels=("$rootfs"/boot/vmlinuz-*) initrds=("$rootfs"/boot/initrd.img-*)
    if [ ${#kernels[@]} -ne 1 ] || [ ! -f "${kernels[0]}" ]; then die "expected one kernel: ${kernels[*]}"; fi
    if [ ${#initrds[@]} -ne 1 ] || [ ! -f "${initrds[0]}" ]; then die "expected one initrd: ${initrds[*]}"; fi
    cp "${kernels[0]}" "$image/vmlinuz"
    cp "${initrds[0]}" "$image/initrd.img"
    umount "$rootfs/proc"
    # mkfs -d fills the filesystem from the directory: no loop mount, no
    # mount at all. Sparse: 8 GiB of room for the tests, about 1 GiB used.
    truncate -s 8G "$image/disk.img"
    mkfs.ext4 -q -F -L execdriver-root -d "$rootfs" "$image/disk.img"
}

# ---------------------------------------------------------------------------

image_inputs() {
    echo "format $IMAGE_FORMAT suite $SUITE"
    printf 'package %s\n' "${BOOT_PACKAGES[@]}" "${TEST_PACKAGES[@]}"
    python_dependencies | sed 's/^/python /'
    declare -f in_root bootstrap_rootfs install_venv configure_guest make_disk
}

image_key() { image_inputs | sha256sum | cut -c1-16; }

# Unmounts whatever is mounted below a directory, deepest first, and ends the
# processes left running in a rootfs there (a build interrupted mid-apt):
# both must go before rm -rf, which would otherwise walk into /proc or fail.
release_dir() {
    local dir=$1 target pid root
    for pid in /proc/[0-9]*; do
        root=$(readlink "$pid/root" 2>/dev/null) || continue
        case $root in "$dir"/*) kill -KILL "${pid#/proc/}" 2>/dev/null || true ;; esac
    done
    # (awk, not grep: no match is no failure under pipefail.)
    findmnt -rn -o TARGET | awk -v dir="$dir/" 'index($0, dir) == 1' | sort -r | while read -r target; do
        umount -l "$target" || true
    done
}

cleanup_build() {
    if [ -n "${build_tmp:-}" ] && [ -d "$build_tmp" ]; then
        release_dir "$build_tmp"
        if findmnt -rn -o TARGET | grep -qF "$build_tmp/"; then
            say "not removing $build_tmp: something is still mounted below it"
        else
            rm -rf --one-file-system "$build_tmp"
        fi
    fi
}

build_log=
step() {
    # Each step's output goes to a log, shown when the step fails, so that a
    # build prints a few lines rather than thousands.
    local name=$1 started=$SECONDS
    shift
    say "build: $name..."
    # Not `if ! "$@"`: bash ignores set -e in functions run as a condition,
    # so a failing command mid-stage would go unnoticed. A subshell with -e,
    # run as a plain command with -e off around it, stops at the first failure.
    local status
    set +e
    (set -e; "$@") >>"$build_log" 2>&1
    status=$?
    set -e
    if [ "$status" -ne 0 ]; then
        say "build: $name failed ($status); the end of its log:"
        tail -n 60 "$build_log" >&2
        exit 1
    fi
    say "build: $name took $((SECONDS - started)) s"
}

build_seconds=
image=
cmd_build() {
    need_root
    ensure_host_packages
    local key started
    key=$(image_key)
    image=$cache/$key
    if [ -f "$image/disk.img" ]; then
        say "image: cached ($image)"
        build_seconds=cached
        return
    fi
    mkdir -p "$cache"
    # One build at a time: a second one waits, then finds the first's image.
    exec 9>"$cache/.lock"
    flock 9
    if [ -f "$image/disk.img" ]; then
        say "image: cached ($image), built meanwhile"
        build_seconds=cached
        exec 9>&-
        return
    fi
    # Leftovers of a build that was killed outright (SIGKILL, power cut):
    # holding the lock, no build of ours is using them.
    local stale
    for stale in "$cache"/.build.*; do
        [ -d "$stale" ] || continue
        build_tmp=$stale cleanup_build
    done
    started=$SECONDS
    # Built beside the cache (one filesystem, so the final mv is a rename)
    # and moved into place only when complete: no half image is ever found
    # under its key, after a failure or ^C alike.
    build_tmp=$(mktemp -d "$cache/.build.XXXXXX")
    trap cleanup_build EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    rootfs=$build_tmp/rootfs
    build_log=$build_tmp/build.log
    mkdir "$build_tmp/image"
    say "building the image $key in $build_tmp (log: $build_log)"
    step "debootstrap and Debian packages" bootstrap_rootfs
    step "python venv" install_venv
    step "configuration" configure_guest
    step "disk image" make_disk "$build_tmp/image"
    image_inputs >"$build_tmp/image/inputs.txt"
    mv -T "$build_tmp/image" "$image"
    cleanup_build
    trap - EXIT INT TERM
    build_tmp=
    # Only the current image is kept: each takes about a gigabyte.
    local other
    for other in "$cache"/*/; do
        other=${other%/}
        if [ "$other" != "$image" ] && [[ ${other##*/} =~ ^[0-9a-f]{16}$ ]]; then
            rm -rf --one-file-system "$other"
        fi
    done
    exec 9>&-
    build_seconds=$((SECONDS - started))
    say "image: built in $build_seconds s ($image, $(du -sh "$image/disk.img" | cut -f1) on disk)"
}

# ---------------------------------------------------------------------------
# Running.

# The job script, run by bash in the guest once the share is mounted; the
# host prepends `set -- ARGS` (pytest's arguments) and the passed variables.
job_body() {
    cat <<'EOF'
set -uo pipefail
job=/mnt/job
venv=/opt/execdriver/venv
# Markers: the host times the run's phases by its own clock as these appear.
mark() { : >"$job/$1"; }
fail() { echo "execdriver-guest: setup failed: $*"; sync; exit 1; }
mark started
echo "execdriver-guest: job started"

# The checkout, extracted where the tests run, as root's like a host's.
rm -rf /root/execdriver && mkdir -p /root/execdriver
tar -xf "$job/src.tar" -C /root/execdriver || fail "extracting the checkout"
cd /root/execdriver || fail "cd /root/execdriver"
# As `pip install -e . --config-settings editable_mode=compat` would leave
# it: a .pth with the checkout's path, which bin/execdriver reads too...
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))') || fail "finding site-packages"
echo /root/execdriver >"$site/__editable__.execdriver.pth"
# ... and the command and frozen modules compiled, as scripts/setup.sh does.
cp bin/execdriver "$venv/bin/execdriver" && chmod 0755 "$venv/bin/execdriver" || fail "installing bin/execdriver"
"$venv/bin/python" -m execdriver.freeze --launcher bin/execdriver "$venv/bin/execdriver" >/dev/null \
    || fail "python -m execdriver.freeze"

# What the tests see of the system, for the report.
state=$(timeout 300 systemctl is-system-running --wait 2>&1)
{
    echo "uname -r: $(uname -r)"
    echo "/proc/self/cgroup: $(cat /proc/self/cgroup)"
    echo "cgroup.subtree_control: $(cat /sys/fs/cgroup/cgroup.subtree_control)"
    echo "propagation of /: $(findmnt -n -o PROPAGATION /)"
    echo "is-system-running: $state"
    [ "$state" = running ] || systemctl --failed --no-legend --plain | sed 's/^/failed unit: /'
    echo "boot: $(systemd-analyze time 2>/dev/null | head -n 1)"
    echo "python: $("$venv/bin/python" --version)"
} >"$job/facts.txt" 2>&1
cat "$job/facts.txt"

mark tests-started
"$venv/bin/python" -m pytest "$@" 2>&1 | tee "$job/pytest.log"
code=${PIPESTATUS[0]}
journalctl -b --no-pager >"$job/journal.txt" 2>&1
# Written last, by a rename: the host takes its presence as the end.
echo "$code" >"$job/exit-code.new" && mv "$job/exit-code.new" "$job/exit-code"
sync
echo "execdriver-guest: pytest exited $code"
EOF
}

write_job() {
    local share=$1 name
    shift
    {
        echo '#!/bin/bash'
        # pytest's arguments, each quoted for bash: they reach pytest exactly.
        printf 'set --'
        printf ' %q' "$@"
        echo
        for name in ${EXECDRIVER_GUEST_PASSENV:-}; do
            [[ $name =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "EXECDRIVER_GUEST_PASSENV: not a variable name: $name"
            [ -n "${!name+set}" ] && printf 'export %s=%q\n' "$name" "${!name}"
        done
        job_body
    } >"$share/job.sh"
}

# The working tree as git sees it, uncommitted edits and new files included
# (ignored ones not), without what is built or cached locally.
write_checkout() {
    local tarball=$1
    git -C "$repo" ls-files -z --cached --others --exclude-standard \
        | grep -zvE '(^|/)(\.venv|\.git|__pycache__)(/|$)' \
        | while IFS= read -r -d '' path; do
            # Tracked files deleted in the working tree are listed too.
            if [ -e "$repo/$path" ] || [ -L "$repo/$path" ]; then printf '%s\0' "$path"; fi
        done \
        | tar -C "$repo" --null --no-recursion -T - --owner=0 --group=0 --numeric-owner -cf "$tarball"
}

qemu_pid=
tail_pid=
work=
cleanup_run() {
    # A guest still running (^C, an error here) is stopped: nothing of a
    # run may outlive it. timeout passes the TERM on to qemu.
    if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then
        kill -TERM "$qemu_pid" 2>/dev/null || true
        wait "$qemu_pid" 2>/dev/null || true
    fi
    if [ -n "$tail_pid" ] && kill -0 "$tail_pid" 2>/dev/null; then
        kill "$tail_pid" 2>/dev/null || true
        wait "$tail_pid" 2>/dev/null || true
    fi
    if [ -n "$work" ] && [ -d "$work" ]; then
        rm -rf --one-file-system "$work"
    fi
}

accelerator() {
    # This machine kind's /dev/kvm is kvm_pvm, which boots only PVM kernels
    # (Debian's hangs): KVM only where /dev/kvm is a plain one, else TCG.
    local accel=${EXECDRIVER_GUEST_ACCEL:-}
    if [ -z "$accel" ]; then
        if [ -e /dev/kvm ] && [ ! -e /sys/module/kvm_pvm ]; then accel=kvm; else accel=tcg; fi
    fi
    case $accel in
    kvm) echo "-accel kvm -cpu host" ;;
    tcg) echo "-accel tcg,thread=multi,tb-size=512 -cpu max" ;;
    *) die "EXECDRIVER_GUEST_ACCEL: kvm or tcg, not $accel" ;;
    esac
}

elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f s", b - a }'; }
now() { date +%s.%N; }

cmd_run() {
    cmd_build
    local limit=${EXECDRIVER_GUEST_TIMEOUT:-40m} accel share
    accel=$(accelerator)
    work=$(mktemp -d "${TMPDIR:-/tmp}/execdriver-guest.XXXXXX")
    trap cleanup_run EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    # The share holds what goes in and what comes back; the serial log and
    # qemu's own messages stay outside it, on the host.
    share=$work/share
    mkdir "$share"
    write_checkout "$share/src.tar"
    write_job "$share" "$@"

    say "booting the guest ($accel; limit $limit)"
    local boot_start job_start='' tests_start='' tests_end='' qemu_end status=0
    boot_start=$(now)
    # -snapshot: the guest's writes go to a temporary overlay, the cached
    # image stays pristine. cache=unsafe: those writes are thrown away, so
    # the guest's flushes need not reach the disk. -nic none: the tests need
    # no network outside the guest. panic=1 with -no-reboot: a kernel panic
    # ends qemu at once rather than at the time limit. q35 and -nodefaults:
    # none of the pc machine's floppy, parallel port, VGA and default NIC,
    # whose drivers the guest would otherwise probe and load at every boot.
    # shellcheck disable=SC2086 # $accel is several words on purpose
    timeout --kill-after=30s "$limit" qemu-system-x86_64 \
        -name execdriver-guest -machine q35 -nodefaults $accel \
        -m "${EXECDRIVER_GUEST_MEMORY:-4096}" -smp "${EXECDRIVER_GUEST_CPUS:-2}" \
        -kernel "$image/vmlinuz" -initrd "$image/initrd.img" \
        -append "root=/dev/vda rw console=ttyS0 systemd.unified_cgroup_hierarchy=1 panic=1 ${EXECDRIVER_GUEST_APPEND:-}" \
        -drive "file=$image/disk.img,format=raw,if=virtio,cache=unsafe" -snapshot \
        -virtfs "local,path=$share,mount_tag=job,security_model=none" \
        -device virtio-rng-pci \
        -nic none -display none -monitor none -serial "file:$work/serial.log" -no-reboot \
        >"$work/qemu.log" 2>&1 &
    qemu_pid=$!
    # The host watches the share for the job's markers, and streams pytest's
    # output as it comes (a long run is not silent until its end).
    while kill -0 "$qemu_pid" 2>/dev/null; do
        if [ -z "$job_start" ] && [ -e "$share/started" ]; then
            job_start=$(now)
            say "guest: job started, $(elapsed "$boot_start" "$job_start") after qemu"
        fi
        if [ -z "$tests_start" ] && [ -e "$share/tests-started" ]; then
            tests_start=$(now)
            sed 's/^/guest: /' "$share/facts.txt" >&2
            tail -n +1 -F --pid="$qemu_pid" "$share/pytest.log" 2>/dev/null &
            tail_pid=$!
        fi
        if [ -z "$tests_end" ] && [ -e "$share/exit-code" ]; then
            tests_end=$(now)
        fi
        sleep 0.2
    done
    wait "$qemu_pid" || status=$?
    qemu_pid=
    qemu_end=$(now)
    [ -z "$tests_end" ] && [ -e "$share/exit-code" ] && tests_end=$qemu_end
    if [ -n "$tail_pid" ]; then
        wait "$tail_pid" 2>/dev/null || true
        tail_pid=
    fi

    if [ -n "${EXECDRIVER_GUEST_ARTIFACTS:-}" ]; then
        mkdir -p "$EXECDRIVER_GUEST_ARTIFACTS"
        cp -f "$work/serial.log" "$work/qemu.log" "$EXECDRIVER_GUEST_ARTIFACTS/" 2>/dev/null || true
        cp -f "$share"/{facts.txt,pytest.log,journal.txt,exit-code} "$EXECDRIVER_GUEST_ARTIFACTS/" 2>/dev/null || true
    fi

    local code=''
    [ -e "$share/exit-code" ] && code=$(cat "$share/exit-code")
    if ! [[ $code =~ ^[0-9]+$ ]]; then
        # No report: show why, from the serial console (kernel, systemd and
        # the job's own messages) and qemu's.
        [ -s "$share/pytest.log" ] || say "the guest wrote no pytest output"
        say "the serial console's last lines:"
        tail -n 80 "$work/serial.log" >&2 2>/dev/null || true
        [ -s "$work/qemu.log" ] && { say "qemu said:"; cat "$work/qemu.log" >&2; }
    fi

    # A phase that never began or ended (a failed boot) reads "none".
    local build_time=cached boot_time=none tests_time=none poweroff_time=none
    [ "$build_seconds" = cached ] || build_time="$build_seconds s"
    [ -n "$job_start" ] && boot_time=$(elapsed "$boot_start" "$job_start")
    [ -n "$tests_start" ] && [ -n "$tests_end" ] && tests_time=$(elapsed "$tests_start" "$tests_end")
    [ -n "$tests_end" ] && poweroff_time=$(elapsed "$tests_end" "$qemu_end")
    say "timings: build $build_time, boot-to-job $boot_time, tests $tests_time," \
        "power-off $poweroff_time, total $((SECONDS - script_start)) s"
    if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
        say "the guest did not finish within $limit (EXECDRIVER_GUEST_TIMEOUT)"
        [[ $code =~ ^[0-9]+$ ]] || exit 124
    fi
    if ! [[ $code =~ ^[0-9]+$ ]]; then
        say "the guest never reported pytest's exit code (qemu exited $status)"
        exit 125
    fi
    say "pytest in the guest exited $code"
    exit "$code"
}

case ${1:-} in
build)
    [ $# -eq 1 ] || usage
    cmd_build
    ;;
run)
    shift
    need_root
    cmd_run "$@"
    ;;
*)
    usage
    ;;
esac
