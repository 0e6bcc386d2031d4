"""The drop folder: files dropped in an organisation's folder are uploaded, archived, and
answered per row in RESULTS; technical failures go to ERROR; each file exactly once."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import date
from typing import Any

import pytest

from hdhub.common.objectstore import FolderStore, ObjectStore, open_store
from hdhub.uploads import dropfolder
from hdhub.uploads.dropfolder import DropFolder, TechnicalFailure, parse_name
from services.uploads.tests.integration.test_uploads_api import csv_bytes
from tests.support.samples import record
from tests.support.stack import Stack

HIS = "az-demo-his"
LIMS = "lab-demo-lims"
NAME = "HD_DCD_submcsv_HDBP0012_ANGIO_HOSP_1.0.0_20261122.csv"


@pytest.fixture
def drop(stack: Stack, tmp_path: Any) -> DropFolder:
    """A drop folder of its own (a fresh folder per test) over the stack's uploads service;
    files count as settled at once."""
    uploads = stack.service("uploads").uploads
    uploads.settings.dropfolder_settle_seconds = 0.0
    return DropFolder(uploads, FolderStore(tmp_path / "dropfolder"), "")


async def settle(drop: DropFolder, *, until: str, rounds: int = 400) -> None:
    """Scan and advance jobs until ``until`` exists in the drop area."""
    for _ in range(rounds):
        await drop.scan()
        await drop.process()
        if await drop.store.stat(until) is not None:
            return
        await asyncio.sleep(0.05)
    keys = [o.key async for o in drop.store.list("")]
    raise AssertionError(f"{until} never appeared; the drop area holds {keys}")


async def results(store: ObjectStore, key: str) -> list[dict[str, str]]:
    text = (await store.read(key)).decode("utf-8-sig")
    return list(csv.DictReader(io.StringIO(text), delimiter=";"))


async def keys(store: ObjectStore) -> set[str]:
    return {o.key async for o in store.list("") if not o.key.startswith(".")}


def test_file_names_follow_hd4dp_v2() -> None:
    parsed = parse_name(NAME)
    assert (parsed.project_code, parsed.dcd_code, parsed.version, parsed.day) == (
        "HDBP0012",
        "ANGIO_HOSP",
        "1.0.0",
        date(2026, 11, 22),
    )
    assert (
        parse_name("HD_DCD_submcsv_HDBP0012_ANGIO_HOSP_PCI_1_20261122093000.csv").dcd_code == "ANGIO_HOSP_PCI"
    )
    assert parse_name("hd_dcd_submcsv_hdbp0263_hiv_sequence_1_20240827.CSV").dcd_code == "HIV_SEQUENCE"
    for bad in (
        "angio.csv",
        "HD_DCD_submcsv_HDBP0012_ANGIO_HOSP_20261122.csv",
        NAME.replace("20261122", "20261341"),
        "HD_DCD_submcsv_HDBP12_ANGIO_HOSP_1_20261122.csv",
        NAME[:-4] + ".xlsx",
    ):
        with pytest.raises(TechnicalFailure):
            parse_name(bad)


@pytest.mark.parametrize(
    ("name", "says"),
    [
        (NAME + "\n", "control characters"),  # the pattern's $ alone let a trailing newline through
        (NAME.replace("ANGIO_HOSP", "ANGIO\u202eHOSP"), "invisible characters"),
        ("HD_DCD_submcsv_HDBP0012_85040216932_1_20261122.csv", "national register number"),
        (NAME + ".", "end with a dot"),
    ],
)
def test_drop_folder_names_follow_the_shared_file_name_rule(name: str, says: str) -> None:
    with pytest.raises(TechnicalFailure) as refused:
        parse_name(name)
    assert says in str(refused.value) and "85040216932" not in str(refused.value)
    with pytest.raises(TechnicalFailure) as refused:
        parse_name(name, "fr")
    assert "nom de fichier" in str(refused.value)


async def test_a_name_with_a_control_character_stops_no_one_and_is_explained(
    stack: Stack, drop: DropFolder, tmp_path: Any
) -> None:
    # Written straight into the folder, as a hospital's script would: no key can name it.
    (tmp_path / "dropfolder" / "az-demo").mkdir(parents=True)
    (tmp_path / "dropfolder" / "az-demo" / (NAME[:-4] + "\x07.csv")).write_bytes(csv_bytes([record()]))
    other = NAME.replace("20261122", "20261121")  # not NAME: other tests look for it
    await drop.store.put(f"lab-demo/{other}", csv_bytes([record()]))
    await settle(drop, until=f"lab-demo/RESULTS/{other[:-4]}_RESULTS.csv")  # the others go on
    notes = [k for k in await keys(drop.store) if k.startswith("az-demo/ERROR/")]
    assert len(notes) == 1 and notes[0].endswith("_ERROR.txt")
    said = (await drop.store.read(notes[0])).decode()
    assert "control" in said.lower() and "rename it" in said
    await drop.scan()  # said once, not at every pass
    assert [k for k in await keys(drop.store) if k.startswith("az-demo/ERROR/")] == notes


async def test_dropped_file_is_uploaded_archived_and_answered_per_row(stack: Stack, drop: DropFolder) -> None:
    good = [record(), record()]
    bad = record(CD_PAT_CONSENT="no")  # a constraint error on line 4
    formula = record(TX_AUTHOR="=cmd|' /C calc'!A0")
    await drop.store.put(f"az-demo/{NAME}", csv_bytes([*good, bad, formula]))
    stem = NAME[:-4]
    await settle(drop, until=f"az-demo/RESULTS/{stem}_RESULTS.csv")
    assert await keys(drop.store) == {f"az-demo/ARCHIVE/{NAME}", f"az-demo/RESULTS/{stem}_RESULTS.csv"}
    lines = await results(drop.store, f"az-demo/RESULTS/{stem}_RESULTS.csv")
    assert [(r["line"], r["result"]) for r in lines if r["result"] == "Success"] == [
        ("2", "Success"),
        ("3", "Success"),
        ("5", "Success"),
    ]
    errors = [(r["line"], r["result"], r["column"], r["rule"]) for r in lines if r["result"] == "Error"]
    assert errors == [("4", "Error", "CD_PAT_CONSENT", "constraint")]
    assert all(r["message"] for r in lines if r["result"] == "Error")
    assert all(r["registration_id"] and r["business_key"] for r in lines if r["result"] == "Success")
    raw = (await drop.store.read(f"az-demo/RESULTS/{stem}_RESULTS.csv")).decode()
    assert "\n=" not in raw and ";=" not in raw  # nothing a spreadsheet would run
    # The upload is the organisation's, like any other, and nobody else's.
    listed = await stack.client.get("/api/v1/uploads", headers=await stack.headers(HIS))
    mine = [u for u in listed.json()["items"] if u["filename"] == NAME]
    assert len(mine) == 1 and mine[0]["source"] == "dropfolder" and mine[0]["uploaded_by"] == "dropfolder"
    assert mine[0]["counts"]["created"] == 3 and mine[0]["counts"]["rejected"] == 1
    other = await stack.client.get(f"/api/v1/uploads/{mine[0]['id']}", headers=await stack.headers(LIMS))
    assert other.status_code == 404
    listed = await stack.client.get("/api/v1/uploads", headers=await stack.headers(LIMS))
    assert NAME not in {u["filename"] for u in listed.json()["items"]}


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("angio.csv", "does not follow"),
        ("HD_DCD_submcsv_HDBP0012_NO_SUCH_DCD_1_20261122.csv", "No registry form NO_SUCH_DCD"),
        ("HD_DCD_submcsv_HDBP0263_ANGIO_HOSP_1_20261122.csv", "belongs to HDBP0012"),
        ("HD_DCD_submcsv_HDBP0012_ANGIO_HOSP_2_20261122.csv", "current version is 1.0.0"),
    ],
)
async def test_technical_failures_go_to_error_with_the_reason(
    stack: Stack, drop: DropFolder, name: str, reason: str
) -> None:
    await drop.store.put(f"az-demo/{name}", csv_bytes([record()]))
    stem = name[:-4]
    await settle(drop, until=f"az-demo/ERROR/{stem}_ERROR.txt")
    assert reason in (await drop.store.read(f"az-demo/ERROR/{stem}_ERROR.txt")).decode()
    assert await keys(drop.store) == {f"az-demo/ERROR/{name}", f"az-demo/ERROR/{stem}_ERROR.txt"}


async def test_content_problems_are_results_not_technical_failures(stack: Stack, drop: DropFolder) -> None:
    name = NAME.replace("20261122", "20261123")
    await drop.store.put(f"lab-demo/{name}", b"\x00\x01\x02binary\xff\xfe" * 50)
    stem = name[:-4]
    await settle(drop, until=f"lab-demo/RESULTS/{stem}_RESULTS.csv")
    lines = await results(drop.store, f"lab-demo/RESULTS/{stem}_RESULTS.csv")
    assert lines and all(r["result"] == "Error" for r in lines) and lines[0]["rule"]
    assert f"lab-demo/ARCHIVE/{name}" in await keys(drop.store)


async def test_two_replicas_take_each_file_once(stack: Stack, drop: DropFolder) -> None:
    uploads = stack.service("uploads").uploads
    other = DropFolder(uploads, drop.store, "")
    names = [NAME.replace("20261122", f"202611{d:02d}") for d in (10, 11, 12)]
    for n in names:
        await drop.store.put(f"az-demo/{n}", csv_bytes([record()]))
    # Both replicas scan and work at the same time, twice over.
    await asyncio.gather(drop.scan(), other.scan(), drop.scan(), other.scan())
    for n in names:
        stem = n[:-4]
        for _ in range(400):
            await asyncio.gather(drop.process(), other.process())
            if await drop.store.stat(f"az-demo/RESULTS/{stem}_RESULTS.csv") is not None:
                break
            await asyncio.sleep(0.05)
    listed = (await stack.client.get("/api/v1/uploads?limit=200", headers=await stack.headers(HIS))).json()[
        "items"
    ]
    for n in names:
        assert sum(1 for u in listed if u["filename"] == n) == 1, n
        assert f"az-demo/ARCHIVE/{n}" in await keys(drop.store)


async def test_a_worker_dying_half_way_loses_and_doubles_nothing(
    stack: Stack, drop: DropFolder, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = NAME.replace("20261122", "20261101")
    await drop.store.put(f"az-demo/{name}", csv_bytes([record(), record()]))
    original = DropFolder._archive

    async def die(self: DropFolder, *args: Any) -> None:
        raise RuntimeError("killed between taking the file in and archiving it")

    monkeypatch.setattr(DropFolder, "_archive", die)
    await drop.scan()
    await drop.process()  # took the file in, then died: the job is retried later
    monkeypatch.setattr(DropFolder, "_archive", original)
    async with stack.service("uploads").uploads.db.system_session() as session:
        from sqlalchemy import update

        from hdhub.uploads.store import Job

        await session.execute(update(Job).where(Job.kind == dropfolder.FILE).values(run_after=Job.created_at))
    await settle(drop, until=f"az-demo/RESULTS/{name[:-4]}_RESULTS.csv")
    listed = (await stack.client.get("/api/v1/uploads?limit=200", headers=await stack.headers(HIS))).json()[
        "items"
    ]
    assert sum(1 for u in listed if u["filename"] == name) == 1
    lines = await results(drop.store, f"az-demo/RESULTS/{name[:-4]}_RESULTS.csv")
    assert [r["result"] for r in lines] == ["Success", "Success"]


async def test_unsettled_files_and_other_folders_are_left_alone(stack: Stack, drop: DropFolder) -> None:
    drop.settings.dropfolder_settle_seconds = 3600.0
    try:
        await drop.store.put(f"az-demo/{NAME.replace('20261122', '20261102')}", csv_bytes([record()]))
        assert await drop.scan() == 0  # just written: perhaps not finished
    finally:
        drop.settings.dropfolder_settle_seconds = 0.0
    await drop.store.put("az-demo/ARCHIVE/old.csv", b"x")
    await drop.store.put("az-demo/deeper/" + NAME, b"x")
    await drop.store.put("stray.csv", b"x")
    assert await drop.scan() == 1  # only the file now settled in the organisation's folder


async def test_drop_folder_in_the_object_store(stack: Stack, s3_url: str) -> None:
    """Outside embedded defaults the folders are a prefix of the object store (S3)."""
    uploads = stack.service("uploads").uploads
    uploads.settings.dropfolder_settle_seconds = 0.0
    store = open_store(s3_url)
    s3_drop = DropFolder(uploads, store, "dropfolder-test/")
    name = NAME.replace("20261122", "20261103")
    await store.put(f"dropfolder-test/az-demo/{name}", csv_bytes([record()]))
    await settle(s3_drop, until=f"dropfolder-test/az-demo/RESULTS/{name[:-4]}_RESULTS.csv")
    assert await store.stat(f"dropfolder-test/az-demo/{name}") is None
    assert await store.stat(f"dropfolder-test/az-demo/ARCHIVE/{name}") is not None
    assert [
        r["result"] for r in await results(store, f"dropfolder-test/az-demo/RESULTS/{name[:-4]}_RESULTS.csv")
    ] == ["Success"]
