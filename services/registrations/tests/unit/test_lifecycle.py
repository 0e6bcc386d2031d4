"""The HD4DP lifecycle rules, registration codes and business keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hdhub.registrations.catalogue.follow_ups import follow_up_of
from hdhub.registrations.records.business_key import business_key
from hdhub.registrations.records.codes import registration_code
from hdhub.registrations.records.lifecycle import (
    DECISIONS,
    NO_CONFIRMATION,
    Action,
    RegistrationStatus,
    TransitionRefused,
    next_status,
)


def test_save_keeps_an_editable_status() -> None:
    assert next_status(Action.SAVE, RegistrationStatus.OPEN) is RegistrationStatus.OPEN
    assert (
        next_status(Action.SAVE, RegistrationStatus.CORRECTIONS_NEEDED)
        is RegistrationStatus.CORRECTIONS_NEEDED
    )


def test_submit_goes_through_sending_to_submitted() -> None:
    assert next_status(Action.SUBMIT, RegistrationStatus.OPEN) is RegistrationStatus.SENDING
    assert next_status(Action.PROCESSED, RegistrationStatus.SENDING) is RegistrationStatus.SUBMITTED


@pytest.mark.parametrize("status", [s for s in RegistrationStatus if s is not RegistrationStatus.SUBMITTED])
def test_reopen_only_from_submitted(status: RegistrationStatus) -> None:
    with pytest.raises(TransitionRefused):
        next_status(Action.REOPEN, status)
    assert next_status(Action.REOPEN, RegistrationStatus.SUBMITTED) is RegistrationStatus.OPEN


@pytest.mark.parametrize("status", list(RegistrationStatus))
def test_delete_only_open_or_corrections_needed(status: RegistrationStatus) -> None:
    if status in (RegistrationStatus.OPEN, RegistrationStatus.CORRECTIONS_NEEDED):
        assert next_status(Action.DELETE, status) is RegistrationStatus.DELETED
    else:
        with pytest.raises(TransitionRefused):
            next_status(Action.DELETE, status)


def test_submitted_registration_cannot_be_saved_without_reopening() -> None:
    with pytest.raises(TransitionRefused, match="Submitted"):
        next_status(Action.SAVE, RegistrationStatus.SUBMITTED)


def test_latest_submission_replaces_any_live_status_but_deleted() -> None:
    for status in RegistrationStatus:
        if status is RegistrationStatus.DELETED:
            with pytest.raises(TransitionRefused):
                next_status(Action.RESUBMIT, status)
        else:
            assert next_status(Action.RESUBMIT, status) is RegistrationStatus.SENDING


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


@pytest.mark.parametrize("decision", list(DECISIONS))
def test_a_central_decision_applies_to_a_submitted_registration_only(decision: RegistrationStatus) -> None:
    action = DECISIONS[decision]
    assert next_status(action, RegistrationStatus.SUBMITTED) is decision
    for status in (RegistrationStatus.OPEN, RegistrationStatus.SENDING, RegistrationStatus.DELETED):
        with pytest.raises(TransitionRefused):
            next_status(action, status)


def test_follow_up_may_follow_approval_but_nothing_follows_an_error() -> None:
    assert (
        next_status(Action.REQUEST_FOLLOW_UP, RegistrationStatus.APPROVED)
        is RegistrationStatus.FOLLOW_UP_NEEDED
    )
    for action in DECISIONS.values():
        with pytest.raises(TransitionRefused):
            next_status(action, RegistrationStatus.ERROR)


def test_the_seed_blanks_the_confirmation_in_sending_corrections_needed_and_approved() -> None:
    assert {
        RegistrationStatus.SENDING,
        RegistrationStatus.CORRECTIONS_NEEDED,
        RegistrationStatus.APPROVED,
    } == NO_CONFIRMATION


@pytest.mark.parametrize("status", [RegistrationStatus.CORRECTIONS_NEEDED, RegistrationStatus.ERROR])
def test_corrections_needed_and_error_are_corrected_and_submitted_again(status: RegistrationStatus) -> None:
    assert next_status(Action.SAVE, status) is status
    assert next_status(Action.SUBMIT, status) is RegistrationStatus.SENDING


def test_the_one_year_follow_up_after_pci_is_due_a_year_after_the_index_pci() -> None:
    rule = follow_up_of("ANGIO_HOSP_PCI")
    assert rule is not None and rule.dcd_code == "ANGIO_FU_PCI"
    assert follow_up_of("ANGIO_HOSP_FFR_PCI") == rule
    assert follow_up_of("ANGIO_HOSP") is None and follow_up_of("ANGIO_FU_PCI") is None
    decided = datetime(2026, 1, 5, tzinfo=UTC)
    assert rule.due({"DT_PCI_1": "2025-03-10"}, decided) == datetime(2026, 3, 10, tzinfo=UTC)
    # No index date (or not a date): a year after the decision.
    assert rule.due({}, decided) == decided + timedelta(days=365)
    assert rule.due({"DT_PCI_1": "10/03/2025"}, decided) == decided + timedelta(days=365)
