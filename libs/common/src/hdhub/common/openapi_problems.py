"""The problem answers (RFC 9457, ``application/problem+json``) in every service's OpenAPI
document, derived from what each route is, so that a client (or schemathesis) finds every
status it can get documented:

- every operation: 400 (e.g. NUL in the path or query), 422 (a parameter or the body breaks
  the schema), 431 (headers too large);
- a route that needs a bearer token: 401, 403, and 404 (hdhub answers 404, not 403, for
  what the caller may not see);
- a route that has path parameters: 404;
- a route that takes a body: 400 (not JSON, not UTF-8, too deep), 413 (too large), 415;
- a route that changes something (POST, PUT, PATCH, DELETE): 409 (a conflict with the
  current state);
- a route that takes ``If-Match``: 412 (stale ETag) and 428 (``If-Match`` missing).

A route adds its own with ``responses=problems(429)``; what a route documents itself
(another media type, a description) is kept, and its error answers gain the problem media
type (the edge may answer any route with a problem: a NUL, a body too large).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts

from hdhub.common import openapi_contract
from hdhub.common.errors import PROBLEM_MEDIA_TYPE

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "RFC 9457 problem details; `type` is a stable `/problems/<slug>` to branch on.",
    "type": "object",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "description": "Each thing wrong with the input: the field (or row), the rule and a message.",
            "items": {
                "type": "object",
                "required": ["field", "rule", "message"],
                "properties": {
                    "field": {"type": "string"},
                    "rule": {"type": "string"},
                    "message": {"type": "string"},
                    "path": {"type": "string"},
                    "row": {"type": "integer"},
                },
            },
        },
    },
}
DESCRIPTIONS = {
    400: "Bad request: NUL in the path, query or body; a body that is not JSON (or not UTF-8, or nested too deep); a malformed header",
    401: "No valid bearer token",
    403: "The caller may not do this",
    404: "Not found, or not the caller's to see",
    409: "Conflicts with the current state",
    412: "If-Match names a version that is no longer current",
    413: "The request body is too large",
    415: "Unsupported Content-Type",
    422: "The request breaks the schema or a rule; `errors` names each field and rule",
    428: "If-Match is required",
    429: "Too many requests; see Retry-After",
    431: "The request headers are too large",
}
_ANY = (400, 422, 431)
_AUTHENTICATED = (401, 403, 404)
_BODY = (400, 413, 415)
_CHANGES = (409,)
_IF_MATCH = (412, 428)


def problem(status: int) -> dict[str, Any]:
    """One documented problem answer."""
    return {
        "description": DESCRIPTIONS.get(status, "Problem"),
        "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route that answers these problems besides the derived ones."""
    return {status: problem(status) for status in statuses}


def _authenticated(route: RouteContext) -> bool:
    from hdhub.common.web import authenticate

    pending = [route.dependant]
    while pending:
        dependant = pending.pop()
        if dependant.call is authenticate:
            return True
        pending.extend(dependant.dependencies)
    return False


def statuses_for(route: RouteContext, method: str, operation: dict[str, Any]) -> set[int]:
    found = set(_ANY)
    if _authenticated(route):
        found.update(_AUTHENTICATED)
    if route.dependant.path_params:
        found.add(404)
    if "requestBody" in operation:
        found.update(_BODY)
    if method in ("post", "put", "patch", "delete"):
        found.update(_CHANGES)
    if any(
        p.get("in") == "header" and p.get("name", "").lower() == "if-match"
        for p in operation.get("parameters", [])
    ):
        found.update(_IF_MATCH)
    return found


OPERATION_OUTCOME_SCHEMA: dict[str, Any] = {
    "title": "OperationOutcome",
    "description": "HL7 FHIR R4 OperationOutcome: the problem under /fhir (hdhub.common.fhir_outcome).",
    "type": "object",
    "required": ["resourceType", "issue"],
    "properties": {
        "resourceType": {"type": "string", "enum": ["OperationOutcome"]},
        "issue": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["severity", "code"],
                "properties": {
                    "severity": {"type": "string"},
                    "code": {"type": "string"},
                    "details": {"type": "object"},
                    "diagnostics": {"type": "string"},
                    "expression": {"type": "array", "items": {"type": "string"}},
                    "location": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
    },
}


def _other_problem_media(path: str, route: RouteContext, responses: dict[str, Any]) -> None:
    """Problems as the route answers them: an OperationOutcome under /fhir, and RFC 9457's
    XML beside JSON on a route that offers XML (hdhub.common.xml)."""
    from hdhub.common.fhir_outcome import FHIR_MEDIA_TYPE, is_fhir
    from hdhub.common.xml import PROBLEM_XML_MEDIA_TYPE, offers_xml

    fhir, xml = is_fhir(path), offers_xml(route.original_route)
    for status, answer in responses.items():
        if status[:1] not in ("4", "5"):
            continue
        if fhir:
            answer["content"] = {
                FHIR_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/OperationOutcome"}}
            }
        elif xml:
            answer.setdefault("content", {})[PROBLEM_XML_MEDIA_TYPE] = {"schema": {"type": "string"}}


def document_problems(app: FastAPI) -> None:
    """Have ``app``'s OpenAPI document list the problem answers of every operation."""
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        doc = build()
        routes = {
            (route.path_format, method.lower()): route
            for route in iter_route_contexts(app.routes)
            if isinstance(route.original_route, APIRoute)
            for method in route.methods or ()
        }
        for path, operations in doc.get("paths", {}).items():
            for method, operation in operations.items():
                route = routes.get((path, method))
                if route is None or not isinstance(operation, dict):
                    continue
                responses = operation.setdefault("responses", {})
                for status in sorted(statuses_for(route, method, operation)):
                    mine = responses.get(str(status))
                    # FastAPI's own 422 (its HTTPValidationError) is never what we answer.
                    if mine is None or (status == 422 and "HTTPValidationError" in str(mine)):
                        responses[str(status)] = problem(status)
                    else:  # the route's own answer (OAuth's JSON errors), and the edge's problems
                        mine.setdefault("content", {}).update(problem(status)["content"])
                for status, answer in responses.items():
                    # A route's own error answer with a description only is a problem too.
                    if status[:1] in ("4", "5") and "content" not in answer:
                        answer["content"] = problem(int(status))["content"]
                _other_problem_media(path, route, responses)
        from hdhub.common import apidocs
        from hdhub.common.config import platform

        authenticated = {key for key, route in routes.items() if _authenticated(route)}
        openapi_contract.finish(doc, authenticated, apidocs.SCHEME, platform().public_url)
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        schemas["Problem"] = PROBLEM_SCHEMA
        if "#/components/schemas/OperationOutcome" in str(doc.get("paths")):
            schemas["OperationOutcome"] = OPERATION_OUTCOME_SCHEMA
        if "HTTPValidationError" not in str(doc.get("paths")):
            schemas.pop("HTTPValidationError", None)
            schemas.pop("ValidationError", None)
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]
