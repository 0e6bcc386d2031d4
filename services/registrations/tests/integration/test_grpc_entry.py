"""hdhub.registrations.v1's data-entry methods (the portal's forms) over a real gRPC
channel: the definition, a partial record evaluated as the person types, save with
If-Match, submit, reopen, delete, the history with its delivery, and another
organisation's member refused."""

from __future__ import annotations

import asyncio
import json
import time

import grpc
import pytest

from hdhub.common.grpc import problem_from_rpc_error
from hdhub.proto.registrations.v1 import registrations_pb2 as pb
from services.registrations.tests.integration.test_grpc_api import stub_as
from tests.support.samples import record
from tests.support.stack import Stack

NURSE = "nurse@az-demo.test"  # registrant of az-demo
BIOLOGIST = "biologist@lab-demo.test"  # registrant of lab-demo
ANGIO = pb.DcdRef(dcd_code="ANGIO_HOSP")


def states(reply: pb.EvaluateFormResponse) -> dict[str, pb.FormFieldState]:
    return {f.field: f for f in reply.fields}


async def test_the_definition_is_the_whole_form_with_its_latest_flag(stack: Stack) -> None:
    stub = await stub_as(stack, NURSE)
    reply = await stub.GetDcdDefinition(pb.GetDcdDefinitionRequest(dcd=ANGIO))
    definition = json.loads(reply.definition_json)
    assert reply.latest and definition["dcd_code"] == "ANGIO_HOSP"
    assert [i["name"] for i in definition["survey"]][:2] == ["patient", "CD_RIZIV_TREAT_PHYS"]
    assert "sex" in definition["codelists"]


async def test_a_partial_record_gives_relevance_required_computed_values_and_errors(stack: Stack) -> None:
    stub = await stub_as(stack, NURSE)
    values = {
        "CD_INDICATION": "other",
        "MS_HEIGHT": "180",
        "MS_WEIGHT": "81",
        "DT_HOSPZ": "10/01/2024",
        "DT_DISCH": "05/01/2024",
    }
    reply = await stub.EvaluateForm(
        pb.EvaluateFormRequest(
            organisation_id="az-demo", dcd=ANGIO, values_json=json.dumps(values), language="fr"
        )
    )
    got = states(reply)
    # Skip logic: "other" brings its text and leaves out the STEMI questions.
    assert got["TX_INDICATION_OTHER"].relevant and got["TX_INDICATION_OTHER"].required
    assert not got["DT_SYMPT_ONSET"].relevant and not got["DT_SYMPT_ONSET"].required
    assert not got["DT_CABG_1"].relevant
    # Calculations.
    assert json.loads(got["MS_BMI"].value_json) == 25 and json.loads(got["MS_LOS"].value_json) == -5
    # A cross-field constraint, in French, at its field.
    [error] = got["DT_DISCH"].errors
    assert error.rule == "constraint" and "date de sortie" in error.message
    assert [e.rule for e in got["TX_PAT_LAST_NAME"].errors] == ["required"]
    assert len(reply.errors) == sum(len(f.errors) for f in reply.fields)


async def test_save_submit_reopen_delete_with_if_match_and_history(stack: Stack) -> None:
    stub = await stub_as(stack, NURSE)
    values = record()
    draft = dict(values, CD_INDICATION="")
    saved = await stub.SaveRegistration(
        pb.SaveRegistrationRequest(
            organisation_id="az-demo", dcd=ANGIO, values_json=json.dumps(draft), language="en"
        )
    )
    reg = saved.registration
    assert saved.created and reg.status == "open" and reg.version == 1
    assert [(e.field, e.rule) for e in saved.errors] == [("CD_INDICATION", "required")]
    # Submitting the incomplete draft stores nothing and says why.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.SaveRegistration(
            pb.SaveRegistrationRequest(
                organisation_id="az-demo",
                registration_id=reg.id,
                expected_version=1,
                values_json=json.dumps(draft),
                submit=True,
            )
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # A save against a version that is no longer the current one is refused.
    second = await stub.SaveRegistration(
        pb.SaveRegistrationRequest(
            organisation_id="az-demo",
            registration_id=reg.id,
            expected_version=1,
            values_json=json.dumps(values),
        )
    )
    assert second.registration.version == 2 and not second.errors
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.SaveRegistration(
            pb.SaveRegistrationRequest(
                organisation_id="az-demo",
                registration_id=reg.id,
                expected_version=1,
                values_json=json.dumps(draft),
            )
        )
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    problem = problem_from_rpc_error(err.value)
    assert problem.slug == "stale-version" and "changed since you read it" in (problem.detail or "")
    submitted = await stub.ActOnRegistration(
        pb.ActOnRegistrationRequest(id=reg.id, expected_version=2, action=pb.REGISTRATION_ACTION_SUBMIT)
    )
    assert submitted.registration.status in ("sending", "submitted")
    assert submitted.registration.registration_code
    # Delete is not allowed once submitted.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ActOnRegistration(
            pb.ActOnRegistrationRequest(id=reg.id, action=pb.REGISTRATION_ACTION_DELETE)
        )
    assert problem_from_rpc_error(err.value).slug == "transition-not-allowed"
    history = await stub.GetRegistrationHistory(pb.GetRegistrationHistoryRequest(id=reg.id))
    started = time.monotonic()
    while not history.HasField("delivery") and time.monotonic() - started < 20:
        await asyncio.sleep(0.05)  # the delivery worker sends it (its row appears then)
        history = await stub.GetRegistrationHistory(pb.GetRegistrationHistoryRequest(id=reg.id))
    # (once sent, the worker's "processed" may follow)
    assert [v.action for v in history.versions][:3] == ["create", "save", "submit"]
    assert history.versions[1].changed_fields == ["CD_INDICATION"]
    assert json.loads(history.versions[0].values_json).get("CD_INDICATION") is None
    assert history.versions[1].via == "portal" and history.versions[1].actor == NURSE
    assert history.HasField("delivery") and history.delivery.state


async def test_a_new_draft_is_deleted(stack: Stack) -> None:
    stub = await stub_as(stack, NURSE)
    saved = await stub.SaveRegistration(
        pb.SaveRegistrationRequest(organisation_id="az-demo", dcd=ANGIO, values_json=json.dumps(record()))
    )
    gone = await stub.ActOnRegistration(
        pb.ActOnRegistrationRequest(
            id=saved.registration.id, expected_version=1, action=pb.REGISTRATION_ACTION_DELETE
        )
    )
    assert gone.registration.status == "deleted"


async def test_bad_values_are_refused_in_words(stack: Stack) -> None:
    stub = await stub_as(stack, NURSE)
    for text in ("[1]", "not json", '{"a": 1, "a": 2}'):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.EvaluateForm(
                pb.EvaluateFormRequest(organisation_id="az-demo", dcd=ANGIO, values_json=text)
            )
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # Nested 50,000 levels deep (a fresh-eyes trial's input: it was an internal error, the
    # parser's recursion): refused by the depth REST bodies have, on every method reading it.
    deep = "[" * 50_000 + "]" * 50_000
    stream = stub.EvaluateFormStream(timeout=30)
    await stream.write(pb.EvaluateFormRequest(organisation_id="az-demo", dcd=ANGIO, values_json=deep))
    for call in (
        stub.EvaluateForm(pb.EvaluateFormRequest(organisation_id="az-demo", dcd=ANGIO, values_json=deep)),
        stub.SaveRegistration(
            pb.SaveRegistrationRequest(organisation_id="az-demo", dcd=ANGIO, values_json=deep)
        ),
        stream.read(),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        problem = problem_from_rpc_error(err.value)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert [(e.field, e.rule) for e in problem.errors] == [("values_json", "max-depth")]
        assert "at most 32 levels" in problem.errors[0].message
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.SaveRegistration(
            pb.SaveRegistrationRequest(
                organisation_id="az-demo", dcd=ANGIO, values_json=json.dumps(record(MS_HEIGHT="tall"))
            )
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_another_organisations_member_is_refused(stack: Stack) -> None:
    nurse = await stub_as(stack, NURSE)
    saved = await nurse.SaveRegistration(
        pb.SaveRegistrationRequest(organisation_id="az-demo", dcd=ANGIO, values_json=json.dumps(record()))
    )
    reg_id = saved.registration.id
    other = await stub_as(stack, BIOLOGIST)
    for call in (
        other.EvaluateForm(pb.EvaluateFormRequest(organisation_id="az-demo", dcd=ANGIO, values_json="{}")),
        other.SaveRegistration(
            pb.SaveRegistrationRequest(organisation_id="az-demo", dcd=ANGIO, values_json=json.dumps(record()))
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    for call in (
        other.GetRegistrationHistory(pb.GetRegistrationHistoryRequest(id=reg_id)),
        other.ActOnRegistration(pb.ActOnRegistrationRequest(id=reg_id, action=pb.REGISTRATION_ACTION_DELETE)),
        # Their own organisation named, another's registration: still not found.
        other.SaveRegistration(
            pb.SaveRegistrationRequest(
                organisation_id="lab-demo", registration_id=reg_id, values_json=json.dumps(record())
            )
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    nurse = await stub_as(stack, NURSE)  # the caller is the context's principal
    history = await nurse.GetRegistrationHistory(pb.GetRegistrationHistoryRequest(id=reg_id))
    assert history.registration.status == "open"


async def test_a_form_evaluated_over_one_stream_answers_each_change_as_the_call_does(stack: Stack) -> None:
    """The live form's stream: each change answered in order, exactly as EvaluateForm
    answers it (the same engine behind both)."""
    stub = await stub_as(stack, NURSE)
    changes = [
        {"CD_INDICATION": "other"},
        {"CD_INDICATION": "other", "MS_HEIGHT": "180", "MS_WEIGHT": "81"},
        {"DT_HOSPZ": "10/01/2024", "DT_DISCH": "05/01/2024"},
    ]
    requests = [
        pb.EvaluateFormRequest(organisation_id="az-demo", dcd=ANGIO, values_json=json.dumps(v), language=lang)
        for v, lang in zip(changes, ("en", "fr", "nl"), strict=True)
    ]
    call = stub.EvaluateFormStream(timeout=30)
    streamed = []
    for request in requests:
        await call.write(request)
        streamed.append(await call.read())
    await call.done_writing()
    assert await call.read() == grpc.aio.EOF
    assert streamed == [await stub.EvaluateForm(r) for r in requests]
    assert json.loads(states(streamed[1])["MS_BMI"].value_json) == 25
    assert "ontslag" in states(streamed[2])["DT_DISCH"].errors[0].message.lower()


async def test_the_stream_refuses_another_organisation_bad_values_and_a_revoked_token(stack: Stack) -> None:
    """Each message is checked as a call is: another organisation's member is refused at
    the first, bad values end the stream in words, and a token revoked while the form is
    open (the person signed out everywhere) ends it UNAUTHENTICATED."""
    from hdhub.common import auth, revocation
    from hdhub.common.auth import current_principal

    def asking(organisation: str, values: str = "{}") -> pb.EvaluateFormRequest:
        return pb.EvaluateFormRequest(organisation_id=organisation, dcd=ANGIO, values_json=values)

    other = await stub_as(stack, BIOLOGIST)
    call = other.EvaluateFormStream(timeout=30)
    await call.write(asking("lab-demo"))
    assert (await call.read()).fields  # their own organisation: answered
    await call.write(asking("az-demo"))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call.read()
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED

    nurse = await stub_as(stack, NURSE)
    call = nurse.EvaluateFormStream(timeout=30)
    await call.write(asking("az-demo", "not json"))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call.read()
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    principal = current_principal.get()
    assert principal is not None
    call = nurse.EvaluateFormStream(timeout=30)
    await call.write(asking("az-demo"))
    assert (await call.read()).fields
    await asyncio.sleep(1.1)  # revocation is by whole seconds: the token's second is past
    await revocation.revocations().revoke(auth.revocation_subject(principal))
    await call.write(asking("az-demo"))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call.read()
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
