"""Deduplication and day helpers shared by features and metrics."""

from __future__ import annotations

import datetime as dt

import polars as pl

from analytics.frames import dedupe_events, money_sum, safe_ratio

D = dt.date

ROWS = {
    "event_id": ["x", "y", "x", None, "z", "x"],
    "user_id": [2, 1, 1, 5, 3, 1],
    "event_type": ["click", "click", "purchase", "click", "page_view", "click"],
    "event_date": [D(2026, 1, 2), D(2026, 1, 1), D(2026, 1, 2), D(2026, 1, 1), D(2026, 1, 3),
                   D(2026, 1, 1)],
    "amount": [None, None, 5.0, None, None, None],
}  # fmt: skip


def test_one_row_per_event_id_whatever_the_row_order():
    frame = pl.DataFrame(ROWS)
    expected = [("x", 1, "click", D(2026, 1, 1)), ("y", 1, "click", D(2026, 1, 1)),
                ("z", 3, "page_view", D(2026, 1, 3))]  # fmt: skip
    for seed in range(5):
        shuffled = frame.sample(fraction=1.0, shuffle=True, seed=seed).lazy()
        out = dedupe_events(shuffled).collect().sort("event_id")
        assert out.select("event_id", "user_id", "event_type", "event_date").rows() == expected


def test_event_ts_decides_the_day():
    frame = pl.LazyFrame(
        {
            "event_id": ["a"],
            "user_id": [1],
            "event_type": ["click"],
            "event_ts": [
                dt.datetime(2026, 1, 1, 23, 0, tzinfo=dt.timezone(dt.timedelta(hours=-3)))
            ],
            "event_date": [D(2026, 1, 1)],
            "amount": [None],
        }
    )
    assert dedupe_events(frame).collect().get_column("event_date").to_list() == [D(2026, 1, 2)]


def test_small_helpers():
    frame = pl.DataFrame({"n": [1, 0], "d": [4, 0], "m": [0.1, 0.2]})
    ratios = frame.select(safe_ratio(pl.col("n"), pl.col("d"))).to_series().to_list()
    assert ratios == [0.25, None]
    assert frame.select(money_sum(pl.col("m"))).item() == 0.3  # 0.30000000000000004 unrounded
