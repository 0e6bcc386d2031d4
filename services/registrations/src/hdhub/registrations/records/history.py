"""A registration's history: one entry per change (who, when, what), and the values it
had at each version.

A registration's values are stored once, in the registration. A version keeps what its
change replaced (each changed field's value before it), so every earlier version's values
follow from the current ones; versions written before migration 0003 hold a whole copy.

A registration created in a batch (migration 0008) shares its first entries with the
batch: one ``BatchHistory`` row stands for version 1 (create) and, when the batch
submitted it, version 2 (submit) of each registration naming it (:func:`shared_entries`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from hdhub.common.db import utcnow
from hdhub.registrations.store import BatchHistory, Registration, RegistrationVersion

if TYPE_CHECKING:
    from hdhub.registrations.records.service import Actor


def changed_fields(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    return sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))


def replaced_values(before: Mapping[str, Any] | None, changed: Sequence[str]) -> dict[str, Any] | None:
    """What a change replaced: each changed field's value before it (None where it had none)."""
    if before is None or not changed:
        return None
    return {name: before.get(name) for name in changed}


def values_by_version(
    current: Mapping[str, Any], versions: Sequence[RegistrationVersion]
) -> dict[int, dict[str, Any]]:
    """The values a registration had at each of its versions, from its current values and
    what each later change replaced (walking back from the newest). A version holding a
    whole copy is taken as it is."""
    state = dict(current)
    out: dict[int, dict[str, Any]] = {}
    for v in sorted(versions, key=lambda v: v.version, reverse=True):
        if v.values is not None:
            state = dict(v.values)
        out[v.version] = state
        if v.replaced:
            state = dict(state)
            for name, old in v.replaced.items():
                if old is None:
                    state.pop(name, None)
                else:
                    state[name] = old
    return out


def shared_entries(reg: Registration, batch: BatchHistory) -> list[RegistrationVersion]:
    """The entries ``batch`` stands for in ``reg``'s history, as the version rows they
    replace (never stored): create at version 1, and submit at version 2 when the batch
    submitted it. A creation replaced nothing; its changed fields, every field it set, are
    filled in by :func:`with_created_fields` once the values at version 1 are known."""
    common = {
        "organisation_id": reg.organisation_id,
        "registration_id": reg.id,
        "dcd_version": batch.dcd_version,
        "values": None,
        "replaced": None,
        "actor": batch.actor,
        "via": batch.via,
        "comment": None,
        "at": batch.at,
    }
    entries = [RegistrationVersion(version=1, action="create", status="open", changed_fields=[], **common)]
    if batch.submitted:
        entries.append(
            RegistrationVersion(version=2, action="submit", status="sending", changed_fields=[], **common)
        )
    return entries


def with_created_fields(
    entries: Sequence[RegistrationVersion], values: Mapping[int, Mapping[str, Any]]
) -> None:
    """A shared create entry's changed fields: the fields the registration had at version 1
    (what a create entry of its own lists)."""
    for entry in entries:
        if entry.action == "create":
            entry.changed_fields = sorted(values[entry.version])


def record_change(
    session: AsyncSession,
    reg: Registration,
    *,
    action: str,
    actor: Actor,
    before: Mapping[str, Any] | None,
    comment: str | None = None,
) -> None:
    """The history entry of the change just made to ``reg`` (at its new version);
    ``before`` is its values before the change, None when it changed no values."""
    changed = changed_fields(before, reg.values) if before is not None else []
    session.add(
        RegistrationVersion(
            organisation_id=reg.organisation_id,
            registration_id=reg.id,
            version=reg.version,
            action=action,
            status=reg.status,
            dcd_version=reg.dcd_version,
            replaced=replaced_values(before, changed),
            changed_fields=changed,
            actor=actor.name,
            via=actor.via,
            comment=comment,
            at=utcnow(),
        )
    )
