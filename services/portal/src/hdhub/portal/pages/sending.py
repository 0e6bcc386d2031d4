"""Pages that send a file on to the service that owns it (the Upload Center, intake): the
browser's ``multipart/form-data`` body is read part by part as it arrives and each file
part is handed to the owner's client stream chunk by chunk, so the portal never holds a
file whole nor writes it to disk. The form's fields come first in the body (the file
inputs are the form's last fields), so they are known, and the CSRF token checked, before
the first byte of a file is read."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TypeVar

from fastapi import Request

from hdhub.common.errors import Problem
from hdhub.common.multipart import MultipartStream, Part, bad_multipart, multipart_boundary
from hdhub.portal.pages.web import Page, verify_csrf

M = TypeVar("M")
#: Bytes per message of a client stream: the browser's small reads are gathered up to this.
MESSAGE_BYTES = 256 * 1024
#: Fields a form may send before its files. These pages are outside the platform's body
#: limit (``hdhub.common.web.OWN_BODY_LIMIT_PATHS``): each field is bounded
#: (``MAX_FIELD_BYTES``), and so is their number.
MAX_FIELDS = 64


class StreamedForm:
    """A form whose fields are read whole and whose files are streamed (see the module)."""

    def __init__(self, request: Request, page: Page) -> None:
        boundary = multipart_boundary(request.headers.get("content-type", ""))
        if boundary is None:
            raise Problem(415, "unsupported-media-type", "Send the form as multipart/form-data")
        self.request, self.page = request, page
        self.fields: dict[str, str] = {}
        self._parts = aiter(MultipartStream(request.stream(), boundary))
        self._checked = False
        self._field_parts = 0

    async def next_file(self) -> Part | None:
        """The next file part (its fields read on the way, the CSRF token checked before
        it), or None at the end of the body."""
        async for part in self._parts:
            if part.filename is None:
                self._field_parts += 1  # parts, not names: a name sent again counts again
                if self._field_parts > MAX_FIELDS:
                    raise bad_multipart(f"A form sends at most {MAX_FIELDS} fields")
                self.fields[part.name] = (await part.text()).strip()
                continue
            if not self._checked:
                verify_csrf(self.request, self.page, self.fields.get("csrf_token", ""))
                self._checked = True
            return part
        if not self._checked:
            verify_csrf(self.request, self.page, self.fields.get("csrf_token", ""))
            self._checked = True
        return None

    async def drain(self) -> None:
        """Read what the browser still sends, so it gets the answer rather than a cut
        connection (an answer before the end of the body, a refusal, comes first)."""
        async for _ in self._parts:
            pass


async def messages(header: M, chunks: AsyncIterator[bytes], chunk: Callable[[bytes], M]) -> AsyncIterator[M]:
    """A client stream: the header message, then the file in messages of up to
    :data:`MESSAGE_BYTES` (one held at a time)."""
    yield header
    pending = bytearray()
    async for data in chunks:
        pending += data
        if len(pending) >= MESSAGE_BYTES:
            yield chunk(bytes(pending))
            pending.clear()
    if pending:
        yield chunk(bytes(pending))
