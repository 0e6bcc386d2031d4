"""``make bench-check``: a short run of each bench, failing when a ratio got worse than its
recorded value by more than the noise measured for it.

    .venv/bin/python bench/check.py                   # check every bench against bench/baselines.json
    .venv/bin/python bench/check.py --only bench_export,bench_validation
    .venv/bin/python bench/check.py --record 5        # run each quick bench 5 times, record median and noise
    .venv/bin/python bench/check.py --list

Each bench runs in its quick mode (``--quick``: seconds to a minute) and ends with a line
``RESULT {"ratio": value, ...}`` (``bench/_result.py``); every ratio is hdhub against a
baseline measured in the same run, so the machine's speed cancels out, and each bench
already takes the best or the median of several rounds where it can. On a loaded machine
that is not enough, so a ratio found worse than its band is measured twice more and only
the median of the three fails the check.

``bench/baselines.json`` holds per bench and ratio: the recorded value (the median of
``--record N`` runs), the noise (the spread of those runs, max - min), which way is better,
the runs themselves, the date and the load average while recording. A ratio fails when it
is worse than ``value + band`` (``value - band`` when higher is better), where the band is
the measured noise, never less than :data:`MIN_BAND` of the value.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BASELINES = HERE / "baselines.json"
PREFIX = "RESULT "
#: The smallest band a ratio gets, as a fraction of its recorded value (five runs can agree by luck).
MIN_BAND = 0.05
#: Runs of a bench whose ratio looked worse (the first one included); their median decides.
CONFIRM_RUNS = 3
TIMEOUT = 900.0

LOWER, HIGHER = "lower", "higher"


@dataclass(frozen=True)
class Bench:
    name: str
    args: tuple[str, ...]
    #: ratio name -> which way is better
    ratios: Mapping[str, str]


BENCHES: tuple[Bench, ...] = (
    Bench(
        "bench_validation",
        ("--quick",),
        {
            "synthetic_over_read": LOWER,
            "angio_over_read": LOWER,
            "synthetic_columnar_over_arrow": LOWER,
            "angio_columnar_over_arrow": LOWER,
        },
    ),
    Bench(
        "bench_submissions",
        ("--quick",),
        {"rest_rps_over_baseline": HIGHER, "rest_cpu_over_baseline": LOWER},
    ),
    Bench(
        "bench_uploads",
        ("--quick",),
        {"upload_over_copy": LOWER, "upload_processes_over_copy": LOWER, "floor_over_copy": LOWER},
    ),
    Bench(
        "bench_export",
        ("--quick",),
        {"csv_over_copy": LOWER, "parquet_over_copy": LOWER, "xlsx_over_copy": LOWER},
    ),
    Bench("bench_pseudonymisation", ("--quick",), {"service_over_hmac": HIGHER}),
    Bench("bench_sftp", ("--quick",), {"hdhub_over_sftp_server": LOWER}),
    Bench("bench_file_to_central", ("--quick",), {"store_copy_over_hdhub": HIGHER}),
    Bench("bench_nippin", ("--quick",), {"messages_over_xmlschema": HIGHER, "report_over_sql": LOWER}),
    Bench(
        "bench_portal",
        ("--quick",),
        {
            "members_page_over_rest": LOWER,
            "members_search_page_over_rest": LOWER,
            "audit_page_over_rest": LOWER,
            "audit_filtered_page_over_rest": LOWER,
        },
    ),
    Bench(
        "bench_portal_validation",
        ("--quick",),
        {"portal_over_grpc_p50": LOWER, "live_over_grpc_p50": LOWER},
    ),
    Bench("bench_console", ("--quick",), {"page_over_aggregate_sql": LOWER, "page_over_tally_sql": LOWER}),
    Bench("bench_grid", ("--quick",), {"grpc_over_sql_p50": LOWER, "page_over_sql_p50": LOWER}),
    Bench("bench_gc", ("--quick",), {"settled_over_default": LOWER}),
)


# ----------------------------------------------------------------------------- comparison (pure)


@dataclass(frozen=True)
class Verdict:
    bench: str
    ratio: str
    value: float | None  # measured (None: the run did not report it)
    recorded: float | None  # None: nothing recorded yet
    band: float
    better: str

    @property
    def limit(self) -> float | None:
        if self.recorded is None:
            return None
        return self.recorded + self.band if self.better == LOWER else self.recorded - self.band

    @property
    def worse(self) -> bool:
        """Worse than the recorded value by more than the band (a missing value is worse)."""
        if self.recorded is None:
            return False
        if self.value is None:
            return True
        limit = self.limit
        assert limit is not None
        return self.value > limit if self.better == LOWER else self.value < limit

    def line(self) -> str:
        if self.recorded is None:
            return f"  {self.ratio:32} {self.value!s:>10}  (nothing recorded: not checked)"
        shown = "missing" if self.value is None else f"{self.value:.3f}"
        way = "<=" if self.better == LOWER else ">="
        status = "WORSE" if self.worse else "ok"
        return (
            f"  {self.ratio:32} {shown:>10}  recorded {self.recorded:.3f} ± {self.band:.3f} "
            f"(must be {way} {self.limit:.3f})  {status}"
        )


def band(entry: Mapping[str, Any]) -> float:
    """The tolerance of a recorded ratio: its measured noise, at least MIN_BAND of it."""
    return max(float(entry["noise"]), MIN_BAND * abs(float(entry["value"])))


def compare(
    bench: str, recorded: Mapping[str, Mapping[str, Any]], measured: Mapping[str, float]
) -> list[Verdict]:
    """A verdict per ratio, recorded or measured."""
    out = []
    for name in sorted(set(recorded) | set(measured)):
        entry = recorded.get(name)
        value = measured.get(name)
        if entry is None:
            out.append(Verdict(bench, name, value, None, 0.0, LOWER))
        else:
            out.append(Verdict(bench, name, value, float(entry["value"]), band(entry), str(entry["better"])))
    return out


def median_of_runs(runs: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Per ratio, the median over the runs that reported it."""
    names = {n for r in runs for n in r}
    return {n: statistics.median([r[n] for r in runs if n in r]) for n in names}


def summarise(values: Sequence[float]) -> tuple[float, float]:
    """The recorded value and noise of a ratio from repeated runs: median and spread (max - min)."""
    if not values:
        raise ValueError("no runs")
    return statistics.median(values), max(values) - min(values)


def parse_result(output: str) -> dict[str, float]:
    """The ratios of a bench's output: its last ``RESULT {...}`` line."""
    for line in reversed(output.splitlines()):
        if line.startswith(PREFIX):
            data = json.loads(line[len(PREFIX) :])
            return {str(k): float(v) for k, v in data.items()}
    raise ValueError("the bench printed no RESULT line")


def record_entry(
    values: Sequence[float], better: str, loads: Sequence[float], date: datetime.date
) -> dict[str, Any]:
    value, noise = summarise(values)
    return {
        "value": round(value, 4),
        "noise": round(noise, 4),
        "better": better,
        "runs": [round(v, 4) for v in values],
        "date": date.isoformat(),
        "load_average": round(statistics.mean(loads), 1) if loads else None,
    }


# ----------------------------------------------------------------------------- running


def run_bench(bench: Bench) -> tuple[dict[str, float] | None, float, float]:
    """Run the quick bench, its output shown as it comes; its ratios (None when it failed),
    the load average before it and its seconds."""
    load = os.getloadavg()[0]
    command = [sys.executable, str(HERE / f"{bench.name}.py"), *bench.args]
    print(f"--- {bench.name} {' '.join(bench.args)} (load average {load:.1f})", flush=True)
    started = time.perf_counter()
    lines: list[str] = []
    with subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    ) as process:
        assert process.stdout is not None
        try:
            for line in process.stdout:
                sys.stdout.write("    " + line)
                lines.append(line)
                if time.perf_counter() - started > TIMEOUT:
                    process.kill()
                    print(f"    (stopped after {TIMEOUT:.0f} s)")
                    break
        finally:
            code = process.wait()
    took = time.perf_counter() - started
    if code != 0:
        print(f"--- {bench.name} exited with {code}", flush=True)
        return None, load, took
    try:
        return parse_result("".join(lines)), load, took
    except ValueError as exc:
        print(f"--- {bench.name}: {exc}", flush=True)
        return None, load, took


def chosen(only: str | None) -> list[Bench]:
    if not only:
        return list(BENCHES)
    names = [n.strip() for n in only.split(",") if n.strip()]
    known = {b.name: b for b in BENCHES}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown bench: {', '.join(unknown)} (known: {', '.join(known)})")
    return [known[n] for n in names]


def load_baselines(path: Path = BASELINES) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def check(benches: Iterable[Bench], baselines: Mapping[str, Any]) -> int:
    failed: list[str] = []
    for bench in benches:
        recorded = {k: v for k, v in baselines.get(bench.name, {}).items() if isinstance(v, dict)}
        measured, _, took = run_bench(bench)
        if measured is None:
            failed.append(f"{bench.name}: the run failed")
            continue
        runs = [measured]
        verdicts = compare(bench.name, recorded, measured)
        if any(v.worse for v in verdicts):
            print(
                f"--- {bench.name}: a ratio looks worse; {CONFIRM_RUNS - 1} more runs, their median decides"
            )
            for _ in range(CONFIRM_RUNS - 1):
                again, _, _ = run_bench(bench)
                if again is not None:
                    runs.append(again)
            verdicts = compare(bench.name, recorded, median_of_runs(runs))
        print(f"--- {bench.name}: {took:.0f} s, median of {len(runs)} run(s)")
        for v in verdicts:
            print(v.line())
            if v.worse:
                failed.append(f"{bench.name}.{v.ratio}")
    print()
    if failed:
        print("bench-check FAILED: " + ", ".join(failed))
        return 1
    print("bench-check passed")
    return 0


def record(benches: Iterable[Bench], runs: int, path: Path = BASELINES) -> int:
    baselines = load_baselines(path)
    today = datetime.date.today()
    for bench in benches:
        results: list[dict[str, float]] = []
        loads: list[float] = []
        for n in range(runs):
            print(f"=== recording {bench.name}: run {n + 1} of {runs}", flush=True)
            measured, load, _ = run_bench(bench)
            if measured is None:
                print(f"=== {bench.name}: a run failed; nothing recorded for it")
                break
            results.append(measured)
            loads.append(load)
        else:
            entry = {
                name: record_entry([r[name] for r in results if name in r], better, loads, today)
                for name, better in bench.ratios.items()
                if any(name in r for r in results)
            }
            baselines[bench.name] = entry
            path.write_text(json.dumps(baselines, indent=2, sort_keys=True) + "\n")
            for name, e in entry.items():
                print(f"=== {bench.name}.{name}: {e['value']} ± {e['noise']} over {e['runs']}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="comma-separated bench names (default: all)")
    parser.add_argument("--record", type=int, metavar="N", help="run each bench N times and record")
    parser.add_argument("--list", action="store_true", help="list the benches and their ratios")
    args = parser.parse_args(argv)
    benches = chosen(args.only)
    if args.list:
        for b in benches:
            print(
                f"{b.name} {' '.join(b.args)}: "
                + ", ".join(f"{r} ({w} is better)" for r, w in b.ratios.items())
            )
        return 0
    if args.record:
        return record(benches, args.record)
    return check(benches, load_baselines())


if __name__ == "__main__":
    sys.exit(main())
