"""The embedded identity store: identity's own SQL tables, argon2 hashes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from hdhub.common.db import Database
from hdhub.identity.backend import (
    AccountRecord,
    ClientRecord,
    DuplicateAccount,
    DuplicateClient,
    DuplicateOrganisation,
    MemberRecord,
    OrganisationRecord,
)
from hdhub.identity.issuer import check_secret, hash_secret
from hdhub.identity.store import Account, Membership, Organisation, SystemClient


def _account(a: Account) -> AccountRecord:
    return AccountRecord(
        a.id, a.username, a.email, a.first_name, a.last_name, a.must_change_password, a.enabled
    )


def _client(c: SystemClient) -> ClientRecord:
    return ClientRecord(
        c.client_id, c.organisation_id, c.name, frozenset(c.roles), c.enabled, frozenset(c.registries)
    )


def _lookup(value: str) -> object:
    value = value.strip()
    return (func.lower(Account.username) == value.lower()) | (func.lower(Account.email) == value.lower())


class EmbeddedBackend:
    """:class:`~hdhub.identity.backend.IdentityBackend` on identity's database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def create_organisation(self, *, title: str, nihdi_number: str) -> OrganisationRecord:
        try:
            async with self.db.system_session() as session:
                org = Organisation(title=title, nihdi_number=nihdi_number)
                session.add(org)
                await session.flush()
                return OrganisationRecord(org.id, org.title, org.nihdi_number)
        except IntegrityError as exc:
            raise DuplicateOrganisation(nihdi_number) from exc

    async def update_organisation(
        self, organisation_id: str, *, title: str, nihdi_number: str
    ) -> OrganisationRecord:
        try:
            async with self.db.system_session() as session:
                org = await session.get(Organisation, organisation_id)
                assert org is not None  # the directory checked it
                org.title, org.nihdi_number = title, nihdi_number
                await session.flush()
                return OrganisationRecord(org.id, org.title, org.nihdi_number)
        except IntegrityError as exc:
            raise DuplicateOrganisation(nihdi_number) from exc

    async def get_organisation(self, organisation_id: str) -> OrganisationRecord | None:
        async with self.db.system_session() as session:
            org = await session.get(Organisation, organisation_id)
            return OrganisationRecord(org.id, org.title, org.nihdi_number) if org else None

    async def find_account(self, username_or_email: str) -> AccountRecord | None:
        async with self.db.system_session() as session:
            a = (await session.execute(select(Account).where(_lookup(username_or_email)))).scalars().first()  # type: ignore[arg-type]
            return _account(a) if a else None

    async def get_account(self, account_id: str) -> AccountRecord | None:
        async with self.db.system_session() as session:
            a = await session.get(Account, account_id)
            return _account(a) if a else None

    async def create_account(
        self, *, username: str, email: str, first_name: str, last_name: str, password: str, temporary: bool
    ) -> AccountRecord:
        hashed = await hash_secret(password)
        try:
            async with self.db.system_session() as session:
                clash = (
                    await session.execute(select(Account.id).where(_lookup(username) | _lookup(email)))  # type: ignore[operator]
                ).first()
                if clash is not None:
                    raise DuplicateAccount(email)
                a = Account(
                    username=username,
                    email=email,
                    first_name=first_name,
                    last_name=last_name,
                    password_hash=hashed,
                    must_change_password=temporary,
                    realm_roles=[],
                )
                session.add(a)
                await session.flush()
                return _account(a)
        except IntegrityError as exc:
            raise DuplicateAccount(email) from exc

    async def delete_account(self, account_id: str) -> None:
        async with self.db.system_session() as session:
            await session.execute(delete(Membership).where(Membership.account_id == account_id))
            await session.execute(delete(Account).where(Account.id == account_id))

    async def end_sessions(self, account_id: str) -> None:
        """End the account's sessions at the embedded issuer: their refresh tokens stop."""
        from hdhub.identity.codeflow import end_account_sessions

        async with self.db.system_session() as session:
            await end_account_sessions(session, account_id)

    async def realm_role_members(self, role: str) -> Sequence[AccountRecord]:
        async with self.db.system_session() as session:
            accounts = (await session.execute(select(Account).order_by(Account.email))).scalars()
            return [_account(a) for a in accounts if role in (a.realm_roles or [])]

    async def check_password(self, username_or_email: str, password: str) -> AccountRecord | None:
        async with self.db.system_session() as session:
            a = (await session.execute(select(Account).where(_lookup(username_or_email)))).scalars().first()  # type: ignore[arg-type]
        if not await check_secret(a.password_hash if a else None, password) or a is None:
            return None
        return _account(a)

    async def set_password(self, account_id: str, password: str, *, temporary: bool) -> None:
        hashed = await hash_secret(password)
        async with self.db.system_session() as session:
            a = await session.get(Account, account_id)
            if a is not None:
                a.password_hash = hashed
                a.must_change_password = temporary

    async def members(self, organisation_id: str) -> Sequence[MemberRecord]:
        async with self.db.system_session() as session:
            rows = await session.execute(
                select(Membership, Account)
                .join(Account, Account.id == Membership.account_id)
                .where(Membership.organisation_id == organisation_id)
                .order_by(Account.email)
            )
            return [
                MemberRecord(_account(a), frozenset(m.roles), frozenset(m.registries))
                for m, a in rows.tuples()
            ]

    async def member_counts(self, organisation_ids: Sequence[str]) -> Mapping[str, int]:
        async with self.db.system_session() as session:
            rows = await session.execute(
                select(Membership.organisation_id, func.count())
                .where(self.db.among(Membership.organisation_id, list(organisation_ids)))
                .group_by(Membership.organisation_id)
            )
            return {organisation_id: int(n) for organisation_id, n in rows.tuples()}

    async def memberships(self, account_id: str) -> Mapping[str, frozenset[str]]:
        async with self.db.system_session() as session:
            rows = (
                await session.execute(select(Membership).where(Membership.account_id == account_id))
            ).scalars()
            return {m.organisation_id: frozenset(m.roles) for m in rows}

    async def set_roles(self, account_id: str, organisation_id: str, roles: frozenset[str]) -> None:
        async with self.db.system_session() as session:
            m = (
                await session.execute(
                    select(Membership).where(
                        Membership.account_id == account_id, Membership.organisation_id == organisation_id
                    )
                )
            ).scalar_one_or_none()
            if m is None:
                session.add(
                    Membership(account_id=account_id, organisation_id=organisation_id, roles=sorted(roles))
                )
            else:
                m.roles = sorted(roles)

    async def set_registries(self, account_id: str, organisation_id: str, registries: frozenset[str]) -> None:
        async with self.db.system_session() as session:
            m = (
                await session.execute(
                    select(Membership).where(
                        Membership.account_id == account_id, Membership.organisation_id == organisation_id
                    )
                )
            ).scalar_one_or_none()
            if m is not None:
                m.registries = sorted(registries)

    async def remove_membership(self, account_id: str, organisation_id: str) -> None:
        async with self.db.system_session() as session:
            await session.execute(
                delete(Membership).where(
                    Membership.account_id == account_id, Membership.organisation_id == organisation_id
                )
            )

    async def clients(self, organisation_id: str) -> Sequence[ClientRecord]:
        async with self.db.system_session() as session:
            rows = await session.execute(
                select(SystemClient)
                .where(SystemClient.organisation_id == organisation_id)
                .order_by(SystemClient.client_id)
            )
            return [_client(c) for c in rows.scalars()]

    async def get_client(self, client_id: str) -> ClientRecord | None:
        async with self.db.system_session() as session:
            c = await session.get(SystemClient, client_id)
            return _client(c) if c else None

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
        hashed = await hash_secret(secret)
        try:
            async with self.db.system_session() as session:
                if await session.get(SystemClient, client_id) is not None:
                    raise DuplicateClient(client_id)
                c = SystemClient(
                    client_id=client_id,
                    organisation_id=organisation_id,
                    name=name,
                    roles=sorted(roles),
                    registries=sorted(registries),
                    secret_hash=hashed,
                )
                session.add(c)
                await session.flush()
                return _client(c)
        except IntegrityError as exc:
            raise DuplicateClient(client_id) from exc

    async def set_client_secret(self, client_id: str, secret: str) -> None:
        hashed = await hash_secret(secret)
        async with self.db.system_session() as session:
            c = await session.get(SystemClient, client_id)
            if c is not None:
                c.secret_hash = hashed

    async def delete_client(self, client_id: str) -> None:
        async with self.db.system_session() as session:
            await session.execute(delete(SystemClient).where(SystemClient.client_id == client_id))
