"""Demo identities for `make run` and the tests. Passwords are for laptops only."""

from __future__ import annotations

from dataclasses import dataclass

from argon2 import PasswordHasher
from sqlalchemy.ext.asyncio import AsyncSession

from hdhub.identity.store import Account, Membership, Organisation, SftpCredential, SystemClient

#: The demo accounts' passwords and secrets are printed in the README, and demo data is
#: never loaded in production: hashing them as a real password (0.2 s of CPU and 64 MiB
#: each) protects nothing, and cost every `hdhub run all` start about 2 s and every demo
#: sign-in and token 0.2 s. Argon2 keeps the parameters in the hash, so the same
#: verification reads both; a password changed later is hashed as any other.
demo_hasher = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)


@dataclass(frozen=True)
class DemoOrganisation:
    id: str
    title: str
    nihdi_number: str


@dataclass(frozen=True)
class DemoAccount:
    username: str
    password: str
    first_name: str
    last_name: str
    roles: dict[str, tuple[str, ...]]
    realm_roles: tuple[str, ...] = ()


@dataclass(frozen=True)
class DemoClient:
    client_id: str
    secret: str
    organisation_id: str
    name: str
    roles: tuple[str, ...]


@dataclass(frozen=True)
class DemoSftpLogin:
    username: str
    password: str
    organisation_id: str
    name: str


ORGANISATIONS = (
    DemoOrganisation("az-demo", "AZ Demo Hospital", "71000436"),
    DemoOrganisation("lab-demo", "Demo Clinical Laboratory", "82000137"),
)
ACCOUNTS = (
    DemoAccount(
        "manager@az-demo.test", "demo-manager", "Mia", "Manager", {"az-demo": ("manager", "dp_manager")}
    ),
    DemoAccount("nurse@az-demo.test", "demo-nurse", "Noor", "Nurse", {"az-demo": ("registrant",)}),
    DemoAccount(
        "certificates@az-demo.test", "demo-certs", "Cas", "Certificaat", {"az-demo": ("certificate_editor",)}
    ),
    DemoAccount("billing@az-demo.test", "demo-billing", "Bea", "Billing", {"az-demo": ("nippin_manager",)}),
    DemoAccount(
        "data@az-demo.test", "demo-data", "Dries", "Data", {"az-demo": ("registrant", "csv_upload_manager")}
    ),
    DemoAccount(
        "biologist@lab-demo.test", "demo-lab", "Bram", "Bioloog", {"lab-demo": ("registrant", "manager")}
    ),
    DemoAccount("operator@hdhub.test", "demo-operator", "Olga", "Operator", {}, ("hdhub-operator",)),
)
CLIENTS = (
    DemoClient(
        "az-demo-his", "demo-his-secret", "az-demo", "AZ Demo hospital information system", ("registrant",)
    ),
    DemoClient("lab-demo-lims", "demo-lims-secret", "lab-demo", "Demo LIMS", ("registrant",)),
)

SFTP_LOGINS = (
    DemoSftpLogin("lab-demo-sftp", "demo-sftp-lab-secret", "lab-demo", "Demo LIMS file drop"),
    DemoSftpLogin("az-demo-sftp", "demo-sftp-az-secret", "az-demo", "AZ Demo file drop"),
)


async def seed_demo(session: AsyncSession) -> None:
    """Create the demo organisations, accounts and clients if they are not there yet."""
    for o in ORGANISATIONS:
        if await session.get(Organisation, o.id) is None:
            session.add(Organisation(id=o.id, title=o.title, nihdi_number=o.nihdi_number))
    await session.flush()
    from sqlalchemy import select

    for a in ACCOUNTS:
        existing = (
            await session.execute(select(Account).where(Account.username == a.username))
        ).scalar_one_or_none()
        if existing is not None:
            continue
        account = Account(
            username=a.username,
            email=a.username,
            first_name=a.first_name,
            last_name=a.last_name,
            password_hash=demo_hasher.hash(a.password),
            realm_roles=list(a.realm_roles),
        )
        session.add(account)
        await session.flush()
        for org_id, roles in a.roles.items():
            # Demo members work on every registry; the docs show narrowing one (docs/identity.md).
            session.add(
                Membership(account_id=account.id, organisation_id=org_id, roles=list(roles), registries=["*"])
            )
    for c in CLIENTS:
        if await session.get(SystemClient, c.client_id) is None:
            session.add(
                SystemClient(
                    client_id=c.client_id,
                    organisation_id=c.organisation_id,
                    name=c.name,
                    secret_hash=demo_hasher.hash(c.secret),
                    roles=list(c.roles),
                    registries=["*"],
                )
            )
    for login in SFTP_LOGINS:
        if await session.get(SftpCredential, login.username) is None:
            session.add(
                SftpCredential(
                    username=login.username,
                    organisation_id=login.organisation_id,
                    name=login.name,
                    password_hash=demo_hasher.hash(login.password),
                    created_by="seed",
                )
            )
