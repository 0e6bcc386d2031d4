"""The identity store on Keycloak, through python-keycloak's admin REST client.

The mapping (docs/identity.md, deploy/keycloak/hdhub-realm.json):

- realm ``hdhub``; an **organisation is a top-level group named by its id** (a UUID hdhub
  draws), with attributes ``nihdi`` and ``title``. Tokens carry the caller's group paths in
  the ``organisations`` claim through Keycloak's built-in Group Membership mapper, so the
  path names the organisation as every service knows it (``/<id>/manager``); a NIHDI
  number is unique among the organisations' ``nihdi`` attributes (checked here, one
  creation at a time per number);
- **roles per organisation are child groups** of the organisation's group, one per role
  (``/<id>/manager``); a member is in the organisation's group and in the child group of
  each of its roles, so roles add up per organisation;
- an **initial password** is a temporary credential, which gives the user Keycloak's
  ``UPDATE_PASSWORD`` required action: the password grant answers ``invalid_grant``
  "Account is not fully set up" until it is changed;
- a **hospital system** is a confidential client with only the service account enabled,
  attributes ``hdhub.organisation`` / ``hdhub.roles``, the ``hdhub`` audience and a
  hardcoded ``organisations`` claim of the same group-path shape naming its one
  organisation and roles.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from keycloak import KeycloakAdmin, KeycloakOpenID
from keycloak.exceptions import KeycloakError

from hdhub.common.auth import ORGANISATIONS_CLAIM, REGISTRY_GROUP_PREFIX
from hdhub.identity.backend import (
    AccountRecord,
    ClientRecord,
    DuplicateAccount,
    DuplicateClient,
    DuplicateOrganisation,
    MemberRecord,
    OrganisationRecord,
)
from hdhub.identity.locks import OrganisationLocks

UPDATE_PASSWORD = "UPDATE_PASSWORD"
ORG_ATTRIBUTE = "hdhub.organisation"
ROLES_ATTRIBUTE = "hdhub.roles"
REGISTRIES_ATTRIBUTE = "hdhub.registries"


#: Every token hdhub verifies names audience ``hdhub`` (HDHUB_OIDC_AUDIENCE), as the realm's
#: own clients' tokens do (deploy/keycloak/hdhub-realm.json).
AUDIENCE_MAPPER = {
    "name": "audience hdhub",
    "protocol": "openid-connect",
    "protocolMapper": "oidc-audience-mapper",
    "config": {"included.custom.audience": "hdhub", "access.token.claim": "true", "id.token.claim": "false"},
}


def _code(exc: KeycloakError) -> int:
    return int(getattr(exc, "response_code", 0) or 0)


def _account(u: Mapping[str, Any]) -> AccountRecord:
    return AccountRecord(
        id=u["id"],
        username=u.get("username", ""),
        email=u.get("email", ""),
        first_name=u.get("firstName", ""),
        last_name=u.get("lastName", ""),
        must_change_password=UPDATE_PASSWORD in (u.get("requiredActions") or []),
        enabled=bool(u.get("enabled", True)),
    )


def _first(attributes: Mapping[str, Any] | None, name: str) -> str:
    values = (attributes or {}).get(name) or [""]
    return str(values[0] if isinstance(values, list) else values)


class KeycloakBackend:
    """:class:`~hdhub.identity.backend.IdentityBackend` on a Keycloak realm."""

    def __init__(
        self, admin: KeycloakAdmin, openid: KeycloakOpenID, locks: OrganisationLocks | None = None
    ) -> None:
        self.admin = admin
        self.openid = openid
        self.locks = locks or OrganisationLocks(None)
        self._group_ids: dict[str, str] = {}

    @classmethod
    def from_settings(cls, s: Any, locks: OrganisationLocks | None = None) -> KeycloakBackend:
        if not s.keycloak_url:
            raise ValueError("HDHUB_IDENTITY_KEYCLOAK_URL is required with the keycloak backend")
        return cls.connect(
            server_url=s.keycloak_url,
            realm=s.keycloak_realm,
            client_id=s.keycloak_admin_client_id,
            client_secret=s.keycloak_admin_client_secret or "",
            password_client=s.keycloak_password_client,
            locks=locks,
        )

    @classmethod
    def connect(
        cls,
        *,
        server_url: str,
        realm: str,
        client_id: str,
        client_secret: str,
        password_client: str = "hdhub-cli",
        locks: OrganisationLocks | None = None,
    ) -> KeycloakBackend:
        # The admin client is a service account in the realm itself (roles from the
        # realm-management client: manage-users, manage-clients, view-realm), not master.
        admin = KeycloakAdmin(
            server_url=server_url,
            realm_name=realm,
            client_id=client_id,
            client_secret_key=client_secret,
            user_realm_name=realm,
        )
        # A current password is checked with the password grant of the realm's public client
        # that allows it (scripts'); the portal's client signs people in by code flow only.
        openid = KeycloakOpenID(server_url=server_url, realm_name=realm, client_id=password_client)
        return cls(admin, openid, locks)

    # --- organisations ---------------------------------------------------------------

    def _organisation(self, g: Mapping[str, Any]) -> OrganisationRecord:
        attrs = g.get("attributes") or {}
        return OrganisationRecord(g["name"], _first(attrs, "title"), _first(attrs, "nihdi"))

    async def _group(self, organisation_id: str) -> Mapping[str, Any] | None:
        """The organisation's group (top-level, named by its id), or None."""
        if "/" in organisation_id or not organisation_id:
            return None
        try:
            group: Mapping[str, Any] = await self.admin.a_get_group_by_path(f"/{organisation_id}")
        except KeycloakError as exc:
            if _code(exc) == 404:
                return None
            raise
        return group

    async def _group_id(self, organisation_id: str) -> str:
        """Keycloak's id of the organisation's group (ids never change: cached)."""
        if organisation_id not in self._group_ids:
            group = await self._group(organisation_id)
            if group is None:
                raise KeycloakError(error_message="Could not find group by path", response_code=404)
            self._group_ids[organisation_id] = group["id"]
        return self._group_ids[organisation_id]

    async def _holder_of(self, nihdi_number: str) -> str | None:
        """The organisation holding a NIHDI number, if any (Keycloak's attribute search)."""
        groups = await self.admin.a_get_groups({"q": f"nihdi:{nihdi_number}", "exact": "true"})
        return next((g["name"] for g in groups if not g.get("parentId")), None)

    async def create_organisation(self, *, title: str, nihdi_number: str) -> OrganisationRecord:
        organisation_id = str(uuid.uuid4())
        payload = {"name": organisation_id, "attributes": {"nihdi": [nihdi_number], "title": [title]}}
        async with self.locks.hold([f"nihdi:{nihdi_number}"]):
            if await self._holder_of(nihdi_number) is not None:
                raise DuplicateOrganisation(nihdi_number)
            group_id = await self.admin.a_create_group(payload)
        assert group_id
        self._group_ids[organisation_id] = group_id
        return OrganisationRecord(organisation_id, title, nihdi_number)

    async def update_organisation(
        self, organisation_id: str, *, title: str, nihdi_number: str
    ) -> OrganisationRecord:
        payload = {"name": organisation_id, "attributes": {"nihdi": [nihdi_number], "title": [title]}}
        async with self.locks.hold([f"nihdi:{nihdi_number}"]):
            if await self._holder_of(nihdi_number) not in (None, organisation_id):
                raise DuplicateOrganisation(nihdi_number)
            await self.admin.a_update_group(await self._group_id(organisation_id), payload)
        return OrganisationRecord(organisation_id, title, nihdi_number)

    async def get_organisation(self, organisation_id: str) -> OrganisationRecord | None:
        group = await self._group(organisation_id)
        return self._organisation(group) if group is not None else None

    async def _child_groups(self, organisation_id: str) -> dict[str, str]:
        """The organisation's child groups by name: its roles (``manager``) and registry
        grants (``registry:HDBP0012``)."""
        children = await self.admin.a_get_group_children(await self._group_id(organisation_id))
        return {c["name"]: c["id"] for c in children}

    async def _role_groups(self, organisation_id: str) -> dict[str, str]:
        children = await self._child_groups(organisation_id)
        return {n: i for n, i in children.items() if not n.startswith(REGISTRY_GROUP_PREFIX)}

    async def _registry_groups(self, organisation_id: str) -> dict[str, str]:
        children = await self._child_groups(organisation_id)
        prefix = len(REGISTRY_GROUP_PREFIX)
        return {n[prefix:]: i for n, i in children.items() if n.startswith(REGISTRY_GROUP_PREFIX)}

    async def _role_group(self, organisation_id: str, role: str) -> str:
        groups = await self._child_groups(organisation_id)
        if role in groups:
            return groups[role]
        parent = await self._group_id(organisation_id)
        group_id = await self.admin.a_create_group({"name": role}, parent=parent, skip_exists=True)
        return group_id or (await self._child_groups(organisation_id))[role]

    # --- accounts --------------------------------------------------------------------

    async def find_account(self, username_or_email: str) -> AccountRecord | None:
        value = username_or_email.strip().lower()
        for key in ("username", "email"):
            users = await self.admin.a_get_users({key: value, "exact": True})
            for u in users:
                if (u.get(key) or "").lower() == value:
                    return _account(u)
        return None

    async def get_account(self, account_id: str) -> AccountRecord | None:
        try:
            return _account(await self.admin.a_get_user(account_id))
        except KeycloakError as exc:
            if _code(exc) == 404:
                return None
            raise

    async def create_account(
        self, *, username: str, email: str, first_name: str, last_name: str, password: str, temporary: bool
    ) -> AccountRecord:
        payload = {
            "username": username.lower(),
            "email": email.lower(),
            "firstName": first_name,
            "lastName": last_name,
            "enabled": True,
            "emailVerified": False,
            "credentials": [{"type": "password", "value": password, "temporary": temporary}],
            "requiredActions": [UPDATE_PASSWORD] if temporary else [],
        }
        try:
            user_id = await self.admin.a_create_user(payload)
        except KeycloakError as exc:
            if _code(exc) == 409:
                raise DuplicateAccount(email) from exc
            raise
        account = await self.get_account(user_id)
        assert account is not None
        return account

    async def delete_account(self, account_id: str) -> None:
        try:
            await self.admin.a_delete_user(account_id)
        except KeycloakError as exc:
            if _code(exc) != 404:
                raise

    async def end_sessions(self, account_id: str) -> None:
        try:
            await self.admin.a_user_logout(account_id)
        except KeycloakError as exc:
            if _code(exc) != 404:
                raise

    async def realm_role_members(self, role: str) -> Sequence[AccountRecord]:
        try:
            return [_account(u) for u in await self.admin.a_get_realm_role_members(role)]
        except KeycloakError as exc:
            if _code(exc) == 404:  # no such role in the realm: nobody holds it
                return []
            raise

    async def check_password(self, username_or_email: str, password: str) -> AccountRecord | None:
        account = await self.find_account(username_or_email)
        if account is None:
            return None
        try:
            await self.openid.a_token(account.username, password)
        except KeycloakError as exc:
            # The right password of an account with UPDATE_PASSWORD pending.
            if _code(exc) == 400 and b"not fully set up" in (getattr(exc, "response_body", b"") or b""):
                return account
            if _code(exc) in (400, 401):
                return None
            raise
        return account

    async def set_password(self, account_id: str, password: str, *, temporary: bool) -> None:
        await self.admin.a_set_user_password(account_id, password, temporary=temporary)

    # --- memberships -----------------------------------------------------------------

    async def members(self, organisation_id: str) -> Sequence[MemberRecord]:
        people = await self.admin.a_get_group_members(await self._group_id(organisation_id))
        roles: dict[str, set[str]] = {p["id"]: set() for p in people}
        registries: dict[str, set[str]] = {p["id"]: set() for p in people}
        for name, group_id in (await self._child_groups(organisation_id)).items():
            grant = (
                name.removeprefix(REGISTRY_GROUP_PREFIX) if name.startswith(REGISTRY_GROUP_PREFIX) else None
            )
            for p in await self.admin.a_get_group_members(group_id):
                if grant is None:
                    roles.setdefault(p["id"], set()).add(name)
                else:
                    registries.setdefault(p["id"], set()).add(grant)
        return sorted(
            (
                MemberRecord(_account(p), frozenset(roles[p["id"]]), frozenset(registries[p["id"]]))
                for p in people
            ),
            key=lambda m: m.account.email,
        )

    async def member_counts(self, organisation_ids: Sequence[str]) -> Mapping[str, int]:
        """One request per organisation group (the admin API counts no group's members),
        eight at a time."""
        gate = asyncio.Semaphore(8)

        async def count(organisation_id: str) -> tuple[str, int]:
            async with gate:
                group = await self._group(organisation_id)
                if group is None:
                    return organisation_id, 0
                people = await self.admin.a_get_group_members(group["id"], {"briefRepresentation": True})
                return organisation_id, len(people)

        counted = await asyncio.gather(*(count(o) for o in organisation_ids))
        return {o: n for o, n in counted if n}

    async def memberships(self, account_id: str) -> Mapping[str, frozenset[str]]:
        orgs: dict[str, set[str]] = {}
        for g in await self.admin.a_get_user_groups(account_id):
            organisation_id, _, role = g["path"].strip("/").partition("/")  # /<id>, /<id>/<role>
            is_role = role and not role.startswith(REGISTRY_GROUP_PREFIX)
            orgs.setdefault(organisation_id, set()).update([role] if is_role else [])
        return {o: frozenset(r) for o, r in orgs.items()}

    async def set_roles(self, account_id: str, organisation_id: str, roles: frozenset[str]) -> None:
        await self.admin.a_group_user_add(account_id, await self._group_id(organisation_id))
        existing = await self._role_groups(organisation_id)
        for role in roles:
            await self.admin.a_group_user_add(
                account_id, existing.get(role) or await self._role_group(organisation_id, role)
            )
        for role, group_id in existing.items():
            if role not in roles:
                await self.admin.a_group_user_remove(account_id, group_id)

    async def set_registries(self, account_id: str, organisation_id: str, registries: frozenset[str]) -> None:
        existing = await self._registry_groups(organisation_id)
        for registry in registries:
            group_id = existing.get(registry) or await self._role_group(
                organisation_id, REGISTRY_GROUP_PREFIX + registry
            )
            await self.admin.a_group_user_add(account_id, group_id)
        for registry, group_id in existing.items():
            if registry not in registries:
                await self.admin.a_group_user_remove(account_id, group_id)

    async def remove_membership(self, account_id: str, organisation_id: str) -> None:
        for group_id in (await self._child_groups(organisation_id)).values():
            await self.admin.a_group_user_remove(account_id, group_id)
        await self.admin.a_group_user_remove(account_id, await self._group_id(organisation_id))

    # --- hospital-system clients -----------------------------------------------------

    def _client(self, c: Mapping[str, Any]) -> ClientRecord:
        attrs = c.get("attributes") or {}
        return ClientRecord(
            client_id=c["clientId"],
            organisation_id=str(attrs.get(ORG_ATTRIBUTE, "")),
            name=c.get("name") or "",
            roles=frozenset(str(attrs.get(ROLES_ATTRIBUTE, "")).split()),
            enabled=bool(c.get("enabled", True)),
            registries=frozenset(str(attrs.get(REGISTRIES_ATTRIBUTE, "*")).split()),
        )

    async def _client_uuid(self, client_id: str) -> str | None:
        return await self.admin.a_get_client_id(client_id)

    async def clients(self, organisation_id: str) -> Sequence[ClientRecord]:
        clients = await self.admin.a_get_clients()
        mine = [
            self._client(c)
            for c in clients
            if (c.get("attributes") or {}).get(ORG_ATTRIBUTE) == organisation_id
        ]
        return sorted(mine, key=lambda c: c.client_id)

    async def get_client(self, client_id: str) -> ClientRecord | None:
        uuid = await self._client_uuid(client_id)
        if uuid is None:
            return None
        c = await self.admin.a_get_client(uuid)
        return self._client(c) if (c.get("attributes") or {}).get(ORG_ATTRIBUTE) else None

    async def create_client(
        self,
        *,
        client_id: str,
        organisation_id: str,
        name: str,
        roles: frozenset[str],
        secret: str,
        registries: frozenset[str] = frozenset({"*"}),
    ) -> ClientRecord:
        # The claim a person in the organisation's groups gets (Group Membership mapper).
        claim = [
            f"/{organisation_id}",
            *(f"/{organisation_id}/{role}" for role in sorted(roles)),
            *(f"/{organisation_id}/{REGISTRY_GROUP_PREFIX}{r}" for r in sorted(registries)),
        ]
        payload = {
            "clientId": client_id,
            "name": name,
            "enabled": True,
            "protocol": "openid-connect",
            "publicClient": False,
            "clientAuthenticatorType": "client-secret",
            "secret": secret,
            "serviceAccountsEnabled": True,
            "standardFlowEnabled": False,
            "implicitFlowEnabled": False,
            "directAccessGrantsEnabled": False,
            "attributes": {
                ORG_ATTRIBUTE: organisation_id,
                ROLES_ATTRIBUTE: " ".join(sorted(roles)),
                REGISTRIES_ATTRIBUTE: " ".join(sorted(registries)),
            },
            "protocolMappers": [
                AUDIENCE_MAPPER,
                {
                    "name": ORGANISATIONS_CLAIM,
                    "protocol": "openid-connect",
                    "protocolMapper": "oidc-hardcoded-claim-mapper",
                    "config": {
                        "claim.name": ORGANISATIONS_CLAIM,
                        "claim.value": json.dumps(claim),
                        "jsonType.label": "JSON",
                        "access.token.claim": "true",
                        "id.token.claim": "false",
                        "userinfo.token.claim": "false",
                    },
                },
            ],
        }
        try:
            await self.admin.a_create_client(payload)
        except KeycloakError as exc:
            if _code(exc) == 409:
                raise DuplicateClient(client_id) from exc
            raise
        return ClientRecord(client_id, organisation_id, name, roles, True, registries)

    async def set_client_secret(self, client_id: str, secret: str) -> None:
        uuid = await self._client_uuid(client_id)
        if uuid is not None:
            await self.admin.a_update_client(uuid, {"secret": secret})

    async def delete_client(self, client_id: str) -> None:
        uuid = await self._client_uuid(client_id)
        if uuid is not None:
            await self.admin.a_delete_client(uuid)
