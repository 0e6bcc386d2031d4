"""The DCD workbooks hdhub ships: up to date with their generator, loadable, and their samples
validate as annotated (services/registrations/dcds/{build_workbooks,samples}.py)."""

from __future__ import annotations

import datetime
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from hdhub.registrations.engine.validation import CompiledDcd, compile_dcd
from hdhub.registrations.engine.xlsform import read_workbook

DCDS_DIR = Path(__file__).resolve().parent.parent / "dcds"
# A fixed clock: every sample date lies before it, and the answers do not depend on the day.
TODAY = datetime.date(2026, 6, 1)


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"hdhub_dcds_{name}", DCDS_DIR / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


samples = _load("samples")
builder = _load("build_workbooks")


@pytest.fixture(scope="module")
def compiled() -> dict[str, CompiledDcd]:
    return {code: compile_dcd(read_workbook(samples.workbook_path(code))) for code in samples.DCDS}


def test_committed_workbooks_match_the_generator() -> None:
    dcds = builder.all_dcds()
    assert {d.dcd_code for d in dcds} == set(samples.DCDS)
    for dcd in dcds:
        committed = samples.workbook_path(dcd.dcd_code).read_bytes()
        assert builder.deterministic_bytes(builder.build_workbook(dcd)) == committed, (
            f"{dcd.filename} is stale: run .venv/bin/python services/registrations/dcds/build_workbooks.py"
        )


@pytest.mark.parametrize("code", sorted(samples.DCDS))
def test_workbook_identity(code: str) -> None:
    definition = read_workbook(samples.workbook_path(code))
    expected = samples.DCDS[code]
    assert definition.project_code == expected["project_code"]
    assert definition.dcd_code == code
    assert definition.dcd_number == expected["dcd_number"]
    assert list(definition.business_key) == expected["business_key"]
    assert str(definition.version) == samples.VERSION
    assert set(definition.languages) >= {"en", "fr", "nl", "de"}
    assert definition.source and "NOT the official healthdata.be DCD" in definition.source
    assert definition.field("IDC_PAT").personal_data
    assert definition.field("DT_PAT_DOB").personal_data


@pytest.mark.parametrize("code", sorted(samples.DCDS))
def test_valid_sample(compiled: dict[str, CompiledDcd], code: str) -> None:
    result = compiled[code].validate(samples.VALID[code], today=TODAY)
    assert [e.to_json() for e in result.errors] == []
    assert [w.to_json() for w in result.warnings] == []


@pytest.mark.parametrize("sample", samples.EXTRA_VALID, ids=lambda s: f"{s['dcd']}: {s['why']}")
def test_extra_valid_sample(compiled: dict[str, CompiledDcd], sample: dict[str, Any]) -> None:
    result = compiled[sample["dcd"]].validate(sample["record"], today=TODAY)
    assert [e.to_json() for e in result.errors] == []


@pytest.mark.parametrize("sample", samples.INVALID, ids=lambda s: f"{s['dcd']}: {s['why']}")
def test_invalid_sample(compiled: dict[str, CompiledDcd], sample: dict[str, Any]) -> None:
    result = compiled[sample["dcd"]].validate(sample["record"], lang="nl", today=TODAY)
    assert sorted((e.field, e.rule) for e in result.errors) == sorted(sample["errors"])
    for error in result.errors:
        assert error.message and error.path


def test_calculations(compiled: dict[str, CompiledDcd]) -> None:
    pci = compiled["ANGIO_HOSP_PCI"].validate(samples.VALID["ANGIO_HOSP_PCI"], today=TODAY).values
    assert (pci["MS_LOS"], pci["MS_AGE_ADM"], pci["MS_BMI"]) == (4, 39, "29.2")
    ffr = compiled["ANGIO_HOSP_FFR"].validate(samples.VALID["ANGIO_HOSP_FFR"], today=TODAY).values
    assert (ffr["CD_FFR_SIGNIF_1"], ffr["CD_FFR_SIGNIF_2"]) == ("yes", "yes")  # FFR 0.72, iFR 0.85
    assert ffr["CD_CABG"] == "yes"
    hosp = compiled["ANGIO_HOSP"].validate(samples.VALID["ANGIO_HOSP"], today=TODAY).values
    assert hosp["CD_CABG"] == "no"  # the default
    assert hosp["IDC_PAT"] == "49111003394"
    deceased = next(s for s in samples.EXTRA_VALID if s["dcd"] == "ANGIO_FU_PCI")["record"]
    fu = compiled["ANGIO_FU_PCI"].validate(deceased, today=TODAY).values
    assert (fu["MS_FU_DAYS"], fu["MS_AGE_FU"], fu["CD_MACE_ANY"]) == (367, 40, "yes")
