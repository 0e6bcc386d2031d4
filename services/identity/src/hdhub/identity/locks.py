"""Locks per organisation around the administration rules that read then write (the last
User Manager): in Redis when configured, so replicas take turns too; in-process otherwise."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from hdhub.common.errors import Problem


class OrganisationLocks:
    def __init__(
        self, redis_url: str | None, *, prefix: str = "hdhub:identity:lock", timeout: float = 10.0
    ) -> None:
        self.prefix = prefix
        self.timeout = timeout
        self._local: dict[str, asyncio.Lock] = {}
        self._redis: Any = None
        if redis_url:
            import redis.asyncio as redis

            self._redis = redis.from_url(redis_url)

    @asynccontextmanager
    async def _one(self, organisation_id: str) -> AsyncIterator[None]:
        local = self._local.setdefault(organisation_id, asyncio.Lock())
        async with local:
            if self._redis is None:
                yield
                return
            lock = self._redis.lock(
                f"{self.prefix}:{organisation_id}", timeout=self.timeout, blocking_timeout=self.timeout
            )
            if not await lock.acquire():
                raise Problem(503, "busy", "The organisation is being changed; try again")
            try:
                yield
            finally:
                try:
                    await lock.release()
                except Exception:  # expired meanwhile: nothing left to release
                    pass

    @asynccontextmanager
    async def hold(self, organisation_ids: Iterable[str]) -> AsyncIterator[None]:
        """Hold the locks of these organisations (always in the same order: no deadlock)."""
        async with AsyncExitStack() as stack:
            for org in sorted(set(organisation_ids)):
                await stack.enter_async_context(self._one(org))
            yield

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
