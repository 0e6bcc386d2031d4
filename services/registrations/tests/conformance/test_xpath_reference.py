"""Issue 25: hdhub's expression engine against Enketo's openrosa-xpath-evaluator.

Hypothesis draws records of a form with every field type and a repeat, and expressions
over them; both engines evaluate every part of every expression, and where they disagree
the first place they part must be a known difference, listed with its reason in
docs/dcd-format.md ("Where hdhub and Enketo differ"). ``make test`` runs a few hundred
cases; ``make conformance`` thousands (``HDHUB_CONFORMANCE_EXAMPLES``) and prints the
agreement figure.
"""

from __future__ import annotations

import datetime
import os

import pytest

from hdhub.registrations.engine.validation import CompiledDcd
from hdhub.registrations.engine.xpath import local_now
from services.registrations.tests.conformance.compare import (
    RULES,
    SHOWN_BY_TESTS,
    agree,
    documented_differences,
)
from services.registrations.tests.conformance.corpus import instance_document
from services.registrations.tests.conformance.differential import measure
from services.registrations.tests.conformance.reference import ReferenceEvaluator

EXAMPLES = int(os.environ.get("HDHUB_CONFORMANCE_EXAMPLES", "400"))


@pytest.mark.timeout(max(120, EXAMPLES // 4))
@pytest.mark.usefixtures("in_utc")
def test_hdhub_agrees_with_the_reference_evaluator_but_for_documented_differences(
    reference: ReferenceEvaluator, compiled: CompiledDcd
) -> None:
    tally = measure(reference, compiled, examples=EXAMPLES)
    print(f"\nagreement with openrosa-xpath-evaluator: {tally.summary()}")
    assert not tally.unexplained, f"{len(tally.unexplained)} unexplained disagreement(s):\n" + "\n".join(
        tally.unexplained[:10]
    )
    assert set(tally.known) <= documented_differences()
    assert tally.agreed / tally.expressions > 0.9


def test_every_known_difference_is_documented_and_every_documented_one_is_recognised() -> None:
    assert documented_differences() == set(RULES) | set(SHOWN_BY_TESTS)
    assert all(name in globals() for name in SHOWN_BY_TESTS.values())


# --------------------------------------------------------------------------- Belgian time

#: Instants around Belgium's clock changes of 2025 (30 March, 02:00 CET -> 03:00 CEST; 26
#: October, 03:00 CEST -> 02:00 CET) and around midnight, when the Belgian day is not UTC's.
INSTANTS = [
    datetime.datetime(2025, 3, 30, 0, 59, 59, tzinfo=datetime.UTC),
    datetime.datetime(2025, 3, 30, 1, 0, 0, tzinfo=datetime.UTC),
    datetime.datetime(2025, 10, 26, 0, 59, 59, tzinfo=datetime.UTC),
    datetime.datetime(2025, 10, 26, 1, 0, 0, tzinfo=datetime.UTC),
    datetime.datetime(2025, 3, 29, 23, 30, 0, tzinfo=datetime.UTC),
    datetime.datetime(2025, 10, 26, 22, 30, 0, tzinfo=datetime.UTC),
    datetime.datetime(2025, 6, 30, 22, 0, 0, tzinfo=datetime.UTC),
]
CLOCK = [
    "today()",
    "string(today())",
    "format-date(now(), '%Y-%m-%d %H:%M:%S')",
    "format-date(today(), '%e %b %Y, a %a')",
    "today() = date(format-date(now(), '%Y-%m-%d'))",
]


@pytest.mark.parametrize("instant", INSTANTS, ids=lambda i: i.isoformat())
def test_today_and_now_are_brussels_wall_clock_as_the_reference_in_that_zone(
    reference: ReferenceEvaluator, compiled: CompiledDcd, instant: datetime.datetime
) -> None:
    now = local_now(instant)
    mine = compiled.evaluate(CLOCK, {}, at="n1", today=now.date(), now=now)
    theirs = reference.evaluate(
        instance_document({}, 0),
        CLOCK,
        context="/data/n1",
        zone="Europe/Brussels",
        now_ms=int(instant.timestamp() * 1000),
    )
    assert [agree(m, t) for m, t in zip(mine, theirs, strict=True)] == [True] * len(CLOCK), (mine, theirs)


def test_belgian_wall_clock_around_the_clock_changes() -> None:
    assert local_now(datetime.datetime(2025, 3, 30, 0, 59, 59, tzinfo=datetime.UTC)) == datetime.datetime(
        2025, 3, 30, 1, 59, 59
    )
    assert local_now(datetime.datetime(2025, 3, 30, 1, 0, 0, tzinfo=datetime.UTC)) == datetime.datetime(
        2025, 3, 30, 3, 0, 0
    )
    assert local_now(datetime.datetime(2025, 10, 26, 0, 59, 59, tzinfo=datetime.UTC)) == datetime.datetime(
        2025, 10, 26, 2, 59, 59
    )
    assert local_now(datetime.datetime(2025, 10, 26, 1, 0, 0, tzinfo=datetime.UTC)) == datetime.datetime(
        2025, 10, 26, 2, 0, 0
    )
    # Belgian midnight comes before UTC's: the registration's day is Belgium's.
    assert local_now(datetime.datetime(2025, 3, 29, 23, 30, tzinfo=datetime.UTC)).date() == datetime.date(
        2025, 3, 30
    )


DAY_COUNTS = {
    # calendar days, whatever the clock did in between
    "date('2025-03-31') - date('2025-03-30')": 1.0,
    "date('2025-10-27') - date('2025-10-26')": 1.0,
    "decimal-date-time('2025-03-30')": 20177.0,
    # Belgian wall-clock time: the hour the clock skips counts
    "decimal-date-time('2025-03-30T03:00:00+02:00') - decimal-date-time('2025-03-30T01:00:00+01:00')": 2 / 24,
}


def test_hdhub_counts_calendar_days_where_the_reference_in_brussels_counts_elapsed_time(
    reference: ReferenceEvaluator, compiled: CompiledDcd
) -> None:
    """The known difference ``zone-day-count`` of docs/dcd-format.md, shown."""
    texts = list(DAY_COUNTS)
    mine = compiled.evaluate(texts, {}, at="n1")
    theirs = reference.evaluate(instance_document({}, 0), texts, context="/data/n1", zone="Europe/Brussels")
    assert mine == pytest.approx(list(DAY_COUNTS.values()))
    elapsed = [23 / 24, 25 / 24, 20177 - 1 / 24, 1 / 24]
    assert [t.value for t in theirs] == pytest.approx(elapsed)
