"""Ingestion's own settings: the Airbyte stand-in's sizes and the landing zone.

Declared here, with the mechanism of :mod:`shared.settings` (the one reader of the environment,
one clear error naming the variable and what is allowed), because only ingestion uses them:
``shared`` knows no location. The Airbyte connection settings (URL, workspace, credentials) stay
in :mod:`shared.settings` beside the Airbyte resource helpers of :mod:`shared.airbyte`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from shared.partitions import FIRST_DAY
from shared.settings import Settings, SettingsError, env_int, env_str, environment

#: Prefix of the landing zone in the object store (a folder locally, a prefix of the bucket on
#: Garage).
LANDING_PREFIX = "landing"

#: Upper bounds of the stand-in's sizes: far beyond any demo, low enough that a typo (an extra
#: zero or twenty) is refused by name instead of exhausting memory or overflowing a date.
MAX_USERS = 10_000_000
MAX_EVENTS_PER_DAY = 10_000_000
#: Days since the partitions' start date; ten years keeps every date valid.
MAX_DAYS = 3650
#: numpy's seeds are unsigned; a 32-bit bound keeps them portable.
MAX_SEED = 2**32 - 1


@dataclass(frozen=True)
class StandInSettings:
    """Size of the data the local Airbyte stand-in generates (local mode only).

    Generation is seeded and done one day at a time, so day ``k`` has the same rows whether it is
    generated alone or with the days before it.
    """

    users: int = 200
    events_per_day: int = 500
    days: int = 14
    seed: int = 42
    #: The last day of data (``DATA_PLATFORM_STANDIN_END``), so the data is current like a live
    #: source's: the ``days`` days counted back from it. ``data-platform demo`` and
    #: ``data-platform ui`` set it to yesterday when unset. ``None``: the ``days`` days from
    #: ``FIRST_DAY`` (fixed data, for tests and benchmarks).
    end: dt.date | None = None

    @property
    def day_indexes(self) -> range:
        """Indexes (0 = ``FIRST_DAY``) of the days of data: ``days`` days ending with ``end``,
        never before ``FIRST_DAY`` (fewer days, then)."""
        if self.end is None:
            return range(self.days)
        last = (self.end - FIRST_DAY).days
        return range(max(0, last - self.days + 1), last + 1)


def load_standin_settings(environ: Mapping[str, str] | None = None) -> StandInSettings:
    """The stand-in's sizes from ``DATA_PLATFORM_STANDIN_*`` (validated, one clear error)."""
    env = environment(environ)
    return StandInSettings(
        users=env_int(
            env, "DATA_PLATFORM_STANDIN_USERS", StandInSettings.users, minimum=1, maximum=MAX_USERS
        ),
        events_per_day=env_int(
            env,
            "DATA_PLATFORM_STANDIN_EVENTS_PER_DAY",
            StandInSettings.events_per_day,
            minimum=1,
            maximum=MAX_EVENTS_PER_DAY,
        ),
        days=env_int(
            env, "DATA_PLATFORM_STANDIN_DAYS", StandInSettings.days, minimum=1, maximum=MAX_DAYS
        ),
        seed=env_int(
            env, "DATA_PLATFORM_STANDIN_SEED", StandInSettings.seed, minimum=0, maximum=MAX_SEED
        ),
        end=_end_day(env),
    )


STANDIN_END = "DATA_PLATFORM_STANDIN_END"


def yesterday() -> dt.date:
    """The last whole day (UTC): where the demo's data ends by default."""
    return dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)


def _end_day(env: Mapping[str, str]) -> dt.date | None:
    """``DATA_PLATFORM_STANDIN_END`` (an ISO date or ``yesterday``), or None when unset."""
    raw = env_str(env, STANDIN_END)
    if raw is None:
        return None
    try:
        end = yesterday() if raw.lower() == "yesterday" else dt.date.fromisoformat(raw)
    except ValueError:
        end = None
    if end is None or end < FIRST_DAY:
        raise SettingsError(
            f"{STANDIN_END}={raw!r} is not allowed: a date (YYYY-MM-DD) from "
            f"{FIRST_DAY.isoformat()} on, or 'yesterday': the last day of the stand-in's data."
        )
    return end


def landing_dir(settings: Settings) -> Path:
    """The local landing zone watched by the ingestion sensor (local mode)."""
    return settings.object_store.local_root / LANDING_PREFIX
