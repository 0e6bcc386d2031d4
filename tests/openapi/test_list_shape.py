"""Issue 14: every list under /api answers one shape, a page
``{items, total, limit, offset, next}`` (hdhub.common.paging), never a bare array, and
takes ``limit`` with ``offset`` (or ``after``, where it is paged by key). Read from the
OpenAPI documents, so a new list route is held to it the day it is added. The HD4DP v2
routes under /proxy/api answer healthdata.be's documented shapes and are left out."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

PAGE = {"items", "total", "limit", "offset", "next"}
DOCUMENTS = ("all", "registrations", "uploads", "intake", "portal", "sim", "identity", "nippin")


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _reachable(doc: dict[str, Any], schema: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every object schema an answer holds, named by where it stands."""
    seen: set[str] = set()
    stack: list[tuple[str, dict[str, Any]]] = [("answer", schema)]
    while stack:
        where, node = stack.pop()
        if "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[1]
            if name in seen:
                continue
            seen.add(name)
            where, node = name, _resolve(doc, node)
        yield where, node
        for key in ("anyOf", "oneOf", "allOf"):
            stack.extend((where, s) for s in node.get(key, []))
        if isinstance(node.get("items"), dict):
            stack.append((where, node["items"]))
        for name, prop in node.get("properties", {}).items():
            stack.append((f"{where}.{name}", prop))
        if isinstance(node.get("additionalProperties"), dict):
            stack.append((where, node["additionalProperties"]))


def _answers(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(operation, operation, JSON schema) of each success answer of every /api operation."""
    for path, operations in doc["paths"].items():
        if not path.startswith("/api/"):
            continue
        for method, op in operations.items():
            for status, answer in op["responses"].items():
                content = answer.get("content", {}).get("application/json")
                if status.startswith("2") and content is not None:
                    yield f"{method.upper()} {path} ({op['operationId']})", op, content.get("schema", {})


def _is_page_shaped(schema: dict[str, Any]) -> bool:
    items = schema.get("properties", {}).get("items")
    return schema.get("type") == "object" and isinstance(items, dict) and items.get("type") == "array"


def _page_problems(schema: dict[str, Any]) -> list[str]:
    props = schema.get("properties", {})
    wrong = []
    if set(props) != PAGE:
        wrong.append(f"members {sorted(props)}, not {sorted(PAGE)}")
    if set(schema.get("required", [])) != PAGE:
        wrong.append(f"required {sorted(schema.get('required', []))}")
    for name in ("total", "limit", "offset"):
        if props.get(name, {}).get("type") != "integer":
            wrong.append(f"{name} is not an integer")
    if {s.get("type") for s in props.get("next", {}).get("anyOf", [])} != {"string", "null"}:
        wrong.append("next is not a string or null")
    return wrong


@pytest.fixture(scope="module")
def documents(openapi_documents: Path) -> dict[str, dict[str, Any]]:
    return {name: json.loads((openapi_documents / f"{name}.json").read_text()) for name in DOCUMENTS}


def test_no_api_operation_answers_a_bare_array(documents: dict[str, dict[str, Any]]) -> None:
    arrays = {
        f"{name}: {op_name}"
        for name, doc in documents.items()
        for op_name, _op, schema in _answers(doc)
        if _resolve(doc, schema).get("type") == "array"
    }
    assert not arrays, "lists answer a page, not an array:\n" + "\n".join(sorted(arrays))


def test_every_list_answers_the_one_page_shape(documents: dict[str, dict[str, Any]]) -> None:
    wrong, pages = [], 0
    for name, doc in documents.items():
        for op_name, _op, schema in _answers(doc):
            for where, node in _reachable(doc, schema):
                if _is_page_shaped(node) or where.endswith("Page"):
                    pages += 1
                    wrong += [f"{name}: {op_name}: {where}: {p}" for p in _page_problems(node)]
    assert pages >= 20  # the lists exist, and the walk finds them
    assert not wrong, "\n".join(sorted(set(wrong)))


def test_every_page_can_be_asked_for_by_window(documents: dict[str, dict[str, Any]]) -> None:
    doc, unpaged = documents["all"], []
    for op_name, op, schema in _answers(doc):
        if any(_is_page_shaped(node) for _where, node in _reachable(doc, schema)):
            query = {p["name"] for p in op.get("parameters", []) if p.get("in") == "query"}
            if "limit" not in query or not query & {"offset", "after"}:
                unpaged.append(f"{op_name}: query {sorted(query)}")
    assert not unpaged, "\n".join(unpaged)


def test_the_checks_catch_an_array_and_a_page_of_another_shape() -> None:
    """The rules above on a document made to break them (so they cannot pass vacuously)."""
    page = {
        "type": "object",
        "properties": {"items": {"type": "array", "items": {}}, "total": {"type": "integer"}},
    }
    doc = {
        "components": {"schemas": {"ThingPage": page}},
        "paths": {
            "/api/v1/things": {
                "get": {
                    "operationId": "listThings",
                    "responses": {"200": {"content": {"application/json": {"schema": {"type": "array"}}}}},
                }
            },
            "/api/v1/pages": {
                "get": {
                    "operationId": "listPages",
                    "responses": {
                        "200": {
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/ThingPage"}}
                            }
                        }
                    },
                }
            },
        },
    }
    answers = list(_answers(doc))
    assert [_resolve(doc, s).get("type") for _n, _o, s in answers] == ["array", "object"]
    found = [node for _n, _o, s in answers for _w, node in _reachable(doc, s) if _is_page_shaped(node)]
    assert found == [page] and "members ['items', 'total'], not" in _page_problems(page)[0]
