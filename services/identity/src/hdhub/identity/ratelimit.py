"""Login throttling: attempts per account and per address in fixed windows, and a lock
on an account after repeated failures. Counters live in Redis (shared by every replica;
DESIGN.md: Redis serves what may be lost) or in memory when no Redis is configured.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from hdhub.common.errors import Problem


@dataclass
class Throttled(Exception):
    retry_after: int
    reason: str  # "rate" or "locked"


class _MemoryCounters:
    def __init__(self) -> None:
        self._data: dict[str, tuple[int, float]] = {}

    async def incr(self, key: str, ttl: int) -> int:
        now = time.monotonic()
        count, expires = self._data.get(key, (0, 0.0))
        if expires <= now:
            count, expires = 0, now + ttl
        self._data[key] = (count + 1, expires)
        return count + 1

    async def ttl(self, key: str) -> int:
        count, expires = self._data.get(key, (0, 0.0))
        left = expires - time.monotonic()
        return int(left) + 1 if left > 0 and count else 0

    async def set(self, key: str, ttl: int) -> None:
        self._data[key] = (1, time.monotonic() + ttl)

    async def delete(self, *keys: str) -> None:
        for k in keys:
            self._data.pop(k, None)


class _RedisCounters:
    def __init__(self, url: str) -> None:
        import redis.asyncio as redis

        self._redis: Any = redis.from_url(url)

    async def incr(self, key: str, ttl: int) -> int:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, ttl, nx=True)
            count, _ = await pipe.execute()
        return int(count)

    async def ttl(self, key: str) -> int:
        left = int(await self._redis.ttl(key))
        return max(left, 0)

    async def set(self, key: str, ttl: int) -> None:
        await self._redis.set(key, 1, ex=ttl)

    async def delete(self, *keys: str) -> None:
        await self._redis.delete(*keys)

    async def close(self) -> None:
        await self._redis.aclose()


class LoginGuard:
    """Checks before a credential is tried, and records its outcome.

    ``per_account`` / ``per_address`` attempts per ``window`` seconds; after
    ``max_failures`` failed attempts on one account within ``lock_seconds`` the account is
    locked for ``lock_seconds`` (whether or not it exists, so a lock reveals nothing).
    """

    def __init__(
        self,
        redis_url: str | None,
        *,
        prefix: str = "hdhub:identity:login",
        per_account: int = 30,
        per_address: int = 600,
        window: int = 60,
        max_failures: int = 5,
        lock_seconds: int = 900,
    ) -> None:
        self.counters: Any = _RedisCounters(redis_url) if redis_url else _MemoryCounters()
        self.prefix = prefix
        self.per_account, self.per_address, self.window = per_account, per_address, window
        self.max_failures, self.lock_seconds = max_failures, lock_seconds

    def _key(self, kind: str, value: str) -> str:
        return f"{self.prefix}:{kind}:{value.strip().lower()}"

    async def before_attempt(self, account: str | None, address: str | None) -> None:
        if account:
            left = await self.counters.ttl(self._key("lock", account))
            if left:
                raise Throttled(left, "locked")
        if address and await self.counters.incr(self._key("addr", address), self.window) > self.per_address:
            raise Throttled(await self.counters.ttl(self._key("addr", address)) or self.window, "rate")
        if account and await self.counters.incr(self._key("acct", account), self.window) > self.per_account:
            raise Throttled(await self.counters.ttl(self._key("acct", account)) or self.window, "rate")

    async def failed(self, account: str | None) -> None:
        if not account:
            return
        if await self.counters.incr(self._key("fail", account), self.lock_seconds) >= self.max_failures:
            await self.counters.set(self._key("lock", account), self.lock_seconds)
            await self.counters.delete(self._key("fail", account))

    async def succeeded(self, account: str | None) -> None:
        if account:
            await self.counters.delete(self._key("fail", account))

    async def close(self) -> None:
        close = getattr(self.counters, "close", None)
        if close is not None:
            await close()


def throttled_problem(exc: Throttled) -> Problem:
    if exc.reason == "locked":
        return Problem(
            429,
            "account-locked",
            "Too many failed attempts",
            "This account is locked for a while after repeated failures; try again later.",
            headers={"Retry-After": str(exc.retry_after)},
        )
    return Problem(
        429, "too-many-attempts", "Too many attempts", "Slow down and try again later.", headers={"Retry-After": str(exc.retry_after)}
    )
