"""Ingestion's own settings (stand-in sizes, landing zone), declared with shared.settings' tools."""

from __future__ import annotations

import datetime as dt

import pytest

from ingestion.settings import MAX_DAYS, StandInSettings, landing_dir, load_standin_settings
from shared.settings import SettingsError, load_settings


def test_standin_sizes_default_and_parse():
    assert load_standin_settings({}) == StandInSettings()
    s = load_standin_settings(
        {"DATA_PLATFORM_STANDIN_DAYS": "3", "DATA_PLATFORM_STANDIN_USERS": "10"}
    )
    assert (s.days, s.users) == (3, 10)


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("DATA_PLATFORM_STANDIN_DAYS", "0"),  # was accepted, then a ValueError (issue 16 item 10)
        ("DATA_PLATFORM_STANDIN_DAYS", "99999999999999999999"),  # was an OverflowError
        ("DATA_PLATFORM_STANDIN_DAYS", "-1"),
        ("DATA_PLATFORM_STANDIN_USERS", "0"),
        ("DATA_PLATFORM_STANDIN_EVENTS_PER_DAY", "lots"),
        ("DATA_PLATFORM_STANDIN_SEED", "-5"),
    ],
)
def test_bad_standin_sizes_name_the_variable_and_what_is_allowed(name, raw):
    with pytest.raises(SettingsError) as err:
        load_standin_settings({name: raw})
    message = str(err.value)
    assert message.startswith(f"{name}={raw!r} is not allowed: a whole number from ")
    assert "\n" not in message


def test_days_bound_keeps_every_partition_date_valid():
    from shared.partitions import day_of

    days = load_standin_settings({"DATA_PLATFORM_STANDIN_DAYS": str(MAX_DAYS)}).days
    assert day_of(days - 1).year < 2040


def test_landing_dir_is_under_the_object_store(tmp_path):
    settings = load_settings({"DATA_PLATFORM_HOME": str(tmp_path)})
    assert landing_dir(settings) == tmp_path.resolve() / "objects" / "landing"


def test_the_data_can_end_yesterday_counting_days_back():
    """What the demo sets: the stand-in's days end yesterday (a current platform)."""
    from shared.partitions import FIRST_DAY

    s = load_standin_settings(
        {"DATA_PLATFORM_STANDIN_DAYS": "14", "DATA_PLATFORM_STANDIN_END": "yesterday"}
    )
    yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    assert s.end == yesterday
    assert len(s.day_indexes) == min(14, (yesterday - FIRST_DAY).days + 1)
    assert FIRST_DAY + dt.timedelta(days=s.day_indexes[-1]) == yesterday


def test_an_end_day_pins_the_window_and_never_goes_before_the_first_day():
    pinned = load_standin_settings(
        {"DATA_PLATFORM_STANDIN_END": "2026-03-10", "DATA_PLATFORM_STANDIN_DAYS": "3"}
    )
    assert pinned.end == dt.date(2026, 3, 10)
    assert list(pinned.day_indexes) == [66, 67, 68]  # 2026-03-08..2026-03-10
    early = load_standin_settings(
        {"DATA_PLATFORM_STANDIN_END": "2026-01-02", "DATA_PLATFORM_STANDIN_DAYS": "14"}
    )
    assert list(early.day_indexes) == [0, 1]
    # Unset (tests, benchmarks), the days start on the first day.
    assert list(load_standin_settings({"DATA_PLATFORM_STANDIN_DAYS": "3"}).day_indexes) == [
        0,
        1,
        2,
    ]


@pytest.mark.parametrize("raw", ["today", "2025-12-31", "2026-02-30"])
def test_a_bad_end_day_names_the_variable(raw):
    with pytest.raises(SettingsError, match=f"DATA_PLATFORM_STANDIN_END={raw!r} is not allowed"):
        load_standin_settings({"DATA_PLATFORM_STANDIN_END": raw})
