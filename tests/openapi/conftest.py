"""Every service's OpenAPI document, written once per session (tools/openapi_documents.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def openapi_documents(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("openapi")
    subprocess.run(
        [sys.executable, str(ROOT / "tools" / "openapi_documents.py"), str(out)], check=True, cwd=ROOT
    )
    return out
