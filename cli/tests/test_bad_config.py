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
