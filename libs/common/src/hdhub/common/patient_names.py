"""A patient's names as the pseudocode of a patient without an SSIN reads them: the one
rule pseudonymisation hashes them by and registrations keys such a patient's records by
(docs/hospital-it.md, "Business key"). Two spellings of one name that differ only in
case, accents, spaces or punctuation are the same patient."""

from __future__ import annotations

import unicodedata

__all__ = ["FIRST_NAME_FIELD", "LAST_NAME_FIELD", "NAME_FIELDS", "normalise_name"]

#: The DCD fields (technical names) holding the patient's names that pseudonymisation's
#: pseudocode hashes for a patient without an SSIN.
LAST_NAME_FIELD, FIRST_NAME_FIELD = "TX_PAT_LAST_NAME", "TX_PAT_FIRST_NAME"
NAME_FIELDS = frozenset({LAST_NAME_FIELD, FIRST_NAME_FIELD})


def normalise_name(text: str) -> str:
    """``text`` with accents dropped, case folded, and anything that is not a letter or
    digit (spaces, hyphens, apostrophes, dots) removed: ``Van der Berg-Élie`` and
    ``vanderberg elie`` give ``vanderbergelie``."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return "".join(c for c in bare.casefold() if c.isalnum())
