"""The shipped DCDs' sample records (services/registrations/dcds/samples.py), and fresh
patients so that tests sharing one database never collide on a business key."""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path
from typing import Any

_PATH = Path(__file__).resolve().parents[2] / "services" / "registrations" / "dcds" / "samples.py"
_spec = importlib.util.spec_from_file_location("hdhub_dcd_samples", _PATH)
assert _spec and _spec.loader
samples: Any = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(samples)

VALID: dict[str, dict[str, str]] = samples.VALID
INVALID: list[dict[str, Any]] = samples.INVALID
_serials = itertools.count(1)


def ssin(birth: str = "491110", serial: int | None = None) -> str:
    """A valid SSIN (mod 97) for a birth date yymmdd before 2000 and a serial 1..997."""
    n = serial if serial is not None else next(_serials) % 997 + 1
    body = f"{birth}{n:03d}"
    return f"{body}{97 - int(body) % 97:02d}"


def record(dcd: str = "ANGIO_HOSP", **overrides: str) -> dict[str, str]:
    """A valid record of ``dcd`` for a patient no other test uses."""
    values = dict(VALID[dcd])
    if "IDC_PAT" in values and values.get("DT_PAT_DOB"):
        dd, mm, yyyy = values["DT_PAT_DOB"].split("/")
        if int(yyyy) < 2000:
            values["IDC_PAT"] = ssin(f"{yyyy[2:]}{mm}{dd}")
    values.update(overrides)
    return values


def nihdi(prefix: str = "710007") -> str:
    """An organisation's NIHDI number: ``prefix`` (six digits) and its two check digits, by
    identity's rule."""
    from hdhub.identity.nihdi import check_digits

    return prefix + check_digits(prefix)
