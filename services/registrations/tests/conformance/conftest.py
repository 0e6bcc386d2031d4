"""The reference evaluator (one Node process for the whole session) and the form both engines read."""

from __future__ import annotations

from collections.abc import Iterator
from zoneinfo import ZoneInfo

import pytest

from hdhub.registrations.engine import xpath
from hdhub.registrations.engine.validation import CompiledDcd, compile_dcd
from hdhub.registrations.engine.xlsform import read_workbook
from services.registrations.tests.conformance import corpus
from services.registrations.tests.conformance.reference import ReferenceEvaluator, installed


@pytest.fixture(scope="session")
def reference() -> Iterator[ReferenceEvaluator]:
    missing = installed()
    if missing is not None:
        pytest.skip(missing)
    evaluator = ReferenceEvaluator()
    yield evaluator
    evaluator.close()


@pytest.fixture(scope="session")
def compiled() -> CompiledDcd:
    return compile_dcd(read_workbook(corpus.workbook()))


@pytest.fixture
def in_utc() -> Iterator[None]:
    """hdhub's zone set to UTC, as the reference's is for the comparison: in UTC the
    reference's day numbers (milliseconds since 1970-01-01T00:00Z) are calendar days too."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(xpath, "ZONE", ZoneInfo("UTC"))
        yield
