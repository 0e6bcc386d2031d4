"""bench/check.py's comparison (``make bench-check``): pure logic, nothing timed."""

from __future__ import annotations

import datetime
import importlib.util
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "bench" / "check.py"
_spec = importlib.util.spec_from_file_location("bench_check", _PATH)
assert _spec is not None and _spec.loader is not None
check = importlib.util.module_from_spec(_spec)
sys.modules["bench_check"] = check
_spec.loader.exec_module(check)


def entry(value: float, noise: float, better: str) -> dict[str, object]:
    return {"value": value, "noise": noise, "better": better}


def test_lower_is_better_fails_only_beyond_the_noise() -> None:
    recorded = {"x_over_copy": entry(4.0, 0.5, "lower")}
    within = check.compare("b", recorded, {"x_over_copy": 4.5})
    beyond = check.compare("b", recorded, {"x_over_copy": 4.51})
    better = check.compare("b", recorded, {"x_over_copy": 1.0})
    assert [v.worse for v in within + beyond + better] == [False, True, False]


def test_higher_is_better_fails_when_it_falls() -> None:
    recorded = {"rps_ratio": entry(0.5, 0.1, "higher")}
    assert not check.compare("b", recorded, {"rps_ratio": 0.4})[0].worse
    assert check.compare("b", recorded, {"rps_ratio": 0.39})[0].worse
    assert not check.compare("b", recorded, {"rps_ratio": 2.0})[0].worse


def test_the_band_is_never_below_five_percent() -> None:
    recorded = {"r": entry(10.0, 0.0, "lower")}
    assert not check.compare("b", recorded, {"r": 10.5})[0].worse
    assert check.compare("b", recorded, {"r": 10.51})[0].worse


def test_a_ratio_the_run_did_not_report_fails_and_a_new_one_does_not() -> None:
    verdicts = check.compare("b", {"old": entry(1.0, 0.1, "lower")}, {"new": 99.0})
    by_name = {v.ratio: v for v in verdicts}
    assert by_name["old"].worse and by_name["old"].value is None
    assert not by_name["new"].worse and by_name["new"].recorded is None


def test_recording_takes_the_median_and_the_spread() -> None:
    assert check.summarise([3.0, 1.0, 2.0, 10.0, 2.5]) == (2.5, 9.0)
    got = check.record_entry([2.0, 4.0, 3.0], "lower", [10.0, 14.0], datetime.date(2026, 12, 4))
    assert got == {
        "value": 3.0,
        "noise": 2.0,
        "better": "lower",
        "runs": [2.0, 4.0, 3.0],
        "date": "2026-12-04",
        "load_average": 12.0,
    }
    with pytest.raises(ValueError):
        check.summarise([])


def test_the_median_of_confirming_runs_decides() -> None:
    runs = [{"r": 9.0}, {"r": 4.0}, {"r": 4.2, "s": 1.0}]
    assert check.median_of_runs(runs) == {"r": 4.2, "s": 1.0}
    recorded = {"r": entry(4.0, 0.3, "lower")}
    assert check.compare("b", recorded, runs[0])[0].worse
    assert not check.compare("b", recorded, {"r": check.median_of_runs(runs)["r"]})[0].worse


def test_the_result_line_is_the_last_one() -> None:
    output = 'noise\nRESULT {"a": 1}\nmore\nRESULT {"a": 2.5, "b": 3}\ntrailing\n'
    assert check.parse_result(output) == {"a": 2.5, "b": 3.0}
    with pytest.raises(ValueError):
        check.parse_result("no result here\n")


def test_every_bench_in_bench_is_checked() -> None:
    files = {p.stem for p in _PATH.parent.glob("bench_*.py")}
    assert files == {b.name for b in check.BENCHES}
