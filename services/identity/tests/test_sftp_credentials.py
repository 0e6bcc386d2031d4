"""SFTP credentials for file intake: a set of their own per organisation (DOMAIN.md),
managed by the organisation's managers, checked over gRPC by the intake service only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from hdhub.common.db import Database
from hdhub.common.grpc import channel
from hdhub.common.service_auth import acting_as_service
from hdhub.identity.directory import Directory
from hdhub.identity.mail import Mailer
from hdhub.identity.runtime import MIGRATIONS
from hdhub.proto.identity.v1 import identity_pb2 as pb
from hdhub.proto.identity.v1 import identity_pb2_grpc as pb_grpc
from tests.support.stack import Stack

BASE = "/api/v1/organisations/az-demo/sftp-credentials"


async def verify(
    username: str, password: str, *, service: str = "intake", address: str = "192.0.2.7"
) -> pb.VerifySftpPasswordResponse:
    stub = pb_grpc.IdentityServiceStub(channel("identity"))
    async with acting_as_service(service):
        return await stub.VerifySftpPassword(
            pb.VerifySftpPasswordRequest(username=username, password=password, client_address=address)
        )


async def test_a_manager_creates_rotates_and_deletes_an_sftp_login(stack: Stack) -> None:
    manager = await stack.headers("manager@az-demo.test")
    r = await stack.client.post(BASE, json={"username": "az-demo-lims-drop", "name": "LIMS"}, headers=manager)
    assert r.status_code == 201 and r.headers["Cache-Control"] == "no-store", r.text
    created = r.json()
    assert created["organisation_id"] == "az-demo" and len(created["password"]) == 32
    answer = await verify("az-demo-lims-drop", created["password"])
    assert (answer.username, answer.organisation_id) == ("az-demo-lims-drop", "az-demo")

    listed = (await stack.client.get(BASE, headers=manager)).json()["items"]
    mine = next(c for c in listed if c["username"] == "az-demo-lims-drop")
    assert "password" not in mine and mine["last_login_at"] is not None

    rotated = (await stack.client.post(f"{BASE}/az-demo-lims-drop/password", headers=manager)).json()
    with pytest.raises(grpc.aio.AioRpcError) as old:
        await verify("az-demo-lims-drop", created["password"])
    assert old.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert (await verify("az-demo-lims-drop", rotated["password"])).organisation_id == "az-demo"

    assert (await stack.client.delete(f"{BASE}/az-demo-lims-drop", headers=manager)).status_code == 204
    with pytest.raises(grpc.aio.AioRpcError):
        await verify("az-demo-lims-drop", rotated["password"])
    audit = (
        await stack.client.get("/api/v1/audit", params={"organisation_id": "az-demo"}, headers=manager)
    ).json()["items"]
    assert {"sftp.create", "sftp.rotate", "sftp.delete"} <= {e["action"] for e in audit}


async def test_usernames_are_checked_and_unique(stack: Stack) -> None:
    manager = await stack.headers("manager@az-demo.test")
    bad = await stack.client.post(BASE, json={"username": "Bad Name!"}, headers=manager)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "username"
    taken = await stack.client.post(BASE, json={"username": "lab-demo-sftp"}, headers=manager)
    assert taken.status_code == 409


async def test_another_organisation_neither_sees_nor_touches_the_logins(stack: Stack) -> None:
    foreign = await stack.headers("biologist@lab-demo.test")  # manager of lab-demo only
    assert (await stack.client.get(BASE, headers=foreign)).status_code == 404
    assert (await stack.client.post(BASE, json={}, headers=foreign)).status_code == 404
    assert (await stack.client.delete(f"{BASE}/az-demo-sftp", headers=foreign)).status_code == 404
    # Nor can lab-demo's manager reach az-demo's login through its own organisation.
    r = await stack.client.post(
        "/api/v1/organisations/lab-demo/sftp-credentials/az-demo-sftp/password", headers=foreign
    )
    assert r.status_code == 404
    assert (await verify("az-demo-sftp", "demo-sftp-az-secret")).organisation_id == "az-demo"


async def test_only_the_intake_service_verifies_passwords(stack: Stack) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await verify("lab-demo-sftp", "demo-sftp-lab-secret", service="uploads")
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_repeated_wrong_passwords_slow_down_their_source_only(stack: Stack) -> None:
    manager = await stack.headers("manager@az-demo.test")
    created = (await stack.client.post(BASE, json={"name": "lockout"}, headers=manager)).json()
    codes = []
    for _ in range(6):
        with pytest.raises(grpc.aio.AioRpcError) as wrong:
            await verify(created["username"], "not-the-password")
        codes.append(wrong.value.code())
    assert codes[0] == grpc.StatusCode.UNAUTHENTICATED and codes[-1] == grpc.StatusCode.RESOURCE_EXHAUSTED
    with pytest.raises(grpc.aio.AioRpcError) as waiting:  # even the right password, from that source
        await verify(created["username"], created["password"])
    assert waiting.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # The laboratory's own SFTP client, elsewhere, is not stopped by those failures.
    answer = await verify(created["username"], created["password"], address="198.51.100.20")
    assert answer.organisation_id == "az-demo"


@pytest.fixture(params=["embedded", "keycloak"])
async def directory(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Directory]:
    """The administration rules over either backend, on identity's own database."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'identity.db'}", migrations=MIGRATIONS)
    await db.migrate()
    if request.param == "embedded":
        from hdhub.identity.embedded import EmbeddedBackend

        yield Directory(EmbeddedBackend(db), db, Mailer(host=None))
    else:
        from hdhub.identity.keycloak_backend import KeycloakBackend
        from tests.keycloak_standin.app import StandinServer

        with StandinServer() as standin:
            backend = KeycloakBackend.connect(
                server_url=standin.url,
                realm="hdhub",
                client_id=standin.realm.admin_client,
                client_secret=standin.realm.admin_secret,
            )
            yield Directory(backend, db, Mailer(host=None))
    await db.dispose()


async def test_sftp_logins_live_in_identitys_database_whichever_backend_holds_accounts(
    directory: Directory,
) -> None:
    import random

    from hdhub.common.auth import Membership, Principal, Role
    from hdhub.identity.nihdi import check_digits

    base = f"{random.randrange(100000, 999999)}"
    org = await directory.backend.create_organisation(title="Lab", nihdi_number=base + check_digits(base))
    manager = Principal(
        "m", "m@lab.test", None, False, {org.id: Membership(org.id, "Lab", None, frozenset({Role.MANAGER}))}
    )
    login, password = await directory.create_sftp_credential(manager, org.id, username=None, name="drop")
    assert login.username.startswith(f"{org.id}-sftp-")
    verified = await directory.verify_sftp_password(login.username, password)
    assert verified is not None and verified.organisation_id == org.id
    assert await directory.verify_sftp_password(login.username, "wrong") is None
    assert [c.username for c in await directory.sftp_credentials(manager, org.id)] == [login.username]
