"""Patient identity in a VCF header: SSINs, birth dates and people's names, in ``##`` meta
lines and in the sample names of the ``#CHROM`` line. A VCF's header names samples and
tools; the person behind a sample is the registration's business, never the file's.

The heuristic, and why each part is there (its false-positive rate on the headers of
public VCFs is measured by ``tests/test_personal_data.py`` and reported in docs/intake.md):

- an SSIN anywhere: 11 digits that pass the mod-97 check (``hdhub.common.ssin.contains_ssin``, the shared rule);
- a birth date: a birth word (``DOB``, ``BirthDate``, ``date_of_birth``, ``born``,
  ``geboortedatum``, ``date de naissance``, ``Geburtsdatum`` ...) in a key or in the text
  of one ``key=value`` item, together with a real calendar date in its value (not in the
  future, year from 1900). A birth word alone is a field's description, not a date;
- a date in a sample name (lab sample ids carry none; ``S1_1985-04-02`` is a birthday);
- a person's name: a meta key that names one (``##PatientName=``, ``Name=`` inside
  ``<...>``, ``first_name``, ``nom``, ``naam`` ...), and a sample name (or a ``##SAMPLE``
  or ``##PEDIGREE`` id) made of 2 to 4 words of letters only, joined by ``_``, spaces or a
  comma (``PEETERS_JAN``, ``Jan Peeters``), of which at least one is a common given name
  or surname (``names_given.txt``, ``names_family.txt``) and none a word labs use for a
  sample (``TUMOR_NORMAL``). ``Surname, Given`` with a comma counts even for names not in
  the lists: lab ids have no ", ". Ids with digits (``NA12878``, ``HG002``, ``S1``) never
  look like names.

It catches what a lab plausibly writes, not every possible name: a single word, or a
name in no list, passes.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date
from functools import cache
from importlib import resources

from hdhub.common.ssin import contains_ssin

SSIN, BIRTH_DATE, DATE, NAME, PERSON = (
    "a national register number (SSIN)",
    "a birth date",
    "a date",
    "a person's name",
    "what looks like a person's name",
)

# A key that names a person (##PatientName=, <...,Name=...>, first_name, nom, naam ...).
NAME_KEY = re.compile(
    r"(?i)^\s*(?:patient[_ ]?(?:name|id)?|individual|proband|person|"
    r"(?:first|last|family|given|full|maiden|sur)[_ ]?name|name|nom|pr[eé]nom|naam|voornaam|achternaam)\s*$"
)
# Words that say "birth" in en/fr/nl/de, whole or as the start of a longer word.
BIRTH = re.compile(
    r"(?i)(?:^|[^a-z])(?:dob|ddn|born|birth\w*|geboorte\w*|geboren|naissance|n[ée]e?\s+le|geburt\w*|gebdat\w*)(?:$|[^a-z])"
)
_NUMERIC_DATE = re.compile(
    r"(?<!\d)(?:(?P<d>\d{1,2})[/.\-](?P<m>\d{1,2})[/.\-](?P<y>(?:19|20)?\d{2})"
    r"|(?P<Y>(?:19|20)\d{2})[/.\-](?P<M>\d{1,2})[/.\-](?P<D>\d{1,2}))(?!\d)"
)
_COMPACT_DATE = re.compile(
    r"(?<!\d)(?:(?P<Y>(?:19|20)\d{2})(?P<M>\d{2})(?P<D>\d{2})|(?P<d>\d{2})(?P<m>\d{2})(?P<y>(?:19|20)\d{2}))(?!\d)"
)
_MONTHS = {
    m: i + 1
    for i, names in enumerate(
        [
            "jan janv januari januar janvier january",
            "feb fev fevr februari februar fevrier february",
            "mar mrt maart marz mars march",
            "apr avr april avril",
            "may mai mei",
            "jun juin juni june",
            "jul juil juli juillet july",
            "aug aou augustus august aout",
            "sep sept september septembre",
            "oct okt oktober octobre october",
            "nov november novembre",
            "dec dez december dezember decembre",
        ]
    )
    for m in names.split()
}
_WORDED_DATE = re.compile(r"(?i)(?<!\d)(\d{1,2})[\s.\-/]*([a-zéûä]{3,9})\.?[\s.\-/,]*((?:19|20)\d{2})(?!\d)")
_KEY_VALUE = re.compile(r'([A-Za-z0-9_.\- ]+)=("[^"]*"|[^,>]*)')
# Sample words of labs: a sample name made of these is a sample, not a person.
LAB_WORDS = frozenset(
    """tumor tumour normal germline somatic sample samples control ctrl case blank pool pooled dna rna
    cfdna ctdna blood plasma serum tissue biopsy ffpe saliva father mother dad mom mum child son
    daughter sibling brother sister twin proband patient index affected unaffected test unknown
    reference ref truth baseline relapse primary metastasis met left right male female
    run lane batch plate well library lib seq wgs wes exome panel variant variants calls
    cell cells line culture clone organoid xenograft replicate rep mix standard donor healthy
    trio family germ cancer carcinoma adenocarcinoma leukemia lymphoma melanoma colon lung liver
    breast kidney brain skin bone marrow lymph node""".split()
)


def _fold(word: str) -> str:
    decomposed = unicodedata.normalize("NFKD", word)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


@cache
def _names(kind: str) -> frozenset[str]:
    text = resources.files("hdhub.intake.domain").joinpath(f"names_{kind}.txt").read_text("utf-8")
    return frozenset(line for line in text.splitlines() if line and not line.startswith("#"))


def _real(year: int, month: int, day: int, *, today: date) -> bool:
    try:
        found = date(year, month, day)
    except ValueError:
        return False
    return date(1900, 1, 1) <= found <= today


def _year(text: str | None, today: date) -> int:
    y = int(text or 0)
    if text is not None and len(text) == 2:  # 85 -> 1985, 07 -> 2007
        y += 2000 if 2000 + y <= today.year else 1900
    return y


def has_date(text: str, *, compact: bool = False, today: date | None = None) -> bool:
    """Whether ``text`` holds a real calendar date (``30/07/1985``, ``1985-07-30``,
    ``30 July 1985``; ``19850730`` too when ``compact``)."""
    today = today or date.today()
    patterns = [_NUMERIC_DATE, _COMPACT_DATE] if compact else [_NUMERIC_DATE]
    for pattern in patterns:
        for m in pattern.finditer(text):
            g = m.groupdict()
            if g["Y"] is not None:
                if _real(int(g["Y"]), int(g["M"]), int(g["D"]), today=today):
                    return True
            elif _real(_year(g["y"], today), int(g["m"]), int(g["d"]), today=today):
                return True
    for m in _WORDED_DATE.finditer(text):
        word = _fold(m.group(2))
        month = _MONTHS.get(word) or _MONTHS.get(word[:4]) or _MONTHS.get(word[:3])
        if month and _real(int(m.group(3)), month, int(m.group(1)), today=today):
            return True
    return False


def looks_like_a_name(text: str) -> bool:
    """A sample id shaped like a person's name (see the module's heuristic)."""
    text = text.strip()
    if re.fullmatch(r"[^\W\d_]{2,}(?:[-'][^\W\d_]{2,})*,\s*[^\W\d_]{2,}(?:[-' ][^\W\d_]{2,})*", text):
        return True  # "Surname, Given"
    words = [w for w in re.split(r"[_ ,]+", text) if w]
    if not 2 <= len(words) <= 4 or len(words) != len(re.split(r"[_ ,]+", text)):
        return False
    parts = [_fold(p) for w in words for p in re.split(r"[-']", w)]
    if not all(len(p) >= 2 and p.isalpha() for p in parts) or any(p in LAB_WORDS for p in parts):
        return False
    return any(p in _names("given") or p in _names("family") for p in parts)


def _mentions_birth(text: str) -> bool:
    # camelCase and snake_case keys as words: PatientDOB, patient_dob, DateOfBirth.
    return BIRTH.search(re.sub(r"(?<=[a-z])(?=[A-Z])|_", " ", text)) is not None


def _items(text: str) -> list[tuple[str, str]]:
    """A meta line's ``key=value`` items: ``##key=value``, and the ``k=v`` pairs of ``<...>``."""
    key, _, value = text[2:].partition("=")
    items = [(key, value)]
    if value.startswith("<") and value.endswith(">"):
        items += [(k.strip(), v.strip('"')) for k, v in _KEY_VALUE.findall(value[1:-1])]
    return items


def in_meta_line(text: str) -> str | None:
    """What kind of patient information a ``##`` line carries, if any (never the value)."""
    if contains_ssin(text):
        return SSIN
    key = text[2:].partition("=")[0]
    for i, (k, v) in enumerate(_items(text)):
        if _mentions_birth(f"{k} {v}") and has_date(v, compact=True):
            return BIRTH_DATE
        if i > 0 and NAME_KEY.match(k):
            return NAME
        if i > 0 and key.upper() in ("SAMPLE", "PEDIGREE") and looks_like_a_name(v):
            return PERSON
    if NAME_KEY.match(key):
        return NAME
    return None


def in_sample_name(text: str) -> str | None:
    """What kind of patient information a sample name carries, if any (never the value)."""
    if contains_ssin(text):
        return SSIN
    if _mentions_birth(text) and has_date(text, compact=True):
        return BIRTH_DATE
    if has_date(text):
        return DATE
    if looks_like_a_name(text):
        return PERSON
    return None
