"""The REST edge: every error is problem+json, and never a stack trace."""

from __future__ import annotations

from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Depends, Request

from hdhub.common.errors import FieldProblem, Problem
from hdhub.common.web import answering_for, create_app, service_of


def app_with(router: APIRouter) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(title="t", routers=[router])), base_url="http://t"
    )


async def test_an_unexpected_error_is_a_bare_500_problem() -> None:
    router = APIRouter()

    @router.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret detail 85040216932")

    async with app_with(router) as client:
        r = await client.get("/boom")
        assert r.status_code == 500 and r.headers["content-type"] == "application/problem+json"
        assert r.json()["type"] == "/problems/internal"
        assert "secret" not in r.text and "Traceback" not in r.text
        assert (await client.get("/healthz")).status_code == 200  # the app goes on


async def test_a_request_with_a_body_is_never_redirected_for_a_slash_a_safe_one_is() -> None:
    router = APIRouter()

    @router.put("/files/{name}")
    async def put_file(name: str) -> dict[str, str]:
        return {"name": name}

    @router.post("/folders/")
    async def new_folder() -> dict[str, str]:
        return {"made": "yes"}

    @router.get("/files/{name}")
    async def get_file(name: str) -> dict[str, str]:
        return {"name": name}

    async with app_with(router) as client:
        assert (await client.put("/files/a.vcf", json={"size": 1})).status_code == 200
        for method, path, how in (("PUT", "/files/a.vcf/", "without"), ("POST", "/folders", "with")):
            r = await client.request(method, path, json={"size": 1000})
            assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json", r.text
            assert "location" not in r.headers
            assert (
                f"{how} the trailing slash" in r.json()["detail"]
                or f"{how} a trailing slash" in r.json()["detail"]
            )
        r = await client.get("/files/a.vcf/")  # no body to send again: Starlette's redirect stays
        assert r.status_code == 307 and r.headers["location"].endswith("/files/a.vcf")
        assert (await client.put("/nothing/here/", json={})).status_code == 404


async def test_problems_unknown_routes_and_oversized_bodies() -> None:
    router = APIRouter()

    @router.post("/things")
    async def things(body: dict[str, int]) -> None:
        raise Problem(409, "thing-exists", "That thing exists")

    async with app_with(router) as client:
        r = await client.post("/things", json={"a": 1})
        body = r.json()
        body.pop("trace_id", None)
        assert r.status_code == 409 and body == {
            "type": "/problems/thing-exists",
            "title": "That thing exists",
            "status": 409,
            "instance": "/things",
        }
        r = await client.get("/nope")
        assert r.status_code == 404 and r.json()["type"] == "/problems/not-found"
        r = await client.post("/things", json={"a": "x"})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "a"
        r = await client.post("/things", content=b"{", headers={"content-type": "application/json"})
        assert r.status_code == 400 and r.json()["type"] == "/problems/malformed-json"
        r = await client.post(
            "/things", content=b"x" * (6 * 1024 * 1024), headers={"content-type": "application/json"}
        )
        assert r.status_code == 413


async def test_every_problem_answer_carries_the_trace_id_in_its_body_and_a_header() -> None:
    """A caller quotes the trace id to support: in the problem's ``trace_id`` member and
    the ``X-Trace-Id`` header, on a 500 as on any other problem."""
    from hdhub.common.telemetry import setup_telemetry

    setup_telemetry("web-test")  # a TracerProvider (no exporter), as every hdhub process has
    router = APIRouter()

    @router.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret detail")

    @router.get("/refused")
    async def refused() -> None:
        raise Problem(409, "refused", "Refused")

    async with app_with(router) as client:
        for path, status in (("/boom", 500), ("/refused", 409), ("/nope", 404)):
            r = await client.get(path)
            assert r.status_code == status
            trace_id = r.json()["trace_id"]
            assert len(trace_id) == 32 and int(trace_id, 16) != 0
            assert r.headers["x-trace-id"] == trace_id
        r = await client.get("/boom")
        assert "trace id" in r.json()["detail"] and r.json()["trace_id"] != trace_id  # one per request


async def test_liveness_stays_up_while_readiness_says_the_database_is_down(tmp_path: Any) -> None:
    """/healthz is liveness: a database outage must not get pods restarted; /readyz fails
    (503, saying which database and why) so the Service stops sending requests."""
    from hdhub.common.db import Database
    from hdhub.common.health import database_state

    down = Database("postgresql+psycopg://postgres@127.0.0.1:9/none")  # nothing listens on port 9
    up = Database(f"sqlite+aiosqlite:///{tmp_path}/up.db")

    async def readiness_of(db: Database) -> dict[str, str]:
        return {"things.database": await database_state(db)}

    try:
        for db, ready in ((down, False), (up, True)):
            app = create_app(title="t", routers=[], readiness=lambda db=db: readiness_of(db))  # type: ignore[misc]
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://t"
            ) as client:
                assert (await client.get("/healthz")).status_code == 200
                r = await client.get("/readyz")
                if ready:
                    assert r.status_code == 200 and r.json()["checks"] == {"things.database": "ok"}
                else:
                    assert r.status_code == 503 and r.json()["status"] == "unavailable"
                    assert "refused" in r.json()["checks"]["things.database"].lower()
    finally:
        await down.dispose()
        await up.dispose()


class _Counter:
    def __init__(self, name: str) -> None:
        self.name = name


def _counter(request: Request) -> _Counter:
    return service_of(request, _Counter)


_counted = APIRouter(prefix="/api/v1")


@_counted.get("/counter")
async def _which(counter: Annotated[_Counter, Depends(_counter)]) -> dict[str, str]:
    return {"name": counter.name}


async def test_module_level_routes_answer_for_the_instance_they_were_mounted_for() -> None:
    answers = []
    for name in ("first", "second"):
        app = create_app(title="t", routers=answering_for(_Counter(name), _counted))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            answers.append((await client.get("/api/v1/counter")).json())
    assert answers == [{"name": "first"}, {"name": "second"}]


async def test_a_problem_never_echoes_an_ssin_the_caller_put_in_the_wrong_place() -> None:
    # An SSIN typed as a DCD, field or file name came back in title, instance and
    # errors[].field (GET /api/v1/dcds/ANGIO_HOSP/versions/latest/fields/<ssin>: "Field
    # <ssin> not found"; an unknown field named <ssin> on the v2 submit).
    ssin, formatted = "90031573151", "90.03.15-731.51"
    router = APIRouter()

    @router.get("/fields/{name}")
    async def field(name: str) -> None:
        raise Problem(
            422,
            "invalid-registration",
            f"Field {name} not found",
            detail=f"{name} is unknown",
            errors=[
                FieldProblem(
                    field=f"X_{name}", rule="unknown_field", message="This field is not part of the form."
                )
            ],
            extra={"fields": [name, "kept-1234"]},
        )

    async with app_with(router) as client:
        for shown in (ssin, formatted):
            r = await client.get(f"/fields/{shown}")
            assert r.status_code == 422
            assert ssin not in r.text and formatted not in r.text, r.text
            body = r.json()
            assert body["title"] == "Field [redacted-ssin] not found"
            assert body["instance"] == "/fields/[redacted-ssin]"
            assert body["errors"][0]["field"] == "X_[redacted-ssin]"
            assert body["fields"] == ["[redacted-ssin]", "kept-1234"]
        # A number of the same shape that fails the SSIN rule is not one: it stays.
        r = await client.get("/fields/90031573152")
        assert r.json()["title"] == "Field 90031573152 not found"
        # Routes that do not exist, and parameters that break the schema, too.
        r = await client.get(f"/nowhere/{ssin}")
        assert r.status_code == 404 and ssin not in r.text
