"""hdhub.registrations.v1 over a real gRPC channel: batches for the Upload Center,
look-ups for file linking, and the caller's organisation enforced."""

from __future__ import annotations

import json

import grpc
import pytest

from hdhub.common.auth import current_principal
from hdhub.common.grpc import channel
from hdhub.proto.registrations.v1 import registrations_pb2 as pb
from hdhub.proto.registrations.v1 import registrations_pb2_grpc as pb_grpc
from tests.support.arrow_rows import encode_rows
from tests.support.samples import VALID, record
from tests.support.stack import Stack

HIS = "az-demo-his"


async def stub_as(stack: Stack, who: str) -> pb_grpc.RegistrationsServiceStub:
    from hdhub.common.auth import verifier

    current_principal.set(await verifier().verify(await stack.token(who)))
    return pb_grpc.RegistrationsServiceStub(channel("registrations"))


def batch(rows: list[dict[str, str]]) -> bytes:
    return encode_rows(rows)


async def test_validate_batch_reports_row_field_rule(stack: Stack) -> None:
    stub = await stub_as(stack, HIS)
    rows = [record(), record(DT_HOSPZ="31/02/2024"), record(CD_PAT_SEX="Q")]
    reply = await stub.ValidateBatch(
        pb.ValidateBatchRequest(
            organisation_id="az-demo",
            dcd=pb.DcdRef(dcd_code="ANGIO_HOSP"),
            rows_arrow=batch(rows),
            language="fr",
        )
    )
    assert reply.rows == 3 and reply.valid_rows == 1 and reply.dcd_version == "1.0.0"
    assert [(e.row_index, e.field, e.rule) for e in reply.errors] == [
        (1, "DT_HOSPZ", "type"),
        (2, "CD_PAT_SEX", "choice"),
    ]


async def test_validate_batch_answers_the_same_with_the_row_engine(stack: Stack) -> None:
    stub = await stub_as(stack, HIS)
    rows = [record(), record(DT_HOSPZ="31/02/2024", STATUS="maybe"), record(CD_PAT_SEX="Q", MS_HEIGHT="")]
    request = pb.ValidateBatchRequest(
        organisation_id="az-demo", dcd=pb.DcdRef(dcd_code="ANGIO_HOSP"), rows_arrow=batch(rows), language="nl"
    )
    settings = stack.service("registrations").settings
    before = settings.columnar_validation
    try:
        settings.columnar_validation = True
        columnar = await stub.ValidateBatch(request)
        settings.columnar_validation = False
        by_rows = await stub.ValidateBatch(request)
    finally:
        settings.columnar_validation = before
    assert columnar == by_rows
    assert [(e.row_index, e.rule) for e in columnar.errors] == [
        (1, "type"),
        (1, "status"),
        (2, "choice"),
        (2, "required"),
    ]


async def test_upsert_batch_modes(stack: Stack) -> None:
    stub = await stub_as(stack, HIS)
    good, other, bad = record(), record(), record(MS_HEIGHT="tall")
    ref = pb.DcdRef(dcd_code="ANGIO_HOSP", version="1.0.0")

    def request(rows: list[dict[str, str]], **kw: object) -> pb.UpsertBatchRequest:
        return pb.UpsertBatchRequest(
            organisation_id="az-demo", dcd=ref, rows_arrow=batch(rows), language="en", **kw
        )

    # Validate all: one bad row stores nothing.
    reply = await stub.UpsertBatch(request([good, bad], validation_mode=pb.VALIDATION_MODE_VALIDATE_ALL))
    assert reply.nothing_stored and [r.outcome for r in reply.results] == [pb.ROW_OUTCOME_REJECTED] * 2
    # Dry run plans without storing.
    reply = await stub.UpsertBatch(request([good, other], dry_run=True))
    assert reply.nothing_stored and [r.outcome for r in reply.results] == [pb.ROW_OUTCOME_CREATED] * 2
    assert not reply.results[0].registration_id
    # None: valid rows are stored, the bad one is rejected with its error.
    reply = await stub.UpsertBatch(request([good, bad, other], submit=True, ignore_duplicates=True))
    assert [r.outcome for r in reply.results] == [
        pb.ROW_OUTCOME_CREATED,
        pb.ROW_OUTCOME_REJECTED,
        pb.ROW_OUTCOME_CREATED,
    ]
    assert [(e.row_index, e.field) for e in reply.errors] == [(1, "MS_HEIGHT")]
    assert reply.results[0].status == "sending"
    # The same rows again: duplicates are ignored.
    reply = await stub.UpsertBatch(request([good], submit=True, ignore_duplicates=True))
    assert reply.results[0].outcome == pb.ROW_OUTCOME_IGNORED_DUPLICATE
    # A changed row with the stored record as master is kept as stored...
    changed = {**good, "MS_WEIGHT": "90.0"}
    reply = await stub.UpsertBatch(request([changed], submit=True, conflict_master=pb.CONFLICT_MASTER_STORED))
    assert reply.results[0].outcome == pb.ROW_OUTCOME_KEPT_STORED
    # ...and with the new record as master it replaces it (latest submission wins).
    reply = await stub.UpsertBatch(request([changed], submit=True, conflict_master=pb.CONFLICT_MASTER_NEW))
    assert reply.results[0].outcome == pb.ROW_OUTCOME_UPDATED
    got = await stub.GetRegistration(pb.GetRegistrationRequest(id=reply.results[0].registration_id))
    assert json.loads(got.registration.values_json)["MS_WEIGHT"] == "90.0"
    # Save on validations keeps rows with errors as Open drafts.
    reply = await stub.UpsertBatch(
        request(
            [record(CD_INDICATION="")], validation_mode=pb.VALIDATION_MODE_SAVE_ON_VALIDATIONS, submit=True
        )
    )
    assert reply.results[0].outcome == pb.ROW_OUTCOME_CREATED and reply.results[0].status == "open"
    # A dry run says the status a row would leave a stored draft in, as the real run does.
    draft = record()
    reply = await stub.UpsertBatch(request([draft]))
    assert reply.results[0].status == "open"
    stored = reply.results[0].registration_id
    reply = await stub.UpsertBatch(request([{**draft, "MS_WEIGHT": "81.0"}], submit=True, dry_run=True))
    assert (reply.results[0].outcome, reply.results[0].status) == (pb.ROW_OUTCOME_UPDATED, "sending")
    got = await stub.GetRegistration(pb.GetRegistrationRequest(id=stored))
    assert got.registration.status == "open"
    reply = await stub.UpsertBatch(request([{**draft, "MS_WEIGHT": "81.0"}], submit=True))
    assert (reply.results[0].outcome, reply.results[0].status) == (pb.ROW_OUTCOME_UPDATED, "sending")


async def test_find_by_field_links_files_to_registrations(stack: Stack) -> None:
    stub = await stub_as(stack, "lab-demo-lims")
    ngs = dict(VALID["NGS"])
    reply = await stub.UpsertBatch(
        pb.UpsertBatchRequest(
            organisation_id="lab-demo", dcd=pb.DcdRef(dcd_code="NGS"), rows_arrow=batch([ngs])
        )
    )
    assert reply.results[0].outcome in (pb.ROW_OUTCOME_CREATED, pb.ROW_OUTCOME_IGNORED_DUPLICATE), reply
    found = await stub.FindRegistrationsByField(
        pb.FindRegistrationsByFieldRequest(
            organisation_id="lab-demo", field="TX_VCF_FILE_NAME", value=ngs["TX_VCF_FILE_NAME"]
        )
    )
    assert len(found.registrations) == 1 and found.registrations[0].dcd_code == "NGS"
    none = await stub.FindRegistrationsByField(
        pb.FindRegistrationsByFieldRequest(
            organisation_id="lab-demo", field="TX_VCF_FILE_NAME", value="nope.vcf"
        )
    )
    assert len(none.registrations) == 0
    dcd = await stub.GetDcdVersion(pb.GetDcdVersionRequest(dcd=pb.DcdRef(dcd_code="ANGIO_HOSP_PCI")))
    names = [f.technical_name for f in dcd.fields]
    assert "DT_PCI_1" in names and "DT_PCI_5" in names and list(dcd.business_key) == ["IDC_PAT", "DT_HOSPZ"]


@pytest.mark.parametrize("method", ["ValidateBatch", "UpsertBatch", "FindRegistrationsByField"])
async def test_another_organisation_is_refused(stack: Stack, method: str) -> None:
    stub = await stub_as(stack, "lab-demo-lims")
    rows = batch([record()])
    requests = {
        "ValidateBatch": pb.ValidateBatchRequest(
            organisation_id="az-demo", dcd=pb.DcdRef(dcd_code="ANGIO_HOSP"), rows_arrow=rows
        ),
        "UpsertBatch": pb.UpsertBatchRequest(
            organisation_id="az-demo", dcd=pb.DcdRef(dcd_code="ANGIO_HOSP"), rows_arrow=rows
        ),
        "FindRegistrationsByField": pb.FindRegistrationsByFieldRequest(
            organisation_id="az-demo", field="IDC_PAT", value="x"
        ),
    }
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await getattr(stub, method)(requests[method])
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_get_registration_of_another_organisation_is_not_found(stack: Stack) -> None:
    stub = await stub_as(stack, HIS)
    reply = await stub.UpsertBatch(
        pb.UpsertBatchRequest(
            organisation_id="az-demo", dcd=pb.DcdRef(dcd_code="ANGIO_HOSP"), rows_arrow=batch([record()])
        )
    )
    reg_id = reply.results[0].registration_id
    other = await stub_as(stack, "lab-demo-lims")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await other.GetRegistration(pb.GetRegistrationRequest(id=reg_id))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_calls_without_a_token_are_unauthenticated(stack: Stack) -> None:
    current_principal.set(None)
    stub = pb_grpc.RegistrationsServiceStub(channel("registrations"))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetRegistration(pb.GetRegistrationRequest(id="x"))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_a_batch_applied_twice_is_stored_once(stack: Stack) -> None:
    import uuid

    stub = await stub_as(stack, HIS)
    batch_id = uuid.uuid4().hex
    rows = [record(), record()]
    req = pb.UpsertBatchRequest(
        organisation_id="az-demo",
        dcd=pb.DcdRef(dcd_code="ANGIO_HOSP"),
        rows_arrow=batch(rows),
        batch_id=batch_id,
        submit=True,
    )
    first = await stub.UpsertBatch(req)
    again = await stub.UpsertBatch(req)  # e.g. a worker taking over after a crash
    assert [r.outcome for r in first.results] == [pb.ROW_OUTCOME_CREATED] * 2
    assert list(again.results) == list(first.results)
    for r in first.results:
        history = await stack.client.get(
            f"/api/v1/registrations/{r.registration_id}/history", headers=await stack.headers(HIS)
        )
        assert [e["action"] for e in history.json()["items"]][:2] == ["create", "submit"]  # once, not twice
        assert [e["action"] for e in history.json()["items"]].count("submit") == 1
    other = pb.UpsertBatchRequest(
        organisation_id="az-demo",
        dcd=pb.DcdRef(dcd_code="ANGIO_HOSP"),
        rows_arrow=batch([record()]),
        batch_id=batch_id,
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.UpsertBatch(other)
    assert err.value.code() == grpc.StatusCode.ABORTED


async def test_a_pipelined_batch_is_stored_after_the_batch_it_follows(stack: Stack) -> None:
    import asyncio
    import uuid

    stub = await stub_as(stack, HIS)
    ref = pb.DcdRef(dcd_code="ANGIO_HOSP")
    first_id, second_id = uuid.uuid4().hex, uuid.uuid4().hex
    earlier = record(MS_WEIGHT="70.0")
    later = {**earlier, "MS_WEIGHT": "71.0"}  # the same patient and stay: the same business key

    def request(rows: list[dict[str, str]], batch_id: str, after: str = "") -> pb.UpsertBatchRequest:
        return pb.UpsertBatchRequest(
            organisation_id="az-demo",
            dcd=ref,
            rows_arrow=batch(rows),
            batch_id=batch_id,
            after_batch_id=after,
            submit=True,
        )

    # The second batch arrives first: it waits for the first to be stored, then replaces it.
    second = asyncio.ensure_future(stub.UpsertBatch(request([later], second_id, after=first_id)))
    await asyncio.sleep(0.3)
    assert not second.done()
    first = await stub.UpsertBatch(request([earlier, record()], first_id))
    second_reply = await asyncio.wait_for(second, 30)
    assert [r.outcome for r in first.results] == [pb.ROW_OUTCOME_CREATED] * 2
    assert second_reply.results[0].outcome == pb.ROW_OUTCOME_UPDATED
    assert second_reply.results[0].registration_id == first.results[0].registration_id
    got = await stub.GetRegistration(pb.GetRegistrationRequest(id=first.results[0].registration_id))
    assert json.loads(got.registration.values_json)["MS_WEIGHT"] == "71.0"  # the later row wins
    # Sent again (a worker taking over), it is replayed at once: the batch it follows is stored.
    again = await stub.UpsertBatch(request([later], second_id, after=first_id))
    assert list(again.results) == list(second_reply.results)


async def test_a_batch_following_one_never_stored_is_refused(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uuid

    from hdhub.registrations.batches import replay

    monkeypatch.setattr(replay, "PIPELINE_WAIT_SECONDS", 0.2)
    stub = await stub_as(stack, HIS)

    async def stored() -> int:
        r = await stack.client.get(
            "/api/v1/registrations", params={"limit": 1}, headers=await stack.headers(HIS)
        )
        return int(r.json()["total"])

    before = await stored()
    req = pb.UpsertBatchRequest(
        organisation_id="az-demo",
        dcd=pb.DcdRef(dcd_code="ANGIO_HOSP"),
        rows_arrow=batch([record()]),
        batch_id=uuid.uuid4().hex,
        after_batch_id=uuid.uuid4().hex,
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.UpsertBatch(req)
    assert err.value.code() == grpc.StatusCode.ABORTED and "previous-batch-not-stored" in str(
        err.value.trailing_metadata()
    )
    assert await stored() == before  # nothing of it was stored
    req.batch_id, req.after_batch_id = uuid.uuid4().hex, ""
    assert (await stub.UpsertBatch(req)).results[0].outcome == pb.ROW_OUTCOME_CREATED
    assert await stored() == before + 1


async def test_a_file_sent_again_updates_its_patients_without_ssin(stack: Stack) -> None:
    import uuid

    stub = await stub_as(stack, HIS)
    values = {k: v for k, v in record().items() if k != "IDC_PAT"}
    row = {**values, "TX_PAT_LAST_NAME": f"Peeters-{uuid.uuid4().hex[:8]}", "TX_PAT_FIRST_NAME": "Ann"}

    def request(rows: list[dict[str, str]]) -> pb.UpsertBatchRequest:
        return pb.UpsertBatchRequest(
            organisation_id="az-demo", dcd=pb.DcdRef(dcd_code="ANGIO_HOSP"), rows_arrow=batch(rows)
        )

    first = await stub.UpsertBatch(request([row]))
    again = await stub.UpsertBatch(request([{**row, "TX_PAT_FIRST_NAME": "ANN ", "MS_WEIGHT": "81.0"}]))
    assert [r.outcome for r in first.results] == [pb.ROW_OUTCOME_CREATED]
    assert [r.outcome for r in again.results] == [pb.ROW_OUTCOME_UPDATED]
    assert again.results[0].registration_id == first.results[0].registration_id
    assert not first.results[0].business_key.startswith("id:")


async def test_a_batch_that_names_no_organisation_is_refused_as_such(stack: Stack) -> None:
    stub = await stub_as(stack, HIS)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.ValidateBatch(
            pb.ValidateBatchRequest(dcd=pb.DcdRef(dcd_code="ANGIO_HOSP"), rows_arrow=batch([record()]))
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "organisation-required" in str(refused.value.trailing_metadata())


async def test_a_batch_naming_a_column_twice_is_refused_as_such(stack: Stack) -> None:
    import pyarrow as pa

    from hdhub.registrations.batches.arrow import encode_batch

    stub = await stub_as(stack, HIS)
    twice = pa.RecordBatch.from_arrays(
        [pa.array(["170"]), pa.array(["180"])], names=["MS_HEIGHT", "MS_HEIGHT"]
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.ValidateBatch(
            pb.ValidateBatchRequest(
                organisation_id="az-demo",
                dcd=pb.DcdRef(dcd_code="ANGIO_HOSP"),
                rows_arrow=encode_batch(twice),
            )
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "duplicate-column" in str(refused.value.trailing_metadata())


async def test_the_catalogue_lists_registries_dcds_and_versions_newest_first(stack: Stack) -> None:
    stub = await stub_as(stack, "nurse@az-demo.test")
    answer = await stub.ListRegistries(pb.ListRegistriesRequest())
    registries = {r.code: r for r in answer.registries}
    angio = registries["HDBP0012"]
    assert angio.abbreviation == "ANGIO" and angio.titles["en"]
    assert "ANGIO_HOSP" in {d.code for d in angio.dcds}
    rest = await stack.client.get(
        "/api/v1/registries", params={"limit": 200}, headers=await stack.headers("nurse@az-demo.test")
    )
    registries_rest = rest.json()["items"]
    assert [(r["code"], [d["code"] for d in r["dcds"]]) for r in registries_rest] == [
        (r.code, [d.code for d in r.dcds]) for r in answer.registries
    ]
    hosp = next(d for d in angio.dcds if d.code == "ANGIO_HOSP")
    assert list(hosp.versions) == [
        v["version"] for d in registries_rest[0]["dcds"] if d["code"] == "ANGIO_HOSP" for v in d["versions"]
    ]
    # A Certificate Editor's roles do not read the catalogue.
    editor = await stub_as(stack, "certificates@az-demo.test")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await editor.ListRegistries(pb.ListRegistriesRequest())
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
