"""Where identities live: one interface, two backends.

:class:`IdentityBackend` is what the administration rules (:mod:`hdhub.identity.directory`)
need from an identity store. The embedded SQL store (:mod:`hdhub.identity.embedded`,
argon2 hashes, the embedded issuer) serves laptops and tests; Keycloak
(:mod:`hdhub.identity.keycloak_backend`, through python-keycloak) serves production.
The rules themselves (who may do what, the last User Manager, the DP Manager's reach)
live above the backend, so both obey them alike; audit entries and account requests are
kept in identity's own database whichever backend holds the identities.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class OrganisationRecord:
    id: str
    title: str
    nihdi_number: str


@dataclass(frozen=True, slots=True)
class AccountRecord:
    id: str
    username: str
    email: str
    first_name: str
    last_name: str
    must_change_password: bool = False
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class MemberRecord:
    account: AccountRecord
    roles: frozenset[str]
    #: Project codes the member works on in the organisation, or ``*`` (every one).
    registries: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class ClientRecord:
    client_id: str
    organisation_id: str
    name: str
    roles: frozenset[str] = field(default_factory=frozenset)
    enabled: bool = True
    registries: frozenset[str] = field(default_factory=frozenset)


class DuplicateAccount(Exception):
    """An account with this username or e-mail exists already."""


class DuplicateOrganisation(Exception):
    """An organisation with this NIHDI number exists already."""


class DuplicateClient(Exception):
    """A client with this client id exists already."""


class IdentityBackend(Protocol):
    """The identity store's primitives. No rule is checked here: callers check them."""

    async def create_organisation(self, *, title: str, nihdi_number: str) -> OrganisationRecord: ...

    async def update_organisation(
        self, organisation_id: str, *, title: str, nihdi_number: str
    ) -> OrganisationRecord: ...

    async def get_organisation(self, organisation_id: str) -> OrganisationRecord | None: ...

    async def find_account(self, username_or_email: str) -> AccountRecord | None: ...

    async def get_account(self, account_id: str) -> AccountRecord | None: ...

    async def create_account(
        self, *, username: str, email: str, first_name: str, last_name: str, password: str, temporary: bool
    ) -> AccountRecord: ...

    async def delete_account(self, account_id: str) -> None: ...

    async def end_sessions(self, account_id: str) -> None:
        """End the account's sessions at the issuer, so no refresh mints a new token
        (Keycloak's user logout; the embedded issuer's own sessions likewise)."""
        ...

    async def realm_role_members(self, role: str) -> Sequence[AccountRecord]:
        """The accounts holding an installation-wide (realm) role, e.g. the operators."""
        ...

    async def check_password(self, username_or_email: str, password: str) -> AccountRecord | None:
        """The account when the password is right (even if it must still be changed)."""
        ...

    async def set_password(self, account_id: str, password: str, *, temporary: bool) -> None: ...

    async def members(self, organisation_id: str) -> Sequence[MemberRecord]: ...

    async def member_counts(self, organisation_ids: Sequence[str]) -> Mapping[str, int]:
        """How many people are members of each of ``organisation_ids`` (absent: none)."""
        ...

    async def memberships(self, account_id: str) -> Mapping[str, frozenset[str]]:
        """Organisation id -> roles of one account."""
        ...

    async def set_roles(self, account_id: str, organisation_id: str, roles: frozenset[str]) -> None:
        """Make the account a member with exactly these roles (creating the membership)."""
        ...

    async def set_registries(self, account_id: str, organisation_id: str, registries: frozenset[str]) -> None:
        """Grant exactly these registries (project codes, or ``*``) to a member."""
        ...

    async def remove_membership(self, account_id: str, organisation_id: str) -> None: ...

    async def clients(self, organisation_id: str) -> Sequence[ClientRecord]: ...

    async def get_client(self, client_id: str) -> ClientRecord | None: ...

    async def create_client(
        self,
        *,
        client_id: str,
        organisation_id: str,
        name: str,
        roles: frozenset[str],
        secret: str,
        registries: frozenset[str] = frozenset({"*"}),
    ) -> ClientRecord: ...

    async def set_client_secret(self, client_id: str, secret: str) -> None: ...

    async def delete_client(self, client_id: str) -> None: ...
