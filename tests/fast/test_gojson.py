"""execdriver/gojson.py: JSON and times as Go's encoding/json and time.Time write them."""

from __future__ import annotations

import datetime
import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from execdriver.gojson import ascii_json, go_json, loads, pretty_json, rfc3339nano, rfc3339nano_from

pytestmark = pytest.mark.fast

UTC = datetime.UTC

# Characters of every kind the encoders treat apart: ASCII, JSON's escapes and control
# characters, Go's HTML and line separators, non-ASCII of each UTF-8 length, a lone
# surrogate. (A given alphabet: hypothesis's default one costs a second to build.)
ALPHABET = "az AZ09/:._-\"\\\x00\x08\t\n\x1f\x7f<>&'\u00e9\u00ff\u2028\u2029\u2603\u65e5\ufeff\U0001f600\udcff"
json_texts = st.text(alphabet=ALPHABET, max_size=16)
# Values JSON can carry (finite floats: JSON has no nan or infinity).
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | json_texts,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(json_texts, children, max_size=4),
    max_leaves=12,
)


# --- go_json: Go's json.Marshal -------------------------------------------------------------


def test_compact_with_go_field_order() -> None:
    assert go_json({"b": 1, "a": [True, False, None], "c": {}}) == '{"b":1,"a":[true,false,null],"c":{}}'


@pytest.mark.parametrize(("text", "encoded"), [
    ("<", '"\\u003c"'),
    (">", '"\\u003e"'),
    ("&", '"\\u0026"'),
    ("\u2028", '"\\u2028"'),
    ("\u2029", '"\\u2029"'),
    ("<a href='x'>&amp;</a>", '"\\u003ca href=\'x\'\\u003e\\u0026amp;\\u003c/a\\u003e"'),
])
def test_html_and_line_separators_are_escaped_as_go_does(text: str, encoded: str) -> None:
    assert go_json(text) == encoded
    assert json.loads(go_json(text)) == text


def test_non_ascii_is_kept_as_utf8_as_go_does() -> None:
    assert go_json("héllo ☃ 日本") == '"héllo ☃ 日本"'
    assert go_json({"é": "\x00\x1f\"\\"}) == '{"é":"\\u0000\\u001f\\"\\\\"}'


def test_keys_are_escaped_too() -> None:
    assert go_json({"<k>": 1}) == '{"\\u003ck\\u003e":1}'


def test_bool_is_not_an_int_and_int_subclasses_are_numbers() -> None:
    import enum

    class Number(enum.IntEnum):
        NINE = 9

    assert go_json([True, 1, Number.NINE, 2**64]) == "[true,1,9,18446744073709551616]"


def test_tuples_are_arrays() -> None:
    assert go_json((1, "a", (2,))) == '[1,"a",[2]]'


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nan_and_infinities_are_refused(value: float) -> None:
    with pytest.raises(ValueError, match="JSON has no"):
        go_json({"x": [value]})


@pytest.mark.parametrize("value", [b"bytes", {1, 2}, object(), 1j])
def test_other_types_are_refused(value: object) -> None:
    with pytest.raises(TypeError, match="cannot encode"):
        go_json([value])


@settings(max_examples=100, deadline=None, database=None)
@given(json_values)
def test_go_json_round_trips_through_json_and_loads(value: Any) -> None:
    text = go_json(value)
    assert json.loads(text) == value
    assert loads(text) == value
    assert "<" not in text and ">" not in text and "&" not in text
    assert "\u2028" not in text and "\u2029" not in text


# --- ascii_json and pretty_json -------------------------------------------------------------


def test_ascii_json_escapes_every_non_ascii_character() -> None:
    text = ascii_json({"path": "/tmp/é\udcff", "n": [1, None]})
    assert text == '{"path":"/tmp/\\u00e9\\udcff","n":[1,null]}'
    assert text.isascii()
    # A lone surrogate (a path that is not UTF-8, decoded with surrogateescape) survives.
    assert json.loads(text)["path"] == "/tmp/é\udcff"


@settings(max_examples=100, deadline=None, database=None)
@given(json_values)
def test_pretty_json_is_json_dumps_indent_2(value: Any) -> None:
    assert pretty_json(value) == json.dumps(value, indent=2)


def test_pretty_json_of_empty_containers_stays_on_one_line() -> None:
    assert pretty_json({"a": {}, "b": []}) == '{\n  "a": {},\n  "b": []\n}'


# --- loads ----------------------------------------------------------------------------------


def test_loads_values() -> None:
    assert loads('  {"a": [1, 2.5, "x", true, null], "b": {"c": -3}}\n') == {
        "a": [1, 2.5, "x", True, None], "b": {"c": -3}}
    assert loads('"\\u00e9\\n"') == "é\n"
    assert loads("12345678901234567890") == 12345678901234567890


@pytest.mark.parametrize("text", [
    "", " ", "{", "[1,]", '{"a" 1}', "{'a': 1}", "tru", "01", '"unterminated', "[1] [2]", "1 2", '{"a":1}x',
    '"tab\there"',  # a control character inside a string: json's strict mode refuses it
])
def test_loads_refuses_malformed_input_as_json_does(text: str) -> None:
    with pytest.raises(ValueError):  # (json.JSONDecodeError is one)
        loads(text)
    with pytest.raises(ValueError):
        json.loads(text)


def test_loads_error_says_where() -> None:
    with pytest.raises(json.JSONDecodeError) as caught:
        loads('{"a": 1,}')
    assert caught.value.pos == 8


# --- times: rfc3339nano, rfc3339nano_from -----------------------------------------------------


@pytest.mark.parametrize(("moment", "text"), [
    (datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC), "2024-01-02T03:04:05Z"),
    (datetime.datetime(2024, 1, 2, 3, 4, 5, 120000, tzinfo=UTC), "2024-01-02T03:04:05.12Z"),
    (datetime.datetime(2024, 1, 2, 3, 4, 5, 100, tzinfo=UTC), "2024-01-02T03:04:05.0001Z"),
    (datetime.datetime(2024, 1, 2, 3, 4, 5, 999999, tzinfo=UTC), "2024-01-02T03:04:05.999999Z"),
    (datetime.datetime(1999, 12, 31, 23, 59, 59, 500000, tzinfo=datetime.timezone(datetime.timedelta(hours=2))),
     "1999-12-31T23:59:59.5+02:00"),
    (datetime.datetime(2024, 6, 1, 0, 0, 0, 10, tzinfo=datetime.timezone(-datetime.timedelta(hours=5, minutes=30))),
     "2024-06-01T00:00:00.00001-05:30"),
])
def test_rfc3339nano_cuts_trailing_zeros_and_names_utc_z(moment: datetime.datetime, text: str) -> None:
    assert rfc3339nano(moment) == text


@settings(max_examples=100, deadline=None, database=None)
@given(st.datetimes(min_value=datetime.datetime(1970, 1, 1), max_value=datetime.datetime(9999, 1, 1),
                    timezones=st.just(UTC)))
def test_rfc3339nano_parses_back_to_the_same_moment(moment: datetime.datetime) -> None:
    text = rfc3339nano(moment)
    assert text.endswith("Z")
    assert datetime.datetime.fromisoformat(text) == moment


@settings(max_examples=100, deadline=None, database=None)
@given(st.integers(min_value=0, max_value=4_102_444_800), st.integers(min_value=0, max_value=999_999))
def test_rfc3339nano_from_agrees_with_rfc3339nano(seconds: int, micros: int) -> None:
    # A float holds a time of today to a few hundred nanoseconds (and fromisoformat keeps
    # microseconds): the two forms of one moment agree to a microsecond.
    moment = datetime.datetime.fromtimestamp(seconds, UTC).replace(microsecond=micros)
    text = rfc3339nano_from(seconds + micros / 1e6)
    assert text.endswith("Z")
    assert abs(datetime.datetime.fromisoformat(text) - moment) <= datetime.timedelta(microseconds=1)


@pytest.mark.parametrize(("timestamp", "text"), [
    (0, "1970-01-01T00:00:00Z"),
    (0.5, "1970-01-01T00:00:00.5Z"),
    (1700000000, "2023-11-14T22:13:20Z"),
    (1000000000.5, "2001-09-09T01:46:40.5Z"),
    (-1.5, "1969-12-31T23:59:58.5Z"),
])
def test_rfc3339nano_from_unix_times(timestamp: float, text: str) -> None:
    assert rfc3339nano_from(timestamp) == text


def test_rfc3339nano_from_prints_an_exact_fraction_exactly() -> None:
    assert rfc3339nano_from(1700000000.25) == "2023-11-14T22:13:20.25Z"


def test_rfc3339nano_from_keeps_nanoseconds() -> None:
    # 1 s + 1 ns is exact in a float: nine digits, no trailing zero to cut.
    assert rfc3339nano_from(1.000000001) == "1970-01-01T00:00:01.000000001Z"


@pytest.mark.parametrize("text", ["\u00a01", "1\u00a0", "\u20281"])
def test_loads_refuses_what_json_calls_no_whitespace(text: str) -> None:
    with pytest.raises(ValueError):
        loads(text)
