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
# In CI the repository is cloned next to a read-only copy of shared/ (reference data).
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
        elif key in merged and isinstance(merged[key], dict) and isinstance(value, dict):
            merged[key] = helm_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def chart_reference(chart: str) -> tuple[dict, dict]:
    """(default values, values schema) of `chart` from the reference copies."""
    defaults = load_yaml(HELM_REFERENCE / f"{chart}.values.yaml")
    with open(HELM_REFERENCE / f"{chart}.values.schema.json", encoding="utf-8") as f:
        schema = json.load(f)
    return defaults, schema


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
