"""Sample records for the DCD workbooks built by build_workbooks.py.

A plain module with no dependencies beyond the standard library: load it by path, e.g.

    spec = importlib.util.spec_from_file_location("dcd_samples", "services/registrations/dcds/samples.py")
    samples = importlib.util.module_from_spec(spec); spec.loader.exec_module(samples)

Records are flat dicts keyed by technical names, in CSV form (docs/dcd-format.md, Values):
every value a string, dates dd/mm/yyyy, datetimes dd/mm/yyyy HH:MM, times HH:MM,
multi-select codes joined by "|", repeats flattened FIELD_1 .. FIELD_n. Calculated and
read-only fields (MS_LOS, MS_AGE_ADM, MS_BMI, ...) are left out: the engine computes them.

- VALID[dcd_code]: one valid record per DCD.
- EXTRA_VALID: further valid records, each {"dcd", "why", "record"}.
- INVALID: records that break a rule, each
  {"dcd", "why", "record", "errors": [(technical field, rule), ...]}: exactly the errors
  the record gives. Rule names as in docs/dcd-format.md (required, constraint, type,
  number_format, choice, ssin, unknown_field, repeat_count) plus choice_filter (a code the
  filter excludes).
- DCDS[dcd_code]: project code, workbook file name and business key.

All people are fictitious; SSINs are made up but pass the whole SSIN rule of hdhub.common.ssin
(asserted on import).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hdhub.common.ssin import is_valid_ssin as ssin_is_valid

WORKBOOK_DIR = Path(__file__).resolve().parent.parent / "src" / "hdhub" / "registrations" / "dcds"
VERSION = "1.0.0"

DCDS: dict[str, dict[str, Any]] = {
    code: {
        "project_code": project,
        "dcd_number": number,
        "workbook": f"{project}_{code}_{VERSION}.xlsx",
        "business_key": key,
    }
    for code, project, number, key in (
        ("ANGIO_HOSP", "HDBP0012", 201, ["IDC_PAT", "DT_HOSPZ"]),
        ("ANGIO_HOSP_PCI", "HDBP0012", 202, ["IDC_PAT", "DT_HOSPZ"]),
        ("ANGIO_HOSP_FFR", "HDBP0012", 203, ["IDC_PAT", "DT_HOSPZ"]),
        ("ANGIO_HOSP_FFR_PCI", "HDBP0012", 204, ["IDC_PAT", "DT_HOSPZ"]),
        ("ANGIO_FU_PCI", "HDBP0012", 205, ["IDC_PAT", "DT_PCI_REF"]),
        ("HIV_SEQUENCE", "HDBP0263", 263, ["TX_ATT_RECRD"]),
        ("NGS", "HDBP0257", 257, ["TX_VCF_FILE_NAME"]),
        ("PACEMAKER", "HDBP0300", 300, ["IDC_PAT", "DT_IMPLANT"]),
    )
}


def workbook_path(dcd_code: str) -> Path:
    return WORKBOOK_DIR / str(DCDS[dcd_code]["workbook"])


# ----------------------------------------------------------------------------- SSINs

# Fictitious patients: (SSIN, date of birth, sex). The SSIN starts with the birth date
# (yymmdd); the serial (digits 7-9) is odd for men, even for women.
PAT_MAN_1985 = ("85040216932", "02/04/1985", "M")  # the example from the brief
PAT_WOMAN_1958 = ("58071412444", "14/07/1958", "F")
PAT_MAN_1949 = ("49.11.10-033.94", "10/11/1949", "M")  # with separators, as CSV allows
PAT_MAN_1962 = ("62112308720", "23/11/1962", "M")
PAT_MAN_2001 = ("01030506748", "05/03/2001", "M")  # born from 2000: check on int("2" + first 9)
PAT_WOMAN_1970 = ("70061523452", "15/06/1970", "F")

PHYSICIAN = "12345678730"  # fictitious NIHDI number of a physician (11 digits, starts with 1)


def patient(person: tuple[str, str, str]) -> dict[str, str]:
    ssin, dob, sex = person
    return {"IDC_PAT": ssin, "DT_PAT_DOB": dob, "CD_PAT_SEX": sex}


# ----------------------------------------------------------------------------- valid


def _angio_hosp() -> dict[str, str]:
    """Hospitalisation without FFR or PCI: coronary angiography only, with consent."""
    return {
        **patient(PAT_MAN_1949),
        "CD_RIZIV_TREAT_PHYS": PHYSICIAN,
        "CD_PAT_CONSENT": "yes",
        "DT_HOSPZ": "03/02/2025",
        "DT_DISCH": "05/02/2025",
        "CD_ADM_TYPE": "elective",
        "CD_INDICATION": "stable",
        "MS_HEIGHT": "171",
        "MS_WEIGHT": "80.0",
        "CD_RISK_FACTORS": "hypertension|dyslipidaemia|smoker_former",
        "CD_CARDIAC_HIST": "none",
        "MS_LVEF": "60",
        "MS_CREAT": "0.95",
        "CD_CAD_EXTENT": "0",
        # CD_CABG left out on purpose: its default is "no".
        "CD_DISCH_STATUS": "alive",
        "CD_DISCH_DEST": "home",
        "CD_DISCH_MED": "aspirin|statin",
    }


def _angio_hosp_pci() -> dict[str, str]:
    """NSTEMI, two PCI sessions: a DES in the LAD, then a drug-coated balloon with a minor bleed."""
    return {
        **patient(PAT_MAN_1985),
        "CD_RIZIV_TREAT_PHYS": PHYSICIAN,
        "DT_HOSPZ": "10/03/2025",
        "DT_DISCH": "14/03/2025",
        "CD_ADM_TYPE": "urgent",
        "CD_INDICATION": "nstemi",
        "DT_SYMPT_ONSET": "10/03/2025 06:40",
        "CD_CARDIOGENIC_SHOCK": "no",
        "CD_CARDIAC_ARREST": "no",
        "MS_HEIGHT": "178",
        "MS_WEIGHT": "92.4",
        "CD_RISK_FACTORS": "diabetes|smoker_current|dyslipidaemia",
        "CD_DIAB_TREAT": "oral",
        "CD_CARDIAC_HIST": "none",
        "MS_LVEF": "50",
        "MS_CREAT": "1.02",
        "CD_CAD_EXTENT": "2",
        "CD_LEFT_MAIN": "no",
        "MS_NB_PCI": "2",
        "DT_PCI_1": "10/03/2025",
        "TM_PCI_1": "14:35",
        "CD_PCI_URGENCY_1": "urgent",
        "CD_ACCESS_SITE_1": "radial",
        "CD_VESSELS_1": "lad",
        "CD_DEVICE_CAT_1": "stent",
        "CD_STENT_TYPE_1": "des",
        "MS_NB_STENT_1": "2",
        "MS_CONTRAST_1": "180.5",
        "CD_PCI_RESULT_1": "success",
        "CD_PCI_COMPL_1": "none",
        "DT_PCI_2": "12/03/2025",
        "TM_PCI_2": "09:10",
        "CD_PCI_URGENCY_2": "elective",
        "CD_ACCESS_SITE_2": "radial",
        "CD_VESSELS_2": "lcx|rca",
        "CD_DEVICE_CAT_2": "balloon",
        "CD_STENT_TYPE_2": "dcb",
        "MS_CONTRAST_2": "95.0",
        "CD_PCI_RESULT_2": "success",
        "CD_PCI_COMPL_2": "bleeding",
        "CD_BLEED_BARC_2": "2",
        "CD_CABG": "no",
        "CD_DISCH_STATUS": "alive",
        "CD_DISCH_DEST": "home",
        "CD_DISCH_MED": "aspirin|ticagrelor|statin",
    }


def _angio_hosp_ffr() -> dict[str, str]:
    """Two significant FFR measurements, then CABG during the same stay."""
    return {
        **patient(PAT_WOMAN_1958),
        "CD_RIZIV_TREAT_PHYS": PHYSICIAN,
        "DT_HOSPZ": "20/05/2025",
        "DT_DISCH": "30/05/2025",
        "CD_ADM_TYPE": "elective",
        "CD_INDICATION": "stable",
        "MS_HEIGHT": "164",
        "MS_WEIGHT": "71.5",
        "CD_RISK_FACTORS": "hypertension|family_history",
        "CD_CARDIAC_HIST": "none",
        "CD_CAD_EXTENT": "2",
        "CD_LEFT_MAIN": "no",
        "MS_NB_FFR": "2",
        "DT_FFR_1": "20/05/2025",
        "CD_FFR_VESSEL_1": "lad",
        "CD_FFR_METHOD_1": "ffr",
        "MS_FFR_1": "0.72",
        "CD_FFR_DECISION_1": "cabg",
        "DT_FFR_2": "20/05/2025",
        "CD_FFR_VESSEL_2": "lcx",
        "CD_FFR_METHOD_2": "ifr",
        "MS_FFR_2": "0.85",
        "CD_FFR_DECISION_2": "cabg",
        "CD_CABG": "yes",
        "MS_NB_CABG": "1",
        "DT_CABG_1": "23/05/2025",
        "CD_CABG_URGENCY_1": "elective",
        "MS_CABG_GRAFTS_1": "3",
        "CD_DISCH_STATUS": "alive",
        "CD_DISCH_DEST": "rehab",
        "CD_DISCH_MED": "aspirin|statin",
    }


def _angio_hosp_ffr_pci() -> dict[str, str]:
    """Transfer for unstable angina after CABG; FFR of the LAD, then a DES in the LAD and a graft."""
    return {
        **patient(PAT_MAN_1962),
        "CD_RIZIV_TREAT_PHYS": PHYSICIAN,
        "DT_HOSPZ": "08/09/2025",
        "DT_DISCH": "11/09/2025",
        "CD_ADM_TYPE": "transfer",
        "CD_RIZIV_HOSP_TRANSF": "71000123",
        "CD_INDICATION": "ua",
        "MS_HEIGHT": "182",
        "MS_WEIGHT": "88.0",
        "CD_RISK_FACTORS": "hypertension|diabetes|ckd",
        "CD_DIAB_TREAT": "insulin",
        "CD_CARDIAC_HIST": "mi|cabg",
        "MS_LVEF": "45",
        "MS_CREAT": "1.60",
        "CD_CAD_EXTENT": "3",
        "CD_LEFT_MAIN": "yes",
        "MS_NB_FFR": "1",
        "DT_FFR_1": "08/09/2025",
        "CD_FFR_VESSEL_1": "lad",
        "CD_FFR_METHOD_1": "ffr",
        "MS_FFR_1": "0.74",
        "CD_FFR_DECISION_1": "pci",
        "MS_NB_PCI": "1",
        "DT_PCI_1": "08/09/2025",
        "TM_PCI_1": "11:20",
        "CD_PCI_URGENCY_1": "urgent",
        "CD_ACCESS_SITE_1": "femoral",
        "CD_VESSELS_1": "lad|graft",
        "CD_DEVICE_CAT_1": "stent",
        "CD_STENT_TYPE_1": "des",
        "MS_NB_STENT_1": "1",
        "MS_CONTRAST_1": "210.0",
        "CD_PCI_RESULT_1": "success",
        "CD_PCI_COMPL_1": "none",
        "CD_CABG": "no",
        "CD_DISCH_STATUS": "alive",
        "CD_DISCH_DEST": "home",
        "CD_DISCH_MED": "aspirin|clopidogrel|oac|statin",
    }


def _angio_fu_pci() -> dict[str, str]:
    """One year after the first PCI of the ANGIO_HOSP_PCI sample: alive, no MACE, one re-admission."""
    return {
        **patient(PAT_MAN_1985),
        "CD_RIZIV_TREAT_PHYS": PHYSICIAN,
        "DT_PCI_REF": "10/03/2025",
        "DT_FU": "12/03/2026",
        "CD_FU_METHOD": "visit",
        "CD_VITAL_STATUS": "alive",
        "CD_MACE": "none",
        "CD_REHOSP": "yes",
        "MS_NB_REHOSP": "1",
        "CD_REHOSP_REASON": "arrhythmia",
        "CD_ANGINA_CCS": "0",
        "CD_FU_MED": "aspirin|ticagrelor|statin",
    }


def _hiv_sequence() -> dict[str, str]:
    """Baseline resistance test of a treatment-naive patient at the ARL HSP (the published example)."""
    return {
        **patient(PAT_MAN_2001),
        "CD_ARL": "HSP",
        "TX_LAB_SAMPLE_ID": "HSP-24-0815",
        "DT_SAMPLE": "20/08/2024",
        "CD_SAMPLE_TYPE": "plasma",
        "CD_HIV_TYPE": "hiv1",
        "CD_SEQ_REASON": "baseline",
        "CD_ART_STATUS": "naive",
        "MS_VIRAL_LOAD": "45000",
        "DT_SEQ": "26/08/2024",
        "CD_GENES": "PR|RT|IN",
        "CD_SEQ_METHOD": "sanger",
        "CD_SUBTYPE": "B",
        "CD_SUBTYPE_TOOL": "rega",
        "CD_DRM_DETECTED": "yes",
        "CD_DRM_CLASSES": "nnrti",
        "CD_INTERP_ALGO": "stanford",
        "TX_INTERP_ALGO_VERSION": "9.6",
        "TX_ATT": "HSP_20240827092014",
        "TX_ATT_RECRD": "HSP_20240827092014_00001",
    }


def _ngs() -> dict[str, str]:
    """Lung adenocarcinoma (FFPE) with an EGFR variant."""
    return {
        **patient(PAT_WOMAN_1970),
        "CD_RIZIV_LAB": "81234567",
        "CD_RIZIV_PRESC_PHYS": "10987654321",
        "TX_SAMPLE_ID": "NGS-2025-000123",
        "DT_SAMPLE": "02/06/2025",
        "CD_SAMPLE_TYPE": "ffpe",
        "CD_MALIGNANCY_CAT": "solid",
        "CD_TUMOUR_TYPE": "nsclc",
        "CD_SAMPLE_ORIGIN": "primary",
        "MS_TUMOUR_PCT": "40",
        "CD_NGS_INDICATION": "therapy",
        "DT_NGS_REPORT": "16/06/2025",
        "CD_NGS_METHOD": "amplicon",
        "CD_NGS_PLATFORM": "illumina",
        "TX_PANEL_NAME": "Lung panel v2.1",
        "CD_REF_GENOME": "GRCh38",
        "CD_GENES_TESTED": "ALK|BRAF|EGFR|KRAS|MET|ROS1",
        "MS_MEAN_DEPTH": "1500",
        "MS_LOD_VAF": "5.0",
        "CD_NGS_RESULT": "variant",
        "CD_GENES_VARIANT": "EGFR",
        "TX_VCF_FILE_NAME": "NGS_LAB1_2025_000123.vcf.gz",
    }


def _pacemaker() -> dict[str, str]:
    """A first dual-chamber pacemaker, reimbursement asked: makes a NIPPIN message."""
    return {
        **patient(PAT_MAN_1962),
        "DT_IMPLANT": "20/11/2025",
        "CD_IMPLANT_KIND": "first",
        "CD_DEVICE_TYPE": "dual",
        "CD_DEVICE": "PM-40012345",
        "TX_DEVICE_SERIAL": "SN-77001",
        "CD_NOMENCLATURE": "172711",
        "CD_RIZIV_IMPL_PHYS": PHYSICIAN,
        "CD_RIZIV_HOSP": "71000436",
        "CD_REIMBURSEMENT": "yes",
    }


VALID: dict[str, dict[str, str]] = {
    "ANGIO_HOSP": _angio_hosp(),
    "ANGIO_HOSP_PCI": _angio_hosp_pci(),
    "ANGIO_HOSP_FFR": _angio_hosp_ffr(),
    "ANGIO_HOSP_FFR_PCI": _angio_hosp_ffr_pci(),
    "ANGIO_FU_PCI": _angio_fu_pci(),
    "HIV_SEQUENCE": _hiv_sequence(),
    "NGS": _ngs(),
    "PACEMAKER": _pacemaker(),
}


def _without(record: dict[str, str], *fields: str) -> dict[str, str]:
    return {k: v for k, v in record.items() if k not in fields}


def _hiv_without_ssin() -> dict[str, str]:
    """A patient without a Belgian SSIN: the pseudocode inputs instead; NGS with a threshold."""
    record = _without(VALID["HIV_SEQUENCE"], "IDC_PAT", "CD_DRM_CLASSES")
    record.update(
        {
            "TX_PAT_LAST_NAME": "Voorbeeld-Test",
            "TX_PAT_FIRST_NAME": "Fictiva",
            "DT_PAT_DOB": "12/12/1990",
            "CD_PAT_SEX": "F",
            "CD_SEQ_METHOD": "ngs",
            "MS_NGS_THRESHOLD": "15.0",
            "CD_SUBTYPE": "CRF02_AG",
            "CD_DRM_DETECTED": "no",
            "TX_ATT_RECRD": "HSP_20240827092014_00002",
        }
    )
    return record


def _angio_fu_deceased() -> dict[str, str]:
    """Follow-up of a patient who died after a stent thrombosis (the events are still asked)."""
    record = _without(VALID["ANGIO_FU_PCI"], "CD_ANGINA_CCS", "CD_FU_MED", "MS_NB_REHOSP", "CD_REHOSP_REASON")
    record.update(
        {
            "CD_FU_METHOD": "records",
            "CD_VITAL_STATUS": "deceased",
            "DT_DEATH": "02/11/2025",
            "CD_DEATH_CAUSE": "cardiovascular",
            "CD_MACE": "stent_thrombosis|mi",
            "DT_MACE_FIRST": "30/10/2025",
            "CD_ST_ARC": "definite",
            "CD_REHOSP": "no",
        }
    )
    return record


EXTRA_VALID: list[dict[str, Any]] = [
    {
        "dcd": "HIV_SEQUENCE",
        "why": "patient without SSIN: names for the pseudocode",
        "record": _hiv_without_ssin(),
    },
    {"dcd": "ANGIO_FU_PCI", "why": "deceased patient with events", "record": _angio_fu_deceased()},
    {
        "dcd": "NGS",
        "why": "haematological malignancy in blood: no tumour percentage, no variant",
        "record": {
            **_without(VALID["NGS"], "CD_SAMPLE_ORIGIN", "MS_TUMOUR_PCT", "CD_GENES_VARIANT"),
            "CD_SAMPLE_TYPE": "blood",
            "CD_MALIGNANCY_CAT": "haemato",
            "CD_TUMOUR_TYPE": "aml",
            "CD_NGS_INDICATION": "diagnosis",
            "CD_GENES_TESTED": "FLT3|IDH1|IDH2|NPM1|TP53",
            "CD_NGS_RESULT": "no_variant",
            "TX_VCF_FILE_NAME": "NGS_LAB1_2025_000124.vcf",
        },
    },
]


# ----------------------------------------------------------------------------- invalid


def _broken(
    dcd: str,
    why: str,
    errors: list[tuple[str, str]],
    *,
    set_: dict[str, str] | None = None,
    drop: tuple[str, ...] = (),
) -> dict[str, Any]:
    record = _without(VALID[dcd], *drop)
    record.update(set_ or {})
    return {"dcd": dcd, "why": why, "record": record, "errors": errors}


INVALID: list[dict[str, Any]] = [
    # ---- ANGIO_HOSP
    _broken(
        "ANGIO_HOSP",
        "no consent for an optional registration",
        [("CD_PAT_CONSENT", "constraint")],
        set_={"CD_PAT_CONSENT": "no"},
    ),
    _broken(
        "ANGIO_HOSP",
        "SSIN check digits wrong (94 -> 95); the names are not asked for a given (if wrong) SSIN",
        [("IDC_PAT", "ssin")],
        set_={"IDC_PAT": "49.11.10-033.95"},
    ),
    _broken(
        "ANGIO_HOSP",
        "no such date (constraints comparing with it are not checked)",
        [("DT_PAT_DOB", "type")],
        set_={"DT_PAT_DOB": "31/02/1949"},
    ),
    # ---- ANGIO_HOSP_PCI
    _broken(
        "ANGIO_HOSP_PCI",
        "discharge 366 days after admission",
        [("DT_DISCH", "constraint")],
        set_={"DT_DISCH": "11/03/2026"},
    ),
    _broken(
        "ANGIO_HOSP_PCI",
        "physician NIHDI number of 10 digits",
        [("CD_RIZIV_TREAT_PHYS", "constraint")],
        set_={"CD_RIZIV_TREAT_PHYS": "1234567873"},
    ),
    _broken(
        "ANGIO_HOSP_PCI",
        "contrast volume with 2 decimals (format 4.1)",
        [("MS_CONTRAST_1", "number_format")],
        set_={"MS_CONTRAST_1": "180.55"},
    ),
    _broken(
        "ANGIO_HOSP_PCI",
        "a balloon type where the device category is stent (choice_filter)",
        [("CD_STENT_TYPE_1", "choice_filter")],
        set_={"CD_STENT_TYPE_1": "dcb"},
    ),
    _broken(
        "ANGIO_HOSP_PCI",
        "zero stents for a stent procedure",
        [("MS_NB_STENT_1", "constraint")],
        set_={"MS_NB_STENT_1": "0"},
    ),
    _broken("ANGIO_HOSP_PCI", "second PCI without date", [("DT_PCI_2", "required")], drop=("DT_PCI_2",)),
    _broken(
        "ANGIO_HOSP_PCI",
        "one PCI announced (MS_NB_PCI) but a second one sent",
        [
            (f"{name}_2", "repeat_count")
            for name in (
                "DT_PCI",
                "TM_PCI",
                "CD_PCI_URGENCY",
                "CD_ACCESS_SITE",
                "CD_VESSELS",
                "CD_DEVICE_CAT",
                "CD_STENT_TYPE",
                "MS_CONTRAST",
                "CD_PCI_RESULT",
                "CD_PCI_COMPL",
                "CD_BLEED_BARC",
            )
        ],
        set_={"MS_NB_PCI": "1"},
    ),
    _broken("ANGIO_HOSP_PCI", "no such time", [("TM_PCI_1", "type")], set_={"TM_PCI_1": "25:10"}),
    _broken(
        "ANGIO_HOSP_PCI", "sex code not in the list", [("CD_PAT_SEX", "choice")], set_={"CD_PAT_SEX": "Q"}
    ),
    _broken(
        "ANGIO_HOSP_PCI",
        "two P2Y12 inhibitors at discharge",
        [("CD_DISCH_MED", "constraint")],
        set_={"CD_DISCH_MED": "aspirin|prasugrel|ticagrelor"},
    ),
    _broken(
        "ANGIO_HOSP_PCI",
        "bypass graft treated without previous CABG",
        [("CD_VESSELS_1", "constraint")],
        set_={"CD_VESSELS_1": "lad|graft"},
    ),
    _broken(
        "ANGIO_HOSP_PCI",
        "bleeding complication without BARC type (relevant inside the repeat)",
        [("CD_BLEED_BARC_2", "required")],
        drop=("CD_BLEED_BARC_2",),
    ),
    _broken(
        "ANGIO_HOSP_PCI",
        "diabetes selected but no diabetes treatment",
        [("CD_DIAB_TREAT", "required")],
        drop=("CD_DIAB_TREAT",),
    ),
    _broken(
        "ANGIO_HOSP_PCI",
        "'none' combined with a risk factor",
        [("CD_RISK_FACTORS", "constraint")],
        set_={"CD_RISK_FACTORS": "none|diabetes"},
    ),
    _broken(
        "ANGIO_HOSP_PCI",
        "a column that is not in the DCD",
        [("TX_NOT_A_FIELD", "unknown_field")],
        set_={"TX_NOT_A_FIELD": "x"},
    ),
    # ---- ANGIO_HOSP_FFR
    _broken("ANGIO_HOSP_FFR", "FFR above 1.00", [("MS_FFR_1", "constraint")], set_={"MS_FFR_1": "1.25"}),
    _broken(
        "ANGIO_HOSP_FFR",
        "FFR with 3 decimals (format 1.2)",
        [("MS_FFR_2", "number_format")],
        set_={"MS_FFR_2": "0.855"},
    ),
    _broken(
        "ANGIO_HOSP_FFR",
        "FFR measured before admission",
        [("DT_FFR_1", "constraint")],
        set_={"DT_FFR_1": "19/05/2025"},
    ),
    _broken(
        "ANGIO_HOSP_FFR",
        "CABG after discharge",
        [("DT_CABG_1", "constraint")],
        set_={"DT_CABG_1": "31/05/2025"},
    ),
    # ---- ANGIO_HOSP_FFR_PCI
    _broken(
        "ANGIO_HOSP_FFR_PCI",
        "PCI registered but no diseased vessel",
        [("CD_CAD_EXTENT", "constraint")],
        set_={"CD_CAD_EXTENT": "0"},
        drop=("CD_LEFT_MAIN",),
    ),
    _broken(
        "ANGIO_HOSP_FFR_PCI",
        "hospital NIHDI number of 7 digits",
        [("CD_RIZIV_HOSP_TRANSF", "constraint")],
        set_={"CD_RIZIV_HOSP_TRANSF": "7100012"},
    ),
    _broken(
        "ANGIO_HOSP_FFR_PCI",
        "FFR value not a number",
        [("MS_FFR_1", "type")],
        set_={"MS_FFR_1": "low"},
    ),
    # ---- ANGIO_FU_PCI
    _broken(
        "ANGIO_FU_PCI",
        "follow-up six months after the PCI",
        [("DT_FU", "constraint")],
        set_={"DT_FU": "10/09/2025"},
    ),
    _broken(
        "ANGIO_FU_PCI",
        "'none' combined with an event",
        [("CD_MACE", "constraint")],
        set_={"CD_MACE": "none|mi"},
    ),
    _broken(
        "ANGIO_FU_PCI",
        "three reasons for one re-hospitalisation",
        [("CD_REHOSP_REASON", "constraint")],
        set_={"CD_REHOSP_REASON": "acs|hf|arrhythmia"},
    ),
    _broken(
        "ANGIO_FU_PCI",
        "deceased without date and cause of death",
        [("DT_DEATH", "required"), ("CD_DEATH_CAUSE", "required")],
        set_={"CD_VITAL_STATUS": "deceased"},
        drop=("CD_ANGINA_CCS", "CD_FU_MED"),
    ),
    # ---- HIV_SEQUENCE
    _broken(
        "HIV_SEQUENCE",
        "file name of another laboratory than CD_ARL",
        [("TX_ATT", "constraint")],
        set_={"TX_ATT": "UZB_20240827092014", "TX_ATT_RECRD": "UZB_20240827092014_00001"},
    ),
    _broken(
        "HIV_SEQUENCE",
        "file name with 13 digits (the record name then no longer starts with it)",
        [("TX_ATT", "constraint"), ("TX_ATT_RECRD", "constraint")],
        set_={"TX_ATT": "HSP_2024082709201"},
    ),
    _broken(
        "HIV_SEQUENCE",
        "record name of another file",
        [("TX_ATT_RECRD", "constraint")],
        set_={"TX_ATT_RECRD": "HSP_20240827092015_00001"},
    ),
    _broken(
        "HIV_SEQUENCE",
        "record number of 1 digit instead of 5",
        [("TX_ATT_RECRD", "constraint")],
        set_={"TX_ATT_RECRD": "HSP_20240827092014_1"},
    ),
    _broken(
        "HIV_SEQUENCE",
        "INSTI resistance without integrase sequenced",
        [("CD_DRM_CLASSES", "constraint")],
        set_={"CD_GENES": "PR|RT", "CD_DRM_CLASSES": "nnrti|insti"},
    ),
    _broken(
        "HIV_SEQUENCE",
        "treatment-naive patient with virological failure",
        [("CD_ART_STATUS", "constraint")],
        set_={"CD_SEQ_REASON": "failure"},
    ),
    _broken(
        "HIV_SEQUENCE",
        "sequenced before sampling",
        [("DT_SEQ", "constraint")],
        set_={"DT_SEQ": "19/08/2024"},
    ),
    _broken(
        "HIV_SEQUENCE",
        "no SSIN and no names for the pseudocode",
        [("TX_PAT_LAST_NAME", "required"), ("TX_PAT_FIRST_NAME", "required")],
        drop=("IDC_PAT",),
    ),
    {
        "dcd": "HIV_SEQUENCE",
        "why": "no SSIN and a last name of punctuation only",
        "record": {**_hiv_without_ssin(), "TX_PAT_LAST_NAME": "-"},
        "errors": [("TX_PAT_LAST_NAME", "name")],
    },
    _broken(
        "HIV_SEQUENCE", "viral load not a number", [("MS_VIRAL_LOAD", "type")], set_={"MS_VIRAL_LOAD": "45k"}
    ),
    # ---- NGS
    _broken(
        "NGS",
        "VCF file name with a folder",
        [("TX_VCF_FILE_NAME", "constraint")],
        set_={"TX_VCF_FILE_NAME": "runs/2025/NGS_LAB1_2025_000123.vcf.gz"},
    ),
    _broken(
        "NGS",
        "not a VCF file name",
        [("TX_VCF_FILE_NAME", "constraint")],
        set_={"TX_VCF_FILE_NAME": "NGS_LAB1_2025_000123.txt"},
    ),
    _broken(
        "NGS",
        "the patient's SSIN in the VCF file name",
        [("TX_VCF_FILE_NAME", "constraint")],
        set_={"TX_VCF_FILE_NAME": "NGS_70061523452.vcf"},
    ),
    _broken(
        "NGS", "tumour percentage above 100", [("MS_TUMOUR_PCT", "constraint")], set_={"MS_TUMOUR_PCT": "120"}
    ),
    _broken(
        "NGS",
        "FFPE sample without tumour percentage (required by expression)",
        [("MS_TUMOUR_PCT", "required")],
        drop=("MS_TUMOUR_PCT",),
    ),
    _broken(
        "NGS",
        "a haematological tumour type for a solid malignancy (choice_filter)",
        [("CD_TUMOUR_TYPE", "choice_filter")],
        set_={"CD_TUMOUR_TYPE": "aml"},
    ),
    _broken(
        "NGS",
        "limit of detection with 2 decimals (format 2.1)",
        [("MS_LOD_VAF", "number_format")],
        set_={"MS_LOD_VAF": "5.25"},
    ),
    _broken(
        "NGS",
        "more genes with a variant than genes analysed",
        [("CD_GENES_VARIANT", "constraint")],
        set_={"CD_GENES_VARIANT": "ALK|BRAF|EGFR|KRAS|MET|ROS1|TP53"},
    ),
    _broken(
        "NGS",
        "prescriber NIHDI number not starting with 1",
        [("CD_RIZIV_PRESC_PHYS", "constraint")],
        set_={"CD_RIZIV_PRESC_PHYS": "20987654321"},
    ),
]


def _self_check() -> None:
    for person in (PAT_MAN_1985, PAT_WOMAN_1958, PAT_MAN_1949, PAT_MAN_1962, PAT_MAN_2001, PAT_WOMAN_1970):
        assert ssin_is_valid(person[0]), person
        digits = "".join(c for c in person[0] if c.isdigit())
        dd, mm, yyyy = person[1].split("/")
        assert digits[:6] == yyyy[2:] + mm + dd, person
        assert (int(digits[6:9]) % 2 == 1) == (person[2] == "M"), person
    assert not ssin_is_valid("49.11.10-033.95")
    assert set(VALID) == set(DCDS)
    for sample in [*EXTRA_VALID, *INVALID]:
        assert sample["dcd"] in DCDS, sample


_self_check()
