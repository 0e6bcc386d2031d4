"""What the pages say instead of codes: every history action registrations writes has
words in the four languages."""

from __future__ import annotations

import pytest

from hdhub.portal.pages.entry import ACTIONS
from hdhub.portal.pages.i18n import translations
from tests.support.history_actions import history_actions


def test_every_history_action_has_words() -> None:
    assert history_actions() - set(ACTIONS) == set()


@pytest.mark.parametrize("lang", ["nl", "fr", "de"])
def test_every_history_action_is_translated(lang: str) -> None:
    untranslated = [code for code, words in ACTIONS.items() if translations(lang).gettext(words) == words]
    assert untranslated == []
