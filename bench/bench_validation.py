"""Validation engine throughput: the row engine and the columnar engine, against merely
reading the same CSV.

Builds a realistic 100-field DCD (texts, SSIN, integers and decimals with number formats,
dates, times, code lists with a choice filter, multi-selects, skip logic on fields and a
group, a counted repeat, calculations, defaults), writes 20,000 CSV rows (about 5% with
an error), then times:

- baseline: ``csv.DictReader`` over the rows plus ``str.strip()`` on every value;
- engine:   the same ``csv.DictReader`` plus ``CompiledDcd.validate_many`` (the row engine);
- arrow baseline: ``pyarrow.csv`` reading the same text into a table of text columns;
- columnar: the same read plus ``ColumnarDcd.validate_table`` over batches of
  ``--batch-rows`` rows (2,000: the Upload Center's batch), as ``ValidateBatch`` runs it.

It prints rows/s, microseconds per row, each engine against its baseline, and the
columnar engine against the row engine, with the load average. When the shipped
ANGIO_HOSP_FFR_PCI workbook and its sample record are there, it measures that DCD too:
its valid sample repeated, and varied rows (patients, dates, measures, counts of PCIs,
~3% with a mistake).

    .venv/bin/python bench/bench_validation.py [--rows 20000] [--batch-rows 2000]
"""

from __future__ import annotations

import argparse
import csv
import datetime
import importlib.util
import io
import os
import random
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
from openpyxl import Workbook

from hdhub.common.ssin import ssin_check_number
from hdhub.registrations.engine.columnar import columnar
from hdhub.registrations.engine.dcd import DcdDefinition, FieldType
from hdhub.registrations.engine.validation import CompiledDcd, compile_dcd
from hdhub.registrations.engine.xlsform import read_workbook

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "services" / "registrations" / "dcds" / "samples.py"
TODAY = datetime.date(2026, 6, 1)


# --------------------------------------------------------------------------- the synthetic DCD


def _workbook(
    survey: list[dict[str, object]], choices: list[dict[str, object]], hd: dict[str, object]
) -> bytes:
    book = Workbook()
    book.remove(book.active)
    settings = [{"form_title": "Bench", "form_id": "BENCH_100", "version": "1.0.0", "default_language": "en"}]
    for title, rows in (
        ("survey", survey),
        ("choices", choices),
        ("settings", settings),
        ("hd", [{"key": k, "value": v} for k, v in hd.items()]),
    ):
        sheet = book.create_sheet(title)
        headers: list[str] = []
        for row in rows:
            headers.extend(k for k in row if k not in headers)
        sheet.append(headers)
        for row in rows:
            sheet.append([row.get(h) for h in headers])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def synthetic_definition() -> DcdDefinition:
    survey: list[dict[str, object]] = []
    choices: list[dict[str, object]] = []

    def codes(name: str, count: int, **extra: Callable[[int], str]) -> None:
        for i in range(count):
            row: dict[str, object] = {"list_name": name, "name": f"C{i:02d}", "label::en": f"{name} {i}"}
            row.update({k: f(i) for k, f in extra.items()})
            choices.append(row)

    codes("yes_no", 2)
    choices[-2]["name"], choices[-1]["name"] = "yes", "no"
    codes("sex", 3)
    codes("region", 3)
    codes("hospital", 60, region=lambda i: f"C{i % 3:02d}")
    codes("device", 20)
    codes("risk", 8)
    codes("generic", 12)

    def q(kind: str, name: str, **columns: object) -> None:
        survey.append(
            {"type": kind, "name": name, "label::en": name, "label::fr": name, "label::nl": name, **columns}
        )

    survey.append({"type": "begin_group", "name": "patient", "label::en": "Patient"})
    q("text", "IDC_PAT", **{"hd::format": "ssin", "hd::personal_data": "yes"})
    q("text", "TX_PAT_LAST_NAME", relevant="${IDC_PAT} = ''", required="yes", **{"hd::personal_data": "yes"})
    q("text", "TX_PAT_FIRST_NAME", relevant="${IDC_PAT} = ''", required="yes", **{"hd::personal_data": "yes"})
    q("date", "DT_PAT_DOB", required="yes", constraint=". <= today()", **{"hd::personal_data": "yes"})
    q("select_one sex", "CD_PAT_SEX", required="yes")
    survey.append({"type": "end_group"})
    q("select_one region", "CD_REGION", required="yes")
    q("select_one hospital", "CD_HOSP", required="yes", choice_filter="region = ${CD_REGION}")
    q("date", "DT_ADM", required="yes", constraint=". >= ${DT_PAT_DOB} and . <= today()")
    q("time", "TM_ADM", required="yes")
    q("date", "DT_DISCH", required="yes", constraint=". >= ${DT_ADM}")
    q("calculate", "MS_LOS", calculation="${DT_DISCH} - ${DT_ADM}")
    q("calculate", "MS_AGE_ADM", calculation="int((${DT_ADM} - ${DT_PAT_DOB}) div 365.25)")
    q("decimal", "MS_WEIGHT", required="yes", constraint=". > 0 and . < 400", **{"hd::number_format": "3.1"})
    q("integer", "MS_HEIGHT", required="yes", constraint=". >= 30 and . <= 250", **{"hd::number_format": "3"})
    q(
        "calculate",
        "MS_BMI",
        calculation="round(${MS_WEIGHT} div ((${MS_HEIGHT} div 100) * (${MS_HEIGHT} div 100)), 1)",
    )
    q("select_multiple risk", "CD_RISK")
    survey.append({"type": "begin_group", "name": "smoking", "relevant": "selected(${CD_RISK}, 'C01')"})
    q("integer", "NB_CIG_DAY", required="yes", **{"hd::number_format": "3"})
    q("date", "DT_SMOKE_START")
    survey.append({"type": "end_group"})
    q("select_one yes_no", "CD_CABG", default="no")
    # Plain clinical variables, as most of a real DCD is.
    for i in range(17):
        q(
            "text",
            f"TX_CLIN_{i:02d}",
            required="yes" if i % 3 == 0 else None,
            constraint="string-length(.) <= 200" if i % 4 == 0 else None,
        )
    for i in range(13):
        q("integer", f"MS_CLIN_{i:02d}", required="yes" if i % 2 == 0 else None, **{"hd::number_format": "4"})
    for i in range(8):
        q("decimal", f"MS_LAB_{i:02d}", **{"hd::number_format": "4.2"})
    for i in range(8):
        q("date", f"DT_EVENT_{i:02d}", constraint=". >= ${DT_ADM}" if i % 2 == 0 else None)
    for i in range(3):
        q("time", f"TM_EVENT_{i:02d}")
    for i in range(16):
        q("select_one generic", f"CD_CLIN_{i:02d}", required="yes" if i % 2 == 0 else None)
    for i in range(4):
        q("select_multiple generic", f"CD_MULTI_{i:02d}")
    q("select_one yes_no", "CD_COMPLIC", required="yes")
    q("text", "TX_COMPLIC", relevant="${CD_COMPLIC} = 'yes'", required="yes")
    q("integer", "NB_PCI", required="yes", constraint=". >= 0 and . <= 3")
    survey.append({"type": "begin_repeat", "name": "pci", "repeat_count": "${NB_PCI}", "hd::repeat_max": 3})
    q("date", "DT_PCI", required="yes", constraint=". >= ${DT_ADM}")
    q("select_one device", "CD_DEVICE", required="yes")
    q("decimal", "MS_DIAMETER", **{"hd::number_format": "1.2"})
    survey.append({"type": "end_repeat"})
    hd = {
        "project_code": "HDBP0999",
        "project_abbreviation": "BENCH",
        "dcd_code": "BENCH_100",
        "dcd_number": 999,
        "business_key": "IDC_PAT,DT_ADM",
    }
    return read_workbook(_workbook(survey, choices, hd))


def _ssin(rng: random.Random, birth: datetime.date) -> str:
    first_nine = f"{birth:%y%m%d}{rng.randint(1, 997):03d}"
    check = ssin_check_number(first_nine, born_2000_or_later=birth.year >= 2000)
    return f"{first_nine[:2]}.{first_nine[2:4]}.{first_nine[4:6]}-{first_nine[6:]}.{check:02d}"


def synthetic_rows(definition: DcdDefinition, count: int, seed: int = 7) -> list[dict[str, str]]:
    rng = random.Random(seed)
    names = definition.flat_field_names()
    rows: list[dict[str, str]] = []
    for n in range(count):
        dob = datetime.date(1930, 1, 1) + datetime.timedelta(days=rng.randint(0, 30000))
        adm = datetime.date(2024, 1, 1) + datetime.timedelta(days=rng.randint(0, 700))
        row = dict.fromkeys(names, "")
        row.update(
            {
                "IDC_PAT": _ssin(rng, dob),
                "DT_PAT_DOB": f"{dob:%d/%m/%Y}",
                "CD_PAT_SEX": rng.choice(["C00", "C01"]),
                "CD_REGION": "C01",
                "CD_HOSP": f"C{3 * rng.randint(0, 19) + 1:02d}",
                "DT_ADM": f"{adm:%d/%m/%Y}",
                "TM_ADM": f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}",
                "DT_DISCH": f"{adm + datetime.timedelta(days=rng.randint(0, 20)):%d/%m/%Y}",
                "MS_WEIGHT": f"{rng.uniform(40, 140):.1f}",
                "MS_HEIGHT": str(rng.randint(140, 200)),
                "CD_RISK": "|".join(sorted(rng.sample(["C00", "C01", "C02", "C03"], rng.randint(0, 3)))),
                "CD_COMPLIC": rng.choice(["yes", "no"]),
                "NB_PCI": str(rng.randint(0, 3)),
            }
        )
        if "C01" in row["CD_RISK"]:
            row["NB_CIG_DAY"] = str(rng.randint(1, 40))
        if row["CD_COMPLIC"] == "yes":
            row["TX_COMPLIC"] = "bleeding at the puncture site"
        for i in range(17):
            row[f"TX_CLIN_{i:02d}"] = rng.choice(["none", "stable angina", "NSTEMI", "see discharge letter"])
        for i in range(13):
            row[f"MS_CLIN_{i:02d}"] = str(rng.randint(0, 9999))
        for i in range(8):
            row[f"MS_LAB_{i:02d}"] = f"{rng.uniform(0, 999):.2f}"
            row[f"DT_EVENT_{i:02d}"] = f"{adm + datetime.timedelta(days=rng.randint(0, 5)):%d/%m/%Y}"
        for i in range(3):
            row[f"TM_EVENT_{i:02d}"] = f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}"
        for i in range(16):
            row[f"CD_CLIN_{i:02d}"] = f"C{rng.randint(0, 11):02d}"
        for i in range(4):
            row[f"CD_MULTI_{i:02d}"] = "|".join(f"C{c:02d}" for c in sorted(rng.sample(range(12), 2)))
        for i in range(1, int(row["NB_PCI"]) + 1):
            row[f"DT_PCI_{i}"] = row["DT_ADM"]
            row[f"CD_DEVICE_{i}"] = f"C{rng.randint(0, 19):02d}"
            row[f"MS_DIAMETER_{i}"] = f"{rng.uniform(2, 4):.2f}"
        if n % 20 == 0:  # about 5% of rows carry one mistake
            mistake = rng.choice(["DT_ADM", "CD_PAT_SEX", "MS_WEIGHT", "IDC_PAT", "MS_HEIGHT"])
            row[mistake] = {
                "DT_ADM": "31/02/2024",
                "CD_PAT_SEX": "X",
                "MS_WEIGHT": "80,5",
                "IDC_PAT": "85040216933",
                "MS_HEIGHT": "",
            }[mistake]
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- the shipped DCD


def shipped_case(count: int, *, varied: bool = False) -> tuple[str, CompiledDcd, list[dict[str, str]]] | None:
    if not SAMPLES.exists():
        return None
    spec = importlib.util.spec_from_file_location("bench_dcd_samples", SAMPLES)
    if spec is None or spec.loader is None:
        return None
    samples = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = samples
    spec.loader.exec_module(samples)
    code = "ANGIO_HOSP_FFR_PCI"
    if code not in getattr(samples, "VALID", {}):
        return None
    definition = read_workbook(samples.workbook_path(code))
    template = {name: "" for name in definition.flat_field_names() if not _computed(definition, name)}
    template.update({k: str(v) for k, v in samples.VALID[code].items()})
    rows = [dict(template) for _ in range(count)]
    if varied:
        rng = random.Random(11)
        for n, row in enumerate(rows):
            _vary_angio(rng, n, row)
    return code, compile_dcd(definition), rows


def _vary_angio(rng: random.Random, n: int, row: dict[str, str]) -> None:
    """A different patient, stay and measures per row; one row in 33 with a mistake."""
    dob = datetime.date(1930, 1, 1) + datetime.timedelta(days=rng.randint(0, 25_000))
    first_nine = f"{dob:%y%m%d}{rng.randint(1, 997):03d}"
    check = ssin_check_number(first_nine, born_2000_or_later=dob.year >= 2000)
    hosp = datetime.date(2025, 1, 1) + datetime.timedelta(days=rng.randint(0, 300))
    disch = hosp + datetime.timedelta(days=rng.randint(0, 10))
    row.update(
        {
            "IDC_PAT": f"{first_nine}{check:02d}",
            "DT_PAT_DOB": f"{dob:%d/%m/%Y}",
            "CD_PAT_SEX": rng.choice(["M", "F"]),
            "DT_HOSPZ": f"{hosp:%d/%m/%Y}",
            "DT_DISCH": f"{disch:%d/%m/%Y}",
            "MS_HEIGHT": str(rng.randint(150, 199)),
            "MS_WEIGHT": f"{rng.uniform(50, 120):.1f}",
            "MS_LVEF": str(rng.randint(20, 70)),
            "MS_CREAT": f"{rng.uniform(0.5, 3):.2f}",
            "DT_FFR_1": f"{hosp:%d/%m/%Y}",
            "MS_FFR_1": f"{rng.uniform(0.6, 0.95):.2f}",
            "DT_PCI_1": f"{hosp:%d/%m/%Y}",
            "TM_PCI_1": f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}",
            "MS_CONTRAST_1": f"{rng.randint(50, 400)}.0",
        }
    )
    if rng.random() < 0.3:  # a second PCI
        row.update(
            {
                k.replace("_1", "_2"): v
                for k, v in row.items()
                if k.endswith("_1")
                and "PCI" in k
                or k
                in (
                    "CD_PCI_URGENCY_1",
                    "CD_ACCESS_SITE_1",
                    "CD_VESSELS_1",
                    "CD_DEVICE_CAT_1",
                    "CD_STENT_TYPE_1",
                    "MS_NB_STENT_1",
                    "MS_CONTRAST_1",
                    "CD_PCI_RESULT_1",
                    "CD_PCI_COMPL_1",
                )
            }
        )
        row["MS_NB_PCI"] = "2"
    if n % 33 == 5:
        row[rng.choice(["MS_HEIGHT", "DT_DISCH", "CD_PAT_SEX"])] = rng.choice(["tall", "31/02/2025", "X"])


def _computed(definition: DcdDefinition, flat_name: str) -> bool:
    field, _ = definition.resolve_flat_name(flat_name)
    return field.type is FieldType.CALCULATE or field.read_only


# --------------------------------------------------------------------------- timing


def to_csv(rows: list[dict[str, str]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), delimiter=";")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def baseline(text: str) -> int:
    count = 0
    for row in csv.DictReader(io.StringIO(text), delimiter=";"):
        {k: v.strip() for k, v in row.items()}
        count += 1
    return count


def engine(compiled: CompiledDcd, text: str) -> tuple[int, int]:
    results = compiled.validate_many(csv.DictReader(io.StringIO(text), delimiter=";"), today=TODAY)
    return len(results), sum(1 for r in results if r.ok)


def best_of(runs: int, *works: Callable[[], Any]) -> list[float]:
    """The best CPU time of each piece of work, run in turns.

    CPU time of this process, not wall time: on a shared machine the wall clock also
    counts the time other processes held the CPU.
    """
    best = [float("inf")] * len(works)
    for _ in range(runs):
        for i, work in enumerate(works):
            start = time.process_time()
            work()
            best[i] = min(best[i], time.process_time() - start)
    return best


def arrow_baseline(text: str) -> pa.Table:
    options = pacsv.ParseOptions(delimiter=";")
    header = text.split("\n", 1)[0].strip().split(";")
    convert = pacsv.ConvertOptions(column_types=dict.fromkeys(header, pa.string()))
    return pacsv.read_csv(io.BytesIO(text.encode()), parse_options=options, convert_options=convert)


def columnar_engine(compiled: CompiledDcd, text: str, batch_rows: int) -> tuple[int, int]:
    table = arrow_baseline(text)
    engine = columnar(compiled)
    rows = valid = 0
    for start in range(0, table.num_rows, batch_rows):
        result = engine.validate_table(table.slice(start, batch_rows), today=TODAY)
        rows += result.rows
        valid += result.valid_rows
    return rows, valid


def measure(
    label: str, compiled: CompiledDcd, rows: list[dict[str, str]], runs: int, batch_rows: int
) -> tuple[float, float]:
    text = to_csv(rows)
    count, valid = engine(compiled, text)
    c_count, c_valid = columnar_engine(compiled, text, batch_rows)
    assert (c_count, c_valid) == (count, valid), "the two engines disagree"
    read, full, arrow_read, col = best_of(
        runs,
        lambda: baseline(text),
        lambda: engine(compiled, text),
        lambda: arrow_baseline(text),
        lambda: columnar_engine(compiled, text, batch_rows),
    )
    fields = len(rows[0])
    print(f"{label}: {count} rows x {fields} columns, {valid} valid (load average {_load()})")
    print(
        f"  baseline (csv.DictReader + strip):  {count / read:10,.0f} rows/s  {read / count * 1e6:6.1f} us/row"
    )
    print(
        f"  read + validate_many (row engine):  {count / full:10,.0f} rows/s  {full / count * 1e6:6.1f} us/row"
    )
    print(
        f"    validation alone:                 {count / (full - read):10,.0f} rows/s  {(full - read) / count * 1e6:6.1f} us/row"
    )
    print(f"    ratio against its baseline:       {full / read:6.2f}x")
    print(
        f"  arrow baseline (pyarrow.csv):       {count / arrow_read:10,.0f} rows/s  {arrow_read / count * 1e6:6.1f} us/row"
    )
    print(
        f"  read + validate_table (columnar, {batch_rows:,} per batch): {count / col:10,.0f} rows/s  {col / count * 1e6:6.1f} us/row"
    )
    alone = max(col - arrow_read, 1e-9)
    print(
        f"    validation alone:                 {count / alone:10,.0f} rows/s  {alone / count * 1e6:6.1f} us/row"
    )
    print(f"    ratio against its baseline:       {col / arrow_read:6.2f}x")
    print(f"  columnar against the row engine (validation alone): {(full - read) / alone:6.1f}x faster")
    return full / read, col / arrow_read


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def main(argv: Iterable[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch-rows", type=int, default=2_000)
    parser.add_argument("--quick", action="store_true", help="bench-check's short run: 3,000 rows, best of 5")
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.quick:
        args.rows, args.runs = 3_000, 5
    print(f"load average at the start: {_load()}")

    start = time.perf_counter()
    definition = synthetic_definition()
    compiled = compile_dcd(definition)
    print(f"synthetic DCD read and compiled in {(time.perf_counter() - start) * 1e3:.0f} ms")
    batch = args.batch_rows
    ratios: dict[str, float] = {}
    ratios["synthetic_over_read"], ratios["synthetic_columnar_over_arrow"] = measure(
        "synthetic 100-field DCD", compiled, synthetic_rows(definition, args.rows), args.runs, batch
    )
    shipped = shipped_case(args.rows)
    if shipped is not None:
        code, shipped_compiled, rows = shipped
        ratios["angio_over_read"], ratios["angio_columnar_over_arrow"] = measure(
            f"shipped {code} (its valid sample, repeated)", shipped_compiled, rows, args.runs, batch
        )
        varied = shipped_case(args.rows, varied=True)
        assert varied is not None
        measure(f"shipped {code} (varied rows)", varied[1], varied[2], args.runs, batch)
    from _result import result

    result(ratios)


if __name__ == "__main__":
    main()
