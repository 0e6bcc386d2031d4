"""What separates two DCD versions (catalogue/versions.py): fields added, removed and
changed, the kind of change, whether it may refuse what the older version accepted; and
which moves between states are allowed."""

from __future__ import annotations

import pytest

from hdhub.common.errors import Problem
from hdhub.registrations.catalogue.versions import VersionState, check_move, compare
from hdhub.registrations.engine.xlsform import read_workbook
from tests.support.workbooks import console_workbook


def test_a_minor_version_adds_and_relabels_without_breaking() -> None:
    old, new = (read_workbook(console_workbook(v)) for v in ("1.0.0", "1.1.0"))
    d = compare(old, new)
    assert (d.kind, d.added, d.removed, d.added_required) == ("minor", ("TX_REMARK",), (), ())
    assert {c.technical_name: c.aspects for c in d.changed} == {
        "CD_SIDE": ("choices_added",),
        "NR_SIZE": ("labels",),
    }
    assert not d.breaking


def test_a_major_version_removing_a_field_and_requiring_a_new_one_breaks() -> None:
    old, new = (read_workbook(console_workbook(v)) for v in ("1.1.0", "2.0.0"))
    d = compare(old, new)
    assert (d.kind, d.added, d.removed, d.added_required) == (
        "major",
        ("DT_CHECK",),
        ("NR_SIZE",),
        ("DT_CHECK",),
    )
    assert d.breaking
    assert compare(new, old).removed == ("DT_CHECK",)  # either way round


@pytest.mark.parametrize(
    ("now", "to", "current", "slug"),
    [
        (VersionState.PUBLISHED, VersionState.RETIRED, "1.0.0", "dcd-version-current"),
        (VersionState.PUBLISHED, VersionState.DRAFT, "2.0.0", "dcd-version-state"),
        (VersionState.RETIRED, VersionState.DRAFT, "2.0.0", "dcd-version-state"),
    ],
)
def test_refused_moves(now: VersionState, to: VersionState, current: str, slug: str) -> None:
    with pytest.raises(Problem) as refused:
        check_move(dcd_code="X", version="1.0.0", now=now, to=to, current=current)
    assert refused.value.slug == slug


def test_allowed_moves() -> None:
    check_move(dcd_code="X", version="1.0.0", now=VersionState.DRAFT, to=VersionState.PUBLISHED, current=None)
    check_move(
        dcd_code="X", version="1.0.0", now=VersionState.DRAFT, to=VersionState.RETIRED, current="2.0.0"
    )
    check_move(
        dcd_code="X", version="1.0.0", now=VersionState.PUBLISHED, to=VersionState.RETIRED, current="2.0.0"
    )
    check_move(
        dcd_code="X", version="1.0.0", now=VersionState.RETIRED, to=VersionState.PUBLISHED, current="2.0.0"
    )
