"""Issue 25: XLSForm as pyxform defines it. Every feature case and pyxform example form of
features.py imports, or is refused at the sheet, row and column expected with its reason;
docs/dcd-format.md's conformance tables are what tools/conformance_report.py makes of them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from hdhub.registrations.engine.expressions import FUNCTIONS, ExpressionSyntaxError, parse_expression
from hdhub.registrations.engine.functions import REFUSED_FUNCTIONS
from services.registrations.tests.conformance.corpus import SIGNATURES
from services.registrations.tests.conformance.features import (
    FEATURES,
    ODK_FUNCTIONS,
    PYXFORM_EXAMPLES,
    UNIT_TESTED,
    Feature,
    run,
)
from services.registrations.tests.unit import test_odk_functions

sys.path.insert(0, str(Path(__file__).resolve().parents[4] / "tools"))
import conformance_report  # noqa: E402


@pytest.mark.parametrize("feature", FEATURES + PYXFORM_EXAMPLES, ids=lambda f: f.name[:60])
def test_each_xlsform_feature_imports_or_is_refused_where_and_why_expected(feature: Feature) -> None:
    outcome = run(feature)
    if feature.expect is None:
        assert outcome.definition is not None, [str(p) for p in outcome.problems]
        assert feature.check is None or feature.check(outcome.definition)
    else:
        assert outcome.problems, "imported, though it should be refused"
        first = outcome.problems[0]
        where = (first.sheet, first.row, first.column)
        assert where == (feature.expect.sheet, feature.expect.row, feature.expect.column), str(first)
        assert feature.expect.says in first.message


def test_every_odk_function_is_supported_or_refused_with_a_reason() -> None:
    for name in ODK_FUNCTIONS:
        if name in FUNCTIONS:
            continue
        assert name in REFUSED_FUNCTIONS, f"{name}() is neither supported nor refused with a reason"
        with pytest.raises(ExpressionSyntaxError, match=f"{name}\\(\\) is not supported: "):
            parse_expression(f"{name}()")


def test_every_supported_function_is_checked_against_the_reference_or_by_a_unit_test() -> None:
    for name in FUNCTIONS:
        if name in SIGNATURES:
            continue
        assert name in UNIT_TESTED, f"{name}() is checked neither by the differential test nor by a unit test"
        assert hasattr(test_odk_functions, UNIT_TESTED[name][0])


def test_the_conformance_tables_in_the_documentation_are_what_the_tool_writes() -> None:
    assert conformance_report.current() == conformance_report.generate(), (
        "docs/dcd-format.md's conformance tables are stale: run `make conformance-report`"
    )
