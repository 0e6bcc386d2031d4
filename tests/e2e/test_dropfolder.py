"""`make run`'s drop folder: a file dropped in an organisation's folder on disk is taken
in by the running platform, archived, and answered per row in RESULTS."""

from __future__ import annotations

import csv
import io
import time

import pytest

from services.uploads.tests.integration.test_uploads_api import csv_bytes
from tests.e2e.conftest import Platform
from tests.support.samples import record

pytestmark = pytest.mark.e2e
NAME = "HD_DCD_submcsv_HDBP0012_ANGIO_HOSP_1.0.0_20261122.csv"


def test_file_dropped_on_disk_is_uploaded_and_answered(platform: Platform) -> None:
    folder = platform.data_dir / "dropfolder" / "az-demo"
    assert folder.is_dir()  # made by the demo seed
    (folder / f".{NAME}.part").write_bytes(csv_bytes([record(), record(CD_PAT_CONSENT="no")]))
    (folder / f".{NAME}.part").rename(folder / NAME)  # as a careful sender would
    results = folder / "RESULTS" / f"{NAME[:-4]}_RESULTS.csv"
    deadline = time.monotonic() + 60
    while not results.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert results.exists(), platform.log.read_text()[-3000:]
    rows = list(csv.DictReader(io.StringIO(results.read_text("utf-8-sig")), delimiter=";"))
    assert [(r["line"], r["result"]) for r in rows] == [("2", "Success"), ("3", "Error")]
    assert (folder / "ARCHIVE" / NAME).exists() and not (folder / NAME).exists()
    token = platform.token("az-demo-his", "demo-his-secret")
    with platform.client(token) as c:
        items = c.get("/api/v1/uploads").json()["items"]
    assert any(u["filename"] == NAME and u["source"] == "dropfolder" for u in items)
