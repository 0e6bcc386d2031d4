"""How `hdhub run` serves HTTP: uvicorn on h11 with the request head capped, so a client
cannot make the server buffer megabytes of headers (httptools has no such cap), and a
WebSocket message capped (the portal's live form evaluation) and not compressed: each
message carries the session's CSRF token beside what the person typed, and compressing a
secret with text an attacker can influence leaks it by the size (CRIME, BREACH); the
messages are a few kilobytes."""

from __future__ import annotations

import json
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from hdhub.common.errors import PROBLEM_MEDIA_TYPE
from hdhub.common.limits import MAX_HEADER_BYTES, MAX_WEBSOCKET_MESSAGE_BYTES, headers_too_large


class HeaderLimitedH11(H11Protocol):
    """uvicorn's h11 protocol, answering a request head over ``MAX_HEADER_BYTES`` with
    431 problem+json, where uvicorn answers every protocol error with a bare 400."""

    def send_400_response(self, msg: str) -> None:
        buffered, _ = self.conn.trailing_data
        if len(buffered) <= MAX_HEADER_BYTES:  # any other malformed request
            super().send_400_response(msg)
            return
        body = json.dumps(headers_too_large().body()).encode()
        headers = [
            (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        for event in (
            h11.Response(status_code=431, headers=headers, reason=b"Request Header Fields Too Large"),
            h11.Data(data=body),
            h11.EndOfMessage(),
        ):
            self.transport.write(self.conn.send(event) or b"")
        self.transport.close()


def server_config(app: Any, **options: Any) -> uvicorn.Config:
    """The uvicorn configuration `hdhub run` serves ``app`` with. On SIGTERM, requests in
    flight (a file still arriving) get ``HDHUB_HTTP_DRAIN_SECONDS`` to finish; then their
    connections are closed and the process stops, before Kubernetes would kill it mid-way."""
    from hdhub.common.config import platform

    options.setdefault("timeout_graceful_shutdown", platform().http_drain_seconds)
    options.setdefault("ws_max_size", MAX_WEBSOCKET_MESSAGE_BYTES)
    options.setdefault("ws_per_message_deflate", False)
    return uvicorn.Config(
        app, http=HeaderLimitedH11, h11_max_incomplete_event_size=MAX_HEADER_BYTES, **options
    )
