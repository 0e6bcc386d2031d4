"""Outgoing mail over SMTP (smtplib in a thread). Without an SMTP host it is only logged,
except in development (`make run`), where it is kept in an in-process outbox shown at
``/dev/mail``: an approved applicant's initial password is only ever mailed, and a laptop
has no mail server.

Sending is best effort after the change is committed: a mail that cannot be sent is
logged and the change stands (the manager sees pending requests in the API anyway).
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage

from hdhub.common.db import utcnow

log = logging.getLogger("hdhub.identity.mail")


@dataclass(frozen=True)
class SentMail:
    to: list[str]
    subject: str
    body: str
    sent_at: datetime


class Outbox:
    """The last ``size`` mails of this process, newest first (development only)."""

    def __init__(self, size: int = 200) -> None:
        self._mails: deque[SentMail] = deque(maxlen=size)

    def keep(self, mail: SentMail) -> None:
        self._mails.appendleft(mail)

    def mails(self, to: str | None = None) -> list[SentMail]:
        return [m for m in self._mails if to is None or to.lower() in (t.lower() for t in m.to)]


class Mailer:
    def __init__(
        self,
        *,
        host: str | None,
        port: int = 25,
        sender: str = "hdhub@localhost",
        outbox: Outbox | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.sender = sender
        #: Where mails go when there is no SMTP host (development); None: nowhere.
        self.outbox = outbox if host is None else None

    def _send(self, message: EmailMessage) -> None:
        assert self.host is not None
        with smtplib.SMTP(self.host, self.port, timeout=10) as smtp:
            smtp.send_message(message)

    async def send(self, to: list[str], subject: str, body: str) -> bool:
        """Send one plain-text mail; False (and a log line) when it could not be sent."""
        recipients = sorted({t for t in to if t})
        if not recipients:
            return False
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = ", ".join(recipients)
        message["Subject"] = subject
        message.set_content(body)
        if self.outbox is not None:
            self.outbox.keep(SentMail(recipients, subject, body, utcnow()))
            log.info("mail kept in the development outbox (/dev/mail)", extra={"subject": subject})
            return True
        if self.host is None:
            log.info("mail not sent: no SMTP host configured", extra={"subject": subject})
            return False
        try:
            await asyncio.to_thread(self._send, message)
        except (OSError, smtplib.SMTPException) as exc:
            log.warning("mail not sent", extra={"subject": subject, "error_type": type(exc).__name__})
            return False
        return True
