"""Semantic versions of DCDs: a minor version leaves registrations valid, a major one
invalidates drafts and submissions until they move to it (DOMAIN.md)."""

from __future__ import annotations

import io

import openpyxl

from hdhub.registrations.catalogue import resources
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
