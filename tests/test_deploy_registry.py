"""One source of truth for locations: deploy/locations.toml.

workspace.yaml, the Helm values, the Dockerfile and CI must name the same locations, modules,
ports and images as the registry; any drift fails here. The CI planner's rules (what a change
rebuilds) are checked against the uv workspace's dependency graph.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import deploy_support as ds  # noqa: E402

REPO = ds.REPO
plan = ds.load_plan_module()
LOCATIONS = ds.locations()
BY_NAME = {loc["name"]: loc for loc in LOCATIONS}
WORKFLOW = REPO / ".github" / "workflows" / "images.yml"


def _grpc_args(values_file: Path) -> tuple[dict, list[str]]:
    """The single deployment of a team's values file and the container args the chart renders
    for it (deployment-user.yaml: `dagster api grpc -h 0.0.0.0 -p <port> <dagsterApiGrpcArgs>`)."""
    values = ds.load_yaml(values_file)
    deployments = values["deployments"]
    assert len(deployments) == 1, f"{values_file.name}: one location per team release"
    (deployment,) = deployments
    args = ["dagster", "api", "grpc", "-h", "0.0.0.0", "-p", str(deployment["port"])]
    return deployment, args + list(deployment["dagsterApiGrpcArgs"])


def test_registry_entries_are_complete_and_unique():
    registry = plan.load_registry(REPO)
    assert LOCATIONS, "deploy/locations.toml lists no location"
    keys = ("name", "package", "module", "port", "image", "dockerfile", "prepare", "extra_inputs")
    for loc in LOCATIONS:
        missing = [k for k in keys if k not in loc]
        assert not missing, f"{loc.get('name')}: missing {missing}"
        assert loc["image"].startswith(registry["image_registry"] + "/"), loc["image"]
        assert loc["module"] == f"{loc['package']}.definitions"
        # The one Dockerfile finds a location's code at locations/<LOCATION>/<LOCATION>.
        assert loc["name"] == loc["package"], "the build arg LOCATION names both"
        assert (REPO / "locations" / loc["name"] / loc["name"]).is_dir(), loc["name"]
        assert (REPO / loc["dockerfile"]).is_file(), loc["dockerfile"]
        for path in loc["extra_inputs"]:
            assert (REPO / path).exists(), f"{loc['name']}: extra input {path} does not exist"
    for key in ("name", "port", "image"):
        values = [loc[key] for loc in LOCATIONS]
        assert len(set(values)) == len(values), f"duplicate {key} in deploy/locations.toml"


def test_registry_packages_are_workspace_members_with_a_definitions_module():
    members = plan.workspace_members(REPO)
    for loc in LOCATIONS:
        assert loc["package"] in members, f"{loc['package']} is not a uv workspace member"
        folder = REPO / members[loc["package"]]["dir"]
        module_file = folder / Path(*loc["module"].split(".")).with_suffix(".py")
        assert module_file.is_file(), f"{loc['name']}: {module_file} not found"


def test_workspace_yaml_matches_the_registry():
    workspace = ds.load_yaml(REPO / "workspace.yaml")
    entries = {
        e["python_module"]["location_name"]: e["python_module"]["module_name"]
        for e in workspace["load_from"]
    }
    assert entries == {loc["name"]: loc["module"] for loc in LOCATIONS}


def test_platform_workspace_lists_every_location_grpc_server():
    values = ds.load_yaml(ds.HELM_DIR / "dagster.values.yaml")
    servers = values["dagsterWebserver"]["workspace"]["servers"]
    # The team chart names the Service exactly like the deployment, so host == location name.
    assert servers == [
        {"host": loc["name"], "port": loc["port"], "name": loc["name"]} for loc in LOCATIONS
    ]


def test_one_values_file_per_location_and_no_stray_ones():
    files = {p.name for p in ds.HELM_DIR.glob("*.values.yaml")}
    expected = {f"{loc['name']}.values.yaml" for loc in LOCATIONS} | {"dagster.values.yaml"}
    assert files == expected


@pytest.mark.parametrize("name", list(BY_NAME))
def test_location_values_match_the_registry(name):
    loc = BY_NAME[name]
    deployment, args = _grpc_args(ds.HELM_DIR / f"{name}.values.yaml")
    assert deployment["name"] == name, "Service name = deployment name = location name"
    assert deployment["port"] == loc["port"]
    assert deployment["image"]["repository"] == loc["image"]
    assert args[-2:] == ["-m", loc["module"]]
    assert deployment.get("codeServerArgs") is None, "one way to start the server"


@pytest.mark.parametrize("name", list(BY_NAME))
def test_dockerfile_matches_the_registry(name):
    """Built with the location's build args, the one Dockerfile serves what the chart serves,
    installs the location's package, and runs the registry's `prepare` in its own stage."""
    loc = BY_NAME[name]
    instructions = ds.image_instructions(loc)
    stages = ds.image_stages(loc)
    assert f"prepared-{name}" in stages, f"Dockerfile has no `prepared-{name}` stage"
    final = [i for i in instructions if i.stage == stages[-1]]
    exposed = [i.args for i in final if i.keyword == "EXPOSE"]
    assert exposed == [str(loc["port"])]
    (cmd,) = [ds.exec_form(i.args) for i in final if i.keyword == "CMD"]
    assert cmd == ["dagster", "api", "grpc"]
    env = {}
    for ins in final:
        if ins.keyword == "ENV":
            env.update(ds.parse_env(ins.args))
    # `dagster api grpc` reads these (click envvars): the image's default command serves what
    # the chart's `dagster api grpc -h 0.0.0.0 -p <port> -m <module>` serves.
    assert env["DAGSTER_GRPC_PORT"] == str(loc["port"])
    assert env["DAGSTER_GRPC_HOST"] == "0.0.0.0"
    assert env["DAGSTER_MODULE_NAME"] == loc["module"]
    used = [i for i in instructions if i.stage in stages]
    syncs = [i.args for i in used if i.keyword == "RUN" and "uv sync" in i.args]
    assert syncs, "the image installs with uv sync"
    for sync in syncs:
        assert f"--package {loc['package']} --frozen --no-dev" in sync, sync
        assert "--package shared --extra k8s" in sync, "k8s packages (dagster-postgres/k8s)"
    own = [i.args for i in instructions if i.stage == f"prepared-{name}" and i.keyword == "RUN"]
    if loc["prepare"]:
        # CI's test job runs the same step (matrix.location.prepare) before the tests.
        assert any(r.startswith(loc["prepare"]) for r in own), (
            f"stage prepared-{name} does not RUN the registry's prepare step {loc['prepare']!r}"
        )
    else:
        assert own == [], f"prepared-{name} runs steps the registry does not declare: {own}"


def test_dockerfile_has_a_stage_for_exactly_the_registrys_locations():
    instructions = ds.parse_dockerfile(REPO / LOCATIONS[0]["dockerfile"])
    prepared = {s.removeprefix("prepared-") for s in ds.stage_bases(instructions)}
    prepared = {s for s in prepared if f"prepared-{s}" in ds.stage_bases(instructions)}
    assert prepared == set(BY_NAME)


def test_dockerfile_names_no_location_outside_its_own_stage():
    """No drift between teams: every shared instruction is written with ${LOCATION}/${PORT};
    a location's name or port appears only in its own `prepared-<name>` stage."""
    instructions = ds.parse_dockerfile(REPO / LOCATIONS[0]["dockerfile"])  # no build args
    for ins in instructions:
        own = ins.stage.removeprefix("prepared-") if ins.stage.startswith("prepared-") else None
        text = ins.args if ins.keyword != "FROM" else ins.args.split()[0]
        for loc in LOCATIONS:
            if loc["name"] == own:
                continue
            assert not re.search(rf"\b{loc['name']}\b", text), f"{ins.keyword} {ins.args}"
            assert str(loc["port"]) not in text, f"{ins.keyword} {ins.args}"


@pytest.mark.parametrize("name", list(BY_NAME))
def test_dockerfile_copies_only_its_declared_inputs(name):
    """What the image bakes in is what CI watches: every COPY from the build context in the
    stages of this location's image lies inside the location's image inputs, and no other
    location's folder is copied."""
    loc = BY_NAME[name]
    inputs = plan.image_inputs(loc, REPO)
    others = [plan.workspace_members(REPO)[o["package"]]["dir"] for o in LOCATIONS if o is not loc]
    stages = ds.image_stages(loc)
    for ins in ds.image_instructions(loc):
        if ins.stage not in stages or ins.keyword != "COPY" or "from" in ins.flags:
            continue
        *sources, _dest = ins.args.split()
        for src in sources:
            src = src.rstrip("/")
            assert any(src == i or src.startswith(i + "/") for i in inputs), (
                f"{loc['dockerfile']} copies {src}, which is not among its inputs {inputs}: "
                "add it to extra_inputs in deploy/locations.toml so CI rebuilds on change"
            )
            assert not any(src == o or src.startswith(o + "/") for o in others), src


def test_ci_takes_locations_from_the_registry_only():
    text = WORKFLOW.read_text(encoding="utf-8")
    assert "deploy/plan_images.py" in text
    for field in ("image", "dockerfile", "package", "name"):
        assert f"matrix.location.{field}" in text, field
    for loc in LOCATIONS:
        assert loc["image"] not in text, f"{loc['image']} hard-coded in {WORKFLOW.name}"
    # Every path the planner treats as a pipeline input exists.
    for path in plan.PIPELINE_INPUTS:
        assert (REPO / path).exists(), path


def test_ci_tags_are_the_commit_sha():
    workflow = ds.load_yaml(WORKFLOW)
    build = workflow["jobs"]["build"]
    assert build["env"]["TAG"] == "${{ github.sha }}"
    (push_step,) = [s for s in build["steps"] if "build-push-action" in s.get("uses", "")]
    assert push_step["with"]["tags"] == "${{ env.IMAGE }}:${{ env.TAG }}"
    assert push_step["with"]["context"] == ".", "images are built from the repository root"


# ------------------------------------------------------------------ what a change rebuilds


def _planned(changed: list[str]) -> dict[str, list[str]]:
    result = plan.affected(changed, REPO)
    return {key: [loc["name"] for loc in value] for key, value in result.items()}


def test_every_location_image_depends_on_shared_and_the_lock():
    for loc in LOCATIONS:
        inputs = plan.image_inputs(loc, REPO)
        assert {"shared", "uv.lock", "pyproject.toml", ".dockerignore"} <= set(inputs)


def test_a_change_in_shared_rebuilds_every_location():
    assert _planned(["shared/shared/keys.py"])["build"] == list(BY_NAME)


def test_a_change_in_dbt_rebuilds_only_transformation():
    assert _planned(["dbt/models/staging/stg_users.sql"]) == {
        "build": ["transformation"],
        "test": ["transformation"],
    }


@pytest.mark.parametrize("name", list(BY_NAME))
def test_a_change_in_one_location_rebuilds_only_it(name):
    assert _planned([f"locations/{name}/{name}/definitions.py"]) == {
        "build": [name],
        "test": [name],
    }


def test_a_test_only_change_runs_tests_but_builds_nothing():
    assert _planned(["locations/analytics/tests/test_metrics.py"]) == {
        "build": [],
        "test": ["analytics"],
    }
    assert _planned(["shared/tests/test_keys.py"])["build"] == []


def test_a_change_in_the_dbt_data_tests_rebuilds_transformation():
    """dbt/tests/ holds singular data tests baked into the image's manifest: not test-only."""
    assert _planned(["dbt/tests/assert_event_users_exist_in_dim_users.sql"]) == {
        "build": ["transformation"],
        "test": ["transformation"],
    }


def test_a_change_in_the_dockerfile_rebuilds_every_location():
    assert _planned(["Dockerfile"])["build"] == list(BY_NAME)


def test_unrelated_changes_build_nothing():
    assert _planned(["docs/architecture.md", "cli/data_platform/cli.py"]) == {
        "build": [],
        "test": [],
    }


def test_closure_follows_the_pyprojects(tmp_path):
    """A location that starts depending on another workspace member picks up its folder."""
    files = {
        "pyproject.toml": '[tool.uv.workspace]\nmembers = ["libs/*", "apps/*"]\n',
        "libs/base/pyproject.toml": '[project]\nname = "base"\n',
        "libs/mid/pyproject.toml": '[project]\nname = "mid"\ndependencies = ["base", "requests>=2"]\n',
        "libs/unused/pyproject.toml": '[project]\nname = "unused"\n',
        "apps/app/pyproject.toml": '[project]\nname = "app"\ndependencies = ["mid"]\n',
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text, encoding="utf-8")
    assert plan.member_closure("app", tmp_path) == ["apps/app", "libs/base", "libs/mid"]
