"""``/problems/<slug>``: the page a problem's ``type`` URI resolves to (RFC 9457 section
3.1.1 recommends that it does), in HTML for a person or JSON (``Accept:
application/json``) for a program: the status, the title and what it means and what to do.

A slug hdhub answers but that is missing here still resolves once answered: every
:class:`~hdhub.common.errors.Problem` made names its slug and title in :data:`SEEN`.
"""

from __future__ import annotations

import re
from html import escape

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from hdhub.common.errors import Problem

#: slug -> (status, meaning and what to do)
CATALOGUE: dict[str, tuple[int, str]] = {
    "malformed-json": (
        400,
        "The body is not JSON, not UTF-8, holds a lone surrogate escape, or nests more than 32 deep; `detail` says which and where.",
    ),
    "bad-multipart": (400, "A multipart/form-data body that is not multipart."),
    "nul-character": (
        400,
        "A path, query, JSON string or form field holds U+0000 (NUL), which no field can store.",
    ),
    "bad-idempotency-key": (400, "Idempotency-Key must be 1 to 255 characters."),
    "bad-if-match": (400, "If-Match must be an ETag this API gave you."),
    "file-required": (400, "The upload has no file."),
    "organisation-required": (400, "Name the organisation (`organisation_id`)."),
    "invalid-credentials": (400, "The username or password is wrong."),
    "not-a-person": (
        400,
        "Hospital-system clients are managed by their organisation's managers, not as people.",
    ),
    "unauthorized": (401, "No bearer token, or an expired or foreign one: get a token from the issuer."),
    "forbidden": (403, "The caller may not do this for that organisation."),
    "not-found": (404, "Unknown DCD, version, field, registration or upload, or not the caller's to see."),
    "sadmi-not-available": (
        404,
        "hdhub holds no copy of the SADMI medical-device register: look the device up at FAMHP.",
    ),
    "no-published-certificate": (404, "The organisation has no published certificate."),
    "method-not-allowed": (405, "The path exists, the method does not; `Allow` lists the methods it takes."),
    "transition-not-allowed": (
        409,
        "The action is not allowed in the registration's current status (e.g. deleting a submitted one).",
    ),
    "dcd-version-superseded": (409, "A new major DCD version replaced this one: send to the new version."),
    "idempotency-key-in-flight": (
        409,
        "A request with this Idempotency-Key is being handled: send it again shortly.",
    ),
    "concurrent-write": (409, "Someone changed the same records at the same time: retry."),
    "business-key-taken": (409, "Another registration has this business key."),
    "registration-not-editable": (
        409,
        "A registration with this business key exists and can no longer be changed.",
    ),
    "batch-id-reused": (409, "This batch id was used for other rows."),
    "dcd-conflict": (409, "This DCD code belongs to another project or number."),
    "duplicate-client": (409, "A client with this client id exists already."),
    "duplicate-email": (409, "An account, member or request with this e-mail exists already."),
    "duplicate-nihdi": (409, "An organisation with this NIHDI number exists already."),
    "duplicate-sftp-username": (409, "An SFTP login with this username exists already."),
    "duplicate-username": (409, "This username is taken."),
    "stale-version": (412, "Someone changed it since you read it: read it again and send its new ETag."),
    "payload-too-large": (413, "The body is over the size limit (5 MiB by default)."),
    "unsupported-media-type": (415, "The body's Content-Type is not one this operation takes."),
    "request-validation": (
        422,
        "A parameter or the body breaks the schema, or a query parameter is unknown; `errors` names each.",
    ),
    "validation": (422, "The input is not valid; `errors` names each field, rule and message."),
    "invalid-registration": (
        422,
        "The registration's values break the DCD's rules; `errors` names each field, rule and message.",
    ),
    "invalid-status": (422, "STATUS must be draft or submit."),
    "idempotency-key-reused": (
        422,
        "This Idempotency-Key came with another request: use a new key for a new request.",
    ),
    "dcd-id-required": (422, "v2 submit without `dcd-id`, and the record fits several DCDs (or none)."),
    "codelist-ambiguous": (422, "DCDs hold different code lists under that id: add `dcd-id`."),
    "wrong-password": (422, "The current password is wrong."),
    "if-match-required": (428, "Send the ETag you read as If-Match."),
    "too-many-attempts": (429, "Slow down; Retry-After says when to try again."),
    "headers-too-large": (431, "The request line and headers together exceed 32 KiB."),
    "internal": (500, "hdhub failed; quote the trace id to the platform's support."),
    "busy": (503, "The organisation is being changed: try again."),
    "issuer-unavailable": (503, "The identity provider cannot be reached: try again later."),
    "receiver-refuses": (503, "The central receiver refuses deliveries: they are kept and retried."),
    "service-identity-unset": (503, "The installation is not configured (HDHUB_SERVICE_CLIENT_SECRET)."),
}
_SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")


def describe(slug: str) -> dict[str, object] | None:
    """The page's content for ``slug``, or None for one hdhub does not answer."""
    seen = Problem.seen.get(slug)
    known = CATALOGUE.get(slug)
    if known is None and seen is None:
        return None
    status = known[0] if known is not None else seen[0] if seen is not None else 0
    page: dict[str, object] = {"type": f"/problems/{slug}", "status": status}
    if seen is not None:
        page["title"] = seen[1]
    page["meaning"] = known[1] if known else "See the answer's `title` and `detail`."
    return page


def install(app: FastAPI) -> None:
    @app.get("/problems/{slug}", include_in_schema=False, response_model=None)
    async def problem_page(slug: str, request: Request) -> Response:
        page = describe(slug) if _SLUG.fullmatch(slug) else None
        if page is None:
            raise Problem(404, "not-found", "No such problem type")
        if "application/json" in request.headers.get("accept", ""):
            return JSONResponse(page)
        rows = "".join(f"<dt>{escape(k)}</dt><dd>{escape(str(v))}</dd>" for k, v in page.items())
        return HTMLResponse(
            f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(slug)}</title></head>'
            f"<body><h1>Problem {escape(slug)}</h1><dl>{rows}</dl></body></html>"
        )
