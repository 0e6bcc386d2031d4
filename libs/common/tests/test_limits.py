"""What any client may send, bounded at the shared REST edge (issue 12 item 3): headers,
bodies with or without Content-Length, JSON depth and Unicode, 405 ``Allow``, download
names, and the problem answers every OpenAPI document lists."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Header, Query, Request, UploadFile

from hdhub.common.limits import MAX_JSON_DEPTH, MAX_PATH_CHARS, load_json, where_too_deep
from hdhub.common.paging import Offset
from hdhub.common.web import CurrentPrincipal, attachment, create_app

PROBLEM = "application/problem+json"


def router() -> APIRouter:
    r = APIRouter()

    @r.get("/things")
    async def things(offset: Offset = 0) -> dict[str, int]:
        return {"offset": offset}

    @r.post("/things", status_code=201)
    async def add(body: dict[str, Any]) -> dict[str, Any]:
        return body

    @r.post("/files")
    async def files(file: UploadFile) -> dict[str, str]:
        return {"name": file.filename or ""}

    @r.get("/things/special")
    async def special() -> None: ...

    @r.delete("/things/{thing_id}")
    async def remove(thing_id: str, principal: CurrentPrincipal) -> None: ...

    @r.put("/things/{thing_id}")
    async def put(
        thing_id: str,
        body: dict[str, Any],
        principal: CurrentPrincipal,
        if_match: Annotated[str | None, Header()] = None,
    ) -> None: ...

    @r.get("/search")
    async def search(n: Annotated[int, Query(le=10)] = 1) -> None: ...

    return r


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(title="t", routers=[router()])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        yield c


async def chunks(data: bytes, size: int = 1 << 20) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def test_a_body_over_the_limit_is_413_with_or_without_content_length(client: httpx.AsyncClient) -> None:
    json = b'{"a": "' + b"x" * (50 * 1024 * 1024) + b'"}'
    multipart = (
        b"--b\r\nContent-Disposition: form-data; name=file; filename=a.csv\r\n\r\n" + json + b"\r\n--b--\r\n"
    )
    for path, big, headers in (
        ("/things", json, {"Content-Type": "application/json"}),
        ("/files", multipart, {"Content-Type": "multipart/form-data; boundary=b"}),
    ):
        with_length = await client.post(path, content=big, headers=headers)
        chunked = await client.post(path, content=chunks(big), headers=headers)
        assert with_length.status_code == chunked.status_code == 413, (path, chunked.text)
        assert chunked.headers["content-type"] == PROBLEM
        assert chunked.json()["type"] == "/problems/payload-too-large"


async def test_headers_over_32_kib_are_431(client: httpx.AsyncClient) -> None:
    r = await client.get("/things", headers={"X-Big": "x" * (1 << 20)})
    assert r.status_code == 431 and r.headers["content-type"] == PROBLEM
    assert r.json()["type"] == "/problems/headers-too-large"
    assert (await client.get("/things", headers={"X-Fine": "x" * 8000})).status_code == 200


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b'{"a":' * 1000 + b"1" + b"}" * 1000, f"nest at most {MAX_JSON_DEPTH} levels"),
        (b"[" * 100_000, f"nest at most {MAX_JSON_DEPTH} levels"),
        (b'{"\\udfff": 1}', "lone surrogate"),
        (b'{"a": "\\ud800"}', "lone surrogate"),
        (b'{"a": "\xff"}', "not UTF-8"),
        (b'{"a": }', "Not JSON at line 1, column 7."),
        (b"NaN", "Not JSON at line 1, column 1."),
    ],
)
async def test_json_a_route_cannot_take_is_a_400_in_our_words(
    client: httpx.AsyncClient, body: bytes, detail: str
) -> None:
    for headers in (
        {"Content-Type": "application/json"},
        {"Content-Type": "application/merge-patch+json"},
        {},
    ):
        r = await client.post("/things", content=body, headers=headers)
        assert r.status_code == 400 and r.headers["content-type"] == PROBLEM, r.text
        assert r.json()["type"] == "/problems/malformed-json"
        assert detail in r.json()["detail"]
        for python_words in ("Expecting", "JSONDecodeError", "surrogates not allowed", "recursion"):
            assert python_words not in r.text


async def test_json_nested_too_deep_says_where_without_the_values(client: httpx.AsyncClient) -> None:
    inner = b'{"section": [' * 40 + b"1" + b"]}" * 40
    body = b'{"values": {"note": "Jan Peeters", "85040216932": 1, "a": ' + inner + b"}}"
    r = await client.post("/things", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    problem = r.json()
    where = problem["errors"][0]["path"]
    assert (
        where.startswith("$.values.a.section[0].section[0]")
        and where.endswith("\u2026")
        and len(where) == MAX_PATH_CHARS
    )
    assert f"level {MAX_JSON_DEPTH + 1} begins at {where}" in problem["detail"]
    assert "Jan Peeters" not in r.text and "85040216932" not in r.text


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (b'{"a": {"b": 1, "c": [7, [', "$.a.c[1]"),  # the first one past the limit, keys and indexes
        (b'[[], {"x": 1}, [[["s"', "$[2][0][0]"),
        (b'{"85040216932": [[[', "$[\u2026][0][0]"),  # a key that is not a name might be data
        (b'{"first name": {"ok": {"x": {', "$[\u2026].ok.x"),
    ],
)
def test_the_depth_rule_names_the_json_path_where_the_limit_is_passed(body: bytes, where: str) -> None:
    assert where_too_deep(body, limit=3) == where


async def test_json_at_the_depth_limit_and_real_pairs_pass(client: httpx.AsyncClient) -> None:
    deep = b'{"a":' * (MAX_JSON_DEPTH - 1) + b"[1]" + b"}" * (MAX_JSON_DEPTH - 1)
    assert (
        await client.post("/things", content=deep, headers={"Content-Type": "application/json"})
    ).status_code == 201
    r = await client.post(
        "/things", content=b'{"\\ud83d\\ude00": "\\u00e9"}', headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 201 and r.json() == {"😀": "é"}


def test_load_json_refuses_by_rule_and_returns_the_value() -> None:
    assert load_json(b'{"a": [1, {"b": null}]}') == {"a": [1, {"b": None}]}
    with pytest.raises(Exception, match="not valid JSON") as caught:
        load_json(b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1))
    assert getattr(caught.value, "status", None) == 400


async def test_integers_beyond_64_bits_are_422_and_the_document_says_the_bound(
    client: httpx.AsyncClient,
) -> None:
    r = await client.get(f"/things?offset={2**63}")
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "offset"
    assert (await client.get(f"/things?offset={2**63 - 1}")).json() == {"offset": 2**63 - 1}
    doc = (await client.get("/openapi.json")).json()
    offset = next(p for p in doc["paths"]["/things"]["get"]["parameters"] if p["name"] == "offset")
    assert offset["schema"]["maximum"] == 2**63 - 1


async def test_405_carries_allow_for_the_resource_named(client: httpx.AsyncClient) -> None:
    r = await client.request("PATCH", "/things")
    assert r.status_code == 405 and r.headers["content-type"] == PROBLEM
    assert r.headers["allow"] == "GET, POST"
    # The literal path wins over the template that matches it too (/things/{thing_id}).
    assert (await client.request("PATCH", "/things/special")).headers["allow"] == "GET"
    assert (await client.request("PATCH", "/things/42")).headers["allow"] == "DELETE, PUT"


@pytest.mark.parametrize(
    ("name", "fallback", "encoded"),
    [
        ("отчёт-errors.csv", "_____-errors.csv", "%D0%BE%D1%82%D1%87%D1%91%D1%82-errors.csv"),
        ("报告 success.csv", "___success.csv", "%E6%8A%A5%E5%91%8A%20success.csv"),
        ('a"b\r\n\\c.csv', "a_b_c.csv", "a%22b%5Cc.csv"),  # controls dropped
        ("plain.csv", "plain.csv", "plain.csv"),
    ],
)
def test_attachment_names_any_script_with_an_ascii_fallback(name: str, fallback: str, encoded: str) -> None:
    header = attachment(name)
    header.encode("latin-1")  # what an HTTP header can carry
    assert header == f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"


async def test_every_operation_documents_its_problem_answers(client: httpx.AsyncClient) -> None:
    doc = (await client.get("/openapi.json")).json()
    paths = doc["paths"]

    def statuses(path: str, method: str) -> set[str]:
        return {
            s
            for s, r in paths[path][method]["responses"].items()
            if "application/problem+json" in r.get("content", {})
        }

    assert statuses("/things", "get") == {"400", "422", "431"}
    assert statuses("/things", "post") == {"400", "409", "413", "415", "422", "431"}
    assert statuses("/things/{thing_id}", "delete") == {"400", "401", "403", "404", "409", "422", "431"}
    assert statuses("/things/{thing_id}", "put") >= {"401", "403", "404", "412", "413", "428"}
    problem = paths["/things"]["post"]["responses"]["422"]["content"]["application/problem+json"]["schema"]
    assert problem == {"$ref": "#/components/schemas/Problem"}
    assert "HTTPValidationError" not in str(doc)


async def test_nul_in_any_text_is_a_400_before_a_route_sees_it(client: httpx.AsyncClient) -> None:
    json = {"Content-Type": "application/json"}
    for r in (
        await client.get("/things/a%00b"),
        await client.get("/search?n=1&q=a%00"),
        await client.post("/things", content=b'{"a": ["x\\u0000"]}', headers=json),
        await client.post("/things", content=b'{"\\u0000": 1}', headers=json),
        await client.post(
            "/search", content=b"name=a%00", headers={"Content-Type": "application/x-www-form-urlencoded"}
        ),
    ):
        assert r.status_code == 400 and r.json()["type"] == "/problems/nul-character", r.text
    # An escaped backslash before "u0000" is text, not NUL.
    r = await client.post("/things", content=b'{"a": "\\\\u0000"}', headers=json)
    assert r.status_code == 201 and r.json() == {"a": "\\u0000"}


async def test_a_browser_is_answered_a_page_not_json_before_any_route(client: httpx.AsyncClient) -> None:
    """A person who follows a link with a NUL in it, or whose cookies outgrew the limit,
    reads a page saying so in their language (the portal's own pages come after these
    checks); a program still gets the problem's JSON."""
    browser = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
    for r, status, title in (
        (await client.get("/search?q=a%00", headers=browser), 400, "This address cannot be opened"),
        (
            await client.get("/things", headers={**browser, "X-Big": "x" * (1 << 20)}),
            431,
            "Your browser sent too much",
        ),
    ):
        assert r.status_code == status and r.headers["content-type"].startswith("text/html"), r.headers
        assert f"<h1>{title}</h1>" in r.text and 'href="/"' in r.text and 'lang="en"' in r.text
    # The portal's language cookie first, then Accept-Language; else English.
    r = await client.get("/search?q=%00", headers={**browser, "Cookie": "a=b; hdhub_lang=nl"})
    assert 'lang="nl"' in r.text and "<h1>Dit adres kan niet worden geopend</h1>" in r.text
    r = await client.get("/search?q=%00", headers={**browser, "Accept-Language": "es, fr-BE;q=0.8, de;q=0.5"})
    assert 'lang="fr"' in r.text and "Cette adresse ne peut pas être ouverte" in r.text
    r = await client.get(
        "/search?q=%00", headers={**browser, "Accept-Language": "es", "Cookie": "hdhub_lang=xx"}
    )
    assert 'lang="en"' in r.text
    # A program asking for JSON, or a JSON body posted by a browser: the problem as before.
    r = await client.get("/search?q=a%00", headers={"Accept": "application/json"})
    assert r.status_code == 400 and r.headers["content-type"] == PROBLEM
    r = await client.post("/things?q=%00", headers=browser, content=b"{}")
    assert r.status_code == 400 and r.headers["content-type"] == PROBLEM
    # A form a person sent with a NUL pasted in: a page saying what to do (Back keeps what
    # they typed); the same form from a program: the problem.
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    r = await client.post(
        "/search", content=b"name=a%00", headers={**browser, **form, "Cookie": "hdhub_lang=fr"}
    )
    assert r.status_code == 400 and r.headers["content-type"].startswith("text/html"), r.text
    assert "<h1>Le formulaire contient un caractère qui ne peut pas être enregistré</h1>" in r.text
    r = await client.post("/search", content=b"name=a%00", headers=form)
    assert r.status_code == 400 and r.headers["content-type"] == PROBLEM


@pytest.mark.parametrize(
    ("body", "name"),
    [
        (b'{"STATUS": "draft", "DT_HOSPZ": "01/01/2025", "DT_HOSPZ": "02/01/2025"}', "'DT_HOSPZ'"),
        (b'{"values": {"a": 1, "b": {"c": 1, "c": 1}}}', "'c'"),  # nested, even with one value
        (b'[{"a": 1}, {"x": 2, "x": 3}]', "'x'"),
        (b'{"85040216932": 1, "8504021693\\u0032": 2}', "'\u2026'"),  # an escape; a key might be data
    ],
)
async def test_a_member_written_twice_in_one_object_is_a_400_naming_it(
    client: httpx.AsyncClient, body: bytes, name: str
) -> None:
    # orjson (like json) kept the last of two DT_HOSPZ silently: the v2 submit stored one of
    # two dates the hospital sent, and a proxy reading the first would have seen the other.
    r = await client.post("/things", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["type"] == "/problems/malformed-json", r.text
    (error,) = r.json()["errors"]
    assert error["rule"] == "duplicate-key" and f"The member {name} is written twice" in error["message"]
    assert "85040216932" not in r.text


@pytest.mark.parametrize(
    "body",
    [
        b'[{"a": 1}, {"a": 1}]',  # the same name in two objects
        b'{"a\\"": "x\\": 1", "b": {"c": ":", "d": "\\"e\\":"}}',  # colons and quotes inside strings
        b'{"a" :\n 1, "b"\t: {"a": [{"a": {}}]}}',
    ],
)
def test_names_repeated_only_across_objects_or_inside_strings_pass(body: bytes) -> None:
    import json

    assert load_json(body) == json.loads(body)


async def test_the_pages_that_stream_a_file_on_bound_it_themselves_and_only_they() -> None:
    """The portal's Upload Center and files pages (and the console's workbook import) read
    their body as it arrives and pass the file on under the owning service's own limit: the
    platform's 5 MiB would refuse a real VCF as problem+json to a browser."""
    r = APIRouter()

    async def counted(request: Request) -> dict[str, int]:
        return {"read": sum([len(chunk) async for chunk in request.stream()])}

    for path in (
        "/portal/o/{org}/uploads/new",
        "/portal/o/{org}/files/new",
        "/portal/operator/catalogue/import",
        "/portal/o/{org}/files/{file_id}/new",
        "/portal/o/{org}/members/new",
    ):
        r.add_api_route(path, counted, methods=["POST"])
    app = create_app(title="t", routers=[r])
    big = b"x" * (6 * 1024 * 1024)
    form = {"Content-Type": "multipart/form-data; boundary=b"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        for path in (
            "/portal/o/lab-demo/uploads/new",
            "/portal/o/lab-demo/files/new",
            "/portal/operator/catalogue/import",
        ):
            answer = await c.post(path, content=chunks(big), headers=form)
            assert answer.status_code == 200 and answer.json() == {"read": len(big)}, (path, answer.text)
        for path in ("/portal/o/lab-demo/files/x/new", "/portal/o/lab-demo/members/new"):
            answer = await c.post(path, content=chunks(big), headers=form)
            assert answer.status_code == 413, (path, answer.text)
