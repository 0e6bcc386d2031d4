"""Business keys: which stored registration a record replaces ("the latest submission wins").

The key fields often hold patient identifiers (SSIN, birth date), so the key itself is a
keyed hash (HMAC-SHA256 with the installation's secret) of the normalised values: stable,
safe to show in URLs, answers and logs, and not reversible by trying every SSIN.

A patient without a Belgian SSIN (the DCD's SSIN key field left empty) is identified the
way pseudonymisation identifies them: by the pseudocode inputs (birth date, sex, last and
first name), names normalised by :mod:`hdhub.common.patient_names` (pseudonymisation's
rule too), so that case, accents, spaces and hyphens do not matter.
The key then stands on those inputs in place of the SSIN, so sending the same record again
updates it instead of creating a second registration (docs/hospital-it.md).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from hdhub.common.patient_names import FIRST_NAME_FIELD, LAST_NAME_FIELD, normalise_name

#: The ``format`` of the field holding a patient's SSIN (``IDC_PAT``).
SSIN_FORMAT = "ssin"
#: The fields that identify a patient without an SSIN (DCD technical names), as
#: pseudonymisation's pseudocode takes them.
PSEUDOCODE_FIELDS = {
    "birth_date": "DT_PAT_DOB",
    "sex": "CD_PAT_SEX",
    "last_name": LAST_NAME_FIELD,
    "first_name": FIRST_NAME_FIELD,
}
# Marks the pseudocode inputs standing for an SSIN: a list never equals an SSIN's text.
_NO_SSIN = "no-ssin"


def patient_without_ssin(values: Mapping[str, Any]) -> list[str] | None:
    """The normalised pseudocode inputs of ``values``, or None when one is missing."""
    birth, sex = values.get(PSEUDOCODE_FIELDS["birth_date"]), values.get(PSEUDOCODE_FIELDS["sex"])
    last = normalise_name(str(values.get(PSEUDOCODE_FIELDS["last_name"]) or ""))
    first = normalise_name(str(values.get(PSEUDOCODE_FIELDS["first_name"]) or ""))
    if not birth or not sex or not last or not first:
        return None
    return [_NO_SSIN, str(birth), str(sex).strip().upper(), last, first]


def business_key(
    secret: bytes,
    dcd_code: str,
    fields: Sequence[str],
    values: Mapping[str, Any],
    *,
    ssin_fields: Collection[str] = (),
) -> str | None:
    """The key for ``values``, or None when the DCD has no key or a key field is empty
    (an empty SSIN key field is replaced by the patient's pseudocode inputs when they
    are all there)."""
    if not fields:
        return None
    parts: list[Any] = []
    for name in fields:
        value = values.get(name)
        if isinstance(value, str):
            value = value.strip()  # free text is stored as typed; a key ignores stray spaces
        if (value is None or value == "") and name in ssin_fields:
            value = patient_without_ssin(values)
        if value is None or value == "" or value == []:
            return None
        parts.append(value)
    message = json.dumps([dcd_code, parts], separators=(",", ":"), sort_keys=True, default=str).encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()[:40]
