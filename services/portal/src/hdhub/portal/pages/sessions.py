"""The portal's server-side sessions: the browser holds a random id in an HttpOnly cookie,
this store keeps the rest (CSRF token, the person's tokens sealed with AES-GCM under a key
derived from the portal's secret key). Sessions end after an idle time and a maximum."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import delete, select, update

from hdhub.common.db import Database, utcnow
from hdhub.portal.store import PortalSession

COOKIE = "hdhub_portal"
#: The idle clock is reset at most this often: the idle time is that much less exact.
TOUCH_EVERY = timedelta(seconds=60)


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


@dataclass
class Tokens:
    access_token: str
    refresh_token: str
    id_token: str


class Sessions:
    def __init__(
        self, db: Database, *, secret: Callable[[], bytes], idle_seconds: int, max_seconds: int
    ) -> None:
        self.db = db
        self._secret = secret  # read at first use: the REST-only tests run without one
        self._key: AESGCM | None = None
        self.idle = timedelta(seconds=idle_seconds)
        self.max = timedelta(seconds=max_seconds)

    @property
    def _aead(self) -> AESGCM:
        if self._key is None:
            self._key = AESGCM(hashlib.sha256(b"hdhub-portal-session-tokens\x00" + self._secret()).digest())
        return self._key

    def seal(self, id_hash: str, tokens: Tokens) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, json.dumps(tokens.__dict__).encode(), id_hash.encode())

    def unseal(self, row: PortalSession) -> Tokens | None:
        """The session's tokens; None when there are none or they were sealed under another
        secret key (a new key signs everyone out)."""
        if not row.tokens:
            return None
        try:
            raw = self._aead.decrypt(row.tokens[:12], row.tokens[12:], row.id_hash.encode())
        except InvalidTag:
            return None
        return Tokens(**json.loads(raw))

    async def create(self, **values: Any) -> tuple[str, PortalSession]:
        """A new session; the returned id goes into the cookie and nowhere else."""
        session_id = secrets.token_urlsafe(32)
        now = utcnow()
        row = PortalSession(
            id_hash=_hash(session_id),
            csrf_token=secrets.token_urlsafe(32),
            created_at=now,
            last_seen_at=now,
            expires_at=now + self.max,
            **values,
        )
        async with self.db.system_session() as s:
            s.add(row)
        return session_id, row

    async def get(self, session_id: str | None) -> PortalSession | None:
        """The live session for a cookie (touching it), or None (ended ones are deleted).

        Every page and every live validation of a form reads its session first, so the
        read is one statement on a connection in autocommit (no BEGIN, no COMMIT: two
        round trips to PostgreSQL fewer); the rare write, ending it or resetting its idle
        clock, is a transaction of its own."""
        if not session_id:
            return None
        now = utcnow()
        id_hash = _hash(session_id)
        table = PortalSession.__table__
        async with self.db.autocommit.connect() as conn:
            found = (await conn.execute(select(table).where(table.c.id_hash == id_hash))).mappings().first()
        if found is None:
            return None
        row = PortalSession(**found)
        if row.expires_at < now or row.last_seen_at + self.idle < now:
            await self.end(row)
            return None
        if row.last_seen_at + TOUCH_EVERY < now:  # a write a minute, not one per request
            async with self.db.system_session() as s:
                await s.execute(
                    update(PortalSession).where(PortalSession.id_hash == id_hash).values(last_seen_at=now)
                )
            row.last_seen_at = now
        return row

    async def save(self, row: PortalSession, **values: Any) -> None:
        async with self.db.system_session() as s:
            stored = await s.get(PortalSession, row.id_hash)
            if stored is None:
                return
            for key, value in values.items():
                setattr(stored, key, value)
                setattr(row, key, value)

    async def store_tokens(self, row: PortalSession, tokens: Tokens, access_expires_at: datetime) -> None:
        await self.save(row, tokens=self.seal(row.id_hash, tokens), access_expires_at=access_expires_at)

    async def end(self, row: PortalSession) -> None:
        async with self.db.system_session() as s:
            await s.execute(delete(PortalSession).where(PortalSession.id_hash == row.id_hash))

    async def sweep(self) -> int:
        """Delete ended sessions (the worker, now and then)."""
        async with self.db.system_session() as s:
            result = await s.execute(delete(PortalSession).where(PortalSession.expires_at < utcnow()))
            return int(getattr(result, "rowcount", 0) or 0)
