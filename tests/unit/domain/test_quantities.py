from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from haven.domain.quantities import (
    format_duration,
    parse_duration,
    parse_rate,
    parse_size,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("15m", 900),
        ("4h", 14400),
        ("1d", 86400),
        ("2 minutes", 120),
        (90, 90),
        ("1.5h", 5400),
        ("0s", 0),
    ],
)
def test_durations(text: object, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["5 parsecs", "-5m", "m", "", "1x", [], True, -1, "15 m s"])
def test_bad_durations_say_what_is_valid(bad: object) -> None:
    with pytest.raises(ValueError, match="unit s, m, h, d or w"):
        parse_duration(bad)


@given(st.integers(min_value=0, max_value=10**8))
def test_format_then_parse_is_identity(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


def test_sizes_and_rates() -> None:
    assert parse_size("64MiB") == 64 * 2**20
    assert parse_size("1GB") == 10**9
    assert parse_rate("50MiB/s") == 50 * 2**20
    for bad in ("50MiB", "0MiB/s", "fast/s", -3):
        with pytest.raises(ValueError):
            parse_rate(bad)


@pytest.mark.parametrize(
    "bad",
    [float("nan"), float("inf"), 1e300, 10**400, "9" * 400 + "s", "99999999999999w"],
    ids=["nan", "inf", "1e300", "10**400", "400-digits", "huge-weeks"],
)
def test_durations_are_finite_and_bounded(bad: object) -> None:
    with pytest.raises(ValueError, match="not a duration of at most 3650d"):
        parse_duration(bad)


def test_the_longest_duration_is_ten_years() -> None:
    assert parse_duration("3650d") == 3650 * 86400


@pytest.mark.parametrize(
    "bad",
    [2**63, 10**400, "9" * 400 + "GiB", "1e400"],
    ids=["2**63", "10**400", "400-digits", "exp"],
)
def test_sizes_and_rates_are_bounded(bad: object) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(bad)
    with pytest.raises(ValueError, match="rate"):
        parse_rate(bad)
