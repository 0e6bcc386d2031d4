"""How the delivery worker cuts what it claimed into batches worked on side by side, and
the split of a registration's values, worked out once per DCD version."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

from hdhub.registrations.delivery.split import Splitter
from hdhub.registrations.delivery.worker import batches as in_batches


@dataclass
class J:
    id: str
    subject_id: str


def test_the_jobs_of_one_registration_stay_in_one_batch() -> None:
    jobs = [J(f"j{n}", f"r{n % 7}") for n in range(30)]
    batches = in_batches(jobs, 4)
    assert sorted(j.id for b in batches for j in b) == sorted(j.id for j in jobs)  # each once
    where = {}
    for n, batch in enumerate(batches):
        for job in batch:
            assert where.setdefault(job.subject_id, n) == n
    assert all(b for b in batches)


def test_batches_are_about_the_size_asked() -> None:
    batches = in_batches([J(f"j{n}", f"r{n}") for n in range(10)], 4)
    assert [len(b) for b in batches] == [4, 4, 2]
    assert in_batches([], 4) == [[]]


def field(name: str, *, personal: bool = False, hd: bool = True, fmt: str = "") -> SimpleNamespace:
    return SimpleNamespace(technical_name=name, personal_data=personal, destination_hd=hd, format=fmt)


DEFINITION = SimpleNamespace(
    fields=[
        field("IDC_PAT", personal=True, fmt="ssin"),
        field("TX_PAT_LAST_NAME", personal=True),
        field("DT_PAT_DOB", personal=True),
        field("CD_LOCAL", hd=False),
        field("MS_LVEF"),
        field("CD_DRUG"),
    ]
)


def test_the_split_keeps_identifiers_and_local_fields_away_from_the_variables() -> None:
    values = {
        "IDC_PAT": "85073003328",
        "TX_PAT_LAST_NAME": "Peeters",
        "DT_PAT_DOB": "1985-07-30",
        "CD_LOCAL": "x",
        "CD_LOCAL_2": "y",  # a repeat of a local field
        "MS_LVEF": 60,
        "CD_DRUG_1": "a",  # a repeat of a field for healthdata
    }
    identifier, variables = Splitter.of(DEFINITION)(values)
    assert identifier.ssin == "85073003328" and identifier.pseudocode is None
    assert variables == {"MS_LVEF": 60, "CD_DRUG_1": "a"}
    assert Splitter.of(DEFINITION)(values) == (identifier, variables)


def test_without_an_ssin_the_pseudocode_inputs_are_the_identifier() -> None:
    identifier, variables = Splitter.of(DEFINITION)(
        {"TX_PAT_LAST_NAME": "Peeters", "DT_PAT_DOB": "1985-07-30", "MS_LVEF": 55}
    )
    assert identifier.ssin == "" and identifier.pseudocode is not None
    assert (identifier.pseudocode.last_name, identifier.pseudocode.birth_date) == ("Peeters", "1985-07-30")
    assert variables == {"MS_LVEF": 55}
