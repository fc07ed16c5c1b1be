"""Start the real Dagster webserver on a workspace file, for tests, and talk GraphQL to it."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from data_platform.processes import dagster_process, free_port

REPO = Path(__file__).resolve().parents[1]


WORKSPACE_QUERY = """
{ workspaceOrError { __typename ... on Workspace { locationEntries {
    name loadStatus
    locationOrLoadError { __typename ... on PythonError {
        message errorChain { error { message } } } }
} } } }
"""

ASSET_NODES_QUERY = """
{ assetNodes { assetKey { path } dependencyKeys { path } isMaterializable
    repository { location { name } } } }
"""


LAUNCH_RUN = """
mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
    __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
    ... on InvalidSubsetError { message } ... on RunConfigValidationInvalid { errors { message } }
} }
"""

RUN_STATUS = """
query($runId: ID!) { runOrError(runId: $runId) { ... on Run { status } } }
"""


class Webserver:
    def __init__(self, url: str, proc: subprocess.Popen, log: Path):
        self.url, self.proc, self.log = url, proc, log

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        req = urllib.request.Request(
            f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=60) as resp:
            payload = json.loads(resp.read())
        if payload.get("errors"):
            raise AssertionError(f"GraphQL errors: {payload['errors']}")
        return payload["data"]

    def run_job(self, location: str, job: str, timeout: float = 300) -> str:
        """Launch ``job`` of ``location`` through GraphQL and wait for its final status."""
        launched = self.graphql(
            LAUNCH_RUN,
            {
                "params": {
                    "selector": {
                        "repositoryLocationName": location,
                        "repositoryName": "__repository__",
                        "jobName": job,
                    },
                    "executionMetadata": {},
                }
            },
        )["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        run_id = launched["run"]["runId"]
        deadline = time.monotonic() + timeout
        status = "?"
        while time.monotonic() < deadline:
            status = self.graphql(RUN_STATUS, {"runId": run_id})["runOrError"]["status"]
            if status in ("SUCCESS", "FAILURE", "CANCELED"):
                return status
            time.sleep(1)
        raise AssertionError(f"run {run_id} still {status} after {timeout}s")

    def locations(self) -> dict[str, dict]:
        data = self.graphql(WORKSPACE_QUERY)["workspaceOrError"]
        return {e["name"]: e for e in data["locationEntries"]}

    def wait_loaded(self, names: set[str], timeout: float = 240) -> dict[str, dict]:
        deadline = time.monotonic() + timeout
        last: dict[str, dict] = {}
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"webserver exited: {self.log.read_text()[-3000:]}")
            try:
                last = self.locations()
            except OSError:
                time.sleep(1)
                continue
            if set(last) >= names and all(last[n]["loadStatus"] == "LOADED" for n in names):
                return last
            time.sleep(1)
        raise AssertionError(f"locations not loaded in {timeout}s: {last}")


@contextmanager
def running_webserver(
    workspace: Path,
    dagster_home: Path,
    env: dict[str, str] | None = None,
    inherit_settings: bool = True,
):
    """Run ``dagster-webserver -w workspace`` on a free port; stop it by PID at the end.

    ``inherit_settings=False``: the platform's settings (``DATA_PLATFORM_*``) come from ``env``
    only, not from this process's environment (which earlier tests of a session may have set),
    so the locations load exactly as a process started with ``env`` did."""
    port = free_port()
    dagster_home.mkdir(parents=True, exist_ok=True)
    # Launch runs straight from the webserver (no daemon in these tests); no telemetry.
    (dagster_home / "dagster.yaml").write_text(
        "run_coordinator:\n"
        "  module: dagster._core.run_coordinator\n"
        "  class: DefaultRunCoordinator\n"
        "telemetry:\n"
        "  enabled: false\n"
    )
    log = dagster_home / "webserver.log"
    inherited = {
        k: v
        for k, v in os.environ.items()
        if inherit_settings or not k.startswith("DATA_PLATFORM_")
    }
    full_env = {**inherited, "DAGSTER_HOME": str(dagster_home), **(env or {})}
    args = ["-w", str(workspace), "-h", "127.0.0.1", "-p", str(port)]
    with dagster_process("dagster-webserver", args, env=full_env, cwd=REPO, log=log) as proc:
        yield Webserver(f"http://127.0.0.1:{port}", proc, log)
