"""Login throttling that nobody can turn into a lock on someone else.

Failures are counted per (account, source address) and per source address, as Keycloak's
brute-force detector and OWASP's authentication guidance do: after a few free failures a
source waits before its next try, the wait doubling with each further failure up to a
cap. A source that has not failed is never stopped by another source's failures, so the
right password from the hospital's own network works while an attacker elsewhere guesses.
Waits are answered at once (429 with ``Retry-After``) rather than by holding the answer
back: a held connection costs a worker here and costs the attacker nothing.

Before the credential is checked the only counters consulted are the source's own; the
attempt rate of an account or client is counted after it authenticated (a claimed name
alone must not spend anyone's quota). Counters live in Redis (shared by every replica;
DESIGN.md: Redis serves what may be lost) or in memory when no Redis is configured.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from hdhub.common.errors import Problem

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass
class Throttled(Exception):
    retry_after: int
    reason: str  # "rate" (too many attempts) or "wait" (after failures from this source)


class _MemoryCounters:
    def __init__(self) -> None:
        self._data: dict[str, tuple[int, float]] = {}

    async def incr(self, key: str, ttl: float, *, sliding: bool = False) -> int:
        """Count one more; the count is forgotten ``ttl`` seconds after the first (or,
        ``sliding``, the latest) increment."""
        now = time.monotonic()
        count, expires = self._data.get(key, (0, 0.0))
        if expires <= now:
            count, expires = 0, now + ttl
        self._data[key] = (count + 1, now + ttl if sliding else expires)
        return count + 1

    async def ttl(self, key: str) -> float:
        count, expires = self._data.get(key, (0, 0.0))
        left = expires - time.monotonic()
        return left if left > 0 and count else 0.0

    async def get(self, key: str) -> int:
        count, expires = self._data.get(key, (0, 0.0))
        return count if expires > time.monotonic() else 0

    async def set(self, key: str, ttl: float) -> None:
        self._data[key] = (1, time.monotonic() + ttl)

    async def delete(self, *keys: str) -> None:
        for k in keys:
            self._data.pop(k, None)


class _RedisCounters:
    def __init__(self, url: str) -> None:
        import redis.asyncio as redis

        self._redis: Any = redis.from_url(url)

    async def incr(self, key: str, ttl: float, *, sliding: bool = False) -> int:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.pexpire(key, max(1, int(ttl * 1000)), nx=not sliding)
            count, _ = await pipe.execute()
        return int(count)

    async def ttl(self, key: str) -> float:
        left = int(await self._redis.pttl(key))
        return max(left, 0) / 1000

    async def get(self, key: str) -> int:
        return int(await self._redis.get(key) or 0)

    async def set(self, key: str, ttl: float) -> None:
        await self._redis.set(key, 1, px=max(1, int(ttl * 1000)))

    async def delete(self, *keys: str) -> None:
        await self._redis.delete(*keys)

    async def close(self) -> None:
        await self._redis.aclose()


def _seconds(left: float) -> int:
    return max(1, math.ceil(left))


@dataclass(frozen=True)
class Failure:
    """What one failed attempt did: the source's failure count for the account, and the
    wait it now has to sit out (0 while failures are still free)."""

    failures: int
    wait: float


class LoginGuard:
    """Checks before a credential is tried, and records its outcome.

    - ``per_address`` attempts per ``window`` seconds from one source, whatever it tries;
    - after ``free_failures`` failures of one account from one source (``address_free_failures``
      of any accounts from one source) within ``failure_memory`` seconds of each other, that
      source waits ``wait_base`` seconds before its next try, doubling per further failure
      up to ``wait_max``; a success from the source forgives its failures on that account;
    - ``per_principal`` successful logins per ``window`` of one authenticated account or client.
    """

    def __init__(
        self,
        redis_url: str | None,
        *,
        prefix: str = "hdhub:identity:login",
        per_principal: int = 30,
        per_address: int = 600,
        window: int = 60,
        free_failures: int = 5,
        address_free_failures: int = 50,
        failure_memory: float = 900,
        wait_base: float = 1.0,
        wait_max: float = 900,
    ) -> None:
        self.counters: Any = _RedisCounters(redis_url) if redis_url else _MemoryCounters()
        self.prefix = prefix
        self.per_principal, self.per_address, self.window = per_principal, per_address, window
        self.free_failures, self.address_free_failures = free_failures, address_free_failures
        self.failure_memory, self.wait_base, self.wait_max = failure_memory, wait_base, wait_max

    def _key(self, kind: str, *parts: str | None) -> str:
        return f"{self.prefix}:{kind}:" + "|".join((p or "-").strip().lower() for p in parts)

    def _wait(self, failures: int, free: int) -> float:
        if failures < free:
            return 0.0
        return float(min(self.wait_base * 2 ** (failures - free), self.wait_max))

    async def before_attempt(self, account: str | None, address: str | None) -> None:
        """Raise :class:`Throttled` when this source must wait or slow down."""
        for key in (self._key("wait", None, address), self._key("wait", account, address)):
            left = await self.counters.ttl(key)
            if left:
                raise Throttled(_seconds(left), "wait")
        if address and await self.counters.incr(self._key("addr", address), self.window) > self.per_address:
            raise Throttled(
                _seconds(await self.counters.ttl(self._key("addr", address)) or self.window), "rate"
            )

    async def failed(self, account: str | None, address: str | None) -> Failure:
        """Count a wrong credential from ``address``; the source's own wait starts or grows."""
        memory = self.failure_memory
        from_address = await self.counters.incr(self._key("fail", None, address), memory, sliding=True)
        wait = self._wait(from_address, self.address_free_failures)
        if wait:
            await self.counters.set(self._key("wait", None, address), wait)
        failures = 0
        if account:
            failures = await self.counters.incr(self._key("fail", account, address), memory, sliding=True)
            own = self._wait(failures, self.free_failures)
            if own:
                await self.counters.set(self._key("wait", account, address), own)
            wait = max(wait, own)
        return Failure(failures, wait)

    async def succeeded(self, account: str | None, address: str | None) -> bool:
        """Forgive this source's failures on the account; whether it had been made to wait
        (its release is worth an audit entry)."""
        if not account:
            return False
        key = self._key("fail", account, address)
        forgiven: int = await self.counters.get(key)
        await self.counters.delete(key, self._key("wait", account, address))
        return forgiven >= self.free_failures

    async def authenticated(self, principal: str) -> None:
        """Count a successful login of ``principal`` (an account or client id, known to be
        its holder's): too many in one window is :class:`Throttled` too."""
        key = self._key("principal", principal)
        if await self.counters.incr(key, self.window) > self.per_principal:
            raise Throttled(_seconds(await self.counters.ttl(key) or self.window), "rate")

    async def close(self) -> None:
        close = getattr(self.counters, "close", None)
        if close is not None:
            await close()


def _networks(values: Iterable[str]) -> list[Network]:
    return [ipaddress.ip_network(v.strip(), strict=False) for v in values if v.strip()]


class SourceAddresses:
    """The address a request comes from. Behind the ingress every request's peer is the
    proxy, so the proxy's ``X-Forwarded-For`` names the client, but only a proxy listed in
    ``trusted`` (addresses or CIDRs) is believed: anyone else could write the header."""

    def __init__(self, trusted: Iterable[str] = ()) -> None:
        self.trusted = _networks(trusted)

    def _is_trusted(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(address in network for network in self.trusted)

    def resolve(self, peer: str | None, forwarded_for: str | None) -> str | None:
        """The peer, or the nearest untrusted hop of ``X-Forwarded-For`` when the peer and
        every hop after it are trusted proxies (each proxy appends whom it heard from)."""
        try:
            current = ipaddress.ip_address(peer or "")
        except ValueError:
            return peer
        hops = [h.strip() for h in (forwarded_for or "").split(",") if h.strip()]
        while self._is_trusted(current) and hops:
            try:
                current = ipaddress.ip_address(hops.pop())
            except ValueError:
                break  # a malformed hop: the last trusted proxy is as far as we can tell
        return str(current)


def throttled_problem(exc: Throttled) -> Problem:
    headers = {"Retry-After": str(exc.retry_after)}
    if exc.reason == "wait":
        return Problem(
            429,
            "too-many-failures",
            "Too many failed attempts",
            f"After repeated failures from your address, wait {exc.retry_after} seconds before trying again.",
            headers=headers,
        )
    return Problem(
        429, "too-many-attempts", "Too many attempts", "Slow down and try again later.", headers=headers
    )
