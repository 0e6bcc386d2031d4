"""The operator's DCD catalogue over gRPC: a workbook imported from the console is a draft
that no registration may follow until published; two versions compared (fields added,
removed, changed; minor or major) with the registrations a major one invalidates, counted
per organisation and status and never their values; publish and retire, the current
version kept; every workbook problem by sheet, row and column; the operator alone."""

from __future__ import annotations

import grpc
import pytest

from hdhub.common.auth import OPERATOR_ROLE
from hdhub.common.grpc import channel, problem_from_rpc_error
from hdhub.proto.registrations.v1 import registrations_pb2 as pb
from hdhub.proto.registrations.v1 import registrations_pb2_grpc as pb_grpc
from tests.operator.test_organisation_health import act_as
from tests.support.stack import Stack
from tests.support.workbooks import DCD, broken_workbook, console_workbook

NURSE, OPERATOR = "nurse@az-demo.test", "operator@hdhub.test"
SECRET = "CASE-SECRET-7731"


def stub() -> pb_grpc.RegistrationsServiceAsyncStub:
    return pb_grpc.RegistrationsServiceStub(channel("registrations"))


async def test_the_operator_imports_compares_publishes_and_retires_versions(stack: Stack) -> None:
    files = {"workbook": ("console-1.0.0.xlsx", console_workbook("1.0.0"), "application/octet-stream")}
    r = await stack.client.post("/api/v1/dcds", files=files, headers=await stack.headers(OPERATOR))
    assert r.status_code in (200, 201), r.text  # the REST import publishes at once, as it did
    h = await stack.headers(NURSE)
    for n, submit in ((1, False), (2, False), (3, True)):
        body = {
            "organisation_id": "az-demo",
            "dcd": DCD,
            "dcd_version": "1.0.0",
            "values": {"TX_KEY": f"{SECRET}-{n}", "CD_SIDE": "L", "NR_SIZE": "12"},
            "submit": submit,
        }
        created = await stack.client.post("/api/v1/registrations", json=body, headers=h)
        assert created.status_code in (201, 202), created.text

    await act_as(stack, {}, [OPERATOR_ROLE])
    imported = await stub().ImportDcdWorkbook(pb.ImportDcdWorkbookRequest(workbook=console_workbook("1.1.0")))
    assert (imported.dcd_code, imported.version, imported.created) == (DCD, "1.1.0", True)
    assert imported.state == pb.DCD_VERSION_STATE_DRAFT
    again = await stub().ImportDcdWorkbook(pb.ImportDcdWorkbookRequest(workbook=console_workbook("1.1.0")))
    assert not again.created and again.state == pb.DCD_VERSION_STATE_DRAFT

    # A draft is not in effect: `latest` stays 1.0.0 and no registration may follow it.
    d = await stack.client.get(f"/proxy/api/dcd/payload/definition?dcd-id={DCD}", headers=h)
    assert d.json()["dcdVersionId"] == "1.0.0"
    body = {"organisation_id": "az-demo", "dcd": DCD, "dcd_version": "1.1.0", "values": {"TX_KEY": "x"}}
    refused = await stack.client.post("/api/v1/registrations", json=body, headers=h)
    assert refused.status_code == 409 and refused.json()["type"] == "/problems/dcd-version-draft"
    listed = await stack.client.get("/api/v1/registries", headers=h)
    [mine] = [dcd for p in listed.json()["items"] for dcd in p["dcds"] if dcd["code"] == DCD]
    assert [v["version"] for v in mine["versions"]] == ["1.0.0"]

    await act_as(stack, {}, [OPERATOR_ROLE])  # the REST calls above acted as the nurse
    minor = await stub().CompareDcdVersions(pb.CompareDcdVersionsRequest(dcd_code=DCD, to_version="1.1.0"))
    assert (minor.from_version, minor.kind, list(minor.added), list(minor.removed)) == (
        "1.0.0",
        "minor",
        ["TX_REMARK"],
        [],
    )
    assert {c.field: list(c.aspects) for c in minor.changed} == {
        "CD_SIDE": ["choices_added"],
        "NR_SIZE": ["labels"],
    }
    assert not minor.breaking and not minor.invalidated  # a minor version invalidates nothing

    await stub().SetDcdVersionState(
        pb.SetDcdVersionStateRequest(
            dcd=pb.DcdRef(dcd_code=DCD, version="1.1.0"), state=pb.DCD_VERSION_STATE_PUBLISHED
        )
    )
    d = await stack.client.get(f"/proxy/api/dcd/payload/definition?dcd-id={DCD}", headers=h)
    assert d.json()["dcdVersionId"] == "1.1.0"

    await act_as(stack, {}, [OPERATOR_ROLE])
    await stub().ImportDcdWorkbook(pb.ImportDcdWorkbookRequest(workbook=console_workbook("2.0.0")))
    major = await stub().CompareDcdVersions(
        pb.CompareDcdVersionsRequest(dcd_code=DCD, from_version="1.1.0", to_version="2.0.0")
    )
    assert (major.kind, list(major.added), list(major.removed), list(major.added_required)) == (
        "major",
        ["DT_CHECK"],
        ["NR_SIZE"],
        ["DT_CHECK"],
    )
    assert major.breaking
    counts = {(i.organisation_id, i.status): i.registrations for i in major.invalidated}
    assert counts[("az-demo", "open")] == 2
    assert counts[("az-demo", "sending")] + counts.get(("az-demo", "submitted"), 0) == 1
    assert SECRET.encode() not in major.SerializeToString()  # counts, never values

    # The current version is not retired; a draft is, or becomes current once published.
    with pytest.raises(grpc.aio.AioRpcError) as current:
        await stub().SetDcdVersionState(
            pb.SetDcdVersionStateRequest(
                dcd=pb.DcdRef(dcd_code=DCD, version="1.1.0"), state=pb.DCD_VERSION_STATE_RETIRED
            )
        )
    assert problem_from_rpc_error(current.value).slug == "dcd-version-current"
    await stub().SetDcdVersionState(
        pb.SetDcdVersionStateRequest(
            dcd=pb.DcdRef(dcd_code=DCD, version="2.0.0"), state=pb.DCD_VERSION_STATE_PUBLISHED
        )
    )
    retired = await stub().SetDcdVersionState(
        pb.SetDcdVersionStateRequest(
            dcd=pb.DcdRef(dcd_code=DCD, version="1.1.0"), state=pb.DCD_VERSION_STATE_RETIRED
        )
    )
    assert retired.previous_state == pb.DCD_VERSION_STATE_PUBLISHED
    versions = await stub().ListDcdVersions(pb.ListDcdVersionsRequest())
    states = {v.version: (v.state, v.state_changed_by) for v in versions.versions if v.dcd_code == DCD}
    assert states == {
        "2.0.0": (pb.DCD_VERSION_STATE_PUBLISHED, "console@org.test"),
        "1.1.0": (pb.DCD_VERSION_STATE_RETIRED, "console@org.test"),
        "1.0.0": (pb.DCD_VERSION_STATE_PUBLISHED, ""),
    }
    assert [v.version for v in versions.versions if v.dcd_code == DCD] == ["2.0.0", "1.1.0", "1.0.0"]


async def test_every_workbook_problem_comes_with_its_sheet_row_and_column(stack: Stack) -> None:
    await act_as(stack, {}, [OPERATOR_ROLE])
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub().ImportDcdWorkbook(pb.ImportDcdWorkbookRequest(workbook=broken_workbook()))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    problem = problem_from_rpc_error(refused.value)
    assert problem.slug == "invalid-workbook"
    assert [(p["sheet"], p["row"], p["column"]) for p in problem.extra["problems"]] == [
        ("survey", 3, "type"),
        ("survey", 4, "constraint"),
    ]


@pytest.mark.parametrize(
    "organisations",
    [
        pytest.param({"az-demo": ["user-manager", "data-manager"]}, id="member-of-an-organisation"),
        pytest.param({"other-org": ["user-manager", "data-manager"]}, id="member-of-another"),
    ],
)
async def test_only_the_operator_runs_the_catalogue(
    stack: Stack, organisations: dict[str, list[str]]
) -> None:
    await act_as(stack, organisations, [])
    ref = pb.DcdRef(dcd_code="ANGIO_HOSP", version="1.0.0")
    calls = [
        stub().ImportDcdWorkbook(pb.ImportDcdWorkbookRequest(workbook=console_workbook("1.0.0"))),
        stub().ListDcdVersions(pb.ListDcdVersionsRequest()),
        stub().CompareDcdVersions(pb.CompareDcdVersionsRequest(dcd_code="ANGIO_HOSP", to_version="1.0.0")),
        stub().SetDcdVersionState(pb.SetDcdVersionStateRequest(dcd=ref, state=pb.DCD_VERSION_STATE_RETIRED)),
    ]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_a_dcd_number_another_dcd_holds_is_refused_in_words(stack: Stack) -> None:
    """The v2 API finds a DCD by its number, so a new DCD may not take one another DCD
    holds: a 409 naming the holder and the cell, not a 500 from the unique index."""
    from tests.support.workbooks import _KEY, _SIDES, HD, build_workbook

    taken = build_workbook(
        [_KEY],
        _SIDES,
        settings={
            "form_title": "Taken",
            "form_id": "ANGIO_NEW",
            "version": "1.0.0",
            "default_language": "en",
        },
        hd={**HD, "dcd_code": "ANGIO_NEW", "dcd_number": 201},  # ANGIO_HOSP's
    )
    await act_as(stack, {}, [OPERATOR_ROLE])
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub().ImportDcdWorkbook(pb.ImportDcdWorkbookRequest(workbook=taken))
    problem = problem_from_rpc_error(refused.value)
    assert problem.slug == "dcd-number-taken" and "ANGIO_HOSP" in (problem.detail or "")
    r = await stack.client.post(
        "/api/v1/dcds",
        files={"workbook": ("taken.xlsx", taken, "application/octet-stream")},
        headers=await stack.headers(OPERATOR),
    )
    assert r.status_code == 409 and r.json()["type"] == "/problems/dcd-number-taken", r.text
