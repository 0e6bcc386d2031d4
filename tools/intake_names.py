"""Regenerate the name lists of the intake's VCF checks (hdhub.intake.domain.personal):
``.tools/bin/uvx --with faker==40.63.0 python tools/intake_names.py``. Faker (MIT) is
only the source of the lists, not a dependency: the lists are committed."""

from __future__ import annotations

import importlib
import unicodedata
from pathlib import Path

import faker

LOCALES = "nl_BE fr_BE nl_NL fr_FR de_DE en_US en_GB it_IT es_ES pt_PT pl_PL tr_TR ar_AA ro_RO".split()
TARGET = Path(__file__).parent.parent / "services/intake/src/hdhub/intake/domain"


def fold(word: str) -> str:
    decomposed = unicodedata.normalize("NFKD", word)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def words(names: object) -> set[str]:
    found: set[str] = set()
    for name in names or ():  # type: ignore[attr-defined]
        found |= {fold(w) for w in str(name).replace("-", " ").split() if w.isalpha() and len(w) >= 3}
    return found


def main() -> None:
    given: set[str] = set()
    family: set[str] = set()
    for locale in LOCALES:
        provider = importlib.import_module(f"faker.providers.person.{locale}").Provider
        for attr in ("first_names", "first_names_male", "first_names_female"):
            given |= words(getattr(provider, attr, None))
        family |= words(getattr(provider, "last_names", None))
    for kind, names in (("given", given), ("family", family)):
        head = (
            f"# Common {kind} names (folded: lower case, no accents), for hdhub.intake.domain.personal.\n"
            f"# Built from the person providers of Faker {faker.VERSION} (MIT License; PyPI 'faker'), locales\n"
            f"# {' '.join(LOCALES)}:\n"
            "# every word of 3+ letters of their first_names / last_names. Regenerate: tools/intake_names.py.\n"
        )
        (TARGET / f"names_{kind}.txt").write_text(head + "\n".join(sorted(names)) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
