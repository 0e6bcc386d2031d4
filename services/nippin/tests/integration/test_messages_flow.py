"""From a submitted implant registration to MyCareNet: the hand-over from registrations (a
durable job, exactly once), the message and its statuses, both interfaces to the stand-in,
TACKs, retries while MyCareNet is down, and archiving."""

from __future__ import annotations

from datetime import timedelta

from hdhub.common.auth import ActingFor
from hdhub.common.db import utcnow
from hdhub.common.grpc import channel
from hdhub.common.service_auth import acting_as_service
from hdhub.proto.nippin.v1 import nippin_pb2 as pb
from hdhub.proto.nippin.v1 import nippin_pb2_grpc as pb_grpc
from services.nippin.tests.integration.support import (
    MANAGER,
    ORG,
    as_operator,
    implant,
    message_in,
    messages_of,
    mycarenet,
    submit,
    until,
)
from tests.support.stack import Stack


async def test_a_submitted_implant_is_sent_over_rest_and_its_tack_recorded(stack: Stack) -> None:
    async with mycarenet(stack):
        before = (await as_operator(stack, "GET", "/sim/mycarenet"))["messages"]
        reg = await submit(stack, implant())
        message = await message_in(stack, reg["id"], "SENT")
        assert message["tack_major"] == "urn:nip:tack:result:major:success"
        assert message["interface"] == "REST"
        assert message["implant_date"] is not None
        r = await stack.client.get(
            f"/api/v1/nippin/{ORG}/messages/{message['id']}", headers=await stack.headers(MANAGER)
        )
        moves = [(t["from_status"], t["to_status"]) for t in r.json()["transitions"]]
        assert moves == [(None, "TO_SEND"), ("TO_SEND", "SENT")]
        assert "PatientSSIN" not in r.text and reg["values"]["IDC_PAT"] not in r.text
        assert (await as_operator(stack, "GET", "/sim/mycarenet"))["messages"] == before + 1


async def test_a_submission_handed_over_twice_makes_one_message(stack: Stack) -> None:
    reg = await submit(stack, implant(CD_REIMBURSEMENT="no"))  # makes no job of its own
    request = pb.SubmitRegistrationRequest(
        organisation_id=ORG,
        registration_id=reg["id"],
        registration_version=reg["version"],
        registration_code="R-1",
        dcd_code="PACEMAKER",
        dcd_version="1.0.0",
        fields=[pb.BoundField(xml_name="ImplantDate", technical_name="DT_IMPLANT", value="2025-11-20")],
    )
    async with acting_as_service("registrations", ActingFor(ORG, "nurse@az-demo.test")):
        stub = pb_grpc.NippinServiceStub(channel("nippin"))
        first = await stub.SubmitRegistration(request)
        again = await stub.SubmitRegistration(request)
    assert (first.duplicate, again.duplicate) == (False, True)
    assert again.message_id == first.message_id
    assert len(await messages_of(stack, reg["id"])) == 1


async def test_not_reimbursed_makes_no_message(stack: Stack) -> None:
    reg = await submit(stack, implant(CD_REIMBURSEMENT="no"))
    await until(lambda: _true(), stack=stack, timeout=1)
    assert await messages_of(stack, reg["id"]) == []


async def _true() -> bool:
    return True


async def test_a_patient_without_ssin_makes_an_invalid_message_with_its_reason(stack: Stack) -> None:
    values = implant(IDC_PAT="", TX_PAT_LAST_NAME="Peeters", TX_PAT_FIRST_NAME="Jan")
    reg = await submit(stack, values)
    message = await message_in(stack, reg["id"], "INVALID")
    assert message["invalid_reasons"] == [
        "implant: The content of element 'nip:implant' is not complete. Tag 'nip:PatientSSIN' expected."
    ]
    assert message["sends"] == 0


async def test_mycarenet_down_gives_error_then_sent_when_it_returns(stack: Stack) -> None:
    async with mycarenet(stack, "down", retry_first_seconds=0.1, retry_max_seconds=0.2):
        reg = await submit(stack, implant())
        message = await message_in(stack, reg["id"], "ERROR")
        assert message["last_error"] == "MyCareNet answered HTTP 503"
        await as_operator(stack, "PUT", "/sim/mycarenet", json={"mode": "accept"})
        message = await message_in(stack, reg["id"], "SENT")
        assert message["sends"] >= 2 and message["last_error"] == ""


async def test_a_timeout_is_an_error_retried(stack: Stack) -> None:
    async with mycarenet(stack, "timeout", retry_first_seconds=60.0):
        stack.service("nippin").messages.rest.timeout = 0.3
        reg = await submit(stack, implant())
        message = await message_in(stack, reg["id"], "ERROR")
        assert message["last_error"] == "MyCareNet did not answer within 0.3 s"


async def test_a_refusing_tack_errors_then_archives_after_max_refusals(stack: Stack) -> None:
    later = lambda: utcnow() + timedelta(hours=2)  # noqa: E731 - the retries are due
    async with mycarenet(stack, "refuse", max_refusals=2):
        reg = await submit(stack, implant())
        message = await message_in(stack, reg["id"], "ERROR")
        assert message["last_error"] == "TACK failure (NIP-E-042: the insurer refuses the message)"
        assert message["tack_messages"] == [
            {"severity": "error", "code": "NIP-E-042", "text": "the insurer refuses the message"}
        ]
        message = await message_in(stack, reg["id"], "ARCHIVED", now=later)
        assert message["refusals"] == 2


async def test_file_system_interface_writes_the_folder_and_reads_the_tack_back(stack: Stack) -> None:
    async with mycarenet(stack, interface="FILE_SYSTEM"):
        reg = await submit(stack, implant())
        message = await message_in(stack, reg["id"], "SENT")

        async def answered() -> bool:
            found = await messages_of(stack, reg["id"])
            return bool(found[0]["tack_at"])

        await until(answered, stack=stack)
        message = (await messages_of(stack, reg["id"]))[0]
        assert message["interface"] == "FILE_SYSTEM"
        assert message["tack_outcome"] == "success"


async def test_a_person_archives_an_invalid_message_with_a_reason(stack: Stack) -> None:
    reg = await submit(stack, implant(IDC_PAT="", TX_PAT_LAST_NAME="Janssens", TX_PAT_FIRST_NAME="An"))
    message = await message_in(stack, reg["id"], "INVALID")
    headers = await stack.headers(MANAGER)
    url = f"/api/v1/nippin/{ORG}/messages/{message['id']}/archive"
    r = await stack.client.post(url, json={"reason": "foreign patient, billed on paper"}, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "ARCHIVED"
    again = await stack.client.post(url, json={"reason": "twice"}, headers=headers)
    assert again.status_code == 409
    assert again.json()["type"].endswith("message-not-archivable")


async def test_a_corrected_and_resubmitted_registration_makes_a_new_message(stack: Stack) -> None:
    values = implant()
    async with mycarenet(stack):
        reg = await submit(stack, values)
        first = await message_in(stack, reg["id"], "SENT")

        async def submitted() -> bool:
            r = await stack.client.get(
                f"/api/v1/registrations/{reg['id']}", headers=await stack.headers("nurse@az-demo.test")
            )
            return bool(r.json()["status"] == "submitted")

        await until(submitted, stack=stack)
        await as_operator(
            stack,
            "POST",
            f"/api/v1/registrations/{reg['id']}/review",
            json={"decision": "corrections_needed"},
        )
        corrected = await submit(stack, {**values, "CD_DEVICE": "PM-40099999"})
        assert corrected["id"] == reg["id"]

        async def two() -> list[dict[str, object]] | None:
            found = await messages_of(stack, reg["id"])
            return found if len(found) == 2 and all(m["status"] == "SENT" for m in found) else None

        found = await until(two, stack=stack)
        assert {m["id"] for m in found} > {first["id"]}
        newest = max(found, key=lambda m: int(str(m["registration_version"])))
        assert newest["id"] != first["id"]
