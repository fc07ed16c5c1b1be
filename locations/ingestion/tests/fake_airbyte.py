"""A STAND-IN for Airbyte's HTTP API, for tests only: a real HTTP server on 127.0.0.1.

It answers the calls dagster-airbyte makes against a self-managed Airbyte: the public API
(``/api/public/v1``: token, workspaces, connections with paging, destinations, jobs
create/get/list/cancel) and the two configuration-API calls (``/api/v1``: ``connections/get``,
``jobs/get``). Every public-API payload it serves, and every request body it receives, is
validated against the public API's OpenAPI spec (``shared/reference/airbyte``) when that spec is
available, so this stand-in cannot drift from the real API; a violation is recorded in
``server.violations`` (tests assert it stays empty) and answered with HTTP 500. The
configuration API is internal and not in that spec: its payloads follow Airbyte's
``config.yaml`` shapes that dagster-airbyte reads.

Faults are injected per route: ``server.fail(route, [503, 502])`` answers the next calls with
those statuses (``retry_after=`` adds a ``Retry-After`` header), ``server.delay(route, seconds)``
answers the next call late (a timeout), ``server.outage_after(route, n, seconds)`` makes the
whole server drop every connection unanswered for ``seconds`` once ``route`` was called ``n``
times (an API outage while a job goes on: jobs keep their state meanwhile).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import threading
import uuid
from dataclasses import dataclass, field
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

PUBLIC = "/api/public/v1"
CONFIG = "/api/v1"


def spec_path() -> Path | None:
    """The public API's OpenAPI spec: ``$AIRBYTE_OPENAPI_SPEC`` or ``../shared/reference``."""
    override = os.environ.get("AIRBYTE_OPENAPI_SPEC")
    candidates = [Path(override)] if override else []
    repo = Path(__file__).resolve().parents[3]
    candidates.append(repo.parent / "shared" / "reference" / "airbyte" / "public-api.openapi.yaml")
    return next((p for p in candidates if p.is_file()), None)


@cache
def _components() -> dict[str, Any] | None:
    path = spec_path()
    if path is None:
        return None
    import yaml

    return yaml.safe_load(path.read_text())["components"]


def validate(schema_name: str, payload: Any) -> None:
    """Validate ``payload`` against ``#/components/schemas/<schema_name>`` (no-op without spec)."""
    components = _components()
    if components is None:
        return
    from jsonschema import Draft202012Validator

    Draft202012Validator(
        {"$ref": f"#/components/schemas/{schema_name}", "components": components}
    ).validate(payload)


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class FakeConnection:
    name: str
    streams: list[str]
    destination_id: str
    connection_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    #: Streams present in the catalog but not selected for syncing.
    unselected: list[str] = field(default_factory=list)
    #: Airbyte's table naming: ``prefix + stream`` in the namespace chosen by
    #: ``namespace_definition`` (destination | source | custom_format).
    prefix: str = ""
    namespace_definition: str = "destination"
    namespace_format: str | None = None
    #: The namespace the source gives its streams (``source`` / ``${SOURCE_NAMESPACE}``).
    source_namespace: str | None = None

    def namespace(self, destination_default: str) -> str:
        """Where Airbyte writes this connection's streams (Airbyte's documented rules)."""
        if self.namespace_definition == "source":
            return self.source_namespace or destination_default
        if self.namespace_definition == "custom_format":
            formatted = (self.namespace_format or "").replace(
                "${SOURCE_NAMESPACE}", self.source_namespace or ""
            )
            return formatted or destination_default
        return destination_default


@dataclass
class FakeJob:
    job_id: int
    connection_id: str
    status: str = "pending"
    #: Status the job ends in, after ``polls_left`` more GETs.
    final_status: str = "succeeded"
    polls_left: int = 2
    failure_message: str | None = None
    created_at: str = field(default_factory=_now)
    rows: dict[str, int] = field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "jobId": self.job_id,
            "status": self.status,
            "jobType": "sync",
            "startTime": self.created_at,
            "connectionId": self.connection_id,
            "lastUpdatedAt": _now(),
        }
        if self.status == "succeeded":
            body["rowsSynced"] = sum(self.rows.values())
            body["bytesSynced"] = 100 * sum(self.rows.values())
            body["duration"] = "PT1M2S"
        return body


class FakeAirbyte(ThreadingHTTPServer):
    """The server and its state (see the module docstring)."""

    daemon_threads = True

    def __init__(self, workspace_id: str | None = None, client_id: str = "client-id",
                 client_secret: str = "client-secret") -> None:  # fmt: skip
        super().__init__(("127.0.0.1", 0), _Handler)
        self.workspace_id = workspace_id or str(uuid.uuid4())
        self.client_id = client_id
        self.client_secret = client_secret
        self.token = f"token-{uuid.uuid4()}"
        #: (username, password): accept only basic auth instead of bearer tokens.
        self.basic_auth: tuple[str, str] | None = None
        self.destination_id = str(uuid.uuid4())
        self.connections: list[FakeConnection] = []
        self.jobs: dict[int, FakeJob] = {}
        self._ids = itertools.count(1000)
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str, dict[str, list[str]], Any]] = []
        self.violations: list[str] = []
        #: time.monotonic() of each request, in the order of ``requests``.
        self.request_times: list[float] = []
        self._failures: dict[str, list[tuple[int, str | None]]] = {}
        self._outages: dict[str, tuple[int, float]] = {}
        self.down_until = 0.0
        #: Routes of the requests dropped unanswered during an outage.
        self.dropped: list[str] = []
        self._delays: dict[str, list[float]] = {}
        #: How new jobs behave.
        self.next_final_status = "succeeded"
        self.next_polls = 2
        self.next_failure_message: str | None = None
        self.rows_per_stream = 100
        #: The destination's default namespace, and whether its configuration shows it (a
        #: destination whose configuration omits it still writes there).
        self.destination_namespace = "raw"
        self.destination_shows_namespace = True
        #: A pyiceberg catalog standing for the destination's lakehouse: when set, a job that
        #: succeeds writes its rows there, in the table Airbyte's naming rules give (none: the
        #: job writes nothing anywhere).
        self.catalog: Any = None
        #: Write ``_airbyte_meta`` as a struct (as some v2 destinations do) instead of JSON text.
        self.meta_as_struct = True
        #: Serve the configuration API (/api/v1); False answers it 404, like a gateway that
        #: exposes only the public API.
        self.config_api = True
        #: Answer POST /jobs with 409 when the connection already has a job in progress.
        self.conflict_when_running = False
        #: Answer GET /jobs (the list) with 404, like a server that cannot list jobs.
        self.list_jobs = True
        #: Create the next job but answer its POST /jobs with 502 (a lost answer).
        self.lose_next_job_answer = False
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    # ---- setup ----------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def add_connection(self, name: str, streams: list[str], **kwargs: Any) -> FakeConnection:
        connection = FakeConnection(name, streams, self.destination_id, **kwargs)
        self.connections.append(connection)
        return connection

    def add_job(self, connection: FakeConnection, status: str, **kwargs: Any) -> FakeJob:
        job = FakeJob(next(self._ids), connection.connection_id, status=status, **kwargs)
        self.jobs[job.job_id] = job
        return job

    def fail(self, route: str, statuses: list[int], retry_after: str | None = None) -> None:
        """Answer the next calls of ``route`` (e.g. ``"GET /jobs/{id}"``) with ``statuses``,
        with a ``Retry-After: <retry_after>`` header when given."""
        self._failures.setdefault(route, []).extend((s, retry_after) for s in statuses)

    def outage_after(self, route: str, calls: int, seconds: float) -> None:
        """Go down for ``seconds`` (connections dropped unanswered) after ``calls`` calls of
        ``route``."""
        self._outages[route] = (calls, seconds)

    def delay(self, route: str, seconds: float) -> None:
        self._delays.setdefault(route, []).append(seconds)

    def start(self) -> FakeAirbyte:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def env(self, **extra: str) -> dict[str, str]:
        """Environment variables pointing the platform (prod mode) at this server."""
        return {
            "DATA_PLATFORM_ENV": "prod",
            "AIRBYTE_URL": self.url,
            "AIRBYTE_WORKSPACE_ID": self.workspace_id,
            "AIRBYTE_CLIENT_ID": self.client_id,
            "AIRBYTE_CLIENT_SECRET": self.client_secret,
            **extra,
        }

    # ---- what tests look at -------------------------------------------------------------------

    def calls(self, method: str, route_prefix: str) -> list[tuple[str, str, dict, Any]]:
        return [r for r in self.requests if r[0] == method and r[1].startswith(route_prefix)]

    def sync_starts(self) -> list[str]:
        """connectionIds of every POST /jobs received."""
        return [r[3]["connectionId"] for r in self.calls("POST", f"{PUBLIC}/jobs")]

    # ---- payloads ---------------------------------------------------------------------------------

    def connection_public(self, c: FakeConnection) -> dict[str, Any]:
        return {
            "connectionId": c.connection_id,
            "name": c.name,
            "sourceId": str(uuid.uuid5(uuid.NAMESPACE_URL, c.name)),
            "destinationId": c.destination_id,
            "workspaceId": self.workspace_id,
            "status": "active",
            "schedule": {"scheduleType": "manual"},
            "configurations": {
                "streams": [
                    {
                        "name": s,
                        "syncMode": "incremental_append",
                        **({"namespace": c.source_namespace} if c.source_namespace else {}),
                    }
                    for s in c.streams
                ]
            },
            "createdAt": 1767225600,
            "tags": [],
            "namespaceDefinition": c.namespace_definition,
            **({"namespaceFormat": c.namespace_format} if c.namespace_format else {}),
            "prefix": c.prefix,
        }

    def connection_config(self, c: FakeConnection) -> dict[str, Any]:
        """Configuration API ``ConnectionRead`` (``POST /api/v1/connections/get``)."""

        def stream(name: str, selected: bool) -> dict[str, Any]:
            return {
                "stream": {
                    "name": name,
                    "jsonSchema": {"type": "object", "properties": {"id": {"type": "integer"}}},
                    "supportedSyncModes": ["full_refresh", "incremental"],
                },
                "config": {
                    "syncMode": "incremental",
                    "destinationSyncMode": "append",
                    "selected": selected,
                    "aliasName": name,
                },
            }

        return {
            "connectionId": c.connection_id,
            "name": c.name,
            "namespaceDefinition": c.namespace_definition,
            "namespaceFormat": c.namespace_format,
            "prefix": c.prefix,
            "sourceId": str(uuid.uuid5(uuid.NAMESPACE_URL, c.name)),
            "destinationId": c.destination_id,
            "status": "active",
            "syncCatalog": {
                "streams": [stream(s, True) for s in c.streams]
                + [stream(s, False) for s in c.unselected]
            },
        }

    def job_config(self, job: FakeJob) -> dict[str, Any]:
        """Configuration API ``JobInfoRead`` (``POST /api/v1/jobs/get``)."""
        failures = []
        if job.failure_message:
            failures.append(
                {
                    "failureOrigin": "source",
                    "failureType": "config_error",
                    "externalMessage": job.failure_message,
                    "internalMessage": "java.lang.RuntimeException: " + job.failure_message,
                }
            )
        attempt = {
            "id": 0,
            "status": job.status,
            "recordsSynced": sum(job.rows.values()),
            "streamStats": [
                {"streamName": s, "stats": {"recordsEmitted": n, "recordsCommitted": n}}
                for s, n in job.rows.items()
            ],
            "failureSummary": {"failures": failures, "partialSuccess": False} if failures else None,
        }
        return {
            "job": {"id": job.job_id, "configType": "sync", "status": job.status},
            "attempts": [{"attempt": attempt, "logs": {"logLines": []}}],
        }

    def table_of(self, connection: FakeConnection, stream: str) -> str:
        """``namespace.table`` Airbyte writes ``stream`` of ``connection`` to."""
        return f"{connection.namespace(self.destination_namespace)}.{connection.prefix}{stream}"

    def write_destination(self, job: FakeJob) -> None:
        """What the destination connector does at the end of a successful job: append the
        job's rows, with Airbyte's v2 columns, to each stream's table (one commit each)."""
        if self.catalog is None:
            return
        connection = next(c for c in self.connections if c.connection_id == job.connection_id)
        for stream, n in job.rows.items():
            if n:
                write_rows(self.catalog, self.table_of(connection, stream), stream, n, job,
                           meta_as_struct=self.meta_as_struct)  # fmt: skip


def write_rows(
    catalog: Any, identifier: str, stream: str, n: int, job: FakeJob, *, meta_as_struct: bool
) -> None:
    """Append ``n`` rows of ``stream`` to ``identifier`` as a v2 Airbyte destination writes
    them: the source columns, ``_airbyte_raw_id``, ``_airbyte_extracted_at``,
    ``_airbyte_generation_id`` and ``_airbyte_meta`` (a struct, or JSON text)."""
    import pyarrow as pa

    from ingestion.streams import STREAMS_BY_NAME, arrow_type

    now = dt.datetime.now(dt.UTC)
    columns: dict[str, pa.Array] = {}
    for name, type_name in STREAMS_BY_NAME[stream].source_columns:
        kind = arrow_type(type_name)
        if pa.types.is_integer(kind):
            values: list[Any] = [job.job_id * 10_000 + i for i in range(n)]
        elif pa.types.is_floating(kind):
            values = [float(i) for i in range(n)]
        elif pa.types.is_timestamp(kind):
            values = [now - dt.timedelta(seconds=i) for i in range(n)]
        else:
            values = [f"{name}-{job.job_id}-{i}" for i in range(n)]
        columns[name] = pa.array(values, kind)
    columns["_airbyte_raw_id"] = pa.array([str(uuid.uuid4()) for _ in range(n)])
    columns["_airbyte_extracted_at"] = pa.array([now] * n, pa.timestamp("us", tz="UTC"))
    columns["_airbyte_generation_id"] = pa.array([0] * n, pa.int64())
    meta = {"sync_id": job.job_id, "changes": []}
    if meta_as_struct:
        change = pa.struct([("field", pa.string()), ("change", pa.string()),
                            ("reason", pa.string())])  # fmt: skip
        columns["_airbyte_meta"] = pa.array(
            [meta] * n, pa.struct([("sync_id", pa.int64()), ("changes", pa.list_(change))])
        )
    else:
        columns["_airbyte_meta"] = pa.array([json.dumps(meta)] * n)
    data = pa.table(columns)
    namespace = identifier.rsplit(".", 1)[0]
    catalog.create_namespace_if_not_exists(namespace)
    table = catalog.create_table_if_not_exists(identifier, schema=data.schema)
    table.append(data)


def sql_catalog(root: Path) -> Any:
    """A pyiceberg SQL catalog in ``root``: the lakehouse the fake destination writes to."""
    from pyiceberg.catalog.sql import SqlCatalog

    root.mkdir(parents=True, exist_ok=True)
    return SqlCatalog(
        "fake-lakehouse",
        uri=f"sqlite:///{root}/catalog.db",
        warehouse=(root / "warehouse").as_uri(),
    )


class _Handler(BaseHTTPRequestHandler):
    server: FakeAirbyte

    def log_message(self, *args: Any) -> None:  # keep test output quiet
        return

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    # ---- plumbing ----------------------------------------------------------------------------------

    def _send(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body if body is not None else {"message": "error"}).encode()
        try:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
            pass

    def _reply(self, schema: str | None, body: Any) -> None:
        if schema:
            try:
                validate(schema, body)
            except Exception as exc:
                self.server.violations.append(f"response {schema}: {exc}")
                self._send(500, {"message": f"stand-in served an invalid {schema}"})
                return
        self._send(200, body)

    def _route(self, method: str, path: str) -> str:
        """``"GET /jobs/{id}"``-style name of a request, for fault injection."""
        for base in (PUBLIC, CONFIG):
            if path.startswith(base):
                rest = path[len(base) :]
                parts = ["{id}" if p.isdigit() or _is_uuid(p) else p for p in rest.split("/")]
                return f"{method} {'/'.join(parts)}"
        return f"{method} {path}"

    def _handle(self, method: str) -> None:
        import time

        srv = self.server
        split = urlsplit(self.path)
        path, query = split.path, parse_qs(split.query)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        route = self._route(method, path)
        with srv.lock:
            now = time.monotonic()
            if now < srv.down_until:
                # Down: drop the connection without an answer (the client sees a reset).
                srv.dropped.append(route)
                self.close_connection = True
                return
            srv.requests.append((method, path, query, body))
            srv.request_times.append(now)
            failure = srv._failures.get(route, []).pop(0) if srv._failures.get(route) else None
            delay = srv._delays.get(route, []).pop(0) if srv._delays.get(route) else None
            if route in srv._outages:
                calls, seconds = srv._outages[route]
                if sum(1 for r in srv.requests if self._route(r[0], r[1]) == route) >= calls:
                    del srv._outages[route]
                    srv.down_until = now + seconds
        if delay:
            time.sleep(delay)
        if failure:
            status, retry_after = failure
            headers = {"Retry-After": retry_after} if retry_after is not None else None
            self._send(status, {"message": f"injected {status}"}, headers)
            return
        if path == f"{PUBLIC}/applications/token" and method == "POST":
            self._token(body)
            return
        if not self._authorised():
            self._send(401, {"message": "Unauthorized"})
            return
        with srv.lock:
            self._dispatch(method, path, query, body)

    def _authorised(self) -> bool:
        header = self.headers.get("Authorization") or ""
        if self.server.basic_auth is not None:
            import base64

            user, password = self.server.basic_auth
            expected = base64.b64encode(f"{user}:{password}".encode()).decode()
            return header == f"Basic {expected}"
        return header == f"Bearer {self.server.token}"

    def _token(self, body: Any) -> None:
        srv = self.server
        try:
            validate("ApplicationTokenRequestWithGrant", body)
        except Exception as exc:
            srv.violations.append(f"request ApplicationTokenRequestWithGrant: {exc}")
            self._send(400, {"message": "Invalid data"})
            return
        if body.get("client_id") != srv.client_id or body.get("client_secret") != srv.client_secret:
            self._send(403, {"message": "Not allowed"})
            return
        self._reply(
            "PublicAccessTokenResponse",
            {"access_token": srv.token, "token_type": "Bearer", "expires_in": 180},
        )

    def _dispatch(self, method: str, path: str, query: dict, body: Any) -> None:
        srv = self.server
        if path.startswith(CONFIG) and not srv.config_api:
            self._send(404, {"message": "Not Found"})
        elif method == "GET" and path.startswith(f"{PUBLIC}/workspaces/"):
            if path.rsplit("/", 1)[-1] != srv.workspace_id:
                self._send(404, {"message": "Workspace not found"})
                return
            self._reply(
                "WorkspaceResponse",
                {
                    "workspaceId": srv.workspace_id,
                    "name": "Data platform",
                    "dataResidency": "auto",
                    "notifications": {},
                },
            )
        elif method == "GET" and path == f"{PUBLIC}/connections":
            wanted = query.get("workspaceIds", [])
            items = [c for c in srv.connections if not wanted or srv.workspace_id in wanted]
            self._reply("ConnectionsResponse", self._page(items, query, "connections",
                                                         srv.connection_public))  # fmt: skip
        elif method == "GET" and path.startswith(f"{PUBLIC}/connections/"):
            found = [c for c in srv.connections if c.connection_id == path.rsplit("/", 1)[-1]]
            if not found:
                self._send(404, {"message": "Connection not found"})
                return
            self._reply("ConnectionResponse", srv.connection_public(found[0]))
        elif method == "GET" and path.startswith(f"{PUBLIC}/destinations/"):
            self._reply(
                "DestinationResponse",
                {
                    "destinationId": path.rsplit("/", 1)[-1],
                    "name": "Lakehouse (Iceberg on Garage)",
                    "destinationType": "iceberg",
                    "definitionId": str(uuid.uuid5(uuid.NAMESPACE_URL, "iceberg")),
                    "workspaceId": srv.workspace_id,
                    "configuration": {
                        "catalog_type": "REST",
                        **(
                            {"namespace": srv.destination_namespace}
                            if srv.destination_shows_namespace
                            else {}
                        ),
                    },
                    "createdAt": 1767225600,
                },
            )
        elif method == "POST" and path == f"{CONFIG}/connections/get":
            found = [c for c in srv.connections if c.connection_id == body.get("connectionId")]
            if not found:
                self._send(404, {"message": "Connection not found"})
                return
            self._reply(None, srv.connection_config(found[0]))
        elif method == "POST" and path == f"{PUBLIC}/jobs":
            try:
                validate("JobCreateRequest", body)
            except Exception as exc:
                srv.violations.append(f"request JobCreateRequest: {exc}")
                self._send(400, {"message": "Invalid data"})
                return
            conn = next(c for c in srv.connections if c.connection_id == body["connectionId"])
            busy = [
                j
                for j in srv.jobs.values()
                if j.connection_id == conn.connection_id
                and j.status in ("pending", "queued", "running", "incomplete")
            ]
            if srv.conflict_when_running and busy:
                self._send(409, {"message": "A sync is already running for this connection"})
                return
            job = srv.add_job(
                conn,
                "pending",
                final_status=srv.next_final_status,
                polls_left=srv.next_polls,
                failure_message=srv.next_failure_message,
                rows={s: srv.rows_per_stream for s in conn.streams},
            )
            if srv.lose_next_job_answer:
                srv.lose_next_job_answer = False
                self._send(502, {"message": "Bad gateway (job created, answer lost)"})
                return
            self._reply("JobResponse", job.public())
        elif method == "GET" and path == f"{PUBLIC}/jobs" and not srv.list_jobs:
            self._send(404, {"message": "Not Found"})
        elif method == "GET" and path == f"{PUBLIC}/jobs":
            jobs = [
                j
                for j in srv.jobs.values()
                if not query.get("connectionId") or j.connection_id in query["connectionId"]
            ]
            self._reply("JobsResponse", self._page(jobs, query, "jobs", FakeJob.public))
        elif path.startswith(f"{PUBLIC}/jobs/") and method in ("GET", "DELETE"):
            job = srv.jobs.get(int(path.rsplit("/", 1)[-1]))
            if job is None:
                self._send(404, {"message": "Job not found"})
                return
            if method == "DELETE":
                job.status = "cancelled"
            elif job.status in ("pending", "queued", "running", "incomplete"):
                if job.polls_left <= 0:
                    job.status = job.final_status
                    if job.status == "succeeded":
                        srv.write_destination(job)
                else:
                    job.polls_left -= 1
                    job.status = "running"
            self._reply("JobResponse", job.public())
        elif method == "POST" and path == f"{CONFIG}/jobs/get":
            job = srv.jobs.get(int(body.get("id", -1)))
            if job is None:
                self._send(404, {"message": "Job not found"})
                return
            self._reply(None, srv.job_config(job))
        else:
            self._send(404, {"message": f"no route {method} {path}"})

    def _page(self, items: list, query: dict, resource: str, render) -> dict[str, Any]:
        limit = int(query.get("limit", ["20"])[0])
        offset = int(query.get("offset", ["0"])[0])
        page = {"data": [render(i) for i in items[offset : offset + limit]]}
        if offset + limit < len(items):
            # Real self-managed Airbyte builds `next` from its own idea of its host: often
            # localhost, not the address the client used. Clients must keep their base URL.
            rest = "&".join(
                f"{k}={v}" for k, vs in query.items() if k not in ("limit", "offset") for v in vs
            )
            page["next"] = (
                f"http://localhost:8000{PUBLIC}/{resource}?limit={limit}&offset={offset + limit}"
                + (f"&{rest}" if rest else "")
            )
        if offset:
            page["previous"] = f"http://localhost:8000{PUBLIC}/{resource}?limit={limit}&offset=0"
        return page


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True
