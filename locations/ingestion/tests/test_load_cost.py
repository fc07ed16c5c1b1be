"""Loading the definitions imports none of the heavy run-time libraries (docs/benchmarks.md)."""

import subprocess
import sys


def test_definitions_load_without_pyarrow_pyiceberg_numpy():
    code = (
        "import sys, ingestion.definitions as d; "
        "assert d.defs is not None; "
        "print(sorted(m for m in ('pyarrow', 'pyiceberg', 'numpy', 'fsspec', 'requests') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
