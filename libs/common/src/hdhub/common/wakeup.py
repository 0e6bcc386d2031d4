"""Wake-ups for background workers: "there is new work" after a commit, so a worker need
not wait for its next poll. Within one process an asyncio event does it; across processes
and pods, Redis pub/sub. A lost wake-up costs only latency: workers still poll, and the
job rows in the database stay the truth (DESIGN.md: Redis serves what may be lost).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

log = logging.getLogger("hdhub.wakeup")


class Wakeup:
    """Notify and wait on one named channel (``hdhub:<service>:<queue>``)."""

    def __init__(self, channel: str, redis_url: str | None = None) -> None:
        self.channel = channel
        self.redis_url = redis_url
        self._event = asyncio.Event()
        self._redis: Any = None
        self._listener: asyncio.Task[None] | None = None
        self._publishing: asyncio.Task[None] | None = None
        self._again = False

    def _client(self) -> Any:
        if self._redis is None and self.redis_url:
            import redis.asyncio as redis

            self._redis = redis.from_url(self.redis_url)
        return self._redis

    def notify(self) -> None:
        """Wake local waiters at once and, with Redis, every other process (fire and forget).

        Notifications that come while a publish is on its way are answered by one more
        publish once it is done, not one each: every notify is still followed by a
        publish sent after it, and a burst of commits (one per submitted registration)
        costs a Redis round trip per burst, not per commit."""
        self._event.set()
        client = self._client()
        if client is None:
            return
        loop = asyncio.get_running_loop()
        publishing = self._publishing
        if publishing is not None and not publishing.done() and publishing.get_loop() is loop:
            self._again = True
            return
        self._publishing = loop.create_task(self._publish(client))
        self._publishing.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)

    def interrupt(self) -> None:
        """End this process's wait at once, telling no one else (the process is stopping)."""
        self._event.set()

    async def _publish(self, client: Any) -> None:
        again = True
        while again:
            self._again = False
            try:
                await client.publish(self.channel, b"1")
            except Exception as exc:  # Redis down: the workers' poll still finds the job
                log.warning(
                    "wake-up not published", extra={"channel": self.channel, "error_type": type(exc).__name__}
                )
            again = self._again

    async def _listen(self) -> None:
        while True:
            try:
                pubsub = self._client().pubsub()
                await pubsub.subscribe(self.channel)
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        self._event.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("wake-up listener reconnecting", extra={"error_type": type(exc).__name__})
                await asyncio.sleep(1)

    async def wait(self, timeout: float) -> bool:
        """Wait for a wake-up or ``timeout`` seconds; True when woken."""
        if self.redis_url and self._listener is None:
            self._listener = asyncio.get_running_loop().create_task(self._listen())
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
            return True
        except TimeoutError:
            return False
        finally:
            self._event.clear()

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
        if self._redis is not None:
            await self._redis.aclose()
