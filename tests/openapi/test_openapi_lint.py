"""Issue 14: every service's OpenAPI document (and the combined one of ``hdhub run all``)
lints with 0 errors under Redocly (recommended) and Spectral (oas plus hdhub's rules in
tools/openapi-lint/.spectral.yaml: short unique operationIds, global security, no
``authorization`` parameter, problem+json on every 4xx). ``make test`` installs both
(``make openapi-lint-tools``); the test skips only where npm itself is missing."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT = ROOT / "tools" / "openapi-lint"
BIN = LINT / "node_modules" / ".bin"
DOCUMENTS = ("all", "registrations", "uploads", "intake", "portal", "sim", "identity", "nippin")


@pytest.fixture(scope="module")
def tools() -> Path:
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed: Redocly and Spectral cannot run")
    if not (BIN / "redocly").exists() or not (BIN / "spectral").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--prefer-offline"], cwd=LINT, check=True)
    return BIN


@pytest.mark.timeout(300)
def test_redocly_has_no_errors(tools: Path, openapi_documents: Path) -> None:
    files = [str(openapi_documents / f"{name}.json") for name in DOCUMENTS]
    run = subprocess.run(
        [str(tools / "redocly"), "lint", "--config", "redocly.yaml", "--format", "stylish", *files],
        cwd=LINT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:]


@pytest.mark.timeout(300)
def test_spectral_has_no_errors(tools: Path, openapi_documents: Path) -> None:
    files = [str(openapi_documents / f"{name}.json") for name in DOCUMENTS]
    results = openapi_documents / "spectral.json"
    run = subprocess.run(
        [str(tools / "spectral"), "lint", "--ruleset", ".spectral.yaml", "--fail-severity", "error"]
        + ["--format", "json", "--output", str(results), *files],
        cwd=LINT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert results.exists(), run.stdout[-3000:] + run.stderr[-3000:]
    found = json.loads(results.read_text() or "[]")
    errors = [
        f"{r['source']}: {r['code']} {'.'.join(map(str, r['path']))}: {r['message']}"
        for r in found
        if r["severity"] == 0
    ]
    assert not errors, "\n".join(errors[:50])
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]


def test_a_generator_finds_what_it_needs(openapi_documents: Path) -> None:
    """The properties the lint rules cannot see: servers, the schemes, no FastAPI 422."""
    doc = json.loads((openapi_documents / "all.json").read_text())
    assert doc["servers"] and doc["security"] == [{"oidc": []}]
    schemes = doc["components"]["securitySchemes"]
    assert "clientCredentials" in schemes["oidc"]["flows"]
    text = json.dumps(doc)
    assert "HTTPValidationError" not in text
    ops = {o["operationId"]: o for p in doc["paths"].values() for o in p.values()}
    assert {"listRegistrations", "submitV2Payload", "getToken", "createUpload"} <= set(ops)
    assert ops["getToken"]["security"] == []  # the form carries the client's credentials
    assert "access_token" in json.dumps(ops["getToken"]["responses"]["200"])
    for op_id, op in ops.items():
        names = [p.get("name", p.get("$ref", "")).lower() for p in op.get("parameters", [])]
        assert "authorization" not in names, op_id
        assert any("acceptlanguage" in n or n == "accept-language" for n in names), op_id


def test_response_headers_are_declared(openapi_documents: Path) -> None:
    doc = json.loads((openapi_documents / "all.json").read_text())
    ops = {o["operationId"]: o for p in doc["paths"].values() for o in p.values()}
    assert set(ops["submitV2Payload"]["responses"]["202"]["headers"]) == {"Location", "Idempotent-Replayed"}
    assert "ETag" in ops["getRegistration"]["responses"]["200"]["headers"]
    assert "ETag" in ops["updateRegistration"]["responses"]["200"]["headers"]
    assert set(doc["components"]["headers"]) == {"ETag", "Location", "Idempotent-Replayed"}
    report = ops["getUploadReport"]["responses"]["200"]["content"]["text/csv"]["schema"]
    assert report["type"] == "string"
