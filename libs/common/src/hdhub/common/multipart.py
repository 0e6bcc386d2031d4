"""``multipart/form-data`` bodies read part by part as they arrive (RFC 7578), for the routes
that take files: a file part's bytes are handed on chunk by chunk, so no file is held whole
in memory or spooled to disk first (Starlette's ``request.form()`` spools files). Fields
are the parts without a file name, read whole up to a small limit.

::

    async for part in MultipartStream(request.stream(), multipart_boundary(content_type)):
        if part.filename is None:
            fields[part.name] = await part.text()
        else:
            await store(part.chunks())

A part left unread is skipped when the next one is asked for. A body that is not
multipart, or ends inside a part, is a 400 ``bad-multipart`` problem.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from hdhub.common.errors import Problem

#: Longest field value read by :meth:`Part.text` (bytes); a longer one is refused.
MAX_FIELD_BYTES = 64 * 1024


def bad_multipart(detail: str | None = None) -> Problem:
    return Problem(400, "bad-multipart", "The body is not multipart/form-data", detail)


def multipart_boundary(content_type: str) -> bytes | None:
    """The boundary of a ``multipart/form-data`` content type; None for any other type, a
    400 problem when a multipart type names none."""
    kind, params = parse_options_header(content_type)
    if kind != b"multipart/form-data":
        return None
    if b"boundary" not in params:
        raise Problem(400, "bad-multipart", "The multipart body has no boundary")
    return bytes(params[b"boundary"])


@dataclass(eq=False)
class Part:
    """One part of the body: its form field name, its file name (None for a plain field,
    the empty string for a file input left empty) and, read once, its bytes."""

    name: str
    filename: str | None
    content_type: str
    _stream: MultipartStream = field(repr=False)
    _done: bool = field(default=False, repr=False)

    async def chunks(self) -> AsyncIterator[bytes]:
        """The part's bytes as they arrive."""
        while not self._done:
            event = await self._stream._next()
            if not isinstance(event, bytes):  # the part's end (or the body's)
                self._done = True
                return
            if event:
                yield event

    async def text(self, limit: int = MAX_FIELD_BYTES) -> str:
        """The part's bytes as UTF-8 text (invalid bytes replaced); a 413 problem past ``limit``."""
        data = bytearray()
        async for chunk in self.chunks():
            data += chunk
            if len(data) > limit:
                raise Problem(413, "field-too-large", "A form field is too long", f"At most {limit} bytes.")
        return data.decode("utf-8", "replace")


class MultipartStream:
    """The parts of a ``multipart/form-data`` body, in the body's order."""

    def __init__(self, body: AsyncIterator[bytes], boundary: bytes, *, hint: str | None = None) -> None:
        """``hint``: what the 400 for a body that is not multipart tells the sender to do."""
        self._events = _events(body, boundary, hint)
        self._current: Part | None = None

    async def _next(self) -> Part | bytes | None:
        """The next event: a part begins, some of its bytes, or None (a part's end, the body's)."""
        event = await anext(self._events, _END)
        if isinstance(event, _Start):
            self._current = Part(event.name, event.filename, event.content_type, self)
            return self._current
        return event if isinstance(event, bytes) else None

    def __aiter__(self) -> AsyncIterator[Part]:
        return self._parts()

    async def _parts(self) -> AsyncIterator[Part]:
        while True:
            if self._current is not None and not self._current._done:
                async for _ in self._current.chunks():  # the caller left it unread
                    pass
            event = await self._next()
            if isinstance(event, Part):
                yield event
            elif event is None and (self._current is None or self._current._done):
                return


@dataclass(frozen=True)
class _Start:
    name: str
    filename: str | None
    content_type: str


class _End:
    """A part ends."""


_END = _End()


async def _events(
    body: AsyncIterator[bytes], boundary: bytes, hint: str | None
) -> AsyncIterator[_Start | bytes | _End]:
    """The parser's callbacks as events: a part starts, its bytes, it ends. Headers are
    ASCII by RFC 7578; a name that is not valid UTF-8 is read with U+FFFD in place of the
    bad bytes."""
    events: list[_Start | bytes | _End] = []
    state: dict[str, bytes] = {"field": b"", "value": b""}
    headers: dict[bytes, bytes] = {}

    def on_part_begin() -> None:
        headers.clear()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        headers[state["field"].lower()] = state["value"]
        state["field"], state["value"] = b"", b""

    def on_headers_finished() -> None:
        _, params = parse_options_header(headers.get(b"content-disposition", b""))
        raw = params.get(b"filename")
        events.append(
            _Start(
                params.get(b"name", b"").decode("utf-8", "replace"),
                None if raw is None else raw.decode("utf-8", "replace"),
                headers.get(b"content-type", b"").decode("latin-1"),
            )
        )

    def on_part_data(data: bytes, start: int, end: int) -> None:
        events.append(bytes(data[start:end]))

    def on_part_end() -> None:
        events.append(_END)

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    try:
        async for chunk in body:
            parser.write(chunk)
            batch = events[:]
            events.clear()
            for event in batch:
                yield event
        parser.finalize()
    except MultipartParseError:
        raise bad_multipart(hint) from None
    for event in events:
        yield event
