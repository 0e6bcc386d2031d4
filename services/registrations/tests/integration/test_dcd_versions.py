"""Semantic versions of DCDs: a minor version leaves registrations valid, a major one
invalidates drafts and submissions until they move to it (DOMAIN.md)."""

from __future__ import annotations

import io

import openpyxl

from hdhub.registrations.catalogue.service import resources
from tests.support.samples import record
from tests.support.stack import Stack

NURSE, OPERATOR = "nurse@az-demo.test", "operator@hdhub.test"
DCD = "ANGIO_FU_PCI"


def workbook_with_version(version: str) -> bytes:
    data = (resources.files("hdhub.registrations") / "dcds" / "HDBP0012_ANGIO_FU_PCI_1.0.0.xlsx").read_bytes()
    wb = openpyxl.load_workbook(io.BytesIO(data))
    header = [c.value for c in wb["settings"][1]]
    wb["settings"].cell(row=2, column=header.index("version") + 1, value=version)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


async def import_version(stack: Stack, version: str) -> None:
    files = {"workbook": (f"fu-{version}.xlsx", workbook_with_version(version), "application/octet-stream")}
    r = await stack.client.post("/api/v1/dcds", files=files, headers=await stack.headers(OPERATOR))
    assert r.status_code == 201, r.text


async def draft(stack: Stack, version: str) -> dict:
    body = {"organisation_id": "az-demo", "dcd": DCD, "dcd_version": version, "values": record(DCD)}
    r = await stack.client.post("/api/v1/registrations", json=body, headers=await stack.headers(NURSE))
    assert r.status_code == 201, r.text
    return r.json()


async def test_minor_keeps_and_major_invalidates(stack: Stack) -> None:
    h = await stack.headers(NURSE)
    old = await draft(stack, "1.0.0")
    await import_version(stack, "1.1.0")
    r = await stack.client.post(f"/api/v1/registrations/{old['id']}/submit", headers={**h, "If-Match": '"1"'})
    assert r.status_code == 202, r.text  # a minor version invalidates nothing

    stale_draft = await draft(stack, "1.1.0")
    await import_version(stack, "2.0.0")
    url = f"/api/v1/registrations/{stale_draft['id']}"
    got = await stack.client.get(url, headers=h)
    assert got.json()["superseded_by"] == "2.0.0"
    r = await stack.client.post(f"{url}/submit", headers={**h, "If-Match": '"1"'})
    assert r.status_code == 409 and r.json()["type"] == "/problems/dcd-version-superseded"
    assert r.json()["current_version"] == "2.0.0"
    r = await stack.client.post(
        "/api/v1/registrations",
        json={"organisation_id": "az-demo", "dcd": DCD, "dcd_version": "1.0.0", "values": record(DCD)},
        headers=h,
    )
    assert r.status_code == 409
    # Moving the draft to the new major version makes it submittable again.
    values = dict(stale_draft["values"])
    r = await stack.client.put(
        url, json={"values": values, "dcd_version": "2.0.0"}, headers={**h, "If-Match": '"1"'}
    )
    assert r.status_code == 200, r.text
    assert r.json()["dcd_version"] == "2.0.0" and r.json()["superseded_by"] is None
    r = await stack.client.post(f"{url}/submit", headers={**h, "If-Match": r.headers["ETag"]})
    assert r.status_code == 202
    # The newest version is what v2 clients get for `latest`, and when they name none.
    d = await stack.client.get(
        f"/proxy/api/dcd/payload/definition?dcd-id={DCD}&dcd-version-id=latest", headers=h
    )
    assert d.json()["dcdVersionId"] == "2.0.0"
    d = await stack.client.get(f"/proxy/api/dcd/payload/definition?dcd-id={DCD}", headers=h)
    assert d.json()["dcdVersionId"] == "2.0.0"


async def test_a_large_workbook_is_read_while_the_service_keeps_answering(stack: Stack) -> None:
    # A 200 KB workbook of 20,000 fields took 9 s to read and compile on the event loop:
    # /healthz (and, under `hdhub run all`, every service) stalled for as long.
    import asyncio
    import gc

    data = (resources.files("hdhub.registrations") / "dcds" / "HDBP0012_ANGIO_FU_PCI_1.0.0.xlsx").read_bytes()
    wb = openpyxl.load_workbook(io.BytesIO(data))
    header = [c.value for c in wb["settings"][1]]
    wb["settings"].cell(row=2, column=header.index("version") + 1, value="7.0.0")
    survey = wb["survey"]
    width = survey.max_column
    for i in range(4000):
        survey.append(["text", f"TX_LARGE_{i}"] + [None] * (width - 2))
    out = io.BytesIO()
    wb.save(out)
    files = {"workbook": ("large.xlsx", out.getvalue(), "application/octet-stream")}
    headers = await stack.headers(OPERATOR)
    # The objects of the whole in-process stack out of the collector's way: its full
    # collections (a second on this heap) are not what this test is about.
    gc.collect()
    gc.freeze()
    loop = asyncio.get_running_loop()
    started = loop.time()
    importing = asyncio.ensure_future(stack.client.post("/api/v1/dcds", files=files, headers=headers))
    answers: list[float] = []
    try:
        while not importing.done():
            r = await stack.client.get("/healthz")
            assert r.status_code == 200
            answers.append(loop.time())
            await asyncio.sleep(0.005)
    finally:
        gc.unfreeze()
    took = loop.time() - started
    assert (await importing).status_code == 201, (await importing).text
    # From its first answer on, the longest the service went without answering is a part
    # of the import (a ratio within one run, not a time); on the event loop, the read
    # itself (2.5 s of 3.7 s). Half, and never less than half a second: the import now
    # takes 0.4 s on PostgreSQL, and on a busy machine the scheduler alone once left a gap
    # of 0.21 s in it.
    longest = max(b - a for a, b in zip(answers, answers[1:], strict=False))
    assert longest < max(0.5 * took, 0.5), (longest, took, len(answers))
