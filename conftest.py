"""Repository-wide pytest setup.

Tests run with ``--import-mode=importlib`` so that every location can have a ``tests/`` folder with
files of the same names. That mode names ``shared/tests/test_x.py`` ``shared.tests.test_x`` and
would register an empty placeholder module ``shared`` for it; importing the real package first
keeps ``shared`` the library.
"""

import shared  # noqa: F401


def pytest_configure(config):
    # A test session started in the background with SIGINT ignored would ignore SIGTERM after the
    # first in-process Dagster run, and so would every process a later test starts (a compute-log
    # capture's `tail -F` then never stops): data_platform.processes.restore_default_interrupt.
    from data_platform.processes import restore_default_interrupt

    restore_default_interrupt()

    # Every catalog the platform opens installs pyiceberg's transaction-metadata cache
    # (shared.iceberg.open_catalog); so does the test session, up front, so that a test that
    # makes its own catalog runs as the platform does whatever ran before it.
    from shared import pyiceberg_fixes

    pyiceberg_fixes.install()

    # dagster-dbt needs dbt's manifest to load the transformation location; a fresh clone has
    # none (dbt/target is git-ignored), so parse the project once before any test imports it.
    from transformation.project import ensure_manifest

    ensure_manifest()
