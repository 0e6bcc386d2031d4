"""One round of the differential test: a case evaluated by hdhub and by the reference.

Every part of every expression of a :class:`~.corpus.Case` is evaluated on both sides in
one batch (one line to the Node process), so that a disagreement can be traced to the
first place the two part (:func:`~.compare.root_causes`).
"""

from __future__ import annotations

import datetime
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from hdhub.registrations.engine.expressions import Binary, Call, ExpressionError, Node, Unary, to_source
from hdhub.registrations.engine.validation import CompiledDcd
from services.registrations.tests.conformance.compare import (
    Place,
    agree,
    classify,
    describe,
    judged,
    root_causes,
)
from services.registrations.tests.conformance.corpus import (
    Case,
    context_path,
    instance_document,
    to_reference,
)
from services.registrations.tests.conformance.reference import ReferenceEvaluator, ReferenceResult

#: The clock both sides read for today() and now(), in the zone of the run.
NOW = datetime.datetime(2024, 6, 15, 10, 20, 30)

#: hdhub's side: (compiled form, expressions, record, at, today, now) -> one value (or the
#: exception) per expression.
Evaluate = Callable[
    [CompiledDcd, Sequence[str], dict[str, object], str, datetime.date, datetime.datetime], list[object]
]


def evaluate_in_hdhub(
    compiled: CompiledDcd,
    expressions: Sequence[str],
    record: dict[str, object],
    at: str,
    today: datetime.date,
    now: datetime.datetime,
) -> list[object]:
    return compiled.evaluate(expressions, record, at=at, today=today, now=now)


@dataclass(slots=True)
class Tally:
    """How many expressions agreed, and the places of those that did not."""

    expressions: int = 0
    agreed: int = 0
    #: The expressions hdhub compiles (no unknown function, no refused construct).
    compiled: int = 0
    compiled_agreed: int = 0
    known: Counter[str] = field(default_factory=Counter)
    unexplained: list[str] = field(default_factory=list)
    #: Where the unexplained ones part: the function or operator, counted.
    parting: Counter[str] = field(default_factory=Counter)

    def add(self, other: Tally) -> None:
        self.expressions += other.expressions
        self.agreed += other.agreed
        self.compiled += other.compiled
        self.compiled_agreed += other.compiled_agreed
        self.known.update(other.known)
        self.unexplained.extend(other.unexplained)
        self.parting.update(other.parting)

    def summary(self) -> str:
        share = 100.0 * self.agreed / self.expressions if self.expressions else 100.0
        compiled = 100.0 * self.compiled_agreed / self.compiled if self.compiled else 100.0
        known = ", ".join(f"{name} {count}" for name, count in self.known.most_common())
        return (
            f"{self.agreed}/{self.expressions} expressions agree ({share:.1f}%), "
            f"{self.compiled_agreed}/{self.compiled} of those hdhub compiles ({compiled:.1f}%); "
            f"known differences: {known or 'none'}; unexplained: {len(self.unexplained)}"
        )


def run_case(
    reference: ReferenceEvaluator,
    compiled: CompiledDcd,
    case: Case,
    *,
    zone: str = "UTC",
    evaluate: Evaluate = evaluate_in_hdhub,
) -> Tally:
    nodes: list[Node] = list(dict.fromkeys(part for tree in case.expressions for part in judged(tree)))
    now = NOW
    mine = evaluate(
        compiled, [to_source(n) for n in nodes], case.record.as_record(), case.at, now.date(), now
    )
    now_ms = int(now.replace(tzinfo=ZoneInfo(zone)).timestamp() * 1000)
    # The reference reads what hdhub stores: a blank text is a missing value, say.
    stored = compiled.validate(case.record.as_record(), today=now.date()).values
    theirs: list[ReferenceResult] = reference.evaluate(
        instance_document(stored, case.record.instances),
        [to_reference(n, case.instance) for n in nodes],
        context=context_path(case.at),
        zone=zone,
        now_ms=now_ms,
    )
    results = dict(zip(nodes, zip(mine, theirs, strict=True), strict=True))
    tally = Tally()
    for tree in case.expressions:
        tally.expressions += 1
        mine_value, theirs_value = results[tree]
        refused = isinstance(mine_value, ExpressionError)
        tally.compiled += not refused
        if agree(mine_value, theirs_value):
            tally.agreed += 1
            tally.compiled_agreed += not refused
            continue
        places: list[Place] = root_causes(tree, results, case.record.values)
        names = [classify(p) for p in places]
        if places and all(names):
            tally.known.update({n for n in names if n})
        else:
            where = [describe(p, case.instance) for p, n in zip(places, names, strict=True) if n is None]
            tally.parting.update(_kind(p.node) for p, n in zip(places, names, strict=True) if n is None)
            tally.unexplained.append(
                f"{to_source(tree)} at {case.at} with {case.record.as_record()}\n  " + "\n  ".join(where)
            )
    return tally


def _kind(node: Node) -> str:
    if isinstance(node, Call):
        return node.function + "()"
    if isinstance(node, Binary | Unary):
        return node.operator
    return type(node).__name__


def draw_cases(examples: int) -> list[Case]:
    """``examples`` cases drawn by hypothesis, the same ones every run (derandomised)."""
    from hypothesis import HealthCheck, Phase, given, settings

    from services.registrations.tests.conformance.corpus import cases

    drawn: list[Case] = []

    @settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        phases=[Phase.generate],
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(cases())
    def collect(case: Case) -> None:
        drawn.append(case)

    collect()
    return drawn


def measure(
    reference: ReferenceEvaluator,
    compiled: CompiledDcd,
    *,
    examples: int | None = None,
    cases: list[Case] | None = None,
    zone: str = "UTC",
    evaluate: Evaluate = evaluate_in_hdhub,
) -> Tally:
    """Run ``cases`` (or ``examples`` drawn ones) on both sides and add up the tallies."""
    total = Tally()
    for case in cases if cases is not None else draw_cases(examples or 0):
        total.add(run_case(reference, compiled, case, zone=zone, evaluate=evaluate))
    return total
