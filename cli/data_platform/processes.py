"""Starting and stopping Dagster's server processes (``dagster dev``, ``dagster-webserver``) for
the benchmark and the tests: one place for the launch and teardown rules both need."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

# A background process started by a non-interactive shell inherits an ignored SIGINT, and then
# ignores SIGTERM too (dagster dev): restore the default before exec so it stops when signalled.
_LAUNCHER = (
    "import signal, sys, os; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execvp(sys.argv[1], sys.argv[1:])"
)


def restore_default_interrupt() -> None:
    """Give SIGINT Python's default handler when this process started with it ignored, as a
    command started in the background by a non-interactive shell does (a CI script, ``cmd &``).

    Why: every in-process Dagster run (``materialize``, ``execute_run``) ends by giving SIGTERM
    the disposition SIGINT has (``dagster._utils.interrupts.capture_interrupts``). With SIGINT
    ignored, the process then ignores SIGTERM between runs, and so does every process it starts
    (an ignored signal survives exec): a compute-log capture's ``tail -F`` does not stop when
    Dagster terminates it (the capture fails after 30 s per stream, the tails stay behind), and
    ``kill`` does not stop the command. A handler, unlike an ignored signal, is reset to the
    default in the processes it starts. Call it in the main thread before the first run.
    """
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process_group(proc: subprocess.Popen, grace: float = 30) -> None:
    """SIGTERM the process's group (the server and the code servers it spawned), SIGKILL after
    ``grace`` seconds; always reaps the process."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=grace)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


@contextmanager
def dagster_process(
    command: str,
    args: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    log: Path,
) -> Iterator[subprocess.Popen]:
    """Run ``<venv>/bin/<command> <args>`` in its own process group, output to ``log``; stopped
    with its whole group when the block ends (also on error)."""
    exe = str(Path(sys.executable).parent / command)
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", _LAUNCHER, exe, *args],
            cwd=cwd,
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        stop_process_group(proc)
