"""Messages of the Upload Center's own rules: every one in en, fr, nl and de, and none
that repeats a value of a masked (personal-data) column."""

from __future__ import annotations

import string

import pytest

from hdhub.uploads.domain.csvfile import Finding
from hdhub.uploads.domain.messages import ECHOES, MASKED_MESSAGES, MESSAGES
from hdhub.uploads.reports import finding_rows
from hdhub.uploads.worker import finding_dict

LANGUAGES = ("en", "fr", "nl", "de")
SECRET = "30/07/1985"


def placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


ECHOING = sorted(
    rule for rule, texts in MESSAGES.items() if any(placeholders(t) & ECHOES for t in texts.values())
)


@pytest.mark.parametrize("rule", sorted(MESSAGES))
def test_every_message_is_translated(rule: str) -> None:
    assert all(MESSAGES[rule].get(lang) for lang in LANGUAGES)


def test_the_rules_that_echo_values_are_known() -> None:
    assert ECHOING == sorted(MASKED_MESSAGES)


@pytest.mark.parametrize("rule", ECHOING)
@pytest.mark.parametrize("lang", LANGUAGES)
def test_a_message_about_a_masked_column_never_holds_the_value(rule: str, lang: str) -> None:
    masked = MASKED_MESSAGES[rule][lang]
    assert not placeholders(masked) & ECHOES
    finding = Finding(
        rule, "error", 3, 2, "DT_PAT_DOB", SECRET, dict.fromkeys(ECHOES, SECRET) | {"expected": "x"}
    )
    stored = finding_dict(finding, personal=True)
    assert SECRET not in repr(stored)  # neither in the upload's stored findings
    [(line, record, column, value, _, severity, message)] = finding_rows([stored], lang)
    assert (line, record, column, severity) == (3, 2, "DT_PAT_DOB", "error")
    assert value == "*" * len(SECRET) and SECRET not in message and "{" not in message
    # The same finding about a column that is not masked may name the value.
    [(*_, plain)] = finding_rows([finding_dict(finding)], lang)
    assert SECRET in plain
