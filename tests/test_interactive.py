"""The CLI's interactive terminals (sandbox -t, exec -t), driven through a real pty pair."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import termios
import time
import uuid
from pathlib import Path

from execdriver.cli.oci.spec import default_config
from execdriver.linux import terminal

CLI = [sys.executable, "-m", "execdriver"]


def drive(argv: list[str], answer: tuple[bytes, bytes] | None = None) -> tuple[int, bytes, bool, bool]:
    """Run ``argv`` on the slave of a 20x70 pty; type answer[1] once answer[0] shows.

    Returns the exit code, everything shown, whether the terminal was raw
    while it ran, and whether it came back as it was.
    """
    master, slave = os.openpty()
    try:
        terminal.set_size(slave, 20, 70)
        before = termios.tcgetattr(slave)
        process = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
        shown, raw = b"", False
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            ready = select.select([master], [], [], 0.05)[0]
            if ready:
                try:
                    shown += os.read(master, 4096)
                except OSError:
                    break
            if answer is not None and answer[0] in shown:
                raw = termios.tcgetattr(slave)[3] & termios.ICANON == 0
                os.write(master, answer[1])
                answer = None
            if not ready and process.poll() is not None:
                break
        code = process.wait(10)
        return code, shown, raw, termios.tcgetattr(slave) == before
    finally:
        os.close(master)
        os.close(slave)


def test_sandbox_tty(busybox_rootfs: Path, tmp_path: Path) -> None:
    script = "tty; stty size; echo ready; read line; echo got $line; exit 4"
    code, shown, raw, restored = drive([*CLI, "--root", str(tmp_path / "state"), "sandbox", "-t", "--rootfs",
                                        str(busybox_rootfs), "sh", "-c", script], (b"ready", b"hello\r"))
    assert code == 4
    assert shown.split(b"\r\n")[:2] == [b"/dev/pts/0", b"20 70"] and b"got hello" in shown
    assert raw and restored


def test_exec_tty_without_a_console_socket(busybox_rootfs: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    os.symlink(busybox_rootfs, bundle / "rootfs")
    config = default_config()
    config["process"].update(args=["sleep", "60"], terminal=False)
    (bundle / "config.json").write_text(json.dumps(config))
    root, container_id = str(tmp_path / "state"), f"i-{uuid.uuid4().hex[:10]}"
    subprocess.run([*CLI, "--root", root, "run", "-d", "--bundle", str(bundle), container_id], check=True,
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, timeout=20)
    try:
        script = "tty; stty size; echo ready; read line; echo got $line"
        code, shown, raw, restored = drive([*CLI, "--root", root, "exec", "-t", container_id, "sh", "-c", script],
                                           (b"ready", b"there\r"))
        assert code == 0
        assert shown.split(b"\r\n")[:2] == [b"/dev/pts/0", b"20 70"] and b"got there" in shown
        assert raw and restored
    finally:
        subprocess.run([*CLI, "--root", root, "delete", "--force", container_id], check=False, timeout=20)


def _terminal_bundle(busybox_rootfs: Path, tmp_path: Path, args: list[str]) -> Path:
    """runc's default config (a terminal) running ``args``."""
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    os.symlink(busybox_rootfs, bundle / "rootfs")
    config = default_config()
    assert config["process"]["terminal"] is True  # as `runc spec` writes it
    config["process"]["args"] = args
    (bundle / "config.json").write_text(json.dumps(config))
    return bundle


def test_run_of_a_terminal_without_a_console_socket_uses_ours(busybox_rootfs: Path, tmp_path: Path) -> None:
    """runc run in the foreground: its own pty, served on the caller's terminal, raw while it runs."""
    script = "tty; stty size; echo ready; read line; echo got $line; exit 3"
    bundle = _terminal_bundle(busybox_rootfs, tmp_path, ["sh", "-c", script])
    root, container_id = str(tmp_path / "state"), f"i-{uuid.uuid4().hex[:10]}"
    code, shown, raw, restored = drive([*CLI, "--root", root, "run", "--bundle", str(bundle), container_id],
                                       (b"ready", b"there\r"))
    assert code == 3, shown
    assert shown.split(b"\r\n")[:2] == [b"/dev/pts/0", b"20 70"] and b"got there" in shown
    assert raw and restored
    assert not os.path.exists(os.path.join(root, container_id))  # deleted on the way out


def test_terminal_rules_are_runcs(busybox_rootfs: Path, tmp_path: Path) -> None:
    """Detached, a terminal needs a console socket; a console socket needs a detached terminal."""
    bundle = _terminal_bundle(busybox_rootfs, tmp_path, ["true"])
    root, container_id = str(tmp_path / "state"), f"i-{uuid.uuid4().hex[:10]}"
    for verb in (["create"], ["run", "-d"]):
        result = subprocess.run([*CLI, "--root", root, *verb, "--bundle", str(bundle), container_id],
                                check=False, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=20)
        assert result.returncode != 0
        assert "cannot allocate tty if execdriver will detach without setting console socket" in result.stderr
        assert not os.path.exists(os.path.join(root, container_id))
    result = subprocess.run([*CLI, "--root", root, "run", "--console-socket", str(tmp_path / "socket"),
                             "--bundle", str(bundle), container_id],
                            check=False, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=20)
    assert result.returncode != 0 and "cannot use console socket if execdriver will not detach" in result.stderr
    assert not os.path.exists(os.path.join(root, container_id))


def test_the_terminal_is_the_users(busybox_rootfs: Path, tmp_path: Path) -> None:
    """runc's fixStdioPermissions: a process of uid 1000 owns its terminal (the group stays devpts' tty)."""
    bundle = _terminal_bundle(busybox_rootfs, tmp_path, ["sh", "-c", "stat -c %u:%g $(tty)"])
    config = json.loads((bundle / "config.json").read_text())
    config["process"]["user"] = {"uid": 1000, "gid": 100}
    (bundle / "config.json").write_text(json.dumps(config))
    root, container_id = str(tmp_path / "state"), f"i-{uuid.uuid4().hex[:10]}"
    code, shown, _, restored = drive([*CLI, "--root", root, "run", "--bundle", str(bundle), container_id])
    assert code == 0 and shown.split(b"\r\n")[0] == b"1000:5" and restored
