"""Enketo's openrosa-xpath-evaluator, run by Node in one long-lived subprocess.

``tools/xpath-reference/evaluate.js`` reads one JSON request per line and answers one JSON
line; :class:`ReferenceEvaluator` keeps the process and sends it batches, so thousands of
expressions cost one process start. ``make xpath-reference`` installs the pinned packages
(``npm ci``); without npm the tests that need it skip.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[4]
TOOL = ROOT / "tools" / "xpath-reference"
SCRIPT = TOOL / "evaluate.js"


@dataclass(frozen=True, slots=True)
class ReferenceResult:
    """What the reference gave: ``kind`` is number, string, boolean, date, nodeset or error."""

    kind: str
    value: Any


def _number(value: object) -> float:
    if isinstance(value, str):
        return {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}[value]
    return float(value)  # type: ignore[arg-type]


def installed() -> str | None:
    """None when the reference can run, else why not (installing it when npm is there)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        return "node and npm are not installed: the reference evaluator cannot run"
    if not (TOOL / "node_modules" / "openrosa-xpath-evaluator").exists():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--prefer-offline"],
            cwd=TOOL,
            check=True,
            capture_output=True,
        )
    return None


class ReferenceEvaluator:
    """One Node process evaluating batches of expressions against an instance document."""

    def __init__(self) -> None:
        self._process = subprocess.Popen(
            ["node", str(SCRIPT)],
            cwd=TOOL,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )

    def evaluate(
        self,
        instance: str,
        expressions: Sequence[str],
        *,
        context: str | None = None,
        zone: str = "UTC",
        now_ms: int | None = None,
    ) -> list[ReferenceResult]:
        """Each expression's result, evaluated with ``context`` (an absolute path) as ``.``."""
        request = {
            "instance": instance,
            "context": context,
            "tz": zone,
            "now": now_ms,
            "expressions": list(expressions),
        }
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.write(json.dumps(request) + "\n")
        self._process.stdin.flush()
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError("the reference evaluator stopped")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"the reference evaluator refused the request: {answer['error']}")
        results = []
        for item in answer["results"]:
            kind, value = item["t"], item["v"]
            results.append(ReferenceResult(kind, _number(value) if kind == "number" else value))
        return results

    def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
