"""A stand-in for the NIC's MyCareNet, for NIPPIN's two interfaces: REST (messages posted,
the TACK in the response) and FILE_SYSTEM (a gateway collecting ``out/<id>.xml`` from a
folder and putting ``in/<id>.tack.xml`` back). Never deployed to production.

Like the central receiver it can be told to misbehave: ``refuse`` (answer a TACK with an
error), ``timeout`` (REST: hold the call past the sender's patience; FILE_SYSTEM: collect
and never answer), ``down`` (REST: HTTP 503; FILE_SYSTEM: collect nothing). It drops a
message whose id it has seen and answers its first TACK again, as the real side's
idempotency does; what it counts shows whether anything arrived twice.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from hdhub.common.tack import FAILURE, SUCCESS, TackMessage, render

MESSAGE_ID_HEADER = "X-NIP-Message-Id"


class MyCareNetMode(StrEnum):
    ACCEPT = "accept"
    REFUSE = "refuse"
    TIMEOUT = "timeout"
    DOWN = "down"


class Down(RuntimeError):
    """MyCareNet is down (the operator said so)."""


@dataclass
class MyCareNetBehaviour:
    mode: MyCareNetMode = MyCareNetMode.ACCEPT
    #: ``timeout`` over REST: how long a call is held before it is answered anyway.
    hold_seconds: float = 60.0


@dataclass
class MyCareNet:
    folder: Path
    behaviour: MyCareNetBehaviour = field(default_factory=MyCareNetBehaviour)
    #: The TACK answered per message id (the first answer, given again to a duplicate).
    answered: dict[str, bytes] = field(default_factory=dict)
    #: How many times each message id arrived (a duplicate counts, and is dropped).
    receipts: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0

    def receive(self, message_id: str, xml: bytes) -> bytes:
        """The TACK for a message; a message seen before gets its first TACK again."""
        if self.behaviour.mode is MyCareNetMode.DOWN:
            raise Down("MyCareNet is down")
        self.receipts[message_id] = self.receipts.get(message_id, 0) + 1
        if message_id in self.answered:
            self.duplicates += 1
            return self.answered[message_id]
        if self.behaviour.mode is MyCareNetMode.REFUSE:
            tack = render(
                message_id, FAILURE, (TackMessage("error", "NIP-E-042", "the insurer refuses the message"),)
            )
        elif not xml.lstrip().startswith(b"<"):
            tack = render(message_id, FAILURE, (TackMessage("error", "NIP-E-001", "not an XML message"),))
        else:
            tack = render(message_id, SUCCESS)
        self.answered[message_id] = tack
        return tack

    async def hold(self) -> None:
        """REST ``timeout``: keep the caller waiting."""
        await asyncio.sleep(self.behaviour.hold_seconds)

    def collect(self) -> int:
        """The gateway's round: take the messages from ``out/``, answer into ``in/``.
        Returns the messages collected."""
        mode = self.behaviour.mode
        outbox, inbox = self.folder / "out", self.folder / "in"
        if mode is MyCareNetMode.DOWN or not outbox.is_dir():
            return 0
        collected = 0
        for path in sorted(outbox.glob("*.xml")):
            message_id = path.name[: -len(".xml")]
            xml = path.read_bytes()
            path.unlink()
            collected += 1
            if mode is MyCareNetMode.TIMEOUT:
                continue  # collected, never answered
            tack = self.receive(message_id, xml)
            inbox.mkdir(parents=True, exist_ok=True)
            partial = inbox / f".{message_id}.part"
            partial.write_bytes(tack)
            os.replace(partial, inbox / f"{message_id}.tack.xml")
        return collected

    def counts(self) -> dict[str, int]:
        return {"messages": len(self.answered), "duplicates": self.duplicates}
