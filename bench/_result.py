"""The machine-readable end of a bench run, read by ``bench/check.py`` (``make bench-check``).

A bench calls :func:`result` once, last: it prints the load average and one line
``RESULT {"ratio name": value, ...}`` (JSON). Each ratio is hdhub against a baseline
measured in the same run, never an absolute time.
"""

from __future__ import annotations

import json
import math
import os

PREFIX = "RESULT "


def load_average() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def result(ratios: dict[str, float]) -> None:
    clean = {name: round(float(v), 4) for name, v in ratios.items() if math.isfinite(float(v))}
    print(f"load average at the end: {load_average()}")
    print(PREFIX + json.dumps(clean, sort_keys=True), flush=True)
