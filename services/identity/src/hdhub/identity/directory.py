"""The Self-Service Portal's administration rules (DOMAIN.md), over any identity backend.

Who may do what comes from the one policy in :mod:`hdhub.common.auth`; the rules the
policy cannot express live here:

- a caller who is no member of an organisation learns nothing about it (404);
- a DP Manager adds and removes members and their data roles, but only a User Manager
  gives or takes the administrative roles (and removes members who hold one);
- every organisation keeps at least one User Manager (ours, stricter than DOMAIN.md's
  "one per installation", which it implies): the last one can neither lose the role,
  nor leave, nor cancel their account; likewise the installation keeps one operator;
- access taken away is taken at once: tokens issued before a cancellation, a removal, a
  role taken or a client deleted or rotated are refused (:mod:`hdhub.common.revocation`);
- removing a member keeps the account; cancelling an account removes it everywhere,
  which a manager may do only for accounts in organisations they all manage;
- new members get an initial password they must change before the first token.

Every change writes an audit entry (who, what, when, which organisation).
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from time import monotonic
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from hdhub.common.auth import ALL_REGISTRIES, OPERATOR_ROLE, Action, Principal, Role
from hdhub.common.db import Database, new_id, utcnow
from hdhub.common.errors import FieldProblem, Problem, conflict, forbidden, invalid, not_found
from hdhub.common.paging import count
from hdhub.common.revocation import Revocations, revocations
from hdhub.identity import nihdi
from hdhub.identity.backend import (
    AccountRecord,
    ClientRecord,
    DuplicateAccount,
    DuplicateClient,
    DuplicateOrganisation,
    IdentityBackend,
    MemberRecord,
    OrganisationRecord,
)
from hdhub.identity.issuer import check_secret, hash_secret
from hdhub.identity.locks import OrganisationLocks
from hdhub.identity.mail import Mailer
from hdhub.identity.store import AccountRequest, AuditEntry, SftpCredential

log = logging.getLogger(__name__)

ADMIN_ROLES = frozenset(
    {Role.MANAGER, Role.DP_MANAGER, Role.CERTIFICATE_EDITOR, Role.CSV_UPLOAD_MANAGER, Role.NIPPIN_MANAGER}
)
DATA_ROLES = frozenset({Role.REGISTRANT, Role.READER})
# The administrative roles only a User Manager gives or takes. A DP Manager gives data roles
# and Certificate Editor: "the Certificate Manager is defined by the User Manager or DP
# Manager in the process of adding a member to a group" (SSP seed).
USER_MANAGER_ROLES = ADMIN_ROLES - {Role.CERTIFICATE_EDITOR}
MIN_PASSWORD_LENGTH = 12
#: An e-mail address as mail servers take it without extensions: an ASCII dot-atom before
#: the @ (no quotes, angle brackets or spaces: it is shown in pages and put in mail
#: headers), host names of letters, digits and dashes after it.
_EMAIL = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)
_CLIENT_ID = re.compile(r"^[a-z0-9][a-z0-9-]{2,99}$")
_SFTP_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{2,63}$")
# Taken with the organisations' locks when an account that may be an operator changes.
OPERATORS_LOCK = "realm:operators"


def new_password() -> str:
    """An initial password: 16 characters from letters and digits (about 95 bits)."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(16))


def password_problems(
    new: str, *, current: str | None = None, field: str = "new_password"
) -> list[FieldProblem]:
    if len(new) < MIN_PASSWORD_LENGTH:
        return [
            FieldProblem(
                field, "password-length", f"A password has at least {MIN_PASSWORD_LENGTH} characters."
            )
        ]
    if current is not None and new == current:
        return [FieldProblem(field, "password-reused", "The new password must differ from the current one.")]
    return []


_REGISTRY = re.compile(r"^HDBP[0-9]{4}$")


def registries_of(values: Iterable[str] | None, field: str = "registries") -> frozenset[str]:
    """Registry grants as given: project codes (``HDBP0012``, any case) or ``*`` for every
    registry; ``None`` (not given) grants every registry, as before grants existed."""
    if values is None:
        return frozenset({ALL_REGISTRIES})
    wanted = frozenset(v.strip().upper() for v in values if v.strip())
    bad = sorted(v for v in wanted if v != ALL_REGISTRIES and not _REGISTRY.match(v))
    if bad:
        raise invalid(
            [
                FieldProblem(
                    field,
                    "registry-code",
                    f"A registry is named by its project code (HDBP and 4 digits) or * for all: {', '.join(bad)}.",
                )
            ]
        )
    return frozenset({ALL_REGISTRIES}) if ALL_REGISTRIES in wanted else wanted


#: The least time an account request takes to answer, stored or not (see request_account).
ANSWER_FLOOR_SECONDS = 0.25
#: An account request's data collections: at most this many, each at most this long.
MAX_DATA_COLLECTIONS, MAX_DATA_COLLECTION_LENGTH = 100, 200
_CODE = re.compile(r"\bHDBP[0-9]{4}\b")


def requested_registries(data_collections: Iterable[str]) -> frozenset[str]:
    """The project codes among the data collections an account request names (free text,
    one collection each: ``HDBP0012``, ``HDBP0012 ANGIO``), granted on approval unless the
    manager chooses. A code counts as a whole word (``HDBP03001`` is none), and an entry
    naming several codes is ambiguous ("PACEMAKER HDBP0300, not HDBP0012"): it grants none,
    left for the manager to read as every name without a code is."""
    found = set()
    for entry in data_collections:
        codes = set(_CODE.findall(entry.upper()))
        if len(codes) == 1:
            found |= codes
    return frozenset(found)


def _roles(values: Iterable[str], field: str = "roles") -> frozenset[str]:
    unknown = sorted(set(values) - set(Role._value2member_map_))
    if unknown:
        raise invalid([FieldProblem(field, "unknown-role", f"Unknown role(s): {', '.join(unknown)}.")])
    return frozenset(values)


@dataclass(frozen=True)
class AuditSearch:
    """Filters of the audit log: part of the actor's name, an action (``member.add``) or a
    prefix ending in a dot (``member.``), and inclusive days in Europe/Brussels."""

    actor: str = ""
    action: str = ""
    from_date: date | None = None
    to_date: date | None = None
    before_id: int = 0
    size: int = 50

    def conditions(self) -> list[Any]:
        out: list[Any] = []
        if self.actor.strip():
            out.append(func.lower(AuditEntry.actor).contains(self.actor.strip().lower(), autoescape=True))
        action = self.action.strip()
        if action.endswith("."):
            out.append(AuditEntry.action.startswith(action, autoescape=True))
        elif action:
            out.append(AuditEntry.action == action)
        if self.from_date is not None:
            out.append(AuditEntry.at >= _brussels_midnight(self.from_date))
        if self.to_date is not None:
            out.append(AuditEntry.at < _brussels_midnight(self.to_date + timedelta(days=1)))
        return out


def _brussels_midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=ZoneInfo("Europe/Brussels")).astimezone(UTC)


@dataclass(frozen=True)
class AddedMember:
    member: MemberRecord
    initial_password: str | None  # shown once, only when the account was created


class Directory:
    """Administration of organisations, members, accounts and clients, with audit."""

    def __init__(
        self,
        backend: IdentityBackend,
        db: Database,
        mailer: Mailer,
        locks: OrganisationLocks | None = None,
        revoked: Revocations | None = None,
    ) -> None:
        self.backend = backend
        self.db = db
        self.mailer = mailer
        self._revoked = revoked  # None: the process-wide list the verifiers read
        # Role changes and removals check "another User Manager remains", then write: one
        # at a time per organisation, or two managers stepping down together could both pass.
        self.locks = locks or OrganisationLocks(None)

    # --- helpers ---------------------------------------------------------------------

    async def _organisation(
        self, principal: Principal, organisation_id: str, action: Action
    ) -> OrganisationRecord:
        """The organisation if the caller may do ``action`` in it: 404 for non-members
        (existence is never confirmed), 403 for members without the right."""
        if organisation_id not in principal.memberships:
            raise not_found("Organisation")
        if not principal.can(action, organisation_id):
            raise forbidden()
        org = await self.backend.get_organisation(organisation_id)
        if org is None:
            raise not_found("Organisation")
        return org

    async def audit(
        self,
        principal: Principal | None,
        organisation_id: str,
        action: str,
        target: str = "",
        *,
        actor: AccountRecord | None = None,
        **details: Any,
    ) -> None:
        """One audit entry; ``actor`` names the account acting without a token."""
        async with self.db.system_session() as session:
            session.add(
                AuditEntry(
                    organisation_id=organisation_id,
                    actor=principal.username if principal else (actor.username if actor else "anonymous"),
                    actor_id=principal.subject if principal else (actor.id if actor else ""),
                    action=action,
                    target=target,
                    details=details,
                )
            )

    async def audit_login(self, who: str, action: str, **details: Any) -> None:
        """An audit entry about logins to ``who`` (a username or e-mail, ``client:<id>``,
        ``sftp:<username>``) in each organisation it belongs to; none for unknown names."""
        kind, _, name = who.partition(":") if who.startswith(("client:", "sftp:")) else ("", "", who)
        organisations: Iterable[str] = ()
        if kind == "client":
            client = await self.backend.get_client(name)
            organisations = [client.organisation_id] if client else []
        elif kind == "sftp":
            async with self.db.system_session() as session:
                credential = await session.get(SftpCredential, name.strip().lower())
                organisations = [credential.organisation_id] if credential else []
        else:
            account = await self.backend.find_account(name)
            organisations = await self.backend.memberships(account.id) if account else {}
        for org in organisations:
            await self.audit(None, org, action, name, **details)

    async def _member(self, organisation_id: str, account_id: str) -> MemberRecord:
        for m in await self.backend.members(organisation_id):
            if m.account.id == account_id:
                return m
        raise not_found("Member")

    async def _revoke(self, account_id: str | None = None, *, client_id: str | None = None) -> None:
        """Refuse the tokens issued so far to an account (ending its sessions) or a client."""
        revoked = self._revoked or revocations()
        if account_id is not None:
            await self.backend.end_sessions(account_id)
            await revoked.revoke(account_id)
        if client_id is not None:
            await revoked.revoke(f"client:{client_id}")

    async def _ensure_other_operator(self, account_id: str) -> None:
        operators = [a for a in await self.backend.realm_role_members(OPERATOR_ROLE) if a.enabled]
        if any(a.id == account_id for a in operators) and all(a.id == account_id for a in operators):
            raise conflict(
                "last-operator",
                "The installation keeps at least one operator",
                "Another account must hold the operator role first.",
            )

    async def _ensure_other_manager(self, organisation_id: str, account_id: str) -> None:
        managers = [m for m in await self.backend.members(organisation_id) if Role.MANAGER in m.roles]
        if all(m.account.id == account_id for m in managers):
            raise conflict(
                "last-user-manager",
                "An organisation keeps at least one User Manager",
                "Make another member User Manager first.",
            )

    # --- organisations ---------------------------------------------------------------

    async def create_organisation(
        self, principal: Principal, *, title: str, nihdi_number: str
    ) -> OrganisationRecord:
        if not principal.can(Action.ORGANISATION_CREATE):
            raise forbidden("Only a User Manager creates organisations.")
        errors = nihdi.problems(nihdi_number)
        if not title.strip():
            errors.append(FieldProblem("title", "required", "An organisation has a title."))
        if errors:
            raise invalid(errors)
        try:
            org = await self.backend.create_organisation(
                title=title.strip(), nihdi_number=nihdi.normalise(nihdi_number)
            )
        except DuplicateOrganisation as exc:
            raise conflict(
                "duplicate-nihdi", "An organisation with this NIHDI number exists already"
            ) from exc
        if not principal.is_system and await self.backend.get_account(principal.subject) is not None:
            # The creator manages the new organisation, so it starts with a User Manager.
            await self.backend.set_roles(principal.subject, org.id, frozenset({Role.MANAGER}))
        await self.audit(
            principal, org.id, "organisation.create", org.id, title=org.title, nihdi_number=org.nihdi_number
        )
        return org

    async def appoint_first_user_manager(
        self,
        principal: Principal,
        *,
        title: str,
        nihdi_number: str,
        email: str,
        first_name: str,
        last_name: str,
        username: str | None = None,
    ) -> tuple[OrganisationRecord, AddedMember]:
        """The central operator starts an installation (SSP seed: "the initial User Manager
        is appointed internally"): a new organisation and its first User Manager. A new
        account gets an initial password, answered once; a person who has an account
        already (User Manager elsewhere) keeps it. Everything is checked before anything
        is written, so a refusal leaves no organisation without its manager."""
        if not principal.can(Action.USER_MANAGER_APPOINT):
            raise forbidden("Only the central operator appoints an installation's first User Manager.")
        email, wanted_username = email.strip(), (username or email).strip()
        errors = nihdi.problems(nihdi_number)
        if not title.strip():
            errors.append(FieldProblem("title", "required", "An organisation has a title."))
        if not _EMAIL.match(email):
            errors.append(FieldProblem("email", "email", "Give a valid e-mail address."))
        if errors:
            raise invalid(errors)
        account = await self.backend.find_account(email)
        if account is not None and account.email.lower() != email.lower():
            raise conflict("duplicate-username", "This e-mail is another account's username")
        if account is None and await self.backend.find_account(wanted_username) is not None:
            raise conflict("duplicate-username", "This username is taken")
        try:
            org = await self.backend.create_organisation(
                title=title.strip(), nihdi_number=nihdi.normalise(nihdi_number)
            )
        except DuplicateOrganisation as exc:
            raise conflict(
                "duplicate-nihdi", "An organisation with this NIHDI number exists already"
            ) from exc
        password = None
        if account is None:
            password = new_password()
            try:
                account = await self.backend.create_account(
                    username=wanted_username,
                    email=email,
                    first_name=first_name.strip(),
                    last_name=last_name.strip(),
                    password=password,
                    temporary=True,
                )
            except DuplicateAccount as exc:  # taken between the check and now: appoint again
                raise conflict(
                    "duplicate-email", "An account with this e-mail or username exists already"
                ) from exc
        manager = frozenset({Role.MANAGER.value})
        await self.backend.set_roles(account.id, org.id, manager)
        await self.backend.set_registries(account.id, org.id, frozenset({ALL_REGISTRIES}))
        await self.audit(
            principal,
            org.id,
            "organisation.create",
            org.id,
            title=org.title,
            nihdi_number=org.nihdi_number,
            by="operator",
        )
        await self.audit(
            principal,
            org.id,
            "member.add",
            account.email,
            account_id=account.id,
            roles=sorted(manager),
            new_account=password is not None,
            first_user_manager=True,
        )
        return org, AddedMember(MemberRecord(account, manager, frozenset({ALL_REGISTRIES})), password)

    async def update_organisation(
        self, principal: Principal, organisation_id: str, *, title: str, nihdi_number: str
    ) -> OrganisationRecord:
        """A new title or NIHDI number, by the organisation's User Manager (as creating one)."""
        before = await self._organisation(principal, organisation_id, Action.ROLE_MANAGE)
        errors = nihdi.problems(nihdi_number)
        if not title.strip():
            errors.append(FieldProblem("title", "required", "An organisation has a title."))
        if errors:
            raise invalid(errors)
        try:
            org = await self.backend.update_organisation(
                organisation_id, title=title.strip(), nihdi_number=nihdi.normalise(nihdi_number)
            )
        except DuplicateOrganisation as exc:
            raise conflict(
                "duplicate-nihdi", "An organisation with this NIHDI number exists already"
            ) from exc
        await self.audit(
            principal,
            organisation_id,
            "organisation.update",
            organisation_id,
            before={"title": before.title, "nihdi_number": before.nihdi_number},
            after={"title": org.title, "nihdi_number": org.nihdi_number},
        )
        return org

    # --- members ---------------------------------------------------------------------

    async def members_page(
        self,
        principal: Principal,
        organisation_id: str,
        *,
        query: str = "",
        role: str = "",
        after_email: str = "",
        size: int = 50,
    ) -> tuple[list[MemberRecord], int, int, str]:
        """One page of members by e-mail (keyset), those matching ``query`` in e-mail,
        username or name and holding ``role`` (any when empty); with the total matching, how
        many of them come before the page, and the next page's key ("" at the end)."""
        wanted = query.strip().lower()

        def matches(m: MemberRecord) -> bool:
            a = m.account
            if role and role not in m.roles:
                return False
            return (
                not wanted
                or a.id == query.strip()
                or any(wanted in v.lower() for v in (a.email, a.username, a.first_name, a.last_name))
            )

        found = [m for m in await self.members(principal, organisation_id) if matches(m)]
        found.sort(key=lambda m: m.account.email.lower())
        rest = [m for m in found if m.account.email.lower() > after_email.lower()] if after_email else found
        page = rest[:size]
        more = len(rest) > size
        return page, len(found), len(found) - len(rest), page[-1].account.email if more and page else ""

    async def members(self, principal: Principal, organisation_id: str) -> Sequence[MemberRecord]:
        await self._organisation(principal, organisation_id, Action.MEMBER_MANAGE)
        return await self.backend.members(organisation_id)

    def _check_role_change(
        self, principal: Principal, organisation_id: str, before: frozenset[str], after: frozenset[str]
    ) -> None:
        if (before ^ after) & USER_MANAGER_ROLES and not principal.can(Action.ROLE_MANAGE, organisation_id):
            # The words the portal translates (hdhub.portal.pages.problems).
            raise forbidden("Only a User Manager gives or takes administrative roles.")

    async def add_member(
        self,
        principal: Principal,
        organisation_id: str,
        *,
        email: str,
        first_name: str,
        last_name: str,
        roles: Iterable[str],
        username: str | None = None,
        registries: Iterable[str] | None = None,
    ) -> AddedMember:
        await self._organisation(principal, organisation_id, Action.MEMBER_MANAGE)
        wanted = _roles(roles)
        granted = registries_of(registries)
        email = email.strip()
        if not _EMAIL.match(email):
            raise invalid([FieldProblem("email", "email", "Give a valid e-mail address.")])
        self._check_role_change(principal, organisation_id, frozenset(), wanted)
        account = await self.backend.find_account(email)
        if username and account is None and await self.backend.find_account(username) is not None:
            raise conflict("duplicate-username", "This username is taken")
        password = None
        if account is not None:
            if account.email.lower() != email.lower():
                raise conflict("duplicate-username", "This e-mail is another account's username")
            if organisation_id in await self.backend.memberships(account.id):
                raise conflict(
                    "duplicate-email", "A member with this e-mail exists already in this organisation"
                )
        else:
            password = new_password()
            try:
                account = await self.backend.create_account(
                    username=(username or email).strip(),
                    email=email,
                    first_name=first_name.strip(),
                    last_name=last_name.strip(),
                    password=password,
                    temporary=True,
                )
            except DuplicateAccount as exc:
                raise conflict(
                    "duplicate-email", "An account with this e-mail or username exists already"
                ) from exc
        await self.backend.set_roles(account.id, organisation_id, wanted)
        await self.backend.set_registries(account.id, organisation_id, granted)
        await self.audit(
            principal,
            organisation_id,
            "member.add",
            account.email,
            account_id=account.id,
            roles=sorted(wanted),
            registries=sorted(granted),
            new_account=password is not None,
        )
        return AddedMember(MemberRecord(account, wanted, granted), password)

    async def set_roles(
        self, principal: Principal, organisation_id: str, account_id: str, roles: Iterable[str]
    ) -> MemberRecord:
        await self._organisation(principal, organisation_id, Action.MEMBER_MANAGE)
        wanted = _roles(roles)
        async with self.locks.hold([organisation_id]):
            member = await self._member(organisation_id, account_id)
            self._check_role_change(principal, organisation_id, member.roles, wanted)
            if Role.MANAGER in member.roles and Role.MANAGER not in wanted:
                await self._ensure_other_manager(organisation_id, account_id)
            await self.backend.set_roles(account_id, organisation_id, wanted)
        if member.roles - wanted:  # a role taken: the member's tokens that carry it stop now
            await self._revoke(account_id)
        await self.audit(
            principal,
            organisation_id,
            "member.roles",
            member.account.email,
            account_id=account_id,
            before=sorted(member.roles),
            after=sorted(wanted),
        )
        return MemberRecord(member.account, wanted, member.registries)

    async def set_registries(
        self, principal: Principal, organisation_id: str, account_id: str, registries: Iterable[str]
    ) -> MemberRecord:
        """Grant a member exactly these registries (User Manager, DP Manager: who gives data
        roles gives the registries they act on). Taking one ends the member's current tokens."""
        await self._organisation(principal, organisation_id, Action.MEMBER_MANAGE)
        granted = registries_of(list(registries))
        async with self.locks.hold([organisation_id]):
            member = await self._member(organisation_id, account_id)
            await self.backend.set_registries(account_id, organisation_id, granted)
        taken = member.registries - granted
        if taken and ALL_REGISTRIES not in granted:
            await self._revoke(account_id)
        await self.audit(
            principal,
            organisation_id,
            "member.registries",
            member.account.email,
            account_id=account_id,
            before=sorted(member.registries),
            after=sorted(granted),
        )
        return MemberRecord(member.account, member.roles, granted)

    async def remove_member(self, principal: Principal, organisation_id: str, account_id: str) -> None:
        await self._organisation(principal, organisation_id, Action.MEMBER_MANAGE)
        async with self.locks.hold([organisation_id]):
            member = await self._member(organisation_id, account_id)
            self._check_role_change(principal, organisation_id, member.roles, frozenset())
            if Role.MANAGER in member.roles:
                await self._ensure_other_manager(organisation_id, account_id)
            await self.backend.remove_membership(account_id, organisation_id)
        await self._revoke(account_id)
        await self.audit(
            principal, organisation_id, "member.remove", member.account.email, account_id=account_id
        )

    # --- accounts --------------------------------------------------------------------

    async def cancel_account(
        self, principal: Principal, account_id: str, *, reason: str | None = None
    ) -> None:
        account = await self.backend.get_account(account_id)
        memberships = await self.backend.memberships(account_id) if account else {}
        own = account is not None and account.id == principal.subject
        if not own:
            # A manager cancels only accounts whose every organisation they manage.
            if (
                account is None
                or not memberships
                or not any(principal.can(Action.MEMBER_MANAGE, o) for o in memberships)
            ):
                raise not_found("Account")
            for org, roles in memberships.items():
                if not principal.can(Action.MEMBER_MANAGE, org):
                    raise forbidden("This account belongs to an organisation you do not manage.")
                self._check_role_change(principal, org, roles, frozenset())
        assert account is not None
        async with self.locks.hold([*memberships, OPERATORS_LOCK]):
            for org, roles in (await self.backend.memberships(account_id)).items():
                if Role.MANAGER in roles:
                    await self._ensure_other_manager(org, account_id)
            await self._ensure_other_operator(account_id)
            await self.backend.end_sessions(account_id)
            await self.backend.delete_account(account_id)
        await (self._revoked or revocations()).revoke(account_id)
        for org in memberships:
            await self.audit(
                principal, org, "account.cancel", account.email, account_id=account_id, reason=reason
            )

    async def change_password(self, username: str, current: str, new: str) -> AccountRecord:
        """Change a password knowing the current one: own password, or the initial one
        before the first login (Keycloak's UPDATE_PASSWORD required action)."""
        errors = password_problems(new, current=current)
        if errors:
            raise invalid(errors)
        account = await self.backend.check_password(username, current)
        if account is None:
            raise Problem(400, "invalid-credentials", "The username or current password is wrong")
        await self.backend.set_password(account.id, new, temporary=False)
        for org in await self.backend.memberships(account.id):
            await self.audit(
                None, org, "account.password", account.email, actor=account, account_id=account.id
            )
        return account

    # --- hospital-system clients -----------------------------------------------------

    async def clients(self, principal: Principal, organisation_id: str) -> Sequence[ClientRecord]:
        await self._organisation(principal, organisation_id, Action.CLIENT_MANAGE)
        return await self.backend.clients(organisation_id)

    async def create_client(
        self,
        principal: Principal,
        organisation_id: str,
        *,
        client_id: str | None,
        name: str,
        roles: Iterable[str],
        registries: Iterable[str] | None = None,
    ) -> tuple[ClientRecord, str]:
        await self._organisation(principal, organisation_id, Action.CLIENT_MANAGE)
        wanted = _roles(roles)
        granted = registries_of(registries)
        if wanted - DATA_ROLES:
            raise invalid(
                [
                    FieldProblem(
                        "roles",
                        "data-roles-only",
                        "A hospital system gets data roles only (registrant, reader).",
                    )
                ]
            )
        client_id = client_id or f"{organisation_id}-{secrets.token_hex(4)}"
        if not _CLIENT_ID.match(client_id):
            raise invalid(
                [FieldProblem("client_id", "pattern", "3 to 100 lower-case letters, digits and dashes.")]
            )
        if client_id.startswith("hdhub-"):
            raise invalid(
                [
                    FieldProblem(
                        "client_id", "reserved", "Client ids starting with hdhub- are the platform's own."
                    )
                ]
            )
        secret = secrets.token_urlsafe(32)
        try:
            client = await self.backend.create_client(
                client_id=client_id,
                organisation_id=organisation_id,
                name=name.strip(),
                roles=wanted,
                secret=secret,
                registries=granted,
            )
        except DuplicateClient as exc:
            raise conflict("duplicate-client", "A client with this client id exists already") from exc
        await self.audit(
            principal,
            organisation_id,
            "client.create",
            client_id,
            roles=sorted(wanted),
            registries=sorted(granted),
        )
        return client, secret

    async def _client(self, principal: Principal, organisation_id: str, client_id: str) -> ClientRecord:
        await self._organisation(principal, organisation_id, Action.CLIENT_MANAGE)
        client = await self.backend.get_client(client_id)
        if client is None or client.organisation_id != organisation_id:
            raise not_found("Client")
        return client

    async def rotate_client_secret(
        self, principal: Principal, organisation_id: str, client_id: str
    ) -> tuple[ClientRecord, str]:
        client = await self._client(principal, organisation_id, client_id)
        secret = secrets.token_urlsafe(32)
        await self.backend.set_client_secret(client_id, secret)
        await self._revoke(client_id=client_id)  # a leaked secret's tokens stop with it
        await self.audit(principal, organisation_id, "client.rotate", client_id)
        return client, secret

    async def delete_client(self, principal: Principal, organisation_id: str, client_id: str) -> None:
        await self._client(principal, organisation_id, client_id)
        await self.backend.delete_client(client_id)
        await self._revoke(client_id=client_id)
        await self.audit(principal, organisation_id, "client.delete", client_id)

    # --- SFTP credentials (intake) -----------------------------------------------------
    # A set of their own (DOMAIN.md): an SFTP login is neither a portal account nor an API
    # client, and is bound to one organisation. Kept in identity's database whichever
    # backend holds the accounts (Keycloak has no place for SSH logins); argon2 like the rest.

    async def sftp_credentials(self, principal: Principal, organisation_id: str) -> list[SftpCredential]:
        await self._organisation(principal, organisation_id, Action.CLIENT_MANAGE)
        async with self.db.session([organisation_id]) as session:
            rows = await session.execute(select(SftpCredential).order_by(SftpCredential.username))
            return list(rows.scalars())

    async def create_sftp_credential(
        self, principal: Principal, organisation_id: str, *, username: str | None, name: str
    ) -> tuple[SftpCredential, str]:
        """A new SFTP login for the organisation; the password is returned once."""
        await self._organisation(principal, organisation_id, Action.CLIENT_MANAGE)
        username = (username or f"{organisation_id}-sftp-{secrets.token_hex(3)}").strip().lower()
        if not _SFTP_USERNAME.match(username):
            raise invalid(
                [FieldProblem("username", "pattern", "3 to 64 lower-case letters, digits, '.', '_' and '-'.")]
            )
        password = new_password() + new_password()  # 32 characters: scripts keep it, nobody types it
        hashed = await hash_secret(password)
        async with self.db.system_session() as session:
            if await session.get(SftpCredential, username) is not None:
                raise conflict("duplicate-sftp-username", "An SFTP login with this username exists already")
            credential = SftpCredential(
                username=username,
                organisation_id=organisation_id,
                name=name.strip(),
                password_hash=hashed,
                created_by=principal.username,
            )
            session.add(credential)
        await self.audit(principal, organisation_id, "sftp.create", username)
        return credential, password

    async def _sftp_credential(self, principal: Principal, organisation_id: str, username: str) -> None:
        await self._organisation(principal, organisation_id, Action.CLIENT_MANAGE)
        async with self.db.session([organisation_id]) as session:
            if await session.get(SftpCredential, username) is None:
                raise not_found("SFTP login")

    async def rotate_sftp_password(
        self, principal: Principal, organisation_id: str, username: str
    ) -> tuple[SftpCredential, str]:
        await self._sftp_credential(principal, organisation_id, username)
        password = new_password() + new_password()
        hashed = await hash_secret(password)
        async with self.db.session([organisation_id]) as session:
            credential = await session.get(SftpCredential, username)
            assert credential is not None
            credential.password_hash, credential.rotated_at = hashed, utcnow()
        await self.audit(principal, organisation_id, "sftp.rotate", username)
        return credential, password

    async def delete_sftp_credential(self, principal: Principal, organisation_id: str, username: str) -> None:
        await self._sftp_credential(principal, organisation_id, username)
        async with self.db.session([organisation_id]) as session:
            credential = await session.get(SftpCredential, username)
            await session.delete(credential)
        await self.audit(principal, organisation_id, "sftp.delete", username)

    async def verify_sftp_password(self, username: str, password: str) -> SftpCredential | None:
        """The enabled login when the password is right, else None (same time either way)."""
        async with self.db.system_session() as session:
            credential = await session.get(SftpCredential, username.strip().lower())
            ok = await check_secret(credential.password_hash if credential else None, password)
            if not ok or credential is None or not credential.enabled:
                return None
            credential.last_login_at = utcnow()
            return credential

    # --- audit -----------------------------------------------------------------------

    async def audit_page(
        self, principal: Principal, organisation_id: str, search: AuditSearch
    ) -> tuple[list[AuditEntry], int, int, int]:
        """Entries newest first matching ``search``, one page (keyset on id), the total
        matching, how many of them come before the page, and the next page's ``before_id``
        (0 at the end)."""
        await self._organisation(principal, organisation_id, Action.AUDIT_READ)
        conditions = search.conditions()
        matching = select(AuditEntry).where(*conditions)
        async with self.db.session([organisation_id]) as session:
            total = await count(session, matching)
            skipped = (
                await count(session, matching.where(AuditEntry.id >= search.before_id))
                if search.before_id
                else 0
            )
            q = matching.where(AuditEntry.id < search.before_id) if search.before_id else matching
            rows = list(
                (await session.execute(q.order_by(AuditEntry.id.desc()).limit(search.size + 1))).scalars()
            )
        more = len(rows) > search.size
        rows = rows[: search.size]
        return rows, total, skipped, rows[-1].id if more and rows else 0

    # --- v1 account requests ---------------------------------------------------------

    async def request_account(
        self,
        *,
        organisation_id: str,
        username: str,
        first_name: str,
        last_name: str,
        email: str,
        data_collections: list[str],
        requester_email: str | None,
    ) -> AccountRequest:
        errors = []
        if not _EMAIL.match(email.strip()):
            errors.append(FieldProblem("email", "email", "Give a valid e-mail address."))
        if len(data_collections) > MAX_DATA_COLLECTIONS:
            errors.append(
                FieldProblem(
                    "data_collections", "too-many", f"At most {MAX_DATA_COLLECTIONS} data collections."
                )
            )
        if any(len(entry) > MAX_DATA_COLLECTION_LENGTH for entry in data_collections):
            errors.append(
                FieldProblem(
                    "data_collections",
                    "too-long",
                    f"Name each data collection in at most {MAX_DATA_COLLECTION_LENGTH} characters.",
                )
            )
        if requester_email and not _EMAIL.match(requester_email.strip()):
            errors.append(FieldProblem("requester_email", "email", "Give a valid e-mail address."))
        for name, value in (("username", username), ("first_name", first_name), ("last_name", last_name)):
            if not value.strip():
                errors.append(FieldProblem(name, "required", "This field is required."))
        if errors:
            raise invalid(errors)
        org = await self.backend.get_organisation(organisation_id)
        if org is None:
            raise invalid([FieldProblem("organisation_id", "unknown", "No such organisation.")])
        # Kept or not, the answer takes the same time: a request stored mails twice and
        # writes the audit, one not kept mails once, and the difference told who has an
        # account (7 ms against 11 ms, measured).
        answer_at = monotonic() + ANSWER_FLOOR_SECONDS
        request = AccountRequest(
            id=new_id(),
            organisation_id=organisation_id,
            username=username.strip(),
            first_name=first_name.strip(),
            last_name=last_name.strip(),
            email=email.strip(),
            data_collections=list(data_collections),
            requester_email=(requester_email or "").strip() or None,
            status="pending",
            created_at=utcnow(),
        )
        try:
            return await self._take_request(request, org.title)
        finally:
            await asyncio.sleep(max(0.0, answer_at - monotonic()))

    async def _take_request(self, request: AccountRequest, title: str) -> AccountRequest:
        # Anyone may ask, without a token: the answer must not tell who has an account or
        # a request pending. A request for an address that has an account, or a request
        # pending, is answered as any other and kept nowhere; the address is told by mail
        # (its owner reads it, nobody else). A username taken by another account is no
        # business of the address given: that request waits for the manager, whose approval
        # is refused (409) and who rejects it saying so.
        organisation_id = request.organisation_id
        existing = await self.backend.find_account(request.email)
        async with self.db.session([organisation_id]) as session:
            pending = (
                await session.execute(
                    select(AccountRequest.id).where(
                        AccountRequest.email == request.email, AccountRequest.status == "pending"
                    )
                )
            ).first()
        if existing is not None or pending is not None:
            return await self._unkept(request, title, has_account=existing is not None)
        async with self.db.session([organisation_id]) as session:
            session.add(request)
        await self.audit(
            None, organisation_id, "account-request.submit", request.email, request_id=request.id
        )
        collections = ", ".join(request.data_collections) or "none"
        await self.mailer.send(
            [request.email],
            "hdhub: your account request was received",
            f"We received the request for an account '{request.username}' at {title} "
            f"(data collections: {collections}). Its manager will approve or reject it; you will get a mail.",
        )
        await self._tell_requester(request, title, "received; its manager will approve or reject it")
        managers = [
            m.account.email for m in await self.backend.members(organisation_id) if Role.MANAGER in m.roles
        ]
        await self.mailer.send(
            managers,
            "hdhub: a new account request waits for you",
            f"{request.first_name} {request.last_name} <{request.email}> asks for an account at {title} "
            f"(data collections: {collections}). Approve or reject it in the portal.",
        )
        return request

    async def _tell_requester(self, request: AccountRequest, title: str, what: str) -> None:
        """The colleague who filed the request for someone (``requester_email``, an address
        anyone may give) hears of it in fixed words: never the password, never text the
        form carried (that would make the form a relay of anyone's text to anyone)."""
        if request.requester_email and request.requester_email != request.email:
            await self.mailer.send(
                [request.requester_email],
                "hdhub: an account request you sent",
                f"The account request you sent for a colleague at {title} was {what}.",
            )

    async def _unkept(self, request: AccountRequest, title: str, *, has_account: bool) -> AccountRequest:
        """The answer to a request for an address that has an account, or a request
        pending: ``request`` as if stored, stored nowhere; its address is told by mail."""
        # Not in the organisation's audit log: its managers would learn who has an account
        # elsewhere in the installation.
        log.info("account request not kept", extra={"organisation_id": request.organisation_id})
        text = (
            "An account exists already for this e-mail address: sign in, or ask for a new password "
            "on the sign-in page."
            if has_account
            else "A request for this e-mail address waits for its manager already; you will get a mail."
        )
        await self.mailer.send(
            [request.email],
            "hdhub: your account request",
            f"We received a request for an account at {title}. {text} If you did not ask, ignore this mail.",
        )
        return request

    async def account_requests(
        self, principal: Principal, organisation_id: str, status: str | None = None
    ) -> list[AccountRequest]:
        await self._organisation(principal, organisation_id, Action.ACCOUNT_REQUEST_REVIEW)
        async with self.db.session([organisation_id]) as session:
            q = select(AccountRequest).order_by(AccountRequest.created_at)
            if status:
                q = q.where(AccountRequest.status == status)
            return list((await session.execute(q)).scalars())

    async def decide_account_request(
        self,
        principal: Principal,
        organisation_id: str,
        request_id: str,
        *,
        approve: bool,
        reason: str | None = None,
        registries: Iterable[str] | None = None,
    ) -> tuple[AccountRequest, str | None]:
        """Approve (the account is created with the registrant role and the registries the
        manager grants: by default the project codes among the data collections asked
        for) or reject a request."""
        org = await self._organisation(principal, organisation_id, Action.ACCOUNT_REQUEST_REVIEW)
        chosen = registries_of(list(registries)) if registries is not None else None
        async with self.db.session([organisation_id]) as session:
            request = await session.get(AccountRequest, request_id)
            if request is None or request.organisation_id != organisation_id:
                raise not_found("Account request")
            if request.status != "pending":
                raise conflict("already-decided", f"This request was {request.status} already")
        password, granted = None, frozenset[str]()
        if approve:
            # The account first (in the backend, maybe Keycloak), then the request's status.
            password = new_password()
            try:
                account = await self.backend.create_account(
                    username=request.username,
                    email=request.email,
                    first_name=request.first_name,
                    last_name=request.last_name,
                    password=password,
                    temporary=True,
                )
            except DuplicateAccount as exc:
                raise conflict(
                    "duplicate-email", "An account with this e-mail or username exists already"
                ) from exc
            granted = chosen if chosen is not None else requested_registries(request.data_collections)
            await self.backend.set_roles(account.id, organisation_id, frozenset({Role.REGISTRANT}))
            await self.backend.set_registries(account.id, organisation_id, granted)
        async with self.db.session([organisation_id]) as session:
            stored = await session.get(AccountRequest, request_id)
            assert stored is not None
            stored.status = "approved" if approve else "rejected"
            stored.decided_at = utcnow()
            stored.decided_by = principal.username
            stored.reason = reason
            request = stored
        await self.audit(
            principal,
            organisation_id,
            f"account-request.{request.status}",
            request.email,
            request_id=request.id,
            reason=reason,
            registries=sorted(granted) if approve else None,
        )
        if approve:
            body = (
                f"Your account '{request.username}' at {org.title} was approved. Your initial password is {password}; "
                "you must change it before your first login."
            )
        else:
            body = f"Your account request at {org.title} was rejected." + (
                f" Reason: {reason}" if reason else ""
            )
        # The initial password to the account's own address only.
        await self.mailer.send([request.email], f"hdhub: your account request was {request.status}", body)
        await self._tell_requester(request, org.title, request.status)
        return request, password
