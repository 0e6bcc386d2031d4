"""Access per registry (data collection): a User Manager or DP Manager grants a member the
registries it works on, the token carries them, and registrations, uploads and files of
any other registry are refused (403 ``registry-not-granted`` to create, 404 to reach one,
left out of lists), over REST and gRPC. Hospital-system clients can be limited alike; an
account request's data collections are granted on approval."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import grpc
import jwt
import pytest

from hdhub.common import auth
from hdhub.common.grpc import channel
from hdhub.proto.intake.v1 import intake_pb2, intake_pb2_grpc
from hdhub.proto.registrations.v1 import registrations_pb2, registrations_pb2_grpc
from hdhub.proto.uploads.v1 import uploads_pb2, uploads_pb2_grpc
from tests.authz.test_route_matrix import _questionnaire_response
from tests.support.samples import record
from tests.support.stack import TOKEN_PATH, Stack

ORG = "az-demo"
ANGIO, PACEMAKER = "HDBP0012", "HDBP0300"
MEMBERS = f"/api/v1/organisations/{ORG}/members"


async def _login(stack: Stack, username: str, password: str) -> str:
    form = {"grant_type": "password", "client_id": "hdhub-portal", "username": username, "password": password}
    r = await stack.client.post(TOKEN_PATH, data=form)
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


async def member_with(stack: Stack, registries: list[str] | None) -> tuple[str, str, dict[str, str]]:
    """A registrant of az-demo added by its User Manager with these grants, signed in:
    (account id, e-mail, headers)."""
    email = f"reg-{uuid.uuid4().hex[:8]}@grants.test"
    body: dict[str, Any] = {"email": email, "roles": ["registrant"]}
    if registries is not None:
        body["registries"] = registries
    r = await stack.client.post(MEMBERS, json=body, headers=await stack.headers("manager@az-demo.test"))
    assert r.status_code == 201, r.text
    r2 = await stack.client.post(
        "/api/v1/accounts/password",
        json={
            "username": email,
            "current_password": r.json()["initial_password"],
            "new_password": "grants-password-1",
        },
    )
    assert r2.status_code == 204, r2.text
    token = await _login(stack, email, "grants-password-1")
    return r.json()["account_id"], email, {"Authorization": f"Bearer {token}"}


async def angio_registration(stack: Stack) -> str:
    body = {"organisation_id": ORG, "dcd": "ANGIO_HOSP", "values": record(), "submit": False}
    r = await stack.client.post(
        "/api/v1/registrations", json=body, headers=await stack.headers("nurse@az-demo.test")
    )
    assert r.status_code in (200, 201), r.text
    return str(r.json()["id"])


async def test_the_token_carries_the_grants_and_a_narrowed_member_is_refused_other_registries(
    stack: Stack,
) -> None:
    angio = await angio_registration(stack)
    _, _, pacemaker_only = await member_with(stack, [PACEMAKER.lower()])
    claims = jwt.decode(pacemaker_only["Authorization"][7:], options={"verify_signature": False})
    assert claims["organisations"][ORG]["registries"] == [PACEMAKER]
    # Creating in a registry not granted: 403 naming it, nothing stored.
    body = {"organisation_id": ORG, "dcd": "ANGIO_HOSP", "values": record(), "submit": False}
    r = await stack.client.post("/api/v1/registrations", json=body, headers=pacemaker_only)
    assert r.status_code == 403 and r.json()["type"] == "/problems/registry-not-granted", r.text
    assert ANGIO in r.json()["detail"]
    r = await stack.client.post(
        "/proxy/api/dcd/payload/submit",
        params={"organization-id": ORG, "dcd-id": "ANGIO_HOSP"},
        json={**record(), "STATUS": "draft"},
        headers=pacemaker_only,
    )
    assert r.status_code == 403 and r.json()["type"] == "/problems/registry-not-granted", r.text
    r = await stack.client.post(
        "/fhir/QuestionnaireResponse", json=_questionnaire_response({}), headers=pacemaker_only
    )
    assert r.status_code == 403, r.text
    r = await stack.client.get(f"/fhir/QuestionnaireResponse/{angio}", headers=pacemaker_only)
    assert r.status_code == 404, r.text
    # Reaching one: as unknown as another organisation's.
    for method, path in (
        ("GET", f"/api/v1/registrations/{angio}"),
        ("GET", f"/api/v1/registrations/{angio}/history"),
        ("GET", f"/api/v1/registrations/{angio}/delivery"),
        ("POST", f"/api/v1/registrations/{angio}/submit"),
        ("DELETE", f"/api/v1/registrations/{angio}"),
    ):
        r = await stack.client.request(method, path, headers={**pacemaker_only, "If-Match": '"1"'})
        assert r.status_code == 404, (path, r.text)
    # Lists hold the granted registries only; the whole organisation's for a member of all.
    everyone = await stack.headers("nurse@az-demo.test")
    for path in ("/api/v1/registrations", f"/api/v1/deliveries?organisation_id={ORG}", "/api/v1/uploads"):
        mine = (await stack.client.get(path, headers=pacemaker_only)).json()["items"]
        assert all(i.get("project_code", PACEMAKER) == PACEMAKER for i in mine), path
        assert angio not in str(mine), path
    listed = (
        await stack.client.get("/api/v1/registrations", params={"dcd": "ANGIO_HOSP"}, headers=everyone)
    ).json()
    assert angio in str(listed["items"]) or listed["total"] > 0
    r = await stack.client.get(
        "/proxy/api/dcd/submit",
        params={"organization-id": ORG, "dcd-id": "ANGIO_HOSP"},
        headers=pacemaker_only,
    )
    assert r.status_code == 200 and r.json()["total"] == 0, r.text
    # The Upload Center's settings of a registry not granted.
    r = await stack.client.get(f"/api/v1/upload-settings/{ORG}/{ANGIO}", headers=pacemaker_only)
    assert r.status_code == 403 and r.json()["type"] == "/problems/registry-not-granted"
    assert (
        await stack.client.get(f"/api/v1/upload-settings/{ORG}/{PACEMAKER}", headers=pacemaker_only)
    ).is_success


async def test_files_of_a_registry_not_granted_are_neither_sent_nor_listed(stack: Stack) -> None:
    everyone = await stack.headers("nurse@az-demo.test")
    vcf = b"##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
    r = await stack.client.put(
        f"/api/v1/files/{ORG}/NGS/grants-{uuid.uuid4().hex[:6]}.vcf", content=vcf, headers=everyone
    )
    assert r.status_code == 201, r.text
    sent = r.json()["id"]
    _, _, hiv_only = await member_with(stack, ["HDBP0263"])
    r = await stack.client.put(f"/api/v1/files/{ORG}/NGS/refused.vcf", content=vcf, headers=hiv_only)
    assert r.status_code == 403 and r.json()["type"] == "/problems/registry-not-granted", r.text
    assert (await stack.client.get(f"/api/v1/files/{ORG}/{sent}", headers=hiv_only)).status_code == 404
    listed = (await stack.client.get(f"/api/v1/files/{ORG}", headers=hiv_only)).json()["items"]
    assert all(f["registry"] != "NGS" for f in listed)
    assert (await stack.client.get(f"/api/v1/files/{ORG}/{sent}", headers=everyone)).status_code == 200
    # The same over gRPC (the portal's file page).
    intake = intake_pb2_grpc.IntakeServiceStub(channel("intake"))
    request = intake_pb2.GetFileRequest(organisation_id=ORG, id=sent)
    token = auth.current_principal.set(await auth.verifier().verify(hiv_only["Authorization"][7:]))
    try:
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await intake.GetFile(request)
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        auth.current_principal.reset(token)
    _, _, ngs_only = await member_with(stack, ["HDBP0257"])
    token = auth.current_principal.set(await auth.verifier().verify(ngs_only["Authorization"][7:]))
    try:
        assert (await intake.GetFile(request)).file.id == sent
    finally:
        auth.current_principal.reset(token)


async def test_grpc_methods_refuse_a_member_without_the_registry(stack: Stack) -> None:
    angio = await angio_registration(stack)
    _, _, pacemaker_only = await member_with(stack, [PACEMAKER])
    principal = await auth.verifier().verify(pacemaker_only["Authorization"][7:])
    registrations = registrations_pb2_grpc.RegistrationsServiceStub(channel("registrations"))
    intake = intake_pb2_grpc.IntakeServiceStub(channel("intake"))
    token = auth.current_principal.set(principal)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await registrations.GetRegistration(registrations_pb2.GetRegistrationRequest(id=angio))
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
        dcd = registrations_pb2.DcdRef(dcd_code="ANGIO_HOSP", version="")
        for call in (
            registrations.ValidateBatch(registrations_pb2.ValidateBatchRequest(organisation_id=ORG, dcd=dcd)),
            registrations.UpsertBatch(registrations_pb2.UpsertBatchRequest(organisation_id=ORG, dcd=dcd)),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        listed = await intake.ListFiles(intake_pb2.ListFilesRequest(organisation_id=ORG))
        assert all(f.registry not in ("NGS", "HIV_SEQUENCE") for f in listed.files)

        async def ngs_file() -> Any:
            yield intake_pb2.UploadFileRequest(
                header=intake_pb2.UploadFileHeader(organisation_id=ORG, registry="NGS", filename="x.vcf")
            )

        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await intake.UploadFile(ngs_file())
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        auth.current_principal.reset(token)


async def test_the_portals_grpc_methods_keep_a_member_to_its_registries(stack: Stack) -> None:
    """The portal's grid, bulk actions, forms, a registration's actions and the deliveries
    page go through these methods: a member granted PACEMAKER neither sees nor changes an
    ANGIO registration there, and cannot create one; a member granted ANGIO can."""
    angio = await angio_registration(stack)
    registrations = registrations_pb2_grpc.RegistrationsServiceStub(channel("registrations"))
    pb = registrations_pb2
    dcd = pb.DcdRef(dcd_code="ANGIO_HOSP", version="")

    async def as_member(grants: list[str]) -> Any:
        _, _, headers = await member_with(stack, grants)
        return auth.current_principal.set(await auth.verifier().verify(headers["Authorization"][7:]))

    async def listed() -> set[str]:
        page = await registrations.ListRegistrations(
            pb.ListRegistrationsRequest(organisation_id=ORG, limit=200)
        )
        counted = await registrations.ListRegistrations(
            pb.ListRegistrationsRequest(organisation_id=ORG, project_code=ANGIO, limit=1)
        )
        ids = {r.id for r in page.registrations}
        assert (angio in ids) == (sum(c.count for c in counted.counts) > 0), "rows and counts disagree"
        found = await registrations.FindRegistrationsByField(
            pb.FindRegistrationsByFieldRequest(
                organisation_id=ORG, field="IDC_PAT", any_value=True, limit=1000
            )
        )
        assert (angio in ids) == (angio in {r.id for r in found.registrations}), "grid and look-up disagree"
        return ids

    token = await as_member([ANGIO])
    try:
        assert angio in await listed()  # the same calls let a member of the registry through
        history = await registrations.GetRegistrationHistory(pb.GetRegistrationHistoryRequest(id=angio))
        assert history.registration.id == angio
    finally:
        auth.current_principal.reset(token)

    token = await as_member([PACEMAKER])
    try:
        assert angio not in await listed()
        deliveries = await registrations.ListDeliveries(pb.ListDeliveriesRequest(organisation_id=ORG))
        assert all(d.dcd_code != "ANGIO_HOSP" for d in deliveries.deliveries)
        bulk = await registrations.ActOnRegistrations(
            pb.ActOnRegistrationsRequest(
                organisation_id=ORG, action="delete", registrations=[pb.RegistrationRef(id=angio)]
            )
        )
        assert [(o.done, o.problem) for o in bulk.outcomes] == [(False, "not-found")], bulk
        for call, code in (
            (
                registrations.GetRegistrationHistory(pb.GetRegistrationHistoryRequest(id=angio)),
                grpc.StatusCode.NOT_FOUND,
            ),
            (
                registrations.ActOnRegistration(
                    pb.ActOnRegistrationRequest(id=angio, action=pb.REGISTRATION_ACTION_DELETE)
                ),
                grpc.StatusCode.NOT_FOUND,
            ),
            (
                registrations.SaveRegistration(
                    pb.SaveRegistrationRequest(
                        organisation_id=ORG, registration_id=angio, values_json=json.dumps(record())
                    )
                ),
                grpc.StatusCode.NOT_FOUND,
            ),
            (
                registrations.SaveRegistration(
                    pb.SaveRegistrationRequest(organisation_id=ORG, dcd=dcd, values_json=json.dumps(record()))
                ),
                grpc.StatusCode.PERMISSION_DENIED,
            ),
            (
                registrations.EvaluateForm(
                    pb.EvaluateFormRequest(organisation_id=ORG, dcd=dcd, values_json="{}")
                ),
                grpc.StatusCode.PERMISSION_DENIED,
            ),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call
            assert refused.value.code() == code, refused.value.details()
        # The live form's stream: refused at its message, as the call is.
        stream = registrations.EvaluateFormStream(timeout=30)
        await stream.write(pb.EvaluateFormRequest(organisation_id=ORG, dcd=dcd, values_json="{}"))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stream.read()
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED, refused.value.details()
    finally:
        auth.current_principal.reset(token)
    # Nothing was changed: still open, at its first version.
    r = await stack.client.get(
        f"/api/v1/registrations/{angio}", headers=await stack.headers("nurse@az-demo.test")
    )
    assert r.status_code == 200 and r.json()["status"] == "open" and r.json()["version"] == 1, r.text


async def as_member(stack: Stack, grants: list[str]) -> Any:
    """A new member of az-demo granted these registries, as the caller of gRPC methods (the
    token to reset)."""
    _, _, headers = await member_with(stack, grants)
    return auth.current_principal.set(await auth.verifier().verify(headers["Authorization"][7:]))


async def test_the_reimbursed_registrations_stream_keeps_a_member_to_its_registries(stack: Stack) -> None:
    """StreamReimbursedRegistrations (nippin's reconciliation) answers a person's token too:
    a member granted ANGIO gets no PACEMAKER registration from it; one granted PACEMAKER does."""
    import pyarrow as pa

    body = {"organisation_id": ORG, "dcd": "PACEMAKER", "values": record("PACEMAKER"), "submit": True}
    r = await stack.client.post(
        "/api/v1/registrations", json=body, headers=await stack.headers("nurse@az-demo.test")
    )
    assert r.status_code in (200, 201), r.text
    pacemaker = r.json()["id"]
    registrations = registrations_pb2_grpc.RegistrationsServiceStub(channel("registrations"))
    request = registrations_pb2.StreamReimbursedRegistrationsRequest(organisation_id=ORG)

    async def streamed() -> set[str]:
        ids: set[str] = set()
        async for page in registrations.StreamReimbursedRegistrations(request):
            table = pa.ipc.open_stream(page.registrations_arrow).read_all()
            ids.update(table.column("registration_id").to_pylist())
        return ids

    for grants, seen in (([PACEMAKER], True), ([ANGIO], False)):
        token = await as_member(stack, grants)
        try:
            assert (pacemaker in await streamed()) is seen, grants
        finally:
            auth.current_principal.reset(token)


async def test_a_registration_of_a_registry_not_granted_is_not_replayed_by_its_idempotency_key(
    stack: Stack,
) -> None:
    """The same body and Idempotency-Key as a colleague's ANGIO registration, sent by a member
    granted PACEMAKER only, over /api/v1 and FHIR: refused for the registry, not answered
    with the colleague's registration (id, code, business key, values)."""
    _, _, pacemaker_only = await member_with(stack, [PACEMAKER])
    nurse = await stack.headers("nurse@az-demo.test")
    key = f"replay-{uuid.uuid4().hex}"
    body = {"organisation_id": ORG, "dcd": "ANGIO_HOSP", "values": record(), "submit": False}
    first = await stack.client.post(
        "/api/v1/registrations", json=body, headers={**nurse, "Idempotency-Key": key}
    )
    assert first.status_code == 201, first.text
    again = await stack.client.post(
        "/api/v1/registrations", json=body, headers={**pacemaker_only, "Idempotency-Key": key}
    )
    assert again.status_code == 403 and again.json()["type"].endswith("registry-not-granted"), again.text
    assert first.json()["id"] not in again.text
    resource = _questionnaire_response({})
    fhir_key = f"replay-fhir-{uuid.uuid4().hex}"
    fhir = {"Content-Type": "application/fhir+json"}
    first = await stack.client.post(
        "/fhir/QuestionnaireResponse", json=resource, headers={**nurse, **fhir, "Idempotency-Key": fhir_key}
    )
    assert first.status_code in (200, 201), first.text
    again = await stack.client.post(
        "/fhir/QuestionnaireResponse",
        json=resource,
        headers={**pacemaker_only, **fhir, "Idempotency-Key": fhir_key},
    )
    assert again.status_code == 403, again.text
    assert first.json()["id"] not in again.text
    # The member granted the registry gets the first answer back, as a retry should.
    again = await stack.client.post(
        "/api/v1/registrations", json=body, headers={**nurse, "Idempotency-Key": key}
    )
    assert again.status_code == 201 and again.headers.get("Idempotent-Replayed") == "true", again.text


async def test_an_upload_of_a_registry_not_granted_is_neither_replayed_nor_linked(stack: Stack) -> None:
    """CreateUpload's idempotency key and linked upload name an existing upload: a member
    granted PACEMAKER neither gets an ANGIO upload back by its key nor links one; a member
    granted ANGIO does both."""
    uploads = uploads_pb2_grpc.UploadsServiceStub(channel("uploads"))
    pb = uploads_pb2
    key = uuid.uuid4().hex

    async def create(header: Any, *chunks: bytes) -> Any:
        async def parts() -> Any:
            yield pb.CreateUploadRequest(header=header)
            for chunk in chunks:
                yield pb.CreateUploadRequest(chunk=chunk)

        return await uploads.CreateUpload(parts())

    token = await as_member(stack, [ANGIO])
    try:  # a held sequences upload of ANGIO, sent with a key
        held = await create(
            pb.CreateUploadHeader(
                organisation_id=ORG,
                dcd_code="ANGIO_HOSP",
                filename="held.csv",
                kind=pb.UPLOAD_KIND_SEQUENCES,
                idempotency_key=key,
            ),
            b"a,b\n1,2\n",
        )
        assert held.upload.status == pb.UPLOAD_STATUS_HELD, held
    finally:
        auth.current_principal.reset(token)

    replay = pb.CreateUploadHeader(organisation_id=ORG, dcd_code="PACEMAKER", idempotency_key=key)
    link = pb.CreateUploadHeader(
        organisation_id=ORG, dcd_code="PACEMAKER", filename="rows.csv", linked_upload_id=held.upload.id
    )

    async def drained(stream: Any) -> list[Any]:
        return [m async for m in stream]

    token = await as_member(stack, [PACEMAKER])
    try:
        for header, code in (
            (replay, grpc.StatusCode.PERMISSION_DENIED),
            (link, grpc.StatusCode.NOT_FOUND),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await create(header)  # the header alone: refused before any chunk is read
            assert refused.value.code() == code, refused.value.details()
        # Reading it, and ANGIO's settings, as the REST routes answer (already bounded).
        listed = await uploads.ListUploads(pb.ListUploadsRequest(organisation_id=ORG, limit=200))
        assert held.upload.id not in {u.id for u in listed.uploads}
        angio_settings = pb.UploadSettings(
            conflict_master=pb.CONFLICT_MASTER_NEW, validation=pb.VALIDATION_NONE
        )
        for call, code in (
            (uploads.GetUpload(pb.GetUploadRequest(id=held.upload.id)), grpc.StatusCode.NOT_FOUND),
            (
                drained(uploads.WatchUpload(pb.WatchUploadRequest(id=held.upload.id))),
                grpc.StatusCode.NOT_FOUND,
            ),
            (
                drained(
                    uploads.GetUploadReport(
                        pb.GetUploadReportRequest(id=held.upload.id, kind=pb.REPORT_KIND_ERRORS)
                    )
                ),
                grpc.StatusCode.NOT_FOUND,
            ),
            (
                uploads.GetUploadSettings(
                    pb.GetUploadSettingsRequest(organisation_id=ORG, project_code=ANGIO)
                ),
                grpc.StatusCode.PERMISSION_DENIED,
            ),
            (
                uploads.UpdateUploadSettings(
                    pb.UpdateUploadSettingsRequest(
                        organisation_id=ORG, project_code=ANGIO, settings=angio_settings
                    )
                ),
                grpc.StatusCode.PERMISSION_DENIED,
            ),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call
            assert refused.value.code() == code, refused.value.details()
    finally:
        auth.current_principal.reset(token)

    token = await as_member(stack, [ANGIO])
    try:
        again = await create(replay)
        assert again.replayed and again.upload.id == held.upload.id, again
        assert (await uploads.GetUpload(pb.GetUploadRequest(id=held.upload.id))).upload.id == held.upload.id
        linked = await create(
            pb.CreateUploadHeader(
                organisation_id=ORG,
                dcd_code="ANGIO_HOSP",
                filename="rows.csv",
                linked_upload_id=held.upload.id,
                dry_run=True,
            ),
            b"x\n",
        )
        assert linked.upload.linked_upload_id == held.upload.id, linked
    finally:
        auth.current_principal.reset(token)


async def portal_page(stack: Stack, headers: dict[str, str], path: str) -> Any:
    """A portal page as the member of these headers sees it: a portal session holding its
    token (as signing in leaves one), the page asked for with its cookie."""
    from datetime import timedelta

    from hdhub.common.db import utcnow
    from hdhub.portal.pages.sessions import COOKIE, Tokens

    sessions = stack.service("portal").portal_sessions
    session_id, row = await sessions.create()
    tokens = Tokens(access_token=headers["Authorization"][7:], refresh_token="", id_token="")
    await sessions.store_tokens(row, tokens, utcnow() + timedelta(minutes=5))
    return await stack.client.get(f"/portal/o/{ORG}/{path}", headers={"Cookie": f"{COOKIE}={session_id}"})


async def test_the_portals_menus_offer_the_registries_granted_only(stack: Stack) -> None:
    """The registry menu, the grid's filters, the Upload Center's new upload and settings,
    and the files' send form list the registries granted (the services refuse the others):
    a member granted PACEMAKER is offered no ANGIO form and no NGS folder; one granted ANGIO
    and NGS is."""
    _, _, pacemaker_only = await member_with(stack, [PACEMAKER])
    _, _, angio_ngs = await member_with(stack, [ANGIO, "HDBP0257"])
    for path, granted, other in (
        ("registries", "PACEMAKER", "ANGIO_HOSP"),
        ("registrations", "PACEMAKER", "ANGIO_HOSP"),
        ("uploads/new", "PACEMAKER", "ANGIO_HOSP"),
        ("upload-settings", PACEMAKER, ANGIO),
        ("files/new", "HIV_SEQUENCE", 'value="NGS"'),
    ):
        r = await portal_page(stack, pacemaker_only, path)
        assert r.status_code == 200, (path, r.status_code, r.text[:500])
        assert other not in r.text, path
        if path != "files/new":
            assert granted in r.text, path
        r = await portal_page(stack, angio_ngs, path)
        assert r.status_code == 200 and other in r.text, (path, r.status_code)
    r = await portal_page(stack, pacemaker_only, f"upload-settings/{ANGIO}")
    assert r.status_code == 404, r.status_code
    # A form of a registry not granted, asked for by its address: refused, no form shown.
    r = await portal_page(stack, pacemaker_only, "registrations/new?dcd=ANGIO_HOSP")
    assert r.status_code == 403 and 'name="IDC_PAT"' not in r.text, r.status_code
    r = await portal_page(stack, angio_ngs, "registrations/new?dcd=ANGIO_HOSP")
    assert r.status_code == 200 and 'name="IDC_PAT"' in r.text, r.status_code


async def test_managers_set_grants_taking_one_ends_the_tokens_and_bad_codes_are_refused(stack: Stack) -> None:
    account, _, headers = await member_with(stack, None)  # not given: every registry
    manager = await stack.headers("manager@az-demo.test")
    r = await stack.client.put(
        f"{MEMBERS}/{account}/registries", json={"registries": ["HDBP12", "ANGIO"]}, headers=manager
    )
    assert r.status_code == 422 and {e["rule"] for e in r.json()["errors"]} == {"registry-code"}
    members = (await stack.client.get(MEMBERS, params={"limit": 500}, headers=manager)).json()["items"]
    assert next(m for m in members if m["account_id"] == account)["registries"] == ["*"]
    assert (await stack.client.get("/api/v1/registrations", headers=headers)).status_code == 200
    await asyncio.sleep(1.0)  # `iat` has whole seconds: a token of the change's second still passes
    r = await stack.client.put(
        f"{MEMBERS}/{account}/registries", json={"registries": [ANGIO]}, headers=manager
    )
    assert r.status_code == 200 and r.json()["registries"] == [ANGIO], r.text
    # The token that carried every registry is refused from now on.
    assert (await stack.client.get("/api/v1/registrations", headers=headers)).status_code == 401
    # Neither a member of another organisation nor a registrant sets grants here.
    for who in ("biologist@lab-demo.test", "nurse@az-demo.test"):
        r = await stack.client.put(
            f"{MEMBERS}/{account}/registries", json={"registries": ["*"]}, headers=await stack.headers(who)
        )
        assert r.status_code in (403, 404), (who, r.text)
    audit = (await stack.client.get("/api/v1/audit", params={"organisation_id": ORG}, headers=manager)).json()
    entry = next(e for e in audit["items"] if e["action"] == "member.registries")
    assert entry["details"]["before"] == ["*"] and entry["details"]["after"] == [ANGIO]


async def test_an_account_request_is_granted_the_registries_it_asked_for(stack: Stack) -> None:
    email = f"req-{uuid.uuid4().hex[:8]}@grants.test"
    r = await stack.client.post(
        "/api/v1/account-requests",
        json={
            "organisation_id": ORG,
            "username": email,
            "first_name": "Req",
            "last_name": "Uest",
            "email": email,
            "data_collections": [
                "hdbp0012 ANGIO",
                "NGS (no code)",
                "HDBP03001",  # no code as a whole word
                "PACEMAKER HDBP0300 (a colleague suggested HDBP0257, not needed)",  # ambiguous
            ],
        },
    )
    assert r.status_code == 201, r.text
    assert r.json()["requested_registries"] == [ANGIO]
    manager = await stack.headers("manager@az-demo.test")
    r = await stack.client.post(
        f"/api/v1/account-requests/{r.json()['id']}/approve", params={"organisation_id": ORG}, headers=manager
    )
    assert r.status_code == 200, r.text
    members = (await stack.client.get(MEMBERS, params={"limit": 500}, headers=manager)).json()["items"]
    assert next(m for m in members if m["email"] == email)["registries"] == [ANGIO]
    # A data collection of 201 characters, or 101 of them: refused, said where, before any row.
    for collections, rule in (
        (["x" * 200 + "HDBP0257"], "string_too_long"),
        (["HDBP0012"] * 101, "too_long"),
    ):
        body = {"organisation_id": ORG, "username": f"r-{uuid.uuid4().hex[:8]}@grants.test"}
        body |= {
            "first_name": "A",
            "last_name": "B",
            "email": body["username"],
            "data_collections": collections,
        }
        r = await stack.client.post("/api/v1/account-requests", json=body)
        assert r.status_code == 422 and r.json()["errors"][0]["rule"] == rule, r.text


def test_an_account_requests_codes_are_whole_words_one_per_data_collection() -> None:
    from hdhub.identity.directory import requested_registries

    assert requested_registries(["HDBP0012 ANGIO", "hdbp0300", "x-HDBP0257-y"]) == {
        ANGIO,
        PACEMAKER,
        "HDBP0257",
    }
    assert requested_registries(["HDBP03001", "ANGIO HDBP0012 or HDBP0300", "NGS"]) == frozenset()


async def test_a_hospital_system_client_limited_to_a_registry(stack: Stack) -> None:
    manager = await stack.headers("manager@az-demo.test")
    r = await stack.client.post(
        f"/api/v1/organisations/{ORG}/clients",
        json={"name": "pacemaker LIS", "registries": [PACEMAKER]},
        headers=manager,
    )
    assert r.status_code == 201 and r.json()["registries"] == [PACEMAKER], r.text
    form = {
        "grant_type": "client_credentials",
        "client_id": r.json()["client_id"],
        "client_secret": r.json()["client_secret"],
    }
    token = (await stack.client.post(TOKEN_PATH, data=form)).json()["access_token"]
    body = {"organisation_id": ORG, "dcd": "ANGIO_HOSP", "values": record(), "submit": False}
    r = await stack.client.post(
        "/api/v1/registrations", json=body, headers={"Authorization": f"Bearer {token}"}
    )
    assert r.status_code == 403 and r.json()["type"] == "/problems/registry-not-granted", r.text
