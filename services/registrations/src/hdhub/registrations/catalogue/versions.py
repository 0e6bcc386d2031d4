"""A DCD version's life in the catalogue and what separates two versions. Rules only, no I/O.

A version is imported as a ``draft`` from the console (the REST import publishes at once,
as it always did), ``published`` when registrations may follow it, and ``retired`` when no
work may be done on it any more. The newest published version is the DCD's current one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from hdhub.common.errors import Problem
from hdhub.registrations.engine.dcd import DcdDefinition, Field
from hdhub.registrations.records.lifecycle import EDITABLE, RegistrationStatus


class VersionState(StrEnum):
    DRAFT = "draft"
    PUBLISHED = "published"
    RETIRED = "retired"


#: Where a version may go from where it stands.
MOVES: Mapping[VersionState, frozenset[VersionState]] = {
    VersionState.DRAFT: frozenset({VersionState.PUBLISHED, VersionState.RETIRED}),
    VersionState.PUBLISHED: frozenset({VersionState.RETIRED}),
    VersionState.RETIRED: frozenset({VersionState.PUBLISHED}),
}

#: The registrations a new major version invalidates (DOMAIN.md: drafts and submissions):
#: those still to be edited or sent must follow the new version before they move again.
INVALIDATED_STATUSES = frozenset({*EDITABLE, RegistrationStatus.SENDING, RegistrationStatus.SUBMITTED})


def check_move(
    *, dcd_code: str, version: str, now: VersionState, to: VersionState, current: str | None
) -> None:
    """Refuse a move the states do not allow, and retiring the DCD's current version (the
    one registrations follow: publish a newer one first)."""
    if to == now:
        return
    if to not in MOVES[now]:
        raise Problem(
            409,
            "dcd-version-state",
            "This DCD version cannot move to that state",
            f"{dcd_code} {version} is {now.value}; it cannot become {to.value}.",
        )
    if to is VersionState.RETIRED and version == current:
        raise Problem(
            409,
            "dcd-version-current",
            "The current version of a DCD cannot be retired",
            f"{dcd_code} {version} is the version registrations follow; publish a newer version first.",
        )


def kind_of_change(old: DcdDefinition, new: DcdDefinition) -> str:
    """``major``, ``minor`` or ``patch``: the highest part of the version that differs."""
    a, b = old.version, new.version
    if a.major != b.major:
        return "major"
    return "minor" if a.minor != b.minor else "patch"


@dataclass(frozen=True)
class FieldChange:
    """One field's difference: what about it changed (``aspects``, the definition's words)
    and whether registrations valid before may be refused now (``breaking``)."""

    technical_name: str
    aspects: tuple[str, ...]
    breaking: bool


@dataclass(frozen=True)
class VersionDifference:
    kind: str
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[FieldChange, ...] = ()
    #: Fields added that every record must give: breaking like a removal.
    added_required: tuple[str, ...] = field(default=())

    @property
    def breaking(self) -> bool:
        """Whether a registration valid under the old version may be refused by the new."""
        return bool(self.removed or self.added_required or any(c.breaking for c in self.changed))


#: A field's attributes compared, each with its name and whether a change of it may refuse
#: a record the old version accepted.
_ASPECTS: tuple[tuple[str, bool], ...] = (
    ("type", True),
    ("required", True),
    ("constraint", True),
    ("relevant", False),
    ("calculation", False),
    ("default", False),
    ("read_only", True),
    ("number_format", True),
    ("format", True),
    ("repeat_max", True),
    ("labels", False),
    ("hints", False),
    ("group_path", False),
)


def _codes(definition: DcdDefinition, f: Field) -> tuple[str, ...]:
    if not f.list_name or f.list_name not in definition.codelists:
        return ()
    return definition.codelists[f.list_name].codes


def _field_change(
    old_def: DcdDefinition, new_def: DcdDefinition, old: Field, new: Field
) -> FieldChange | None:
    aspects: list[str] = []
    breaking = False
    for name, breaks in _ASPECTS:
        if getattr(old, name) != getattr(new, name):
            aspects.append(name)
            if name == "required":
                breaking = breaking or new.required is not None  # made optional: nothing refused
            else:
                breaking = breaking or breaks
    old_codes, new_codes = set(_codes(old_def, old)), set(_codes(new_def, new))
    if old_codes != new_codes:
        if new_codes - old_codes:
            aspects.append("choices_added")
        if old_codes - new_codes:
            aspects.append("choices_removed")
            breaking = True
    if not aspects:
        return None
    return FieldChange(new.technical_name, tuple(aspects), breaking)


def compare(old: DcdDefinition, new: DcdDefinition) -> VersionDifference:
    """The fields added, removed and changed from ``old`` to ``new``, in form order."""
    old_names = {f.technical_name for f in old.fields}
    new_names = {f.technical_name for f in new.fields}
    added = tuple(f.technical_name for f in new.fields if f.technical_name not in old_names)
    changed = tuple(
        change
        for f in new.fields
        if f.technical_name in old_names
        and (change := _field_change(old, new, old.field(f.technical_name), f)) is not None
    )
    return VersionDifference(
        kind=kind_of_change(old, new),
        added=added,
        removed=tuple(f.technical_name for f in old.fields if f.technical_name not in new_names),
        changed=changed,
        added_required=tuple(n for n in added if new.required_in_every_record(new.field(n))),
    )


def lower_majors(versions: Iterable[tuple[str, int]], major: int) -> list[str]:
    """The versions (``(version, major)``) of a major lower than ``major``: those a
    version of ``major`` supersedes."""
    return sorted(v for v, m in versions if m < major)
