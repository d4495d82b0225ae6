"""execdriver/oci/hooks.py: an OCI config's hooks, checked before anything runs."""

from __future__ import annotations

from typing import Any

import pytest

from execdriver.errors import ConfigError
from execdriver.oci.hooks import IN_CONTAINER, PHASES, parse

pytestmark = pytest.mark.fast


def test_the_oci_phases() -> None:
    assert PHASES == ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")
    assert set(IN_CONTAINER) == {"createContainer"}  # (startContainer: the init runs them, as runc)


def test_no_hooks() -> None:
    assert parse({}) == {}
    assert parse({"hooks": None}) == {}
    assert parse({"hooks": {}}) == {}


def test_hooks_are_kept_as_given() -> None:
    hooks = {
        "prestart": [{"path": "/usr/bin/fix-mounts", "args": ["fix-mounts", "arg1"], "env": ["KEY=value"]}],
        "createRuntime": [{"path": "/bin/a"}, {"path": "/bin/b", "timeout": 5}],
        "poststop": [],
    }
    assert parse({"ociVersion": "1.0.2", "hooks": hooks}) == hooks


@pytest.mark.parametrize(("hooks", "message"), [
    (["prestart"], r"^hooks: expected an object$"),
    ("prestart", r"^hooks: expected an object$"),
    ({"preStart": []}, r"^hooks\.preStart: unknown hook phase$"),
    ({"prestart": {"path": "/bin/true"}}, r"^hooks\.prestart: expected an array$"),
    ({"poststop": None}, r"^hooks\.poststop: expected an array$"),
    ({"prestart": ["/bin/true"]}, r"^hooks\.prestart\[0\]\.path: needs an absolute path$"),
    ({"prestart": [{"path": "/bin/true"}, {}]}, r"^hooks\.prestart\[1\]\.path: needs an absolute path$"),
    ({"prestart": [{"path": "bin/true"}]}, r"^hooks\.prestart\[0\]\.path: needs an absolute path$"),
    ({"prestart": [{"path": ""}]}, r"needs an absolute path$"),
    ({"prestart": [{"path": 1}]}, r"needs an absolute path$"),
    ({"poststart": [{"path": "/x", "args": "x"}]}, r"^hooks\.poststart\[0\]\.args: expected an array of strings$"),
    ({"poststart": [{"path": "/x", "env": {"A": "1"}}]}, r"^hooks\.poststart\[0\]\.env: expected an array of"),
    ({"createContainer": [{"path": "/x", "timeout": 0}]},
     r"^hooks\.createContainer\[0\]\.timeout: must be a positive number of seconds$"),
    ({"createContainer": [{"path": "/x", "timeout": -1}]}, r"timeout: must be a positive number"),
    ({"createContainer": [{"path": "/x", "timeout": 1.5}]}, r"timeout: must be a positive number"),
    ({"createContainer": [{"path": "/x", "timeout": "5"}]}, r"timeout: must be a positive number"),
    ({"createContainer": [{"path": "/x", "timeout": True}]}, r"timeout: must be a positive number"),
])
def test_refusals(hooks: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse({"hooks": hooks})


@pytest.mark.parametrize("hook", [{"path": "/x", "args": ["x", 1]}, {"path": "/x", "env": [1]}])
def test_items_that_are_not_strings_are_refused(hook: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        parse({"hooks": {"prestart": [hook]}})
