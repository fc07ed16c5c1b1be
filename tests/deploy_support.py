"""Helpers of the deploy tests (tests/test_deploy_*.py): Helm-style merging, the location
registry, the build context (.dockerignore), Dockerfile reading. Plain functions, no test in here."""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
HELM_DIR = REPO / "deploy" / "helm"
# In CI the repository is cloned next to a read-only copy of shared/ (reference data); GitHub CI
# has none (tests that need it skip, naming it, and the workflow renders with helm instead).
HELM_REFERENCE = REPO.parent / "shared" / "reference" / "helm"


def load_plan_module():
    """deploy/plan_images.py (the registry reader CI uses), imported by path."""
    name = "deploy_plan_images"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "deploy" / "plan_images.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def locations() -> list[dict]:
    """Entries of deploy/locations.toml."""
    return load_plan_module().load_locations(REPO)


def load_yaml(path: Path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def helm_merge(defaults, overrides):
    """Merge values over chart defaults the way Helm coalesces them.

    Maps merge recursively; lists and scalars replace; a null in the overrides deletes the key
    (Helm's way to drop a default).
    """
    if not (isinstance(defaults, dict) and isinstance(overrides, dict)):
        return copy.deepcopy(overrides)
    merged = copy.deepcopy(defaults)
    for key, value in overrides.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict):
            # Nested nulls delete too, whether or not the defaults have the map.
            base = merged.get(key)
            merged[key] = helm_merge(base if isinstance(base, dict) else {}, value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


# ------------------------------------------------------------- build context (.dockerignore)


def dockerignore_patterns(path: Path = REPO / ".dockerignore") -> list[str]:
    """The patterns of a .dockerignore, comments and blank lines dropped."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def build_context(root: Path = REPO, dockerignore: Path | None = None) -> set[str]:
    """Repo-relative files the Docker client sends as the build context of `root`.

    Docker's own ignore semantics, from the `docker` package (its `exclude_paths` implements the
    client's .dockerignore rules, `!` exceptions and `**` included): nothing hand-written here."""
    from docker.utils.build import exclude_paths

    patterns = dockerignore_patterns(dockerignore or root / ".dockerignore")
    return {p for p in exclude_paths(str(root), patterns) if (root / p).is_file()}


# ------------------------------------------------------------------------------- Dockerfiles


@dataclass
class Instruction:
    stage: str
    keyword: str
    args: str
    flags: dict[str, str]


def _logical_lines(text: str) -> list[str]:
    lines, current = [], ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue  # comment inside a continued instruction
        if stripped.endswith("\\"):
            current += stripped[:-1].rstrip() + " "
            continue
        current += stripped
        lines.append(current)
        current = ""
    if current:
        lines.append(current)
    return lines


def parse_dockerfile(path: Path, build_args: dict[str, str] | None = None) -> list[Instruction]:
    """Instructions with their stage name (`FROM image AS name`), flags split from arguments.

    `${NAME}` / `$NAME` of the given build args are substituted everywhere (as BuildKit does for
    declared ARGs); instructions before the first FROM belong to stage ""."""
    build_args = build_args or {}

    def substitute(text: str) -> str:
        return re.sub(
            r"\$\{(\w+)\}|\$(\w+)",
            lambda m: build_args.get(m.group(1) or m.group(2), m.group(0)),
            text,
        )

    instructions, stage = [], ""
    for line in _logical_lines(path.read_text(encoding="utf-8")):
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        rest = substitute(rest)
        flags = {}
        while rest.startswith("--"):
            flag, _, rest = rest.partition(" ")
            name, _, value = flag[2:].partition("=")
            flags[name] = value
            rest = rest.strip()
        if keyword == "FROM":
            words = rest.split()
            stage = words[2] if len(words) >= 3 and words[1].upper() == "AS" else words[0]
        instructions.append(Instruction(stage, keyword, rest.strip(), flags))
    return instructions


def stage_bases(instructions: list[Instruction]) -> dict[str, str]:
    """stage name -> what its FROM names (another stage or an image)."""
    return {i.stage: i.args.split()[0] for i in instructions if i.keyword == "FROM"}


def stage_lineage(instructions: list[Instruction], stage: str) -> list[str]:
    """`stage` and the stages it is built FROM, oldest first (build, prepared-x, prepared)."""
    bases = stage_bases(instructions)
    chain = [stage]
    while bases.get(chain[-1]) in bases:
        chain.append(bases[chain[-1]])
    return chain[::-1]


def location_build_args(location: dict) -> dict[str, str]:
    """The build args CI passes for a location (.github/workflows/images.yml)."""
    return {"LOCATION": location["name"], "PORT": str(location["port"])}


def image_instructions(location: dict) -> list[Instruction]:
    """The Dockerfile's instructions with the build args CI passes for `location`."""
    return parse_dockerfile(REPO / location["dockerfile"], location_build_args(location))


def image_stages(location: dict) -> list[str]:
    """Stages that make the location's image: the ones whose /app the runtime stage copies
    (build -> prepared-<name> -> prepared), then the runtime stage itself."""
    instructions = image_instructions(location)
    final = [i.stage for i in instructions if i.keyword == "FROM"][-1]
    sources = {i.flags["from"] for i in instructions if i.stage == final and "from" in i.flags}
    assert len(sources) == 1, f"the runtime stage copies from one stage, not {sources}"
    return stage_lineage(instructions, sources.pop()) + [final]


def parse_env(args: str) -> dict[str, str]:
    """`ENV A=1 B="two"` (the key=value form)."""
    return dict(word.split("=", 1) for word in shlex.split(args))


def exec_form(args: str) -> list[str] | None:
    """The JSON array of an exec-form CMD/ENTRYPOINT, else None."""
    try:
        value = json.loads(args)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, list) else None


# ------------------------------------------------------------- the real charts (Helm engine)

# The real Dagster chart with its subcharts, in the reference copy beside the repository.
CHART_DIR = HELM_REFERENCE / "charts" / "dagster-1.12.19"
USER_CHART_DIR = CHART_DIR / "charts" / "dagster-user-deployments"
# Stands in for the sha CI pushes (a 40-hex commit sha, as deploy_command demands).
EXAMPLE_SHA = (
    "0123456789abcdef0123456789abcdef01234567"  # pragma: allowlist secret (a fake commit sha)
)
EXAMPLE_PG_HOST = "dagster.abc123.eu-west-1.rds.example.com"


def locked_version(package: str) -> str:
    """The version of `package` in uv.lock."""
    import tomllib

    with open(REPO / "uv.lock", "rb") as f:
        lock = tomllib.load(f)
    (version,) = {p["version"] for p in lock["package"] if p["name"] == package}
    return version


def set_string(values: dict, expression: str, *, typed: bool = False) -> dict:
    """Apply one `helm --set-string path=value` (`typed`: `--set`, where true/false/numbers are
    not strings) to values read from `-f` files, in place.

    Helm's CLI parses --set INTO the values of the -f files (strvals.ParseIntoString), so
    `deployments[0].image.tag=x` changes one key of an existing list entry. helm-python-sdk's
    parse_set_string returns a standalone map instead (merging it would replace the whole list),
    hence these few lines: `a.b[0].c=value` paths, string values, as the README's commands use."""
    path, _, value = expression.partition("=")
    if typed:
        value = yaml.safe_load(value)
    steps: list[str | int] = []
    for part in path.split("."):
        name, *indexes = re.split(r"\[(\d+)\]", part)
        if name:
            steps.append(name)
        steps.extend(int(i) for i in indexes if i != "")
    node = values
    for step, following in zip(steps, steps[1:], strict=False):
        if isinstance(step, int):
            node = node[step]
        else:
            if not isinstance(node.get(step), (dict, list)):
                node[step] = [] if isinstance(following, int) else {}
            node = node[step]
    node[steps[-1]] = value
    return values


def release_values(release: str, *sets: str) -> dict:
    """A release's values file with the --set-string flags its documented command passes
    (deploy/README.md): the database host for the platform, the image tag for a team; then
    `sets`, as `--set` flags."""
    values = load_yaml(HELM_DIR / f"{release}.values.yaml")
    defaults = (
        [f"postgresql.postgresqlHost={EXAMPLE_PG_HOST}"]
        if release == "dagster"
        else [f"deployments[0].image.tag={EXAMPLE_SHA}"]
    )
    for expression in defaults:
        set_string(values, expression)
    for expression in sets:
        set_string(values, expression, typed=True)
    return values


def render(release: str, values: dict, namespace: str = "dagster") -> list[dict]:
    """Render a release with the real chart through Helm's own template engine (the Go SDK,
    offline, values validated against the chart's schema as `helm template` does); every
    Kubernetes object, each with its template path under `__template`."""
    import helm_python

    chart_dir = CHART_DIR if release == "dagster" else USER_CHART_DIR
    chart = helm_python.Chart.load(str(chart_dir))
    rendered = chart.render(values, name=release, namespace=namespace)
    objects = []
    for template, text in sorted(rendered.items()):
        if template.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                doc["__template"] = template
                objects.append(doc)
    return objects


def find(objects: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [
        o
        for o in objects
        if o.get("kind") == kind and (name is None or o["metadata"]["name"] == name)
    ]
