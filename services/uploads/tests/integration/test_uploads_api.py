"""The Upload Center over REST on the whole stack: files in, steps and counts, reports."""

from __future__ import annotations

import asyncio
import csv
import io
from typing import Any

import pytest

from tests.support.samples import record
from tests.support.stack import Stack

NURSE = "nurse@az-demo.test"
HIS = "az-demo-his"


def csv_bytes(
    rows: list[dict[str, str]], *, sep: str = ";", columns: list[str] | None = None, encoding: str = "utf-8"
) -> bytes:
    cols = columns or list(dict.fromkeys(k for r in rows for k in r))
    out = io.StringIO()
    w = csv.writer(out, delimiter=sep, lineterminator="\r\n")
    w.writerow(cols)
    for r in rows:
        w.writerow([r.get(c, "") for c in cols])
    return out.getvalue().encode(encoding)


async def upload(
    stack: Stack, data: bytes, who: str = HIS, *, raw: bool = False, **params: Any
) -> dict[str, Any]:
    params.setdefault("dcd_code", "ANGIO_HOSP")
    params = {k: (str(v).lower() if isinstance(v, bool) else v) for k, v in params.items()}
    headers = await stack.headers(who)
    if raw:
        r = await stack.client.post(
            "/api/v1/uploads", params=params, content=data, headers={**headers, "Content-Type": "text/csv"}
        )
    else:
        r = await stack.client.post(
            "/api/v1/uploads", params=params, files={"file": ("angio.csv", data, "text/csv")}, headers=headers
        )
    assert r.status_code == 202, r.text
    return r.json()


async def finished(stack: Stack, upload_id: str, who: str = HIS) -> dict[str, Any]:
    headers = await stack.headers(who)
    for _ in range(400):
        r = await stack.client.get(f"/api/v1/uploads/{upload_id}", headers=headers)
        assert r.status_code == 200, r.text
        if r.json()["status"] in ("done", "failed"):
            return r.json()
        await asyncio.sleep(0.05)
    raise AssertionError("upload not finished")


async def report(stack: Stack, upload_id: str, kind: str, who: str = HIS) -> list[dict[str, str]]:
    r = await stack.client.get(
        f"/api/v1/uploads/{upload_id}/reports/{kind}.csv", headers=await stack.headers(who)
    )
    assert r.status_code == 200, r.text
    text = r.content.decode("utf-8-sig")
    return list(csv.DictReader(io.StringIO(text), delimiter=";"))


async def test_valid_rows_are_stored_and_reported(stack: Stack) -> None:
    rows = [record(), record(), record()]
    created = await upload(stack, csv_bytes(rows), autosubmit=True)
    assert created["steps"]["select_file"] == "success"
    done = await finished(stack, created["id"])
    assert done["status"] == "done", done
    assert {f["severity"] for f in done["findings"]} <= {"info"}
    assert done["steps"] == {
        "select_file": "success",
        "validity_check": "success",
        "upload": "success",
        "finalize": "success",
    }
    assert (
        done["counts"]["rows_read"] == 3
        and done["counts"]["created"] == 3
        and done["counts"]["rejected"] == 0
    )
    success = await report(stack, created["id"], "success")
    assert [s["line"] for s in success] == ["2", "3", "4"]
    assert {s["outcome"] for s in success} == {"created"} and all(s["registration_id"] for s in success)
    assert await report(stack, created["id"], "errors") == []


async def test_none_mode_stores_valid_rows_and_reports_the_rest_in_the_users_language(stack: Stack) -> None:
    good, bad = record(), record(MS_HEIGHT="tall")
    created = await upload(stack, csv_bytes([good, bad]), NURSE, validation="none")
    r = await stack.client.get(f"/api/v1/uploads/{created['id']}", headers=await stack.headers(NURSE))
    assert r.status_code == 200
    done = await finished(stack, created["id"], NURSE)
    assert (
        done["counts"]["created"] == 1 and done["counts"]["rejected"] == 1 and done["counts"]["errors"] == 1
    )
    assert done["steps"]["validity_check"] == "errors" and done["steps"]["upload"] == "warnings"
    errors = await report(stack, created["id"], "errors", NURSE)
    assert [(e["line"], e["record"], e["column"], e["value"], e["severity"]) for e in errors] == [
        ("3", "2", "MS_HEIGHT", "tall", "error")
    ]
    fr = await stack.client.post(
        "/api/v1/uploads",
        params={"dcd_code": "ANGIO_HOSP", "lang": "fr"},
        files={"file": ("x.csv", csv_bytes([record(MS_HEIGHT="tall")]), "text/csv")},
        headers=await stack.headers(NURSE),
    )
    errors_fr = await report(stack, (await finished(stack, fr.json()["id"], NURSE))["id"], "errors", NURSE)
    assert errors_fr[0]["message"] and errors_fr[0]["message"] != errors[0]["message"]


async def test_a_rows_own_status_column_wins_over_autosubmit(stack: Stack) -> None:
    """STATUS (HD4DP v2's optional column): draft stays Open, submit is sent whatever the
    upload's autosubmit says, empty follows it, anything else is that row's error."""
    rows = [
        record(STATUS="draft"),
        record(STATUS="Submit"),
        record(STATUS=""),
        record(STATUS="sent"),
    ]
    for autosubmit, empty_status in ((True, "sending"), (False, "open")):
        fresh = [dict(r, IDC_PAT=record()["IDC_PAT"]) for r in rows]
        created = await upload(stack, csv_bytes(fresh), NURSE, autosubmit=autosubmit, lang="nl")
        done = await finished(stack, created["id"], NURSE)
        assert done["counts"]["created"] == 3 and done["counts"]["rejected"] == 1, done["counts"]
        success = await report(stack, created["id"], "success", NURSE)
        assert [(s["line"], s["status"]) for s in success] == [
            ("2", "open"),
            ("3", "sending"),
            ("4", empty_status),
        ]
        errors = await report(stack, created["id"], "errors", NURSE)
        assert [(e["line"], e["column"], e["value"], e["rule"]) for e in errors] == [
            ("5", "STATUS", "sent", "status")
        ]
        assert "draft" in errors[0]["message"] and "instelling" in errors[0]["message"]  # in Dutch


async def test_validate_all_stores_nothing_when_one_row_anywhere_is_wrong(stack: Stack) -> None:
    rows = [record() for _ in range(7)] + [record(CD_PAT_SEX="Q")]
    service = stack.service("uploads")
    service.uploads.settings.batch_rows = 3  # the bad row sits in the last of three batches
    try:
        created = await upload(stack, csv_bytes(rows), validation="validate_all", autosubmit=True)
        done = await finished(stack, created["id"])
    finally:
        service.uploads.settings.batch_rows = 2000
    assert (
        done["nothing_stored"] is True and done["counts"]["created"] == 0 and done["counts"]["rejected"] == 8
    )
    assert done["steps"]["validity_check"] == "errors" and done["steps"]["upload"] == "errors"
    assert await report(stack, created["id"], "success") == []
    again = await upload(stack, csv_bytes(rows[:7]), validation="validate_all")
    done = await finished(stack, again["id"])
    assert done["counts"]["created"] == 7 and done["nothing_stored"] is False


async def test_dry_run_stores_nothing_and_duplicates_are_ignored(stack: Stack) -> None:
    rows = [record(), record()]
    dry = await finished(stack, (await upload(stack, csv_bytes(rows), dry_run=True))["id"])
    assert dry["dry_run"] and dry["nothing_stored"] and dry["counts"]["created"] == 2
    first = await finished(stack, (await upload(stack, csv_bytes(rows)))["id"])
    assert first["counts"]["created"] == 2  # the dry run stored nothing
    second = await finished(stack, (await upload(stack, csv_bytes(rows), ignore_duplicates=True))["id"])
    assert second["counts"]["ignored_duplicate"] == 2 and second["counts"]["created"] == 0


async def test_files_as_they_arrive_comma_cp1252_bom_quoted_newlines_and_raw_body(stack: Stack) -> None:
    rows = [record(), record()]
    comma = await finished(stack, (await upload(stack, csv_bytes(rows, sep=",")))["id"])
    assert comma["file"]["delimiter"] == "," and comma["counts"]["created"] == 2
    assert any(f["rule"] == "comma_separator" for f in comma["findings"])
    latin = [record(), record()]
    data = csv_bytes(latin, columns=[*latin[0], "TX_AUTHOR"]).replace(b"\r\n", b"\r\n", 1)
    data = data.decode().replace(";\r\n", ";Ren\u00e9e L\u00e9onard\r\n").encode("cp1252")
    cp = await finished(stack, (await upload(stack, data))["id"])
    assert cp["file"]["encoding"] == "cp1252" and any(f["rule"] == "encoding_cp1252" for f in cp["findings"])
    assert cp["counts"]["created"] == 2, cp
    bom = b"\xef\xbb\xbf" + csv_bytes([record()])
    done = await finished(stack, (await upload(stack, bom, raw=True, filename="bom.csv"))["id"])
    assert done["file"]["bom"] is True and done["counts"]["created"] == 1 and done["filename"] == "bom.csv"
    # A quoted field holding the separator and a newline: the next record's line moves on.
    quoted = [record(MS_HEIGHT="not\nnumber;"), record(MS_WEIGHT="heavy")]
    done = await finished(stack, (await upload(stack, csv_bytes(quoted)))["id"])
    errors = await report(stack, done["id"], "errors")
    assert [(e["line"], e["column"]) for e in errors] == [("2", "MS_HEIGHT"), ("4", "MS_WEIGHT")]


async def test_spreadsheet_damage_is_named_and_formulas_never_reach_reports(stack: Stack) -> None:
    serial = record(DT_HOSPZ="45678")
    loose = record(DT_HOSPZ="1/02/2025")
    zero = record(IDC_PAT="1234567890")
    sci = record(IDC_PAT="8.5E+10")
    formula = record(CD_DISCH_DEST="=cmd|' /C calc'!A0")
    created = await upload(stack, csv_bytes([serial, loose, zero, sci, formula]))
    done = await finished(stack, created["id"])
    assert done["counts"]["created"] == 0 and done["counts"]["rejected"] == 5
    errors = await report(stack, created["id"], "errors")
    assert [(e["line"], e["column"], e["rule"]) for e in errors] == [
        ("2", "DT_HOSPZ", "excel_date_serial"),
        ("3", "DT_HOSPZ", "excel_date_format"),
        ("4", "IDC_PAT", "leading_zero_dropped"),
        ("5", "IDC_PAT", "excel_scientific"),
        ("6", "CD_DISCH_DEST", "formula_like"),
    ]
    assert "21/01/2025" in errors[0]["message"]
    assert errors[2]["value"] == "*" * 10  # personal data masked
    raw = (
        await stack.client.get(
            f"/api/v1/uploads/{created['id']}/reports/errors.csv", headers=await stack.headers(HIS)
        )
    ).text
    assert "'=cmd" in raw and ";=cmd" not in raw


async def test_belgian_decimal_commas_are_read_and_named(stack: Stack) -> None:
    rows = [record(MS_WEIGHT="72,5"), record(MS_WEIGHT="80.5")]
    created = await upload(stack, csv_bytes(rows), HIS, lang="fr")
    done = await finished(stack, created["id"])
    assert done["counts"]["created"] == 2 and done["counts"]["rejected"] == 0
    assert done["steps"]["validity_check"] == "warnings"
    h = await stack.headers(HIS)
    fr = (await stack.client.get(f"/api/v1/uploads/{created['id']}", params={"lang": "fr"}, headers=h)).json()
    [noted] = [f for f in fr["findings"] if f["rule"] == "decimal_comma"]
    assert noted["severity"] == "warning" and noted["column"] == "MS_WEIGHT" and noted["line"] == 2
    assert "MS_WEIGHT" in noted["message"] and "virgule" in noted["message"]
    [first, _] = await report(stack, created["id"], "success")
    r = await stack.client.get(
        f"/api/v1/registrations/{first['registration_id']}", headers=await stack.headers(HIS)
    )
    assert r.json()["values"]["MS_WEIGHT"] == "72.5"  # decimals are kept as written, with a point


async def test_bad_files_get_a_clear_report_and_store_nothing(stack: Stack) -> None:
    header_only = ";".join(record()).encode() + b"\r\n"
    cases = {
        b"": "empty_file",
        header_only: "header_only",
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR": "binary",
        b"IDC_PAT\tDT_HOSPZ\r\n1\t2\r\n": "wrong_separator",
        ";".join(f"COL_{i}" for i in range(10_000)).encode() + b"\r\n": "too_many_columns",
        csv_bytes([record()], columns=[*record(), "NOT_A_FIELD"]): "unknown_column",
    }
    for data, rule in cases.items():
        done = await finished(stack, (await upload(stack, data))["id"])
        assert done["status"] == "done" and done["nothing_stored"] is True, (rule, done)
        assert done["steps"]["validity_check"] == "errors" and done["steps"]["upload"] == "errors"
        assert rule in [f["rule"] for f in done["findings"]], (rule, done["findings"])
        assert done["counts"]["created"] == 0
        errors = await report(stack, done["id"], "errors")
        assert errors[0]["rule"] == rule and errors[0]["message"]


async def test_truncated_last_line_rejects_that_record_only(stack: Stack) -> None:
    rows = [record(), record()]
    data = csv_bytes(rows)[:-40]  # cut in the middle of the last record, no line end
    done = await finished(stack, (await upload(stack, data))["id"])
    assert done["counts"]["created"] == 1 and done["counts"]["rejected"] == 1
    errors = await report(stack, done["id"], "errors")
    assert [(e["line"], e["rule"]) for e in errors] == [("3", "truncated")]


async def test_a_file_over_the_limit_is_refused_while_streaming(stack: Stack) -> None:
    service = stack.service("uploads")
    before = (await stack.client.get("/api/v1/uploads", headers=await stack.headers(HIS))).json()["total"]
    service.uploads.settings.max_upload_bytes = 64 * 1024
    sent = 0

    async def endless() -> Any:
        nonlocal sent
        yield b"IDC_PAT;DT_HOSPZ\r\n"
        for _ in range(10_000):  # 640 MB if it were all read
            sent += 1
            yield b"x" * 65536

    try:
        r = await stack.client.post(
            "/api/v1/uploads",
            params={"dcd_code": "ANGIO_HOSP"},
            content=endless(),
            headers={**(await stack.headers(HIS)), "Content-Type": "text/csv"},
        )
    finally:
        service.uploads.settings.max_upload_bytes = 1024**3
    assert r.status_code == 413 and r.json()["type"].endswith("upload-too-large")
    assert sent < 10
    after = (await stack.client.get("/api/v1/uploads", headers=await stack.headers(HIS))).json()["total"]
    assert after == before


async def test_settings_per_registry_apply_and_can_be_overridden(stack: Stack) -> None:
    headers = await stack.headers(NURSE)
    url = "/api/v1/upload-settings/az-demo/HDBP0012"
    r = await stack.client.get(url, headers=headers)
    assert r.status_code == 200 and r.json()["validation"] == "none"
    body = {
        "conflict_mode": "business_key",
        "conflict_master": "stored",
        "ignore_duplicates": False,
        "autosubmit": True,
        "validation": "validate_all",
    }
    r = await stack.client.put(url, json=body, headers=headers)
    assert r.status_code == 200 and r.json()["validation"] == "validate_all"
    try:
        created = await upload(stack, csv_bytes([record()]), NURSE)
        assert (
            created["settings"]["validation"] == "validate_all" and created["settings"]["autosubmit"] is True
        )
        overridden = await upload(stack, csv_bytes([record()]), NURSE, validation="save_on_validations")
        assert overridden["settings"]["validation"] == "save_on_validations"
        assert overridden["settings"]["conflict_master"] == "stored"
    finally:
        await stack.client.put(url, json={}, headers=headers)
    await finished(stack, created["id"], NURSE)
    await finished(stack, overridden["id"], NURSE)


async def test_progress_as_server_sent_events(stack: Stack) -> None:
    created = await upload(stack, csv_bytes([record()]))
    events = []
    async with stack.client.stream(
        "GET", f"/api/v1/uploads/{created['id']}/events", headers=await stack.headers(HIS)
    ) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        async for line in r.aiter_lines():
            if line.startswith("event: "):
                events.append(line[7:])
    assert events[0] == "progress" and events[-1] == "done"


async def test_idempotency_key_takes_a_file_once(stack: Stack) -> None:
    headers = {**(await stack.headers(HIS)), "Idempotency-Key": "upload-once-1"}
    data = csv_bytes([record()])
    first = await stack.client.post(
        "/api/v1/uploads", params={"dcd_code": "ANGIO_HOSP"}, files={"file": ("a.csv", data)}, headers=headers
    )
    again = await stack.client.post(
        "/api/v1/uploads", params={"dcd_code": "ANGIO_HOSP"}, files={"file": ("a.csv", data)}, headers=headers
    )
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"] and again.headers["Idempotent-Replayed"] == "true"
    await finished(stack, first.json()["id"])


async def test_other_organisations_and_anonymous_callers_are_refused(stack: Stack) -> None:
    created = await upload(stack, csv_bytes([record()]))
    await finished(stack, created["id"])
    lab = await stack.headers("lab-demo-lims")
    uid = created["id"]
    for path in (
        f"/api/v1/uploads/{uid}",
        f"/api/v1/uploads/{uid}/events",
        f"/api/v1/uploads/{uid}/reports/errors.csv",
        f"/api/v1/uploads/{uid}/reports/success.csv",
    ):
        assert (await stack.client.get(path, headers=lab)).status_code == 404, path
        assert (await stack.client.get(path)).status_code == 401, path
    listed = (await stack.client.get("/api/v1/uploads", headers=lab)).json()
    assert uid not in [u["id"] for u in listed["items"]]
    assert (
        await stack.client.get("/api/v1/uploads", params={"organisation_id": "az-demo"}, headers=lab)
    ).status_code == 403
    assert (await stack.client.get("/api/v1/uploads")).status_code == 401
    r = await stack.client.post(
        "/api/v1/uploads",
        params={"dcd_code": "ANGIO_HOSP", "organisation_id": "az-demo"},
        files={"file": ("a.csv", b"x")},
        headers=lab,
    )
    assert r.status_code == 403
    assert (
        await stack.client.post(
            "/api/v1/uploads", params={"dcd_code": "ANGIO_HOSP"}, files={"file": ("a.csv", b"x")}
        )
    ).status_code == 401
    settings = "/api/v1/upload-settings/az-demo/HDBP0012"
    assert (await stack.client.get(settings, headers=lab)).status_code == 404
    assert (await stack.client.put(settings, json={}, headers=lab)).status_code == 404
    assert (await stack.client.get(settings)).status_code == 401
    assert (await stack.client.put(settings, json={})).status_code == 401
    manager = await stack.headers("manager@az-demo.test")  # a member without registration rights
    assert (await stack.client.get(f"/api/v1/uploads/{uid}", headers=manager)).status_code == 404
    assert (await stack.client.put(settings, json={}, headers=manager)).status_code == 404
    r = await stack.client.post(
        "/api/v1/uploads", params={"dcd_code": "ANGIO_HOSP"}, files={"file": ("a.csv", b"x")}, headers=manager
    )
    assert r.status_code == 403


def _multipart(filename: bytes, data: bytes) -> tuple[bytes, str]:
    """A multipart body with ``filename`` exactly as given (httpx would escape it)."""
    boundary = "hdhubtestboundary"
    body = (
        f"--{boundary}\r\n".encode()
        + b'Content-Disposition: form-data; name="file"; filename="'
        + filename
        + b'"\r\nContent-Type: text/csv\r\n\r\n'
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("a\x00b.csv", "control"),
        ("a\x1b[2Jb.csv", "control"),
        ("invoice\u202evsc.exe", "invisible"),
        ("NUL", "device"),
        ("com1.csv", "device"),
        ("data.csv/", "trailing_separator"),
        ("..\\..\\data.csv", "folder"),
        ("what?.csv", "reserved"),
        ("a" * 300 + ".csv", "too_long"),
        ("patient_85040216932.csv", "ssin"),
    ],
)
async def test_a_multipart_file_name_breaking_a_rule_is_refused_and_nothing_stored(
    stack: Stack, name: str, rule: str
) -> None:
    headers = await stack.headers(HIS)
    before = (await stack.client.get("/api/v1/uploads", headers=headers)).json()["total"]
    body, content_type = _multipart(name.encode(), csv_bytes([record()]))
    r = await stack.client.post(
        "/api/v1/uploads",
        params={"dcd_code": "ANGIO_HOSP"},
        content=body,
        headers={**headers, "Content-Type": content_type, "Accept-Language": "nl"},
    )
    assert r.status_code == 422 and r.json()["type"] == "/problems/bad-file-name", r.text
    assert r.json()["errors"][0]["field"] == "filename" and r.json()["errors"][0]["rule"] == rule
    assert "bestandsnaam" in r.json()["detail"].lower()
    assert name not in r.text or rule == "device"  # the device rule lists NUL, COM1... itself
    after = (await stack.client.get("/api/v1/uploads", headers=headers)).json()["total"]
    assert after == before


@pytest.mark.parametrize(
    ("name", "rule"), [("a\r\nb.csv", "control"), ("AUX.csv", "device"), ("x.csv ", "trailing_dot_or_space")]
)
async def test_a_raw_body_file_name_breaking_a_rule_is_refused(stack: Stack, name: str, rule: str) -> None:
    r = await stack.client.post(
        "/api/v1/uploads",
        params={"dcd_code": "ANGIO_HOSP", "filename": name},
        content=csv_bytes([record()]),
        headers={**(await stack.headers(HIS)), "Content-Type": "text/csv"},
    )
    assert r.status_code == 422 and r.json()["errors"][0]["rule"] == rule


async def test_file_names_in_any_script_are_kept_in_nfc(stack: Stack) -> None:
    body, content_type = _multipart("cafe\u0301 отчёт.csv".encode(), csv_bytes([record()]))
    r = await stack.client.post(
        "/api/v1/uploads",
        params={"dcd_code": "ANGIO_HOSP", "dry_run": "true"},
        content=body,
        headers={**(await stack.headers(HIS)), "Content-Type": content_type},
    )
    assert r.status_code == 202, r.text
    assert r.json()["filename"] == "café отчёт.csv"
    raw = await upload(stack, csv_bytes([record()]), raw=True, filename="café.csv", dry_run=True)
    assert raw["filename"] == "café.csv"
