"""Fail when a credential is committed: runs detect-secrets over every tracked file.

Test fixtures that plant fake credentials mark the line with ``# pragma: allowlist secret``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Lock files are full of package hashes, which the entropy detectors take for keys.
EXCLUDE = r"(^|/)uv\.lock$"


def main() -> int:
    out = subprocess.run(
        [sys.executable, "-m", "detect_secrets", "scan", "--exclude-files", EXCLUDE],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    results = json.loads(out.stdout)["results"]
    if not results:
        print("scan_secrets: no credentials found in tracked files")
        return 0
    for path, findings in sorted(results.items()):
        for f in findings:
            print(f"scan_secrets: {path}:{f['line_number']}: {f['type']}", file=sys.stderr)
    print(
        "scan_secrets: remove the credential, or mark a deliberate test value with "
        "'# pragma: allowlist secret'",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
