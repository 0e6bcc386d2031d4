"""The HIV_Sequence DCD's rules for a nucleotide-sequence file (HDBP0263,
``filename;recordname;genetic_sequence``), one place for every route that takes one: the
intake's SFTP and HTTP transfers and the Upload Center's linked uploads.

- The file is named after the laboratory and when it was made, ``ARL_yyyymmddHHMMSS``
  (``HSP_20240827092014``): three upper-case letters, then a date and time that exist
  (no month 13, no 30 February, no 24:00).
- ``genetic_sequence`` holds upper-case IUPAC nucleotide codes only, ``A C G T U R Y S W
  K M B D H V N``: no lower case, no gaps (``-``, ``.``), and never empty.
"""

from __future__ import annotations

import re
from datetime import datetime

#: ``ARL_yyyymmddHHMMSS``: the laboratory code and the time stamp's 14 digits.
STEM = re.compile(r"^[A-Z]{3}_(\d{14})$")
#: The DCD's alphabet: upper-case IUPAC nucleotide codes.
NUCLEOTIDES = frozenset("ACGTURYSWKMBDHVN")


def stamp(stem: str) -> datetime | None:
    """The date and time an ``ARL_yyyymmddHHMMSS`` name carries; None when the name has
    another shape or the date or time does not exist."""
    m = STEM.match(stem)
    if m is None:
        return None
    d = m.group(1)
    try:
        return datetime(int(d[0:4]), int(d[4:6]), int(d[6:8]), int(d[8:10]), int(d[10:12]), int(d[12:14]))
    except ValueError:
        return None


def is_sequence_stem(stem: str) -> bool:
    """Whether ``stem`` (a file name without ``.csv``) is a valid ``ARL_yyyymmddHHMMSS``."""
    return stamp(stem) is not None


def bad_nucleotide(sequence: str) -> tuple[int, str] | None:
    """The first character of ``sequence`` that is not an upper-case IUPAC nucleotide
    code, as (1-based position, the character shown: ``a``, ``-``, or ``U+0009`` for an
    invisible one); None when every character is one. An empty sequence is checked apart."""
    for position, char in enumerate(sequence, start=1):
        if char not in NUCLEOTIDES:
            return position, char if char.isprintable() and not char.isspace() else f"U+{ord(char):04X}"
    return None


__all__ = ["NUCLEOTIDES", "STEM", "bad_nucleotide", "is_sequence_stem", "stamp"]
