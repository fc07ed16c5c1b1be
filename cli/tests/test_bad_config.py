"""Bad configuration is one line naming the variable and what is allowed (issue 16 item 10)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CLI = str(Path(sys.executable).with_name("data-platform"))


def demo(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DATA_PLATFORM_")}
    clean.setdefault("DATA_PLATFORM_HOME", str(tmp_path / "home"))
    return subprocess.run(
        [CLI, "demo"], env={**clean, **env}, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("DATA_PLATFORM_STANDIN_DAYS", "0", "DATA_PLATFORM_STANDIN_DAYS='0' is not allowed"),
        (
            "DATA_PLATFORM_STANDIN_DAYS",
            "99999999999999999999",
            "DATA_PLATFORM_STANDIN_DAYS='99999999999999999999' is not allowed",
        ),
        ("DATA_PLATFORM_ENV", "staging", "DATA_PLATFORM_ENV='staging' is not a mode"),
    ],
)
def test_a_bad_setting_is_one_line(tmp_path, name, value, expected):
    result = demo(tmp_path, **{name: value})
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr


@pytest.mark.parametrize("where", ["file", "under_file"])
def test_a_home_that_is_a_file_is_one_line(tmp_path, where):
    a_file = tmp_path / "file"
    a_file.write_text("not a folder")
    home = a_file if where == "file" else a_file / "home"
    result = demo(tmp_path, DATA_PLATFORM_HOME=str(home))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "DATA_PLATFORM_HOME=" in lines[0], result.stderr
    assert "is not usable" in lines[0] and "Allowed: a folder" in lines[0]


def _tables(home: Path) -> dict[str, dict]:
    import json

    out = subprocess.run(
        [CLI, "tables", "--json"],
        env={**os.environ, "DATA_PLATFORM_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    return {t["identifier"]: t for t in map(json.loads, out.splitlines())}


@pytest.mark.slow
def test_a_full_disk_is_one_line_and_the_next_run_completes(tmp_path):
    """A real full disk (a small tmpfs): the demo says so in one line, every table stays at its
    last complete commit, and once there is room again the next demo completes the day."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"needs a tmpfs mount (root): {mounted.stderr.decode().strip()}")
    try:
        home = disk / "home"
        small = {
            "DATA_PLATFORM_HOME": str(home),
            "DATA_PLATFORM_STANDIN_USERS": "40",
            "DATA_PLATFORM_STANDIN_EVENTS_PER_DAY": "100",
        }
        first = demo(tmp_path, **small, DATA_PLATFORM_STANDIN_DAYS="2",
                     DATA_PLATFORM_STANDIN_END="2026-01-02")  # fmt: skip
        assert first.returncode == 0, first.stderr
        before = _tables(home)

        # Leave almost nothing free, then ask for one more day.
        free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
        (disk / "filler").write_bytes(b"\0" * max(free - 16 * 1024, 0))
        more = {
            **small,
            "DATA_PLATFORM_STANDIN_DAYS": "3",
            "DATA_PLATFORM_STANDIN_END": "2026-01-03",
        }
        full = demo(tmp_path, **more)
        assert full.returncode != 0
        assert "Traceback" not in full.stderr, full.stderr
        lines = full.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("demo failed:"), full.stderr
        (disk / "filler").unlink()

        # Every table is still readable at a complete commit: the one it had, or a later one.
        during = _tables(home)
        assert set(before) <= set(during)
        for identifier, table in during.items():
            assert table["snapshot_id"] is not None, identifier

        again = demo(tmp_path, **more)
        assert again.returncode == 0, again.stderr
        after = _tables(home)
        assert after["raw.events"]["row_count"] == 300
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
