"""Exports on the whole stack: a CSV Upload Manager asks, the registrations worker writes
the file into the object store, a link that expires downloads it. The CSV goes back
through the real Upload Center and changes nothing; XLSX and Parquet read back typed;
formulas are neutralised; other roles and other organisations are refused."""

from __future__ import annotations

import asyncio
import csv
import io
from typing import Any

import pytest

from hdhub.common.config import platform
from hdhub.registrations.catalogue.versions import VersionState
from tests.support.samples import record
from tests.support.stack import Stack
from tests.support.tokens import bearer
from tests.support.workbooks import HD, build_workbook

OWN, FOREIGN = "az-demo", "lab-demo"
NURSE, HIS = "nurse@az-demo.test", "az-demo-his"
FORMULA_NAME = '=HYPERLINK("http://x.test","click")'
APOSTROPHE_NAME = "'@not a formula"


async def exporter(stack: Stack, org: str = OWN) -> dict[str, str]:
    return await bearer(stack, {org: ["csv_upload_manager"]}, username=f"exports@{org}.test")


async def seed(stack: Stack, dcd: str) -> list[dict[str, Any]]:
    """Three registrations: one draft with a formula-like free text, one submitted, one
    draft whose text starts with an apostrophe before a formula character."""
    headers = await stack.headers(NURSE)
    made = []
    for name, submit in ((FORMULA_NAME, False), ("Plain", True), (APOSTROPHE_NAME, False)):
        values = record(dcd, CD_INDICATION="other", TX_INDICATION_OTHER=name)
        r = await stack.client.post(
            "/api/v1/registrations",
            json={"organisation_id": OWN, "dcd": dcd, "values": values, "submit": submit},
            headers=headers,
        )
        assert r.status_code in (200, 201, 202), r.text
        made.append(r.json())
    return made


async def spoil(stack: Stack, registration_id: str, dcd: str) -> None:
    """Values its types cannot hold in a stored draft, as "save on validations" keeps them:
    a word for each number, an impossible date, a time of 25 o'clock."""
    from hdhub.registrations.engine.dcd import FieldType
    from hdhub.registrations.store import Registration

    service = stack.service("registrations")
    entry = await service.exports.catalogue.get(dcd, None)
    bad = {FieldType.INTEGER: "twelve", FieldType.DECIMAL: "1,5", FieldType.DATE: "2024-02-30"}
    bad |= {FieldType.TIME: "25:00", FieldType.DATETIME: "yesterday"}
    fields = [f for f in entry.definition.fields if f.type in bad]
    assert {FieldType.INTEGER, FieldType.DECIMAL, FieldType.DATE} <= {f.type for f in fields}
    spoilt = {name: bad[f.type] for f in fields for name in f.flat_names}
    async with service.db.system_session() as session:
        row = await session.get(Registration, registration_id)
        assert row is not None
        row.values = {**row.values, **spoilt}


async def export(stack: Stack, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    r = await stack.client.post("/api/v1/exports", json={"organisation_id": OWN, **body}, headers=headers)
    assert r.status_code == 202, r.text
    for _ in range(400):
        got = await stack.client.get(f"/api/v1/exports/{r.json()['id']}", headers=headers)
        assert got.status_code == 200, got.text
        if got.json()["state"] in ("ready", "failed"):
            assert got.json()["state"] == "ready", got.json()
            return got.json()
        await asyncio.sleep(0.05)
    raise AssertionError("export not ready")


async def download(stack: Stack, done: dict[str, Any]) -> bytes:
    r = await stack.client.get(done["download_url"])  # the link needs no token
    assert r.status_code == 200, r.text
    return r.content


async def registrations(stack: Stack, dcd: str) -> dict[str, dict[str, Any]]:
    headers = await stack.headers(NURSE)
    out: dict[str, dict[str, Any]] = {}
    offset = 0
    while True:
        r = await stack.client.get(
            "/api/v1/registrations",
            params={"organisation_id": OWN, "dcd": dcd, "limit": 500, "offset": offset},
            headers=headers,
        )
        assert r.status_code == 200, r.text
        page = r.json()
        for item in page["items"]:
            full = await stack.client.get(f"/api/v1/registrations/{item['id']}", headers=headers)
            out[item["id"]] = full.json()
        offset += len(page["items"])
        if offset >= page["total"] or not page["items"]:
            return out


async def test_csv_export_uploaded_again_changes_nothing(stack: Stack) -> None:
    from services.uploads.tests.integration.test_uploads_api import finished, upload

    dcd = "ANGIO_HOSP_FFR"
    await seed(stack, dcd)
    before = await registrations(stack, dcd)
    done = await export(stack, await exporter(stack), dcd_code=dcd, format="csv")
    assert done["rows_done"] == done["rows_total"] == len(before) >= 3
    data = await download(stack, done)
    assert data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig")), delimiter=";"))
    template = await stack.client.get(
        f"/api/v1/dcds/{dcd}/versions/latest/template.csv", headers=await stack.headers(NURSE)
    )
    assert list(rows[0]) == template.content.decode("utf-8-sig").splitlines()[0].split(";")
    names = {r["TX_INDICATION_OTHER"] for r in rows}
    # Neutralised: no cell begins with a formula character; the apostrophe'd one gets one more.
    assert "'" + FORMULA_NAME in names and "'" + APOSTROPHE_NAME in names and "Plain" in names
    assert all(not c.startswith(("=", "+", "-", "@")) for r in rows for c in r.values()), rows
    assert {r["STATUS"] for r in rows} == {"draft", "submit"}
    assert all(r["DT_HOSPZ"].count("/") == 2 for r in rows)

    created = await upload(stack, data, dcd_code=dcd)
    result = await finished(stack, created["id"])
    assert result["status"] == "done", result
    counts = result["counts"]
    assert counts["created"] == counts["updated"] == counts["rejected"] == 0, counts
    assert counts["ignored_duplicate"] == len(before), counts
    after = await registrations(stack, dcd)
    # The same values; drafts not even touched (the delivery worker moves submitted ones on).
    assert {k: r["values"] for k, r in after.items()} == {k: r["values"] for k, r in before.items()}
    drafts = [k for k, r in before.items() if r["status"] == "open"]
    assert drafts and all(after[k]["version"] == before[k]["version"] for k in drafts)


@pytest.mark.parametrize("fmt", ["xlsx", "parquet"])
async def test_analyst_formats_hold_typed_current_values(stack: Stack, fmt: str) -> None:
    dcd = "ANGIO_HOSP_PCI"
    await seed(stack, dcd)
    stored = await registrations(stack, dcd)
    done = await export(stack, await exporter(stack), dcd_code=dcd, format=fmt)
    data = await download(stack, done)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(io.BytesIO(data))
        rows = table.to_pylist()
    else:
        from openpyxl import load_workbook

        sheet = load_workbook(io.BytesIO(data), read_only=True).worksheets[0]
        lines = list(sheet.iter_rows(values_only=True))
        rows = [dict(zip(lines[0], line, strict=True)) for line in lines[1:]]
    assert {r["registration_id"] for r in rows} == set(stored)
    for row in rows:
        reg = stored[row["registration_id"]]
        # (the delivery worker may move a submission on from sending meanwhile)
        assert row["status"] == reg["status"] or {row["status"], reg["status"]} <= {"sending", "submitted"}
        assert row["DT_HOSPZ"].isoformat()[:10] == reg["values"]["DT_HOSPZ"]
        assert row["MS_HEIGHT"] == reg["values"].get("MS_HEIGHT")
        name = reg["values"].get("TX_INDICATION_OTHER")
        if name is None:  # another test's registration of this DCD: no text to neutralise
            assert row["TX_INDICATION_OTHER"] is None
            continue
        if fmt == "parquet":
            assert row["TX_INDICATION_OTHER"] == name
            assert row["CD_RISK_FACTORS"] == reg["values"]["CD_RISK_FACTORS"]
        else:  # a spreadsheet never runs a cell: formula-like text gets a leading '
            assert row["TX_INDICATION_OTHER"] == (name if name == "Plain" else "'" + name)


async def test_only_the_organisations_csv_upload_manager_exports(stack: Stack) -> None:
    own = await exporter(stack)
    done = await export(stack, own, dcd_code="ANGIO_HOSP", format="csv", status=["submitted"])
    body = {"organisation_id": OWN, "dcd_code": "ANGIO_HOSP"}
    foreign = await exporter(stack, FOREIGN)
    for role in ("registrant", "reader", "manager", "nippin_manager", "certificate_editor"):
        headers = await bearer(stack, {OWN: [role]}, username=f"{role}@az-demo.test")
        assert (await stack.client.post("/api/v1/exports", json=body, headers=headers)).status_code == 403
        assert (await stack.client.get(f"/api/v1/exports/{done['id']}", headers=headers)).status_code == 403
    assert (await stack.client.post("/api/v1/exports", json=body, headers=foreign)).status_code == 403
    assert (await stack.client.get(f"/api/v1/exports/{done['id']}", headers=foreign)).status_code == 404
    listed = (await stack.client.get("/api/v1/exports", headers=foreign)).json()
    assert done["id"] not in {e["id"] for e in listed["items"]}
    r = await stack.client.get("/api/v1/exports", params={"organisation_id": OWN}, headers=foreign)
    assert r.status_code == 403
    page = (await stack.client.get("/api/v1/exports", headers=own)).json()
    assert set(page) == {"items", "total", "limit", "offset", "next"} and page["total"] >= 1


async def test_a_csv_upload_manager_exports_only_the_registries_granted(stack: Stack) -> None:
    ngs_only = await bearer(
        stack, {OWN: ["csv_upload_manager"]}, username="ngs-exports@az-demo.test", registries=["HDBP0257"]
    )
    body = {"organisation_id": OWN, "dcd_code": "ANGIO_HOSP", "format": "csv"}
    r = await stack.client.post("/api/v1/exports", json=body, headers=ngs_only)
    assert r.status_code == 403, r.text
    assert "HDBP0012" in r.text and r.json()["type"].endswith("registry-not-granted")
    r = await stack.client.post("/api/v1/exports", json={**body, "dcd_code": "NGS"}, headers=ngs_only)
    assert r.status_code == 202, r.text


async def test_an_export_of_a_registry_not_granted_is_unknown_to_the_csv_upload_manager(
    stack: Stack,
) -> None:
    """Of the same organisation, with the same role, but granted the NGS registry only: an
    export of ANGIO (and its SSINs) is neither listed, read, linked nor audited to them: 404,
    as docs/exports.md says; their own registry's exports they see."""
    own = await exporter(stack)
    done = await export(stack, own, dcd_code="ANGIO_HOSP", format="csv")
    ngs_only = await bearer(
        stack, {OWN: ["csv_upload_manager"]}, username="ngs-reader@az-demo.test", registries=["HDBP0257"]
    )
    for path in (f"/api/v1/exports/{done['id']}", f"/api/v1/exports/{done['id']}/events"):
        r = await stack.client.get(path, headers=ngs_only)
        assert r.status_code == 404, (path, r.text)
        assert "download_url" not in r.text
    for query in ("", f"?organisation_id={OWN}"):
        r = await stack.client.get(f"/api/v1/exports{query}", headers=ngs_only)
        assert r.status_code == 200 and done["id"] not in r.text, r.text
    theirs = await export(stack, ngs_only, dcd_code="NGS", format="csv")
    listed = (await stack.client.get("/api/v1/exports", headers=ngs_only)).json()
    ids = {e["id"] for e in listed["items"]}
    assert theirs["id"] in ids and done["id"] not in ids
    assert {e["dcd_code"] for e in listed["items"]} == {"NGS"} and listed["total"] == len(ids), listed
    events = (await stack.client.get(f"/api/v1/exports/{done['id']}/events", headers=own)).json()["items"]
    assert "ngs-reader@az-demo.test" not in {e["actor"] for e in events}


async def test_each_export_is_audited_and_its_link_expires(stack: Stack) -> None:
    own = await exporter(stack)
    done = await export(stack, own, dcd_code="ANGIO_HOSP", format="csv")
    await download(stack, done)
    token = done["download_url"].rsplit("/", 1)[1]
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    r = await stack.client.get(f"/api/v1/export-files/{tampered}")
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    exports = stack.service("registrations").exports
    saved = exports.link_minutes
    exports.link_minutes = -1.0
    try:
        expired = (await stack.client.get(f"/api/v1/exports/{done['id']}", headers=own)).json()
    finally:
        exports.link_minutes = saved
    r = await stack.client.get(expired["download_url"])
    assert r.status_code == 410 and r.json()["type"].endswith("export-link-expired")
    events = (await stack.client.get(f"/api/v1/exports/{done['id']}/events", headers=own)).json()["items"]
    actions = [e["action"] for e in events]
    assert actions[:2] == ["export.requested", "export.ready"]
    assert "export.downloaded" in actions and actions.count("export.link_issued") == 2
    assert events[0]["actor"] == "exports@az-demo.test"


async def test_the_download_link_is_on_the_installations_address_never_the_host_header(
    stack: Stack,
) -> None:
    own = await exporter(stack)
    done = await export(stack, own, dcd_code="ANGIO_HOSP", format="csv")
    r = await stack.client.get(f"/api/v1/exports/{done['id']}", headers={**own, "Host": "attacker.example"})
    assert r.status_code == 200, r.text
    url = r.json()["download_url"]
    assert url.startswith(f"{platform().public_url.rstrip('/')}/api/v1/export-files/"), url
    assert "attacker.example" not in url
    await download(stack, r.json())


async def test_an_expiry_with_a_leading_zero_is_no_link_of_ours(stack: Stack) -> None:
    own = await exporter(stack)
    done = await export(stack, own, dcd_code="ANGIO_HOSP", format="csv")
    export_id, expires, signature = done["download_url"].rsplit("/", 1)[1].split(".")
    for padded in (f"0{expires}", f"00{expires}"):
        r = await stack.client.get(f"/api/v1/export-files/{export_id}.{padded}.{signature}")
        assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    await download(stack, done)  # the link as issued still works


def draft_test_workbook(version: str) -> bytes:
    return build_workbook(
        [{"type": "text", "name": "TX_KEY", "label::en": "Case number", "required": "yes"}],
        [{"list_name": "yes_no", "name": "Y", "label::en": "Yes"}],
        settings={"form_title": "Export draft test", "form_id": "EXPORT_DRAFT", "version": version},
        hd={**HD, "project_code": "HDBP0902", "dcd_code": "EXPORT_DRAFT", "dcd_number": 902},
    )


async def test_a_draft_version_is_refused_as_an_unknown_version(stack: Stack) -> None:
    # A registry of this test's own: a draft of the console's DCD would be the catalogue
    # tests' business (they share the stack).
    catalogue = stack.service("registrations").exports.catalogue
    for version, state in (("1.0.0", VersionState.PUBLISHED), ("1.0.7", VersionState.DRAFT)):
        await catalogue.import_workbook(draft_test_workbook(version), actor="operator", state=state)
    own = await exporter(stack)
    body = {"organisation_id": OWN, "dcd_code": "EXPORT_DRAFT", "format": "csv"}
    draft = await stack.client.post("/api/v1/exports", json={**body, "version": "1.0.7"}, headers=own)
    unknown = await stack.client.post("/api/v1/exports", json={**body, "version": "1.0.99"}, headers=own)
    assert draft.status_code == unknown.status_code == 404, draft.text
    same = {k: v for k, v in unknown.json().items() if k != "trace_id"}
    assert {k: v for k, v in draft.json().items() if k != "trace_id"} == {
        k: v.replace("1.0.99", "1.0.7") if isinstance(v, str) else v for k, v in same.items()
    }


async def test_bad_filters_are_named_not_500(stack: Stack) -> None:
    own = await exporter(stack)
    r = await stack.client.post(
        "/api/v1/exports",
        json={
            "organisation_id": OWN,
            "dcd_code": "ANGIO_HOSP",
            "created_from": "2026-02-01T00:00:00Z",
            "created_to": "2026-01-01T00:00:00Z",
        },
        headers=own,
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "created_to"
    r = await stack.client.post(
        "/api/v1/exports", json={"organisation_id": OWN, "dcd_code": "NO_SUCH_DCD"}, headers=own
    )
    assert r.status_code == 404
    # Outside the calendar once in UTC, or a bare number (no ISO 8601): refused at once, not
    # a job failing on every retry.
    for field, value in (
        ("created_from", "0001-01-01T00:00:00+01:00"),
        ("updated_to", "9999-12-31T23:59:59-14:00"),
        ("created_to", 5),
        ("updated_from", "1700000000"),
    ):
        body = {"organisation_id": OWN, "dcd_code": "ANGIO_HOSP", field: value}
        r = await stack.client.post("/api/v1/exports", json=body, headers=own)
        assert r.status_code == 422 and field in str(r.json()["errors"]), (field, value, r.text)


async def test_a_draft_holding_what_its_types_cannot_is_listed_as_stored_by_v2_and_fhir(
    stack: Stack,
) -> None:
    """A draft saved with its errors ("twelve", 2024-02-30, 25:00) is given back as typed by
    the hospital systems' reads: v2's list in its dd/mm/yyyy form where it can, FHIR as a
    string answer; never a 500 for the whole list."""
    dcd = "ANGIO_HOSP_FFR_PCI"
    made = await seed(stack, dcd)
    await spoil(stack, made[0]["id"], dcd)
    his = await stack.headers(HIS)
    r = await stack.client.get(
        f"/proxy/api/dcd/submit?organization-id={OWN}&dcd-id={dcd}&dcd-version-id=latest", headers=his
    )
    assert r.status_code == 200, r.text
    assert "2024-02-30" in r.text and "twelve" in r.text
    r = await stack.client.get(f"/fhir/QuestionnaireResponse/{made[0]['id']}", headers=his)
    assert r.status_code == 200, r.text
    strings = {a.get("valueString") for a in _fhir_answers(r.json()["item"])}
    assert {"twelve", "2024-02-30", "25:00"} & strings, strings


def _fhir_answers(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for item in items:
        out += item.get("answer", [])
        out += _fhir_answers(item.get("item", []))
        for answer in item.get("answer", []):
            out += _fhir_answers(answer.get("item", []))
    return out


async def test_copy_writes_the_same_csv_as_python(stack: Stack) -> None:
    """On PostgreSQL the CSV's cells come from SQL (COPY); the Python writer is its twin."""
    if stack.backend != "postgres":
        pytest.skip("COPY is PostgreSQL's")
    dcd = "ANGIO_HOSP_FFR_PCI"
    await seed(stack, dcd)
    done = await export(stack, await exporter(stack), dcd_code=dcd, format="csv")
    by_copy = await download(stack, done)
    exports = stack.service("registrations").exports
    from hdhub.registrations.exports.service import Filters, _Progress
    from hdhub.registrations.store import Export

    async with exports.db.system_session() as session:
        row = await session.get(Export, done["id"])
        session.expunge(row)
    entry = await exports.catalogue.get(dcd, done["version"])
    progress = _Progress(exports, row.id, 0, None, None)
    by_rows = b"".join([c async for c in exports._csv_by_rows(row, entry, Filters(), progress)])
    assert by_copy == by_rows


async def test_parquet_from_copy_equals_parquet_from_rows(stack: Stack) -> None:
    """On PostgreSQL Parquet is parsed by Arrow from COPY's typed text; the row path is its twin."""
    if stack.backend != "postgres":
        pytest.skip("COPY is PostgreSQL's")
    import pyarrow.parquet as pq

    dcd = "ANGIO_HOSP_FFR_PCI"
    made = await seed(stack, dcd)
    await spoil(stack, made[0]["id"], dcd)
    done = await export(stack, await exporter(stack), dcd_code=dcd, format="parquet")
    by_copy = pq.read_table(io.BytesIO(await download(stack, done)))
    exports = stack.service("registrations").exports
    from hdhub.registrations.exports.service import Filters, _Progress
    from hdhub.registrations.store import Export

    async with exports.db.system_session() as session:
        row = await session.get(Export, done["id"])
        session.expunge(row)
    entry = await exports.catalogue.get(dcd, done["version"])
    progress = _Progress(exports, row.id, 0, None, None)
    by_rows = pq.read_table(
        io.BytesIO(b"".join([c async for c in exports._parquet(row, entry, Filters(), progress)]))
    )
    assert by_copy.num_rows >= 3
    assert by_copy.schema == by_rows.schema
    # (the delivery worker may move a submission on between the two reads)
    moving = {"status", "updated_at", "submitted_at"}

    def settled(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in r.items() if k not in moving} for r in rows]

    assert settled(by_copy.to_pylist()) == settled(by_rows.to_pylist())


MARKUP_NAME = 'a < b & c > d "q" ünï\nline two\ttab'


def _expected_cell(column: Any, value: Any) -> Any:
    """What a spreadsheet reader should find for a stored value: formats.typed's value, as
    XLSX holds it (text neutralised, lists |-joined, dates as date-times, ms precision)."""
    import datetime as dt

    from hdhub.common.spreadsheet import export_cell
    from hdhub.registrations.exports import formats

    v = formats.typed(column, value) if value is not None else None
    if isinstance(v, list):
        v = "|".join(v)
    if isinstance(v, str):
        return export_cell(v) if v else None
    if isinstance(v, dt.date) and not isinstance(v, dt.datetime):
        return dt.datetime(v.year, v.month, v.day)
    return v


def _utc(moment: Any) -> Any:
    import datetime as dt

    return moment.astimezone(dt.UTC).replace(tzinfo=None)


async def test_xlsx_written_directly_reads_back_typed_from_copy_and_rows(stack: Stack) -> None:
    """XLSX's sheet XML is written by SQL (COPY) on PostgreSQL and by its Python twin
    elsewhere: openpyxl reads both back with the stored values, typed, text neutralised,
    markup kept as text, and a value its type cannot hold as an empty cell."""
    from openpyxl import load_workbook

    from hdhub.registrations.exports import formats
    from hdhub.registrations.exports.service import Filters, _Progress, rows_query
    from hdhub.registrations.store import Export

    dcd = "ANGIO_HOSP_FFR_PCI"
    made = await seed(stack, dcd)
    await spoil(stack, made[0]["id"], dcd)  # values their types cannot hold: empty cells
    values = record(dcd, CD_INDICATION="other", TX_INDICATION_OTHER=MARKUP_NAME)
    r = await stack.client.post(
        "/api/v1/registrations",
        json={"organisation_id": OWN, "dcd": dcd, "values": values, "submit": False},
        headers=await stack.headers(NURSE),
    )
    assert r.status_code in (200, 201, 202), r.text
    done = await export(stack, await exporter(stack), dcd_code=dcd, format="xlsx")
    exports = stack.service("registrations").exports
    async with exports.db.system_session() as session:
        row = await session.get(Export, done["id"])
        session.expunge(row)
    entry = await exports.catalogue.get(dcd, done["version"])

    async def written(by_copy: bool) -> bytes:
        progress = _Progress(exports, row.id, 0, None, None)
        return b"".join([c async for c in exports._xlsx(row, entry, Filters(), progress, by_copy=by_copy)])

    def read(data: bytes) -> list[dict[str, Any]]:
        sheet = load_workbook(io.BytesIO(data), read_only=True).worksheets[0]
        lines = list(sheet.iter_rows(values_only=True))
        assert list(lines[0]) == list(formats.header_for("xlsx", entry.definition))
        return [dict(zip(lines[0], line, strict=True)) for line in lines[1:]]

    by_store = read(await download(stack, done))
    by_copy = read(await written(True)) if stack.backend == "postgres" else by_store
    by_rows = read(await written(False))
    moving = {"status", "updated_at", "submitted_at"}  # the delivery worker moves submissions on

    def settled(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: (type(v), v) for k, v in r.items() if k not in moving} for r in rows]

    assert settled(by_copy) == settled(by_rows) == settled(by_store)

    async with exports.db.session([OWN]) as session:
        stored = {r.id: r for r in (await session.execute(rows_query(row, Filters()))).all()}
    assert [r["registration_id"] for r in by_copy] == list(stored)
    columns = formats.analyst_columns(entry.definition)
    names = set()
    for got in by_copy:
        reg = stored[got["registration_id"]]
        # (a spreadsheet's date-time holds milliseconds)
        assert abs((got["created_at"] - _utc(reg.created_at)).total_seconds()) <= 0.001
        assert got["business_key"] == reg.business_key
        for c in columns:
            want = _expected_cell(c, reg.values.get(c.key))
            assert (type(got[c.name]), got[c.name]) == (type(want), want), c.name
        names.add(got["TX_INDICATION_OTHER"])
    assert {"'" + FORMULA_NAME, "'" + APOSTROPHE_NAME, MARKUP_NAME} <= names
    types = {type(v) for r in by_copy for v in r.values()}
    assert {int, float, str} <= types and any("datetime" in t.__name__ for t in types)


async def test_the_retention_sweep_deletes_old_export_files_and_keeps_their_audit(stack: Stack) -> None:
    """After ``HDHUB_REGISTRATIONS_EXPORT_RETENTION_DAYS`` an export's file is deleted from
    the object store and the export says ``expired``: no new link, an issued one answers
    404; the row and its audit trail stay. A younger export is left alone; a second sweep
    changes nothing."""
    from datetime import timedelta

    from hdhub.common.db import utcnow
    from hdhub.registrations.exports.service import SWEEP_JOB

    own = await exporter(stack)
    old = await export(stack, own, dcd_code="ANGIO_HOSP", format="csv")
    exports = stack.service("registrations").exports
    async with exports.db.system_session() as session:
        from hdhub.registrations.store import Export

        row = await session.get(Export, old["id"])
        key = row.object_key
    assert [c async for c in exports.objects.stream(key)]  # the file is there
    later = utcnow() + timedelta(days=exports.retention_days, hours=1)
    young = await export(stack, own, dcd_code="ANGIO_HOSP", format="xlsx")
    async with exports.db.system_session() as session:  # the young one became ready just now
        (await session.get(Export, young["id"])).ready_at = later - timedelta(hours=2)
    assert await exports.sweep(now=later) >= 1
    assert await exports.sweep(now=later) == 0

    gone = (await stack.client.get(f"/api/v1/exports/{old['id']}", headers=own)).json()
    assert gone["state"] == "expired" and gone["download_url"] is None
    assert (await stack.client.get(old["download_url"])).status_code == 404
    with pytest.raises(Exception):  # noqa: B017, PT011 - each store has its own "not found"
        _ = [c async for c in exports.objects.stream(key)]
    events = (await stack.client.get(f"/api/v1/exports/{old['id']}/events", headers=own)).json()["items"]
    assert events[0]["action"] == "export.requested" and events[-1]["action"] == "export.expired"
    kept = (await stack.client.get(f"/api/v1/exports/{young['id']}", headers=own)).json()
    assert kept["state"] == "ready" and (await stack.client.get(kept["download_url"])).status_code == 200

    # The worker queues the sweep once an hour between all workers, and runs it as a job.
    exports._next_sweep = 0.0
    hour = utcnow() + timedelta(days=400)
    assert await exports.schedule_sweep(now=hour)
    exports._next_sweep = 0.0
    assert not await exports.schedule_sweep(now=hour)
    from hdhub.registrations.store import Job

    for _ in range(400):
        async with exports.db.system_session() as session:
            job = await session.get(Job, hour.strftime("export-sweep-%Y%m%d%H"))
            if job.status == "done":
                break
        await asyncio.sleep(0.05)
    assert job.kind == SWEEP_JOB and job.status == "done"


async def test_the_portals_export_methods_keep_to_the_organisation_and_the_registries_granted(
    stack: Stack,
) -> None:
    """``RequestExport``, ``ListExports`` and ``GetExport`` (the portal's exports page) as the
    REST routes: the CSV Upload Manager asks, follows and gets a link; a bad date is named;
    another organisation's CSV Upload Manager and a member without the role are refused, one
    without the registry neither asks nor sees it."""
    import grpc

    from hdhub.common.auth import current_principal, verifier
    from hdhub.common.grpc import channel, problem_from_rpc_error
    from hdhub.proto.registrations.v1 import registrations_pb2 as pb
    from hdhub.proto.registrations.v1 import registrations_pb2_grpc as pb_grpc
    from tests.support.tokens import mint

    stub = pb_grpc.RegistrationsServiceStub(channel("registrations"))

    async def as_(username: str, org: str, roles: list[str], registries: tuple[str, ...] = ("*",)) -> None:
        token = await mint(stack, username, {org: roles}, registries=registries)
        current_principal.set(await verifier().verify(token))

    await as_("exports@az-demo.test", OWN, ["csv_upload_manager"])
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await stub.RequestExport(
            pb.RequestExportRequest(
                organisation_id=OWN, dcd_code="ANGIO_HOSP", format="csv", created_from="soon"
            )
        )
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert problem_from_rpc_error(bad.value).errors[0].field == "created_from"
    with pytest.raises(grpc.aio.AioRpcError) as outside:  # the year 0 in UTC: refused, not a failure later
        await stub.RequestExport(
            pb.RequestExportRequest(
                organisation_id=OWN,
                dcd_code="ANGIO_HOSP",
                format="csv",
                created_to="0001-01-01T00:00:00+01:00",
            )
        )
    assert outside.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    problem = problem_from_rpc_error(outside.value).errors[0]
    assert (problem.field, problem.rule) == ("created_to", "range")
    asked = await stub.RequestExport(
        pb.RequestExportRequest(
            organisation_id=OWN, dcd_code="ANGIO_HOSP", format="csv", statuses=["submitted"]
        )
    )
    for _ in range(400):
        got = await stub.GetExport(pb.GetExportRequest(id=asked.export.id, issue_link=True))
        if got.export.state in ("ready", "failed"):
            break
        await asyncio.sleep(0.05)
    assert got.export.state == "ready" and got.download_token and got.download_expires_at
    r = await stack.client.get(f"/api/v1/export-files/{got.download_token}")
    assert r.status_code == 200 and r.content.startswith("\ufeff".encode())
    listed = await stub.ListExports(pb.ListExportsRequest(organisation_id=OWN))
    assert asked.export.id in {e.id for e in listed.exports}

    await as_("exports@lab-demo.test", FOREIGN, ["csv_upload_manager"])
    for call in (
        stub.GetExport(pb.GetExportRequest(id=asked.export.id)),
        stub.ListExports(pb.ListExportsRequest(organisation_id=OWN)),
        stub.RequestExport(pb.RequestExportRequest(organisation_id=OWN, dcd_code="ANGIO_HOSP", format="csv")),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call
        assert refused.value.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED)
    assert asked.export.id not in {
        e.id for e in (await stub.ListExports(pb.ListExportsRequest(organisation_id=FOREIGN))).exports
    }
    await as_("reader@az-demo.test", OWN, ["registrant", "reader"])
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.ListExports(pb.ListExportsRequest(organisation_id=OWN))
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED

    await as_("ngs-exports@az-demo.test", OWN, ["csv_upload_manager"], ("HDBP0257",))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.GetExport(pb.GetExportRequest(id=asked.export.id, issue_link=True))
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    assert asked.export.id not in {
        e.id for e in (await stub.ListExports(pb.ListExportsRequest(organisation_id=OWN))).exports
    }
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.RequestExport(
            pb.RequestExportRequest(organisation_id=OWN, dcd_code="ANGIO_HOSP", format="csv")
        )
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


NASTY_TEXTS = [
    "=1+1",
    "+",
    "-",
    "@",
    "@SUM(A1)",
    "\tTAB first",
    "\rCR first",
    "\nLF first",
    "\uff1d1+1",
    "'=1+1",
    "-5",
    "a\x01b\x1fc",
    "]]> <![CDATA[",
    "a < b & c > d",
    "😀 ünï 中文",
    "  spaces kept  ",
    "line one\r\nline two",
]


async def test_xlsx_and_parquet_from_copy_equal_the_row_path_past_arrows_read_blocks(stack: Stack) -> None:
    """On PostgreSQL XLSX and Parquet read COPY's text with Arrow in blocks (1 and 4 MiB): free text
    with line breaks across a block's end, texts over Excel's 32,767 characters, formula-like
    text, control characters XML cannot hold, markup and emoji read back from the XLSX built
    by Arrow's kernels exactly as from the row path's, neutralised and escaped."""
    if stack.backend != "postgres":
        pytest.skip("COPY is PostgreSQL's")
    import pyarrow.parquet as pq
    from openpyxl import load_workbook
    from sqlalchemy import text

    from hdhub.common.spreadsheet import export_cell
    from hdhub.registrations.exports.service import Filters, _Progress
    from hdhub.registrations.store import Export

    dcd = "ANGIO_HOSP_FFR_PCI"
    made = await seed(stack, dcd)
    exports = stack.service("registrations").exports
    long_line = "line & <b> =x\r\n"
    # 200 copies of a registration, 4.8 MB of text, created before it (in the past: rows from
    # the future would show in other tests' grids filtered by creation time).
    async with exports.db.system_session() as session:
        await session.execute(
            text(
                """
                INSERT INTO registrations (organisation_id, id, project_code, dcd_code, dcd_version,
                    business_key, status, registration_code, "values", errors, version, created_by,
                    created_at, updated_at)
                SELECT organisation_id, gen_random_uuid()::text, project_code, dcd_code, dcd_version,
                    'nasty-' || g, 'open', NULL,
                    jsonb_set("values", '{TX_INDICATION_OTHER}', to_jsonb(
                        (CAST(:texts AS text[]))[1 + g % :n]
                        || CASE WHEN g % 2 = 0 THEN repeat(:line, 3200) ELSE '' END)),
                    '[]'::jsonb, 1, 'test', created_at - make_interval(secs => g), updated_at
                FROM registrations, generate_series(1, 200) AS g WHERE id = :id
                """
            ),
            {"texts": NASTY_TEXTS, "n": len(NASTY_TEXTS), "line": long_line, "id": made[1]["id"]},
        )
    done = await export(stack, await exporter(stack), dcd_code=dcd, format="xlsx")
    async with exports.db.system_session() as session:
        row = await session.get(Export, done["id"])
        session.expunge(row)
    entry = await exports.catalogue.get(dcd, done["version"])
    progress = _Progress(exports, row.id, 0, None, None)

    def read(data: bytes) -> list[tuple[Any, ...]]:
        sheet = load_workbook(io.BytesIO(data), read_only=True).worksheets[0]
        return [tuple(line) for line in sheet.iter_rows(values_only=True)]

    by_copy = read(b"".join([c async for c in exports._xlsx(row, entry, Filters(), progress, by_copy=True)]))
    by_rows = read(b"".join([c async for c in exports._xlsx(row, entry, Filters(), progress, by_copy=False)]))
    assert len(by_copy) >= 1 + 3 + 200  # (the session's stack holds other tests' registrations too)
    header = by_copy[0]
    settled = [i for i, name in enumerate(header) if name not in ("status", "updated_at", "submitted_at")]
    assert [[r[i] for i in settled] for r in by_copy] == [[r[i] for i in settled] for r in by_rows]

    column = header.index("TX_INDICATION_OTHER")
    got = {r[column] for r in by_copy[1:]}
    for g in (1, 2):
        stored = NASTY_TEXTS[g % len(NASTY_TEXTS)] + (long_line * 3200 if g % 2 == 0 else "")
        assert export_cell(stored) in got
    assert export_cell("a\x01b\x1fc").replace("\x01", "").replace("\x1f", "") in got  # dropped, not escaped
    assert {"'=1+1", "'+", "'-", "'@", "'\tTAB first", "''=1+1", "-5", "]]> <![CDATA["} <= got
    assert max(len(t) for t in got) > 32_767 * 1.4

    done = await export(stack, await exporter(stack), dcd_code=dcd, format="parquet")
    parquet = pq.read_table(io.BytesIO(await download(stack, done)))
    parquet_rows = pq.read_table(
        io.BytesIO(b"".join([c async for c in exports._parquet(row, entry, Filters(), progress)]))
    )
    moving = ["status", "updated_at", "submitted_at"]
    assert parquet.num_rows == len(by_copy) - 1
    assert parquet.drop_columns(moving).to_pylist() == parquet_rows.drop_columns(moving).to_pylist()


@pytest.mark.parametrize("fmt", ["xlsx", "parquet"])
async def test_an_export_of_no_registrations_holds_only_its_columns(stack: Stack, fmt: str) -> None:
    """An export no registration matches is a file with its columns and no rows (on
    PostgreSQL Arrow's CSV reader refuses an empty COPY: no reader, no rows)."""
    import pyarrow.parquet as pq
    from openpyxl import load_workbook

    before = "2000-01-01T00:00:00Z"  # nothing was created then
    done = await export(stack, await exporter(stack), dcd_code="ANGIO_HOSP", format=fmt, created_to=before)
    data = await download(stack, done)
    assert done["rows_total"] == 0
    if fmt == "parquet":
        table = pq.read_table(io.BytesIO(data))
        assert table.num_rows == 0 and "registration_id" in table.column_names
    else:
        lines = list(
            load_workbook(io.BytesIO(data), read_only=True).worksheets[0].iter_rows(values_only=True)
        )
        assert len(lines) == 1 and lines[0][0] == "registration_id"
