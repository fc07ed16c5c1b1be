"""The one place that decides the environment.

Every setting of the platform is read from the environment here, validated, and returned as a
frozen :class:`Settings`. Nothing reads the environment at import time: callers (resources at run
time, the CLI, tests) call :func:`load_settings`, so a test sets variables and calls it again.

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
    #: local: ``sqlite:///<home>/catalog.db``; prod: the REST catalog's URL.
    uri: str
    #: local: ``file://<home>/warehouse``; prod: ``s3://bucket/prefix`` or the REST warehouse name.
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
class StandInSettings:
    """Size of the data the local Airbyte stand-in generates (local mode only).

    Generation is seeded and done one day at a time, so day ``k`` has the same rows whether it is
    generated alone or with the days before it.
    """

    users: int = 200
    events_per_day: int = 500
    days: int = 14
    seed: int = 42


@dataclass(frozen=True)
class Settings:
    """Validated settings for one process."""

    env: str
    home: Path
    catalog: CatalogSettings
    object_store: ObjectStoreSettings
    airbyte: AirbyteSettings | None
    standin: StandInSettings = StandInSettings()

    @property
    def is_local(self) -> bool:
        return self.env == "local"

    @property
    def warehouse_dir(self) -> Path:
        """The local warehouse folder (local mode)."""
        return self.home / "warehouse"

    @property
    def landing_dir(self) -> Path:
        """The local landing zone watched by the ingestion sensor (local mode)."""
        return self.object_store.local_root / "landing"

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


def default_home() -> Path:
    """``.data-platform/`` at the repository root when run from a checkout, else the cwd."""
    here = Path.cwd().resolve()
    for candidate in (here, *here.parents):
        if (candidate / "workspace.yaml").exists() and (candidate / "pyproject.toml").exists():
            return candidate / ".data-platform"
    return here / ".data-platform"


def _secret(environ: Mapping[str, str], name: str) -> Secret | None:
    value = environ.get(name)
    return Secret(value) if value else None


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


def _positive_int(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise SettingsError(f"{name}={raw!r} must be a whole number >= 0.")
    return value


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the platform's settings from ``environ`` (default: ``os.environ``).

    Raises :class:`SettingsError` with one clear message for a bad value.
    """
    env_vars = os.environ if environ is None else environ
    env = env_vars.get("DATA_PLATFORM_ENV", "local").strip().lower() or "local"
    if env not in MODES:
        raise SettingsError(
            f"DATA_PLATFORM_ENV={env_vars.get('DATA_PLATFORM_ENV')!r} is not a mode of the "
            f"platform; allowed values: {', '.join(MODES)}."
        )
    home_raw = env_vars.get("DATA_PLATFORM_HOME", "").strip()
    home = Path(home_raw).expanduser().resolve() if home_raw else default_home()

    standin = StandInSettings(
        users=_positive_int(env_vars, "DATA_PLATFORM_STANDIN_USERS", StandInSettings.users),
        events_per_day=_positive_int(
            env_vars, "DATA_PLATFORM_STANDIN_EVENTS_PER_DAY", StandInSettings.events_per_day
        ),
        days=_positive_int(env_vars, "DATA_PLATFORM_STANDIN_DAYS", StandInSettings.days),
        seed=_positive_int(env_vars, "DATA_PLATFORM_STANDIN_SEED", StandInSettings.seed),
    )

    if env == "local":
        catalog = CatalogSettings(
            name="local",
            # timeout: SQLite's busy timeout (seconds), so parallel steps wait for the write lock
            # instead of failing with "database is locked".
            uri=f"sqlite:///{home / 'catalog.db'}?timeout=60",
            warehouse=(home / "warehouse").as_uri(),
        )
        store = ObjectStoreSettings(
            endpoint=None,
            region=GARAGE_REGION,
            access_key_id=None,
            secret_access_key=None,
            bucket=None,
            local_root=home / "objects",
        )
        return Settings(env, home, catalog, store, airbyte=None, standin=standin)

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
    return Settings(env, home, catalog, store, airbyte, standin=standin)


#: Default of ``DATA_PLATFORM_LATE_DATA_LOOKBACK_DAYS`` (see :func:`late_data_lookback_days`).
LATE_DATA_LOOKBACK_DAYS = 1


def late_data_lookback_days(environ: Mapping[str, str] | None = None) -> int:
    """``DATA_PLATFORM_LATE_DATA_LOOKBACK_DAYS``: how many days before each day a raw sync changed
    the daily assets re-run too (default 1; 0 runs exactly the changed days). Read when the
    automation conditions are evaluated, never at import (``shared.automation``)."""
    env_vars = os.environ if environ is None else environ
    return _positive_int(env_vars, "DATA_PLATFORM_LATE_DATA_LOOKBACK_DAYS", LATE_DATA_LOOKBACK_DAYS)
