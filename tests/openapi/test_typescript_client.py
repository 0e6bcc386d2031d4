"""Issue 14: a hospital system's day in TypeScript (tests/openapi/typescript/hospital-day.mts),
written against the types openapi-typescript generates from the OpenAPI document and called
through openapi-fetch: type-checked by tsc (strict), then run with node against the running
platform, types generated from the document it serves, so the types are proven against real
answers. ``make test`` installs the tools (``make openapi-lint-tools``); the tests skip only
where node or npm is missing."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from tests.support.samples import record
from tests.support.stack import Stack, free_port

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "openapi" / "typescript"
TOOLS = ROOT / "tools" / "openapi-lint"
BIN = TOOLS / "node_modules" / ".bin"
HIS, SECRET = "az-demo-his", "demo-his-secret"


@pytest.fixture(scope="module")
def tools() -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node or npm is not installed: the TypeScript client cannot be built")
    if not all((BIN / tool).exists() for tool in ("openapi-typescript", "tsc")):
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--prefer-offline"], cwd=TOOLS, check=True)
    return BIN


def _project(into: Path) -> Path:
    """The script and its tsconfig in a folder of their own, the tools' packages beside them."""
    into.mkdir()
    for name in ("hospital-day.mts", "tsconfig.json"):
        shutil.copy(SCRIPT / name, into / name)
    (into / "node_modules").symlink_to(TOOLS / "node_modules", target_is_directory=True)
    return into


async def _run(*command: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    """``command``'s output; fails the test with it when the command fails. Asynchronous:
    the platform it may call answers from this event loop."""
    process = await asyncio.create_subprocess_exec(
        *map(str, command),
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    text = out.decode(errors="replace")
    assert process.returncode == 0, f"{Path(command[0]).name}: {text[-6000:]}"
    return text


@asynccontextmanager
async def served(stack: Stack) -> AsyncIterator[str]:
    """The in-process platform on a loopback port, for a client outside this process."""
    import uvicorn

    app = stack.client._transport.app  # type: ignore[attr-defined]
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            serving.result()  # it could not start: say why
        await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving


@pytest.mark.timeout(300)
async def test_the_hospital_day_type_checks_strict_against_the_generated_types(
    tools: Path, openapi_documents: Path, tmp_path: Path
) -> None:
    project = _project(tmp_path / "ts")
    await _run(tools / "openapi-typescript", openapi_documents / "all.json", "-o", "hdhub.ts", cwd=project)
    await _run(tools / "tsc", "--noEmit", "-p", ".", cwd=project)


@pytest.mark.timeout(300)
async def test_a_hospital_day_in_typescript_against_the_running_platform(
    tools: Path, stack: Stack, tmp_path: Path
) -> None:
    project = _project(tmp_path / "ts")
    async with served(stack) as url:
        # The types of the document this platform serves, then the script compiled against them.
        await _run(tools / "openapi-typescript", f"{url}/openapi.json", "-o", "hdhub.ts", cwd=project)
        await _run(tools / "tsc", "-p", ".", cwd=project)
        env = {
            "PATH": str(Path(shutil.which("node") or "node").parent),
            "HDHUB_URL": url,
            "HDHUB_CLIENT_ID": HIS,
            "HDHUB_CLIENT_SECRET": SECRET,
            "HDHUB_RECORD": json.dumps(record()),
        }
        out = await _run("node", project / "out" / "hospital-day.mjs", cwd=project, env=env)
    assert "hospital day: ok" in out, out
