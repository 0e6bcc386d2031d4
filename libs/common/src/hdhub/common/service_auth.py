"""A platform service calling other services as itself.

Background work (upload jobs, the drop folder, SFTP intake, delivery) has no user request
whose token it could forward, and a user's token expires long before a 100,000-row
upload is done. Such work runs under the service's own identity: the confidential client
``hdhub-<service>`` gets a token by the client-credentials grant (Keycloak in production,
the embedded issuer otherwise), with realm role ``hdhub-service:<service>``.

A service token alone opens no organisation: work done for one names it, with the person
or hospital system whose request started the work (a job carries both, see
:meth:`hdhub.common.jobs.JobQueue.acting_for`), and the callee lets the call touch that
organisation only (:data:`~hdhub.common.auth.SERVICE_POLICY` says what the service may
do there, :data:`~hdhub.common.auth.SERVICE_CALLS` which methods it may call):

    async with acting_as_service("uploads", ActingFor(upload.organisation_id, upload.author)):
        await stub.UpsertBatch(...)   # the token, hdhub-acting-for and hdhub-actor go along

Tokens are cached per service and renewed a minute before they expire, so a long job
never sends an expired token, and a thousand calls cost one token request.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from hdhub.common import auth
from hdhub.common.auth import ActingFor
from hdhub.common.config import is_placeholder, platform
from hdhub.common.errors import Problem

#: Renew this long before the token expires.
RENEW_SECONDS = 60.0


def client_id(service: str) -> str:
    return f"hdhub-{service}"


class ServiceTokens:
    """Client-credentials tokens for one service identity, cached until shortly before expiry."""

    def __init__(self, service: str, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.service = service
        self.transport = transport
        self._token: str | None = None
        self._principal: auth.Principal | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()

    async def principal(self) -> auth.Principal:
        if self._principal is not None and time.monotonic() < self._expires - RENEW_SECONDS:
            return self._principal
        async with self._lock:
            if self._principal is None or time.monotonic() >= self._expires - RENEW_SECONDS:
                await self._fetch()
        assert self._principal is not None
        return self._principal

    def forget(self) -> None:
        """Drop the cached token (the callee refused it: keys rotated, secret changed)."""
        self._principal, self._expires = None, 0.0

    async def _fetch(self) -> None:
        s = platform()
        if is_placeholder(s.service_client_secret):
            raise Problem(
                503, "service-identity-unset", "HDHUB_SERVICE_CLIENT_SECRET is unset or a placeholder"
            )
        transport = self.transport or auth.verifier().transport
        form = {
            "grant_type": "client_credentials",
            "client_id": client_id(self.service),
            "client_secret": s.service_client_secret,
        }
        try:
            async with httpx.AsyncClient(timeout=10.0, transport=transport) as client:
                response = await client.post(s.token_url, data=form)
        except httpx.HTTPError as exc:
            raise Problem(503, "issuer-unavailable", "The identity provider cannot be reached") from exc
        if response.status_code != 200:
            raise Problem(
                503,
                "service-identity-refused",
                f"The identity provider refused the {self.service} service client",
            )
        body = response.json()
        started = time.monotonic()
        token = str(body["access_token"])
        self._principal = await auth.verifier().verify(token)
        self._expires = started + float(body.get("expires_in", 300))


_sources: dict[str, ServiceTokens] = {}


def tokens(service: str) -> ServiceTokens:
    source = _sources.get(service)
    if source is None:
        source = _sources[service] = ServiceTokens(service)
    return source


def reset() -> None:
    """Forget cached tokens (tests switch issuers between stacks)."""
    _sources.clear()


async def service_principal(service: str, acting_for: ActingFor | None = None) -> auth.Principal:
    """The principal (with a fresh token) of platform service ``service``, doing the work
    of ``acting_for`` (None: work for no organisation, such as checking an SFTP login)."""
    principal = await tokens(service).principal()
    return dataclasses.replace(principal, acting_for=acting_for)


@asynccontextmanager
async def acting_as_service(
    service: str, acting_for: ActingFor | None = None
) -> AsyncIterator[auth.Principal]:
    """Run the block as platform service ``service`` doing ``acting_for``'s work: gRPC calls
    made inside it carry the service's token and the organisation and actor, instead of any
    user's token."""
    principal = await service_principal(service, acting_for)
    reset_token = auth.current_principal.set(principal)
    try:
        yield principal
    finally:
        auth.current_principal.reset(reset_token)


__all__ = [
    "ActingFor",
    "ServiceTokens",
    "acting_as_service",
    "client_id",
    "reset",
    "service_principal",
    "tokens",
]
