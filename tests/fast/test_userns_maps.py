"""execdriver/linux/userns.py: id mappings checked (parse) and looked up (host_id)."""

from __future__ import annotations

from typing import Any

import pytest

from execdriver.errors import ConfigError
from execdriver.linux.userns import host_id, parse

pytestmark = pytest.mark.fast

MAX = 2**32 - 1


def test_mappings_become_triples() -> None:
    assert parse([(0, 100000, 65536), [65536, 1000, 1], ("70000", "2000", "10")], "m") == [
        (0, 100000, 65536), (65536, 1000, 1), (70000, 2000, 10)]
    assert parse(None, "m") == [] and parse([], "m") == []


def test_the_whole_id_space_is_one_range() -> None:
    assert parse([(0, 0, MAX)], "m") == [(0, 0, MAX)]


def test_adjacent_ranges_do_not_overlap() -> None:
    assert parse([(0, 1000, 10), (10, 1010, 10)], "m") == [(0, 1000, 10), (10, 1010, 10)]


@pytest.mark.parametrize(("maps", "message"), [
    ([(0, 1000, 0)], r"^uid_mapping\[0\]: 0 1000 0 is not a range of ids$"),
    ([(0, 1000, -1)], r"^uid_mapping\[0\]: 0 1000 -1 is not a range of ids$"),
    ([(-1, 1000, 1)], r"^uid_mapping\[0\]: -1 1000 1 is not a range"),
    ([(0, -5, 1)], r"^uid_mapping\[0\]: 0 -5 1 is not a range"),
    ([(1, 0, MAX)], r"is not a range of ids"),
    ([(0, 1, MAX)], r"is not a range of ids"),
    ([(0, 1000, 10), (5, 5000, 1)], r"^uid_mapping\[1\]: container ids 5\+1 overlap another mapping$"),
    ([(100, 1000, 10), (95, 5000, 6)], r"^uid_mapping\[1\]: container ids 95\+6 overlap"),
    ([(0, 1000, 10), (10, 1009, 1)], r"^uid_mapping\[1\]: host ids 1009\+1 overlap another mapping$"),
    ([(0, 1000, 1)] + [(i, 2000 + i, 1) for i in range(1, 341)], r"^uid_mapping: more than 340 mappings$"),
])
def test_refusals(maps: list[Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse(maps, "uid_mapping")


def test_340_mappings_are_the_kernels_limit_and_allowed() -> None:
    assert len(parse([(i, 1000 + i, 1) for i in range(340)], "m")) == 340


@pytest.mark.parametrize(("container_id", "expected"), [
    (0, 100000), (1, 100001), (65535, 165535), (65536, None), (70000, 5000), (70009, 5009), (70010, None),
])
def test_host_id(container_id: int, expected: int | None) -> None:
    maps = parse([(0, 100000, 65536), (70000, 5000, 10)], "m")
    assert host_id(maps, container_id) == expected


def test_host_id_of_no_mapping() -> None:
    assert host_id([], 0) is None
