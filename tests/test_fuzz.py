"""Bad input, generated: every Command JSON and config.json runs or is refused clearly, and leaves nothing.

Hypothesis builds the inputs: documents of the right shape with wrong
types, out-of-range numbers, odd strings and missing or extra keys. A
refusal must be an ExecDriverError (the CLI: a non-zero exit with an
`execdriver:` message, no traceback); whatever happened, no state, cgroup
or mount of the run may remain.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from execdriver import Command, ExecDriverError, Pipes
from execdriver.cli.oci.spec import default_config
from execdriver.native.driver import NativeDriver
from tests.images import make_busybox_rootfs
from tests.test_oci import CLI

JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False),
                         st.text(max_size=20))
JSON = st.recursive(JSON_SCALARS, lambda children: st.one_of(
    st.lists(children, max_size=4), st.dictionaries(st.text(max_size=10), children, max_size=4)), max_leaves=8)

COMMAND_FIELDS = ["id", "rootfs", "mounts", "network", "process_config", "resources", "working_dir", "hostname",
                  "layer_paths", "layer_folder", "isolation", "readonly_rootfs", "cgroup_parent", "cap_add",
                  "cap_drop", "seccomp_profile", "oom_score_adj", "uidmapping", "masked_paths", "umask", "init"]
PROCESS_FIELDS = ["entrypoint", "arguments", "user", "tty", "privileged"]


def _leftovers(root: Path, container_id: str) -> list[str]:
    found = [name for name in os.listdir(root) if not name.startswith(".")] if root.exists() else []
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        if container_id and (hierarchy / "execdriver" / container_id).exists():
            found.append(str(hierarchy / "execdriver" / container_id))
    with open("/proc/self/mountinfo", encoding="utf-8") as mountinfo:
        found += [line for line in mountinfo if str(root) in line]
    return found


@st.composite
def commands(draw: st.DrawFn, rootfs: str) -> dict[str, Any]:
    """A Command's JSON: a runnable base, with some fields replaced by anything."""
    document: dict[str, Any] = {"id": f"f-{uuid.uuid4().hex[:10]}", "rootfs": rootfs,
                                "process_config": {"entrypoint": "true", "arguments": []}}
    for field in draw(st.lists(st.sampled_from(COMMAND_FIELDS), max_size=3, unique=True)):
        document[field] = draw(JSON)
    for field in draw(st.lists(st.sampled_from(PROCESS_FIELDS), max_size=2, unique=True)):
        if isinstance(document.get("process_config"), dict):
            document["process_config"][field] = draw(JSON)
    return document


@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "120")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_command_json_runs_or_is_refused_clearly(driver: NativeDriver, busybox_rootfs: Path,
                                                     state_root: Path, data: st.DataObject) -> None:
    document = data.draw(commands(str(busybox_rootfs)))
    try:
        command = Command.from_json(json.dumps(document))
    except ExecDriverError:
        return
    try:
        driver.run(command, Pipes())
    except ExecDriverError as err:
        assert str(err), "a refusal says what is wrong"
    container_id = command.id if isinstance(command.id, str) else ""
    assert _leftovers(state_root, container_id) == []


@st.composite
def configs(draw: st.DrawFn) -> dict[str, Any]:
    """runc's default config.json with a few values, anywhere in it, replaced or removed."""
    config = default_config()
    config["process"].update(args=["true"], terminal=False)
    paths: list[tuple[Any, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                paths.append((node, key))
                walk(value)
        elif isinstance(node, list):
            for index, value in enumerate(node):
                paths.append((node, index))
                walk(value)

    walk(config)
    for index in draw(st.lists(st.integers(0, len(paths) - 1), max_size=3, unique=True)):
        parent, key = paths[index]
        try:
            if isinstance(parent, dict) and draw(st.booleans()):
                parent.pop(key, None)
            else:
                parent[key] = draw(JSON)
        except (IndexError, KeyError):
            pass
    return config


@pytest.fixture(scope="module")
def fuzz_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A rootfs of this module's own: a config without a /dev mount has its nodes made in the image's /dev."""
    return make_busybox_rootfs(tmp_path_factory.mktemp("fuzz") / "rootfs")


@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "80")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(config=configs())
def test_any_config_json_runs_or_is_refused_clearly(fuzz_rootfs: Path, tmp_path: Path,
                                                   config: dict[str, Any]) -> None:
    bundle = tmp_path / f"bundle-{uuid.uuid4().hex[:8]}"
    bundle.mkdir()
    (bundle / "rootfs").symlink_to(fuzz_rootfs)
    (bundle / "config.json").write_text(json.dumps(config))
    root = tmp_path / "state"
    container_id = f"f-{uuid.uuid4().hex[:10]}"
    result = subprocess.run([*CLI, "--root", str(root), "run", "--bundle", str(bundle), container_id],
                            capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL)
    assert "Traceback" not in result.stderr, result.stderr
    if result.returncode != 0:
        assert result.stderr.startswith("execdriver: "), (result.returncode, result.stderr)
    subprocess.run([*CLI, "--root", str(root), "delete", "--force", container_id], capture_output=True,
                   timeout=60, check=False)
    assert _leftovers(root, container_id) == []
