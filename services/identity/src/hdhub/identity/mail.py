"""Outgoing mail over SMTP (smtplib in a thread); without an SMTP host it is only logged.

Sending is best effort after the change is committed: a mail that cannot be sent is
logged and the change stands (the manager sees pending requests in the API anyway).
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
from email.message import EmailMessage

log = logging.getLogger("hdhub.identity.mail")


class Mailer:
    def __init__(self, *, host: str | None, port: int = 25, sender: str = "hdhub@localhost") -> None:
        self.host = host
        self.port = port
        self.sender = sender

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
        if self.host is None:
            log.info("mail not sent: no SMTP host configured", extra={"subject": subject})
            return False
        try:
            await asyncio.to_thread(self._send, message)
        except (OSError, smtplib.SMTPException) as exc:
            log.warning("mail not sent", extra={"subject": subject, "error_type": type(exc).__name__})
            return False
        return True
