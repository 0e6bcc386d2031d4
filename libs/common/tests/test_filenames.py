"""The one file-name rule: each refusal with its own reason, letters of any script kept
(in NFC), and no message repeating the name."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hdhub.common.filenames import BadFileName, NameReason, checked_file_name, file_name_message

REFUSED = [
    ("empty", "", NameReason.EMPTY),
    ("NUL character", "a\x00b.csv", NameReason.CONTROL),
    ("CR/LF", "a\r\nb.csv", NameReason.CONTROL),
    ("ESC (terminal escapes)", "a\x1b[31mb.csv", NameReason.CONTROL),
    ("tab", "a\tb.csv", NameReason.CONTROL),
    ("DEL", "a\x7fb.csv", NameReason.CONTROL),
    ("C1 control", "a\x85b.csv", NameReason.CONTROL),
    ("right-to-left override", "report\u202ecsv.exe", NameReason.INVISIBLE),
    ("left-to-right isolate", "a\u2066b.csv", NameReason.INVISIBLE),
    ("zero-width space", "a\u200bb.csv", NameReason.INVISIBLE),
    ("lone surrogate", "a\udfffb.csv", NameReason.INVISIBLE),
    ("private use", "a\ue000b.csv", NameReason.INVISIBLE),
    ("line separator", "a\u2028b.csv", NameReason.INVISIBLE),
    ("trailing slash", "data.csv/", NameReason.TRAILING_SEPARATOR),
    ("trailing backslash", "data.csv\\", NameReason.TRAILING_SEPARATOR),
    ("a folder", "folder/data.csv", NameReason.FOLDER),
    ("a Windows folder", "C:\\data\\x.csv", NameReason.FOLDER),
    ("parent", "..", NameReason.FOLDER),
    ("current", ".", NameReason.FOLDER),
    ("colon", "a:b.csv", NameReason.RESERVED),
    ("question mark", "what?.csv", NameReason.RESERVED),
    ("pipe", "a|b.csv", NameReason.RESERVED),
    ("trailing dot", "data.csv.", NameReason.TRAILING_DOT_OR_SPACE),
    ("trailing space", "data.csv ", NameReason.TRAILING_DOT_OR_SPACE),
    ("NUL", "NUL", NameReason.DEVICE),
    ("nul.csv", "nul.csv", NameReason.DEVICE),
    ("CON", "CON", NameReason.DEVICE),
    ("aux.tar.gz", "aux.tar.gz", NameReason.DEVICE),
    ("PRN.txt", "PRN.txt", NameReason.DEVICE),
    ("COM1", "COM1", NameReason.DEVICE),
    ("com9.csv", "com9.csv", NameReason.DEVICE),
    ("LPT1.csv", "LPT1.csv", NameReason.DEVICE),
    ("LPT superscript", "LPT¹.csv", NameReason.DEVICE),
    ("device then space", "con .csv", NameReason.DEVICE),
    ("256 characters", "a" * 252 + ".csv", NameReason.TOO_LONG),
    ("over 255 bytes in UTF-8", "é" * 130 + ".csv", NameReason.TOO_LONG),
    ("an SSIN", "patient_85040216932.csv", NameReason.SSIN),
    ("an SSIN with separators", "85.04.02-169.32 results.csv", NameReason.SSIN),
]


@pytest.mark.parametrize(("name", "reason"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_each_rule_refuses_with_its_own_reason(name: str, reason: NameReason) -> None:
    with pytest.raises(BadFileName) as refused:
        checked_file_name(name)
    assert refused.value.reason is reason
    for lang in ("en", "fr", "nl", "de"):
        message = refused.value.message(lang)
        assert message == file_name_message(reason, lang)  # a fixed text: never the name
    assert "85040216932" not in str(refused.value) and "\x1b" not in str(refused.value)


ACCEPTED = [
    "HD_DCD_submcsv_HDBP0012_ANGIO_HOSP_1.0.0_20261122.csv",
    "café.csv",
    "отчёт за март.csv",
    "报告.csv",
    "Données (v2) - copie.csv",
    "CONSOLE.csv",  # not a device name
    "nullable.csv",
    "a" * 251 + ".csv",  # 255 characters
    "85040216933.csv",  # a wrong check number is no SSIN
]


@pytest.mark.parametrize("name", ACCEPTED)
def test_ordinary_names_in_any_script_are_kept(name: str) -> None:
    assert checked_file_name(name) == name


def test_names_are_kept_in_nfc() -> None:
    decomposed = "cafe\u0301.csv"  # as macOS writes it
    assert checked_file_name(decomposed) == "café.csv" == unicodedata.normalize("NFC", decomposed)


def test_a_route_may_allow_fewer_characters_and_says_how_many() -> None:
    with pytest.raises(BadFileName) as refused:
        checked_file_name("a" * 97 + ".vcf", max_length=100)
    assert refused.value.reason is NameReason.TOO_LONG
    assert "100" in refused.value.message("nl")
    assert checked_file_name("a" * 96 + ".vcf", max_length=100)


def test_every_reason_has_a_distinct_message_in_each_language() -> None:
    for lang in ("en", "fr", "nl", "de"):
        assert len({file_name_message(r, lang) for r in NameReason}) == len(NameReason)


@given(st.text(max_size=300))
def test_any_text_is_kept_or_refused_with_a_reason(name: str) -> None:
    try:
        kept = checked_file_name(name)
    except BadFileName as refused:
        assert refused.reason in NameReason
        return
    assert kept == unicodedata.normalize("NFC", kept)
    assert kept and "/" not in kept and "\\" not in kept and len(kept.encode("utf-8")) <= 255
    assert all(unicodedata.category(c)[0] != "C" for c in kept)
