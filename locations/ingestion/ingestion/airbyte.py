"""Production syncs through dagster-airbyte, plus the few things it lacks.

We use dagster-airbyte's own classes: ``AirbyteWorkspace`` (config, workspace data fetch with
paging), ``AirbyteClient`` (the API calls), ``AirbyteJob`` / ``AirbyteOutput`` /
``AirbyteConnection`` (parsed payloads) and ``DagsterAirbyteTranslator`` (stream -> asset spec).
What we write by hand, and why (dagster-airbyte 0.29.27):

* ``_single_request``: theirs retries every error, 4xx included, at a fixed delay, and ends with
  "Max retries exceeded". Ours retries only what can heal (5xx, 429, timeouts, refused
  connections) with exponential backoff or after the server's ``Retry-After`` (bounded), a
  bounded number of times, fails at once on 4xx with Airbyte's answer, always names the URL,
  and raises :class:`AirbyteRequestError` carrying the status, so callers classify errors by
  status and type, not by text.
* ``list_connections`` / ``destination_namespace`` instead of ``fetch_airbyte_workspace_data``:
  theirs fetches every connection's and destination's details (2 requests per connection of
  the workspace); the public connection list already has what planning needs (selected
  streams, prefix, namespace settings), so only the destinations involved are read, once.
* ``_refresh_access_token``: theirs omits ``grant_type``, which the public API's
  ``ApplicationTokenRequestWithGrant`` requires.
* ``start_sync_job``: a 5xx after Airbyte created the job must not start a second sync, so a
  failed start is retried only after checking that no job appeared for the connection.
* ``get_connection_details`` / ``get_destination_details``: fall back to the public API when
  the internal configuration API is not served, and tolerate a destination we cannot read
  (only used for metadata), instead of failing the sync.
* ``sync_and_poll``: theirs does not know the ``queued`` status of the public API (it would fail
  the step and cancel a healthy queued job, and would start a second sync next to a queued one),
  and its failure message is only "Job failed: <id>"; ours waits on queued jobs, reports
  Airbyte's own failure message (configuration API ``jobs/get``, best effort), waits out a
  short API outage instead of failing (and cancelling) a healthy job, and cancels only jobs
  that this run started when the run is terminated (or the poll timeout passes). It is split into ``begin_sync`` and
  ``wait`` so that several connections sync at the same time while one thread polls them.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from dagster import AssetSpec, Failure, MetadataValue
from dagster_airbyte import (
    AirbyteConnectionTableProps,
    AirbyteWorkspace,
    DagsterAirbyteTranslator,
)
from dagster_airbyte.resources import AirbyteClient
from dagster_airbyte.translator import AirbyteJob
from dagster_airbyte.types import AirbyteOutput
from dagster_shared.utils.cached_method import cached_method
from pydantic import Field, PrivateAttr

from ingestion.streams import RAW_NAMESPACE, STREAMS_BY_NAME
from shared.keys import table_key

#: Statuses of a job that is still going (public API ``JobStatusEnum``).
IN_PROGRESS = ("pending", "queued", "running", "incomplete")
SUCCEEDED = "succeeded"
#: dagster-airbyte's ``AirbyteJobStatusType`` has ``error``; the public API says ``failed``.
FAILED = ("failed", "error")
CANCELLED = "cancelled"

#: HTTP statuses worth retrying: the server or a proxy in front of it is overloaded or restarting.
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
#: Longest wait between two retries of our own backoff.
MAX_BACKOFF_SECONDS = 30.0
#: Longest ``Retry-After`` honoured (a server asking for more gets its retry at this bound).
MAX_RETRY_AFTER_SECONDS = 120.0
#: How long the API may be unreachable while jobs are followed (see ``max_api_outage``).
DEFAULT_MAX_API_OUTAGE_SECONDS = 900.0


#: What AIRBYTE_URL must be, for errors that suggest it points to the wrong place.
_URL_HINT = (
    "AIRBYTE_URL: the Airbyte server root (e.g. http://airbyte-server:8001) or its public API "
    "base ending in /api/public/v1."
)


class AirbyteRequestError(Failure):
    """An Airbyte API call failed for good; the message names the method and URL.

    Callers decide by :attr:`status` (the HTTP status of the last answer, ``None`` when no
    answer came: timeout, refused connection) and :attr:`transient`, never by message text.
    """

    def __init__(
        self,
        description: str,
        *,
        status: int | None = None,
        transient: bool = False,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(description=description, metadata=metadata)
        self.status = status
        #: The server was unreachable or overloaded (timeouts, refused connections, 5xx, 429):
        #: the same call may work later.
        self.transient = transient

    @property
    def is_client_error(self) -> bool:
        """Airbyte answered and refused the request (4xx other than 408/429): asking again
        cannot help, but another endpoint may (e.g. the public API instead of the internal one)."""
        return self.status is not None and 400 <= self.status < 500 and not self.transient


@dataclass(frozen=True)
class _Attempt:
    """The outcome of one HTTP call that is worth retrying."""

    reason: str
    status: int | None = None
    #: Seconds the server asked to wait (``Retry-After``), if it said.
    retry_after: float | None = None


class RobustAirbyteClient(AirbyteClient):
    """dagster-airbyte's client with bounded backoff retries, clear errors, ``queued`` jobs and
    Airbyte's failure messages (see the module docstring for why each override exists)."""

    max_retry_after: float = Field(
        default=MAX_RETRY_AFTER_SECONDS,
        description="Longest wait honoured from a Retry-After header (429/503), in seconds.",
    )
    max_api_outage: float = Field(
        default=DEFAULT_MAX_API_OUTAGE_SECONDS,
        description=(
            "While following jobs: how long the API may stay unreachable (timeouts, refused "
            "connections, 5xx, 429) before the step fails. The jobs are not cancelled then."
        ),
    )

    _destination_namespaces: dict[str, str | None] = PrivateAttr(default_factory=dict)
    #: Jobs this client followed without starting them (already in progress).
    _adopted_job_ids: set[int] = PrivateAttr(default_factory=set)

    # ---- HTTP ---------------------------------------------------------------------------------

    def _request_once(
        self,
        method: str,
        url: str,
        data: Mapping[str, Any] | None,
        params: Mapping[str, Any] | None,
        include_additional_request_headers: bool,
    ) -> tuple[Mapping[str, Any] | None, _Attempt | None]:
        """One HTTP call: (body, None) on success, (None, attempt) when worth retrying; raises
        :class:`AirbyteRequestError` when retrying cannot help (4xx, not JSON)."""
        try:
            session = self._get_session(include_additional_request_headers)
            response = session.request(
                method=method, url=url, json=data, params=params, timeout=self.request_timeout
            )
        except requests.Timeout:
            return None, _Attempt(f"no answer within {self.request_timeout}s")
        except requests.ConnectionError as exc:
            return None, _Attempt(f"connection failed ({type(exc).__name__}: {_root_cause(exc)})")
        except (
            requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ContentDecodingError,
        ) as exc:
            # The answer broke off mid-way (a proxy or server restarting): worth another try.
            return None, _Attempt(f"answer cut short ({type(exc).__name__}: {_root_cause(exc)})")
        status = response.status_code
        if status in RETRYABLE_STATUS:
            return None, _Attempt(
                f"HTTP {status} {_snippet(response)}", status, retry_after_seconds(response)
            )
        if status >= 400:
            hint = ""
            if status in (401, 403):
                hint = (
                    " Check AIRBYTE_CLIENT_ID/AIRBYTE_CLIENT_SECRET or "
                    "AIRBYTE_USERNAME/AIRBYTE_PASSWORD"
                )
                # Airbyte refuses unauthenticated calls before routing them, so a URL with a
                # wrong path also gets a 401 here.
                hint += f", and {_URL_HINT}"
            elif status == 404 and "/workspaces/" in url:
                hint = f" Check AIRBYTE_WORKSPACE_ID, and {_URL_HINT}"
            elif status in (404, 405) and url.endswith("/applications/token"):
                # Nothing answers the token endpoint there: the URL, not the credentials.
                hint = f" Check {_URL_HINT}"
            raise AirbyteRequestError(
                f"Airbyte API {method} {url} answered HTTP {status}: {_snippet(response)}.{hint}",
                status=status,
            )
        if not response.content:
            return {}, None
        try:
            return response.json(), None
        except ValueError as exc:
            raise AirbyteRequestError(
                f"Airbyte API {method} {url} answered HTTP {status} with a body "
                f"that is not JSON: {_snippet(response)}. Is AIRBYTE_URL the Airbyte server "
                "(not a proxy or web page)?",
                status=status,
            ) from exc

    def _single_request(
        self,
        method: str,
        url: str,
        data: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        include_additional_request_headers: bool = True,
    ) -> Mapping[str, Any]:
        attempts = self.request_max_retries + 1
        last = _Attempt("no attempt made")
        for attempt in range(1, attempts + 1):
            body, failed = self._request_once(
                method, url, data, params, include_additional_request_headers
            )
            if body is not None:
                return body
            assert failed is not None
            last = failed
            if attempt < attempts:
                delay = self.retry_delay(attempt, failed.retry_after)
                self._log.warning(
                    f"Airbyte API {method} {url}: {failed.reason}; retry {attempt}/"
                    f"{attempts - 1} in {delay:.1f}s"
                )
                time.sleep(delay)
        raise AirbyteRequestError(
            f"Airbyte API {method} {url} failed after {attempts} attempts: {last.reason}. "
            f"Is Airbyte reachable at {_server_root(url)}?",
            status=last.status,
            transient=True,
        )

    def retry_delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds before retry ``attempt``: the server's ``Retry-After`` when it gave one
        (bounded by :attr:`max_retry_after`; never earlier than asked, unless over the bound),
        else our own :meth:`backoff`."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        return self.backoff(attempt)

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before retry ``attempt`` (1-based): exponential, capped, jittered."""
        base = self.request_retry_delay * (2 ** (attempt - 1))
        return min(base, MAX_BACKOFF_SECONDS) * random.uniform(0.8, 1.2)

    def _refresh_access_token(self) -> None:
        response = self._single_request(
            method="POST",
            url=f"{self.rest_api_base_url}/applications/token",
            data={
                "client_id": self.client_id,
                "client_secret": self.client_secret,
                "grant_type": "client_credentials",
            },
            include_additional_request_headers=False,
        )
        if "access_token" not in response:
            raise AirbyteRequestError(
                f"Airbyte API POST {self.rest_api_base_url}/applications/token answered "
                "without an access_token."
            )
        self._access_token_value = str(response["access_token"])
        self._access_token_timestamp = datetime.now().timestamp()

    # ---- connections and destinations ------------------------------------------------------

    def get_connection_details(self, connection_id: str) -> Mapping[str, Any]:
        """The connection with its stream catalog, from the configuration API (as
        dagster-airbyte does); if that internal API is not served (HTTP 4xx, e.g. behind a
        gateway exposing only the public API), from the public ``GET /connections/{id}``,
        whose ``configurations.streams`` are the selected streams."""
        try:
            return super().get_connection_details(connection_id)
        except AirbyteRequestError as exc:
            if not exc.is_client_error:
                raise
            self._log.warning(
                f"Configuration API connections/get unavailable ({exc}); using the public API."
            )
        public = self._single_request(
            method="GET", url=f"{self.rest_api_base_url}/connections/{connection_id}"
        )
        return connection_details_from_public(public)

    def list_connections(self) -> list[ConnectionInfo]:
        """The workspace's connections from the public API's paged list, which carries all
        that planning needs (selected streams, prefix, namespace settings): one request per
        100 connections, none per connection. Fails with a hint on a wrong workspace id."""
        self.validate_workspace_id()
        return [ConnectionInfo.from_public(c) for c in self.get_connections()]

    def destination_namespace(self, destination_id: str) -> str | None:
        """The destination's default namespace (where ``namespaceDefinition: destination``
        writes), or None when the destination cannot be read or names none we recognise."""
        cache = self._destination_namespaces
        if destination_id not in cache:
            try:
                details = self.get_destination_details(destination_id)
            except AirbyteRequestError as exc:
                # Only a pre-check: the tables are verified after the sync all the same.
                self._log.warning(f"Destination {destination_id} not readable: {exc}")
                details = {}
            cache[destination_id] = default_namespace(details.get("configuration") or {})
        return cache[destination_id]

    def get_destination_details(self, destination_id: str) -> Mapping[str, Any]:
        """The destination (dagster-airbyte reads only its type and database/schema, for
        metadata): a 4xx, or fields missing, must not stop a sync."""
        try:
            details = dict(super().get_destination_details(destination_id))
        except AirbyteRequestError as exc:
            if not exc.is_client_error:
                raise
            self._log.warning(f"Destination {destination_id} not readable: {exc}")
            details = {}
        details.setdefault("destinationId", destination_id)
        details.setdefault("destinationType", "unknown")
        if not isinstance(details.get("configuration"), Mapping):
            details["configuration"] = {}
        return details

    # ---- jobs ---------------------------------------------------------------------------------

    def running_jobs(self, connection_id: str) -> list[AirbyteJob]:
        """Jobs of the connection created in the last two days that are still in progress
        (none known when the server cannot list jobs: HTTP 4xx on ``GET /jobs``)."""
        try:
            jobs = self.get_jobs_for_connection(
                connection_id=connection_id, created_after=datetime.now() - timedelta(days=2)
            )
        except AirbyteRequestError as exc:
            if not exc.is_client_error:
                raise
            self._log.warning(f"Cannot list jobs of connection {connection_id}: {exc}")
            return []
        return [job for job in jobs if job.status in IN_PROGRESS]

    def start_sync_job(self, connection_id: str) -> Mapping[str, Any]:
        attempts = self.request_max_retries + 1
        url = f"{self.rest_api_base_url}/jobs"
        last = _Attempt("no attempt made")
        for attempt in range(1, attempts + 1):
            try:
                body, failed = self._request_once(
                    "POST", url, {"connectionId": connection_id, "jobType": "sync"}, None, True
                )
            except AirbyteRequestError as exc:
                # HTTP 409: Airbyte refuses a second sync of a connection that is syncing.
                if exc.status != 409:
                    raise
                body, failed = None, _Attempt(str(exc), 409)
            if body is not None:
                return body
            assert failed is not None
            last = failed
            # The job may have been created although the answer was lost: adopt it rather
            # than start the connection's sync twice.
            try:
                running = self.running_jobs(connection_id)
            except AirbyteRequestError:
                running = []
            if running:
                self._log.warning(
                    f"Starting a sync of connection {connection_id} failed ({failed.reason}), "
                    f"but job {running[0].id} is now running for it: following that job."
                )
                return {"jobId": running[0].id, "status": running[0].status, "jobType": "sync"}
            if attempt < attempts:
                time.sleep(self.retry_delay(attempt, failed.retry_after))
        raise AirbyteRequestError(
            f"Airbyte API POST {url} (start a sync of connection {connection_id}) failed after "
            f"{attempts} attempts: {last.reason}. Is Airbyte reachable at {_server_root(url)}?",
            status=last.status,
            transient=last.status != 409,
        )

    def get_job_failure_message(self, job_id: int) -> str | None:
        """Airbyte's own explanation of a failed job, from the configuration API ``jobs/get``
        (the public API's ``JobResponse`` has none). ``None`` when it cannot be read."""
        try:
            body = self._single_request(
                method="POST",
                url=f"{self.configuration_api_base_url}/jobs/get",
                data={"id": job_id},
            )
        except Failure:
            return None
        messages = []
        for attempt in body.get("attempts") or []:
            attempt = attempt.get("attempt") or attempt
            summary = attempt.get("failureSummary") or {}
            for failure in summary.get("failures") or []:
                text = failure.get("externalMessage") or failure.get("internalMessage")
                if text:
                    origin = failure.get("failureOrigin")
                    messages.append(f"{origin}: {text}" if origin else str(text))
        # Airbyte retries attempts; the last distinct messages matter most.
        unique = list(dict.fromkeys(messages))
        return "; ".join(unique[-3:]) if unique else None

    def get_stream_stats(self, job_id: int) -> dict[str, dict[str, Any]]:
        """Per-stream record counts of a job's last attempt (configuration API, best effort)."""
        try:
            body = self._single_request(
                method="POST",
                url=f"{self.configuration_api_base_url}/jobs/get",
                data={"id": job_id},
            )
        except Failure:
            return {}
        attempts = body.get("attempts") or []
        if not attempts:
            return {}
        last = attempts[-1].get("attempt") or attempts[-1]
        return {
            s["streamName"]: s.get("stats") or {}
            for s in last.get("streamStats") or []
            if "streamName" in s
        }

    def begin_sync(
        self, connection_id: str, connection_details: Mapping[str, Any] | None = None
    ) -> SyncHandle:
        """Start the connection's sync, or pick up the job already in progress for it.
        ``connection_details`` (configuration-API shape) saves a request when the caller has
        them already (from the public connection list)."""
        if connection_details is None:
            connection_details = self.get_connection_details(connection_id)
        name = str(connection_details.get("name", connection_id))
        running = self.running_jobs(connection_id)
        if len(running) > 1:
            raise Failure(
                f"Airbyte connection {name} ({connection_id}) has {len(running)} jobs in "
                f"progress ({', '.join(str(j.id) for j in running)}); refusing to guess which "
                "one to follow."
            )
        if running:
            job = running[0]
            self._log.info(
                f"Airbyte job {job.id} is already {job.status} for connection {name}: waiting "
                "for it instead of starting a second sync."
            )
            self._adopted_job_ids.add(int(job.id))
            return SyncHandle(connection_id, name, connection_details, job, started_here=False)
        job = AirbyteJob.from_job_details(job_details=self.start_sync_job(connection_id))
        self._log.info(f"Started Airbyte job {job.id} for connection {name} ({connection_id}).")
        return SyncHandle(connection_id, name, connection_details, job, started_here=True)

    def _job_failure(self, handle: SyncHandle) -> Failure:
        job = handle.job
        if job.status in FAILED or job.status == CANCELLED:
            message = self.get_job_failure_message(job.id)
            verb = "was cancelled" if job.status == CANCELLED else "failed"
            text = message or "Airbyte gave no failure message"
        else:
            verb, text = "is in an unexpected state", repr(job.status)
        return Failure(
            f"Airbyte job {job.id} of connection {handle.name} ({handle.connection_id}) "
            f"{verb}: {text}",
            metadata={
                "airbyte_job_id": MetadataValue.int(int(job.id)),
                "airbyte_connection_id": handle.connection_id,
                "airbyte_job_status": str(job.status),
            },
        )

    def wait(self, handles: Sequence[SyncHandle]) -> dict[str, AirbyteOutput | Failure]:
        """Poll every job until each has ended: ``{connection id: output, or the Failure that
        explains its end}``. Jobs run concurrently in Airbyte; polling stays in this thread, so
        a run termination (an exception raised here) reaches the ``finally`` below, which
        cancels every unfinished job this run started (``cancel_on_termination``).

        A poll that fails for a transient reason (timeouts, refused connections, 5xx, 429, each
        already retried by :meth:`_single_request`) does not end the wait: a short outage of
        the API says nothing about the job, which goes on inside Airbyte. Only when the API
        stays unreachable longer than :attr:`max_api_outage` does the job's outcome become a
        failure, and that job is left running (we cannot reach Airbyte to cancel it, and it may
        well succeed: the next run follows it instead of starting another)."""
        outcomes: dict[str, AirbyteOutput | Failure] = {}
        poll_start = time.monotonic()
        try:
            while True:
                for handle in handles:
                    if handle.connection_id in outcomes:
                        continue
                    try:
                        details = self.get_job_details(handle.job.id)
                    except AirbyteRequestError as exc:
                        if not exc.transient:
                            raise
                        lost = self._api_unreachable(handle, exc)
                        if lost is not None:
                            outcomes[handle.connection_id] = lost
                        continue
                    if handle.unreachable_since is not None:
                        self._log.info(
                            f"Airbyte API reachable again: following job {handle.job.id} of "
                            f"connection {handle.name}."
                        )
                        handle.unreachable_since = None
                    handle.job = AirbyteJob.from_job_details(job_details=details)
                    if handle.job.status == SUCCEEDED:
                        outcomes[handle.connection_id] = AirbyteOutput(
                            job_details=details, connection_details=handle.connection_details
                        )
                    elif handle.job.status not in IN_PROGRESS:
                        outcomes[handle.connection_id] = self._job_failure(handle)
                if len(outcomes) == len(handles):
                    return outcomes
                if self.poll_timeout and time.monotonic() - poll_start > self.poll_timeout:
                    for handle in handles:
                        outcomes.setdefault(
                            handle.connection_id,
                            Failure(
                                f"Airbyte job {handle.job.id} of connection {handle.name} did "
                                f"not finish within {self.poll_timeout}s (still "
                                f"{handle.job.status}); cancelling it."
                            ),
                        )
                    return outcomes
                time.sleep(self.poll_interval)
        finally:
            self.cancel_unfinished(handles)

    def _api_unreachable(self, handle: SyncHandle, exc: AirbyteRequestError) -> Failure | None:
        """Record that following ``handle`` failed transiently; the Failure once the outage has
        lasted longer than :attr:`max_api_outage` (the job is then no longer followed)."""
        now = time.monotonic()
        if handle.unreachable_since is None:
            handle.unreachable_since = now
            self._log.warning(
                f"Cannot read Airbyte job {handle.job.id} of connection {handle.name} ({exc}); "
                f"the job goes on in Airbyte: still following it for up to "
                f"{self.max_api_outage:.0f}s."
            )
            return None
        if now - handle.unreachable_since <= self.max_api_outage:
            return None
        handle.abandoned = True
        return Failure(
            f"Airbyte job {handle.job.id} of connection {handle.name} ({handle.connection_id}) "
            f"could not be followed: the Airbyte API was unreachable for more than "
            f"{self.max_api_outage:.0f}s (last error: {exc}). The job was last "
            f"{handle.job.status} and was NOT cancelled; a new run follows it instead of "
            "starting another sync.",
            metadata={
                "airbyte_job_id": MetadataValue.int(int(handle.job.id)),
                "airbyte_connection_id": handle.connection_id,
                "airbyte_job_status": str(handle.job.status),
            },
        )

    def cancel_unfinished(self, handles: Sequence[SyncHandle]) -> None:
        """Cancel jobs this run started that are still going: do not leave a sync behind that
        nobody waits for (run terminated, poll timeout, a failure while starting others). A job
        given up during an API outage is left alone (see :meth:`wait`)."""
        if not self.cancel_on_termination:
            return
        for handle in handles:
            if handle.started_here and not handle.abandoned and handle.job.status in IN_PROGRESS:
                self._log.warning(
                    f"Cancelling Airbyte job {handle.job.id} of connection {handle.name}."
                )
                try:
                    self.cancel_job(handle.job.id)
                    handle.job = AirbyteJob(
                        id=handle.job.id, status=CANCELLED, type=handle.job.type
                    )
                except Failure as exc:
                    self._log.error(f"Could not cancel Airbyte job {handle.job.id}: {exc}")

    def sync_connections(
        self,
        connection_ids: Sequence[str],
        details: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> dict[str, AirbyteOutput | Failure]:
        """Start one sync per connection (or follow the running one), then wait for all.
        ``details``: connection id -> connection details already known (no request for them)."""
        handles: list[SyncHandle] = []
        details = details or {}
        try:
            for connection_id in connection_ids:
                handles.append(self.begin_sync(connection_id, details.get(connection_id)))
        except BaseException:
            self.cancel_unfinished(handles)
            raise
        return self.wait(handles)

    def was_adopted(self, job_id: int) -> bool:
        """Whether job ``job_id`` was already in progress when this client began to follow it
        (so tables may have been committed before this run looked at them)."""
        return int(job_id) in self._adopted_job_ids

    def sync_and_poll(self, connection_id: str) -> AirbyteOutput:
        """dagster-airbyte's entry point, for one connection: raises :class:`dagster.Failure`
        with Airbyte's message when the job fails or is cancelled."""
        outcome = self.sync_connections([connection_id])[connection_id]
        if isinstance(outcome, Failure):
            raise outcome
        return outcome


@dataclass
class SyncHandle:
    """A sync job being followed for one connection."""

    connection_id: str
    name: str
    connection_details: Mapping[str, Any]
    job: AirbyteJob
    #: Whether this run started the job (only those are cancelled on termination).
    started_here: bool
    #: ``time.monotonic()`` of the first failed poll of the current API outage.
    unreachable_since: float | None = None
    #: Given up after a long API outage: left running in Airbyte, never cancelled by this run.
    abandoned: bool = False


class PlatformAirbyteWorkspace(AirbyteWorkspace):
    """dagster-airbyte's ``AirbyteWorkspace`` whose client is :class:`RobustAirbyteClient`."""

    max_retry_after: float = Field(
        default=MAX_RETRY_AFTER_SECONDS,
        description="Longest wait honoured from a Retry-After header (429/503), in seconds.",
    )
    max_api_outage: float = Field(
        default=DEFAULT_MAX_API_OUTAGE_SECONDS,
        description="How long the API may be unreachable while jobs are followed.",
    )

    @cached_method
    def get_client(self) -> RobustAirbyteClient:
        return RobustAirbyteClient(
            rest_api_base_url=self.rest_api_base_url,
            configuration_api_base_url=self.configuration_api_base_url,
            workspace_id=self.workspace_id,
            client_id=self.client_id,
            client_secret=self.client_secret,
            username=self.username,
            password=self.password,
            request_max_retries=self.request_max_retries,
            request_retry_delay=self.request_retry_delay,
            request_timeout=self.request_timeout,
            max_items_per_page=self.max_items_per_page,
            poll_interval=self.poll_interval,
            poll_timeout=self.poll_timeout,
            cancel_on_termination=self.cancel_on_termination,
            poll_previous_running_sync=True,
            max_retry_after=self.max_retry_after,
            max_api_outage=self.max_api_outage,
        )


class RawTranslator(DagsterAirbyteTranslator):
    """Airbyte stream ``<stream>`` -> asset ``raw/<stream>`` in group ``raw`` (dagster-airbyte's
    default key is the one-part ``<prefix><stream>``)."""

    def get_asset_spec(self, props: AirbyteConnectionTableProps) -> AssetSpec:
        spec = super().get_asset_spec(props)
        return spec.replace_attributes(
            key=table_key(RAW_NAMESPACE, props.stream_name), group_name=RAW_NAMESPACE
        )


# ---- mapping streams to connections and tables (at run time) --------------------------------


@dataclass(frozen=True)
class ConnectionInfo:
    """What planning needs of one connection, from the public API's ``ConnectionResponse``."""

    connection_id: str
    name: str
    destination_id: str
    #: Selected streams as ``(name, source namespace or None)``: the public API lists only the
    #: streams selected for syncing in ``configurations.streams``.
    streams: tuple[tuple[str, str | None], ...]
    #: Prepended to every stream's table name by Airbyte.
    prefix: str = ""
    #: ``destination`` (the destination's default), ``source`` or ``custom_format``.
    namespace_definition: str = "destination"
    #: With ``custom_format``: the namespace, ``${SOURCE_NAMESPACE}`` replaced.
    namespace_format: str | None = None

    @classmethod
    def from_public(cls, public: Mapping[str, Any]) -> ConnectionInfo:
        streams = (public.get("configurations") or {}).get("streams") or []
        return cls(
            connection_id=str(public["connectionId"]),
            name=str(public.get("name") or public["connectionId"]),
            destination_id=str(public.get("destinationId") or ""),
            streams=tuple(
                (str(s["name"]), s.get("namespace") or None) for s in streams if s.get("name")
            ),
            prefix=str(public.get("prefix") or ""),
            namespace_definition=str(public.get("namespaceDefinition") or "destination"),
            namespace_format=public.get("namespaceFormat") or None,
        )

    @property
    def stream_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.streams)

    def details(self) -> dict[str, Any]:
        """Configuration-API-shaped details, as dagster-airbyte's ``AirbyteOutput`` carries."""
        return {
            "connectionId": self.connection_id,
            "name": self.name,
            "prefix": self.prefix,
            "destinationId": self.destination_id,
            "namespaceDefinition": self.namespace_definition,
            "syncCatalog": {
                "streams": [
                    {"stream": {"name": n, "jsonSchema": {}}, "config": {"selected": True}}
                    for n in self.stream_names
                ]
            },
        }

    def table_for(self, stream: str, destination_default: str | None) -> tuple[str | None, str]:
        """``(namespace or None when unknown, table name)`` Airbyte writes ``stream`` to,
        following Airbyte's rules: the namespace is the destination's default, the source's
        (falling back to the destination's), or ``namespaceFormat`` with
        ``${SOURCE_NAMESPACE}`` replaced (an empty result falls back to the destination's);
        the table name is ``prefix + stream``."""
        source_ns = dict(self.streams).get(stream)
        if self.namespace_definition == "source":
            namespace = source_ns or destination_default
        elif self.namespace_definition == "custom_format":
            formatted = (self.namespace_format or "").replace(
                "${SOURCE_NAMESPACE}", source_ns or ""
            )
            namespace = formatted.strip() or destination_default
        else:
            namespace = destination_default
        return namespace, f"{self.prefix}{stream}"

    def needs_destination_default(self, stream: str) -> bool:
        """Whether :meth:`table_for` needs the destination's default namespace."""
        namespace, _ = self.table_for(stream, None)
        return namespace is None

    def describe_naming(self) -> str:
        text = f"namespaceDefinition={self.namespace_definition!r}"
        if self.namespace_definition == "custom_format":
            text += f", namespaceFormat={self.namespace_format!r}"
        return f"{text}, prefix={self.prefix!r}"


def default_namespace(configuration: Mapping[str, Any]) -> str | None:
    """The default Iceberg namespace in a destination's configuration: S3 Data Lake / Iceberg
    (``namespace`` or ``database_name`` under ``catalog_type``) and the older Iceberg
    destination (``catalog_config.database``). A SQL warehouse's ``schema`` is not read: it
    names no namespace of the lakehouse's catalog, and guessing wrong would refuse good syncs.
    None when none is there (the check after the sync then verifies the table instead)."""
    catalog_type = configuration.get("catalog_type")
    catalog_type = catalog_type if isinstance(catalog_type, Mapping) else {}
    catalog_config = configuration.get("catalog_config")
    catalog_config = catalog_config if isinstance(catalog_config, Mapping) else {}
    candidates: list[Any] = [
        configuration.get("namespace"),
        configuration.get("default_namespace"),
        catalog_type.get("namespace"),  # S3 Data Lake: REST, Nessie, Polaris catalogs
        catalog_type.get("database_name"),  # S3 Data Lake: Glue catalog
        catalog_config.get("database"),  # the older Iceberg destination
    ]
    return next((str(c) for c in candidates if isinstance(c, str) and c.strip()), None)


@dataclass(frozen=True)
class ConnectionSync:
    """One connection to sync, and the declared streams it lands."""

    connection_id: str
    connection_name: str
    streams: tuple[str, ...]
    #: Selected streams of the connection that this location does not declare.
    undeclared_streams: tuple[str, ...] = ()
    connection: ConnectionInfo | None = None

    @property
    def landed_streams(self) -> tuple[str, ...]:
        """Every declared stream the sync lands, requested or not."""
        if self.connection is None:
            return self.streams
        return tuple(n for n in self.connection.stream_names if n in STREAMS_BY_NAME)


def plan_connection_syncs(
    connections: Sequence[ConnectionInfo], streams: Sequence[str]
) -> list[ConnectionSync]:
    """Which connections to sync so that ``streams`` land: one entry per connection, so a
    connection holding several requested streams is synced once.

    Raises :class:`dagster.Failure` naming the stream when a requested stream is selected in
    no connection (a wrong workspace id, a renamed or unselected stream must not pass
    silently) or in several.
    """
    by_stream: dict[str, list[ConnectionInfo]] = {}
    for connection in connections:
        for name in connection.stream_names:
            by_stream.setdefault(name, []).append(connection)
    chosen: dict[str, list[str]] = {}
    by_id = {c.connection_id: c for c in connections}
    for name in streams:
        found = by_stream.get(name, [])
        if not found:
            known = sorted(by_stream) or ["none"]
            raise Failure(
                f"No Airbyte connection of the workspace syncs stream {name!r} (asset "
                f"raw/{name}); streams selected in its connections: {', '.join(known)}. Check "
                "AIRBYTE_WORKSPACE_ID, the connection's stream names, and that the stream is "
                "selected for syncing."
            )
        if len(found) > 1:
            raise Failure(
                f"Stream {name!r} is synced by several Airbyte connections "
                f"({', '.join(f'{c.name} ({c.connection_id})' for c in found)}); keep one so "
                f"raw.{name} has one writer."
            )
        chosen.setdefault(found[0].connection_id, []).append(name)
    plan = []
    for connection_id, names in chosen.items():
        connection = by_id[connection_id]
        others = tuple(sorted(n for n in connection.stream_names if n not in STREAMS_BY_NAME))
        plan.append(
            ConnectionSync(connection_id, connection.name, tuple(names), others, connection)
        )
    return plan


def check_destination_tables(
    plan: Sequence[ConnectionSync], destination_default: Callable[[str], str | None]
) -> list[str]:
    """Check, before any sync starts, that every declared stream a planned connection lands is
    written to ``raw.<stream>`` (the table its asset names and dbt reads).

    Raises :class:`dagster.Failure` naming the connection, the stream, the expected and the
    actual table when the connection's prefix or namespace settings write elsewhere (mapping
    the asset to that other table instead would leave dbt reading a table nobody writes).
    Returns warnings for streams whose namespace cannot be known (destination default
    unreadable): those are verified after the sync, from the table's snapshots.
    """
    warnings: list[str] = []
    wrong: list[str] = []
    for sync in plan:
        connection = sync.connection
        if connection is None:
            continue
        for stream in sync.landed_streams:
            default = (
                destination_default(connection.destination_id)
                if connection.needs_destination_default(stream)
                else None
            )
            namespace, table = connection.table_for(stream, default)
            expected = f"{RAW_NAMESPACE}.{stream}"
            if table != stream or (namespace is not None and namespace != RAW_NAMESPACE):
                actual = (
                    f"{namespace if namespace is not None else '<destination default>'}.{table}"
                )
                wrong.append(
                    f"connection {connection.name!r} ({connection.connection_id}) writes stream "
                    f"{stream!r} to {actual}, not {expected} ({connection.describe_naming()})"
                )
            elif namespace is None:
                warnings.append(
                    f"Airbyte connection {connection.name!r} writes stream {stream!r} to the "
                    f"destination's default namespace, which could not be read: {expected} is "
                    "verified after the sync instead."
                )
    if wrong:
        raise Failure(
            "Airbyte would write outside the tables the raw assets name, so no sync was "
            "started: "
            + "; ".join(wrong)
            + f". Set the connection's stream prefix to '' and its namespace to "
            f"{RAW_NAMESPACE!r} (destination default, or custom format {RAW_NAMESPACE!r})."
        )
    return warnings


@dataclass(frozen=True)
class SnapshotState:
    """A raw table's current snapshot as read from the catalog (``None``: no table/snapshot)."""

    snapshot_id: int | None
    timestamp_ms: int | None = None


#: Tolerated clock difference between Airbyte (job start time) and the Iceberg writer.
CLOCK_SKEW = timedelta(minutes=10)


def written_by_job(
    before: SnapshotState | None,
    after: SnapshotState,
    job_started: datetime | None,
) -> bool:
    """Whether the table's snapshot ``after`` the job was committed by it: there is one, it is
    not the one seen before the job started (``before`` None: not known), and it is not older
    than the job's start (give or take :data:`CLOCK_SKEW`)."""
    if after.snapshot_id is None or before is None:
        return False
    if after.snapshot_id == before.snapshot_id:
        return False
    if job_started is not None and after.timestamp_ms is not None:
        committed = datetime.fromtimestamp(after.timestamp_ms / 1000, tz=UTC)
        if committed < job_started - CLOCK_SKEW:
            return False
    return True


def job_start_time(job_details: Mapping[str, Any]) -> datetime | None:
    """The job's ``startTime`` (public ``JobResponse``), as an aware datetime, if readable."""
    value = job_details.get("startTime")
    if not value:
        return None
    try:
        started = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return started if started.tzinfo else started.replace(tzinfo=UTC)


def sync_metadata(
    output: AirbyteOutput, stream: str, stream_stats: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """Materialization metadata of one stream after a successful job (no secret in it)."""
    job = output.job_details
    stats = stream_stats.get(stream) or {}
    metadata: dict[str, Any] = {
        "source": "airbyte",
        "airbyte_job_id": MetadataValue.int(int(job.get("jobId", -1))),
        "airbyte_job_status": str(job.get("status")),
        "airbyte_connection_id": str(output.connection_details.get("connectionId")),
        "airbyte_connection_name": str(output.connection_details.get("name")),
    }
    if job.get("rowsSynced") is not None:
        # The job's total over all streams of the connection (the public API has no split).
        metadata["airbyte_job_rows_synced"] = MetadataValue.int(int(job["rowsSynced"]))
    if job.get("bytesSynced") is not None:
        metadata["airbyte_job_bytes_synced"] = MetadataValue.int(int(job["bytesSynced"]))
    for field, label in (
        ("recordsCommitted", "rows_committed"),
        ("recordsEmitted", "rows_emitted"),
    ):
        if stats.get(field) is not None:
            metadata[label] = MetadataValue.int(int(stats[field]))
    if job.get("duration"):
        metadata["airbyte_job_duration"] = str(job["duration"])
    return metadata


def connection_details_from_public(public: Mapping[str, Any]) -> dict[str, Any]:
    """A public-API ``ConnectionResponse`` in the configuration-API shape dagster-airbyte
    parses (``AirbyteConnection.from_connection_details``)."""
    return ConnectionInfo.from_public(public).details()


def retry_after_seconds(response: requests.Response) -> float | None:
    """Seconds asked by the ``Retry-After`` header (delay-seconds or an HTTP date), or None."""
    value = (response.headers.get("Retry-After") or "").strip()
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def _snippet(response: requests.Response, limit: int = 300) -> str:
    text = (response.text or "").strip().replace("\n", " ")
    return (text[:limit] + "...") if len(text) > limit else (text or response.reason or "")


def _root_cause(exc: BaseException) -> str:
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return str(exc)[:200]


def _server_root(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
