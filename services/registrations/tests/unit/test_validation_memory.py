"""Validating batch after batch keeps no batch alive: an invalid value's shared exception
once carried a traceback holding the parsing frames (and so the whole batch), and each
new raise prepended to it, so an upload's memory grew with its file."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable
from typing import Any

from hdhub.registrations.engine.validation import CompiledDcd


class Batch(list[dict[str, str]]):
    """A list that can be weakly referenced."""


SURVEY = [
    {"type": "integer", "name": "MS_HEIGHT", "required": "yes"},
    {"type": "text", "name": "IDC_PAT", "hd::personal_data": "yes"},
    {"type": "date", "name": "DT_EVENT"},
    {"type": "select_one sex", "name": "CD_SEX"},
    {"type": "decimal", "name": "MS_WEIGHT"},
]
CHOICES = [{"list_name": "sex", "name": "M"}, {"list_name": "sex", "name": "F"}]


def batch(n: int, start: int) -> Batch:
    rows = Batch()
    for i in range(start, start + n):
        bad = i % 7 == 0
        rows.append(
            {
                "MS_HEIGHT": "tall" if bad else str(150 + i % 40),
                "IDC_PAT": f"p{i}",
                "DT_EVENT": "31/02/2024" if bad else "01/02/2024",
                "CD_SEX": "X" if bad else "M",
                "MS_WEIGHT": "heavy" if bad else f"{60 + i % 30}.5",
            }
        )
    return rows


def test_no_batch_outlives_its_validation(make_compiled: Callable[..., CompiledDcd]) -> None:
    dcd = make_compiled(SURVEY, CHOICES)
    refs: list[weakref.ref[Any]] = []
    for b in range(6):
        rows = batch(200, b * 200)
        results = dcd.validate_many(rows)
        assert sum(1 for r in results if r.errors) == len(
            [i for i in range(b * 200, b * 200 + 200) if i % 7 == 0]
        )
        refs.append(weakref.ref(rows))
        del rows, results
        for row in batch(3, 10_000 + b):  # the row by row path too
            dcd.validate(row)
    gc.collect()
    assert [r() is None for r in refs] == [True] * len(refs)


def test_errors_are_the_same_batch_after_batch(make_compiled: Callable[..., CompiledDcd]) -> None:
    dcd = make_compiled(SURVEY, CHOICES)
    first = [[(e.field, e.rule) for e in r.errors] for r in dcd.validate_many(batch(50, 0))]
    for _ in range(3):
        again = [[(e.field, e.rule) for e in r.errors] for r in dcd.validate_many(batch(50, 0))]
        assert again == first
    assert any(first)
