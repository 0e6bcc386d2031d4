"""The /api/v1 registrations resource: lifecycle, ETag / If-Match, history, idempotency,
and tenants kept apart."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.support.samples import record
from tests.support.stack import Stack

NURSE = "nurse@az-demo.test"
LAB = "biologist@lab-demo.test"
OPERATOR = "operator@hdhub.test"
MANAGER = "manager@az-demo.test"


async def create(stack: Stack, who: str = NURSE, *, submit: bool = False, **overrides: Any) -> Any:
    body = {
        "organisation_id": "az-demo",
        "dcd": "ANGIO_HOSP",
        "values": record(**overrides),
        "submit": submit,
    }
    r = await stack.client.post("/api/v1/registrations", json=body, headers=await stack.headers(who))
    assert r.status_code == 201, r.text
    return r


async def until(stack: Stack, reg_id: str, status: str) -> Any:
    for _ in range(100):
        r = await stack.client.get(f"/api/v1/registrations/{reg_id}", headers=await stack.headers(NURSE))
        if r.json()["status"] == status:
            return r
        await asyncio.sleep(0.05)
    raise AssertionError(r.json()["status"])


async def test_save_gives_open_with_etag_and_location(stack: Stack) -> None:
    r = await create(stack)
    reg = r.json()
    assert reg["status"] == "open" and reg["status_label"] == "Open"
    assert r.headers["ETag"] == '"1"'
    assert r.headers["Location"] == f"/api/v1/registrations/{reg['id']}"
    assert reg["values"]["MS_BMI"]  # calculated
    assert reg["open_issues"] == []


async def test_an_integer_no_64_bit_column_holds_is_refused_even_in_a_draft(stack: Stack) -> None:
    """10**20 as text or as a JSON number: not an integer one can store (SQLite's JSON made
    it 1e+20, a Parquet export of the registry then failed on every retry): a 422 naming
    the field, nothing stored; a v2 draft alike."""
    headers = await stack.headers(NURSE)
    for value in ("99999999999999999999", 123456789012345678901234567890):
        body = {"organisation_id": "az-demo", "dcd": "ANGIO_HOSP", "values": record(MS_HEIGHT=value)}
        r = await stack.client.post("/api/v1/registrations", json=body, headers=headers)
        assert r.status_code == 422, r.text
        assert ("MS_HEIGHT", "type") in {(e["field"], e["rule"]) for e in r.json()["errors"]}, r.text
    his = await stack.headers("az-demo-his")
    r = await stack.client.post(
        "/proxy/api/dcd/payload/submit?organization-id=az-demo&dcd-id=ANGIO_HOSP",
        json={"STATUS": "draft", "MS_LVEF": "99999999999999999999"},
        headers=his,
    )
    assert r.status_code == 422, r.text


async def test_full_lifecycle_submit_reopen_edit_resubmit(stack: Stack) -> None:
    h = await stack.headers(NURSE)
    reg = (await create(stack)).json()
    url = f"/api/v1/registrations/{reg['id']}"
    r = await stack.client.post(f"{url}/submit", headers={**h, "If-Match": '"1"'})
    assert r.status_code == 202 and r.json()["status"] == "sending"
    submitted = await until(stack, reg["id"], "submitted")
    assert submitted.json()["status_confirmation"] == "pending"
    code = submitted.json()["registration_code"]
    r = await stack.client.delete(url, headers={**h, "If-Match": submitted.headers["ETag"]})
    assert r.status_code == 409 and r.json()["type"] == "/problems/transition-not-allowed"
    r = await stack.client.post(f"{url}/reopen", headers={**h, "If-Match": submitted.headers["ETag"]})
    assert r.status_code == 200 and r.json()["status"] == "open"
    r = await stack.client.put(
        url,
        json={"values": {**reg["values"], "MS_HEIGHT": 180}},
        headers={**h, "If-Match": r.headers["ETag"]},
    )
    assert r.status_code == 200, r.text
    assert r.json()["values"]["MS_HEIGHT"] == 180
    r = await stack.client.post(f"{url}/submit", headers={**h, "If-Match": r.headers["ETag"]})
    assert r.status_code == 202
    again = await until(stack, reg["id"], "submitted")
    assert again.json()["registration_code"] == code  # the code is made once
    history = (await stack.client.get(f"{url}/history", headers=h)).json()["items"]
    assert [e["action"] for e in history] == [
        "create",
        "submit",
        "processed",
        "reopen",
        "save",
        "submit",
        "processed",
    ]
    assert [e["version"] for e in history] == list(range(1, 8))
    assert history[4]["changed_fields"] == ["MS_BMI", "MS_HEIGHT"]
    assert history[4]["actor"] == NURSE and history[4]["at"]
    # Values are stored once; each version's are rebuilt from what later changes replaced.
    assert [e["values"] for e in history[:4]] == [reg["values"]] * 4
    assert [e["values"] for e in history[4:]] == [again.json()["values"]] * 3
    assert history[3]["values"]["MS_HEIGHT"] != 180 and history[4]["values"]["MS_HEIGHT"] == 180


async def test_reopen_only_from_submitted_and_delete_only_open_or_corrections_needed(stack: Stack) -> None:
    h = await stack.headers(NURSE)
    reg = (await create(stack)).json()
    url = f"/api/v1/registrations/{reg['id']}"
    r = await stack.client.post(f"{url}/reopen", headers={**h, "If-Match": '"1"'})
    assert r.status_code == 409
    assert "Submitted" in r.json()["detail"]
    r = await stack.client.delete(url, headers={**h, "If-Match": '"1"'})
    assert r.status_code == 200 and r.json()["status"] == "deleted"
    r = await stack.client.delete(url, headers={**h, "If-Match": r.headers["ETag"]})
    assert r.status_code == 409
    listed = (
        await stack.client.get(f"/api/v1/registrations?business_key={reg['business_key']}", headers=h)
    ).json()
    assert listed["total"] == 0
    # The business key is free again once deleted.
    again = await create(
        stack, **{k: v for k, v in reg["values"].items() if k not in ("MS_BMI", "MS_LOS", "MS_AGE_ADM")}
    )
    assert again.json()["id"] != reg["id"]


async def test_review_decisions_by_the_central_side(stack: Stack) -> None:
    reg = (await create(stack, submit=True)).json()
    await until(stack, reg["id"], "submitted")
    url = f"/api/v1/registrations/{reg['id']}"
    r = await stack.client.post(
        f"{url}/review",
        json={"decision": "corrections_needed", "comment": "check LVEF"},
        headers=await stack.headers(NURSE),
    )
    assert r.status_code == 403
    r = await stack.client.post(
        f"{url}/review",
        json={"decision": "corrections_needed", "comment": "check LVEF"},
        headers=await stack.headers(OPERATOR),
    )
    assert r.status_code == 200 and r.json()["status"] == "corrections_needed"
    h = await stack.headers(NURSE)
    r = await stack.client.post(f"{url}/submit", headers={**h, "If-Match": r.headers["ETag"]})
    assert r.status_code == 202
    await until(stack, reg["id"], "submitted")
    r = await stack.client.post(
        f"{url}/review", json={"decision": "approved"}, headers=await stack.headers(OPERATOR)
    )
    assert r.json()["status"] == "approved"
    history = (await stack.client.get(f"{url}/history", headers=h)).json()["items"]
    assert history[3]["comment"] == "check LVEF" and history[3]["actor"] == OPERATOR


async def test_stale_or_missing_if_match_changes_nothing(stack: Stack) -> None:
    h = await stack.headers(NURSE)
    reg = (await create(stack)).json()
    url = f"/api/v1/registrations/{reg['id']}"
    r = await stack.client.put(url, json={"values": reg["values"]}, headers=h)
    assert r.status_code == 428 and r.json()["type"] == "/problems/if-match-required"
    r = await stack.client.put(url, json={"values": reg["values"]}, headers={**h, "If-Match": '"1"'})
    assert r.status_code == 200
    r = await stack.client.put(
        url, json={"values": {**reg["values"], "MS_HEIGHT": 150}}, headers={**h, "If-Match": '"1"'}
    )
    assert r.status_code == 412 and r.json()["type"] == "/problems/stale-version"
    assert r.json()["current_version"] == 2
    r = await stack.client.post(f"{url}/submit", headers={**h, "If-Match": '"1"'})
    assert r.status_code == 412
    current = (await stack.client.get(url, headers=h)).json()
    assert current["version"] == 2 and current["status"] == "open" and current["values"]["MS_HEIGHT"] != 150


async def test_invalid_values_are_refused_and_nothing_changes(stack: Stack) -> None:
    h = await stack.headers(NURSE)
    reg = (await create(stack)).json()
    url = f"/api/v1/registrations/{reg['id']}"
    bad = {**reg["values"], "DT_DISCH": "2024-13-45", "MS_WEIGHT": "heavy", "CD_ADM_TYPE": "teleport"}
    r = await stack.client.put(
        url, json={"values": bad}, headers={**h, "If-Match": '"1"', "Accept-Language": "fr"}
    )
    assert r.status_code == 422
    assert {(e["field"], e["rule"]) for e in r.json()["errors"]} >= {
        ("DT_DISCH", "type"),
        ("MS_WEIGHT", "type"),
        ("CD_ADM_TYPE", "choice"),
    }
    current = await stack.client.get(url, headers=h)
    assert current.json()["version"] == 1 and current.json()["values"] == reg["values"]
    r = await stack.client.post(
        "/api/v1/registrations",
        json={"organisation_id": "az-demo", "dcd": "ANGIO_HOSP", "values": {"MS_HEIGHT": [1]}},
        headers=h,
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "MS_HEIGHT"
    r = await stack.client.post(
        "/api/v1/registrations",
        json={"organisation_id": "az-demo", "dcd": "ANGIO_HOSP", "values": {}, "colour": "red"},
        headers=h,
    )
    assert r.status_code == 422 and r.json()["type"] == "/problems/request-validation"


async def test_submitting_an_incomplete_draft_says_what_is_missing(stack: Stack) -> None:
    h = await stack.headers(NURSE)
    values = record()
    del values["CD_INDICATION"]
    r = await stack.client.post(
        "/api/v1/registrations",
        json={"organisation_id": "az-demo", "dcd": "ANGIO_HOSP", "values": values},
        headers=h,
    )
    assert r.status_code == 201
    assert [(i["field"], i["rule"]) for i in r.json()["open_issues"]] == [("CD_INDICATION", "required")]
    r = await stack.client.post(
        f"/api/v1/registrations/{r.json()['id']}/submit", headers={**h, "If-Match": '"1"'}
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "CD_INDICATION"


async def test_idempotency_key_replays_the_first_answer(stack: Stack) -> None:
    h = await stack.headers(NURSE, **{"Idempotency-Key": "retry-me-1" + stack.backend})
    body = {"organisation_id": "az-demo", "dcd": "ANGIO_HOSP", "values": record()}
    first = await stack.client.post("/api/v1/registrations", json=body, headers=h)
    second = await stack.client.post("/api/v1/registrations", json=body, headers=h)
    assert first.status_code == second.status_code == 201
    assert second.json()["id"] == first.json()["id"]
    assert second.headers["Idempotent-Replayed"] == "true"
    other = await stack.client.post("/api/v1/registrations", json={**body, "values": record()}, headers=h)
    assert other.status_code == 422 and other.json()["type"] == "/problems/idempotency-key-reused"


async def test_concurrent_retries_with_one_idempotency_key_get_one_answer(stack: Stack) -> None:
    h = await stack.headers(NURSE, **{"Idempotency-Key": "retry-at-once-" + stack.backend})
    body = {"organisation_id": "az-demo", "dcd": "ANGIO_HOSP", "values": record()}
    answers = await asyncio.gather(
        *[stack.client.post("/api/v1/registrations", json=body, headers=h) for _ in range(4)]
    )
    assert {a.status_code for a in answers} <= {201, 409}, [a.text for a in answers]
    created = [a for a in answers if a.status_code == 201]
    assert created and len({a.json()["id"] for a in created}) == 1


@pytest.mark.parametrize("who", [LAB, "lab-demo-lims", MANAGER])
async def test_other_organisations_and_non_registrants_see_nothing(stack: Stack, who: str) -> None:
    reg = (await create(stack)).json()
    url = f"/api/v1/registrations/{reg['id']}"
    h = await stack.headers(who)
    assert (await stack.client.get(url, headers=h)).status_code == 404
    assert (await stack.client.get(f"{url}/history", headers=h)).status_code == 404
    put = await stack.client.put(url, json={"values": reg["values"]}, headers={**h, "If-Match": '"1"'})
    assert put.status_code == 404
    for action in ("submit", "reopen"):
        assert (
            await stack.client.post(f"{url}/{action}", headers={**h, "If-Match": '"1"'})
        ).status_code == 404
    assert (await stack.client.delete(url, headers={**h, "If-Match": '"1"'})).status_code == 404
    listed = await stack.client.get("/api/v1/registrations", headers=h)
    assert reg["id"] not in {i["id"] for i in listed.json()["items"]}
    assert (
        await stack.client.get("/api/v1/registrations?organisation_id=az-demo", headers=h)
    ).status_code == 403
    body = {"organisation_id": "az-demo", "dcd": "ANGIO_HOSP", "values": record()}
    assert (await stack.client.post("/api/v1/registrations", json=body, headers=h)).status_code == 403
    unchanged = await stack.client.get(url, headers=await stack.headers(NURSE))
    assert unchanged.json()["version"] == 1


async def test_catalogue_lists_registries_and_validates_without_storing(stack: Stack) -> None:
    h = await stack.headers(NURSE, **{"Accept-Language": "de"})
    registries = (await stack.client.get("/api/v1/registries", headers=h)).json()
    assert {r["code"] for r in registries["items"]} >= {"HDBP0012", "HDBP0263", "HDBP0257"}
    assert registries["total"] == len(registries["items"]) and registries["next"] is None
    second = (await stack.client.get("/api/v1/registries?limit=1&offset=1", headers=h)).json()
    assert second["items"] == registries["items"][1:2] and (second["limit"], second["offset"]) == (1, 1)
    r = await stack.client.post(
        "/api/v1/dcds/ANGIO_HOSP/versions/latest/validate",
        json={"values": record(DT_HOSPZ="31/02/2024")},
        headers=h,
    )
    assert r.status_code == 200 and r.json()["valid"] is False
    assert r.json()["errors"][0]["field"] == "DT_HOSPZ"
    assert (
        await stack.client.get("/api/v1/dcds/ANGIO_HOSP/versions/1.0.0/codelists/sex", headers=h)
    ).status_code == 200
    assert (await stack.client.get("/api/v1/registries")).status_code == 401


@pytest.mark.parametrize(
    ("row", "column", "says"),
    [
        ({"constraint": "regex(., concat('[', 'a'))"}, "constraint", "invalid regular expression"),
        ({"constraint": "regex(., 'a{4294967296}')"}, "constraint", "invalid regular expression"),
        (
            {"constraint": "regex(., '(a)\\1')"},
            "constraint",
            "backreference (\\1, (?P=name)) is not supported",
        ),
        ({"guidance_hint": "read this"}, "guidance_hint", "does not read"),
    ],
)
async def test_a_workbook_problem_is_a_422_naming_sheet_row_and_column(
    stack: Stack, row: dict[str, str], column: str, says: str
) -> None:
    from services.registrations.tests.unit.conftest import build_workbook

    data = build_workbook([{"type": "text", "name": "TX_A"}, {"type": "text", "name": "TX_B", **row}])
    files = {"workbook": ("x.xlsx", data, "application/octet-stream")}
    r = await stack.client.post("/api/v1/dcds", files=files, headers=await stack.headers(OPERATOR))
    assert r.status_code == 422 and r.json()["type"] == "/problems/invalid-workbook", r.text
    [error] = r.json()["errors"]
    assert error["field"] == f"survey!{column}3" and says in error["message"]


async def test_only_the_operator_imports_workbooks_and_versions_are_immutable(stack: Stack) -> None:
    from hdhub.registrations.catalogue.service import resources

    data = (resources.files("hdhub.registrations") / "dcds" / "HDBP0263_HIV_SEQUENCE_1.0.0.xlsx").read_bytes()
    files = {
        "workbook": ("hiv.xlsx", data, "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
    }
    r = await stack.client.post("/api/v1/dcds", files=files, headers=await stack.headers(MANAGER))
    assert r.status_code == 403
    r = await stack.client.post("/api/v1/dcds", files=files, headers=await stack.headers(OPERATOR))
    assert r.status_code == 200 and r.json() == {
        "project_code": "HDBP0263",
        "dcd": "HIV_SEQUENCE",
        "version": "1.0.0",
        "created": False,
    }
    junk = {"workbook": ("x.xlsx", b"PK\x03\x04 not really", "application/octet-stream")}
    r = await stack.client.post("/api/v1/dcds", files=junk, headers=await stack.headers(OPERATOR))
    assert r.status_code == 422 and r.json()["type"] == "/problems/invalid-workbook"


async def test_search_filters_by_created_and_updated_range(stack: Stack) -> None:
    from datetime import UTC, datetime, timedelta

    h = await stack.headers(NURSE)
    before = datetime.now(UTC) - timedelta(seconds=1)
    reg = (await create(stack)).json()
    after = datetime.now(UTC) + timedelta(seconds=1)
    key = reg["business_key"]

    async def found(**params: str) -> bool:
        r = await stack.client.get("/api/v1/registrations", params={"business_key": key, **params}, headers=h)
        assert r.status_code == 200, r.text
        return [item["id"] for item in r.json()["items"]] == [reg["id"]]

    assert await found(created_from=before.isoformat(), created_to=after.isoformat())
    assert await found(updated_from=before.isoformat())
    assert not await found(created_to=before.isoformat())
    assert not await found(updated_from=after.isoformat())
    # A time without an offset is UTC; a date alone is its midnight.
    assert await found(created_from=before.replace(tzinfo=None).isoformat())
    assert not await found(created_from=(after + timedelta(days=1)).date().isoformat())


async def test_search_refuses_unknown_parameters_bad_statuses_and_backward_ranges(stack: Stack) -> None:
    h = await stack.headers(NURSE)
    r = await stack.client.get("/api/v1/registrations", params={"stauts": "open"}, headers=h)
    assert r.status_code == 422 and r.json()["type"] == "/problems/request-validation"
    assert [(e["field"], e["rule"]) for e in r.json()["errors"]] == [("stauts", "unknown_parameter")]
    assert "status" in r.json()["errors"][0]["message"]  # the known ones are named
    r = await stack.client.get("/api/v1/registrations", params={"status": "bogus"}, headers=h)
    assert r.status_code == 422
    assert [(e["field"], e["rule"]) for e in r.json()["errors"]] == [("status", "enum")]
    assert "'open'" in r.json()["errors"][0]["message"]
    r = await stack.client.get(
        "/api/v1/registrations", params={"created_from": "2026-12-02", "created_to": "2026-12-01"}, headers=h
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "created_to"
    r = await stack.client.get("/api/v1/registrations", params={"updated_from": "yesterday"}, headers=h)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "updated_from"
    # A bare number is not read as seconds since 1970: the document says ISO 8601.
    r = await stack.client.get("/api/v1/registrations", params={"updated_to": "0.5"}, headers=h)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "updated_to"
    assert "ISO 8601" in r.json()["errors"][0]["message"]
    # Words of our own, not the parser's ("input is too short"); and a moment whose UTC is
    # outside the calendar is the client's mistake, not a 500 from the database layer.
    for field, value, said in (
        ("created_from", "banana", "must be an ISO 8601 date and time, e.g. 2026-12-03T09:30:00Z"),
        ("created_from", "99999-01-01", "must be an ISO 8601 date and time"),
        ("created_to", "0001-01-01T00:00:00+01:00", "is outside the calendar in UTC (the years 1 to 9999)"),
        ("created_from", "9999-12-31T23:59:59-14:00", "is outside the calendar in UTC"),
    ):
        r = await stack.client.get(
            "/api/v1/registrations", params={"organisation_id": "az-demo", field: value}, headers=h
        )
        assert r.status_code == 422, (value, r.text)
        assert r.json()["errors"][0]["field"] == field and said in r.json()["errors"][0]["message"], r.text
