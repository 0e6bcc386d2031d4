"""The platform started in-process for integration tests: real migrations, real gRPC
servers on loopback, the embedded issuer, and an HTTP client over ASGI."""

from __future__ import annotations

import os
import random
import socket
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg

from hdhub.common import auth, local_secrets, revocation, service_auth
from hdhub.common.config import DEFAULT_GRPC_PORTS, platform

ISSUER = "http://testserver/realms/hdhub"
TOKEN_PATH = "/realms/hdhub/protocol/openid-connect/token"
# Tokens live 5 minutes; a cached one is used for 2, so a long run (a bench's 1M-row
# upload, polled for minutes) never polls with an expired one.
TOKEN_REUSE_SECONDS = 120.0
POSTGRES_ADMIN = os.environ.get("HDHUB_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _ephemeral_low() -> int:
    try:
        return int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A free port for a server to bind later, below the kernel's ephemeral range: a port
    the kernel hands out (bind to 0) can be taken meanwhile as the local port of any
    outgoing connection (a test's to PostgreSQL), and then the server cannot bind it
    (one such race failed a whole test session's stack)."""
    low = _ephemeral_low()
    for _ in range(100):
        port = random.randint(max(1024, low - 12_000), low - 1)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def create_database(name: str) -> str:
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    return f"{base}/{name}"


def drop_database(name: str) -> None:
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _revoked(token: str) -> bool:
    """Whether a cached token's access was revoked since (a test took a role from its holder)."""
    import jwt

    claims = jwt.decode(token, options={"verify_signature": False})
    subject = auth.revocation_subject(auth.Principal.from_claims(claims))
    return bool(claims["iat"] < await revocation.revocations().not_before(subject))


@dataclass
class Stack:
    client: httpx.AsyncClient
    platform: Any
    backend: str
    _tokens: dict[str, tuple[str, float]] = field(default_factory=dict)

    async def token(self, username: str, password: str | None = None) -> str:
        """A bearer token for a demo account (password grant) or client (client_credentials)."""
        from hdhub.identity.seed import ACCOUNTS, CLIENTS

        cached = self._tokens.get(username)
        if (
            cached is not None
            and time.monotonic() - cached[1] < TOKEN_REUSE_SECONDS
            and not await _revoked(cached[0])
        ):
            return cached[0]
        client = next((c for c in CLIENTS if c.client_id == username), None)
        if client is not None:
            form = {
                "grant_type": "client_credentials",
                "client_id": client.client_id,
                "client_secret": client.secret,
            }
        else:
            account = next(a for a in ACCOUNTS if a.username == username)
            form = {
                "grant_type": "password",
                "client_id": "hdhub-portal",
                "username": username,
                "password": password or account.password,
            }
        r = await self.client.post(TOKEN_PATH, data=form)
        assert r.status_code == 200, r.text
        token = r.json()["access_token"]
        self._tokens[username] = (token, time.monotonic())
        return token

    async def headers(self, username: str, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {await self.token(username)}", **extra}

    def service(self, name: str) -> Any:
        return self.platform.service(name)

    def from_address(self, address: str) -> httpx.AsyncClient:
        """A client whose requests come from ``address`` (as a peer, not a header)."""
        app = self.client._transport.app  # type: ignore[attr-defined]
        transport = httpx.ASGITransport(app=app, client=(address, 40000))
        return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@asynccontextmanager
async def running_stack(backend: str, tmp_path: Any, *, workers: bool = True) -> AsyncIterator[Stack]:
    """Every service in this process on ``backend`` (sqlite or postgres)."""
    from hdhub.cli.services import Platform
    from hdhub.common.config import SERVICES

    saved = dict(os.environ)
    databases: list[str] = []
    os.environ["HDHUB_ENVIRONMENT"] = "test"
    os.environ["HDHUB_OIDC_ISSUER"] = ISSUER
    os.environ["HDHUB_DATA_DIR"] = str(tmp_path)
    # Generated as `hdhub run all` does: tests use no shipped secret either.
    local_secrets.ensure(tmp_path)
    # Tests drive the drop folder themselves, each over a folder of its own.
    os.environ["HDHUB_UPLOADS_DROPFOLDER_ENABLED"] = "false"
    # The suite logs the same demo accounts in dozens of times a minute (the SFTP login
    # above all): far over a person's or a laboratory script's 30 logins a minute, which
    # services/identity/tests/test_login_throttling.py tests on a guard of its own.
    os.environ["HDHUB_IDENTITY_LOGIN_LOGINS_PER_PRINCIPAL"] = "100000"
    # Revoked tokens of concurrent test runs sharing one Redis must not meet either.
    os.environ["HDHUB_REVOCATION_KEY_PREFIX"] = f"hdhub:test:{uuid.uuid4().hex}:revoked"
    if backend == "postgres":  # the production shape: PostgreSQL plus Redis for wake-ups
        os.environ["HDHUB_REDIS_URL"] = os.environ.get("HDHUB_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
        # Login counters of concurrent test runs sharing one Redis must not add up.
        os.environ["HDHUB_IDENTITY_LOGIN_KEY_PREFIX"] = f"hdhub:test:{uuid.uuid4().hex}:login"
    for name in SERVICES:
        port = free_port()
        os.environ[f"HDHUB_{name.upper()}_GRPC_BIND"] = f"127.0.0.1:{port}"
        os.environ[f"HDHUB_GRPC_{name.upper()}"] = f"127.0.0.1:{port}"
        if backend == "postgres":
            db = f"hdhub_test_{name}_{uuid.uuid4().hex[:8]}"
            databases.append(db)
            os.environ[f"HDHUB_{name.upper()}_DATABASE_URL"] = create_database(db)
    platform.cache_clear()
    service_auth.reset()  # tokens of an earlier stack's issuer are not valid here
    stack_platform = Platform(list(SERVICES), migrate=True, seed=True, workers=workers)
    app = stack_platform.app()
    transport = httpx.ASGITransport(app=app)
    auth.set_verifier(
        auth.TokenVerifier(
            issuer=ISSUER,
            jwks_url=f"{ISSUER}/protocol/openid-connect/certs",
            audience="hdhub",
            transport=transport,
        )
    )
    await stack_platform.start()
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Stack(client, stack_platform, backend)
    finally:
        await stack_platform.stop()
        auth.set_verifier(None)
        service_auth.reset()
        os.environ.clear()
        os.environ.update(saved)
        platform.cache_clear()
        for db in databases:
            drop_database(db)


__all__ = ["DEFAULT_GRPC_PORTS", "Stack", "free_port", "running_stack"]
