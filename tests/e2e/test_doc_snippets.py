"""Every shell block of README.md and docs/*.md runs as written against a fresh platform.

Each ```sh / ```bash block is preceded by a marker saying what to do with it:

    <!-- snippet: run expect=200,422 -->     run it; its curl calls answer these statuses, in order
                                             (``200+``: one or more, for a loop that polls)
    <!-- snippet: skip (why) -->             not runnable here (a Kubernetes cluster, `make run` itself)

A block without a marker fails the test, so a new snippet is either run or says why not.
The blocks of one file run in order in one bash process (``set -euo pipefail``: a
variable nothing set, a failed command, a failed pipe stops it), from a folder where
``var`` is the platform's data folder and ``examples``, ``deploy``, ``.venv`` are the repository's,
as after ``make run`` in a clone. The one rewrite: the snippets' ``127.0.0.1:8000`` and
SFTP port 2222 become this platform's, which runs on free ports beside anyone's
``make run``.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hdhub.common.config import DEFAULT_GRPC_PORTS, SERVICES
from tests.e2e.conftest import ROOT, Platform, base_env, hdhub_process
from tests.support.stack import free_port

pytestmark = pytest.mark.e2e

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\s*$")
MARKER = re.compile(r"^<!--\s*snippet:\s*(run|skip)\b(.*?)-->\s*$")
SHELLS = {"sh", "bash", "shell", "console"}
STATUS_LINE = re.compile(r"^@@status (\d+) (\d{3})$")
# curl's -w with %{stderr} writes the status line to stderr, whatever the snippet does with
# stdout (a token read into a variable, -o to a file).
PRELUDE = """set -euo pipefail
curl() { command curl -w "%{stderr}@@status ${SNIPPET} %{http_code}\\n" "$@"; }
"""


@dataclass
class Snippet:
    path: Path
    line: int  # of the opening fence
    language: str
    action: str | None  # run, skip or None (no marker)
    argument: str
    code: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def expected(self) -> str:
        found = re.search(r"expect=([\d,+]+)", self.argument)
        return found.group(1) if found else ""

    def answered_as_expected(self, statuses: list[int]) -> bool:
        tokens = self.expected.split(",") if self.expected else []
        pattern = "".join(f"(?:{t[:-1]} )+" if t.endswith("+") else f"{t} " for t in tokens)
        return re.fullmatch(pattern, "".join(f"{s} " for s in statuses)) is not None


def snippets(path: Path) -> list[Snippet]:
    """The shell blocks of one Markdown file, with the marker on the line before each."""
    found: list[Snippet] = []
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        language = opening.group(1)
        if language in SHELLS:
            previous = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            marker = MARKER.match(previous.strip())
            found.append(
                Snippet(
                    path,
                    i + 1,
                    language,
                    marker.group(1) if marker else None,
                    marker.group(2).strip() if marker else "",
                    "\n".join(lines[i + 1 : end]),
                )
            )
        i = end + 1
    return found


def test_every_shell_block_says_whether_it_runs() -> None:
    unmarked = [s.where for path in DOCS for s in snippets(path) if s.action is None]
    assert not unmarked, f"shell blocks without a <!-- snippet: run|skip --> marker: {unmarked}"
    skipped_silently = [
        s.where for path in DOCS for s in snippets(path) if s.action == "skip" and not s.argument
    ]
    assert not skipped_silently, f"skipped without saying why: {skipped_silently}"


def rewrite(code: str, platform: Platform, sftp_port: str) -> str:
    return code.replace("http://127.0.0.1:8000", platform.base_url).replace("-P 2222", f"-P {sftp_port}")


def workdir(tmp: Path, platform: Platform) -> Path:
    """A folder that looks like a clone after `make run`: var/, examples/, deploy/, .venv/."""
    work = tmp / "clone"
    work.mkdir(exist_ok=True)
    for name, target in (
        ("var", platform.data_dir),
        ("examples", ROOT / "examples"),
        ("deploy", ROOT / "deploy"),
        (".venv", ROOT / ".venv"),
    ):
        link = work / name
        if not link.exists():
            link.symlink_to(target)
    return work


def run_file(path: Path, platform: Platform, work: Path, sftp_port: str) -> None:
    runnable = [s for s in snippets(path) if s.action == "run"]
    if not runnable:
        return
    script = PRELUDE + "\n".join(
        f"SNIPPET={n}\n{rewrite(s.code, platform, sftp_port)}" for n, s in enumerate(runnable)
    )
    done = subprocess.run(
        ["bash", "-c", script], cwd=work, capture_output=True, text=True, timeout=300, check=False
    )
    statuses: dict[int, list[int]] = {n: [] for n in range(len(runnable))}
    other_stderr = []
    for line in done.stderr.splitlines():
        status = STATUS_LINE.match(line)
        if status:
            statuses[int(status.group(1))].append(int(status.group(2)))
        else:
            other_stderr.append(line)
    report = f"stdout:\n{done.stdout[-3000:]}\nstderr:\n" + "\n".join(other_stderr[-40:])
    assert done.returncode == 0, f"{path.name}: bash exited {done.returncode}\n{report}"
    for n, snippet in enumerate(runnable):
        assert snippet.answered_as_expected(statuses[n]), (
            f"{snippet.where}: curl answered {statuses[n]}, the marker expects {snippet.expected}\n{report}"
        )


@dataclass
class Fresh:
    platform: Platform
    work: Path
    sftp_port: str
    env: dict[str, str]


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fresh]:
    """A platform of its own on a fresh var/, as a newcomer's first `make run`."""
    tmp = tmp_path_factory.mktemp("snippets")
    env = base_env(tmp)
    port, log = free_port(), tmp / "hdhub.log"
    with hdhub_process(["run", "all", "--port", str(port)], env, log, port=port):
        platform = Platform(f"http://127.0.0.1:{port}", log, tmp / "var")
        yield Fresh(platform, workdir(tmp, platform), env["HDHUB_INTAKE_SFTP_PORT"], env)


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_snippets_run_as_written(path: Path, fresh: Fresh) -> None:
    run_file(path, fresh.platform, fresh.work, fresh.sftp_port)


def readme_grpc_ports() -> dict[str, int]:
    """README's "gRPC, one server per service" row: ``identity 50061, registrations 50062, ...``."""
    row = next(line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("| gRPC"))
    return {name: int(port) for name, port in re.findall(r"([a-z]+) (\d{5})", row)}


async def reflected_services(target: str) -> list[str] | None:
    """The services a gRPC server lists by reflection; None when nothing listens there."""
    import grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    async with grpc.aio.insecure_channel(target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        try:
            async for answer in stub.ServerReflectionInfo(iter([request]), timeout=5):
                return [s.name for s in answer.list_services_response.service]
        except grpc.aio.AioRpcError as exc:
            if exc.code() is grpc.StatusCode.UNAVAILABLE:
                return None
            raise
    return []


async def test_the_grpc_ports_readme_lists_answer_with_reflection(fresh: Fresh) -> None:
    listed = readme_grpc_ports()
    assert listed, "README lists no gRPC ports"
    # Each service's server, on this platform's port for it (`make run`: the default port).
    answers = {name: await reflected_services(fresh.env[f"HDHUB_GRPC_{name.upper()}"]) for name in SERVICES}
    serving = {name for name, services in answers.items() if services is not None}
    assert set(listed) == serving, f"README lists {sorted(listed)}; serving gRPC: {sorted(serving)}"
    for name, port in listed.items():
        assert DEFAULT_GRPC_PORTS[name] == port, (
            f"{name}: `make run` binds {DEFAULT_GRPC_PORTS[name]}, README says {port}"
        )
        assert any(n.startswith(f"hdhub.{name}.v1.") for n in answers[name] or []), (name, answers[name])
