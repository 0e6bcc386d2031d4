"""Identifiers to pseudonyms: SSIN validation and normalisation, the pseudocode of a
patient without an SSIN, and the keyed hash. Pure functions; nothing here logs, and no
message ever carries the value it refuses.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import date

from hdhub.common.patient_names import normalise_name
from hdhub.common.ssin import InvalidSsin, ssin_message, validated_ssin

_SEXES = frozenset({"M", "F", "X"})
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# Domain separation: an SSIN and a pseudocode never hash to each other's input.
SSIN_PREFIX = b"ssin:"
PSEUDOCODE_PREFIX = b"pseudocode:v1:"


@dataclass(frozen=True, slots=True)
class Refused(Exception):
    """An identifier that cannot be pseudonymised: the rule and a message without the value."""

    rule: str
    message: str


def normalise_ssin(text: str) -> str:
    """The 11 digits of an SSIN written with or without separators, under the whole rule
    of :mod:`hdhub.common.ssin`. Raises :class:`Refused` naming the broken part otherwise."""
    try:
        return validated_ssin(text)
    except InvalidSsin as invalid:
        reason = invalid.reason
    raise Refused("ssin", ssin_message(reason))


def pseudocode_input(*, birth_date: str, sex: str, last_name: str, first_name: str) -> bytes:
    """The normalised pseudocode inputs as the bytes the keyed hash is taken over."""
    if not _ISO_DATE.match(birth_date):
        raise Refused("birth_date", "The birth date must be an ISO date (YYYY-MM-DD).")
    try:
        date.fromisoformat(birth_date)
    except ValueError:
        raise Refused("birth_date", "The birth date is not a calendar date.") from None
    s = sex.strip().upper()
    if s not in _SEXES:
        raise Refused("sex", "Sex must be M, F or X.")
    last, first = normalise_name(last_name), normalise_name(first_name)
    if not last:
        raise Refused("last_name", "The last name is required for a patient without an SSIN.")
    if not first:
        raise Refused("first_name", "The first name is required for a patient without an SSIN.")
    return PSEUDOCODE_PREFIX + f"{birth_date}|{s}|{last}|{first}".encode()


_IPAD = bytes(b ^ 0x36 for b in range(256))
_OPAD = bytes(b ^ 0x5C for b in range(256))


class KeyedHash:
    """HMAC-SHA256 (RFC 2104) under one key, with the inner and outer hash states of the
    padded key computed once: the same bytes as ``hmac.digest(key, m, "sha256")``, without
    redoing the key schedule for every pseudonym of a batch."""

    def __init__(self, key: bytes) -> None:
        if len(key) > 64:
            key = hashlib.sha256(key).digest()
        padded = key.ljust(64, b"\x00")
        self._inner = hashlib.sha256(padded.translate(_IPAD))
        self._outer = hashlib.sha256(padded.translate(_OPAD))

    def prefixed(self, prefix: bytes) -> KeyedHash:
        """The same keyed hash over ``prefix + message``, with the prefix hashed once."""
        other = KeyedHash.__new__(KeyedHash)
        other._inner, other._outer = self._inner.copy(), self._outer
        other._inner.update(prefix)
        return other

    def __call__(self, message: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()
