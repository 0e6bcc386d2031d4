"""What makes a service's OpenAPI document one a generator can use as it is: short stable
``operationId``s, global OAuth2 security (operations without a token say so), ``servers``,
and the headers every operation reads (``Accept-Language``).

``operationId``: the route function's name in camelCase (``list_uploads`` →
``listUploads``); a name too generic to be unique across the platform's combined document
(``get``, ``submit``) is named in :data:`OPERATION_IDS` by method and path. Both are stable
across runs; :func:`check_unique` refuses a document where two operations share one.
"""

from __future__ import annotations

from typing import Any

from fastapi.routing import APIRoute

#: Operations whose function name is generic, by (method, path).
OPERATION_IDS: dict[tuple[str, str], str] = {
    ("POST", "/api/v1/dcds"): "importDcd",
    ("GET", "/api/v1/dcds/{dcd}/versions/{version}"): "getDcdVersion",
    ("GET", "/api/v1/dcds/{dcd}/versions/{version}/template.csv"): "getCsvTemplate",
    ("GET", "/api/v1/dcds/{dcd}/versions/{version}/fields/{field}"): "getDcdField",
    ("GET", "/api/v1/dcds/{dcd}/versions/{version}/codelists/{name}"): "getDcdCodelist",
    ("POST", "/api/v1/dcds/{dcd}/versions/{version}/validate"): "validateRegistration",
    ("POST", "/api/v1/registrations"): "createRegistration",
    ("GET", "/api/v1/registrations"): "listRegistrations",
    ("GET", "/api/v1/registrations/{registration_id}"): "getRegistration",
    ("PUT", "/api/v1/registrations/{registration_id}"): "updateRegistration",
    ("DELETE", "/api/v1/registrations/{registration_id}"): "deleteRegistration",
    ("POST", "/api/v1/registrations/{registration_id}/submit"): "submitRegistration",
    ("POST", "/api/v1/registrations/{registration_id}/reopen"): "reopenRegistration",
    ("POST", "/api/v1/registrations/{registration_id}/review"): "reviewRegistration",
    ("GET", "/api/v1/registrations/{registration_id}/history"): "getRegistrationHistory",
    ("GET", "/api/v1/registrations/{registration_id}/delivery"): "getRegistrationDelivery",
    ("GET", "/api/v1/deliveries"): "listDeliveries",
    ("GET", "/api/v1/operator/deliveries"): "listAllDeliveries",
    ("GET", "/api/v1/registrations/{registration_id}/decisions"): "listRegistrationDecisions",
    ("GET", "/api/v1/follow-ups"): "listFollowUps",
    ("GET", "/proxy/api/organizations"): "listV2Organizations",
    ("GET", "/proxy/api/dcd/menu/structure"): "getV2Menu",
    ("GET", "/proxy/api/dcd/menu-translations"): "getV2MenuTranslations",
    ("GET", "/proxy/api/dcd/payload/definition"): "getV2Definition",
    ("GET", "/proxy/api/dcd/field"): "getV2Field",
    ("GET", "/proxy/api/dcd/codelist"): "getV2Codelist",
    ("GET", "/proxy/api/externalreference/sadmi"): "getV2Sadmi",
    ("GET", "/proxy/api/dcd/template"): "getV2Template",
    ("GET", "/proxy/api/dcd/payload/xsd"): "getV2Xsd",
    ("GET", "/proxy/api/problem.xsd"): "getProblemXsd",
    ("GET", "/fhir/metadata"): "getFhirCapabilityStatement",
    ("POST", "/fhir"): "postFhirBatch",
    ("GET", "/fhir/Questionnaire/{questionnaire}"): "readFhirQuestionnaire",
    ("GET", "/fhir/Questionnaire"): "searchFhirQuestionnaires",
    ("POST", "/fhir/QuestionnaireResponse"): "createFhirResponse",
    ("POST", "/fhir/QuestionnaireResponse/$validate"): "validateFhirResponse",
    ("GET", "/fhir/QuestionnaireResponse/{registration_id}"): "readFhirResponse",
    ("GET", "/fhir/QuestionnaireResponse"): "searchFhirResponses",
    ("POST", "/proxy/api/dcd/payload/submit"): "submitV2Payload",
    ("GET", "/proxy/api/dcd/submit"): "listV2Submitted",
    ("GET", "/realms/hdhub/.well-known/openid-configuration"): "getOpenidConfiguration",
    ("GET", "/realms/hdhub/protocol/openid-connect/certs"): "getSigningKeys",
    ("POST", "/realms/hdhub/protocol/openid-connect/token"): "getToken",
    ("GET", "/api/v1/organisations"): "listMyOrganisations",
    ("POST", "/api/v1/account-requests/{request_id}/approve"): "approveAccountRequest",
    ("POST", "/api/v1/account-requests/{request_id}/reject"): "rejectAccountRequest",
    ("GET", "/api/v1/account-requests"): "listAccountRequests",
    ("GET", "/api/v1/audit"): "listAuditLog",
    ("GET", "/dev/mail"): "listDevMail",
    ("GET", "/api/v1/uploads/{upload_id}/events"): "streamUploadEvents",
    ("GET", "/api/v1/uploads/{upload_id}/reports/{kind}.csv"): "getUploadReport",
    ("GET", "/api/v1/upload-settings/{organisation_id}/{project_code}"): "getUploadSettings",
    ("PUT", "/api/v1/upload-settings/{organisation_id}/{project_code}"): "putUploadSettings",
    ("GET", "/api/v1/certificates"): "listCertificates",
    ("POST", "/api/v1/certificates/{organisation_id}/versions"): "uploadCertificate",
    ("GET", "/api/v1/certificates/{organisation_id}/versions"): "listCertificateVersions",
    ("GET", "/api/v1/certificates/{organisation_id}/published"): "getPublishedCertificate",
    ("GET", "/api/v1/certificates/{organisation_id}/versions/{version}"): "getCertificateVersion",
    ("GET", "/api/v1/certificates/{organisation_id}/versions/{version}/log"): "getCertificateLog",
    ("PUT", "/api/v1/files/{organisation_id}/{registry}/{filename}"): "uploadFile",
    ("GET", "/api/v1/files/{organisation_id}/{file_id}"): "getFile",
    ("GET", "/api/v1/nippin/{organisation_id}/registries"): "listNippinRegistries",
    ("GET", "/api/v1/nippin/{organisation_id}/registries/{dcd_code}/records"): "listNippinRecords",
    ("GET", "/api/v1/nippin/{organisation_id}/messages"): "listNippinMessages",
    ("GET", "/api/v1/nippin/{organisation_id}/messages/{message_id}"): "getNippinMessage",
    ("POST", "/api/v1/nippin/{organisation_id}/messages/{message_id}/archive"): "archiveNippinMessage",
    ("GET", "/api/v1/nippin/{organisation_id}/reports"): "listNippinReports",
    ("POST", "/api/v1/nippin/{organisation_id}/reports"): "buildNippinReport",
    ("GET", "/api/v1/nippin/{organisation_id}/reports/{night}"): "getNippinReport",
    ("POST", "/api/v1/nippin/{organisation_id}/exports"): "createNippinExport",
    ("GET", "/api/v1/nippin/{organisation_id}/exports"): "listNippinExports",
    ("GET", "/api/v1/nippin/{organisation_id}/exports/{export_id}"): "getNippinExport",
    ("GET", "/api/v1/nippin/{organisation_id}/exports/{export_id}/download"): "downloadNippinExport",
    ("GET", "/sim/receiver"): "getReceiverSim",
    ("PUT", "/sim/receiver"): "putReceiverSim",
    ("POST", "/sim/decisions"): "postDecisionSim",
    ("GET", "/sim/decisions"): "listDecisionsSim",
}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def operation_id(route: APIRoute) -> str:
    """FastAPI's ``generate_unique_id_function``: a short, stable id for ``route``."""
    method = sorted(route.methods or {"GET"})[0]
    return OPERATION_IDS.get((method, route.path_format)) or _camel(route.name)


def check_unique(document: dict[str, Any]) -> None:
    seen: dict[str, str] = {}
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            op_id = operation.get("operationId")
            if op_id in seen:
                raise ValueError(f"operationId {op_id} of {method} {path} is also {seen[op_id]}'s")
            seen[op_id] = f"{method} {path}"


ACCEPT_LANGUAGE: dict[str, Any] = {
    "name": "Accept-Language",
    "in": "header",
    "required": False,
    "description": (
        "Language of `errors[].message` (and of a `detail` the route translates): en, fr, nl or de;"
        " default en. A problem's `title` is English whatever the language: read `type` to act on it."
    ),
    "schema": {"type": "string", "example": "nl"},
}

#: Response headers, declared once under ``components.headers``.
HEADERS: dict[str, dict[str, Any]] = {
    "ETag": {
        "description": "The registration's version: send it back as `If-Match` to change it",
        "schema": {"type": "string", "example": '"3"'},
    },
    "Location": {"description": "Where the created resource is read", "schema": {"type": "string"}},
    "Idempotent-Replayed": {
        "description": "`true` when this is the stored answer to an earlier request with the same `Idempotency-Key`",
        "schema": {"type": "string", "enum": ["true"]},
    },
}
#: The operations that send them on success (besides: an operation taking `If-Match` sends
#: `ETag`; one taking `Idempotency-Key` sends `Location` and `Idempotent-Replayed`).
RESPONSE_HEADERS: dict[str, tuple[str, ...]] = {
    "getRegistration": ("ETag",),
    "createRegistration": ("ETag",),
    "createOrganisation": ("Location",),
    "addMember": ("Location",),
    "createClient": ("Location",),
    "createSftpCredential": ("Location",),
    "uploadFile": ("Location",),
}


def _response_headers(operation: dict[str, Any]) -> list[str]:
    names = list(RESPONSE_HEADERS.get(operation.get("operationId", ""), ()))
    taken = {p.get("name", "").lower() for p in operation.get("parameters", [])}
    if "if-match" in taken:
        names.append("ETag")
    if "idempotency-key" in taken:
        names += ["Location", "Idempotent-Replayed"]
    return names


#: Text answers a route declares without a schema: a generator reads them as a string.
TEXT_MEDIA_TYPES = {
    "text/csv": "CSV, UTF-8, `;`-separated, a header row first",
    "text/event-stream": "Server-sent events (one `data:` JSON object per event)",
}


def finish(
    document: dict[str, Any], authenticated: set[tuple[str | None, str]], scheme: str, public_url: str
) -> None:
    """Global security, ``servers``, Accept-Language on every operation; operations that
    take no token answer ``security: []``."""
    document["servers"] = [{"url": public_url, "description": "This installation"}]
    document["security"] = [{scheme: []}]
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            if (path, method) not in authenticated:
                operation.setdefault("security", [])  # the route's own (the token endpoint's), or none
            else:
                operation.pop("security", None)  # the global one
            for status, answer in operation.get("responses", {}).items():
                if status.startswith("2"):
                    for name in _response_headers(operation):
                        answer.setdefault("headers", {})[name] = {"$ref": f"#/components/headers/{name}"}
                for media_type, content in answer.get("content", {}).items():
                    if media_type in TEXT_MEDIA_TYPES and not content.get("schema"):
                        content["schema"] = {"type": "string", "description": TEXT_MEDIA_TYPES[media_type]}
            parameters = operation.setdefault("parameters", [])
            if not any(p.get("name", "").lower() == "accept-language" for p in parameters):
                # Inline, not a $ref: every parameter keeps its `name` for whoever reads them.
                parameters.append(dict(ACCEPT_LANGUAGE))
    used = {name for name in HEADERS if f"#/components/headers/{name}" in str(document.get("paths"))}
    if used:
        document.setdefault("components", {}).setdefault("headers", {}).update({n: HEADERS[n] for n in used})
    check_unique(document)
