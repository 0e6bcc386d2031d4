"""Every login identity checks (token endpoint, password changes, SFTP) goes through here:
the source address, the throttle (:mod:`hdhub.identity.ratelimit`) and the audit entries
of a source made to wait and of its release."""

from __future__ import annotations

import logging

from fastapi import Request

from hdhub.identity.directory import Directory
from hdhub.identity.ratelimit import LoginGuard, SourceAddresses

log = logging.getLogger(__name__)


class Logins:
    """``who`` names what is logged into: a username or e-mail, ``client:<client id>`` or
    ``sftp:<username>``; ``source`` is the address the attempt comes from."""

    def __init__(self, guard: LoginGuard, directory: Directory, sources: SourceAddresses) -> None:
        self.guard = guard
        self.directory = directory
        self.sources = sources

    def source(self, request: Request) -> str | None:
        peer = request.client.host if request.client else None
        return self.sources.resolve(peer, request.headers.get("x-forwarded-for"))

    async def check(self, who: str | None, source: str | None) -> None:
        """Raise :class:`~hdhub.identity.ratelimit.Throttled` when the source must wait."""
        await self.guard.before_attempt(who, source)

    async def failed(self, who: str | None, source: str | None) -> None:
        failure = await self.guard.failed(who, source)
        if who and failure.failures == self.guard.free_failures:  # once per streak, not per try
            log.warning("login source made to wait", extra={"source": source, "wait_seconds": failure.wait})
            await self.directory.audit_login(
                who, "login.throttled", address=source, failures=failure.failures, wait_seconds=failure.wait
            )

    async def succeeded(self, who: str, source: str | None) -> None:
        """A right credential: the source's failures on it are forgiven, then the login
        counts against the authenticated principal's own rate (which may throttle it)."""
        if await self.guard.succeeded(who, source):
            await self.directory.audit_login(who, "login.released", address=source)
        await self.guard.authenticated(who)
