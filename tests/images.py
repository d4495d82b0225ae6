"""A busybox image in Docker's archive format (``docker save``), built here from a rootfs.

No registry is reachable, so the engines' tests import this: one layer (the
rootfs as a tar), an image config with a default command, and the
manifest.json that ``ctr images import``, ``podman load`` and ``docker load``
read.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path


def docker_archive(rootfs: Path, archive: Path, reference: str = "localhost/busybox:latest") -> Path:
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
            "Cmd": ["/bin/sh"],
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
