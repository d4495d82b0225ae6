"""Test images: a busybox root filesystem, and a busybox image in Docker's archive format.

Kept free of pytest, so that bench/ can build the same bundle without
importing the test framework into the process it measures.

The archive (``docker save``): no registry is reachable, so the engines'
tests import this: one layer (the rootfs as a tar), an image config with a
default command, and the manifest.json that ``ctr images import``,
``podman load`` and ``docker load`` read.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from collections.abc import Sequence
from pathlib import Path

BUSYBOX = shutil.which("busybox") or "/bin/busybox"


def make_busybox_rootfs(path: Path) -> Path:
    """A minimal root filesystem: static busybox, its applets, passwd, group and the network files."""
    (path / "bin").mkdir(parents=True)
    shutil.copy2(BUSYBOX, path / "bin" / "busybox")
    applets = subprocess.run([BUSYBOX, "--list"], check=True, capture_output=True, text=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            (path / "bin" / applet).symlink_to("busybox")
    for directory in ("etc", "proc", "sys", "dev", "tmp", "root"):
        (path / directory).mkdir(exist_ok=True)
    (path / "tmp").chmod(0o1777)
    (path / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
        "alice:x:1000:1000:alice:/home/alice:/bin/sh\n"
    )
    (path / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\nalice:x:1000:\nstaff:x:50:alice\n")
    # As an image has them: a bridged container's own are mounted over these.
    (path / "etc" / "hosts").write_text("127.0.0.1\tlocalhost\n")
    (path / "etc" / "hostname").write_text("image\n")
    (path / "etc" / "resolv.conf").write_text("")
    return path


def docker_archive(rootfs: Path, archive: Path, reference: str = "localhost/busybox:latest",
                   cmd: Sequence[str] = ("/bin/sh",)) -> Path:
    """The archive of an image of ``rootfs``, tagged ``reference``; ``cmd`` is its default command.

    A pod's sandbox (pause) container runs its image's command and must keep running: the Kubernetes
    test gives it a sleeping one.
    """
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        for path in sorted(rootfs.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(rootfs)), recursive=False)
    layer_bytes = layer.getvalue()
    diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Cmd": list(cmd),
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "WorkingDir": "/",
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "execdriver tests"}],
    }
    config_bytes = json.dumps(config).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    manifest = [{"Config": config_name, "RepoTags": [reference], "Layers": ["layer/layer.tar"]}]
    with tarfile.open(archive, "w") as tar:
        for name, data in ((config_name, config_bytes), ("layer/layer.tar", layer_bytes),
                           ("manifest.json", json.dumps(manifest).encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return archive
