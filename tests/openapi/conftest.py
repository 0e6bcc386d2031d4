"""Every service's OpenAPI document, written once per session (tools/openapi_documents.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def openapi_documents(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("openapi")
    # None of the session stack's HDHUB_* settings: the documents are the defaults' own.
    env = {k: v for k, v in os.environ.items() if not k.startswith("HDHUB_")}
    script = str(ROOT / "tools" / "openapi_documents.py")
    subprocess.run([sys.executable, script, str(out)], check=True, cwd=ROOT, env=env)
    return out
