"""Certificates through the running stack (SQLite and PostgreSQL): a Certificate Editor
uploads p12s over REST, versions are published one at a time with a readable status
log, nothing else may touch them, and the services that sign or decrypt read the
active one over gRPC."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives.serialization import load_der_private_key
from sqlalchemy import select

from hdhub.common.auth import ActingFor, current_principal, verifier
from hdhub.common.db import utcnow
from hdhub.common.envelope import Envelope
from hdhub.common.grpc import channel
from hdhub.common.objectstore import open_store
from hdhub.portal.certificates import Certificates
from hdhub.portal.store import Certificate
from hdhub.proto.portal.v1 import certificates_pb2 as pb
from hdhub.proto.portal.v1 import certificates_pb2_grpc as pb_grpc
from services.portal.tests.p12s import AUTH, PASSWORD, Entry, keystore
from tests.support.stack import Stack
from tests.support.tokens import mint

BASE = "/api/v1/certificates"
FORBIDDEN = {
    "type": "/problems/forbidden",
    "title": "Forbidden",
    "status": 403,
    "detail": "You may not do this for this organisation.",
}


def new_org() -> str:
    return f"org-{uuid.uuid4().hex[:10]}"


async def as_(
    stack: Stack, organisations: dict[str, list[str]], username: str = "someone@org.test"
) -> dict[str, str]:
    return {"Authorization": f"Bearer {await mint(stack, username, organisations)}"}


async def upload(
    stack: Stack, org: str, headers: dict[str, str], data: bytes, password: str = PASSWORD, **extra: str
) -> Any:
    return await stack.client.post(
        f"{BASE}/{org}/versions",
        files={"file": ("ehealth.p12", data, "application/x-pkcs12")},
        data={"password": password},
        headers={**headers, **extra},
    )


async def test_editor_uploads_and_the_new_version_replaces_the_published_one(stack: Stack) -> None:
    org = new_org()
    editor = await as_(stack, {org: ["certificate_editor"]}, "cert@org.test")
    first = await upload(stack, org, editor, keystore())
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["version"] == 1 and body["published"] is True and body["uploaded_by"] == "cert@org.test"
    assert first.headers["location"] == f"{BASE}/{org}/versions/1"
    assert [line["step"] for line in body["log"]] == [
        "received",
        "password_checked",
        "keys_checked",
        "validity_checked",
        "stored",
        "published",
    ]
    assert body["status"]["step"] == "published" and "(sign)" in body["authentication"]["subject"]

    second = await upload(stack, org, editor, keystore())
    assert second.status_code == 201 and second.json()["version"] == 2
    assert "version 1 is unpublished" in second.json()["status"]["message"]

    versions = (await stack.client.get(f"{BASE}/{org}/versions", headers=editor)).json()["items"]
    assert [(v["version"], v["published"], v["status"]["step"]) for v in versions] == [
        (2, True, "published"),
        (1, False, "unpublished"),
    ]
    published = (await stack.client.get(f"{BASE}/{org}/published", headers=editor)).json()
    assert published["version"] == 2
    one = (await stack.client.get(f"{BASE}/{org}/versions/1", headers=editor)).json()
    assert one["published"] is False and one["unpublished_at"]
    log = (await stack.client.get(f"{BASE}/{org}/versions/1/log", headers=editor)).json()["items"]
    assert [line["step"] for line in log][-2:] == ["published", "unpublished"]
    assert "Version 2 is published instead" in log[-1]["message"]
    overview = (await stack.client.get(BASE, headers=editor)).json()
    assert [(o["organisation_id"], o["published"]["version"]) for o in overview["items"]] == [(org, 2)]
    assert (overview["total"], overview["limit"], overview["offset"]) == (1, 100, 0)
    second = (await stack.client.get(f"{BASE}/{org}/versions", params={"offset": 1}, headers=editor)).json()
    assert [v["version"] for v in second["items"]] == [1] and second["total"] == 2


async def test_the_p12_is_encrypted_at_rest(stack: Stack) -> None:
    org = new_org()
    data = keystore()
    r = await upload(stack, org, await as_(stack, {org: ["certificate_editor"]}), data)
    assert r.status_code == 201
    portal = stack.service("portal")
    async with portal.db.session([org]) as session:
        row = (
            await session.execute(select(Certificate).where(Certificate.organisation_id == org))
        ).scalar_one()
    stored = await portal.objects.read(row.object_key)
    assert stored[:4] == b"HDE1" and data not in stored and data[100:140] not in stored
    assert PASSWORD.encode() not in row.sealed_password and len(row.wrapped_key) == 12 + 32 + 16
    # Nowhere on disk in the clear: neither the object store folder nor the SQLite files.
    if stack.backend == "sqlite":
        from hdhub.common.config import platform

        for path in platform().data_dir.rglob("*"):
            if path.is_file():
                assert data[200:260] not in path.read_bytes(), path


@pytest.mark.parametrize(
    ("data", "password", "status", "rule"),
    [
        (lambda: keystore(), "wrong-password", 422, "wrong-password"),
        (lambda: keystore([AUTH]), PASSWORD, 422, "key-count"),
        (
            lambda: keystore([AUTH, Entry("9", "encrypt", days_left=-3, days_valid=700, key_index=1)]),
            PASSWORD,
            422,
            "certificate-expired",
        ),
        (lambda: b"%PDF-1.7 this is a letter, not a keystore", PASSWORD, 422, "not-a-p12"),
        (lambda: b"\x30\x82" + b"\x00" * 70_000, PASSWORD, 413, "too-large"),
    ],
    ids=["wrong-password", "one-key", "expired", "not-a-p12", "too-large"],
)
async def test_a_refused_upload_names_the_rule_and_changes_nothing(
    stack: Stack, data: Any, password: str, status: int, rule: str
) -> None:
    org = new_org()
    editor = await as_(stack, {org: ["certificate_editor"]})
    assert (await upload(stack, org, editor, keystore())).status_code == 201
    objects_before = [o.key async for o in stack.service("portal").objects.list("certificates/")]
    r = await upload(stack, org, editor, data(), password)
    assert r.status_code == status and r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["type"] == f"/problems/p12-{rule}" and problem["rule"] == rule and problem["detail"]
    assert problem["log"][-1]["step"] == "rejected"
    versions = (await stack.client.get(f"{BASE}/{org}/versions", headers=editor)).json()["items"]
    assert [(v["version"], v["published"]) for v in versions] == [(1, True)]
    assert [o.key async for o in stack.service("portal").objects.list("certificates/")] == objects_before


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("ehealth\u202ep12.exe", "invisible"),
        ("NUL.p12", "device"),
        ("keys/ehealth.p12", "folder"),
        ("a?.p12", "reserved"),
    ],
)
async def test_a_certificate_file_name_breaking_the_rule_is_refused(
    stack: Stack, name: str, rule: str
) -> None:
    org = new_org()
    editor = await as_(stack, {org: ["certificate_editor"]})
    r = await stack.client.post(
        f"{BASE}/{org}/versions",
        files={"file": (name, keystore(), "application/x-pkcs12")},
        data={"password": PASSWORD},
        headers={**editor, "Accept-Language": "fr"},
    )
    assert r.status_code == 422 and r.json()["type"] == "/problems/bad-file-name", r.text
    assert r.json()["errors"][0]["rule"] == rule and "nom de fichier" in r.json()["detail"]
    assert (await stack.client.get(f"{BASE}/{org}/versions", headers=editor)).json()["items"] == []


async def test_a_certificate_file_name_in_any_script_is_kept(stack: Stack) -> None:
    org = new_org()
    editor = await as_(stack, {org: ["certificate_editor"]})
    r = await stack.client.post(
        f"{BASE}/{org}/versions",
        files={"file": ("clé ehealth.p12", keystore(), "application/x-pkcs12")},
        data={"password": PASSWORD},
        headers=editor,
    )
    assert r.status_code == 201 and r.json()["filename"] == "clé ehealth.p12"


async def test_upload_needs_file_and_password(stack: Stack) -> None:
    org = new_org()
    editor = await as_(stack, {org: ["certificate_editor"]})
    r = await stack.client.post(
        f"{BASE}/{org}/versions", files={"file": ("x.p12", keystore())}, headers=editor
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "password"


async def test_idempotency_key_replays_the_first_answer(stack: Stack) -> None:
    org = new_org()
    editor = await as_(stack, {org: ["certificate_editor"]})
    data = keystore()
    first = await upload(stack, org, editor, data, **{"Idempotency-Key": "upload-1"})
    again = await upload(stack, org, editor, data, **{"Idempotency-Key": "upload-1"})
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.json()["version"] == first.json()["version"] == 1
    assert (await stack.client.get(f"{BASE}/{org}/versions", headers=editor)).json()["total"] == 1


def routes(org: str) -> list[tuple[str, str]]:
    return [
        ("GET", BASE),
        ("POST", f"{BASE}/{org}/versions"),
        ("GET", f"{BASE}/{org}/versions"),
        ("GET", f"{BASE}/{org}/published"),
        ("GET", f"{BASE}/{org}/versions/1"),
        ("GET", f"{BASE}/{org}/versions/1/log"),
    ]


async def call(stack: Stack, method: str, path: str, headers: dict[str, str]) -> Any:
    if method == "POST":
        return await stack.client.post(
            path, files={"file": ("x.p12", keystore())}, data={"password": PASSWORD}, headers=headers
        )
    return await stack.client.get(path, headers=headers)


@pytest.mark.parametrize(
    "roles",
    [
        ["manager"],
        ["dp_manager"],
        ["manager", "dp_manager"],
        ["registrant", "reader"],
        ["csv_upload_manager", "nippin_manager"],
    ],
)
async def test_only_certificate_editors_of_the_organisation_may(stack: Stack, roles: list[str]) -> None:
    org = new_org()
    editor = await as_(stack, {org: ["certificate_editor"]})
    assert (await upload(stack, org, editor, keystore())).status_code == 201
    other = await as_(stack, {org: roles})
    for method, path in routes(org):
        r = await call(stack, method, path, other)
        assert r.status_code == 403, (method, path, r.status_code)
        assert r.json()["type"] == "/problems/forbidden"
    # Authorization comes before the body is looked at: an empty upload is refused the same.
    assert (await stack.client.post(f"{BASE}/{org}/versions", headers=other)).status_code == 403
    assert (await stack.client.post(f"{BASE}/{org}/versions")).status_code == 401


async def test_a_foreign_editor_or_nobody_learns_nothing(stack: Stack) -> None:
    org, foreign, missing = new_org(), new_org(), new_org()
    assert (
        await upload(stack, org, await as_(stack, {org: ["certificate_editor"]}), keystore())
    ).status_code == 201
    stranger = await as_(stack, {foreign: ["certificate_editor", "manager"]})
    for target in (org, missing):  # an existing organisation and one that does not exist: the same answer
        for method, path in routes(target)[1:]:
            r = await call(stack, method, path, stranger)
            body = {k: v for k, v in r.json().items() if k not in ("instance", "trace_id")}
            assert r.status_code == 403 and body == FORBIDDEN, (method, path)
    for method, path in routes(org):
        r = await call(stack, method, path, {})
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    # Seeded people and hospital systems are no Certificate Editors either.
    for who in ("manager@az-demo.test", "az-demo-his"):
        for method, path in routes("az-demo"):
            assert (await call(stack, method, path, await stack.headers(who))).status_code == 403


async def test_an_editor_sees_a_missing_version_as_404(stack: Stack) -> None:
    org = new_org()
    editor = await as_(stack, {org: ["certificate_editor"]})
    r = await stack.client.get(f"{BASE}/{org}/published", headers=editor)
    assert r.status_code == 404 and r.json()["type"] == "/problems/no-published-certificate"
    assert (await stack.client.get(f"{BASE}/{org}/versions/7", headers=editor)).status_code == 404
    assert (await stack.client.get(f"{BASE}/{org}/versions/7/log", headers=editor)).status_code == 404
    assert (await stack.client.get(f"{BASE}/{org}/versions", headers=editor)).json()["items"] == []


# --- gRPC: the active certificate, for signers and decrypters only -------------------------


async def stub_with(
    stack: Stack, token: str | None, acting_for: str | None = None
) -> pb_grpc.CertificatesServiceStub:
    """A stub calling with ``token``; a service's calls act for organisation ``acting_for``."""
    principal = await verifier().verify(token) if token else None
    if principal is not None and acting_for is not None:
        principal = dataclasses.replace(principal, acting_for=ActingFor(acting_for, "editor@org.test"))
    current_principal.set(principal)
    return pb_grpc.CertificatesServiceStub(channel("portal"))


@pytest.mark.parametrize("service", ["registrations", "nippin"])
async def test_signing_and_decrypting_services_get_the_active_keys(stack: Stack, service: str) -> None:
    org = new_org()
    editor = await as_(stack, {org: ["certificate_editor"]})
    await upload(stack, org, editor, keystore())
    await upload(stack, org, editor, keystore())
    token = await mint(stack, f"service-account-hdhub-{service}", {}, [f"hdhub-service:{service}"])
    reply = await (await stub_with(stack, token, org)).GetActiveCertificate(
        pb.GetActiveCertificateRequest(organisation_id=org)
    )
    active = reply.certificate
    assert active.organisation_id == org and active.version == 2 and active.published_at
    assert active.authentication.purpose == pb.KEY_PURPOSE_AUTHENTICATION
    assert active.encryption.purpose == pb.KEY_PURPOSE_ENCRYPTION
    for pair in (active.authentication, active.encryption):
        from cryptography import x509

        key = load_der_private_key(pair.private_key_pkcs8_der, None)
        cert = x509.load_der_x509_certificate(pair.certificate_der)
        assert key.public_key() == cert.public_key() and pair.serial_number == f"{cert.serial_number:x}"
        assert [x509.load_der_x509_certificate(c).subject.rfc4514_string() for c in pair.chain_der] == [
            "CN=eHealth test CA"
        ]
    assert "(sign)" in active.authentication.subject and "(encrypt)" in active.encryption.subject


async def test_anyone_else_is_refused_the_active_certificate(stack: Stack) -> None:
    org = new_org()
    editor_token = await mint(stack, "cert@org.test", {org: ["certificate_editor"]})
    await upload(stack, org, {"Authorization": f"Bearer {editor_token}"}, keystore())
    request = pb.GetActiveCertificateRequest(organisation_id=org)
    refused = [
        editor_token,  # even the organisation's own Certificate Editor
        await mint(stack, "service-account-hdhub-uploads", {}, ["hdhub-service:uploads"]),
        await mint(stack, "operator@hdhub.test", {}, ["hdhub-operator"]),
        await stack.token("az-demo-his"),
    ]
    for token in refused:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await (await stub_with(stack, token, org)).GetActiveCertificate(request)
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # A signing service acting for another organisation is refused this one's keys.
    registrations = await mint(
        stack, "service-account-hdhub-registrations", {}, ["hdhub-service:registrations"]
    )
    for acting_for in (new_org(), None):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await (await stub_with(stack, registrations, acting_for)).GetActiveCertificate(request)
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await (await stub_with(stack, None)).GetActiveCertificate(request)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_no_published_certificate_is_not_found(stack: Stack) -> None:
    token = await mint(stack, "service-account-hdhub-nippin", {}, ["hdhub-service:nippin"])
    org = new_org()
    stub = await stub_with(stack, token, org)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetActiveCertificate(pb.GetActiveCertificateRequest(organisation_id=org))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetActiveCertificate(pb.GetActiveCertificateRequest())
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


# --- the same through S3 ---------------------------------------------------------------------


async def test_certificates_in_s3(stack: Stack, s3_url: str) -> None:
    portal = stack.service("portal")
    s3 = open_store(s3_url)
    certificates = Certificates(
        portal.db, s3, Envelope(portal.settings.master_keys()), max_p12_bytes=64 * 1024
    )
    org = new_org()
    data = keystore()
    for _ in range(2):
        async with portal.db.session([org]) as session:
            created = await certificates.upload(
                session,
                organisation_id=org,
                data=data,
                password=PASSWORD,
                filename="e.p12",
                actor="cert@org.test",
            )
    stored = await s3.read(created.object_key)
    assert stored[:4] == b"HDE1" and data not in stored
    assert (await s3.stat(created.object_key)).sha256 == created.object_sha256  # type: ignore[union-attr]
    active = await certificates.active(org, now=utcnow())
    assert active.certificate.version == 2 and active.keystore.encryption.certificate.serial_number
    # A refused upload leaves nothing in the bucket either.
    before = [o.key async for o in s3.list("certificates/")]
    async with portal.db.session([org]) as session:
        with pytest.raises(Exception) as caught:
            await certificates.upload(
                session, organisation_id=org, data=data, password="nope", filename="", actor="x"
            )
    assert getattr(caught.value, "slug", "") == "p12-wrong-password"
    assert [o.key async for o in s3.list("certificates/")] == before
