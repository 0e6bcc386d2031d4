"""A patient's names as the pseudocode of a patient without an SSIN reads them: the one
rule pseudonymisation hashes them by and registrations keys such a patient's records by
(docs/hospital-it.md, "Business key"). Two spellings of one name that differ only in
case, accents, spaces or punctuation are the same patient."""

from __future__ import annotations

import unicodedata

__all__ = ["normalise_name"]


def normalise_name(text: str) -> str:
    """``text`` with accents dropped, case folded, and anything that is not a letter or
    digit (spaces, hyphens, apostrophes, dots) removed: ``Van der Berg-Élie`` and
    ``vanderberg elie`` give ``vanderbergelie``."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return "".join(c for c in bare.casefold() if c.isalnum())
