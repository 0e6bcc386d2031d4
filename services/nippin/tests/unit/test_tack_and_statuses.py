"""The TACK parser and the status transitions."""

from __future__ import annotations

import pytest

from hdhub.common.tack import Outcome, TackError, parse
from hdhub.nippin.domain import report, statuses
from hdhub.nippin.domain.statuses import ARCHIVED, ERROR, INVALID, SENT, TO_SEND, IllegalTransition

SUCCESS = b"""<?xml version="1.0"?><TAck xmlns="urn:nip:tack:1.0"><Reference>m-1</Reference>
<ResultMajor>urn:nip:tack:result:major:success</ResultMajor></TAck>"""
WARNING = b"""<TAck xmlns="urn:nip:tack:1.0"><Reference>m-2</Reference>
<ResultMajor>urn:nip:tack:result:major:success</ResultMajor>
<ResultMinor>urn:nip:tack:result:minor:warning</ResultMinor>
<ResultMessage severity="warning" code="NIP-W-7">serial number unknown to the insurer</ResultMessage></TAck>"""
FAILURE = b"""<TAck xmlns="urn:nip:tack:1.0"><Reference>m-3</Reference>
<ResultMajor>urn:nip:tack:result:major:failure</ResultMajor>
<ResultMessage severity="error" code="NIP-E-42">patient not insured</ResultMessage></TAck>"""


def test_a_success_tack() -> None:
    tack = parse(SUCCESS)
    assert (tack.reference, tack.outcome, tack.reason()) == ("m-1", Outcome.SUCCESS, "TACK success")


def test_a_success_with_warnings() -> None:
    tack = parse(WARNING)
    assert tack.outcome is Outcome.WARNING
    assert tack.minors == ("urn:nip:tack:result:minor:warning",)
    assert tack.reason() == "TACK success (NIP-W-7: serial number unknown to the insurer)"


def test_a_failure_tack_carries_its_error() -> None:
    tack = parse(FAILURE)
    assert tack.outcome is Outcome.ERROR
    assert tack.reason() == "TACK failure (NIP-E-42: patient not insured)"
    assert tack.messages[0].to_json() == {
        "severity": "error",
        "code": "NIP-E-42",
        "text": "patient not insured",
    }


def test_an_error_message_under_a_success_major_is_an_error() -> None:
    doc = SUCCESS.replace(b"</TAck>", b'<ResultMessage severity="error" code="E">x</ResultMessage></TAck>')
    assert parse(doc).outcome is Outcome.ERROR


@pytest.mark.parametrize(
    ("document", "why"),
    [
        (b"<html>503</html>", "no TAck"),
        (b"not xml", "not XML"),
        (b'<TAck xmlns="urn:nip:tack:1.0"><ResultMajor>ok</ResultMajor></TAck>', "no result major"),
        (b"<TAck xmlns='urn:nip:tack:1.0'>" + b" " * 300_000 + b"</TAck>", "larger than a TACK"),
    ],
)
def test_an_answer_that_is_no_tack_says_why(document: bytes, why: str) -> None:
    with pytest.raises(TackError, match=why):
        parse(document)


ALLOWED = [
    (None, TO_SEND),
    (None, INVALID),
    (TO_SEND, SENT),
    (TO_SEND, ERROR),
    (TO_SEND, ARCHIVED),
    (ERROR, SENT),
    (ERROR, ERROR),
    (ERROR, ARCHIVED),
    (SENT, ERROR),
    (INVALID, ARCHIVED),
]


@pytest.mark.parametrize(("current", "target"), ALLOWED)
def test_allowed_transition(current: str | None, target: str) -> None:
    statuses.check(current, target)


@pytest.mark.parametrize(
    ("current", "target"),
    [(c, t) for c in (None, *statuses.STATUSES) for t in statuses.STATUSES if (c, t) not in ALLOWED],
)
def test_every_other_transition_is_refused(current: str | None, target: str) -> None:
    with pytest.raises(IllegalTransition):
        statuses.check(current, target)


def test_archived_is_final_and_only_unsent_messages_are_archivable() -> None:
    assert statuses.TRANSITIONS[ARCHIVED] == frozenset()
    assert statuses.ARCHIVABLE == {TO_SEND, ERROR, INVALID}


@pytest.mark.parametrize(
    ("status", "result"),
    [
        (SENT, "valid"),
        (TO_SEND, "valid"),
        (INVALID, "invalid"),
        (ARCHIVED, "invalid"),
        (ERROR, "not_sent"),
        (None, "not_found"),
    ],
)
def test_report_result_of_each_status(status: str | None, result: str) -> None:
    assert report.result(status) == result


def test_a_tack_text_quoting_an_ssin_is_masked() -> None:
    doc = FAILURE.replace(b"patient not insured", b"patient 85073003328 not insured")
    assert parse(doc).messages[0].text == "patient # not insured"
