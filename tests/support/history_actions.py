"""Every action code registrations writes in a registration's history, so the portal can
check it has words for each: the lifecycle's actions and the worker's codes built from
statuses, plus the literal codes its delivery and records modules write."""

from __future__ import annotations

import re
from pathlib import Path

from hdhub.registrations.records.lifecycle import DECISIONS, Action, StatusConfirmation

_SOURCE = (
    Path(__file__).resolve().parents[2] / "services" / "registrations" / "src" / "hdhub" / "registrations"
)
# ``action="create"`` and the operator's ``"delivery_…"`` codes passed positionally.
_LITERAL = re.compile(r'action="(\w+)"|"(delivery_\w+)"')


def history_actions() -> set[str]:
    codes = {a.value for a in Action}
    codes |= {f"confirmation_{c.value}" for c in StatusConfirmation}
    codes |= {f"central_{status.value}" for status in DECISIONS}
    for path in [*(_SOURCE / "records").glob("*.py"), *(_SOURCE / "delivery").glob("*.py")]:
        for m in _LITERAL.finditer(path.read_text(encoding="utf-8")):
            codes.add(m.group(1) or m.group(2))
    return codes
