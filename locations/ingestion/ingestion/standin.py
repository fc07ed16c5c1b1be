"""The LOCAL AIRBYTE STAND-IN: generates the raw tables Airbyte would land, for local mode.

This is a stand-in, not Airbyte. In local mode (the default) the ``raw/*`` assets run it instead
of an Airbyte sync. It writes the same Iceberg tables with the same schemas, including Airbyte's
``_airbyte_raw_id`` / ``_airbyte_extracted_at`` / ``_airbyte_meta`` / ``_airbyte_generation_id``
(v2 destinations) columns, so downstream code cannot tell the difference.

Generation is pure and vectorised (numpy + pyarrow, no per-row Python), so benchmarks can call
:func:`generate_events` for millions of rows:

* deterministic: day ``k`` is generated from ``(seed, stream, k)`` alone, so it has the same rows
  whether generated alone or with other days;
* realistic dirt, because staging must cope with it: a few duplicated event rows per day
  (at-least-once delivery: same event, new ``_airbyte_raw_id``), and several versions of some
  users (updates: a new row per version, with a later ``updated_at``).

:func:`sync_stream` is the incremental sync, like an Airbyte incremental-append connection: it
reads the cursor (max of the stream's cursor field) from the table and appends only the days
after it, in one Iceberg commit.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.expressions import NotStartsWith, StartsWith
from pyiceberg.table import Table

from ingestion.landing import LANDING_META_PREFIX
from ingestion.settings import StandInSettings
from ingestion.streams import EVENTS, USERS, RawStream
from shared import iceberg
from shared.partitions import FIRST_DAY, day_of

US_PER_DAY = 86_400_000_000
#: Records of day ``k`` are "extracted" a few minutes after the day ends, like a nightly sync.
EXTRACT_DELAY_US = 5 * 60 * 1_000_000

EVENT_TYPES = ("page_view", "click", "add_to_cart", "purchase")
EVENT_TYPE_WEIGHTS = (0.6, 0.25, 0.1, 0.05)
PLANS = ("free", "pro", "enterprise")
PLAN_WEIGHTS = (0.7, 0.25, 0.05)
COUNTRIES = ("US", "DE", "FR", "GB", "BR", "IN", "JP", "NL")
COUNTRY_WEIGHTS = (0.3, 0.15, 0.1, 0.1, 0.1, 0.1, 0.1, 0.05)
FIRST_NAMES = ("Ada", "Alan", "Grace", "Linus", "Margaret", "Ken", "Barbara", "Dennis", "Frances")
LAST_NAMES = ("Lovelace", "Turing", "Hopper", "Torvalds", "Hamilton", "Thompson", "Liskov")

# Seed streams: independent random streams per (seed, purpose, day).
_SEED_EVENTS = 1
_SEED_USERS_BASE = 2
_SEED_USERS_UPDATES = 3

#: One duplicated event row per this many events of a day (at-least-once delivery).
DUPLICATE_EVERY = 250
#: One user version (update) per this many users per day.
UPDATE_EVERY = 50


def _epoch_us(day: dt.date) -> int:
    return int(dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC).timestamp() * 1_000_000)


def _timestamps(values_us: np.ndarray) -> pa.Array:
    return pa.array(values_us.astype(np.int64), type=pa.int64()).cast(pa.timestamp("us", tz="UTC"))


def _constant_strings(value: str, n: int) -> pa.Array:
    return pc.take(pa.array([value], pa.string()), pa.array(np.zeros(n, dtype=np.int32)))


def _choice_strings(rng: np.random.Generator, values, weights, n: int) -> pa.Array:
    idx = rng.choice(len(values), size=n, p=weights)
    return pc.take(pa.array(values, pa.string()), pa.array(idx.astype(np.int32)))


#: The two ASCII hex digits of every byte value, as one little-endian uint16 each.
_HEX_PAIRS = np.frombuffer(b"".join(f"{b:02x}".encode() for b in range(256)), dtype="<u2").copy()


def uuid_strings(rng: np.random.Generator, n: int) -> pa.StringArray:
    """``n`` random version-4 UUID strings from ``rng``, built without a Python loop."""
    raw = np.frombuffer(rng.bytes(16 * n), dtype=np.uint8).reshape(n, 16).copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    hexchars = _HEX_PAIRS[raw].view(np.uint8).reshape(n, 32)  # one lookup per byte
    text = np.full((n, 36), ord("-"), dtype=np.uint8)
    for dst, src in (((0, 8), (0, 8)), ((9, 13), (8, 12)), ((14, 18), (12, 16)),
                     ((19, 23), (16, 20)), ((24, 36), (20, 32))):  # fmt: skip
        text[:, dst[0] : dst[1]] = hexchars[:, src[0] : src[1]]
    offsets = np.arange(0, 36 * (n + 1), 36, dtype=np.int64)
    return pa.LargeStringArray.from_buffers(
        n, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(text))
    ).cast(pa.string())


def _airbyte_meta(sync_id: int) -> str:
    return json.dumps({"sync_id": sync_id, "changes": []}, separators=(",", ":"))


def _generation_ids(n: int) -> pa.Array:
    """``_airbyte_generation_id``: 0, the generation of a connection never refreshed or cleared."""
    return pa.array(np.zeros(n, dtype=np.int64))


def generate_events(standin: StandInSettings, day_index: int) -> pa.Table:
    """The raw.events rows of day ``day_index`` (0 is ``FIRST_DAY``): exactly
    ``standin.events_per_day`` rows, of which ``events_per_day // 250`` re-deliver an earlier
    event of the day (same event, new ``_airbyte_raw_id``), sorted by ``event_ts``.
    """
    n = standin.events_per_day
    rng = np.random.default_rng([standin.seed, _SEED_EVENTS, day_index])
    n_dup = n // DUPLICATE_EVERY
    n_unique = n - n_dup
    start = _epoch_us(day_of(day_index))

    ts = start + np.sort(rng.integers(0, US_PER_DAY, size=n_unique, dtype=np.int64))
    user_id = rng.integers(1, max(standin.users, 1) + 1, size=n_unique, dtype=np.int64)
    type_idx = rng.choice(len(EVENT_TYPES), size=n_unique, p=EVENT_TYPE_WEIGHTS)
    amount = np.round(rng.lognormal(mean=3.5, sigma=0.8, size=n_unique), 2)
    is_purchase = type_idx == EVENT_TYPES.index("purchase")
    event_id = uuid_strings(rng, n_unique)

    # Re-delivered rows copy an event of the same day; placed right after the original.
    dup_of = (
        np.sort(rng.choice(n_unique, size=n_dup, replace=n_dup > n_unique))
        if n_dup
        else (np.empty(0, dtype=np.int64))
    )
    rows = np.sort(np.concatenate([np.arange(n_unique), dup_of]), kind="stable")
    is_redelivery = np.zeros(n, dtype=bool)
    if n_dup:
        is_redelivery[1:] = rows[1:] == rows[:-1]
    take = pa.array(rows.astype(np.int64))

    extracted = np.full(n, start + US_PER_DAY + EXTRACT_DELAY_US, dtype=np.int64)
    extracted[is_redelivery] += 60 * 1_000_000  # the retry extracted it a minute later

    columns = {
        "event_id": pc.take(event_id, take),
        "user_id": pa.array(user_id[rows]),
        "event_type": pc.take(pa.array(EVENT_TYPES, pa.string()), pa.array(type_idx[rows])),
        "event_ts": _timestamps(ts[rows]),
        "amount": pa.array(amount[rows], mask=~is_purchase[rows], type=pa.float64()),
        "_airbyte_raw_id": uuid_strings(rng, n),
        "_airbyte_extracted_at": _timestamps(extracted),
        "_airbyte_meta": _constant_strings(_airbyte_meta(day_index + 1), n),
        "_airbyte_generation_id": _generation_ids(n),
    }
    return pa.Table.from_pydict(columns, schema=EVENTS.schema)


def _user_attributes(standin: StandInSettings) -> dict[str, Any]:
    """Base attributes of every user (the first version), from the seed alone."""
    n = standin.users
    rng = np.random.default_rng([standin.seed, _SEED_USERS_BASE])
    ids = np.arange(1, n + 1, dtype=np.int64)
    first = pc.take(pa.array(FIRST_NAMES), pa.array(rng.integers(0, len(FIRST_NAMES), n)))
    last = pc.take(pa.array(LAST_NAMES), pa.array(rng.integers(0, len(LAST_NAMES), n)))
    # Signed up during the year before the first day of events.
    signup = _epoch_us(FIRST_DAY) - rng.integers(1, 365 * US_PER_DAY, size=n, dtype=np.int64)
    return {
        "id": ids,
        "first": first,
        "last": last,
        "name": pc.binary_join_element_wise(first, last, " "),
        "country": _choice_strings(rng, COUNTRIES, COUNTRY_WEIGHTS, n),
        "plan": _choice_strings(rng, PLANS, PLAN_WEIGHTS, n),
        "signup_at": signup,
    }


def _emails(first: pa.Array, last: pa.Array, ids: np.ndarray, domain: str) -> pa.Array:
    id_text = pc.cast(pa.array(ids), pa.string())
    return pc.utf8_lower(pc.binary_join_element_wise(first, ".", last, id_text, "@", domain, ""))


def generate_users_base(standin: StandInSettings) -> pa.Table:
    """The first version of every user (``updated_at == signup_at``), from the initial load."""
    attrs = _user_attributes(standin)
    n = standin.users
    first_sync = _epoch_us(FIRST_DAY) + EXTRACT_DELAY_US
    columns = {
        "id": pa.array(attrs["id"]),
        "email": _emails(attrs["first"], attrs["last"], attrs["id"], "example.com"),
        "name": attrs["name"],
        "country": attrs["country"],
        "plan": attrs["plan"],
        "signup_at": _timestamps(attrs["signup_at"]),
        "updated_at": _timestamps(attrs["signup_at"]),
        "_airbyte_raw_id": uuid_strings(
            np.random.default_rng([standin.seed, _SEED_USERS_BASE, 1]), n
        ),
        "_airbyte_extracted_at": _timestamps(np.full(n, first_sync, dtype=np.int64)),
        "_airbyte_meta": _constant_strings(_airbyte_meta(0), n),
        "_airbyte_generation_id": _generation_ids(n),
    }
    return pa.Table.from_pydict(columns, schema=USERS.schema)


def generate_user_updates(standin: StandInSettings, day_index: int) -> pa.Table:
    """New versions of ``users // 50`` (at least one) users updated during day ``day_index``:
    a new plan, and for some a new email; ``updated_at`` falls within the day.
    """
    n_users = standin.users
    k = max(1, n_users // UPDATE_EVERY) if n_users else 0
    rng = np.random.default_rng([standin.seed, _SEED_USERS_UPDATES, day_index])
    chosen = np.sort(rng.choice(n_users, size=k, replace=False)) if k else np.empty(0, np.int64)
    attrs = _user_attributes(standin) if k else None
    start = _epoch_us(day_of(day_index))
    updated = start + rng.integers(0, US_PER_DAY, size=k, dtype=np.int64)
    new_email = rng.random(k) < 0.3
    take = pa.array(chosen.astype(np.int64))
    if attrs is None:
        return USERS.schema.empty_table()
    ids = attrs["id"][chosen]
    first, last = pc.take(attrs["first"], take), pc.take(attrs["last"], take)
    email = pc.if_else(
        pa.array(new_email),
        _emails(first, last, ids, "example.org"),
        _emails(first, last, ids, "example.com"),
    )
    columns = {
        "id": pa.array(ids),
        "email": email,
        "name": pc.take(attrs["name"], take),
        "country": pc.take(attrs["country"], take),
        "plan": _choice_strings(rng, PLANS, (0.3, 0.5, 0.2), k),
        "signup_at": _timestamps(attrs["signup_at"][chosen]),
        "updated_at": _timestamps(updated),
        "_airbyte_raw_id": uuid_strings(rng, k),
        "_airbyte_extracted_at": _timestamps(
            np.full(k, start + US_PER_DAY + EXTRACT_DELAY_US, dtype=np.int64)
        ),
        "_airbyte_meta": _constant_strings(_airbyte_meta(day_index + 1), k),
        "_airbyte_generation_id": _generation_ids(k),
    }
    return pa.Table.from_pydict(columns, schema=USERS.schema).sort_by("updated_at")


# --------------------------------------------------------------------------------------------
# Incremental sync (the stand-in's equivalent of an Airbyte incremental-append connection)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyncPlan:
    """What one stand-in sync of a stream writes."""

    stream: str
    #: Write the users' first versions (the table does not exist yet).
    initial_load: bool
    #: Day indexes (0 = FIRST_DAY) to append, ascending.
    days: tuple[int, ...] = field(default_factory=tuple)

    @property
    def is_noop(self) -> bool:
        return not self.initial_load and not self.days


def day_index_of(ts: dt.datetime) -> int:
    """The day index (0 = FIRST_DAY) of a UTC timestamp; negative before FIRST_DAY."""
    return (ts.astimezone(dt.UTC).date() - FIRST_DAY).days


def plan_sync(stream: RawStream, standin: StandInSettings, cursor: dt.datetime | None,
              table_exists: bool) -> SyncPlan:  # fmt: skip
    """Which days a sync appends, given the stream's cursor (the max of its cursor field in the
    table, ``None`` if empty). Days are whole: the cursor's day was written in full by an
    earlier sync (one commit per sync), so only later days are new.
    """
    window = standin.day_indexes
    first_new = window.start if cursor is None else max(window.start, day_index_of(cursor) + 1)
    days = tuple(range(first_new, window.stop))
    if stream.name == USERS.name:
        return SyncPlan(stream.name, initial_load=not table_exists or cursor is None, days=days)
    if stream.name == EVENTS.name:
        return SyncPlan(stream.name, initial_load=False, days=days)
    raise ValueError(f"the local stand-in has no generator for stream {stream.name!r}")


def plan_batches(plan: SyncPlan, standin: StandInSettings) -> Iterator[pa.Table]:
    """The Arrow batches a sync plan writes (one per day), generated lazily."""
    if plan.stream == USERS.name:
        if plan.initial_load:
            yield generate_users_base(standin)
        for day in plan.days:
            yield generate_user_updates(standin, day)
    elif plan.stream == EVENTS.name:
        for day in plan.days:
            yield generate_events(standin, day)
    else:
        raise ValueError(f"the local stand-in has no generator for stream {plan.stream!r}")


def read_cursor(catalog: Catalog, stream: RawStream) -> tuple[bool, dt.datetime | None]:
    """(table exists, cursor) of ``stream``'s raw table as the catalog has it now
    (:func:`cursor_of`)."""
    try:
        table = catalog.load_table(stream.identifier)
    except NoSuchTableError:
        return False, None
    return True, cursor_of(table, stream)


def cursor_of(table: Table, stream: RawStream) -> dt.datetime | None:
    """The max of the stream's cursor field over the stand-in's own rows in ``table`` (at the
    snapshot it was loaded at), read from the raw table itself, so the cursor can never disagree
    with the data (Airbyte keeps it in its own state instead).

    Rows loaded from landing batches (:mod:`ingestion.landing`) are another source, like
    another Airbyte connection: they do not move this cursor. Otherwise one landed row dated
    2999 would stop the stand-in from ever generating a day again.
    """
    field = stream.cursor_field
    # Landed rows' _airbyte_meta starts with a fixed prefix, and Iceberg keeps per-file bounds
    # of that column: the common case (no landed rows) prunes every file and reads nothing.
    landed = table.scan(
        row_filter=StartsWith("_airbyte_meta", LANDING_META_PREFIX), selected_fields=(field,)
    ).to_arrow()
    if landed.num_rows:
        row_filter = NotStartsWith("_airbyte_meta", LANDING_META_PREFIX)
        column = table.scan(row_filter=row_filter, selected_fields=(field,)).to_arrow()[field]
    else:
        try:  # every row is the stand-in's: the max is in the manifests' upper bounds
            return iceberg.column_max(table, field)
        except LookupError:  # metadata cannot tell (delete files, no bounds): read the column
            column = table.scan(selected_fields=(field,)).to_arrow()[field]
    return pc.max(column).as_py() if len(column) else None


@dataclass(frozen=True)
class StandInSyncResult:
    """What a stand-in sync of one stream did, for Dagster metadata."""

    plan: SyncPlan
    write: iceberg.TableWriteResult

    def as_metadata(self, standin: StandInSettings) -> dict[str, Any]:
        days = self.plan.days
        return {
            **self.write.as_metadata(),
            "source": "local Airbyte stand-in",
            "standin_batch_days": (
                f"{day_of(days[0]).isoformat()}..{day_of(days[-1]).isoformat()}" if days else "none"
            ),
            "standin_new_days": len(days),
            "standin_initial_load": self.plan.initial_load,
            "standin_settings": (
                f"users={standin.users} events_per_day={standin.events_per_day} "
                f"days={standin.days} seed={standin.seed} end={standin.end or 'fixed'}"
            ),
        }


def sync_stream(catalog: Catalog, stream: RawStream, standin: StandInSettings) -> StandInSyncResult:
    """Run one incremental stand-in sync of ``stream`` into ``raw.<stream>``: one Iceberg commit
    appending the new days (nothing when the table is up to date).

    The days are planned from the cursor of the snapshot the append commits onto
    (:func:`shared.iceberg.append_new`): when a concurrent sync of the stream commits first, the
    cursor is read again and the days it wrote are skipped, never appended twice.
    """
    plans: list[SyncPlan] = []

    def new_days(table: Table | None) -> Callable[[], Iterator[pa.Table]] | None:
        cursor = cursor_of(table, stream) if table is not None else None
        plan = plan_sync(stream, standin, cursor, table is not None)
        plans.append(plan)
        return None if plan.is_noop else (lambda: plan_batches(plan, standin))

    write = iceberg.append_new(catalog, stream.identifier, new_days, schema=stream.schema)
    return StandInSyncResult(plans[-1], write)
