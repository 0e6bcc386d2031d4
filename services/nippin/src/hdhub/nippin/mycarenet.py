"""The two ways a message reaches MyCareNet, chosen per installation (``HDHUB_NIPPIN_INTERFACE``):

- **REST**: the XML is posted with its message id in ``X-NIP-Message-Id``; the response body
  is the TACK.
- **FILE_SYSTEM**: the XML is written to ``<folder>/out/<message id>.xml`` (written aside and
  renamed, so the gateway never collects half a file); the gateway's TACK comes back as
  ``<folder>/in/<message id>.tack.xml``.

Either way the message id is the idempotency key: the receiving side drops a message whose
id it has seen, and answers its first TACK again.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

import httpx

from hdhub.common.tack import Tack, TackError, parse

MESSAGE_ID_HEADER = "X-NIP-Message-Id"
ANSWER_SUFFIX = ".tack.xml"


class Unreachable(RuntimeError):
    """MyCareNet (or the gateway's folder) could not be reached, or did not answer in time.
    The message stays to be sent; the text is the cause recorded (never the payload)."""


class Rest:
    def __init__(
        self, url: str, *, timeout: float, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.url, self.timeout, self.transport = url, timeout, transport

    async def send(self, message_id: str, xml: bytes) -> Tack:
        headers = {"Content-Type": "application/xml", MESSAGE_ID_HEADER: message_id}
        try:
            # httpx's timeouts bound each read; this bounds the whole call.
            async with (
                asyncio.timeout(self.timeout),
                httpx.AsyncClient(timeout=self.timeout, transport=self.transport) as client,
            ):
                response = await client.post(self.url, content=xml, headers=headers)
        except (httpx.TimeoutException, TimeoutError):
            raise Unreachable(f"MyCareNet did not answer within {self.timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise Unreachable(f"MyCareNet cannot be reached ({type(exc).__name__})") from None
        if response.status_code >= 500 or response.status_code in (408, 429):
            raise Unreachable(f"MyCareNet answered HTTP {response.status_code}")
        try:
            return parse(response.content)
        except TackError as exc:
            raise Unreachable(
                f"MyCareNet answered HTTP {response.status_code} without a TACK: {exc}"
            ) from None


@dataclass(frozen=True, slots=True)
class Answer:
    message_id: str
    path: Path
    tack: Tack | None
    problem: str = ""


class Folder:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.outbox, self.inbox = root / "out", root / "in"

    async def deliver(self, message_id: str, xml: bytes) -> None:
        try:
            await asyncio.to_thread(self._write, message_id, xml)
        except OSError as exc:
            raise Unreachable(
                f"the MyCareNet folder cannot be written ({exc.strerror or type(exc).__name__})"
            ) from None

    def _write(self, message_id: str, xml: bytes) -> None:
        self.outbox.mkdir(parents=True, exist_ok=True)
        final = self.outbox / f"{message_id}.xml"
        partial = self.outbox / f".{message_id}.xml.part"
        with open(partial, "wb") as f:
            f.write(xml)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, final)

    async def answers(self, limit: int = 1000) -> list[Answer]:
        """The TACKs the gateway has put back, parsed (a broken one says why)."""
        return await asyncio.to_thread(self._answers, limit)

    def _answers(self, limit: int) -> list[Answer]:
        if not self.inbox.is_dir():
            return []
        found: list[Answer] = []
        for path in sorted(self.inbox.glob(f"*{ANSWER_SUFFIX}"))[:limit]:
            message_id = path.name[: -len(ANSWER_SUFFIX)]
            try:
                found.append(Answer(message_id, path, parse(path.read_bytes())))
            except (TackError, OSError) as exc:
                found.append(Answer(message_id, path, None, str(exc)))
        return found

    @staticmethod
    def done(answer: Answer) -> None:
        """The answer is recorded: take it out of the folder."""
        answer.path.unlink(missing_ok=True)
