"""Which DCD follows which: the follow-up a registration needs when the central platform
asks for one (Follow-up needed), and when it is due. Pure rules, no I/O.

ANGIO (the seed): a hospitalisation with PCI (``ANGIO_HOSP_PCI``, ``ANGIO_HOSP_FFR_PCI``)
needs the one-year follow-up after PCI (``ANGIO_FU_PCI``), whose ``DT_PCI_REF`` is the
index registration's ``DT_PCI_1``: it is due a year after that date. The shipped workbooks
(1.0.0) predate a place for this in the DCD, so the rule is kept here, once, beside the
catalogue (docs/delivery.md, "Follow-up needed").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any


@dataclass(frozen=True)
class FollowUpRule:
    """``dcd_code`` follows the registrations of ``follows``, ``after_days`` after the
    index registration's ``from_field`` (a date), else after the decision."""

    dcd_code: str
    follows: frozenset[str]
    after_days: int
    from_field: str | None = None

    def due(self, values: Mapping[str, Any], decided: datetime) -> datetime:
        """When the follow-up is due: ``after_days`` after the index date, or after
        ``decided`` when the registration has none."""
        start = decided
        raw = values.get(self.from_field) if self.from_field else None
        if isinstance(raw, str):
            try:
                start = datetime.combine(date.fromisoformat(raw), time(), tzinfo=UTC)
            except ValueError:
                start = decided
        return start + timedelta(days=self.after_days)


RULES = (
    FollowUpRule(
        "ANGIO_FU_PCI", frozenset({"ANGIO_HOSP_PCI", "ANGIO_HOSP_FFR_PCI"}), 365, from_field="DT_PCI_1"
    ),
)


def follow_up_of(dcd_code: str) -> FollowUpRule | None:
    """The follow-up a registration of ``dcd_code`` needs; None when its DCD defines none."""
    return next((r for r in RULES if dcd_code in r.follows), None)
