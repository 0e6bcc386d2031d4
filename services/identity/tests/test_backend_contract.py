"""One contract, two backends: the embedded SQL store and Keycloak (through python-keycloak,
against the stand-in of Keycloak's admin REST and OIDC endpoints in tests/keycloak_standin),
and the administration rules on top of each."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hdhub.common.auth import OPERATOR_ROLE, Principal
from hdhub.common.db import Database
from hdhub.common.errors import Problem
from hdhub.common.revocation import Revocations
from hdhub.identity.backend import DuplicateAccount, DuplicateClient, DuplicateOrganisation, IdentityBackend
from hdhub.identity.directory import AuditSearch, Directory
from hdhub.identity.mail import Mailer
from hdhub.identity.runtime import MIGRATIONS
from tests.keycloak_standin.app import StandinServer


@pytest.fixture(scope="module")
def standin() -> object:
    with StandinServer() as server:
        yield server


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'identity.db'}", migrations=MIGRATIONS)
    await database.migrate()
    yield database
    await database.dispose()


@pytest.fixture(params=["embedded", "keycloak"])
async def backend(request: pytest.FixtureRequest, db: Database, standin: StandinServer) -> IdentityBackend:
    if request.param == "embedded":
        from hdhub.identity.embedded import EmbeddedBackend

        return EmbeddedBackend(db)
    from hdhub.identity.keycloak_backend import KeycloakBackend

    return KeycloakBackend.connect(
        server_url=standin.url,
        realm="hdhub",
        client_id=standin.realm.admin_client,
        client_secret=standin.realm.admin_secret,
    )


def unique() -> str:
    return uuid.uuid4().hex[:10]


def nihdi() -> str:
    import random

    from hdhub.identity.nihdi import check_digits

    base = f"{random.randrange(100000, 999999)}"
    return base + check_digits(base)


async def test_organisations_are_created_once_per_nihdi_number(backend: IdentityBackend) -> None:
    number = nihdi()
    org = await backend.create_organisation(title="AZ Contract", nihdi_number=number)
    assert (await backend.get_organisation(org.id)) == org
    assert org.title == "AZ Contract" and org.nihdi_number == number
    with pytest.raises(DuplicateOrganisation):
        await backend.create_organisation(title="Other", nihdi_number=number)
    assert await backend.get_organisation(str(uuid.uuid4())) is None


async def test_accounts_temporary_password_and_duplicates(backend: IdentityBackend) -> None:
    email = f"{unique()}@contract.test"
    account = await backend.create_account(
        username=email, email=email, first_name="C", last_name="T", password="initial-pass-1", temporary=True
    )
    assert account.must_change_password and account.email == email
    assert (await backend.find_account(email.upper())) == account
    assert (await backend.get_account(account.id)) == account
    with pytest.raises(DuplicateAccount):
        await backend.create_account(
            username=email, email=email, first_name="", last_name="", password="x" * 12, temporary=True
        )
    assert (
        await backend.check_password(email, "initial-pass-1")
    ) is not None  # right, though still to be changed
    assert (await backend.check_password(email, "wrong-password")) is None
    assert (await backend.check_password("nobody@contract.test", "initial-pass-1")) is None
    await backend.set_password(account.id, "changed-pass-2", temporary=False)
    after = await backend.check_password(email, "changed-pass-2")
    assert after is not None and not after.must_change_password
    assert (await backend.check_password(email, "initial-pass-1")) is None


async def test_roles_per_organisation_add_up_and_leaving_keeps_the_account(backend: IdentityBackend) -> None:
    a = await backend.create_organisation(title="A", nihdi_number=nihdi())
    b = await backend.create_organisation(title="B", nihdi_number=nihdi())
    email = f"{unique()}@contract.test"
    acc = await backend.create_account(
        username=email, email=email, first_name="", last_name="", password="p" * 12, temporary=False
    )
    await backend.set_roles(acc.id, a.id, frozenset({"manager", "dp_manager"}))
    await backend.set_roles(acc.id, b.id, frozenset({"registrant"}))
    assert await backend.memberships(acc.id) == {
        a.id: frozenset({"manager", "dp_manager"}),
        b.id: frozenset({"registrant"}),
    }
    await backend.set_roles(acc.id, a.id, frozenset({"certificate_editor"}))
    assert (await backend.memberships(acc.id))[a.id] == frozenset({"certificate_editor"})
    [member] = await backend.members(a.id)
    assert member.account.id == acc.id and member.roles == frozenset({"certificate_editor"})
    await backend.set_roles(acc.id, a.id, frozenset())
    assert (await backend.memberships(acc.id))[a.id] == frozenset()  # a member without roles
    other = f"{unique()}@contract.test"
    acc2 = await backend.create_account(
        username=other, email=other, first_name="", last_name="", password="p" * 12, temporary=False
    )
    await backend.set_roles(acc2.id, b.id, frozenset({"registrant"}))
    assert await backend.member_counts([a.id, b.id]) == {a.id: 1, b.id: 2}
    await backend.delete_account(acc2.id)
    await backend.remove_membership(acc.id, a.id)
    assert list(await backend.memberships(acc.id)) == [b.id]
    assert await backend.member_counts([a.id, b.id]) == {b.id: 1}
    assert await backend.get_account(acc.id) is not None
    await backend.delete_account(acc.id)
    assert await backend.get_account(acc.id) is None
    assert await backend.members(b.id) == []


async def test_clients_bound_to_one_organisation(backend: IdentityBackend) -> None:
    org = await backend.create_organisation(title="C", nihdi_number=nihdi())
    client_id = f"c-{unique()}"
    client = await backend.create_client(
        client_id=client_id, organisation_id=org.id, name="HIS", roles=frozenset({"registrant"}), secret="s1"
    )
    assert client.organisation_id == org.id
    assert [c.client_id for c in await backend.clients(org.id)] == [client_id]
    assert (await backend.get_client(client_id)) == client
    with pytest.raises(DuplicateClient):
        await backend.create_client(
            client_id=client_id, organisation_id=org.id, name="", roles=frozenset(), secret="s2"
        )
    await backend.set_client_secret(client_id, "s3")
    await backend.delete_client(client_id)
    assert await backend.get_client(client_id) is None and await backend.clients(org.id) == []


def principal_of(account_id: str, orgs: dict[str, list[str]]) -> Principal:
    return Principal.from_claims(
        {
            "sub": account_id,
            "preferred_username": account_id,
            "organisations": {o: {"roles": r} for o, r in orgs.items()},
        }
    )


async def test_the_rules_hold_on_either_backend(backend: IdentityBackend, db: Database) -> None:
    d = Directory(backend, db, Mailer(host=None))
    email = f"{unique()}@contract.test"
    boss = await backend.create_account(
        username=email, email=email, first_name="", last_name="", password="p" * 12, temporary=False
    )
    seed = await backend.create_organisation(title="Seed", nihdi_number=nihdi())
    await backend.set_roles(boss.id, seed.id, frozenset({"manager"}))
    org = await d.create_organisation(
        principal_of(boss.id, {seed.id: ["manager"]}), title="Rules", nihdi_number=nihdi()
    )
    me = principal_of(boss.id, {seed.id: ["manager"], org.id: ["manager"]})
    with pytest.raises(Problem) as exc:
        await d.set_roles(me, org.id, boss.id, ["registrant"])
    assert exc.value.slug == "last-user-manager"
    added = await d.add_member(
        me, org.id, email=f"{unique()}@contract.test", first_name="N", last_name="M", roles=["dp_manager"]
    )
    assert added.initial_password and added.member.account.must_change_password
    dp = principal_of(added.member.account.id, {org.id: ["dp_manager"]})
    with pytest.raises(Problem) as exc:
        await d.add_member(
            dp, org.id, email=f"{unique()}@contract.test", first_name="", last_name="", roles=["manager"]
        )
    assert exc.value.status == 403
    with pytest.raises(Problem) as exc:
        await d.add_member(
            dp, seed.id, email=f"{unique()}@contract.test", first_name="", last_name="", roles=["registrant"]
        )
    assert exc.value.status == 404
    with pytest.raises(Problem) as exc:
        await d.add_member(
            me, org.id, email=added.member.account.email, first_name="", last_name="", roles=[]
        )
    assert exc.value.slug == "duplicate-email"
    await d.change_password(added.member.account.email, added.initial_password, "a-new-long-password")
    assert not (await backend.get_account(added.member.account.id)).must_change_password  # type: ignore[union-attr]
    assert {m.account.id for m in await d.members(me, org.id)} == {boss.id, added.member.account.id}
    entries, *_ = await d.audit_page(me, org.id, AuditSearch())
    assert [e.action for e in entries] == ["account.password", "member.add", "organisation.create"]


async def _make_operator(backend: IdentityBackend, db: Database, account_id: str) -> None:
    """Give the realm role the way each store keeps it (no route hands it out)."""
    if hasattr(backend, "admin"):
        role = await backend.admin.a_get_realm_role(OPERATOR_ROLE)
        await backend.admin.a_assign_realm_roles(account_id, [role])
        return
    from hdhub.identity.store import Account

    async with db.system_session() as session:
        account = await session.get(Account, account_id)
        assert account is not None
        account.realm_roles = [OPERATOR_ROLE]


async def test_the_installation_keeps_an_operator_and_cancelled_access_is_revoked(
    backend: IdentityBackend, db: Database, standin: StandinServer
) -> None:
    revoked = Revocations(None)
    d = Directory(backend, db, Mailer(host=None), revoked=revoked)
    first, second = [
        await backend.create_account(
            username=e, email=e, first_name="", last_name="", password="p" * 12, temporary=False
        )
        for e in (f"{unique()}@contract.test", f"{unique()}@contract.test")
    ]
    for account in await backend.realm_role_members(
        OPERATOR_ROLE
    ):  # an earlier test's operators: this test wants to be the only ones
        await backend.delete_account(account.id)
    await _make_operator(backend, db, first.id)
    with pytest.raises(Problem) as exc:
        await d.cancel_account(principal_of(first.id, {}), first.id)
    assert exc.value.status == 409 and exc.value.slug == "last-operator"
    assert await backend.get_account(first.id) is not None and await revoked.not_before(first.id) == 0
    await _make_operator(backend, db, second.id)
    await d.cancel_account(principal_of(first.id, {}), first.id)
    assert await backend.get_account(first.id) is None
    assert await revoked.not_before(first.id) > 0  # its tokens are refused from now on
    with pytest.raises(Problem) as exc:
        await d.cancel_account(principal_of(second.id, {}), second.id)
    assert exc.value.slug == "last-operator"
    if hasattr(backend, "admin"):  # Keycloak: the sessions ended too, so no refresh mints a token
        assert f"POST /admin/realms/hdhub/users/{first.id}/logout" in standin.realm.calls


async def test_the_operator_appoints_a_first_user_manager_on_either_backend(
    backend: IdentityBackend, db: Database
) -> None:
    d = Directory(backend, db, Mailer(host=None))
    operator = Principal.from_claims(
        {"sub": "op", "preferred_username": "operator", "realm_access": {"roles": [OPERATOR_ROLE]}}
    )
    email, number = f"{unique()}@contract.test", nihdi()
    with pytest.raises(Problem) as exc:  # a User Manager elsewhere is no operator
        await d.appoint_first_user_manager(
            principal_of("x", {"anything": ["manager"]}),
            title="Start",
            nihdi_number=number,
            email=email,
            first_name="",
            last_name="",
        )
    assert exc.value.status == 403 and await backend.find_account(email) is None
    org, added = await d.appoint_first_user_manager(
        operator, title="Start", nihdi_number=number, email=email, first_name="U", last_name="M"
    )
    assert added.initial_password and added.member.account.must_change_password
    assert await backend.memberships(added.member.account.id) == {org.id: frozenset({"manager"})}
    assert await backend.check_password(email, added.initial_password) is not None
    manager = principal_of(added.member.account.id, {org.id: ["manager"]})
    entries, *_ = await d.audit_page(manager, org.id, AuditSearch())
    assert [(e.action, e.actor) for e in entries] == [
        ("member.add", "operator"),
        ("organisation.create", "operator"),
    ]


async def test_registry_grants_sit_beside_the_roles_on_either_backend(
    backend: IdentityBackend, standin: StandinServer
) -> None:
    org = await backend.create_organisation(title="Grants", nihdi_number=nihdi())
    email = f"{unique()}@contract.test"
    acc = await backend.create_account(
        username=email, email=email, first_name="", last_name="", password="p" * 12, temporary=False
    )
    await backend.set_roles(acc.id, org.id, frozenset({"registrant"}))
    await backend.set_registries(acc.id, org.id, frozenset({"HDBP0012", "HDBP0300"}))
    await backend.set_registries(acc.id, org.id, frozenset({"HDBP0012"}))
    [member] = await backend.members(org.id)
    assert member.roles == frozenset({"registrant"}) and member.registries == frozenset({"HDBP0012"})
    assert await backend.memberships(acc.id) == {org.id: frozenset({"registrant"})}  # grants are no roles
    await backend.set_roles(acc.id, org.id, frozenset({"reader"}))  # roles change, grants stay
    [member] = await backend.members(org.id)
    assert member.roles == frozenset({"reader"}) and member.registries == frozenset({"HDBP0012"})
    client = await backend.create_client(
        client_id=f"c-{unique()}",
        organisation_id=org.id,
        name="LIS",
        roles=frozenset({"registrant"}),
        secret="s" * 20,
        registries=frozenset({"HDBP0300"}),
    )
    assert (await backend.get_client(client.client_id)).registries == frozenset({"HDBP0300"})  # type: ignore[union-attr]
    if hasattr(backend, "admin"):  # Keycloak: the token's group paths carry the grants
        paths = standin.realm.group_paths(acc.id)
        assert f"/{org.id}/registry:HDBP0012" in paths and f"/{org.id}/reader" in paths
        from hdhub.common.auth import memberships_of

        assert memberships_of(paths)[org.id].registries == frozenset({"HDBP0012"})
    await backend.remove_membership(acc.id, org.id)
    assert await backend.members(org.id) == []
