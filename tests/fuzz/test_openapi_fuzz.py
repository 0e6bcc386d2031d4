"""Issue 12 item 3: no request a client can send gets a 5xx, and every answer is one the
service's OpenAPI document describes. The fuzz itself (schemathesis, in-process, every
service's app, as operator, User Manager and hospital system) is in ``openapi_fuzz.py``;
it runs in a process of its own (why: see there), started when collection ends
(``conftest.py``)."""

from __future__ import annotations

import pytest

from tests.fuzz.conftest import BACKGROUND, Fuzz


@pytest.mark.timeout(600)
def test_no_5xx_and_every_answer_documented(request: pytest.FixtureRequest) -> None:
    fuzz = request.config.stash.get(BACKGROUND, None) or Fuzz()
    code, printed = fuzz.outcome(timeout=540)
    print(printed[-5000:])
    assert code == 0, printed[-25000:]
