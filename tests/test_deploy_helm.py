"""The Helm values in deploy/helm/ against the official charts' own schemas.

Each values file is merged over the chart's default values the way Helm does, then validated
against the chart's values.schema.json (offline copies in ../shared/reference/helm). On top of the
schema: the properties the deploy promises (credentials only through Secrets, non-root,
read-only root filesystem, requests and limits, readiness probes, user code outside the platform
release, K8sRunLauncher, PostgreSQL storage).
"""

from __future__ import annotations

import sys
from pathlib import Path

import jsonschema
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import deploy_support as ds  # noqa: E402

pytestmark = pytest.mark.skipif(
    not ds.HELM_REFERENCE.is_dir(),
    reason=f"chart schemas not found at {ds.HELM_REFERENCE} (the reference copy of shared/ that "
    "CI clones next to the repository); cannot validate Helm values offline",
)

LOCATION_NAMES = [loc["name"] for loc in ds.locations()]
# Environment variable names that carry credentials: they may only come from envSecrets.
CREDENTIAL_WORDS = ("PASSWORD", "SECRET", "TOKEN", "ACCESS_KEY", "KEY_ID", "WEBHOOK", "API_KEY")
RUN_AS = 10001


def _validate(chart: str, values: dict) -> dict:
    defaults, schema = ds.chart_reference(chart)
    merged = ds.helm_merge(defaults, values)
    validator_cls = jsonschema.validators.validator_for(schema)
    errors = sorted(validator_cls(schema).iter_errors(merged), key=lambda e: list(e.path))
    assert not errors, "\n".join(
        f"{chart}: {'/'.join(map(str, e.path)) or '<root>'}: {e.message[:300]}" for e in errors
    )
    return merged


def _platform_values() -> dict:
    return ds.load_yaml(ds.HELM_DIR / "dagster.values.yaml")


def _location_values(name: str) -> dict:
    return ds.load_yaml(ds.HELM_DIR / f"{name}.values.yaml")


def _assert_hardened(where: str, pod_ctx: dict, ctx: dict) -> None:
    assert pod_ctx.get("runAsNonRoot") is True, f"{where}: podSecurityContext.runAsNonRoot"
    assert pod_ctx.get("runAsUser") == RUN_AS, f"{where}: runAsUser must be the images' uid"
    assert ctx.get("allowPrivilegeEscalation") is False, f"{where}: allowPrivilegeEscalation"
    assert ctx.get("readOnlyRootFilesystem") is True, f"{where}: readOnlyRootFilesystem"
    assert "ALL" in ctx.get("capabilities", {}).get("drop", []), f"{where}: capabilities"


def _assert_resources(where: str, resources: dict) -> None:
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(resources.get(kind, {})), f"{where}: resources.{kind}"


def _assert_scratch_volumes(where: str, volumes: list, mounts: list, dagster_home: str) -> None:
    """A read-only root filesystem needs writable /tmp and DAGSTER_HOME (emptyDir)."""
    empty_dirs = {v["name"] for v in volumes if "emptyDir" in v}
    mounted = {m["mountPath"]: m["name"] for m in mounts}
    for path in ("/tmp", dagster_home):
        assert mounted.get(path) in empty_dirs, f"{where}: no emptyDir mounted at {path}"


def test_platform_values_validate_against_the_dagster_chart_schema():
    _validate("dagster", _platform_values())


@pytest.mark.parametrize("name", LOCATION_NAMES)
def test_location_values_validate_against_the_user_deployments_chart_schema(name):
    _validate("dagster-user-deployments", _location_values(name))


@pytest.mark.parametrize("name", LOCATION_NAMES)
def test_location_values_also_validate_as_the_main_charts_subchart(name):
    """The same deployment entry is valid under the main chart's `dagster-user-deployments`
    schema too (a team could move back into the platform release without edits)."""
    entry = _location_values(name)["deployments"]
    values = {"dagster-user-deployments": {"enableSubchart": True, "deployments": entry}}
    _validate("dagster", values)


def test_platform_release_runs_no_user_code_and_launches_runs_on_kubernetes():
    merged = _validate("dagster", _platform_values())
    user = merged["dagster-user-deployments"]
    assert user["enabled"] is True and user["enableSubchart"] is False
    assert user["deployments"] == [], "the platform release must not carry team deployments"
    assert merged["dagsterWebserver"]["workspace"]["enabled"] is True
    assert merged["runLauncher"]["type"] == "K8sRunLauncher"
    launcher = merged["runLauncher"]["config"]["k8sRunLauncher"]
    _assert_hardened(
        "run pods",
        launcher["runK8sConfig"]["podSpecConfig"]["securityContext"],
        launcher["securityContext"],
    )


def test_platform_storage_is_postgres_with_the_password_only_in_a_secret():
    merged = _validate("dagster", _platform_values())
    pg = merged["postgresql"]
    assert pg["enabled"] is False, "use the platform's managed PostgreSQL, not an in-chart one"
    assert pg["postgresqlHost"], "PostgreSQL host is required"
    assert pg["postgresqlPassword"] == "", "no password in values: it lives in a Secret"
    assert merged["generatePostgresqlPasswordSecret"] is False
    assert merged["global"]["postgresqlSecretName"]


@pytest.mark.parametrize("component", ["dagsterWebserver", "dagsterDaemon"])
def test_platform_components_are_hardened_with_limits(component):
    merged = _validate("dagster", _platform_values())
    values = merged[component]
    _assert_hardened(component, values["podSecurityContext"], values["securityContext"])
    _assert_resources(component, values["resources"])
    _assert_scratch_volumes(
        component, values["volumes"], values["volumeMounts"], merged["global"]["dagsterHome"]
    )
    assert values["image"]["tag"], f"{component}: pin the Dagster image tag"


def test_webserver_has_a_readiness_probe():
    merged = _validate("dagster", _platform_values())
    probe = merged["dagsterWebserver"]["readinessProbe"]
    assert probe.get("httpGet", {}).get("path") == "/server_info"
    # The chart uses the Service port as the container port; non-root cannot bind below 1024.
    port = merged["dagsterWebserver"]["service"]["port"]
    assert port >= 1024, "a non-root webserver without capabilities cannot bind port < 1024"
    assert probe["httpGet"]["port"] == port


@pytest.mark.parametrize("name", LOCATION_NAMES)
def test_location_deployment_is_hardened_and_credentials_come_from_secrets(name):
    merged = _validate("dagster-user-deployments", _location_values(name))
    (deployment,) = merged["deployments"]
    where = f"{name}.values.yaml"
    _assert_hardened(where, deployment["podSecurityContext"], deployment["securityContext"])
    _assert_resources(where, deployment["resources"])
    _assert_scratch_volumes(
        where, deployment["volumes"], deployment["volumeMounts"], merged["dagsterHome"]
    )
    assert deployment["readinessProbe"]["enabled"] is True, f"{where}: readiness probe"
    assert deployment["includeConfigInLaunchedRuns"]["enabled"] is True, (
        f"{where}: runs must get the location's env, Secrets and volumes"
    )
    assert [s["name"] for s in deployment["envSecrets"]] == [f"data-platform-{name}"]
    env = deployment["env"]
    assert isinstance(env, dict), f"{where}: env as a map (rendered into a ConfigMap)"
    leaked = [k for k in env if any(word in k.upper() for word in CREDENTIAL_WORDS)]
    assert not leaked, f"{where}: credentials in plain env {leaked}; use envSecrets"
    assert env.get("DATA_PLATFORM_ENV") == "prod"
    assert deployment["image"]["pullPolicy"] == "IfNotPresent", "tags are immutable"


@pytest.mark.parametrize("name", LOCATION_NAMES)
def test_location_release_grants_no_kubernetes_api_access(name):
    """Code servers and their run pods never call the Kubernetes API (the platform daemon
    launches the runs), so the team release creates no Role (least privilege)."""
    merged = _validate("dagster-user-deployments", _location_values(name))
    assert merged["rbacEnabled"] is False


def test_helm_merge_follows_helm_semantics():
    defaults = {"a": {"x": 1, "y": [1, 2]}, "b": 2, "c": {"keep": True}}
    merged = ds.helm_merge(defaults, {"a": {"y": [3]}, "b": None, "c": {"new": 1}})
    assert merged == {"a": {"x": 1, "y": [3]}, "c": {"keep": True, "new": 1}}
    assert defaults["a"]["y"] == [1, 2], "defaults must not be mutated"


def test_schema_check_rejects_a_broken_location_values_file():
    """The validation above has teeth: a string port and a missing image are rejected."""
    values = _location_values(LOCATION_NAMES[0])
    (deployment,) = values["deployments"]
    broken = {**deployment, "port": str(deployment["port"])}
    broken.pop("image")
    with pytest.raises(AssertionError, match="port|image"):
        _validate("dagster-user-deployments", {**values, "deployments": [broken]})
