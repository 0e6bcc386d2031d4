"""Issue 12 item 3: requests a client can send that answered 500, each now a clear 4xx
problem+json (RFC 9457) from the whole in-process platform."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

import pytest

from services.uploads.tests.integration.test_uploads_api import csv_bytes, finished
from tests.support.samples import record
from tests.support.stack import Stack

HIS = "az-demo-his"
OPERATOR = "operator@hdhub.test"
PROBLEM = "application/problem+json"
TOO_BIG = str(2**63)
V2 = "dcd-version-id=1.0.0&organization-id=az-demo"


def nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


@pytest.mark.parametrize(
    ("path", "who"),
    [
        ("/api/v1/registrations?offset={n}", HIS),
        ("/api/v1/deliveries?organisation_id=az-demo&offset={n}", HIS),
        ("/api/v1/operator/deliveries?offset={n}", OPERATOR),
        ("/api/v1/uploads?offset={n}", HIS),
        ("/api/v1/registries?offset={n}", HIS),  # a list read whole, then windowed
        ("/api/v1/organisations?offset={n}", HIS),
    ],
)
async def test_an_offset_beyond_64_bits_is_a_422_naming_the_parameter(
    stack: Stack, path: str, who: str
) -> None:
    r = await stack.client.get(path.format(n=TOO_BIG), headers=await stack.headers(who))
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM, r.text
    assert [e["field"] for e in r.json()["errors"]] == ["offset"]
    largest = await stack.client.get(path.format(n=2**63 - 1), headers=await stack.headers(who))
    assert largest.status_code == 200, largest.text


@pytest.mark.parametrize("dcd_id", [TOO_BIG, "9" * 40, "²"])
async def test_a_v2_dcd_number_no_dcd_can_have_is_not_found(stack: Stack, dcd_id: str) -> None:
    h = await stack.headers(HIS)
    for path in ("payload/definition", "codelist?code-list-id=x&", "field?field-name=x&"):
        sep = "" if path.endswith("&") else "?"
        r = await stack.client.get(
            f"/proxy/api/dcd/{path}{sep}dcd-id={dcd_id}&dcd-version-id=1.0.0", headers=h
        )
        assert r.status_code == 404 and r.json()["type"] == "/problems/not-found", (path, r.text)


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", None])
async def test_a_json_body_nested_1000_deep_is_refused_naming_the_depth_rule(
    stack: Stack, content_type: str | None
) -> None:
    headers = await stack.headers(HIS)
    if content_type:
        headers["Content-Type"] = content_type
    r = await stack.client.post(
        f"/proxy/api/dcd/payload/submit?dcd-id=ANGIO_HOSP&{V2}", content=nested(1000), headers=headers
    )
    assert r.status_code == 400 and r.headers["content-type"] == PROBLEM, r.text
    assert r.json()["type"] == "/problems/malformed-json"
    assert "nest at most 32 levels" in r.json()["detail"]
    assert r.json()["errors"][0]["rule"] == "max-depth"


async def test_json_bodies_deeper_than_the_limit_are_refused_on_every_route(stack: Stack) -> None:
    h = await stack.headers(HIS)
    r = await stack.client.post(
        "/api/v1/registrations", content=nested(33), headers={**h, "Content-Type": "application/json"}
    )
    assert r.status_code == 400 and "nest at most" in r.json()["detail"]
    r = await stack.client.post(
        "/api/v1/registrations", content=nested(32), headers={**h, "Content-Type": "application/json"}
    )
    assert r.status_code == 422  # as deep as allowed: the schema speaks, not the depth rule


@pytest.mark.parametrize(
    "path", ["/api/v1/registrations", "/api/v1/dcds/ANGIO_HOSP/versions/latest/validate"]
)
async def test_a_lone_surrogate_json_key_is_a_400_not_a_500(stack: Stack, path: str) -> None:
    body = b'{"organisation_id": "az-demo", "dcd": "ANGIO_HOSP", "values": {"\\udfff": "x"}}'
    r = await stack.client.post(
        path, content=body, headers={**await stack.headers(HIS), "Content-Type": "application/json"}
    )
    assert r.status_code == 400 and r.headers["content-type"] == PROBLEM, r.text
    assert "lone surrogate" in r.json()["detail"] and r.json()["errors"][0]["rule"] == "lone-surrogate"


async def test_malformed_json_is_described_in_our_words_not_pythons(stack: Stack) -> None:
    r = await stack.client.post(
        "/api/v1/registrations",
        content=b'{"values": }',
        headers={**await stack.headers(HIS), "Content-Type": "application/json"},
    )
    assert r.status_code == 400 and r.json()["detail"] == "Not JSON at line 1, column 12."
    for python_words in ("Expecting", "char ", "JSONDecodeError", "orjson"):
        assert python_words not in r.text


async def test_a_multipart_upload_whose_body_is_not_multipart_is_a_400(stack: Stack) -> None:
    r = await stack.client.post(
        "/api/v1/uploads?dcd_code=ANGIO_HOSP",
        content=b"this is not multipart at all\r\n",
        headers={**await stack.headers(HIS), "Content-Type": "multipart/form-data; boundary=xyz"},
    )
    assert r.status_code == 400 and r.headers["content-type"] == PROBLEM, r.text
    assert r.json()["type"] == "/problems/bad-multipart"


@pytest.mark.parametrize("name", ["отчёт пациентов.csv", "报告.csv", "café «été».csv"])
async def test_reports_of_a_file_with_a_non_latin1_name_download_with_filename_star(
    stack: Stack, name: str
) -> None:
    h = await stack.headers(HIS)
    r = await stack.client.post(
        "/api/v1/uploads?dcd_code=ANGIO_HOSP",
        files={"file": (name, csv_bytes([record()]), "text/csv")},
        headers=h,
    )
    assert r.status_code == 202, r.text
    upload = await finished(stack, r.json()["id"])
    stem = name.rsplit(".", 1)[0]
    for kind in ("errors", "success"):
        r = await stack.client.get(upload["reports"][kind], headers=h)
        assert r.status_code == 200, r.text
        disposition = r.headers["content-disposition"]
        disposition.encode("latin-1")  # what a header can carry
        assert f"filename*=UTF-8''{quote(f'{stem}-{kind}.csv', safe='')}" in disposition
        assert disposition.startswith('attachment; filename="') and disposition.split('"')[1].isascii()


async def test_405_names_the_methods_the_path_allows(stack: Stack) -> None:
    r = await stack.client.request("TRACE", "/api/v1/registrations", headers=await stack.headers(HIS))
    assert r.status_code == 405 and r.headers["content-type"] == PROBLEM
    assert set(r.headers["allow"].split(", ")) == {"GET", "POST"}


async def test_a_chunked_body_over_the_limit_is_413_like_one_with_content_length(stack: Stack) -> None:
    h = {**await stack.headers(HIS), "Content-Type": "application/json"}
    big = b'{"values": "' + b"x" * (6 * 1024 * 1024) + b'"}'

    async def chunked() -> object:
        for i in range(0, len(big), 1 << 20):
            yield big[i : i + (1 << 20)]
            await asyncio.sleep(0)

    with_length = await stack.client.post("/api/v1/registrations", content=big, headers=h)
    without = await stack.client.post("/api/v1/registrations", content=chunked(), headers=h)
    assert with_length.status_code == without.status_code == 413
    assert without.json()["type"] == "/problems/payload-too-large"


async def test_a_1_mb_header_is_431(stack: Stack) -> None:
    r = await stack.client.get(
        "/api/v1/registrations", headers={**await stack.headers(HIS), "X-Big": "x" * (1 << 20)}
    )
    assert r.status_code == 431 and r.json()["type"] == "/problems/headers-too-large"


SERVICES = ("identity", "registrations", "uploads", "intake", "portal", "sim")


def _unbounded_integers(schema: Any, components: dict[str, Any], where: str, seen: set[str]) -> list[str]:
    if isinstance(schema, list):
        return [u for item in schema for u in _unbounded_integers(item, components, where, seen)]
    if not isinstance(schema, dict):
        return []
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        if name in seen:
            return []
        return _unbounded_integers(components[name], components, f"{where}>{name}", seen | {name})
    found = [where] if schema.get("type") == "integer" and "maximum" not in schema else []
    for key, value in schema.items():
        if key in ("properties", "items", "anyOf", "oneOf", "allOf", "additionalProperties", "prefixItems"):
            if key == "properties":
                found += [
                    u
                    for k, v in value.items()
                    for u in _unbounded_integers(v, components, f"{where}.{k}", seen)
                ]
            else:
                found += _unbounded_integers(value, components, where, seen)
    return found


async def test_every_integer_a_client_sends_is_bounded_in_every_document(stack: Stack) -> None:
    """The class of the 2^63 offsets: an integer without a maximum reaches the database."""
    from hdhub.common.web import create_app

    unbounded = []
    for name in SERVICES:
        doc = create_app(title=name, routers=stack.service(name).routers()).openapi()
        components = doc.get("components", {}).get("schemas", {})
        for path, operations in doc["paths"].items():
            for method, op in operations.items():
                for p in op.get("parameters", []):
                    unbounded += _unbounded_integers(
                        p["schema"], components, f"{method} {path} {p['name']}", set()
                    )
                for media in op.get("requestBody", {}).get("content", {}).values():
                    unbounded += _unbounded_integers(
                        media.get("schema"), components, f"{method} {path} body", set()
                    )
                # Problems are RFC 9457's, but FHIR's OperationOutcomes under /fhir.
                media = "application/fhir+json" if path.startswith("/fhir") else "application/problem+json"
                assert media in op["responses"]["422"]["content"], (method, path)
    assert unbounded == []


async def test_nul_in_a_parameter_or_body_is_a_400_on_every_database(stack: Stack) -> None:
    """PostgreSQL cannot store U+0000 and refused every query carrying one (500)."""
    h = await stack.headers(HIS)
    for r in (
        await stack.client.get("/api/v1/registrations?business_key=a%00b", headers=h),
        await stack.client.get("/api/v1/registrations/a%00b", headers=h),
        await stack.client.get("/api/v1/upload-settings/az-demo/a%00b", headers=h),
        await stack.client.post(
            "/api/v1/registrations",
            json={"organisation_id": "az-demo", "dcd": "ANGIO\x00", "values": record(IDC_PAT="x\x00")},
            headers=h,
        ),
        await stack.client.post(
            "/realms/hdhub/protocol/openid-connect/token",
            data={
                "grant_type": "password",
                "client_id": "hdhub-portal",
                "username": "a\x00",
                "password": "x",
            },
        ),
    ):
        assert r.status_code == 400 and r.json()["type"] == "/problems/nul-character", r.text
