"""A platform service calls registrations only along the call graph, and only for the
organisation whose work it is doing (``hdhub-acting-for`` + ``hdhub-actor``): a service
token alone, or one acting for another organisation, is PERMISSION_DENIED before the
handler runs. The actor is what the history records."""

from __future__ import annotations

import grpc
import pytest

from hdhub.common.auth import ActingFor, current_principal
from hdhub.common.grpc import channel
from hdhub.common.jobs import JobQueue
from hdhub.common.service_auth import acting_as_service
from hdhub.proto.registrations.v1 import registrations_pb2 as pb
from hdhub.proto.registrations.v1 import registrations_pb2_grpc as pb_grpc
from tests.support.arrow_rows import encode_rows
from tests.support.samples import record
from tests.support.stack import Stack

NURSE = "nurse@az-demo.test"


def _upsert(organisation_id: str) -> pb.UpsertBatchRequest:
    return pb.UpsertBatchRequest(
        organisation_id=organisation_id,
        dcd=pb.DcdRef(dcd_code="ANGIO_HOSP", version="1.0.0"),
        rows_arrow=encode_rows([record()]),
        language="en",
        author="someone-else@az-demo.test",
    )


def _stub() -> pb_grpc.RegistrationsServiceStub:
    return pb_grpc.RegistrationsServiceStub(channel("registrations"))


@pytest.mark.parametrize("actor", [NURSE, "Zoë Ørsted <zoë@az-demo.test>"])
async def test_a_service_acting_for_an_organisation_writes_there_in_the_actors_name(
    stack: Stack, actor: str
) -> None:
    async with acting_as_service("uploads", ActingFor("az-demo", actor)):
        reply = await _stub().UpsertBatch(_upsert("az-demo"))
    assert reply.results[0].registration_id and not reply.errors
    r = await stack.client.get(
        f"/api/v1/registrations/{reply.results[0].registration_id}/history",
        headers=await stack.headers(NURSE),
    )
    assert r.status_code == 200
    assert [(h["actor"], h["via"]) for h in r.json()["items"]] == [(actor, "upload")]


async def test_a_service_acting_for_one_organisation_cannot_touch_another(stack: Stack) -> None:
    async with acting_as_service("uploads", ActingFor("az-demo", NURSE)):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await _stub().UpsertBatch(_upsert("lab-demo"))
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "only the organisation whose work it is doing" in str(refused.value.trailing_metadata())


async def test_a_service_token_alone_touches_no_organisation(stack: Stack) -> None:
    async with acting_as_service("uploads"):
        for call in (
            _stub().UpsertBatch(_upsert("az-demo")),
            _stub().ValidateBatch(
                pb.ValidateBatchRequest(organisation_id="az-demo", dcd=pb.DcdRef(dcd_code="ANGIO_HOSP"))
            ),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        # The catalogue belongs to no organisation: the call graph is enough.
        dcd = await _stub().GetDcdVersion(pb.GetDcdVersionRequest(dcd=pb.DcdRef(dcd_code="ANGIO_HOSP")))
        assert dcd.dcd_code == "ANGIO_HOSP"


@pytest.mark.parametrize(
    ("service", "method"),
    [
        ("uploads", "FindRegistrationsByField"),  # intake's look-up, not the Upload Center's
        ("uploads", "GetRegistration"),
        ("intake", "UpsertBatch"),  # intake links files; it never writes registrations
        ("pseudonymisation", "GetDcdVersion"),
        ("sim", "GetDcdVersion"),
    ],
)
async def test_a_service_may_call_only_the_methods_of_the_call_graph(
    stack: Stack, service: str, method: str
) -> None:
    requests = {
        "FindRegistrationsByField": pb.FindRegistrationsByFieldRequest(
            organisation_id="az-demo", field="X", value="y"
        ),
        "GetRegistration": pb.GetRegistrationRequest(id="nope"),
        "UpsertBatch": _upsert("az-demo"),
        "GetDcdVersion": pb.GetDcdVersionRequest(dcd=pb.DcdRef(dcd_code="ANGIO_HOSP")),
    }
    async with acting_as_service(service, ActingFor("az-demo", NURSE)):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await getattr(_stub(), method)(requests[method])
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_people_are_not_bound_by_the_service_rules(stack: Stack) -> None:
    """A user's forwarded token is judged by its memberships, as before; acting-for
    metadata is read from services only."""
    from hdhub.common.auth import verifier

    current_principal.set(await verifier().verify(await stack.token("az-demo-his")))
    reply = await _stub().UpsertBatch(_upsert("az-demo"))
    assert not reply.errors
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _stub().UpsertBatch(_upsert("lab-demo"))
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_a_delivery_job_carries_the_organisation_and_who_submitted(stack: Stack) -> None:
    """The delivery worker later calls portal and pseudonymisation for this organisation
    alone, in the name of who submitted."""
    from sqlalchemy import select

    from hdhub.registrations.delivery.queue import DELIVER
    from hdhub.registrations.store import Job

    body = {"organisation_id": "az-demo", "dcd": "ANGIO_HOSP", "values": record(), "submit": True}
    r = await stack.client.post("/api/v1/registrations", json=body, headers=await stack.headers(NURSE))
    assert r.status_code == 201, r.text
    registrations = stack.service("registrations").registrations
    async with registrations.db.system_session() as session:
        jobs = (
            await session.execute(select(Job).where(Job.subject_id == r.json()["id"], Job.kind == DELIVER))
        ).scalars()
        assert [JobQueue.acting_for(j) for j in jobs] == [ActingFor("az-demo", NURSE)]


async def test_nippin_acting_for_one_organisation_streams_no_other_organisations_registrations(
    stack: Stack,
) -> None:
    request = pb.StreamReimbursedRegistrationsRequest(organisation_id="lab-demo")
    async with acting_as_service("nippin", ActingFor("az-demo", "nippin-nightly-report")):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            async for _ in _stub().StreamReimbursedRegistrations(request):
                pass
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    async with acting_as_service("nippin", ActingFor("lab-demo", "nippin-nightly-report")):
        pages = [p async for p in _stub().StreamReimbursedRegistrations(request)]
    assert all(p.registrations_arrow for p in pages)


async def test_only_nippin_lists_the_organisations_with_reimbursed_registrations(stack: Stack) -> None:
    request = pb.ListReimbursedOrganisationsRequest()
    async with acting_as_service("nippin"):
        listed = await _stub().ListReimbursedOrganisations(request)
    assert list(listed.organisation_ids) == sorted(listed.organisation_ids)
    person = (("authorization", f"Bearer {await stack.token('manager@az-demo.test')}"),)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _stub().ListReimbursedOrganisations(request, metadata=person)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    async with acting_as_service("uploads"):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await _stub().ListReimbursedOrganisations(request)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
