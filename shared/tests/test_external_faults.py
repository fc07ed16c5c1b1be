"""External faults: object storage and the catalog unreachable or failing.

The object store here is a real S3-compatible server process (``rclone serve s3``, the stand-in
for Garage) that the tests stop and restart.
"""

from __future__ import annotations

import http.server
import threading
import time

import pyarrow as pa
import pytest
from pyiceberg.catalog import load_catalog

from shared.iceberg import IcebergError, open_catalog, read_table, write_table
from shared.resources import ObjectStoreError, filesystem_for, object_store_errors
from shared.settings import load_settings
from tests.s3_server import RcloneS3Server, free_port

pytestmark = pytest.mark.slow

KEY, SECRET = "GKtestaccess", "test-secret-for-rclone"  # pragma: allowlist secret


@pytest.fixture
def s3(tmp_path):
    (tmp_path / "s3" / "lakehouse").mkdir(parents=True)
    with RcloneS3Server(tmp_path / "s3", KEY, SECRET) as server:
        yield server


PROD_ENV = {
    "DATA_PLATFORM_ENV": "prod",
    "ICEBERG_REST_URI": "http://127.0.0.1:1",
    "GARAGE_S3_ENDPOINT": "http://127.0.0.1:1",
}


def prod_settings(endpoint: str, catalog_uri: str = "http://127.0.0.1:1/catalog"):
    return load_settings(
        {
            "DATA_PLATFORM_ENV": "prod",
            "ICEBERG_REST_URI": catalog_uri,
            "GARAGE_S3_ENDPOINT": endpoint,
            "GARAGE_ACCESS_KEY_ID": KEY,
            "GARAGE_SECRET_ACCESS_KEY": SECRET,
        }
    )


def test_object_store_survives_a_restart_and_fails_clearly_while_down(s3):
    settings = prod_settings(s3.endpoint)
    fs = filesystem_for(settings)
    fs.pipe("lakehouse/landing/batch-1.json", b"{}")
    assert fs.ls("lakehouse/landing") == ["lakehouse/landing/batch-1.json"]

    s3.stop()
    started = time.monotonic()
    with pytest.raises(ObjectStoreError) as err:
        with object_store_errors(settings, "list lakehouse/landing"):
            filesystem_for(settings).ls("lakehouse/landing", refresh=True)
    assert s3.endpoint in str(err.value)
    assert SECRET not in str(err.value)
    assert time.monotonic() - started < 120, "retries must be bounded"

    s3.start()
    fs = filesystem_for(settings)
    fs.pipe("lakehouse/landing/batch-2.json", b"{}")
    assert len(fs.ls("lakehouse/landing", refresh=True)) == 2


def test_iceberg_tables_on_s3_storage(s3, tmp_path):
    """The Garage path of the write helpers: data and metadata files over the S3 API."""
    catalog = load_catalog(
        "s3test",
        type="sql",
        uri=f"sqlite:///{tmp_path / 'catalog.db'}",
        warehouse="s3://lakehouse/warehouse",
        **{
            "s3.endpoint": s3.endpoint,
            "s3.access-key-id": KEY,
            "s3.secret-access-key": SECRET,
            "s3.region": "garage",
            "py-io-impl": load_settings(PROD_ENV).catalog_properties()["py-io-impl"],
        },
    )
    data = pa.table({"id": pa.array([1, 2, 3], pa.int64())})
    result = write_table(catalog, "raw.users", data)
    assert result.metadata_location.startswith("s3://lakehouse/warehouse/raw")
    assert result.row_count == 3
    assert sorted(read_table(catalog, "raw.users")["id"].to_pylist()) == [1, 2, 3]
    assert list((tmp_path / "s3" / "lakehouse" / "warehouse" / "raw").iterdir())


def test_unreachable_catalog_is_retried_then_named():
    port = free_port()  # nothing listens here
    settings = prod_settings("http://127.0.0.1:1", catalog_uri=f"http://127.0.0.1:{port}")
    with pytest.raises(IcebergError) as err:
        open_catalog(settings, attempts=3)
    message = str(err.value)
    assert f"http://127.0.0.1:{port}" in message
    assert "attempt 3/3" in message
    assert SECRET not in message


class _Flaky(http.server.BaseHTTPRequestHandler):
    """A REST catalog stand-in that answers 503 twice, then a valid /v1/config."""

    calls = 0

    def do_GET(self):  # noqa: N802
        type(self).calls += 1
        if type(self).calls <= 2:
            self.send_response(503)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"error": {"message": "busy", "type": "X", "code": 503}}')
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"defaults": {}, "overrides": {}}')

    def log_message(self, *args):
        pass


def test_catalog_answering_5xx_is_retried():
    server = http.server.HTTPServer(("127.0.0.1", 0), _Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        uri = f"http://127.0.0.1:{server.server_address[1]}"
        catalog = open_catalog(prod_settings("http://127.0.0.1:1", catalog_uri=uri), attempts=4)
        assert catalog is not None
        assert _Flaky.calls == 3
    finally:
        server.shutdown()
