"""Every REST route of every service, called as each role in its own organisation, as a
member of a foreign organisation (holding every role there), as the operator, as the
organisation's hospital system (client credentials), as each platform service identity
(``hdhub-service:<name>``, a real token from the issuer), as a member holding both data
roles but granted another registry only (``other-registry``: the fixtures are ANGIO,
HDBP0012, and NGS files), and as nobody. Routes come from the merged OpenAPI document, so a new route cannot escape: one
missing from ``EXPECTED`` fails the test with its method and path.

What an entry says: which callers the route lets through, derived from the one policy
(``Action`` x role, :mod:`hdhub.common.auth`). "Let through" means anything but 401, 403
and 404 (a 409, 412, 422 or 428 means the caller got past authorisation; 404 is accepted
from allowed callers only where the route's own resource may be gone by then, since the
calls run in order and some delete). "Kept out" means 401, 403 or 404. Callers are
judged first, then allowed ones, so deletions cannot hide a leak.

A service identity reaches no REST route but the public ones (``anyone``): services talk
to each other over gRPC, and ``SERVICE_ROUTES`` (empty) would list a documented exception.

To add a route: one line in ``EXPECTED``, with a body if the route takes one.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from hdhub.common import service_auth
from hdhub.common.auth import (
    OPERATOR_ACTIONS,
    OPERATOR_ROLE,
    POLICY,
    REGISTRY_ACTIONS,
    SERVICE_POLICY,
    Action,
    Role,
)
from tests.support.samples import record
from tests.support.stack import Stack
from tests.support.tokens import bearer

OWN, FOREIGN = "az-demo", "lab-demo"
MATRIX = "matrix@matrix.test"
ALL_ROLES = [r.value for r in Role]
#: A member of the own organisation with both data roles, granted a registry no fixture is of.
OTHER_REGISTRY = "other-registry"
SERVICE_CALLERS = {f"service:{name}": name for name in SERVICE_POLICY}
#: REST routes documented for a service identity (docs/identity.md): none.
SERVICE_ROUTES: dict[tuple[str, str], frozenset[str]] = {}


@dataclass(frozen=True)
class Expect:
    #: The action the route requires; callers are allowed by POLICY. None with
    #: ``anyone`` (public) or ``authenticated`` (any verified caller, own data only).
    action: Action | None = None
    anyone: bool = False
    authenticated: bool = False
    #: False when the route's data belongs to no organisation (the catalogue): a foreign
    #: caller holding the right role anywhere is let through.
    tenant: bool = True
    body: Callable[[dict[str, str]], Any] | None = None
    files: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    note: str = ""
    #: How a member granted another registry only is answered on a registry-bound route:
    #: "kept out" (the route's registration, upload, file or registry is not theirs),
    #: "listed" (a list, answered with their registries' rows only: tests/authz/
    #: test_registry_grants.py pins what is in it), "input" (the registry is known only
    #: from a valid input, which the matrix does not send: the dedicated tests refuse it).
    other_registry: str = "kept out"


def _member(_: dict[str, str]) -> dict[str, Any]:
    return {"email": f"{uuid.uuid4().hex[:10]}@matrix.test", "roles": ["reader"]}


def _registration(ids: dict[str, str]) -> dict[str, Any]:
    return {"organisation_id": OWN, "dcd": "ANGIO_HOSP", "values": record(), "submit": False}


def _questionnaire_response(_: dict[str, str]) -> dict[str, Any]:
    items = [{"linkId": k, "answer": [{"valueString": v}]} for k, v in record().items() if "|" not in v]
    return {
        "resourceType": "QuestionnaireResponse",
        "questionnaire": "ANGIO_HOSP|1.0.0",
        "status": "in-progress",
        "author": {"reference": f"Organization/{OWN}"},
        "item": items,
    }


def _nihdi(_: dict[str, str]) -> dict[str, Any]:
    import random

    from hdhub.identity.nihdi import check_digits

    base = f"{random.randrange(100000, 999999)}"
    return {"title": "Matrix org", "nihdi_number": base + check_digits(base)}


EXPECTED: dict[tuple[str, str], Expect] = {
    # identity: the embedded OIDC issuer (Keycloak's paths); tokens need no token
    ("GET", "/realms/hdhub/.well-known/openid-configuration"): Expect(anyone=True),
    ("GET", "/realms/hdhub/protocol/openid-connect/certs"): Expect(anyone=True),
    ("POST", "/realms/hdhub/protocol/openid-connect/token"): Expect(
        anyone=True, note="form body; 400 without grant_type"
    ),
    # identity: organisations, members, clients, accounts, account requests, audit
    ("GET", "/api/v1/organisations"): Expect(authenticated=True),
    ("POST", "/api/v1/organisations"): Expect(Action.ORGANISATION_CREATE, tenant=False, body=_nihdi),
    ("GET", "/api/v1/organisations/{organisation_id}"): Expect(Action.ORGANISATION_READ),
    ("GET", "/api/v1/organisations/{organisation_id}/members"): Expect(Action.MEMBER_MANAGE),
    ("POST", "/api/v1/organisations/{organisation_id}/members"): Expect(Action.MEMBER_MANAGE, body=_member),
    ("PUT", "/api/v1/organisations/{organisation_id}/members/{account_id}/roles"): Expect(
        Action.MEMBER_MANAGE, body=lambda _: {"roles": ["registrant"]}
    ),
    ("PUT", "/api/v1/organisations/{organisation_id}/members/{account_id}/registries"): Expect(
        Action.MEMBER_MANAGE, body=lambda _: {"registries": ["HDBP0012"]}
    ),
    ("DELETE", "/api/v1/organisations/{organisation_id}/members/{account_id}"): Expect(Action.MEMBER_MANAGE),
    ("GET", "/api/v1/organisations/{organisation_id}/clients"): Expect(Action.CLIENT_MANAGE),
    ("POST", "/api/v1/organisations/{organisation_id}/clients"): Expect(
        Action.CLIENT_MANAGE, body=lambda _: {"name": "matrix"}
    ),
    ("POST", "/api/v1/organisations/{organisation_id}/clients/{client_id}/secret"): Expect(
        Action.CLIENT_MANAGE
    ),
    ("DELETE", "/api/v1/organisations/{organisation_id}/clients/{client_id}"): Expect(Action.CLIENT_MANAGE),
    ("GET", "/api/v1/organisations/{organisation_id}/sftp-credentials"): Expect(Action.CLIENT_MANAGE),
    ("POST", "/api/v1/organisations/{organisation_id}/sftp-credentials"): Expect(
        Action.CLIENT_MANAGE, body=lambda _: {"name": "matrix"}
    ),
    ("POST", "/api/v1/organisations/{organisation_id}/sftp-credentials/{username}/password"): Expect(
        Action.CLIENT_MANAGE
    ),
    ("DELETE", "/api/v1/organisations/{organisation_id}/sftp-credentials/{username}"): Expect(
        Action.CLIENT_MANAGE
    ),
    ("POST", "/api/v1/accounts/me/password"): Expect(
        authenticated=True,
        body=lambda _: {"current_password": "not-the-password", "new_password": "another-long-one"},
    ),
    ("POST", "/api/v1/accounts/password"): Expect(
        anyone=True,
        body=lambda _: {
            "username": "nobody@matrix.test",
            "current_password": "x" * 12,
            "new_password": "y" * 12,
        },
    ),
    ("DELETE", "/api/v1/accounts/me"): Expect(authenticated=True, note="minted callers have no account: 404"),
    ("DELETE", "/api/v1/accounts/{account_id}"): Expect(Action.MEMBER_MANAGE),
    ("POST", "/api/v1/account-requests"): Expect(
        anyone=True,
        body=lambda _: {
            "organisation_id": OWN,
            "username": uuid.uuid4().hex,
            "first_name": "M",
            "last_name": "X",
            "email": f"{uuid.uuid4().hex[:10]}@matrix.test",
        },
    ),
    ("GET", "/api/v1/account-requests"): Expect(Action.ACCOUNT_REQUEST_REVIEW),
    ("POST", "/api/v1/account-requests/{request_id}/approve"): Expect(Action.ACCOUNT_REQUEST_REVIEW),
    ("POST", "/api/v1/account-requests/{request_id}/reject"): Expect(Action.ACCOUNT_REQUEST_REVIEW),
    ("GET", "/api/v1/audit"): Expect(Action.AUDIT_READ),
    ("POST", "/api/v1/operator/organisations"): Expect(
        Action.USER_MANAGER_APPOINT,
        tenant=False,
        body=lambda _: {**_nihdi({}), "email": f"{uuid.uuid4().hex[:10]}@matrix.test"},
        note="the central operator only: an installation's organisation and first User Manager",
    ),
    # registrations: catalogue (not tenant data) and registrations
    ("GET", "/api/v1/registries"): Expect(Action.CATALOGUE_READ, tenant=False),
    ("POST", "/api/v1/dcds"): Expect(
        Action.CATALOGUE_WRITE, tenant=False, files={"workbook": ("x.xlsx", b"not a workbook")}
    ),
    ("GET", "/api/v1/dcds/{dcd}/versions/{version}"): Expect(Action.CATALOGUE_READ, tenant=False),
    ("GET", "/api/v1/dcds/{dcd}/versions/{version}/fields/{field}"): Expect(
        Action.CATALOGUE_READ, tenant=False
    ),
    ("GET", "/api/v1/dcds/{dcd}/versions/{version}/codelists/{name}"): Expect(
        Action.CATALOGUE_READ, tenant=False
    ),
    ("GET", "/api/v1/dcds/{dcd}/versions/{version}/template.csv"): Expect(
        Action.CATALOGUE_READ, tenant=False
    ),
    ("POST", "/api/v1/dcds/{dcd}/versions/{version}/validate"): Expect(
        Action.CATALOGUE_READ, tenant=False, body=lambda _: {"values": record()}
    ),
    ("POST", "/api/v1/registrations"): Expect(Action.REGISTRATION_WRITE, body=_registration),
    ("GET", "/api/v1/registrations"): Expect(Action.REGISTRATION_READ, other_registry="listed"),
    ("GET", "/api/v1/registrations/{registration_id}"): Expect(Action.REGISTRATION_READ),
    ("PUT", "/api/v1/registrations/{registration_id}"): Expect(
        Action.REGISTRATION_WRITE, body=lambda _: {"values": record()}, headers={"If-Match": '"1"'}
    ),
    ("DELETE", "/api/v1/registrations/{registration_id}"): Expect(
        Action.REGISTRATION_WRITE, headers={"If-Match": '"999"'}
    ),
    ("POST", "/api/v1/registrations/{registration_id}/submit"): Expect(
        Action.REGISTRATION_WRITE, headers={"If-Match": '"999"'}
    ),
    ("POST", "/api/v1/registrations/{registration_id}/reopen"): Expect(
        Action.REGISTRATION_WRITE, headers={"If-Match": '"999"'}
    ),
    ("POST", "/api/v1/registrations/{registration_id}/review"): Expect(
        Action.REGISTRATION_REVIEW, body=lambda _: {"decision": "approved"}, headers={"If-Match": '"999"'}
    ),
    ("GET", "/api/v1/registrations/{registration_id}/history"): Expect(Action.REGISTRATION_READ),
    # registrations: delivery to the central platform
    ("GET", "/api/v1/registrations/{registration_id}/delivery"): Expect(
        Action.REGISTRATION_READ, note="404 for allowed callers before the first submission"
    ),
    ("GET", "/api/v1/deliveries"): Expect(Action.REGISTRATION_READ, other_registry="listed"),
    ("GET", "/api/v1/registrations/{registration_id}/decisions"): Expect(Action.REGISTRATION_READ),
    ("GET", "/api/v1/follow-ups"): Expect(Action.REGISTRATION_READ, other_registry="listed"),
    ("GET", "/api/v1/operator/deliveries"): Expect(
        Action.REGISTRATION_REVIEW,
        tenant=False,
        note="the operator only (no organisation role has this action)",
    ),
    # registrations: exports (the CSV Upload Manager's)
    ("POST", "/api/v1/exports"): Expect(
        Action.EXPORT, body=lambda _: {"organisation_id": OWN, "dcd_code": "ANGIO_HOSP"}
    ),
    ("GET", "/api/v1/exports"): Expect(Action.EXPORT),
    ("GET", "/api/v1/exports/{export_id}"): Expect(Action.EXPORT),
    ("GET", "/api/v1/exports/{export_id}/events"): Expect(Action.EXPORT),
    ("GET", "/api/v1/export-files/{token}"): Expect(
        anyone=True, note="the signed link is the credential: 404 unless ours, 410 once expired"
    ),
    # sim: the stand-in central receiver's switches (never deployed to production)
    ("GET", "/sim/receiver"): Expect(Action.REGISTRATION_REVIEW, tenant=False, note="the operator only"),
    ("PUT", "/sim/receiver"): Expect(
        Action.REGISTRATION_REVIEW, tenant=False, body=lambda _: {"mode": "accept"}, note="the operator only"
    ),
    ("GET", "/sim/receiver/files"): Expect(
        Action.REGISTRATION_REVIEW, tenant=False, note="the operator only"
    ),
    ("PUT", "/sim/receiver/files"): Expect(
        Action.REGISTRATION_REVIEW,
        tenant=False,
        body=lambda _: {"cut_after_bytes": None},
        note="the operator only",
    ),
    ("GET", "/sim/receiver/files/{file_id}"): Expect(
        Action.REGISTRATION_REVIEW,
        tenant=False,
        note="the operator only; 404 for an unknown id once let through",
    ),
    ("GET", "/sim/decisions"): Expect(Action.REGISTRATION_REVIEW, tenant=False, note="the operator only"),
    ("POST", "/sim/decisions"): Expect(
        Action.REGISTRATION_REVIEW,
        tenant=False,
        body=lambda _: {"registration_code": "201.26.999999.00", "status": "approved"},
        note="the operator only; 404 for the operator (no delivery with that code)",
    ),
    ("GET", "/sim/mycarenet"): Expect(Action.REGISTRATION_REVIEW, tenant=False, note="the operator only"),
    ("PUT", "/sim/mycarenet"): Expect(
        Action.REGISTRATION_REVIEW, tenant=False, body=lambda _: {"mode": "accept"}, note="the operator only"
    ),
    ("POST", "/sim/mycarenet/messages"): Expect(
        anyone=True,
        headers={"X-NIP-Message-Id": "matrix"},
        note="MyCareNet's stand-in: the real one checks a certificate",
    ),
    # nippin: the NIPPIN Manager's view of billing messages, reports and exports
    ("GET", "/api/v1/nippin/{organisation_id}/registries"): Expect(Action.NIPPIN),
    ("GET", "/api/v1/nippin/{organisation_id}/registries/{dcd_code}/records"): Expect(Action.NIPPIN),
    ("GET", "/api/v1/nippin/{organisation_id}/messages"): Expect(Action.NIPPIN),
    ("GET", "/api/v1/nippin/{organisation_id}/messages/{message_id}"): Expect(Action.NIPPIN),
    ("POST", "/api/v1/nippin/{organisation_id}/messages/{message_id}/archive"): Expect(
        Action.NIPPIN, body=lambda _: {"reason": "matrix"}
    ),
    ("GET", "/api/v1/nippin/{organisation_id}/reports"): Expect(Action.NIPPIN),
    ("POST", "/api/v1/nippin/{organisation_id}/reports"): Expect(Action.NIPPIN),
    ("GET", "/api/v1/nippin/{organisation_id}/reports/{night}"): Expect(Action.NIPPIN),
    ("POST", "/api/v1/nippin/{organisation_id}/exports"): Expect(
        Action.NIPPIN,
        body=lambda _: {"dcd_code": "PACEMAKER", "date_from": "2025-01-01", "date_to": "2025-01-31"},
    ),
    ("GET", "/api/v1/nippin/{organisation_id}/exports"): Expect(Action.NIPPIN),
    ("GET", "/api/v1/nippin/{organisation_id}/exports/{export_id}"): Expect(Action.NIPPIN),
    ("GET", "/api/v1/nippin/{organisation_id}/exports/{export_id}/download"): Expect(Action.NIPPIN),
    # HD4DP v2-compatible proxy
    ("GET", "/proxy/api/organizations"): Expect(authenticated=True),
    ("GET", "/proxy/api/dcd/menu/structure"): Expect(
        anyone=True, note="public per the v2 docs: the catalogue only"
    ),
    ("GET", "/proxy/api/dcd/menu-translations"): Expect(Action.CATALOGUE_READ, tenant=False),
    ("GET", "/proxy/api/dcd/payload/definition"): Expect(Action.CATALOGUE_READ, tenant=False),
    ("GET", "/proxy/api/dcd/field"): Expect(Action.CATALOGUE_READ, tenant=False),
    ("GET", "/proxy/api/dcd/codelist"): Expect(Action.CATALOGUE_READ, tenant=False),
    ("GET", "/proxy/api/externalreference/sadmi"): Expect(authenticated=True),
    ("GET", "/proxy/api/dcd/template"): Expect(Action.CATALOGUE_READ, tenant=False),
    ("GET", "/proxy/api/dcd/payload/xsd"): Expect(Action.CATALOGUE_READ, tenant=False),
    ("GET", "/proxy/api/problem.xsd"): Expect(authenticated=True),
    # HL7 FHIR R4
    ("GET", "/fhir/metadata"): Expect(anyone=True, note="FHIR's CapabilityStatement is public"),
    ("GET", "/fhir/Questionnaire"): Expect(Action.CATALOGUE_READ, tenant=False),
    ("GET", "/fhir/Questionnaire/{questionnaire}"): Expect(Action.CATALOGUE_READ, tenant=False),
    ("POST", "/fhir/QuestionnaireResponse/$validate"): Expect(
        Action.CATALOGUE_READ, tenant=False, body=_questionnaire_response
    ),
    ("POST", "/fhir/QuestionnaireResponse"): Expect(
        Action.REGISTRATION_WRITE, body=_questionnaire_response, note="the organisation is the body's author"
    ),
    ("GET", "/fhir/QuestionnaireResponse"): Expect(
        Action.REGISTRATION_READ, tenant=False, other_registry="listed"
    ),
    ("GET", "/fhir/QuestionnaireResponse/{registration_id}"): Expect(Action.REGISTRATION_READ),
    ("POST", "/fhir"): Expect(
        authenticated=True,
        body=lambda ids: {
            "resourceType": "Bundle",
            "type": "batch",
            "entry": [
                {
                    "resource": _questionnaire_response(ids),
                    "request": {"method": "POST", "url": "QuestionnaireResponse"},
                }
            ],
        },
        note="each entry is refused on its own (a foreign caller's entry: 403 inside a 200)",
    ),
    ("POST", "/proxy/api/dcd/payload/submit"): Expect(
        Action.REGISTRATION_WRITE, body=lambda _: {"STATUS": "draft"}, other_registry="input"
    ),
    ("GET", "/proxy/api/dcd/submit"): Expect(Action.REGISTRATION_READ, other_registry="listed"),
    # portal: certificates (the Certificate Editor only)
    ("GET", "/api/v1/certificates"): Expect(
        Action.CERTIFICATE_MANAGE,
        tenant=False,
        note="any Certificate Editor; lists only its own organisations",
    ),
    ("POST", "/api/v1/certificates/{organisation_id}/versions"): Expect(
        Action.CERTIFICATE_MANAGE, files={"file": ("x.p12", b"not a p12")}
    ),
    ("GET", "/api/v1/certificates/{organisation_id}/versions"): Expect(Action.CERTIFICATE_MANAGE),
    ("GET", "/api/v1/certificates/{organisation_id}/published"): Expect(Action.CERTIFICATE_MANAGE),
    ("GET", "/api/v1/certificates/{organisation_id}/versions/{version}"): Expect(Action.CERTIFICATE_MANAGE),
    ("GET", "/api/v1/certificates/{organisation_id}/versions/{version}/log"): Expect(
        Action.CERTIFICATE_MANAGE
    ),
    # uploads: the Upload Center
    ("POST", "/api/v1/uploads"): Expect(Action.REGISTRATION_WRITE, files={"file": ("x.csv", b"a;b\n1;2\n")}),
    ("GET", "/api/v1/uploads"): Expect(Action.REGISTRATION_READ, other_registry="listed"),
    ("GET", "/api/v1/uploads/{upload_id}"): Expect(Action.REGISTRATION_READ),
    ("GET", "/api/v1/uploads/{upload_id}/events"): Expect(Action.REGISTRATION_READ),
    ("GET", "/api/v1/uploads/{upload_id}/reports/{kind}.csv"): Expect(Action.REGISTRATION_READ),
    ("GET", "/api/v1/upload-settings/{organisation_id}/{project_code}"): Expect(Action.REGISTRATION_READ),
    ("PUT", "/api/v1/upload-settings/{organisation_id}/{project_code}"): Expect(
        Action.REGISTRATION_WRITE, body=lambda _: {}
    ),
    # intake: files received over SFTP and HTTP
    ("GET", "/api/v1/files/{organisation_id}"): Expect(Action.REGISTRATION_READ, other_registry="listed"),
    ("GET", "/api/v1/files/{organisation_id}/{file_id}"): Expect(Action.REGISTRATION_READ),
    ("GET", "/api/v1/files/{organisation_id}/late-vcfs"): Expect(
        Action.REGISTRATION_READ, other_registry="listed", note="NGS only: empty without that registry"
    ),
    ("PUT", "/api/v1/files/{organisation_id}/{registry}/{filename}"): Expect(
        Action.REGISTRATION_WRITE, note="no body: 422 empty file once let through"
    ),
}

# Values for path and query parameters by name; {own ids} are filled in by the fixture.
PARAMS = {
    "organisation_id": OWN,
    "organization-id": OWN,
    "dcd": "ANGIO_HOSP",
    "dcd-id": "ANGIO_HOSP",
    "dcd_code": "ANGIO_HOSP",
    "version": "latest",
    "dcd-version-id": "latest",
    "field": "DT_HOSPZ",
    "name": "yes_no",
    "codelist": "yes_no",
    "code-list-id": "yes_no",
    "notificationCode": "12345",
    "kind": "errors",
    "project_code": "HDBP0012",
    "registry": "NGS",
    "filename": "matrix.vcf",
    "night": "2026-01-01",
}


def _allowed(expect: Expect, caller: str, route: tuple[str, str] = ("", "")) -> bool:
    if expect.anyone:
        return True
    if caller == "nobody":
        return False
    if caller in SERVICE_CALLERS:
        return SERVICE_CALLERS[caller] in SERVICE_ROUTES.get(route, frozenset())
    if expect.authenticated:
        return True
    assert expect.action is not None
    if caller == "operator":
        return expect.action in OPERATOR_ACTIONS
    if caller == "foreign":
        return not expect.tenant and any(expect.action in POLICY[r] for r in Role)
    if caller == "system":  # az-demo's hospital system: client credentials, registrant
        return expect.action in POLICY[Role.REGISTRANT]
    if caller == OTHER_REGISTRY:
        data_roles = POLICY[Role.REGISTRANT] | POLICY[Role.READER]
        if expect.action not in data_roles:
            return False
        return expect.action not in REGISTRY_ACTIONS or expect.other_registry != "kept out"
    return expect.action in POLICY[Role(caller)]


async def _fixtures(stack: Stack) -> dict[str, str]:
    """Real resources of the own organisation for the path parameters."""
    manager = await stack.headers("manager@az-demo.test")
    ids = dict(PARAMS)
    r = await stack.client.post(f"/api/v1/organisations/{OWN}/members", json=_member({}), headers=manager)
    ids["account_id"] = r.json()["account_id"]
    r = await stack.client.post(
        f"/api/v1/organisations/{OWN}/clients", json={"name": "matrix"}, headers=manager
    )
    ids["client_id"] = r.json()["client_id"]
    r = await stack.client.post(
        f"/api/v1/organisations/{OWN}/sftp-credentials", json={"name": "matrix"}, headers=manager
    )
    ids["username"] = r.json()["username"]
    r = await stack.client.post(
        "/api/v1/account-requests", json=EXPECTED[("POST", "/api/v1/account-requests")].body({})
    )  # type: ignore[misc]
    ids["request_id"] = r.json()["id"]
    r = await stack.client.post(
        "/api/v1/registrations", json=_registration({}), headers=await stack.headers("nurse@az-demo.test")
    )
    ids["registration_id"] = r.json()["id"]
    return ids


def _class(status: int) -> str:
    return "kept out" if status in (401, 403, 404) else "let through"


async def test_every_route_is_in_the_table(stack: Stack) -> None:
    spec = (await stack.client.get("/openapi.json")).json()
    routes = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    missing = sorted(routes - EXPECTED.keys())
    assert not missing, "routes missing from tests/authz/test_route_matrix.py EXPECTED:\n" + "\n".join(
        f"  {m} {p}" for m, p in missing
    )


async def test_every_route_answers_each_caller_as_the_policy_says(stack: Stack) -> None:
    if stack.backend != "sqlite":
        pytest.skip("the matrix is about the code path, not the database: once is enough")
    spec = (await stack.client.get("/openapi.json")).json()
    ids = await _fixtures(stack)
    callers: dict[str, dict[str, str]] = {"nobody": {}}
    for role in Role:
        callers[role.value] = await bearer(stack, {OWN: [role.value]}, username=MATRIX)
    callers["foreign"] = await bearer(stack, {FOREIGN: ALL_ROLES}, username=MATRIX)
    callers["operator"] = await bearer(stack, {}, [OPERATOR_ROLE], username=MATRIX)
    callers[OTHER_REGISTRY] = await bearer(
        stack, {OWN: ["registrant", "reader"]}, username=MATRIX, registries=["HDBP9999"]
    )
    callers["system"] = await stack.headers("az-demo-his")
    for caller, name in SERVICE_CALLERS.items():
        callers[caller] = {"Authorization": f"Bearer {(await service_auth.service_principal(name)).token}"}
    failures: list[str] = []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            expect = EXPECTED.get((method.upper(), path))
            if expect is None:
                continue  # reported by test_every_route_is_in_the_table
            url = path
            query: dict[str, str] = {}
            for p in op.get("parameters", []):
                if p["in"] == "path":
                    url = url.replace("{" + p["name"] + "}", ids.get(p["name"], "matrix-missing"))
                elif p["in"] == "query" and p.get("required") and p["name"] in ids:
                    query[p["name"]] = ids[p["name"]]
            if "organisation_id" in {p["name"] for p in op.get("parameters", []) if p["in"] == "query"}:
                query["organisation_id"] = OWN
            route = (method.upper(), path)
            order = sorted(callers, key=lambda c: _allowed(expect, c, route))  # kept-out callers first
            for caller in order:
                kwargs: dict[str, Any] = {"params": query, "headers": {**callers[caller], **expect.headers}}
                if expect.body is not None:
                    kwargs["json"] = expect.body(ids)
                if expect.files is not None:
                    kwargs["files"] = expect.files
                r = await stack.client.request(method.upper(), url, **kwargs)
                want = "let through" if _allowed(expect, caller, route) else "kept out"
                got = _class(r.status_code)
                if r.status_code >= 500 or (
                    got != want and not (want == "let through" and r.status_code == 404)
                ):
                    failures.append(
                        f"{method.upper()} {path} as {caller}: {r.status_code}, expected {want} ({r.text[:120]})"
                    )
    assert not failures, "\n".join(failures)
