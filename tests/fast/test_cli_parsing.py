"""execdriver/cli/flags.py (the verbs' flag parser) and kill's signal names (cli/oci/kill.py)."""

from __future__ import annotations

import signal

import pytest

from execdriver.cli.flags import Flag, UsageError, parse, usage
from execdriver.cli.oci.kill import signal_number

pytestmark = pytest.mark.fast

FLAGS = (
    Flag("--bundle", "-b", metavar="DIR", help="the bundle"),
    Flag("--detach", "-d", kind="bool", help="run in the background"),
    Flag("--env", "-e", kind="append", help="KEY=VALUE"),
    Flag("--pid-file", default="/run/x.pid"),
)


def test_defaults() -> None:
    assert parse(FLAGS, [], "run") == ({"bundle": None, "detach": False, "env": [], "pid_file": "/run/x.pid"}, [])


def test_every_form_of_a_value() -> None:
    values, rest = parse(FLAGS, ["--bundle", "/a", "-e", "A=1", "--env=B=2=3", "-d", "--pid-file=", "ID", "-x"],
                         "run")
    assert values == {"bundle": "/a", "detach": True, "env": ["A=1", "B=2=3"], "pid_file": ""}
    assert rest == ["ID", "-x"]  # options end at the first positional argument


def test_double_dash_ends_options() -> None:
    assert parse(FLAGS, ["-d", "--", "--bundle", "x"], "run") == (
        {"bundle": None, "detach": True, "env": [], "pid_file": "/run/x.pid"}, ["--bundle", "x"])


def test_a_lone_dash_is_an_argument() -> None:
    assert parse(FLAGS, ["-", "-d"], "run")[1] == ["-", "-d"]


def test_a_value_may_look_like_a_flag() -> None:
    assert parse(FLAGS, ["--bundle", "--detach"], "run")[0]["bundle"] == "--detach"


def test_last_value_wins_and_appends_accumulate() -> None:
    values, _ = parse(FLAGS, ["-b", "1", "--bundle", "2", "-e", "X", "-e", "Y"], "run")
    assert values["bundle"] == "2" and values["env"] == ["X", "Y"]


def test_bool_flags_take_true_or_false_inline() -> None:
    assert parse(FLAGS, ["--detach=false"], "run")[0]["detach"] is False
    assert parse(FLAGS, ["--detach=true"], "run")[0]["detach"] is True


def test_append_defaults_are_not_shared_between_parses() -> None:
    first, _ = parse(FLAGS, ["-e", "A"], "run")
    second, _ = parse(FLAGS, [], "run")
    assert first["env"] == ["A"] and second["env"] == [] and FLAGS[2].default == []


@pytest.mark.parametrize(("argv", "message"), [
    (["--bogus"], r"^run: unknown flag --bogus$"),
    (["--bogus=1"], r"^run: unknown flag --bogus$"),
    (["-bd"], r"^run: unknown flag -bd$"),  # no bundling of short flags
    (["--detach=yes"], r"^run: --detach takes no value$"),
    (["--bundle"], r"^run: --bundle needs a value$"),
    (["-d", "-e"], r"^run: -e needs a value$"),
])
def test_usage_errors(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse(FLAGS, argv, "run")


def test_usage_errors_without_a_verb_have_no_prefix() -> None:
    with pytest.raises(UsageError, match=r"^unknown flag --x$"):
        parse(FLAGS, ["--x"], "")


def test_flag_definitions() -> None:
    assert Flag("--log-format").dest == "log_format"
    assert Flag("-x", dest="explicit").dest == "explicit"
    assert Flag("--all", kind="bool", default=True).default is False  # a bool flag is off until given
    with pytest.raises(ValueError, match="count"):
        Flag("--v", kind="count")


def test_usage_text() -> None:
    text = usage(FLAGS, "execdriver run [OPTIONS] ID", "Create and start a container.")
    lines = text.split("\n")
    assert lines[:5] == ["usage: execdriver run [OPTIONS] ID", "", "Create and start a container.", "", "options:"]
    assert lines[5] == f"  {'--bundle, -b DIR':28} the bundle"
    assert lines[6] == f"  {'--detach, -d':28} run in the background"  # a bool flag shows no metavar
    assert len(lines) == 9


# --- kill: signal names and numbers -----------------------------------------------------------


@pytest.mark.parametrize(("text", "number"), [
    ("9", 9), ("0", 0), ("KILL", 9), ("SIGKILL", 9), ("sigkill", 9), ("kill", 9), ("Term", 15), ("HUP", 1),
    ("SIGUSR1", signal.SIGUSR1), ("WINCH", signal.SIGWINCH), ("1", 1), ("64", 64), ("RTMIN", signal.SIGRTMIN),
    ("SIGRTMAX", signal.SIGRTMAX),
])
def test_signal_numbers(text: str, number: int) -> None:
    assert signal_number(text) == number


@pytest.mark.parametrize("text", ["65", "-9", "", "SIG", "BOGUS", "SIGBOGUS", "SIG_DFL", "SIG_IGN", "9.0",
                                  " 9", "NSIG"])
def test_not_signals(text: str) -> None:
    with pytest.raises(UsageError, match=r"^kill: .* is not a signal$"):
        signal_number(text)


def test_a_superscript_digit_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        signal_number("²")
