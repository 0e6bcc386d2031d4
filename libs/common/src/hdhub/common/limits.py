"""What any client may send, bounded before a route sees it: request headers (431), bodies
(413, whether or not Content-Length is set), JSON bodies (400: not JSON, not Unicode, or
nested too deep), U+0000 in any text (400: PostgreSQL cannot store it, and refused the
query with an error) and integers (``MAX_INT``, the largest the databases store).

Every refusal is a problem+json in our own words: no parser's message is quoted.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hdhub.common.errors import FieldProblem, Problem
from hdhub.common.languages import LANG_COOKIE, pick_language

#: The largest integer a query parameter, path parameter or body field may carry: a BIGINT
#: (SQLite's and PostgreSQL's largest); one more and the database refuses it with an error
#: the client cannot act on.
MAX_INT = 2**63 - 1
#: Registrations and settings nest a few levels; anything deeper than this is refused
#: before parsing (a JSON body nested 1,000 deep exhausts Python's recursion limit).
MAX_JSON_DEPTH = 32
#: The request line and headers together (a bearer token is 1-2 KB). The same limit holds
#: in uvicorn (h11's incomplete-event size) and, for any other server, in the app.
MAX_HEADER_BYTES = 32 * 1024
#: A WebSocket message (the portal's form sent over its live connection: a few KiB). The
#: same limit holds in uvicorn (``ws_max_size``, closing with 1009) and in the route.
MAX_WEBSOCKET_MESSAGE_BYTES = 256 * 1024


#: The page a browser reads when the checks before any route refuse its request: in the
#: portal's four languages (these answers come before the portal's own pages), in words
#: for a person. slug -> language -> (title, what happened and what to do).
_BROWSER_PAGES: dict[str, dict[str, tuple[str, str]]] = {
    "nul-character": {
        "en": (
            "This address cannot be opened",
            "The link or address holds a character no page takes (%00). Check it, or start again "
            "from the home page.",
        ),
        "nl": (
            "Dit adres kan niet worden geopend",
            "De link of het adres bevat een teken dat geen enkele pagina aanvaardt (%00). Kijk het na, "
            "of begin opnieuw vanaf de startpagina.",
        ),
        "fr": (
            "Cette adresse ne peut pas être ouverte",
            "Le lien ou l'adresse contient un caractère qu'aucune page n'accepte (%00). Vérifiez-le, "
            "ou recommencez depuis la page d'accueil.",
        ),
        "de": (
            "Diese Adresse kann nicht geöffnet werden",
            "Der Link oder die Adresse enthält ein Zeichen, das keine Seite annimmt (%00). Prüfen Sie "
            "sie, oder beginnen Sie erneut auf der Startseite.",
        ),
    },
    "headers-too-large": {
        "en": (
            "Your browser sent too much",
            "Usually this site's cookies have grown too large. Delete this site's cookies in your "
            "browser, then start again from the home page.",
        ),
        "nl": (
            "Uw browser stuurde te veel",
            "Meestal zijn de cookies van deze site te groot geworden. Verwijder de cookies van deze "
            "site in uw browser en begin opnieuw vanaf de startpagina.",
        ),
        "fr": (
            "Votre navigateur a envoyé trop de données",
            "En général, les cookies de ce site sont devenus trop grands. Supprimez les cookies de "
            "ce site dans votre navigateur, puis recommencez depuis la page d'accueil.",
        ),
        "de": (
            "Ihr Browser hat zu viel gesendet",
            "Meist sind die Cookies dieser Website zu groß geworden. Löschen Sie die Cookies dieser "
            "Website in Ihrem Browser und beginnen Sie erneut auf der Startseite.",
        ),
    },
}
_HOME = {"en": "Home page", "nl": "Startpagina", "fr": "Page d'accueil", "de": "Startseite"}
_QUOTE = {
    "en": "Quote this to support:",
    "nl": "Vermeld dit aan de support:",
    "fr": "Citez ceci au support :",
    "de": "Nennen Sie dies dem Support:",
}


#: The same for a form a person sent (POST): the browser's Back keeps what they typed.
_BROWSER_FORM_PAGES: dict[str, dict[str, tuple[str, str]]] = {
    "nul-character": {
        "en": (
            "The form holds a character that cannot be stored",
            "Something pasted into the form holds an invisible character (NUL) that no field can "
            "store; nothing was saved. Go back: what you typed is still there. Remove the "
            "character, or type the text again, and send the form again.",
        ),
        "nl": (
            "Het formulier bevat een teken dat niet kan worden bewaard",
            "Iets wat in het formulier werd geplakt, bevat een onzichtbaar teken (NUL) dat geen "
            "enkel veld kan bewaren; er werd niets bewaard. Ga terug: wat u typte, staat er nog. "
            "Verwijder het teken, of typ de tekst opnieuw, en verstuur het formulier opnieuw.",
        ),
        "fr": (
            "Le formulaire contient un caractère qui ne peut pas être enregistré",
            "Un texte collé dans le formulaire contient un caractère invisible (NUL) qu'aucun "
            "champ ne peut enregistrer ; rien n'a été enregistré. Revenez en arrière : ce que "
            "vous avez tapé y est encore. Supprimez le caractère, ou retapez le texte, et "
            "envoyez à nouveau le formulaire.",
        ),
        "de": (
            "Das Formular enthält ein Zeichen, das nicht gespeichert werden kann",
            "Etwas, das in das Formular eingefügt wurde, enthält ein unsichtbares Zeichen (NUL), "
            "das kein Feld speichern kann; es wurde nichts gespeichert. Gehen Sie zurück: Ihre "
            "Eingaben sind noch da. Entfernen Sie das Zeichen oder tippen Sie den Text neu, und "
            "senden Sie das Formular erneut.",
        ),
    },
}


def _problem_response(problem: Problem, scope: Scope, *, form: bool = False) -> ASGIApp:
    """The problem for the caller: a short page in the person's language for a browser
    finding its way to a page (``Accept`` naming text/html, GET or HEAD), the problem's
    JSON otherwise. These answers come before any route, hence before the portal's own
    pages."""
    from hdhub.common.web import problem_response

    response = problem_response(problem, scope.get("path"))
    headers = Headers(scope=scope)
    method = scope.get("method")
    if form:  # a form a browser posted
        words = _BROWSER_FORM_PAGES.get(problem.slug) if method == "POST" else None
    else:
        words = _BROWSER_PAGES.get(problem.slug) if method in ("GET", "HEAD") else None
    if words is None or "text/html" not in headers.get("accept", ""):
        return response
    from html import escape

    from starlette.requests import cookie_parser
    from starlette.responses import HTMLResponse

    lang = pick_language(
        cookie_parser(headers.get("cookie", "")).get(LANG_COOKIE), headers.get("accept-language")
    )
    title, text = words[lang]
    trace = response.headers.get("x-trace-id", "")
    quoted = f"<p>{escape(_QUOTE[lang])} <code>{escape(trace)}</code></p>" if trace else ""
    return HTMLResponse(
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title></head><body><main>"
        f"<h1>{escape(title)}</h1><p>{escape(text)}</p>"
        f'<p><a href="/">{escape(_HOME[lang])}</a></p>{quoted}</main></body></html>',
        status_code=problem.status,
        headers={k: v for k, v in response.headers.items() if k.lower() == "x-trace-id"},
    )


def too_large(max_bytes: int) -> Problem:
    return Problem(413, "payload-too-large", "The request body is too large", f"At most {max_bytes} bytes.")


def headers_too_large() -> Problem:
    return Problem(
        431,
        "headers-too-large",
        "The request headers are too large",
        f"The request line and headers may take at most {MAX_HEADER_BYTES} bytes.",
    )


def nul_character(where: str) -> Problem:
    return Problem(
        400,
        "nul-character",
        "The request holds a NUL character",
        f"{where} holds U+0000 (NUL, %00 or \\u0000), which no text field can take.",
    )


def _has_nul(encoded: bytes) -> bool:
    """NUL raw or percent-encoded, as it stands in a path, a query or a form body."""
    return b"\x00" in encoded or b"%00" in encoded


class RequestHeadLimits:
    """Refuses requests whose request line and headers take more than ``max_bytes`` (431),
    and a path or query that holds NUL (400)."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_HEADER_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            target = (
                scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape"),
                scope.get("query_string", b""),
            )
            size = sum(len(part) for part in target)
            size += sum(len(name) + len(value) + 4 for name, value in scope.get("headers", []))
            problem = None
            if size > self.max_bytes:
                problem = headers_too_large()
            elif _has_nul(target[0]) or _has_nul(target[1]):
                problem = nul_character("The path or query")
            if problem is not None:
                await _problem_response(problem, scope)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class BodySizeLimit:
    """Refuses request bodies over ``max_bytes`` with 413, whether or not Content-Length is set.

    Without Content-Length the excess shows only while the route reads; a route (or
    FastAPI's own body parsing) may catch the error and answer something else (it answered
    400), so whatever the app answers after the limit was passed is replaced by the 413.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        exempt_prefixes: Sequence[str] = (),
        exempt_paths: Collection[re.Pattern[str]] = (),
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.exempt = tuple(exempt_prefixes)
        self.exempt_paths = tuple(exempt_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (
            (self.exempt and scope["path"].startswith(self.exempt))
            or any(pattern.fullmatch(scope["path"]) for pattern in self.exempt_paths)
        ):
            await self.app(scope, receive, send)
            return
        too_big = too_large(self.max_bytes)
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await _problem_response(too_big, scope)(scope, receive, send)
                return
        seen = 0
        exceeded = answered = False

        async def limited() -> Message:
            nonlocal seen, exceeded
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    exceeded = True
                    raise too_big
            return message

        async def replacing(message: Message) -> None:
            nonlocal answered
            if not exceeded:
                await send(message)
            elif message["type"] == "http.response.start" and not answered:
                answered = True
                await _problem_response(too_big, scope)(scope, receive, send)

        try:
            await self.app(scope, limited, replacing)
        except Problem as exc:
            if exc is not too_big:
                raise
            if not answered:
                answered = True
                await _problem_response(too_big, scope)(scope, receive, send)


# --- JSON bodies ----------------------------------------------------------------------


def malformed_json(detail: str, rule: str = "json-syntax") -> Problem:
    """400 for a body we cannot take as JSON; ``errors[0].rule`` names the rule for programs:
    ``json-syntax``, ``utf-8``, ``lone-surrogate``, ``max-depth`` or ``duplicate-key``."""
    return Problem(
        400,
        "malformed-json",
        "The request body is not valid JSON",
        detail,
        errors=[FieldProblem(field="body", rule=rule, message=detail)],
    )


def too_deep(body: bytes) -> Problem:
    """400 for ``body`` nested deeper than ``MAX_JSON_DEPTH``, saying where (a JSON path)."""
    where = where_too_deep(body)
    detail = f"Arrays and objects may nest at most {MAX_JSON_DEPTH} levels deep; level {MAX_JSON_DEPTH + 1} begins at {where}"
    return Problem(
        400,
        "malformed-json",
        "The request body is not valid JSON",
        detail,
        errors=[FieldProblem(field="body", rule="max-depth", message=detail, path=where)],
    )


# What the depth scan reads of a JSON text: strings (escapes included) and punctuation.
_JSON_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{},]')
# A key shown as it is in a path: a name; any other key might be data, and shows as […].
_NAME_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")
MAX_PATH_CHARS = 160


@dataclass(slots=True)
class _Container:
    """An array or object open at some point of a JSON text: where in it the scan is."""

    is_array: bool
    at: str | int | None  # the current index (array) or key (object; None before the first)
    key_next: bool = True


def where_too_deep(body: bytes, limit: int = MAX_JSON_DEPTH) -> str:
    """The JSON path (``$.values.a[0]``) at which the first array or object deeper than
    ``limit`` begins, read from the text itself (a parser may have given up on it), cut at
    ``MAX_PATH_CHARS``. Shows keys that are names and array indexes, never a value."""
    open_: list[_Container] = []
    for token in _JSON_TOKEN.finditer(body):
        text = token.group()
        top = open_[-1] if open_ else None
        if text in (b"{", b"["):
            if len(open_) == limit:
                break
            open_.append(_Container(is_array=text == b"[", at=0 if text == b"[" else None))
        elif text in (b"}", b"]"):
            if open_:
                open_.pop()
        elif top is None:
            continue
        elif text == b",":
            if isinstance(top.at, int):
                top.at += 1
            else:
                top.key_next = True
        elif not top.is_array and top.key_next:
            top.at, top.key_next = text[1:-1].decode("utf-8", "replace"), False
    path = "$" + "".join(_segment(c.at) for c in open_)
    return path if len(path) <= MAX_PATH_CHARS else path[: MAX_PATH_CHARS - 1] + "\u2026"


def _segment(at: str | int | None) -> str:
    if isinstance(at, int):
        return f"[{at}]"
    return f".{at}" if at is not None and _NAME_KEY.fullmatch(at) else "[\u2026]"


def load_json(body: bytes) -> Any:
    """``body`` parsed as JSON, or a 400 problem naming the rule it breaks: UTF-8 JSON
    (RFC 8259), no lone surrogate (``"\\udfff"`` is no character; I-JSON, RFC 7493),
    at most ``MAX_JSON_DEPTH`` levels of arrays and objects."""
    try:
        value = orjson.loads(body)  # strict: refuses lone surrogates, NaN, invalid UTF-8
    except orjson.JSONDecodeError as exc:
        # orjson's own words are not an API: say which rule, and where.
        if "UTF-8" in exc.msg:  # orjson also says "surrogates" for raw bytes that are not UTF-8
            rule, detail = "utf-8", "The body is not UTF-8 text."
        elif "surrogate" in exc.msg:
            rule = "lone-surrogate"
            detail = f"A string holds a lone surrogate escape (line {exc.lineno}, column {exc.colno}); send Unicode text."
        elif "depth" in exc.msg or "recursion" in exc.msg:
            raise too_deep(body) from None
        else:
            rule, detail = "json-syntax", f"Not JSON at line {exc.lineno}, column {exc.colno}."
        raise malformed_json(detail, rule) from None
    if _depth_exceeds(value, MAX_JSON_DEPTH):
        raise too_deep(body)
    if _members_in_text(body) != _members_parsed(value):
        raise _duplicate_member(body)
    # JSON can carry NUL only escaped; the walk runs only when an escape is there at all.
    if b"\\u0000" in body and _holds_nul(value):
        raise nul_character("A string of the body")
    return value


# A string, and whether a colon follows it: in valid JSON exactly the object members' names.
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"(\s*:)?', re.S)


def _members_in_text(body: bytes) -> int:
    """How many object members the text writes (strings followed by a colon)."""
    return sum(1 for m in _JSON_STRING.finditer(body) if m.group(1))


def _members_parsed(value: Any) -> int:
    """How many members the parsed objects hold: fewer than written when a name repeats
    in one object (the parser keeps the last)."""
    count, stack = 0, [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            count += len(item)
            stack.extend(v for v in item.values() if isinstance(v, dict | list))
        elif isinstance(item, list):
            stack.extend(v for v in item if isinstance(v, dict | list))
    return count


class _Repeated(Exception):
    def __init__(self, name: str) -> None:
        self.name = name


def _duplicate_member(body: bytes) -> Problem:
    """400 naming the member written twice in one object (I-JSON, RFC 7493: names are
    unique; which of two a parser keeps is up to it, so hdhub keeps neither)."""
    import json

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for name, item in items:
            if name in seen:
                raise _Repeated(name)
            seen[name] = item
        return seen

    try:
        json.loads(body, object_pairs_hook=pairs)
    except _Repeated as repeated:
        shown = repeated.name if _NAME_KEY.fullmatch(repeated.name) else "\u2026"
        detail = f"The member {shown!r} is written twice in one object; send each name once."
    else:  # pragma: no cover - the counts differ only when a name repeats
        detail = "A member is written twice in one object; send each name once."
    return malformed_json(detail, "duplicate-key")


def _holds_nul(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _depth_exceeds(value: Any, limit: int) -> bool:
    # Iterative on purpose: the point is to never recurse as deep as the input asks.
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


FORM = b"application/x-www-form-urlencoded"


def _body_kind(scope: Scope) -> bytes | None:
    """``json`` when FastAPI parses the body as JSON (it says so, or says nothing), the
    form media type for a form; None for anything else (files, multipart)."""
    for name, value in scope.get("headers", []):
        if name == b"content-type":
            media: bytes = value.split(b";", 1)[0].strip().lower()
            if media == b"application/json" or (
                media.startswith(b"application/") and media.endswith(b"+json")
            ):
                return b"json"
            return FORM if media == FORM else None
    return b"json"


class JsonBodyCheck:
    """Reads a JSON request body (at most the body size limit) and refuses it with
    :func:`load_json`'s 400 before any route parses it; the route then reads it as sent.
    A form body is read too, and refused when it holds NUL."""

    def __init__(self, app: ASGIApp, exempt_prefixes: Sequence[str] = ()) -> None:
        self.app = app
        self.exempt = tuple(exempt_prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = (
            _body_kind(scope)
            if scope["type"] == "http" and not scope["path"].startswith(self.exempt)
            else None
        )
        if kind is None:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                await self.app(scope, receive, send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body.strip():
            try:
                if kind != FORM:
                    load_json(body)
                elif _has_nul(body):
                    raise nul_character("A form field")
            except Problem as problem:
                await _problem_response(problem, scope, form=kind == FORM)(scope, receive, send)
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)
