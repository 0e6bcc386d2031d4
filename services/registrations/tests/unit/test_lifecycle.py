"""The HD4DP lifecycle rules, registration codes and business keys."""

from __future__ import annotations

import pytest

from hdhub.registrations.domain.business_key import business_key
from hdhub.registrations.domain.lifecycle import (
    Action,
    Status,
    TransitionRefused,
    next_status,
    registration_code,
)


def test_save_keeps_an_editable_status() -> None:
    assert next_status(Action.SAVE, Status.OPEN) is Status.OPEN
    assert next_status(Action.SAVE, Status.CORRECTIONS_NEEDED) is Status.CORRECTIONS_NEEDED


def test_submit_goes_through_sending_to_submitted() -> None:
    assert next_status(Action.SUBMIT, Status.OPEN) is Status.SENDING
    assert next_status(Action.PROCESSED, Status.SENDING) is Status.SUBMITTED


@pytest.mark.parametrize("status", [s for s in Status if s is not Status.SUBMITTED])
def test_reopen_only_from_submitted(status: Status) -> None:
    with pytest.raises(TransitionRefused):
        next_status(Action.REOPEN, status)
    assert next_status(Action.REOPEN, Status.SUBMITTED) is Status.OPEN


@pytest.mark.parametrize("status", list(Status))
def test_delete_only_open_or_corrections_needed(status: Status) -> None:
    if status in (Status.OPEN, Status.CORRECTIONS_NEEDED):
        assert next_status(Action.DELETE, status) is Status.DELETED
    else:
        with pytest.raises(TransitionRefused):
            next_status(Action.DELETE, status)


def test_submitted_registration_cannot_be_saved_without_reopening() -> None:
    with pytest.raises(TransitionRefused, match="Submitted"):
        next_status(Action.SAVE, Status.SUBMITTED)


def test_latest_submission_replaces_any_live_status_but_deleted() -> None:
    for status in Status:
        if status is Status.DELETED:
            with pytest.raises(TransitionRefused):
                next_status(Action.RESUBMIT, status)
        else:
            assert next_status(Action.RESUBMIT, status) is Status.SENDING


def test_registration_code_has_the_seen_shape_and_a_mod97_check() -> None:
    code = registration_code(206, 2024, 214)
    assert code.startswith("206.24.000214.")
    body = int(code.replace(".", "")[:-2])
    assert 97 - body % 97 == int(code[-2:])


def test_business_key_is_stable_keyed_and_empty_without_its_fields() -> None:
    a = business_key(
        b"k1", "ANGIO_HOSP", ("IDC_PAT", "DT_HOSPZ"), {"IDC_PAT": "85040216932", "DT_HOSPZ": "2025-02-03"}
    )
    assert a == business_key(
        b"k1", "ANGIO_HOSP", ("IDC_PAT", "DT_HOSPZ"), {"DT_HOSPZ": "2025-02-03", "IDC_PAT": "85040216932"}
    )
    assert a != business_key(
        b"k2", "ANGIO_HOSP", ("IDC_PAT", "DT_HOSPZ"), {"IDC_PAT": "85040216932", "DT_HOSPZ": "2025-02-03"}
    )
    assert "85040216932" not in a
    assert business_key(b"k1", "ANGIO_HOSP", ("IDC_PAT", "DT_HOSPZ"), {"DT_HOSPZ": "2025-02-03"}) is None
    assert business_key(b"k1", "X", (), {"A": "1"}) is None
