"""The one place that decides the environment.

Every setting of the platform is read from the environment here, validated, and returned as a
frozen :class:`Settings`. Nothing reads the environment at import time: callers (resources at run
time, the CLI, tests) call :func:`load_settings`, so a test sets variables and calls it again.

This module is also the *mechanism* every other setting goes through: :func:`environment` is the
only reader of ``os.environ`` in the platform's code, and :func:`env_str`, :func:`env_int`,
:func:`env_secret` and :func:`env_path` parse and validate one variable each, with one clear
:class:`SettingsError` naming the variable and what is allowed. A location declares its own
section with them (``ingestion.settings`` for the Airbyte stand-in and the landing zone):
``shared`` knows no location.

Modes:

* ``local`` (default): everything embedded. A pyiceberg SQL catalog on SQLite and a warehouse
  folder under ``DATA_PLATFORM_HOME``, dbt on DuckDB, a local stand-in for Airbyte.
* ``prod``: the real services. An Iceberg REST catalog, Garage (S3 API), Airbyte's API, Trino.

Secrets are kept in :class:`Secret` wrappers whose ``repr`` never shows the value, so a settings
object can be logged or put in an error message without leaking a credential.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

MODES = ("local", "prod")

#: Garage names its only region "garage"; clients that are not told ask AWS and stall.
GARAGE_REGION = "garage"


class SettingsError(ValueError):
    """A setting is missing or has a value the platform cannot use."""


@dataclass(frozen=True)
class Secret:
    """A credential. Its ``repr``/``str`` never reveal the value; call :meth:`reveal` to use it."""

    value: str = field(repr=False)

    def reveal(self) -> str:
        return self.value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self.value)


@dataclass(frozen=True)
class ObjectStoreSettings:
    """Where files live: a local folder, or Garage through its S3 API."""

    endpoint: str | None
    region: str
    access_key_id: Secret | None
    secret_access_key: Secret | None
    bucket: str | None
    local_root: Path


@dataclass(frozen=True)
class CatalogSettings:
    """How to reach the Iceberg catalog."""

    name: str
    #: local: ``sqlite:///<home>/catalog.db`` (path quoted); prod: the REST catalog's URL.
    uri: str
    #: local: ``<home>/warehouse`` (a path); prod: ``s3://bucket/prefix`` or the REST warehouse name.
    warehouse: str
    token: Secret | None = None


@dataclass(frozen=True)
class AirbyteSettings:
    """How to reach a self-managed Airbyte (prod only)."""

    url: str
    workspace_id: str
    client_id: Secret | None
    client_secret: Secret | None
    username: Secret | None
    password: Secret | None

    @property
    def rest_api_base_url(self) -> str:
        return f"{self.url.rstrip('/')}/api/public/v1"

    @property
    def configuration_api_base_url(self) -> str:
        return f"{self.url.rstrip('/')}/api/v1"


@dataclass(frozen=True)
class Settings:
    """Validated settings for one process."""

    env: str
    home: Path
    catalog: CatalogSettings
    object_store: ObjectStoreSettings
    airbyte: AirbyteSettings | None

    @property
    def is_local(self) -> bool:
        return self.env == "local"

    @property
    def warehouse_dir(self) -> Path:
        """The local warehouse folder (local mode)."""
        return self.home / "warehouse"

    def catalog_properties(self) -> dict[str, str]:
        """Properties for ``pyiceberg.catalog.load_catalog`` (credentials included: do not log)."""
        if self.is_local:
            return {"type": "sql", "uri": self.catalog.uri, "warehouse": self.catalog.warehouse}
        props = {
            "type": "rest",
            "uri": self.catalog.uri,
            "warehouse": self.catalog.warehouse,
            # s3fs rather than pyarrow's S3 client: the AWS C++ SDK in pyarrow sends streaming
            # checksummed uploads (aws-chunked) that S3-compatible servers such as Garage and
            # rclone reject with MissingContentLength unless AWS_REQUEST_CHECKSUM_CALCULATION
            # is set process-wide; s3fs works with them as configured.
            "py-io-impl": "pyiceberg.io.fsspec.FsspecFileIO",
        }
        if self.catalog.token:
            props["token"] = self.catalog.token.reveal()
        store = self.object_store
        if store.endpoint:
            props["s3.endpoint"] = store.endpoint
        props["s3.region"] = store.region
        if store.access_key_id and store.secret_access_key:
            props["s3.access-key-id"] = store.access_key_id.reveal()
            props["s3.secret-access-key"] = store.secret_access_key.reveal()
        return props


def ensure_home(settings: Settings) -> Path:
    """Create the local home if needed and check that it is a folder this user can write.

    A home that is a file, lies under a file, cannot be created or is not writable is one
    :class:`SettingsError` naming ``DATA_PLATFORM_HOME`` and what is allowed, not a traceback
    from the first write. Called when the home is about to be used (the CLI, opening the local
    catalog), never at import.
    """
    home = settings.home
    problem = None
    for folder in (home, *home.parents):
        if folder.exists():
            if not folder.is_dir():
                problem = "it is a file" if folder == home else f"it is under a file ({folder})"
            break
    if problem is None:
        try:
            home.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            problem = f"it cannot be created ({exc.strerror or exc})"
    if problem is None and not os.access(home, os.W_OK | os.X_OK):
        problem = "this user cannot write in it"
    if problem:
        raise SettingsError(
            f"DATA_PLATFORM_HOME={str(home)!r} is not usable: {problem}. Allowed: a folder, "
            "existing or creatable, that this user can write."
        )
    return home


def default_home() -> Path:
    """``.data-platform/`` at the repository root when run from a checkout, else the cwd."""
    here = Path.cwd().resolve()
    for candidate in (here, *here.parents):
        if (candidate / "workspace.yaml").exists() and (candidate / "pyproject.toml").exists():
            return candidate / ".data-platform"
    return here / ".data-platform"


def environment(environ: Mapping[str, str] | None = None) -> Mapping[str, str]:
    """The environment to read settings from: ``environ`` if given (tests), else ``os.environ``.

    The only place of the platform's code that touches ``os.environ`` for reading.
    """
    return os.environ if environ is None else environ


def env_str(environ: Mapping[str, str], name: str, default: str | None = None) -> str | None:
    """``name``'s value, stripped; ``default`` when unset or blank."""
    value = environ.get(name, "").strip()
    return value or default


def env_secret(environ: Mapping[str, str], name: str) -> Secret | None:
    """``name``'s value as a :class:`Secret` (never shown in a repr), or None when unset."""
    value = environ.get(name)
    return Secret(value) if value else None


def env_int(
    environ: Mapping[str, str], name: str, default: int, *, minimum: int = 0, maximum: int
) -> int:
    """``name`` as a whole number in ``[minimum, maximum]``; ``default`` when unset.

    Anything else (not a number, out of range, absurdly large) is one :class:`SettingsError`
    naming the variable and the allowed range, never a ``ValueError`` or ``OverflowError`` later.
    """
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value: int | None = int(raw)
    except ValueError:
        value = None
    if value is None or not minimum <= value <= maximum:
        raise SettingsError(
            f"{name}={raw!r} is not allowed: a whole number from {minimum} to {maximum}."
        )
    return value


def env_path(environ: Mapping[str, str], name: str) -> Path | None:
    """``name`` as an absolute path (``~`` expanded), or None when unset."""
    raw = env_str(environ, name)
    return Path(raw).expanduser().resolve() if raw else None


def _secret(environ: Mapping[str, str], name: str) -> Secret | None:
    return env_secret(environ, name)


def _require(environ: Mapping[str, str], name: str, why: str) -> str:
    value = environ.get(name, "").strip()
    if not value:
        raise SettingsError(f"{name} must be set when DATA_PLATFORM_ENV=prod ({why}).")
    return value


#: API bases that ``AIRBYTE_URL`` may end with (Airbyte's docs show the public one): the server
#: root is what remains, and both APIs are derived from it (``AirbyteSettings``).
_AIRBYTE_API_SUFFIXES = ("/api/public/v1", "/api/v1")


def _airbyte_url(raw: str) -> str:
    """The Airbyte server root from ``AIRBYTE_URL``: the root itself, or an API base."""
    from urllib.parse import urlsplit

    url = raw.strip().rstrip("/")
    parts = urlsplit(url)
    expected = (
        "set AIRBYTE_URL to the Airbyte server root (e.g. http://airbyte-server:8000) or to its "
        "public API base ending in /api/public/v1"
    )
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
        raise SettingsError(f"AIRBYTE_URL={raw.strip()!r} is not an http(s) URL: {expected}.")
    for suffix in _AIRBYTE_API_SUFFIXES:
        if parts.path.endswith(suffix):
            return url[: -len(suffix)]
    if parts.path.rstrip("/").rsplit("/", 1)[-1] in ("api", "public", "v1"):
        # A partial API path would make every call 404 or 401: say what to set instead.
        raise SettingsError(f"AIRBYTE_URL={raw.strip()!r} points into Airbyte's API: {expected}.")
    return url


def load_settings(
    environ: Mapping[str, str] | None = None, *, home: str | Path | None = None
) -> Settings:
    """Read and validate the platform's settings from ``environ`` (default: ``os.environ``).

    ``home``, when given, overrides ``DATA_PLATFORM_HOME`` (the resources' ``home`` field, the
    CLI, tests): the one place that override is applied.

    Raises :class:`SettingsError` with one clear message for a bad value.
    """
    env_vars = environment(environ)
    if home:
        env_vars = {**env_vars, "DATA_PLATFORM_HOME": str(home)}
    env = env_vars.get("DATA_PLATFORM_ENV", "local").strip().lower() or "local"
    if env not in MODES:
        raise SettingsError(
            f"DATA_PLATFORM_ENV={env_vars.get('DATA_PLATFORM_ENV')!r} is not a mode of the "
            f"platform; allowed values: {', '.join(MODES)}."
        )
    home_dir = env_path(env_vars, "DATA_PLATFORM_HOME") or default_home()
    return _settings_for(env, env_vars, home_dir)


def _settings_for(env: str, env_vars: Mapping[str, str], home: Path) -> Settings:

    if env == "local":
        catalog = CatalogSettings(
            name="local",
            # timeout: SQLite's busy timeout (seconds), so parallel steps wait for the write lock
            # instead of failing with "database is locked".
            # The path quoted in the URL (SQLAlchemy decodes it): a home containing `?`, `%`,
            # `#` or spaces must not cut or change the path (`…/pct%41x` was `…/pctAx`).
            uri=f"sqlite:///{quote(str(home / 'catalog.db'))}?timeout=60",
            # A plain absolute path, not a file:// URL: pyiceberg's local FileIO does not decode
            # file URLs (a quoted `%3F` would become a folder name) and cuts an unquoted one at
            # `?` or `#`; a path without a scheme is taken as it is.
            warehouse=str(home / "warehouse"),
        )
        store = ObjectStoreSettings(
            endpoint=None,
            region=GARAGE_REGION,
            access_key_id=None,
            secret_access_key=None,
            bucket=None,
            local_root=home / "objects",
        )
        return Settings(env, home, catalog, store, airbyte=None)

    catalog = CatalogSettings(
        name=env_vars.get("ICEBERG_CATALOG_NAME", "lakehouse"),
        uri=_require(
            env_vars, "ICEBERG_REST_URI", "the Iceberg REST catalog, e.g. http://iceberg-rest:8181"
        ),
        warehouse=env_vars.get("ICEBERG_WAREHOUSE", "s3://lakehouse/warehouse"),
        token=_secret(env_vars, "ICEBERG_REST_TOKEN"),
    )
    store = ObjectStoreSettings(
        endpoint=_require(
            env_vars, "GARAGE_S3_ENDPOINT", "Garage's S3 API, e.g. http://garage:3900"
        ),
        region=env_vars.get("GARAGE_REGION", GARAGE_REGION),
        access_key_id=_secret(env_vars, "GARAGE_ACCESS_KEY_ID"),
        secret_access_key=_secret(env_vars, "GARAGE_SECRET_ACCESS_KEY"),
        bucket=env_vars.get("GARAGE_BUCKET", "lakehouse"),
        local_root=home / "objects",
    )
    airbyte = None
    if env_vars.get("AIRBYTE_URL"):
        airbyte = AirbyteSettings(
            url=_airbyte_url(env_vars["AIRBYTE_URL"]),
            workspace_id=_require(
                env_vars, "AIRBYTE_WORKSPACE_ID", "the Airbyte workspace to sync"
            ),
            client_id=_secret(env_vars, "AIRBYTE_CLIENT_ID"),
            client_secret=_secret(env_vars, "AIRBYTE_CLIENT_SECRET"),
            username=_secret(env_vars, "AIRBYTE_USERNAME"),
            password=_secret(env_vars, "AIRBYTE_PASSWORD"),
        )
        has_client = airbyte.client_id and airbyte.client_secret
        has_basic = airbyte.username and airbyte.password
        if not (has_client or has_basic):
            raise SettingsError(
                "Airbyte credentials missing: set AIRBYTE_CLIENT_ID and AIRBYTE_CLIENT_SECRET, "
                "or AIRBYTE_USERNAME and AIRBYTE_PASSWORD."
            )
    return Settings(env, home, catalog, store, airbyte)


#: Default of ``DATA_PLATFORM_LATE_DATA_LOOKBACK_DAYS`` (see :func:`late_data_lookback_days`).
LATE_DATA_LOOKBACK_DAYS = 1


def late_data_lookback_days(environ: Mapping[str, str] | None = None) -> int:
    """``DATA_PLATFORM_LATE_DATA_LOOKBACK_DAYS``: how many days before each day a raw sync changed
    the daily assets re-run too (default 1; 0 runs exactly the changed days). Read when the
    automation conditions are evaluated, never at import (``shared.automation``)."""
    return env_int(
        environment(environ),
        "DATA_PLATFORM_LATE_DATA_LOOKBACK_DAYS",
        LATE_DATA_LOOKBACK_DAYS,
        minimum=0,
        maximum=366,
    )


@dataclass(frozen=True)
class CodeReferenceSettings:
    """Where the catalog's "source code" links point: the git repository, when configured."""

    git_url: str | None
    git_branch: str


def load_code_reference_settings(environ: Mapping[str, str] | None = None) -> CodeReferenceSettings:
    """``DATA_PLATFORM_GIT_URL`` (e.g. ``https://github.com/org/data-platform``) and
    ``DATA_PLATFORM_GIT_BRANCH`` (default ``main``).

    The one setting read when definitions load (by ``shared.catalog``), not when a run starts:
    code references are part of the asset definitions the UI shows. It reads two variables and
    makes no call; unset, the links stay local file paths.
    """
    env_vars = environment(environ)
    url = (env_str(env_vars, "DATA_PLATFORM_GIT_URL") or "").rstrip("/") or None
    if url and not url.startswith(("https://", "http://")):
        raise SettingsError(
            f"DATA_PLATFORM_GIT_URL={url!r} must be the repository's web URL "
            "(https://...), used to link assets to their source files."
        )
    branch = env_str(env_vars, "DATA_PLATFORM_GIT_BRANCH", "main") or "main"
    return CodeReferenceSettings(git_url=url, git_branch=branch)


#: Defaults of :func:`snapshot_retention` (why these: its docstring).
SNAPSHOT_KEEP_LAST = 16
SNAPSHOT_MIN_AGE_MINUTES = 60


@dataclass(frozen=True)
class SnapshotRetention:
    """How many old snapshots a table keeps (``shared.maintenance``): a snapshot is expired
    only when it is BOTH beyond the newest ``keep_last`` AND older than ``min_age_ms``."""

    keep_last: int
    min_age_ms: int


def snapshot_retention(environ: Mapping[str, str] | None = None) -> SnapshotRetention:
    """``DATA_PLATFORM_SNAPSHOT_KEEP_LAST`` (default 16, at least 2) and
    ``DATA_PLATFORM_SNAPSHOT_MIN_AGE_MINUTES`` (default 60; 0 allowed): the retention of every
    table's snapshots. Read when a maintenance run starts or a daily table's write expires
    snapshots in its commit, never at import.

    Why both bounds, and these defaults:

    * The count bounds the cost. pyiceberg copies the whole table metadata, which lists every
      snapshot, several times per commit, so a commit's cost grows with the snapshots kept. An
      age-only rule (Iceberg's own default: 5 days) keeps every snapshot of those days: about 120
      per table with the hourly sync, 1,440 with a 5-minute one, so the cost would still follow
      the sync frequency times the age. Sixteen is the count the daily tables keep in their own
      commits (``shared.iceberg.DAILY_TABLE_PROPERTIES``; those commits never keep less than
      these settings, ``shared.iceberg._expired_snapshots``): 16 hours of time travel at the
      hourly sync, 16 days at a daily one.
    * The age protects what is in flight: a run reading an older snapshot by id (a sync reads
      the table as of its pre-sync snapshot to find moved keys; the raw checks compare the
      latest commit with its parent). An hour is far longer than those reads; runs that already
      planned their files are not affected at all (expiry removes metadata, no file).
    * At least 2: the current snapshot and its parent always stay. Whatever the count, the
      expiry also keeps the snapshots the checks of the latest sync read: back to that sync
      (past the compactions after it) and the snapshot it committed onto
      (``shared.maintenance.latest_sync_snapshots``).

    A benchmark that compresses days into minutes sets the age to 0.
    """
    env_vars = environment(environ)
    keep = env_int(
        env_vars, "DATA_PLATFORM_SNAPSHOT_KEEP_LAST", SNAPSHOT_KEEP_LAST, minimum=2, maximum=100_000
    )
    minutes = env_int(
        env_vars,
        "DATA_PLATFORM_SNAPSHOT_MIN_AGE_MINUTES",
        SNAPSHOT_MIN_AGE_MINUTES,
        minimum=0,
        maximum=366 * 24 * 60,
    )
    return SnapshotRetention(keep_last=keep, min_age_ms=minutes * 60 * 1000)


#: Default of :func:`orphan_min_age_hours`: Iceberg's own default for ``remove_orphan_files``.
ORPHAN_MIN_AGE_HOURS = 72
#: The least :func:`orphan_min_age_hours` allows: a day, as Spark's procedure.
ORPHAN_MIN_AGE_HOURS_MINIMUM = 24


def orphan_min_age_hours(environ: Mapping[str, str] | None = None) -> int:
    """``DATA_PLATFORM_ORPHAN_MIN_AGE_HOURS`` (default 72, Iceberg's 3 days; at least
    :data:`ORPHAN_MIN_AGE_HOURS_MINIMUM`, 24): how old a file no metadata references must be
    before the orphan-file clean-up (``shared.orphans``) deletes it. Read when a maintenance run
    starts, never at import.

    The age is what keeps a clean-up from deleting what is still in use (the reasons:
    ``shared.orphans``): a write's files exist before its commit references them, and a reader
    that planned a table a while ago still reads the files it planned. It must be longer than
    the longest write and the longest read. Some writes hold written, uncommitted files for
    hours (a prod Airbyte initial sync, a key-index backfill), so less than a day is refused,
    as Spark's ``remove_orphan_files`` procedure refuses it (0 would delete the files of every
    write in progress).
    """
    try:
        return env_int(
            environment(environ),
            "DATA_PLATFORM_ORPHAN_MIN_AGE_HOURS",
            ORPHAN_MIN_AGE_HOURS,
            minimum=ORPHAN_MIN_AGE_HOURS_MINIMUM,
            maximum=10 * 366 * 24,
        )
    except SettingsError as exc:
        raise SettingsError(
            f"{exc} Less than {ORPHAN_MIN_AGE_HOURS_MINIMUM} hours could delete the files of a "
            "write still in progress (an Airbyte initial sync, a key-index backfill)."
        ) from None
