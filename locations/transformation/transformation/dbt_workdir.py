"""dbt's working files per home and per run (issue 16 item 11).

dagster-dbt gives each invocation its own target folder, but under the repository's
``dbt/target``, shared by every home and every concurrent run, so a full disk there (or one
home's state) broke runs of all of them. Here each run's target folder is under its own home,
``<home>/dbt/target/<run>``, and dbt's partial-parse state is kept per home
(``<home>/dbt/partial_parse.msgpack``): copied into the run's folder before dbt starts (so
partial parsing still works from one run of a home to the next; the project's prepared state
when a home has none yet) and saved back, atomically, after a run that succeeded. (dbt runs in
the step's process and parses once per process, ``transformation.dbt_run``: the state matters
for that first parse.)
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: dbt's partial-parse state file (the name dbt and dagster-dbt use).
PARTIAL_PARSE = "partial_parse.msgpack"


def home_dbt_dir(home: Path) -> Path:
    """dbt's working folder of a home."""
    return home / "dbt"


def run_target_path(home: Path, run_id: str, name: str) -> Path:
    """A target folder of its own for one dbt invocation of run ``run_id`` (``name``: the op)."""
    return home_dbt_dir(home) / "target" / f"{run_id}-{name}-{uuid.uuid4().hex[:7]}"


@contextmanager
def run_target(
    home: Path, run_id: str, name: str, prepared_state: Path | None = None
) -> Iterator[Path]:
    """The run's target folder, with the home's partial-parse state in it (else
    ``prepared_state``, the project's, if it exists); the state dbt leaves is saved for the
    home's next run, and the folder removed, when the body succeeds (a failed run's folder is
    kept: its ``dbt.log`` and ``run_results.json`` say what happened)."""
    target = run_target_path(home, run_id, name)
    target.mkdir(parents=True, exist_ok=True)
    saved = home_dbt_dir(home) / PARTIAL_PARSE
    if saved.exists():
        shutil.copyfile(saved, target / PARTIAL_PARSE)
    elif prepared_state is not None and prepared_state.exists():
        shutil.copyfile(prepared_state, target / PARTIAL_PARSE)
    yield target
    produced = target / PARTIAL_PARSE
    if produced.exists():
        # Another run of the home may save at the same time: each writes its own temporary
        # file and renames it over the state, so the state is always one run's whole file.
        partial = saved.with_name(f".{PARTIAL_PARSE}.{uuid.uuid4().hex}")
        shutil.copyfile(produced, partial)
        os.replace(partial, saved)
    shutil.rmtree(target, ignore_errors=True)
