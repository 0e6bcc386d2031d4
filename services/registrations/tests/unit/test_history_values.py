"""A registration's values are stored once; every version's are rebuilt from what later
changes replaced, and versions written before that (whole copies) are read as they are."""

from __future__ import annotations

from typing import Any

from hdhub.registrations.records.history import changed_fields, replaced_values, values_by_version
from hdhub.registrations.store import RegistrationVersion


def version(
    n: int, *, values: dict[str, Any] | None = None, replaced: dict[str, Any] | None = None
) -> RegistrationVersion:
    return RegistrationVersion(version=n, values=values, replaced=replaced)


def test_each_version_is_rebuilt_from_the_current_values() -> None:
    v1 = {"A": 1, "B": "x"}
    v3 = {"A": 2, "C": [1, 2]}  # A changed, B removed, C added
    changed = changed_fields(v1, v3)
    assert changed == ["A", "B", "C"]
    history = [
        version(1),  # create: replaced nothing
        version(2),  # submit: no values changed
        version(3, replaced=replaced_values(v1, changed)),
        version(4),  # processed
    ]
    assert values_by_version(v3, history) == {1: v1, 2: v1, 3: v3, 4: v3}


def test_whole_copies_written_before_are_read_as_they_are() -> None:
    old, new = {"A": 1}, {"A": 5}
    history = [
        version(1, values=old),  # before migration 0003
        version(2, values=old),
        version(3, replaced={"A": 1}),  # after it
        version(4, values=new),  # a writer that still copies
    ]
    assert values_by_version(new, history) == {1: old, 2: old, 3: new, 4: new}


def test_nothing_replaced_without_a_before() -> None:
    assert replaced_values(None, ["A"]) is None
    assert replaced_values({"A": 1}, []) is None
