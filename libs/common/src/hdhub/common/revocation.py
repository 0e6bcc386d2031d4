"""Revoked access: a "not before" time per subject, checked with every bearer token.

Access tokens are self-contained JWTs that live a few minutes; a token minted before its
subject was cancelled, removed from an organisation or stripped of a role would otherwise
keep working until it expires. Identity records the time of such a change here, and every
verifier (:class:`hdhub.common.auth.TokenVerifier`) refuses tokens issued before it. The
times live in Redis (``HDHUB_REDIS_URL``) so every replica of every service sees them
within ``cache_seconds``; without Redis they live in this process, which then is the
whole platform (``hdhub run all``). Keycloak's own "not before" is never pushed to our
services, so the same list serves both issuers.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

log = logging.getLogger(__name__)

#: Long enough to outlive any access token (5 minutes by default, Keycloak's too).
KEEP_SECONDS = 24 * 3600


class Revocations:
    """Per-subject "not before" epochs (seconds), in Redis or in this process."""

    def __init__(
        self, redis_url: str | None, *, prefix: str = "hdhub:revoked", cache_seconds: float = 5.0
    ) -> None:
        self.prefix = prefix
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, int]] = {}  # subject -> (read at, not before)
        self._redis: Any = None
        if redis_url:
            import redis.asyncio as redis

            self._redis = redis.from_url(redis_url)

    async def revoke(self, subject: str) -> int:
        """Refuse ``subject``'s tokens issued before now; the "not before" epoch set.

        Whole seconds, as ``iat`` and Keycloak's own not-before: a token issued in this
        same second still passes (a re-login right after the change must work), so a
        token minted less than a second before the change is the one left to expire.
        """
        not_before = math.floor(time.time())
        if self._redis is not None:
            await self._redis.set(f"{self.prefix}:{subject}", not_before, ex=KEEP_SECONDS)
        self._cache[subject] = (math.inf if self._redis is None else time.monotonic(), not_before)
        return not_before

    async def not_before(self, subject: str) -> int:
        """The epoch before which ``subject``'s tokens are refused (0: none).

        Read from Redis at most every ``cache_seconds`` per subject. If Redis cannot be
        reached the last value read stands (0 if none) and a warning is logged: tokens
        live minutes, and refusing every request while Redis is down would be worse.
        """
        read_at, value = self._cache.get(subject, (0.0, 0))
        if self._redis is None or time.monotonic() - read_at < self.cache_seconds:
            return value
        try:
            raw = await self._redis.get(f"{self.prefix}:{subject}")
            value = int(raw or 0)
        except Exception:  # redis errors and lost connections alike
            log.warning("revocation list unreachable; tokens are checked without it", exc_info=True)
        self._cache[subject] = (time.monotonic(), value)
        if len(self._cache) > 100_000:  # bounded: forget the oldest reads
            for key in list(self._cache)[:10_000]:
                del self._cache[key]
        return value

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()


_revocations: dict[tuple[str | None, str], Revocations] = {}


def revocations() -> Revocations:
    """The process-wide list for this installation (:func:`hdhub.common.config.platform`)."""
    from hdhub.common.config import platform

    s = platform()
    key = (s.redis_url, s.revocation_key_prefix)
    if key not in _revocations:
        _revocations[key] = Revocations(
            s.redis_url, prefix=s.revocation_key_prefix, cache_seconds=s.revocation_cache_seconds
        )
    return _revocations[key]
