"""The Helm values in deploy/helm/: the promises the deploy makes, read from the values files.

Schema validation is done by the real chart itself: tests/test_deploy_render.py renders every
release with Helm's engine, which validates the values (merged over the chart's defaults, with
the documented --set flags) against chart 1.12.19's values.schema.json, as `helm template` does.
Here: credentials only through Secrets, non-root, read-only root filesystem, requests and
limits, readiness probes, user code outside the platform release, K8sRunLauncher, PostgreSQL
storage, and a team's deployment entry valid under the main chart's subchart too.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import deploy_support as ds  # noqa: E402

needs_chart = pytest.mark.skipif(
    not ds.CHART_DIR.is_dir(),
    reason=f"the real Dagster chart is not at {ds.CHART_DIR} (the reference copy of shared/ "
    "beside the repository): cannot render; GitHub CI renders with helm instead",
)

LOCATION_NAMES = [loc["name"] for loc in ds.locations()]
# Environment variable names that carry credentials: they may only come from envSecrets.
CREDENTIAL_WORDS = ("PASSWORD", "SECRET", "TOKEN", "ACCESS_KEY", "KEY_ID", "WEBHOOK", "API_KEY")
RUN_AS = 10001


def _validate(chart: str, values: dict) -> dict:
    """The values file merged over the chart's defaults the way Helm coalesces them (the real
    chart's values.yaml; the real engine validates it in tests/test_deploy_render.py)."""
    chart_dir = ds.CHART_DIR if chart == "dagster" else ds.USER_CHART_DIR
    defaults = ds.load_yaml(chart_dir / "values.yaml") if chart_dir.is_dir() else {}
    return ds.helm_merge(defaults, values)


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


@needs_chart
@pytest.mark.parametrize("name", LOCATION_NAMES)
def test_location_values_also_render_as_the_main_charts_subchart(name):
    """The same deployment entry is valid under the main chart's `dagster-user-deployments`
    subchart too (a team could move back into the platform release without edits)."""
    values = ds.release_values("dagster")
    entry = ds.release_values(name)["deployments"]
    values["dagster-user-deployments"] = {"enableSubchart": True, "deployments": entry}
    objects = ds.render("dagster", values)
    assert ds.find(objects, "Service", name), "the subchart renders the location's Service"


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
    assert "postgresqlHost" not in pg, "the operator sets the host (--set-string), never a default"
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


@needs_chart
def test_schema_check_rejects_a_broken_location_values_file():
    """The chart's schema has teeth: a string port and a missing image are rejected."""
    import helm_python

    values = ds.release_values(LOCATION_NAMES[0])
    (deployment,) = values["deployments"]
    broken = {**deployment, "port": str(deployment["port"])}
    broken.pop("image")
    with pytest.raises(helm_python.HelmValuesError, match="port|image"):
        ds.render(LOCATION_NAMES[0], {**values, "deployments": [broken]})
