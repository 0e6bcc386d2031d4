"""Alert rules run against the metrics hdhub exports: scrape ``/metrics`` at each step of a
:class:`~tests.support.clock.ManualClock`, turn the samples into promtool input series, and
have ``promtool test rules`` evaluate the chart's own PrometheusRule over them.

Time: promtool's time 0 is the clock's time at the first scrape; metrics that are Unix
times (``*_timestamp_seconds``) are shifted by the same amount, so ``time() - x`` in a rule
is what it was in the process. Between two scrapes a series keeps its value, one sample a
minute, as Prometheus scraping a process that did nothing in between would see it.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.deploy.manifests import by_kind, render
from tests.support.clock import ManualClock

NAMESPACE = "hdhub"
RESOLUTION = timedelta(minutes=1)


def promtool() -> str | None:
    return shutil.which("promtool")


def chart_rules(**thresholds: Any) -> list[dict[str, Any]]:
    """The rules of the chart's PrometheusRule (default thresholds unless given)."""
    values = {"monitoring": {"prometheusRules": {"enabled": True, **thresholds}}}
    (rule,) = by_kind(render(values), "PrometheusRule").values()
    return [r for g in rule["spec"]["groups"] for r in g["rules"]]


def _metric_names(expr: str) -> set[str]:
    return set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr))


def _series(name: str, labels: dict[str, str]) -> str:
    def quoted(value: str) -> str:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    inner = ",".join(f'{k}="{quoted(v)}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}"


@dataclass
class Timeline:
    """The samples of the metrics ``alerts`` read, scraped at steps of ``clock``."""

    clock: ManualClock
    alerts: tuple[str, ...]
    rules: list[dict[str, Any]] = field(default_factory=chart_rules)
    #: Only the series of these services (and those without a ``service`` label); None: all.
    services: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        self.rules = [r for r in self.rules if r["alert"] in self.alerts]
        assert {r["alert"] for r in self.rules} == set(self.alerts), "an alert the chart does not have"
        self.names = set().union(*(_metric_names(r["expr"]) for r in self.rules))
        self.origin = self.clock.now()
        self.samples: dict[str, dict[int, float]] = {}
        self.last_minute = -1

    def minute(self) -> int:
        """The clock's time since the first scrape, in whole minutes (promtool's time)."""
        elapsed = (self.clock.now() - self.origin) / RESOLUTION
        assert elapsed == int(elapsed), "steps must be whole minutes"
        return int(elapsed)

    def record(self, exposition: str) -> None:
        """One scrape, at the clock's current time."""
        at = self.minute()
        assert at > self.last_minute, "one scrape per step"
        self.last_minute = at
        origin = self.origin.timestamp()
        for family in text_string_to_metric_families(exposition):
            for sample in family.samples:
                if sample.name not in self.names or math.isnan(sample.value):
                    continue
                if (
                    self.services is not None
                    and sample.labels.get("service", self.services[0]) not in self.services
                ):
                    continue
                value = sample.value - origin if sample.name.endswith("_timestamp_seconds") else sample.value
                key = _series(sample.name, {**sample.labels, "namespace": NAMESPACE})
                self.samples.setdefault(key, {})[at] = value

    def _values(self, points: dict[int, float]) -> str:
        """promtool's expanding notation, a sample a minute: a value holds until the next
        scrape; before a series' first scrape, and after it vanished, it is missing."""
        scrapes = sorted({m for series in self.samples.values() for m in series})
        parts: list[str] = []
        for i, at in enumerate(scrapes):
            until = scrapes[i + 1] if i + 1 < len(scrapes) else at + 1
            held = until - at
            if at == scrapes[0] and at > 0:
                parts.append(f"_x{at}")
            value = points.get(at)
            parts.append(f"_x{held}" if value is None else f"{value!r}+0x{held - 1}")
        return " ".join(parts)

    def check(self, tmp_path: Path, expectations: list[tuple[int, str, list[dict[str, str]]]]) -> None:
        """Run the rules over the recorded series and assert, for each ``(minute, alert,
        firing)``, that exactly these alerts (their labels) fire at that minute."""
        tool = promtool()
        assert tool is not None
        rules = [
            {k: v for k, v in r.items() if k != "annotations"} for r in self.rules
        ]  # labels are asserted
        (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": [{"name": "hdhub", "rules": rules}]}))
        tests = {
            "rule_files": ["rules.yaml"],
            "evaluation_interval": "1m",
            "tests": [
                {
                    "interval": "1m",
                    "input_series": [
                        {"series": key, "values": self._values(points)}
                        for key, points in sorted(self.samples.items())
                    ],
                    "alert_rule_test": [
                        {
                            "eval_time": f"{minute}m",
                            "alertname": alert,
                            "exp_alerts": [{"exp_labels": labels} for labels in firing],
                        }
                        for minute, alert, firing in expectations
                    ],
                }
            ],
        }
        (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests, width=1_000_000))
        result = subprocess.run(
            [tool, "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
