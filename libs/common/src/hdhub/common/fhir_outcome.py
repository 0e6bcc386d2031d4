"""Problems under ``/fhir`` as HL7 FHIR R4 ``OperationOutcome`` resources.

A FHIR client reads errors as an OperationOutcome, whatever refused the request: a route, a
schema check, the edge's limits (a body too large, NUL), an unknown path. So the one place
that answers problems (:func:`hdhub.common.web.problem_response`) answers them this way for
every path under :data:`FHIR_BASE`: one issue per field problem, its ``expression`` the
item's ``linkId`` (or the field), ``details.text`` the message in the caller's language,
``diagnostics`` the rule; without field problems, one issue with the title and detail.
"""

from __future__ import annotations

from typing import Any

FHIR_BASE = "/fhir"
FHIR_MEDIA_TYPE = "application/fhir+json"
_CODES_BY_STATUS = {
    400: "structure",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    409: "conflict",
    412: "conflict",
    413: "too-long",
    415: "not-supported",
    422: "invalid",
    428: "required",
    429: "throttled",
    431: "too-long",
}
_CODES_BY_RULE = {"required": "required", "fhir-structure": "structure", "unknown_parameter": "not-supported"}


def is_fhir(path: str | None) -> bool:
    return bool(path) and (path == FHIR_BASE or str(path).startswith(FHIR_BASE + "/"))


def operation_outcome(body: dict[str, Any]) -> dict[str, Any]:
    """A problem's JSON members (RFC 9457) as an OperationOutcome."""
    status = int(body.get("status", 500))
    default = _CODES_BY_STATUS.get(status, "exception" if status >= 500 else "processing")
    issues: list[dict[str, Any]] = []
    for error in body.get("errors") or []:
        rule = str(error.get("rule", ""))
        issue: dict[str, Any] = {
            "severity": "error",
            "code": _CODES_BY_RULE.get(rule, "value" if status == 422 else default),
            "details": {"text": str(error.get("message", ""))},
            "diagnostics": f"rule {rule}" if rule else str(body.get("title", "")),
        }
        # The field is the item's linkId; its place in the form (a group, a repeat's
        # instance) rides in location.
        if error.get("field"):
            issue["expression"] = [str(error["field"])]
        if error.get("path"):
            issue["location"] = [str(error["path"])]
        issues.append(issue)
    if not issues:
        text = str(body.get("title", ""))
        if body.get("detail"):
            text = f"{text}: {body['detail']}"
        issues.append(
            {"severity": "fatal" if status >= 500 else "error", "code": default, "details": {"text": text}}
        )
    outcome: dict[str, Any] = {"resourceType": "OperationOutcome", "issue": issues}
    slug = str(body.get("type", ""))
    if slug:
        outcome["extension"] = [{"url": "urn:hdhub:problem-type", "valueUri": slug}]
    if body.get("trace_id"):
        outcome["id"] = str(body["trace_id"])
    return outcome
