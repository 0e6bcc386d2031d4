"""The fuzz is a process of its own (see ``openapi_fuzz.py``), so it need not wait its turn:
it starts as soon as collection is done and runs beside the rest of the suite (most of
which waits on servers and browsers, not on the CPU); its test collects the outcome."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TEST = "tests/fuzz/test_openapi_fuzz.py"


class Fuzz:
    """``python -m tests.fuzz.openapi_fuzz`` running in the background, its output in a file
    (a pipe nobody reads would fill and stall it)."""

    def __init__(self) -> None:
        # None of this process's HDHUB_* settings: while the session's stack runs they name
        # its databases and ports, which the fuzz must not touch.
        env = {k: v for k, v in os.environ.items() if not k.startswith("HDHUB_")} | {"PYTHONPATH": str(ROOT)}
        self.output = tempfile.TemporaryFile(mode="w+", prefix="hdhub-fuzz-")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.fuzz.openapi_fuzz"],
            cwd=ROOT,
            env=env,
            stdout=self.output,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def outcome(self, timeout: float) -> tuple[int, str]:
        """The exit code and everything printed, once it has ended (killed after ``timeout``)."""
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            code = -9
        self.output.seek(0)
        return code, self.output.read()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.output.close()


BACKGROUND = pytest.StashKey[Fuzz]()


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.option.collectonly:
        return
    if any(item.nodeid.startswith(TEST) for item in session.items):
        session.config.stash[BACKGROUND] = Fuzz()


def pytest_unconfigure(config: pytest.Config) -> None:
    fuzz = config.stash.get(BACKGROUND, None)
    if fuzz is not None:
        fuzz.stop()
