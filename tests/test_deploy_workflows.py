"""The GitHub Actions workflows validate offline against the GitHub workflow schema."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import deploy_support as ds  # noqa: E402

WORKFLOWS = sorted((ds.REPO / ".github" / "workflows").glob("*.yml"))


def _check_jsonschema() -> str:
    found = shutil.which("check-jsonschema") or str(
        Path(sys.executable).parent / "check-jsonschema"
    )
    if not Path(found).exists():
        pytest.fail("check-jsonschema is not installed: it is in the root dev dependency group")
    return found


def test_there_are_workflows():
    assert {p.name for p in WORKFLOWS} >= {"images.yml", "ci.yml"}


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_validates_against_the_github_workflow_schema(workflow):
    proc = subprocess.run(
        [_check_jsonschema(), "--builtin-schema", "vendor.github-workflows", str(workflow)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_schema_check_rejects_a_broken_workflow(tmp_path):
    """The check has teeth: a job without runs-on/steps is rejected."""
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  build:\n    name: nothing\n", encoding="utf-8")
    proc = subprocess.run(
        [_check_jsonschema(), "--builtin-schema", "vendor.github-workflows", str(broken)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0


def test_images_workflow_pushes_only_outside_pull_requests():
    workflow = ds.load_yaml(ds.REPO / ".github" / "workflows" / "images.yml")
    build = workflow["jobs"]["build"]
    assert build["env"]["PUSH"] == "${{ github.event_name != 'pull_request' }}"
    assert build["permissions"] == {"contents": "read", "packages": "write"}
    assert workflow["permissions"] == {"contents": "read"}, "least privilege by default"
    assert build["needs"] == ["plan", "test"], "images are built after their tests"


def test_ci_renders_the_pinned_chart_with_helm_and_validates_with_kubeconform():
    """GitHub CI has no ../shared: its `helm` job renders the four releases with the real helm
    from Dagster's chart repository at the pinned version, checks that a release without the
    database host or the image tag is refused, and validates every manifest (kubeconform)."""
    workflow = ds.load_yaml(ds.REPO / ".github" / "workflows" / "ci.yml")
    job = workflow["jobs"]["helm"]
    steps = job["steps"]
    assert any(s.get("uses", "").startswith("azure/setup-helm@") for s in steps)
    script = "\n".join(s.get("run", "") for s in steps)
    assert "dagster_chart_version" in script and '"$CHART_VERSION" = "$LOCKED"' in script
    assert "helm repo add dagster https://dagster-io.github.io/helm" in script
    assert script.count('--version "$CHART_VERSION"') >= 5, "all releases and the refusals"
    assert "deploy/locations.toml" in script, "the team releases come from the registry"
    assert "kubeconform -strict" in script.replace("\n", " ")
    assert "rendered/*.yaml" in script
