"""Business keys: which stored registration a record replaces ("the latest submission wins").

The key fields often hold patient identifiers (SSIN, birth date), so the key itself is a
keyed hash (HMAC-SHA256 with the installation's secret) of the normalised values: stable,
safe to show in URLs, answers and logs, and not reversible by trying every SSIN.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from typing import Any


def business_key(secret: bytes, dcd_code: str, fields: Sequence[str], values: Mapping[str, Any]) -> str | None:
    """The key for ``values``, or None when the DCD has no key or a key field is empty."""
    if not fields:
        return None
    parts = []
    for name in fields:
        value = values.get(name)
        if isinstance(value, str):
            value = value.strip()  # free text is stored as typed; a key ignores stray spaces
        if value is None or value == "" or value == []:
            return None
        parts.append(value)
    message = json.dumps([dcd_code, parts], separators=(",", ":"), sort_keys=True, default=str).encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()[:40]
