"""Which location images (and test environments) a change affects.

CI (.github/workflows/images.yml) runs this to build the matrix of images to build and push and of
locations to test. It follows the uv workspace's dependency graph, read from the pyprojects, so
the rule "a change in shared/ rebuilds every location" is derived, not hard-coded:

- a location's IMAGE inputs: its own member folder, the folders of every workspace member it
  depends on (transitively; shared/ for all), uv.lock, the root pyproject.toml, .dockerignore, the
  Dockerfile and its `extra_inputs` from deploy/locations.toml (dbt/ for transformation). The
  Python packages' test folders (`<member>/tests`) are not image inputs: .dockerignore keeps
  exactly those out of the image. Other folders named `tests` are inputs: dbt/tests/ holds the
  dbt project's singular data tests, which the transformation image's manifest carries.
- a location's TEST inputs: the same, tests included.
- a change to the pipeline itself (this file, deploy/locations.toml, the workflow) affects all.

Standard library only (Python >= 3.11), so CI runs it before installing anything:

    python3 deploy/plan_images.py --base <sha> --head <sha>     # from git diff
    python3 deploy/plan_images.py --all                         # everything
    python3 deploy/plan_images.py --changed shared/shared/keys.py dbt/models/x.sql

Prints {"build": [...], "test": [...]} (lists of location entries) and, under GitHub Actions,
writes `build=<json>` and `test=<json>` to $GITHUB_OUTPUT.

It also prints the one deploy command of a pushed image, with the pinned chart version and the
image's real tag (a full commit sha; anything else is refused):

    python3 deploy/plan_images.py --deploy-command ingestion --tag <40-hex commit sha>
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
REGISTRY = "deploy/locations.toml"
# Files every image is built from, besides the workspace members.
COMMON_IMAGE_INPUTS = ("pyproject.toml", "uv.lock", ".dockerignore")
# Changing how images are planned or built affects every location.
PIPELINE_INPUTS = (REGISTRY, "deploy/plan_images.py", ".github/workflows/images.yml")
_NULL_SHA = re.compile(r"^0*$")
_COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")
NAMESPACE = "dagster"


def load_registry(root: Path = REPO_ROOT) -> dict:
    """The parsed deploy/locations.toml (`image_registry`, `locations`)."""
    with open(root / REGISTRY, "rb") as f:
        return tomllib.load(f)


def load_locations(root: Path = REPO_ROOT) -> list[dict]:
    """The location entries of the registry, in file order, each with the shared `dockerfile`."""
    registry = load_registry(root)
    return [{**loc, "dockerfile": registry["dockerfile"]} for loc in registry["locations"]]


def chart_version(root: Path = REPO_ROOT) -> str:
    """The pinned version of Dagster's Helm charts (= the Dagster version in uv.lock)."""
    return load_registry(root)["dagster_chart_version"]


def deploy_command(name: str, tag: str, root: Path = REPO_ROOT) -> str:
    """The helm command that deploys image tag `tag` of location `name`: pinned chart version,
    the location's values file, the real tag. Refuses anything but a full commit sha (CI's tags),
    so no printed command can deploy a placeholder."""
    if not _COMMIT_SHA.match(tag or ""):
        raise ValueError(f"image tag must be the full commit sha CI pushed, not {tag!r}")
    if name not in {loc["name"] for loc in load_locations(root)}:
        raise ValueError(f"{name!r} is not a location of {REGISTRY}")
    return (
        f"helm upgrade --install {name} dagster/dagster-user-deployments"
        f" --version {chart_version(root)} -n {NAMESPACE}"
        f" -f deploy/helm/{name}.values.yaml"
        f" --set-string 'deployments[0].image.tag={tag}'"
    )


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if not match:
        raise ValueError(f"cannot read a package name from requirement {requirement!r}")
    return _normalize(match.group(1))


def workspace_members(root: Path = REPO_ROOT) -> dict[str, dict]:
    """uv workspace members: normalized package name -> {"dir": relative folder, "deps": [...]}.

    Reads `[tool.uv.workspace].members` (globs) of the root pyproject, then each member's
    `[project]` dependencies and optional dependencies.
    """
    with open(root / "pyproject.toml", "rb") as f:
        root_project = tomllib.load(f)
    patterns = root_project["tool"]["uv"]["workspace"]["members"]
    members: dict[str, dict] = {}
    for pattern in patterns:
        for folder in sorted(root.glob(pattern)):
            pyproject = folder / "pyproject.toml"
            if not pyproject.is_file():
                continue
            with open(pyproject, "rb") as f:
                project = tomllib.load(f)["project"]
            deps = [_requirement_name(r) for r in project.get("dependencies", [])]
            for extra in project.get("optional-dependencies", {}).values():
                deps += [_requirement_name(r) for r in extra]
            members[_normalize(project["name"])] = {
                "dir": folder.relative_to(root).as_posix(),
                "deps": deps,
            }
    return members


def member_closure(package: str, root: Path = REPO_ROOT) -> list[str]:
    """Folders of `package` and of every workspace member it depends on, transitively."""
    members = workspace_members(root)
    start = _normalize(package)
    if start not in members:
        raise KeyError(f"{package!r} is not a member of the uv workspace ({sorted(members)})")
    seen: list[str] = []
    stack = [start]
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.append(name)
        stack.extend(dep for dep in members[name]["deps"] if dep in members)
    # Every image also syncs `--package shared --extra k8s`.
    if "shared" in members and "shared" not in seen:
        seen.append("shared")
    return sorted(members[name]["dir"] for name in seen)


def image_inputs(location: dict, root: Path = REPO_ROOT) -> list[str]:
    """Paths (files or folders, repo-relative) whose change must rebuild this location's image."""
    inputs = set(member_closure(location["package"], root))
    inputs.update(COMMON_IMAGE_INPUTS)
    inputs.add(location["dockerfile"])
    inputs.update(location.get("extra_inputs", []))
    inputs.update(PIPELINE_INPUTS)
    return sorted(inputs)


def python_test_dirs(location: dict, root: Path = REPO_ROOT) -> list[str]:
    """The `tests` folders of the workspace members in the location's closure: the only test
    folders that .dockerignore keeps out of the image (`shared/tests`, `locations/*/tests`)."""
    return [f"{folder}/tests" for folder in member_closure(location["package"], root)]


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")


def affected(changed: list[str], root: Path = REPO_ROOT) -> dict[str, list[dict]]:
    """{"build": locations whose image inputs changed, "test": locations whose tests may change}."""
    build, test = [], []
    for location in load_locations(root):
        inputs = image_inputs(location, root)
        test_dirs = python_test_dirs(location, root)
        hits = [p for p in changed if any(_under(p, i) for i in inputs)]
        if hits:
            test.append(location)
            if any(not any(_under(p, t) for t in test_dirs) for p in hits):
                build.append(location)
    return {"build": build, "test": test}


def changed_files(base: str | None, head: str, root: Path = REPO_ROOT) -> list[str] | None:
    """Files changed between base and head, or None when there is no usable base (then: all)."""
    if not base or _NULL_SHA.match(base):
        return None
    result = subprocess.run(
        ["git", "diff", "--name-only", f"{base}...{head}"],
        cwd=root,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        print(
            f"git diff {base}...{head} failed, planning every location: {result.stderr.strip()}",
            file=sys.stderr,
        )
        return None
    return [line for line in result.stdout.splitlines() if line.strip()]


def _matrix_entry(location: dict) -> dict:
    keys = ("name", "package", "module", "port", "image", "dockerfile", "prepare")
    return {k: location.get(k, "") for k in keys}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", help="base commit (PR base or the push's `before`)")
    parser.add_argument("--head", default="HEAD", help="head commit (default HEAD)")
    parser.add_argument("--all", action="store_true", help="plan every location")
    parser.add_argument("--changed", nargs="*", help="changed paths instead of git diff")
    parser.add_argument("--deploy-command", metavar="LOCATION", help="print its helm command")
    parser.add_argument("--tag", help="with --deploy-command: the image tag (full commit sha)")
    args = parser.parse_args(argv)

    if args.deploy_command:
        try:
            print(deploy_command(args.deploy_command, args.tag or ""))
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return 0

    if args.all:
        changed = None
    elif args.changed is not None:
        changed = args.changed
    else:
        changed = changed_files(args.base, args.head)
    if changed is None:
        everything = load_locations()
        plan = {"build": everything, "test": everything}
    else:
        plan = affected(changed)
    out = {key: [_matrix_entry(loc) for loc in value] for key, value in plan.items()}
    print(json.dumps(out, indent=2))
    github_output = os.environ.get("GITHUB_OUTPUT")
    if github_output:
        with open(github_output, "a", encoding="utf-8") as f:
            for key, value in out.items():
                f.write(f"{key}={json.dumps(value)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
