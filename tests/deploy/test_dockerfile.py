"""The image's Dockerfile, read statically (no container engine here, and no hadolint):
the rules that matter for a non-root, read-only, reproducible image."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for ins in _instructions():
        if ins[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(ins)
    return stages


def _args() -> dict[str, str]:
    found = {}
    for word, rest in _instructions():
        if word == "ARG" and "=" in rest:
            key, _, value = rest.partition("=")
            found[key] = value
    return found


def test_every_base_image_is_pinned_to_python_3_11_slim_never_latest() -> None:
    args = _args()
    for stage in _stages():
        image = stage[0][1].split()[0]
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
        assert ":" in image, f"untagged base image {image}"
        assert not image.endswith(":latest"), image
        assert image.startswith("python:3.11-slim"), image


def test_the_final_stage_runs_as_uid_10001_and_starts_hdhub() -> None:
    final = _stages()[-1]
    users = [rest for word, rest in final if word == "USER"]
    assert users and users[-1].split(":")[0] == "10001"
    entrypoints = [rest for word, rest in final if word == "ENTRYPOINT"]
    assert entrypoints and json.loads(entrypoints[-1]) == ["hdhub"], "exec form, hdhub"
    cmd = [rest for word, rest in final if word == "CMD"]
    assert cmd and json.loads(cmd[-1])[0] == "run", "the command picks the service"


def test_only_tmp_is_writable_and_nothing_is_fetched_by_url() -> None:
    for word, rest in _instructions():
        assert word != "ADD", "COPY, not ADD (no URLs, no implicit unpacking)"
        if word == "RUN":
            assert not re.search(r"\b(curl|wget)\b", rest), rest
            assert "chmod 777" not in rest and "sudo" not in rest
    volumes = [json.loads(rest) for word, rest in _stages()[-1] if word == "VOLUME"]
    assert volumes == [["/tmp"]]


def test_dependencies_come_from_the_lock_and_the_whole_workspace_is_copied() -> None:
    runs = [rest for word, rest in _instructions() if word == "RUN" and "uv sync" in rest]
    assert runs and all("--frozen" in r and "--no-dev" in r and "--no-editable" in r for r in runs)
    copies = [rest for word, rest in _stages()[0] if word == "COPY"]
    assert ". ." in copies, "every workspace member, present and future, reaches the build"
    ignored = (ROOT / ".dockerignore").read_text().split()
    members = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["uv"]["workspace"]["members"]
    for member in members:
        assert member not in ignored and member.split("/")[0] not in ignored, member


def test_the_build_context_leaves_out_local_state_and_the_venv() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    for entry in (".git", ".venv", ".tools", "var"):
        assert entry in ignored
