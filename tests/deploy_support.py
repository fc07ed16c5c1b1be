"""Helpers of the deploy tests (tests/test_deploy_*.py): Helm-style merging, the location
registry, Dockerfile and .dockerignore reading. Plain functions, no test in here."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import shlex
import sys
from dataclasses import dataclass, field
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


# ---------------------------------------------------------------- .dockerignore (moby semantics)


def _pattern_regex(pattern: str) -> re.Pattern:
    """Go filepath.Match-style pattern (plus `**`) as a regex over a slash path."""
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            if i < len(pattern) and pattern[i] == "/":
                out = out[:-2] + "(?:.*/)?"
                i += 1
            continue
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        else:
            out += re.escape(c)
        i += 1
    return re.compile(f"^{out}$")


@dataclass
class DockerIgnore:
    """The rules of a .dockerignore: the last matching rule decides; a rule that matches a parent
    folder matches everything inside it."""

    rules: list[tuple[bool, re.Pattern]] = field(default_factory=list)

    @classmethod
    def read(cls, path: Path) -> DockerIgnore:
        rules = []
        for raw in path.read_text(encoding="utf-8").splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            pattern = line[1:].strip() if negate else line
            pattern = pattern.strip("/").removeprefix("./")
            rules.append((negate, _pattern_regex(pattern)))
        return cls(rules)

    def excluded(self, rel_path: str) -> bool:
        parts = rel_path.strip("/").split("/")
        candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        excluded = False
        for negate, regex in self.rules:
            if any(regex.match(c) for c in candidates):
                excluded = not negate
        return excluded

    def context_files(self, root: Path) -> list[str]:
        """Repo-relative files that reach the build context.

        Walks like the Docker client, but skips folders that are excluded and that no `!` rule
        could re-include (.git, .venv, ...), which keeps this fast."""
        negations = [regex.pattern for negate, regex in self.rules if negate]

        def may_reinclude(folder: str) -> bool:
            inside = "^" + re.escape(folder + "/")
            wildcard = ("^[^/]*", "^.*", "^(?:.*/)?")
            return any(p.startswith(inside) or p.startswith(wildcard) for p in negations)

        files = []
        for dirpath, dirnames, filenames in os.walk(root):
            rel_dir = Path(dirpath).relative_to(root).as_posix()
            rel_dir = "" if rel_dir == "." else rel_dir
            keep = []
            for d in dirnames:
                rel = f"{rel_dir}/{d}" if rel_dir else d
                if d == ".git" or (self.excluded(rel) and not may_reinclude(rel)):
                    continue
                keep.append(d)
            dirnames[:] = keep
            for name in filenames:
                rel = f"{rel_dir}/{name}" if rel_dir else name
                if not self.excluded(rel):
                    files.append(rel)
        return sorted(files)


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


def parse_dockerfile(path: Path) -> list[Instruction]:
    """Instructions with their stage name (`FROM image AS name`), flags split from arguments."""
    instructions, stage = [], ""
    for line in _logical_lines(path.read_text(encoding="utf-8")):
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
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
