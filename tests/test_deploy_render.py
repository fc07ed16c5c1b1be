"""The four releases of deploy/README.md rendered with the REAL Dagster chart, and the versions.

Rendering goes through Helm's own template engine (helm-python-sdk embeds Helm's Go SDK and
works offline), with the values validated against the chart's schema as `helm template` does, and
the --set-string flags the documented commands pass. The chart is the reference copy of chart
1.12.19 beside the repository (../shared/reference/helm/charts/); the chart version the deploy
pins is the Dagster version of uv.lock (1.13.x), which cannot be fetched here: GitHub CI renders
that exact version with the real `helm` and validates the manifests with kubeconform
(.github/workflows/ci.yml, job `helm`). The two versions' templates for everything used here are
the same (see deploy/README.md "Versions").

Assertions are on the rendered Kubernetes objects: the workspace against the team Services, the
container context run pods inherit, pod security, the run launcher and instance (validated with
Dagster's own instance schema), compute logs, concurrency pools, pull Secrets, NetworkPolicies,
the database endpoint and the migration Job.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import deploy_support as ds  # noqa: E402

REPO = ds.REPO
plan = ds.load_plan_module()
LOCATIONS = ds.locations()
NAMES = [loc["name"] for loc in LOCATIONS]
BY_NAME = {loc["name"]: loc for loc in LOCATIONS}
RUN_AS = 10001

needs_chart = pytest.mark.skipif(
    not ds.CHART_DIR.is_dir(),
    reason=f"the real Dagster chart is not at {ds.CHART_DIR} (the reference copy of shared/ "
    "beside the repository): cannot render the releases here; GitHub CI renders the pinned "
    "chart version with helm and kubeconform instead",
)


# ----------------------------------------------------------------------------- versions


def test_pinned_chart_version_is_the_dagster_version_of_the_lock():
    assert plan.chart_version(REPO) == ds.locked_version("dagster")


def test_platform_images_run_the_locked_dagster_version():
    values = ds.load_yaml(ds.HELM_DIR / "dagster.values.yaml")
    for component in ("dagsterWebserver", "dagsterDaemon"):
        assert values[component]["image"]["tag"] == ds.locked_version("dagster"), component


def _helm_commands(text: str) -> list[str]:
    """`helm upgrade|install|template ...` commands of a text, continuation lines joined; not
    those a script expects to fail (`if helm ...; then <error>`)."""
    joined = re.sub(r"\\\n\s*(#\s*)?", " ", text)
    pattern = r"(?<!if )helm (?:upgrade|install|template)\b[^\n`]*"
    return [m.group(0) for m in re.finditer(pattern, joined)]


def _documents_with_helm_commands() -> list[Path]:
    paths = [REPO / "README.md", REPO / "deploy" / "README.md"]
    paths += sorted((REPO / "deploy" / "helm").glob("*.yaml"))
    paths += sorted((REPO / ".github" / "workflows").glob("*.yml"))
    return [p for p in paths if p.is_file()]


def test_every_documented_helm_command_pins_the_chart_version_and_a_real_tag():
    version = plan.chart_version(REPO)
    found = 0
    for path in _documents_with_helm_commands():
        for command in _helm_commands(path.read_text(encoding="utf-8")):
            if "dagster/dagster" not in command:
                continue
            found += 1
            where = f"{path.relative_to(REPO)}: {command}"
            assert f"--version {version}" in command or "$CHART_VERSION" in command, where
            if "dagster-user-deployments" in command:
                assert "deployments[0].image.tag=" in command, f"no image tag: {where}"
            elif "upgrade" in command or "install" in command:
                assert "postgresql.postgresqlHost=" in command, f"no database host: {where}"
    assert found >= 4, "the four releases' commands are documented"


def test_deploy_command_has_the_pinned_version_and_the_real_tag():
    command = plan.deploy_command("ingestion", ds.EXAMPLE_SHA, REPO)
    assert f"--version {plan.chart_version(REPO)}" in command
    assert f"--set-string 'deployments[0].image.tag={ds.EXAMPLE_SHA}'" in command
    assert "-f deploy/helm/ingestion.values.yaml" in command


@pytest.mark.parametrize("tag", ["", "git-sha", "latest", "main", ds.EXAMPLE_SHA[:12]])
def test_deploy_command_refuses_anything_but_a_commit_sha(tag):
    with pytest.raises(ValueError, match="commit sha"):
        plan.deploy_command("ingestion", tag, REPO)


def test_images_workflow_prints_the_planners_deploy_command():
    workflow = ds.load_yaml(REPO / ".github" / "workflows" / "images.yml")
    (step,) = [s for s in workflow["jobs"]["build"]["steps"] if s.get("name") == "Deploy command"]
    assert 'plan_images.py --deploy-command "$LOCATION" --tag "$TAG"' in step["run"]
    assert workflow["jobs"]["build"]["env"]["TAG"] == "${{ github.sha }}"


# ------------------------------------------------------------------------------ rendering


@pytest.fixture(scope="module")
def platform() -> list[dict]:
    return ds.render("dagster", ds.release_values("dagster"))


@pytest.fixture(scope="module")
def teams() -> dict[str, list[dict]]:
    return {name: ds.render(name, ds.release_values(name)) for name in NAMES}


def _instance(platform: list[dict]) -> dict:
    (config_map,) = ds.find(platform, "ConfigMap", "dagster-instance")
    return yaml.safe_load(config_map["data"]["dagster.yaml"])


def _deployment(objects: list[dict], name: str | None = None) -> dict:
    deployments = ds.find(objects, "Deployment", name)
    assert len(deployments) == 1, [d["metadata"]["name"] for d in deployments]
    return deployments[0]


def _container(deployment: dict) -> dict:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def _env(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def _container_context(team: list[dict]) -> dict:
    env = _env(_container(_deployment(team)))
    return json.loads(env["DAGSTER_CLI_API_GRPC_CONTAINER_CONTEXT"]["value"])["k8s"]


def _matches(selector: dict, labels: dict) -> bool:
    """Kubernetes label selector semantics (matchLabels and matchExpressions)."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        value, op = labels.get(expr["key"]), expr["operator"]
        if op == "In" and value not in expr["values"]:
            return False
        if op == "NotIn" and value in expr["values"]:
            return False
        if op == "Exists" and expr["key"] not in labels:
            return False
        if op == "DoesNotExist" and expr["key"] in labels:
            return False
    return True


def _pod_labels(deployment: dict) -> dict:
    return deployment["spec"]["template"]["metadata"]["labels"]


def _run_pod_labels(name: str, team: list[dict]) -> dict:
    """Labels the K8sRunLauncher puts on a run pod of location `name`: Dagster's common labels,
    component run_worker, and the location's container-context labels."""
    from dagster_k8s.job import get_common_labels

    return {
        **get_common_labels(),
        "app.kubernetes.io/component": "run_worker",
        **_container_context(team).get("labels", {}),
    }


@needs_chart
def test_all_four_releases_render_with_the_real_chart(platform, teams):
    for objects in (platform, *teams.values()):
        assert objects
        for obj in objects:
            assert obj.get("apiVersion") and obj.get("kind") and obj["metadata"].get("name"), obj
    kinds = {o["kind"] for o in platform}
    assert {"Deployment", "Service", "ConfigMap", "Role", "RoleBinding"} <= kinds
    for name, objects in teams.items():
        assert {o["kind"] for o in objects} >= {"Deployment", "Service", "NetworkPolicy"}, name
        assert not ds.find(objects, "Role"), f"{name}: no Kubernetes API rights for user code"


# Kubernetes version whose schemas the manifests are checked against (as kubeconform does in CI).
KUBERNETES_VERSION = "1.31"


@needs_chart
def test_every_rendered_manifest_validates_against_kubernetes_schemas(platform, teams):
    """Strict validation (no unknown field) against Kubernetes' own OpenAPI-derived schemas,
    bundled by kubernetes-validate (offline); the migration Job included."""
    import kubernetes_validate

    migrate = ds.render("dagster", ds.release_values("dagster", "migrate.enabled=true"))
    errors = []
    for obj in (*platform, *migrate, *(o for objects in teams.values() for o in objects)):
        manifest = {k: v for k, v in obj.items() if k != "__template"}
        try:
            kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {str(exc)[:300]}")
    assert not errors, "\n".join(errors)


def test_the_kubernetes_schema_check_has_teeth():
    import kubernetes_validate

    broken = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "template": {"spec": {"containers": [{"name": "c", "imagex": "typo"}]}},
        },
    }
    with pytest.raises(kubernetes_validate.ValidationError, match="imagex"):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


@needs_chart
def test_no_two_releases_create_the_same_object(platform, teams):
    seen: dict[tuple[str, str], str] = {}
    for release, objects in {"dagster": platform, **teams}.items():
        for obj in objects:
            key = (obj["kind"], obj["metadata"]["name"])
            assert key not in seen, f"{key} created by {seen.get(key)} and {release}"
            seen[key] = release


@needs_chart
def test_a_team_release_without_the_real_tag_is_refused():
    import helm_python

    values = ds.load_yaml(ds.HELM_DIR / "ingestion.values.yaml")
    with pytest.raises(helm_python.HelmValuesError, match="deployments/0/image/tag"):
        ds.render("ingestion", values)


@needs_chart
def test_the_platform_release_without_a_database_host_is_refused():
    import helm_python

    values = ds.load_yaml(ds.HELM_DIR / "dagster.values.yaml")
    with pytest.raises(helm_python.HelmValuesError, match="postgresqlHost"):
        ds.render("dagster", values)


@needs_chart
def test_workspace_lists_exactly_the_team_services(platform, teams):
    (config_map,) = ds.find(platform, "ConfigMap", "dagster-workspace-yaml")
    workspace = yaml.safe_load(config_map["data"]["workspace.yaml"])
    servers = {
        s["grpc_server"]["location_name"]: (s["grpc_server"]["host"], s["grpc_server"]["port"])
        for s in workspace["load_from"]
    }
    assert set(servers) == set(NAMES)
    for name, objects in teams.items():
        (service,) = ds.find(objects, "Service")
        host, port = servers[name]
        assert service["metadata"]["name"] == host, "the workspace host is the team's Service"
        (service_port,) = service["spec"]["ports"]
        assert service_port["port"] == port == BY_NAME[name]["port"]
        deployment = _deployment(objects)
        assert _matches({"matchLabels": service["spec"]["selector"]}, _pod_labels(deployment))
        args = _container(deployment)["args"]
        # No targetPort: Kubernetes sends to the same port number on the pod.
        target = service_port.get("targetPort", service_port["port"])
        assert args[args.index("-p") + 1] == str(target)
        assert args[-2:] == ["-m", BY_NAME[name]["module"]]


@needs_chart
@pytest.mark.parametrize("name", NAMES)
def test_run_pods_inherit_the_locations_container_context(name, teams):
    team = teams[name]
    container = _container(_deployment(team))
    image = f"{BY_NAME[name]['image']}:{ds.EXAMPLE_SHA}"
    assert container["image"] == image
    assert _env(container)["DAGSTER_CURRENT_IMAGE"]["value"] == image, "run pods' image"
    context = _container_context(team)
    assert context["env_secrets"] == [f"data-platform-{name}"]
    assert context["image_pull_secrets"] == [{"name": f"data-platform-{name}-registry"}]
    assert {v["name"] for v in context["volumes"]} == {"tmp", "dagster-home"}
    assert {m["mountPath"] for m in context["volume_mounts"]} == {
        "/tmp",
        "/opt/dagster/dagster_home",
    }
    assert context["labels"]["data-platform/location"] == name
    assert {"requests", "limits"} <= set(context["resources"])
    assert context["namespace"] == "dagster"


@needs_chart
@pytest.mark.parametrize("name", NAMES)
def test_team_pods_pull_with_the_teams_secret(name, teams):
    pod = _deployment(teams[name])["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": f"data-platform-{name}-registry"}]


def _assert_pod_hardened(where: str, pod: dict) -> None:
    ctx = pod["securityContext"]
    assert ctx.get("runAsNonRoot") is True and ctx.get("runAsUser") == RUN_AS, where
    assert ctx.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
    for container in pod.get("initContainers", []) + pod["containers"]:
        sc = container.get("securityContext") or {}
        assert sc.get("allowPrivilegeEscalation") is False, f"{where}/{container['name']}"
        assert sc.get("readOnlyRootFilesystem") is True, f"{where}/{container['name']}"
        assert "ALL" in sc.get("capabilities", {}).get("drop", []), f"{where}/{container['name']}"


@needs_chart
def test_every_pod_is_hardened(platform, teams):
    migrate = ds.render("dagster", ds.release_values("dagster", "migrate.enabled=true"))
    pods = 0
    for objects in (platform, migrate, *teams.values()):
        for obj in objects:
            if obj["kind"] in {"Deployment", "Job"}:
                _assert_pod_hardened(obj["metadata"]["name"], obj["spec"]["template"]["spec"])
                pods += 1
    assert pods == 2 + 3 + len(NAMES), "webserver, daemon (twice), migrate job, code servers"


@needs_chart
def test_run_launcher_launches_hardened_run_pods(platform):
    launcher = _instance(platform)["run_launcher"]
    assert launcher["class"] == "K8sRunLauncher"
    config = launcher["config"]
    assert config["security_context"]["readOnlyRootFilesystem"] is True
    pod_ctx = config["run_k8s_config"]["pod_spec_config"]["securityContext"]
    assert pod_ctx["runAsNonRoot"] is True and pod_ctx["runAsUser"] == RUN_AS
    assert config["run_k8s_config"]["job_spec_config"]["ttlSecondsAfterFinished"] == 86400
    secret_name = "dagster-postgresql-secret"  # pragma: allowlist secret (a Secret name)
    assert config["postgres_password_secret"] == secret_name


@needs_chart
def test_instance_is_valid_for_the_locked_dagster(platform):
    """The rendered dagster.yaml passes Dagster's own instance config schema (this repo's
    Dagster, the one the code images run)."""
    from dagster._config import process_config
    from dagster._core.instance.config import dagster_instance_config_schema

    result = process_config(dagster_instance_config_schema(), _instance(platform))
    assert result.success, [e.message for e in result.errors]


@needs_chart
def test_storage_is_the_operators_managed_database_over_tls(platform):
    instance = _instance(platform)
    for storage in ("run_storage", "event_log_storage", "schedule_storage"):
        db = instance[storage]["config"]["postgres_db"]
        assert db["hostname"] == ds.EXAMPLE_PG_HOST, storage
        assert db["params"]["sslmode"] == "require", storage
        assert db["password"] == {"env": "DAGSTER_PG_PASSWORD"}, storage
    for name in ("dagster-dagster-webserver", "dagster-daemon"):
        (init,) = _deployment(platform, name)["spec"]["template"]["spec"]["initContainers"]
        assert ds.EXAMPLE_PG_HOST in " ".join(init["command"]), "check-db-ready waits for it"


@needs_chart
def test_migration_job_runs_dagster_instance_migrate_when_enabled(platform):
    assert not ds.find(platform, "Job"), "no migration Job unless asked for"
    objects = ds.render("dagster", ds.release_values("dagster", "migrate.enabled=true"))
    (job,) = ds.find(objects, "Job")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] + container["args"] == ["dagster", "instance", "migrate"]
    assert "DAGSTER_PG_PASSWORD" in _env(container)
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert "/opt/dagster/dagster_home/dagster.yaml" in mounts and "/tmp" in mounts


@needs_chart
def test_concurrency_pools_default_to_one_slot(platform):
    concurrency = _instance(platform)["concurrency"]
    assert concurrency["pools"]["default_limit"] == 1
    assert concurrency["runs"]["max_concurrent_runs"] == 10


@needs_chart
def test_compute_logs_go_to_garage(platform, teams):
    compute_logs = _instance(platform)["compute_logs"]
    assert compute_logs["class"] == "S3ComputeLogManager"
    config = compute_logs["config"]
    garage = {
        ds.load_yaml(ds.HELM_DIR / f"{n}.values.yaml")["deployments"][0]["env"][
            "GARAGE_S3_ENDPOINT"
        ]
        for n in NAMES
    }
    assert {config["endpoint_url"]} == garage, "the same Garage the locations use"
    assert config["region"] == "garage"
    assert config["local_dir"].startswith("/tmp/"), "captured inside the writable /tmp"
    # boto3 reads the region and the credentials from the environment of every process that
    # writes or reads run logs: webserver, daemon (env ConfigMaps + Secret) and run pods.
    for name in ("dagster-dagster-webserver", "dagster-daemon"):
        container = _container(_deployment(platform, name))
        assert _env(container)["AWS_DEFAULT_REGION"]["value"] == "garage", name
        assert {"secretRef": {"name": "dagster-compute-logs"}} in container["envFrom"], name
    launcher = _instance(platform)["run_launcher"]["config"]
    assert "dagster-compute-logs" in launcher["env_secrets"]
    assert "AWS_DEFAULT_REGION=garage" in launcher["env_vars"]


@needs_chart
@pytest.mark.parametrize("name", NAMES)
def test_only_the_webserver_and_daemon_reach_the_grpc_port(name, platform, teams):
    team = teams[name]
    policies = {p["metadata"]["name"]: p["spec"] for p in ds.find(team, "NetworkPolicy")}
    code_server = _pod_labels(_deployment(team))
    run_pod = _run_pod_labels(name, team)
    grpc = [p for p in policies.values() if _matches(p["podSelector"], code_server)]
    assert len(grpc) == 1, "one policy selects the code server"
    (policy,) = grpc
    assert policy["policyTypes"] == ["Ingress"]
    (rule,) = policy["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": BY_NAME[name]["port"]}]
    allowed = {
        d["metadata"]["name"]
        for d in ds.find(platform, "Deployment")
        if any(_matches(peer["podSelector"], _pod_labels(d)) for peer in rule["from"])
    }
    assert allowed == {"dagster-dagster-webserver", "dagster-daemon"}
    for peer in rule["from"]:
        assert set(peer) == {"podSelector"}, "same namespace, by pod labels only"
        others = [_pod_labels(_deployment(t)) for n, t in teams.items() if n != name]
        assert not any(_matches(peer["podSelector"], labels) for labels in [run_pod, *others])


@needs_chart
@pytest.mark.parametrize("name", NAMES)
def test_run_pods_accept_no_connections_and_keep_their_egress(name, teams):
    team = teams[name]
    run_pod = _run_pod_labels(name, team)
    selecting = [p["spec"] for p in ds.find(team, "NetworkPolicy")]
    selecting = [p for p in selecting if _matches(p["podSelector"], run_pod)]
    assert len(selecting) == 1, "one policy selects this location's run pods"
    (policy,) = selecting
    assert policy["policyTypes"] == ["Ingress"] and policy["ingress"] == []
    assert not _matches(policy["podSelector"], _pod_labels(_deployment(team)))


# --------------------------------------------------------------- compute logs, for real


#: Builds the rendered compute log manager, captures a step's output, reads it back (run with
#: ``python -c``; the environment carries the S3 credentials and region).
CAPTURE_SCRIPT = """
from dagster._core.storage.compute_log_manager import ComputeLogManager
from dagster._serdes import ConfigurableClassData

manager = ConfigurableClassData({module!r}, {cls!r}, {config!r}).rehydrate(as_type=ComputeLogManager)
log_key = ["run-1", "compute_logs", "step"]
with manager.capture_logs(log_key):
    print("hello from a step", flush=True)
data = manager.get_log_data(log_key)
print("CAPTURED: " + (data.stdout or b"").decode())
"""


@needs_chart
def test_rendered_compute_log_manager_uploads_to_an_s3_server_path_style(platform, tmp_path):
    """The S3ComputeLogManager built from the rendered instance config, pointed at a real S3
    server (rclone serve s3, Garage's stand-in, which accepts path-style requests only) by
    host name, with credentials and region from the environment as in the pods: a step's
    output is uploaded under the prefix and read back."""
    from tests.s3_server import RcloneS3Server

    compute_logs = _instance(platform)["compute_logs"]
    config = dict(compute_logs["config"])
    bucket_root = tmp_path / "s3"
    (bucket_root / config["bucket"]).mkdir(parents=True)
    key, secret = "AKIDLOGS", "logs-secret-key"  # pragma: allowlist secret
    with (
        RcloneS3Server(bucket_root, key, secret) as server,
        pytest.MonkeyPatch.context() as mp,
    ):
        mp.setenv("AWS_ACCESS_KEY_ID", key)
        mp.setenv("AWS_SECRET_ACCESS_KEY", secret)
        mp.setenv("AWS_DEFAULT_REGION", "garage")
        config["endpoint_url"] = f"http://localhost:{server.port}"
        config["local_dir"] = str(tmp_path / "capture")
        config.pop("upload_interval")
        # In a fresh process, as in a run worker: the capture tails the step's output with
        # `tail -F` and stops it with SIGTERM. (That stop hung when the session was started
        # with SIGINT ignored: the root conftest.py restores SIGINT's default, see there.)
        script = CAPTURE_SCRIPT.format(
            module=compute_logs["module"], cls=compute_logs["class"], config=yaml.safe_dump(config)
        )
        # Only what the pod's spec gives it (credentials, region), nothing this test session
        # set in its own environment.
        pod_env = {
            "PATH": os.environ["PATH"],
            "HOME": os.environ.get("HOME", "/tmp"),
            "AWS_ACCESS_KEY_ID": key,
            "AWS_SECRET_ACCESS_KEY": secret,
            "AWS_DEFAULT_REGION": "garage",
        }
        out = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
            env=pod_env,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr[-3000:]
        assert "CAPTURED: hello from a step" in out.stdout, out.stdout[-3000:]
    uploaded = [p for p in (bucket_root / config["bucket"]).rglob("*") if p.is_file()]
    assert uploaded and all(
        p.relative_to(bucket_root / config["bucket"]).parts[0] == config["prefix"] for p in uploaded
    )
    assert any(b"hello from a step" in p.read_bytes() for p in uploaded)


# ------------------------------------------------------------ the README against the objects


def _readme_object_names() -> dict[str, set[str]]:
    """Object names deploy/README.md tells the operator to find: `kind/name` in its commands and
    the backticked names of its "What to check" table, per release row."""
    text = (REPO / "deploy" / "README.md").read_text(encoding="utf-8")
    names: dict[str, set[str]] = {"dagster": set(), "<location>": set()}
    for row in re.finditer(r"^\| `(dagster|<location>)` \| (.*) \|$", text, re.M):
        for token in re.findall(r"`([^`]+)`", row.group(2)):
            if re.fullmatch(r"[a-z0-9<>-]+", token) and "-" in token:
                names[row.group(1)].add(token)
    for line in text.splitlines():
        if "kubectl" in line:
            names["dagster"] |= set(re.findall(r"\b(?:svc|deploy|job)/([a-z0-9-]+)", line))
    return names


@needs_chart
def test_every_object_the_readme_names_is_rendered(platform, teams):
    migrate = ds.render("dagster", ds.release_values("dagster", "migrate.enabled=true"))

    def known(objects: list[dict]) -> set[str]:
        out = {o["metadata"]["name"] for o in objects}
        for o in objects:
            pod = o.get("spec", {}).get("template", {}).get("spec", {})
            out |= {c["name"] for c in pod.get("initContainers", []) + pod.get("containers", [])}
        return out

    names = _readme_object_names()
    assert len(names["dagster"]) >= 8 and len(names["<location>"]) >= 6
    missing = names["dagster"] - known(platform + migrate)
    assert not missing, f"deploy/README.md names objects the platform release lacks: {missing}"
    for name, objects in teams.items():
        expected = {n.replace("<location>", name) for n in names["<location>"]}
        missing = expected - known(objects)
        assert not missing, f"deploy/README.md names objects release {name} lacks: {missing}"


# ------------------------------------------------------- the instance storage on a real server


@pytest.fixture(scope="module")
def postgres_url(tmp_path_factory):
    """A throwaway PostgreSQL server (pgserver, a dev dependency: the real server binaries)."""
    from data_platform.bench_postgres import throwaway_postgres

    try:
        with throwaway_postgres(tmp_path_factory.mktemp("pg") / "data") as url:
            yield url
    except RuntimeError as error:  # pragma: no cover - e.g. no useradd where run as root
        pytest.skip(f"no PostgreSQL server could be started here: {error}")


@needs_chart
def test_the_rendered_instance_storage_stores_runs_in_postgres(
    platform, postgres_url, tmp_path, monkeypatch
):
    """The rendered instance's ``storage.postgres.postgres_db`` block, with the locked
    dependencies, against a real PostgreSQL server (only the endpoint is the test server's: its
    Unix socket as libpq's ``host`` parameter, TLS off): a run and its events are stored and read
    back. Without the chart's ``postgresqlScheme`` the URL is a bare postgresql://, which
    SQLAlchemy 2.1 maps to psycopg 3, not installed: every pod opening the instance failed."""
    from urllib.parse import parse_qs, urlparse

    from dagster import DagsterInstance, DagsterRunStatus, asset, materialize

    @asset
    def a_number() -> int:
        """One materialization: a run and its events to store."""
        return 1

    instance_yaml = _instance(platform)
    parsed = urlparse(postgres_url)
    endpoint = {
        "hostname": "localhost",
        "port": 5432,
        "db_name": parsed.path.lstrip("/"),
        "username": "postgres",
        "params": {"host": parse_qs(parsed.query)["host"][0], "sslmode": "disable"},
    }
    overrides = {}
    for name in ("run_storage", "event_log_storage", "schedule_storage"):
        block = instance_yaml[name]
        db = block["config"]["postgres_db"]
        assert db["password"] == {"env": "DAGSTER_PG_PASSWORD"}
        # Everything as rendered (module, class, scheme, ...) but the endpoint.
        overrides[name] = {**block, "config": {"postgres_db": {**db, **endpoint}}}
    # trust authentication: any password is accepted; the pods read it from a Secret.
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", "unused-by-trust-auth")  # pragma: allowlist secret
    with DagsterInstance.local_temp(tempdir=str(tmp_path), overrides=overrides) as instance:
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        result = materialize([a_number], instance=instance)
        assert result.success
        run = instance.get_run_by_id(result.run_id)
        assert run is not None and run.status == DagsterRunStatus.SUCCESS
        latest = instance.get_latest_materialization_event(a_number.key)
        assert latest is not None and latest.run_id == result.run_id
