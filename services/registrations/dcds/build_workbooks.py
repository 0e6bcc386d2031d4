"""Generate the DCD workbooks that hdhub ships.

Each data collection definition (DCD) is an XLSForm workbook in the dialect described in
docs/dcd-format.md (sheets survey, choices, settings, hd). The content is data below: one
function per registry, shared blocks (patient, hospitalisation, PCI, FFR, ...) reused.

The workbooks are hdhub's own reconstruction from public descriptions of the registries
(see each workbook's settings/source and services/registrations/dcds/README.md); they are
NOT the official healthdata.be DCDs.

Run from the repository root:

    .venv/bin/python services/registrations/dcds/build_workbooks.py

The output is byte-for-byte deterministic (fixed document properties and zip timestamps).
"""

from __future__ import annotations

import datetime as dt
import io
import re
import sys
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from openpyxl import Workbook
from openpyxl.styles import Font

HERE = Path(__file__).resolve().parent
OUT_DIR = HERE.parent / "src" / "hdhub" / "registrations" / "dcds"

LANGS = ("en", "fr", "nl", "de")
VERSION = "1.0.0"
# Fixed document properties and zip entry times: the same input gives the same bytes.
FIXED_TIME = dt.datetime(2025, 1, 1, 0, 0, 0)
AUTHOR = "hdhub"


class T(NamedTuple):
    """A text in the four languages hdhub supports."""

    en: str
    fr: str
    nl: str
    de: str


Row = dict[str, object]

SURVEY_COLUMNS: list[str] = [
    "type",
    "name",
    "name::technical",
    *(f"label::{lang}" for lang in LANGS),
    *(f"hint::{lang}" for lang in LANGS),
    "required",
    *(f"required_message::{lang}" for lang in LANGS),
    "constraint",
    *(f"constraint_message::{lang}" for lang in LANGS),
    "relevant",
    "calculation",
    "default",
    "read_only",
    "choice_filter",
    "repeat_count",
    "hd::repeat_max",
    "hd::number_format",
    "hd::format",
    "hd::personal_data",
    "destination::hd",
    "destination::nippin",
    "destination::nippin_xml_name",
    "destination::nippin_relevant",
]

REQUIRED_MESSAGE = T(
    "This field is required.",
    "Ce champ est obligatoire.",
    "Dit veld is verplicht.",
    "Dieses Feld ist ein Pflichtfeld.",
)


# --------------------------------------------------------------------------------------
# Survey row builders
# --------------------------------------------------------------------------------------


def _texts(row: Row, column: str, text: T | None) -> None:
    if text is not None:
        for lang, value in zip(LANGS, text, strict=True):
            row[f"{column}::{lang}"] = value


def q(
    type_: str,
    name: str,
    label: T,
    *,
    hint: T | None = None,
    required: bool | str = False,
    constraint: str | None = None,
    message: T | None = None,
    relevant: str | None = None,
    calculation: str | None = None,
    default: str | None = None,
    read_only: bool = False,
    choice_filter: str | None = None,
    number_format: str | None = None,
    fmt: str | None = None,
    personal: bool = False,
    to_hd: bool = True,
    nippin: tuple[str, str | None] | None = None,
) -> Row:
    """One question. `name` is both the XLSForm name and the technical name.

    required: True for `yes`, or an expression. message: the constraint message.
    nippin: (xml element name, nippin_relevant expression or None) for billing fields.
    """
    if constraint is not None and message is None:
        raise ValueError(f"{name}: a constraint needs a constraint message")
    row: Row = {"type": type_, "name": name, "name::technical": name}
    _texts(row, "label", label)
    _texts(row, "hint", hint)
    if required:
        row["required"] = "yes" if required is True else required
        _texts(row, "required_message", REQUIRED_MESSAGE)
    if constraint is not None:
        row["constraint"] = constraint
        _texts(row, "constraint_message", message)
    if relevant is not None:
        row["relevant"] = relevant
    if calculation is not None:
        row["calculation"] = calculation
    if default is not None:
        row["default"] = default
    if read_only:
        row["read_only"] = "yes"
    if choice_filter is not None:
        row["choice_filter"] = choice_filter
    if number_format is not None:
        row["hd::number_format"] = number_format
    if fmt is not None:
        row["hd::format"] = fmt
    if personal:
        row["hd::personal_data"] = "yes"
    if not to_hd:
        row["destination::hd"] = "no"
    if nippin is not None:
        row["destination::nippin"] = "yes"
        row["destination::nippin_xml_name"] = nippin[0]
        if nippin[1] is not None:
            row["destination::nippin_relevant"] = nippin[1]
    return row


def calc(name: str, label: T, calculation: str) -> Row:
    """A `calculate` field: derived, never input."""
    return q("calculate", name, label, calculation=calculation)


def note(name: str, label: T, *, relevant: str | None = None) -> Row:
    row: Row = {"type": "note", "name": name}
    _texts(row, "label", label)
    if relevant is not None:
        row["relevant"] = relevant
    return row


Rows = Row | Sequence["Rows"]  # a row, or (nested) sequences of rows


def _flatten(items: Iterable[Rows]) -> list[Row]:
    """Rows and (nested) lists of rows, in order, as one flat list."""
    out: list[Row] = []
    for item in items:
        if isinstance(item, dict):
            out.append(item)
        else:
            out.extend(_flatten(item))
    return out


def group(name: str, label: T, *items: Rows, relevant: str | None = None) -> list[Row]:
    begin: Row = {"type": "begin_group", "name": name}
    _texts(begin, "label", label)
    if relevant is not None:
        begin["relevant"] = relevant
    return [begin, *_flatten(items), {"type": "end_group", "name": name}]


def repeat(
    name: str,
    label: T,
    *items: Rows,
    repeat_max: int,
    count: str | None = None,
    relevant: str | None = None,
) -> list[Row]:
    """A repeat, flattened in CSV and API as FIELD_1 .. FIELD_<repeat_max>."""
    begin: Row = {"type": "begin_repeat", "name": name, "hd::repeat_max": repeat_max}
    _texts(begin, "label", label)
    if count is not None:
        begin["repeat_count"] = count
    if relevant is not None:
        begin["relevant"] = relevant
    return [begin, *_flatten(items), {"type": "end_repeat", "name": name}]


# --------------------------------------------------------------------------------------
# Choice lists: list name -> [(code, label, extra columns)]
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Choice:
    code: str
    label: T
    extra: dict[str, str] = field(default_factory=dict)


def same(text: str) -> T:
    """A label that reads the same in every language (codes, acronyms, brand names)."""
    return T(text, text, text, text)


CHOICES: dict[str, list[Choice]] = {}


def choices(list_name: str, *items: Choice | tuple[str, T] | tuple[str, T, dict[str, str]]) -> str:
    """Register a choice list; returns its name for use in `select_one NAME`."""
    if list_name in CHOICES:
        raise ValueError(f"choice list {list_name} defined twice")
    CHOICES[list_name] = [item if isinstance(item, Choice) else Choice(*item) for item in items]
    return list_name


OTHER = T("Other", "Autre", "Andere", "Andere")
UNKNOWN = T("Unknown", "Inconnu", "Onbekend", "Unbekannt")
NONE_OF_THESE = T("None of these", "Aucun de ceux-ci", "Geen van deze", "Keines davon")

YES_NO = choices(
    "yes_no",
    ("yes", T("Yes", "Oui", "Ja", "Ja")),
    ("no", T("No", "Non", "Nee", "Nein")),
)
YES_NO_UNKNOWN = choices(
    "yes_no_unknown",
    ("yes", T("Yes", "Oui", "Ja", "Ja")),
    ("no", T("No", "Non", "Nee", "Nein")),
    ("unknown", UNKNOWN),
)
SEX = choices(
    "sex",
    ("M", T("Male", "Masculin", "Mannelijk", "Männlich")),
    ("F", T("Female", "Féminin", "Vrouwelijk", "Weiblich")),
    ("X", T("Other or undetermined", "Autre ou indéterminé", "Ander of onbepaald", "Divers oder unbestimmt")),
)

# Messages reused by several constraints.
NONE_EXCLUSIVE = T(
    "'None' cannot be combined with another answer.",
    "« Aucun » ne peut pas être combiné avec une autre réponse.",
    "'Geen' kan niet met een ander antwoord gecombineerd worden.",
    "„Keine“ kann nicht mit einer anderen Antwort kombiniert werden.",
)
NOT_IN_FUTURE = T(
    "The date cannot be in the future.",
    "La date ne peut pas être dans le futur.",
    "De datum kan niet in de toekomst liggen.",
    "Das Datum darf nicht in der Zukunft liegen.",
)
MAX_100_CHARS = T(
    "At most 100 characters.",
    "100 caractères au maximum.",
    "Maximaal 100 tekens.",
    "Höchstens 100 Zeichen.",
)


def none_exclusive(extra: str | None = None) -> str:
    """Constraint for a select_multiple whose `none` code excludes all others."""
    rule = "not(selected(., 'none') and count-selected(.) > 1)"
    return rule if extra is None else f"{rule} and {extra}"


# --------------------------------------------------------------------------------------
# Shared blocks
# --------------------------------------------------------------------------------------

PATIENT_NO_SSIN_NOTE = T(
    "For a foreign patient without a Belgian national register number (SSIN), leave the SSIN "
    "empty and give last name and first name: a pseudocode is then made from the date of birth, "
    "sex, last name and first name.",
    "Pour un patient étranger sans numéro de registre national belge (NISS), laissez le NISS vide "
    "et indiquez le nom et le prénom : un pseudocode est alors créé à partir de la date de "
    "naissance, du sexe, du nom et du prénom.",
    "Voor een buitenlandse patiënt zonder Belgisch rijksregisternummer (INSZ) blijft het INSZ leeg "
    "en vult u de naam en de voornaam in: er wordt dan een pseudocode gemaakt op basis van de "
    "geboortedatum, het geslacht, de naam en de voornaam.",
    "Bei einem ausländischen Patienten ohne belgische Nationalregisternummer (ENSS) bleibt die "
    "ENSS leer und es werden Nachname und Vorname angegeben: Aus Geburtsdatum, Geschlecht, "
    "Nachname und Vorname wird dann ein Pseudocode gebildet.",
)


def patient_block(*, sex_personal: bool, nippin: bool = False) -> list[Row]:
    """Patient identification: SSIN, or for patients without one the pseudocode inputs.

    sex_personal: whether CD_PAT_SEX is split off as personal data (HIV_Sequence: it is
    only a pseudocode input there; the clinical registries keep it as a variable).
    nippin: whether the SSIN goes into the billing message (reimbursed acts).
    """
    no_ssin = "${IDC_PAT} = ''"
    name_rule = "string-length(.) <= 100"
    return group(
        "patient",
        T("Patient", "Patient", "Patiënt", "Patient"),
        note("NOTE_PAT_NO_SSIN", PATIENT_NO_SSIN_NOTE),
        q(
            "text",
            "IDC_PAT",
            T(
                "National register number (SSIN) of the patient",
                "Numéro de registre national (NISS) du patient",
                "Rijksregisternummer (INSZ) van de patiënt",
                "Nationalregisternummer (ENSS) des Patienten",
            ),
            hint=T(
                "11 digits, with or without separators (85.04.02-169.32). Leave empty for a "
                "patient without a Belgian SSIN.",
                "11 chiffres, avec ou sans séparateurs (85.04.02-169.32). Laissez vide pour un "
                "patient sans NISS belge.",
                "11 cijfers, met of zonder scheidingstekens (85.04.02-169.32). Laat leeg voor een "
                "patiënt zonder Belgisch INSZ.",
                "11 Ziffern, mit oder ohne Trennzeichen (85.04.02-169.32). Leer lassen bei einem "
                "Patienten ohne belgische ENSS.",
            ),
            fmt="ssin",
            personal=True,
            nippin=("PatientSSIN", None) if nippin else None,
        ),
        q(
            "text",
            "TX_PAT_LAST_NAME",
            T("Last name", "Nom", "Naam", "Nachname"),
            relevant=no_ssin,
            required=True,
            constraint=name_rule,
            message=MAX_100_CHARS,
            personal=True,
        ),
        q(
            "text",
            "TX_PAT_FIRST_NAME",
            T("First name", "Prénom", "Voornaam", "Vorname"),
            relevant=no_ssin,
            required=True,
            constraint=name_rule,
            message=MAX_100_CHARS,
            personal=True,
        ),
        q(
            "date",
            "DT_PAT_DOB",
            T("Date of birth", "Date de naissance", "Geboortedatum", "Geburtsdatum"),
            required=True,
            constraint=". <= today() and (today() - .) div 365.25 <= 120",
            message=T(
                "The date of birth cannot be in the future nor more than 120 years ago.",
                "La date de naissance ne peut être ni dans le futur ni il y a plus de 120 ans.",
                "De geboortedatum kan niet in de toekomst liggen en niet meer dan 120 jaar geleden.",
                "Das Geburtsdatum darf weder in der Zukunft noch mehr als 120 Jahre zurück liegen.",
            ),
            personal=True,
        ),
        q(
            f"select_one {SEX}",
            "CD_PAT_SEX",
            T("Sex", "Sexe", "Geslacht", "Geschlecht"),
            required=True,
            personal=sex_personal,
        ),
    )


def treating_physician(*, nippin: bool = False) -> Row:
    return q(
        "text",
        "CD_RIZIV_TREAT_PHYS",
        T(
            "NIHDI number of the treating physician",
            "Numéro INAMI du médecin traitant",
            "RIZIV-nummer van de behandelende arts",
            "LIKIV-Nummer des behandelnden Arztes",
        ),
        hint=T(
            "11 digits without separators: 1-23456-78-730 is entered as 12345678730.",
            "11 chiffres sans séparateurs : 1-23456-78-730 s'encode 12345678730.",
            "11 cijfers zonder scheidingstekens: 1-23456-78-730 wordt 12345678730.",
            "11 Ziffern ohne Trennzeichen: 1-23456-78-730 wird als 12345678730 eingegeben.",
        ),
        required=True,
        constraint="regex(., '^1[0-9]{10}$')",
        message=T(
            "A physician's NIHDI number has 11 digits and starts with 1.",
            "Le numéro INAMI d'un médecin compte 11 chiffres et commence par 1.",
            "Het RIZIV-nummer van een arts telt 11 cijfers en begint met 1.",
            "Die LIKIV-Nummer eines Arztes hat 11 Ziffern und beginnt mit 1.",
        ),
        nippin=("PrescriberNihdi", None) if nippin else None,
    )


# ----- ANGIO choice lists --------------------------------------------------------------

ADM_TYPE = choices(
    "adm_type",
    ("elective", T("Planned (elective)", "Programmée (élective)", "Gepland (electief)", "Geplant (elektiv)")),
    (
        "urgent",
        T("Urgent, not planned", "Urgente, non programmée", "Dringend, niet gepland", "Dringlich, ungeplant"),
    ),
    (
        "transfer",
        T(
            "Transfer from another hospital",
            "Transfert depuis un autre hôpital",
            "Overplaatsing vanuit een ander ziekenhuis",
            "Verlegung aus einem anderen Krankenhaus",
        ),
    ),
)
INDICATION = choices(
    "indication",
    (
        "stable",
        T(
            "Chronic coronary syndrome (stable angina)",
            "Syndrome coronarien chronique (angor stable)",
            "Chronisch coronair syndroom (stabiele angor)",
            "Chronisches Koronarsyndrom (stabile Angina pectoris)",
        ),
    ),
    ("silent", T("Silent ischaemia", "Ischémie silencieuse", "Stille ischemie", "Stumme Ischämie")),
    ("ua", T("Unstable angina", "Angor instable", "Onstabiele angor", "Instabile Angina pectoris")),
    (
        "nstemi",
        T(
            "NSTEMI (myocardial infarction without ST elevation)",
            "NSTEMI (infarctus du myocarde sans sus-décalage du segment ST)",
            "NSTEMI (myocardinfarct zonder ST-segmentelevatie)",
            "NSTEMI (Myokardinfarkt ohne ST-Hebung)",
        ),
    ),
    (
        "stemi",
        T(
            "STEMI (myocardial infarction with ST elevation)",
            "STEMI (infarctus du myocarde avec sus-décalage du segment ST)",
            "STEMI (myocardinfarct met ST-segmentelevatie)",
            "STEMI (Myokardinfarkt mit ST-Hebung)",
        ),
    ),
    (
        "hf",
        T(
            "Heart failure or cardiomyopathy work-up",
            "Bilan d'insuffisance cardiaque ou de cardiomyopathie",
            "Onderzoek van hartfalen of cardiomyopathie",
            "Abklärung einer Herzinsuffizienz oder Kardiomyopathie",
        ),
    ),
    (
        "preop",
        T(
            "Work-up before valve or other cardiac surgery",
            "Bilan avant chirurgie valvulaire ou autre chirurgie cardiaque",
            "Onderzoek vóór klepchirurgie of andere hartchirurgie",
            "Abklärung vor Klappen- oder anderer Herzchirurgie",
        ),
    ),
    (
        "arrhythmia",
        T(
            "Ventricular arrhythmia or resuscitated cardiac arrest",
            "Arythmie ventriculaire ou arrêt cardiaque réanimé",
            "Ventriculaire ritmestoornis of gereanimeerde hartstilstand",
            "Ventrikuläre Rhythmusstörung oder reanimierter Herzstillstand",
        ),
    ),
    ("other", OTHER),
)
RISK_FACTORS = choices(
    "risk_factor",
    ("diabetes", T("Diabetes mellitus", "Diabète sucré", "Diabetes mellitus", "Diabetes mellitus")),
    (
        "hypertension",
        T(
            "Arterial hypertension",
            "Hypertension artérielle",
            "Arteriële hypertensie",
            "Arterielle Hypertonie",
        ),
    ),
    ("dyslipidaemia", T("Dyslipidaemia", "Dyslipidémie", "Dyslipidemie", "Dyslipidämie")),
    ("smoker_current", T("Current smoker", "Fumeur actuel", "Huidige roker", "Aktiver Raucher")),
    ("smoker_former", T("Former smoker", "Ancien fumeur", "Ex-roker", "Ehemaliger Raucher")),
    (
        "family_history",
        T(
            "Family history of premature coronary artery disease",
            "Antécédents familiaux de maladie coronarienne précoce",
            "Familiale voorgeschiedenis van vroegtijdig coronairlijden",
            "Familienanamnese einer vorzeitigen koronaren Herzkrankheit",
        ),
    ),
    (
        "ckd",
        T(
            "Chronic kidney disease",
            "Insuffisance rénale chronique",
            "Chronische nierinsufficiëntie",
            "Chronische Niereninsuffizienz",
        ),
    ),
    ("none", NONE_OF_THESE),
)
DIABETES_TREATMENT = choices(
    "diabetes_treatment",
    ("diet", T("Diet only", "Régime seul", "Enkel dieet", "Nur Diät")),
    (
        "oral",
        T(
            "Oral or non-insulin injectable glucose-lowering drugs",
            "Antidiabétiques oraux ou injectables non insuliniques",
            "Orale of niet-insuline injecteerbare bloedsuikerverlagende middelen",
            "Orale oder nicht-insulinhaltige injizierbare Antidiabetika",
        ),
    ),
    ("insulin", T("Insulin", "Insuline", "Insuline", "Insulin")),
)
CARDIAC_HISTORY = choices(
    "cardiac_history",
    (
        "mi",
        T(
            "Previous myocardial infarction",
            "Infarctus du myocarde antérieur",
            "Vroeger myocardinfarct",
            "Früherer Myokardinfarkt",
        ),
    ),
    ("pci", T("Previous PCI", "ICP antérieure", "Vroegere PCI", "Frühere PCI")),
    (
        "cabg",
        T("Previous CABG", "Pontage coronarien antérieur", "Vroegere CABG", "Frühere Bypassoperation (CABG)"),
    ),
    (
        "stroke",
        T(
            "Previous stroke or TIA",
            "AVC ou AIT antérieur",
            "Vroeger CVA of TIA",
            "Früherer Schlaganfall oder TIA",
        ),
    ),
    (
        "pad",
        T(
            "Peripheral arterial disease",
            "Artériopathie périphérique",
            "Perifeer arterieel vaatlijden",
            "Periphere arterielle Verschlusskrankheit",
        ),
    ),
    ("hf", T("Heart failure", "Insuffisance cardiaque", "Hartfalen", "Herzinsuffizienz")),
    ("none", NONE_OF_THESE),
)
CAD_EXTENT = choices(
    "cad_extent",
    (
        "0",
        T(
            "No significant coronary stenosis",
            "Pas de sténose coronaire significative",
            "Geen significante coronaire stenose",
            "Keine signifikante Koronarstenose",
        ),
    ),
    ("1", T("One-vessel disease", "Atteinte monotronculaire", "Eénvatslijden", "Eingefäßerkrankung")),
    ("2", T("Two-vessel disease", "Atteinte bitronculaire", "Tweevatslijden", "Zweigefäßerkrankung")),
    ("3", T("Three-vessel disease", "Atteinte tritronculaire", "Drievatslijden", "Dreigefäßerkrankung")),
)
URGENCY = choices(
    "urgency",
    ("elective", T("Elective", "Programmée", "Gepland", "Geplant")),
    ("urgent", T("Urgent", "Urgente", "Dringend", "Dringlich")),
    ("emergency", T("Emergency", "En extrême urgence", "Spoedeisend", "Notfall")),
)
DISCHARGE_STATUS = choices(
    "discharge_status",
    ("alive", T("Alive", "Vivant", "In leven", "Lebend")),
    (
        "deceased",
        T(
            "Deceased in hospital",
            "Décédé à l'hôpital",
            "Overleden in het ziekenhuis",
            "Im Krankenhaus verstorben",
        ),
    ),
)
DISCHARGE_DESTINATION = choices(
    "discharge_destination",
    ("home", T("Home", "Domicile", "Thuis", "Nach Hause")),
    ("hospital", T("Other hospital", "Autre hôpital", "Ander ziekenhuis", "Anderes Krankenhaus")),
    (
        "rehab",
        T("Rehabilitation centre", "Centre de revalidation", "Revalidatiecentrum", "Rehabilitationszentrum"),
    ),
    ("nursing_home", T("Nursing home", "Maison de repos et de soins", "Woonzorgcentrum", "Pflegeheim")),
    ("other", OTHER),
)
MEDICATION = choices(
    "medication",
    ("aspirin", T("Aspirin", "Aspirine", "Aspirine", "Acetylsalicylsäure")),
    ("clopidogrel", same("Clopidogrel")),
    ("prasugrel", same("Prasugrel")),
    ("ticagrelor", same("Ticagrelor")),
    ("oac", T("Oral anticoagulant", "Anticoagulant oral", "Oraal anticoagulans", "Orales Antikoagulans")),
    ("statin", T("Statin", "Statine", "Statine", "Statin")),
    ("none", NONE_OF_THESE),
)
ACCESS_SITE = choices(
    "access_site",
    ("radial", T("Radial", "Radiale", "Radiaal", "Radial")),
    ("femoral", T("Femoral", "Fémorale", "Femoraal", "Femoral")),
    ("ulnar", T("Ulnar", "Ulnaire", "Ulnair", "Ulnar")),
    ("brachial", T("Brachial", "Humérale", "Brachiaal", "Brachial")),
    ("other", OTHER),
)
VESSEL = choices(
    "vessel",
    ("lm", T("Left main", "Tronc commun", "Hoofdstam", "Hauptstamm")),
    (
        "lad",
        T(
            "Left anterior descending (LAD)",
            "Interventriculaire antérieure (IVA)",
            "Ramus interventricularis anterior (LAD)",
            "Ramus interventricularis anterior (RIVA)",
        ),
    ),
    (
        "lcx",
        T("Circumflex (LCX)", "Circonflexe (Cx)", "Ramus circumflexus (LCX)", "Ramus circumflexus (RCX)"),
    ),
    (
        "rca",
        T(
            "Right coronary artery (RCA)",
            "Coronaire droite (CD)",
            "Rechter kransslagader (RCA)",
            "Rechte Koronararterie (RCA)",
        ),
    ),
    ("graft", T("Bypass graft", "Pontage", "Bypassgraft", "Bypassgraft")),
)
DEVICE_CATEGORY = choices(
    "device_category",
    ("stent", same("Stent")),
    (
        "scaffold",
        T(
            "Bioresorbable scaffold",
            "Armature biorésorbable",
            "Bioresorbeerbare scaffold",
            "Bioresorbierbares Scaffold",
        ),
    ),
    (
        "balloon",
        T(
            "Balloon only, no stent",
            "Ballon seul, sans stent",
            "Enkel ballon, geen stent",
            "Nur Ballon, kein Stent",
        ),
    ),
)
STENT_TYPE = choices(
    "stent_type",
    (
        "des",
        T(
            "Drug-eluting stent (DES)",
            "Stent actif (DES)",
            "Medicatie-afgevende stent (DES)",
            "Medikamentenfreisetzender Stent (DES)",
        ),
        {"category": "stent"},
    ),
    (
        "bms",
        T(
            "Bare-metal stent (BMS)",
            "Stent nu (BMS)",
            "Niet-gecoate metalen stent (BMS)",
            "Unbeschichteter Metallstent (BMS)",
        ),
        {"category": "stent"},
    ),
    (
        "covered",
        T("Covered stent", "Stent couvert", "Gecoverde stent", "Gecoverter Stent"),
        {"category": "stent"},
    ),
    (
        "plla",
        T(
            "Polymer (PLLA) scaffold",
            "Armature en polymère (PLLA)",
            "Polymeer (PLLA) scaffold",
            "Polymer-Scaffold (PLLA)",
        ),
        {"category": "scaffold"},
    ),
    (
        "magnesium",
        T("Magnesium scaffold", "Armature en magnésium", "Magnesium scaffold", "Magnesium-Scaffold"),
        {"category": "scaffold"},
    ),
    (
        "dcb",
        T(
            "Drug-coated balloon",
            "Ballon actif",
            "Medicatie-gecoate ballon",
            "Medikamentenbeschichteter Ballon",
        ),
        {"category": "balloon"},
    ),
    (
        "poba",
        T(
            "Plain balloon angioplasty (POBA)",
            "Angioplastie au ballon simple (POBA)",
            "Gewone ballondilatatie (POBA)",
            "Einfache Ballonangioplastie (POBA)",
        ),
        {"category": "balloon"},
    ),
    (
        "cutting",
        T(
            "Cutting or scoring balloon",
            "Ballon coupant ou de scoring",
            "Cutting- of scoringballon",
            "Cutting- oder Scoring-Ballon",
        ),
        {"category": "balloon"},
    ),
)
PCI_RESULT = choices(
    "pci_result",
    (
        "success",
        T(
            "Successful (residual stenosis < 30 %, TIMI 3 flow)",
            "Réussie (sténose résiduelle < 30 %, flux TIMI 3)",
            "Geslaagd (reststenose < 30 %, TIMI 3-flow)",
            "Erfolgreich (Reststenose < 30 %, TIMI-3-Fluss)",
        ),
    ),
    (
        "partial",
        T("Partially successful", "Partiellement réussie", "Gedeeltelijk geslaagd", "Teilweise erfolgreich"),
    ),
    ("failure", T("Failed", "Échec", "Mislukt", "Erfolglos")),
)
PCI_COMPLICATION = choices(
    "pci_complication",
    ("none", T("None", "Aucune", "Geen", "Keine")),
    (
        "death",
        T(
            "Death in the catheterisation laboratory",
            "Décès en salle de cathétérisme",
            "Overlijden in het katheterisatielabo",
            "Tod im Herzkatheterlabor",
        ),
    ),
    (
        "mi",
        T(
            "Periprocedural myocardial infarction",
            "Infarctus du myocarde périprocédural",
            "Periprocedureel myocardinfarct",
            "Periprozeduraler Myokardinfarkt",
        ),
    ),
    (
        "dissection",
        T("Coronary dissection", "Dissection coronaire", "Coronaire dissectie", "Koronardissektion"),
    ),
    (
        "perforation",
        T(
            "Coronary perforation or tamponade",
            "Perforation coronaire ou tamponnade",
            "Coronaire perforatie of tamponnade",
            "Koronarperforation oder Tamponade",
        ),
    ),
    ("no_reflow", T("No-reflow", "No-reflow", "No-reflow", "No-Reflow")),
    ("bleeding", T("Bleeding", "Saignement", "Bloeding", "Blutung")),
    ("stroke", T("Stroke", "Accident vasculaire cérébral", "Cerebrovasculair accident", "Schlaganfall")),
    (
        "emergency_cabg",
        T("Emergency CABG", "Pontage coronarien en urgence", "Dringende CABG", "Notfall-Bypassoperation"),
    ),
    ("other", OTHER),
)
BARC = choices(
    "barc",
    *(
        (code, T(f"BARC type {code}", f"BARC type {code}", f"BARC type {code}", f"BARC Typ {code}"))
        for code in ("1", "2", "3a", "3b", "3c", "4", "5")
    ),
)
FFR_METHOD = choices(
    "ffr_method",
    ("ffr", T("Hyperaemic FFR", "FFR sous hyperhémie", "Hyperemische FFR", "Hyperämische FFR")),
    (
        "ifr",
        T(
            "iFR or other resting index",
            "iFR ou autre indice au repos",
            "iFR of andere rustindex",
            "iFR oder anderer Ruheindex",
        ),
    ),
)
FFR_DECISION = choices(
    "ffr_decision",
    ("pci", same("PCI")),
    ("cabg", same("CABG")),
    (
        "medical",
        T(
            "Medical treatment",
            "Traitement médical",
            "Medicamenteuze behandeling",
            "Medikamentöse Behandlung",
        ),
    ),
)


# ----- ANGIO blocks -------------------------------------------------------------------

ACS = "(${CD_INDICATION} = 'stemi' or ${CD_INDICATION} = 'nstemi')"
WITHIN_STAY = ". >= ${DT_HOSPZ} and . <= ${DT_DISCH}"
WITHIN_STAY_MESSAGE = T(
    "The date must lie between the admission date and the discharge date.",
    "La date doit se situer entre la date d'admission et la date de sortie.",
    "De datum moet tussen de opnamedatum en de ontslagdatum liggen.",
    "Das Datum muss zwischen Aufnahme- und Entlassungsdatum liegen.",
)


def consent_field() -> Row:
    """Hospitalisations without FFR or PCI are registered only with the patient's consent (seed 004)."""
    return q(
        f"select_one {YES_NO}",
        "CD_PAT_CONSENT",
        T(
            "The patient consented to the sharing of these data",
            "Le patient a consenti au partage de ces données",
            "De patiënt gaf toestemming tot het delen van deze gegevens",
            "Der Patient hat der Weitergabe dieser Daten zugestimmt",
        ),
        hint=T(
            "Registration without FFR or PCI is optional and allowed only with the patient's consent.",
            "L'enregistrement sans FFR ni ICP est facultatif et n'est permis qu'avec le consentement du patient.",
            "Registratie zonder FFR of PCI is facultatief en enkel toegestaan met toestemming van de patiënt.",
            "Die Registrierung ohne FFR oder PCI ist freiwillig und nur mit Zustimmung des Patienten erlaubt.",
        ),
        required=True,
        constraint=". = 'yes'",
        message=T(
            "These data may only be registered once the patient has consented.",
            "Ces données ne peuvent être enregistrées qu'après le consentement du patient.",
            "Deze gegevens mogen pas geregistreerd worden na toestemming van de patiënt.",
            "Diese Daten dürfen erst nach Zustimmung des Patienten registriert werden.",
        ),
        to_hd=False,
    )


def hospitalisation_block(*, nippin: bool) -> list[Row]:
    return group(
        "hospitalisation",
        T("Hospitalisation", "Hospitalisation", "Hospitalisatie", "Krankenhausaufenthalt"),
        q(
            "date",
            "DT_HOSPZ",
            T("Admission date", "Date d'admission", "Opnamedatum", "Aufnahmedatum"),
            required=True,
            constraint=". <= today() and . >= ${DT_PAT_DOB}",
            message=T(
                "The admission date cannot be in the future nor before the date of birth.",
                "La date d'admission ne peut être ni dans le futur ni avant la date de naissance.",
                "De opnamedatum kan niet in de toekomst liggen en niet vóór de geboortedatum.",
                "Das Aufnahmedatum darf weder in der Zukunft noch vor dem Geburtsdatum liegen.",
            ),
            nippin=("AdmissionDate", None) if nippin else None,
        ),
        q(
            "date",
            "DT_DISCH",
            T("Discharge date", "Date de sortie", "Ontslagdatum", "Entlassungsdatum"),
            hint=T(
                "For a patient who died in hospital: the date of death.",
                "Pour un patient décédé à l'hôpital : la date du décès.",
                "Voor een patiënt die in het ziekenhuis overleed: de datum van overlijden.",
                "Bei einem im Krankenhaus verstorbenen Patienten: das Sterbedatum.",
            ),
            required=True,
            constraint=". >= ${DT_HOSPZ} and ${DT_DISCH} - ${DT_HOSPZ} <= 365 and . <= today()",
            message=T(
                "The discharge date must be on or after the admission date, at most 365 days later, and not in the future.",
                "La date de sortie doit être égale ou postérieure à la date d'admission, au plus 365 jours plus tard, et pas dans le futur.",
                "De ontslagdatum moet op of na de opnamedatum liggen, hoogstens 365 dagen later, en niet in de toekomst.",
                "Das Entlassungsdatum muss am oder nach dem Aufnahmedatum liegen, höchstens 365 Tage später und nicht in der Zukunft.",
            ),
        ),
        q(
            "integer",
            "MS_LOS",
            T(
                "Length of stay (days)",
                "Durée de séjour (jours)",
                "Verblijfsduur (dagen)",
                "Verweildauer (Tage)",
            ),
            read_only=True,
            calculation="${DT_DISCH} - ${DT_HOSPZ}",
        ),
        calc(
            "MS_AGE_ADM",
            T(
                "Age at admission (years)",
                "Âge à l'admission (années)",
                "Leeftijd bij opname (jaren)",
                "Alter bei Aufnahme (Jahre)",
            ),
            "int((${DT_HOSPZ} - ${DT_PAT_DOB}) div 365.25)",
        ),
        q(
            f"select_one {ADM_TYPE}",
            "CD_ADM_TYPE",
            T("Type of admission", "Type d'admission", "Type opname", "Art der Aufnahme"),
            required=True,
        ),
        q(
            "text",
            "CD_RIZIV_HOSP_TRANSF",
            T(
                "NIHDI number of the referring hospital",
                "Numéro INAMI de l'hôpital d'origine",
                "RIZIV-nummer van het verwijzende ziekenhuis",
                "LIKIV-Nummer des zuweisenden Krankenhauses",
            ),
            relevant="${CD_ADM_TYPE} = 'transfer'",
            required=True,
            constraint="regex(., '^[0-9]{8}$')",
            message=T(
                "A hospital's NIHDI number has 8 digits.",
                "Le numéro INAMI d'un hôpital compte 8 chiffres.",
                "Het RIZIV-nummer van een ziekenhuis telt 8 cijfers.",
                "Die LIKIV-Nummer eines Krankenhauses hat 8 Ziffern.",
            ),
        ),
        q(
            f"select_one {INDICATION}",
            "CD_INDICATION",
            T(
                "Main indication for coronary angiography",
                "Indication principale de la coronarographie",
                "Hoofdindicatie voor de coronarografie",
                "Hauptindikation der Koronarangiographie",
            ),
            required=True,
        ),
        q(
            "text",
            "TX_INDICATION_OTHER",
            T("Other indication", "Autre indication", "Andere indicatie", "Andere Indikation"),
            relevant="${CD_INDICATION} = 'other'",
            required=True,
            constraint="string-length(.) <= 100",
            message=MAX_100_CHARS,
        ),
        q(
            "datetime",
            "DT_SYMPT_ONSET",
            T(
                "Date and time of symptom onset",
                "Date et heure du début des symptômes",
                "Datum en uur van het begin van de symptomen",
                "Datum und Uhrzeit des Symptombeginns",
            ),
            relevant=ACS,
            required="${CD_INDICATION} = 'stemi'",
        ),
        q(
            f"select_one {YES_NO}",
            "CD_CARDIOGENIC_SHOCK",
            T(
                "Cardiogenic shock at admission",
                "Choc cardiogénique à l'admission",
                "Cardiogene shock bij opname",
                "Kardiogener Schock bei Aufnahme",
            ),
            relevant=ACS,
            required=True,
        ),
        q(
            f"select_one {YES_NO}",
            "CD_CARDIAC_ARREST",
            T(
                "Resuscitated cardiac arrest before admission",
                "Arrêt cardiaque réanimé avant l'admission",
                "Gereanimeerde hartstilstand vóór opname",
                "Reanimierter Herzstillstand vor der Aufnahme",
            ),
            relevant=f"{ACS} or ${{CD_INDICATION}} = 'arrhythmia'",
            required=True,
        ),
    )


def clinical_block() -> list[Row]:
    return group(
        "clinical",
        T(
            "Risk factors and history",
            "Facteurs de risque et antécédents",
            "Risicofactoren en voorgeschiedenis",
            "Risikofaktoren und Vorgeschichte",
        ),
        q(
            "integer",
            "MS_HEIGHT",
            T("Height (cm)", "Taille (cm)", "Lengte (cm)", "Körpergröße (cm)"),
            required=True,
            constraint=". >= 100 and . <= 250",
            message=T(
                "The height must be between 100 and 250 cm.",
                "La taille doit être comprise entre 100 et 250 cm.",
                "De lengte moet tussen 100 en 250 cm liggen.",
                "Die Körpergröße muss zwischen 100 und 250 cm liegen.",
            ),
        ),
        q(
            "decimal",
            "MS_WEIGHT",
            T("Weight (kg)", "Poids (kg)", "Gewicht (kg)", "Gewicht (kg)"),
            required=True,
            number_format="3.1",
            constraint=". >= 25 and . <= 350",
            message=T(
                "The weight must be between 25 and 350 kg.",
                "Le poids doit être compris entre 25 et 350 kg.",
                "Het gewicht moet tussen 25 en 350 kg liggen.",
                "Das Gewicht muss zwischen 25 und 350 kg liegen.",
            ),
        ),
        calc(
            "MS_BMI",
            T(
                "Body mass index (kg/m²)",
                "Indice de masse corporelle (kg/m²)",
                "Body-mass-index (kg/m²)",
                "Body-Mass-Index (kg/m²)",
            ),
            "round(${MS_WEIGHT} div ((${MS_HEIGHT} div 100) * (${MS_HEIGHT} div 100)), 1)",
        ),
        q(
            f"select_multiple {RISK_FACTORS}",
            "CD_RISK_FACTORS",
            T(
                "Cardiovascular risk factors",
                "Facteurs de risque cardiovasculaire",
                "Cardiovasculaire risicofactoren",
                "Kardiovaskuläre Risikofaktoren",
            ),
            required=True,
            constraint=none_exclusive("not(selected(., 'smoker_current') and selected(., 'smoker_former'))"),
            message=T(
                "'None' cannot be combined with another answer, and a patient cannot be both a current and a former smoker.",
                "« Aucun » ne peut pas être combiné avec une autre réponse, et un patient ne peut pas être à la fois fumeur actuel et ancien fumeur.",
                "'Geen' kan niet met een ander antwoord gecombineerd worden, en een patiënt kan niet tegelijk huidige roker en ex-roker zijn.",
                "„Keine“ kann nicht mit einer anderen Antwort kombiniert werden, und ein Patient kann nicht zugleich aktiver und ehemaliger Raucher sein.",
            ),
        ),
        q(
            f"select_one {DIABETES_TREATMENT}",
            "CD_DIAB_TREAT",
            T(
                "Treatment of diabetes",
                "Traitement du diabète",
                "Behandeling van diabetes",
                "Behandlung des Diabetes",
            ),
            relevant="selected(${CD_RISK_FACTORS}, 'diabetes')",
            required=True,
        ),
        q(
            f"select_multiple {CARDIAC_HISTORY}",
            "CD_CARDIAC_HIST",
            T(
                "Cardiovascular history",
                "Antécédents cardiovasculaires",
                "Cardiovasculaire voorgeschiedenis",
                "Kardiovaskuläre Vorgeschichte",
            ),
            required=True,
            constraint=none_exclusive(),
            message=NONE_EXCLUSIVE,
        ),
        q(
            "integer",
            "MS_LVEF",
            T(
                "Left ventricular ejection fraction (%)",
                "Fraction d'éjection ventriculaire gauche (%)",
                "Linkerventrikelejectiefractie (%)",
                "Linksventrikuläre Ejektionsfraktion (%)",
            ),
            hint=T("If known.", "Si elle est connue.", "Indien gekend.", "Falls bekannt."),
            constraint=". >= 5 and . <= 85",
            message=T(
                "The ejection fraction must be between 5 and 85 %.",
                "La fraction d'éjection doit être comprise entre 5 et 85 %.",
                "De ejectiefractie moet tussen 5 en 85 % liggen.",
                "Die Ejektionsfraktion muss zwischen 5 und 85 % liegen.",
            ),
        ),
        q(
            "decimal",
            "MS_CREAT",
            T(
                "Serum creatinine at admission (mg/dL)",
                "Créatinine sérique à l'admission (mg/dL)",
                "Serumcreatinine bij opname (mg/dL)",
                "Serumkreatinin bei Aufnahme (mg/dL)",
            ),
            hint=T("If known.", "Si elle est connue.", "Indien gekend.", "Falls bekannt."),
            number_format="2.2",
            constraint=". >= 0.1 and . <= 20",
            message=T(
                "The creatinine must be between 0.1 and 20 mg/dL.",
                "La créatinine doit être comprise entre 0,1 et 20 mg/dL.",
                "De creatinine moet tussen 0,1 en 20 mg/dL liggen.",
                "Das Kreatinin muss zwischen 0,1 und 20 mg/dL liegen.",
            ),
        ),
    )


def angiography_block(*, with_pci: bool) -> list[Row]:
    extent_rule: dict[str, object] = {}
    if with_pci:
        extent_rule = {
            "constraint": ". != '0'",
            "message": T(
                "A PCI was performed: at least one vessel must be diseased.",
                "Une ICP a été réalisée : au moins un vaisseau doit être atteint.",
                "Er werd een PCI uitgevoerd: minstens één vat moet aangetast zijn.",
                "Es wurde eine PCI durchgeführt: mindestens ein Gefäß muss erkrankt sein.",
            ),
        }
    return group(
        "angiography",
        T("Coronary angiography", "Coronarographie", "Coronarografie", "Koronarangiographie"),
        q(
            f"select_one {CAD_EXTENT}",
            "CD_CAD_EXTENT",
            T(
                "Extent of coronary artery disease",
                "Étendue de la maladie coronarienne",
                "Uitgebreidheid van het coronairlijden",
                "Ausmaß der koronaren Herzkrankheit",
            ),
            required=True,
            **extent_rule,  # type: ignore[arg-type]
        ),
        q(
            f"select_one {YES_NO}",
            "CD_LEFT_MAIN",
            T(
                "Significant left main stenosis (≥ 50 %)",
                "Sténose significative du tronc commun (≥ 50 %)",
                "Significante hoofdstamstenose (≥ 50 %)",
                "Signifikante Hauptstammstenose (≥ 50 %)",
            ),
            relevant="${CD_CAD_EXTENT} != '0'",
            required=True,
        ),
    )


def pci_block(*, repeat_max: int = 5) -> list[Rows]:
    """The PCI procedures of one hospitalisation: a repeat flattened DT_PCI_1 .. DT_PCI_5."""
    return [
        q(
            "integer",
            "MS_NB_PCI",
            T(
                "Number of PCI procedures during this hospitalisation",
                "Nombre d'ICP pendant cette hospitalisation",
                "Aantal PCI-procedures tijdens deze hospitalisatie",
                "Anzahl der PCI-Eingriffe während dieses Aufenthalts",
            ),
            required=True,
            constraint=f". >= 1 and . <= {repeat_max}",
            message=T(
                f"Between 1 and {repeat_max} procedures.",
                f"Entre 1 et {repeat_max} interventions.",
                f"Tussen 1 en {repeat_max} procedures.",
                f"Zwischen 1 und {repeat_max} Eingriffen.",
            ),
        ),
        repeat(
            "pci",
            T("PCI procedure", "Intervention coronaire percutanée", "PCI-procedure", "PCI-Eingriff"),
            q(
                "date",
                "DT_PCI",
                T("Date of the PCI", "Date de l'ICP", "Datum van de PCI", "Datum der PCI"),
                required=True,
                constraint=WITHIN_STAY,
                message=WITHIN_STAY_MESSAGE,
                nippin=("InterventionDate", None),
            ),
            q(
                "time",
                "TM_PCI",
                T(
                    "Start time of the PCI (HH:MM)",
                    "Heure de début de l'ICP (HH:MM)",
                    "Beginuur van de PCI (UU:MM)",
                    "Beginn der PCI (HH:MM)",
                ),
                required=True,
            ),
            q(
                f"select_one {URGENCY}",
                "CD_PCI_URGENCY",
                T(
                    "Priority of the PCI",
                    "Priorité de l'ICP",
                    "Prioriteit van de PCI",
                    "Dringlichkeit der PCI",
                ),
                required=True,
            ),
            q(
                f"select_one {ACCESS_SITE}",
                "CD_ACCESS_SITE",
                T(
                    "Arterial access site",
                    "Site d'accès artériel",
                    "Arteriële toegangsweg",
                    "Arterieller Zugangsweg",
                ),
                required=True,
            ),
            q(
                f"select_multiple {VESSEL}",
                "CD_VESSELS",
                T("Vessels treated", "Vaisseaux traités", "Behandelde vaten", "Behandelte Gefäße"),
                required=True,
                constraint="count-selected(.) >= 1 and (not(selected(., 'graft')) or selected(${CD_CARDIAC_HIST}, 'cabg'))",
                message=T(
                    "Select at least one vessel; a bypass graft can only be treated after a previous CABG.",
                    "Sélectionnez au moins un vaisseau ; un pontage ne peut être traité qu'après un pontage coronarien antérieur.",
                    "Selecteer minstens één vat; een bypassgraft kan enkel behandeld worden na een vroegere CABG.",
                    "Mindestens ein Gefäß wählen; ein Bypassgraft kann nur nach einer früheren Bypassoperation behandelt werden.",
                ),
            ),
            q(
                f"select_one {DEVICE_CATEGORY}",
                "CD_DEVICE_CAT",
                T(
                    "Main device used",
                    "Dispositif principal utilisé",
                    "Belangrijkste gebruikte hulpmiddel",
                    "Hauptsächlich verwendetes Produkt",
                ),
                required=True,
            ),
            q(
                f"select_one {STENT_TYPE}",
                "CD_STENT_TYPE",
                T(
                    "Type of stent or balloon",
                    "Type de stent ou de ballon",
                    "Type stent of ballon",
                    "Art des Stents oder Ballons",
                ),
                required=True,
                choice_filter="category = ${CD_DEVICE_CAT}",
                nippin=("DeviceType", None),
            ),
            q(
                "integer",
                "MS_NB_STENT",
                T(
                    "Number of stents or scaffolds implanted",
                    "Nombre de stents ou d'armatures implantés",
                    "Aantal geïmplanteerde stents of scaffolds",
                    "Anzahl implantierter Stents oder Scaffolds",
                ),
                relevant="${CD_DEVICE_CAT} != 'balloon'",
                required=True,
                constraint=". >= 1 and . <= 10",
                message=T(
                    "Between 1 and 10 stents.",
                    "Entre 1 et 10 stents.",
                    "Tussen 1 en 10 stents.",
                    "Zwischen 1 und 10 Stents.",
                ),
                nippin=("DeviceCount", "${CD_DEVICE_CAT} != 'balloon'"),
            ),
            q(
                "decimal",
                "MS_CONTRAST",
                T(
                    "Contrast volume (mL)",
                    "Volume de produit de contraste (mL)",
                    "Volume contraststof (mL)",
                    "Kontrastmittelmenge (mL)",
                ),
                required=True,
                number_format="4.1",
                constraint=". > 0 and . <= 1000",
                message=T(
                    "The contrast volume must be more than 0 and at most 1000 mL.",
                    "Le volume de contraste doit être supérieur à 0 et ne pas dépasser 1000 mL.",
                    "Het contrastvolume moet groter dan 0 en hoogstens 1000 mL zijn.",
                    "Die Kontrastmittelmenge muss größer als 0 und höchstens 1000 mL sein.",
                ),
            ),
            q(
                f"select_one {PCI_RESULT}",
                "CD_PCI_RESULT",
                T(
                    "Procedural result",
                    "Résultat de l'intervention",
                    "Resultaat van de procedure",
                    "Ergebnis des Eingriffs",
                ),
                required=True,
            ),
            q(
                f"select_multiple {PCI_COMPLICATION}",
                "CD_PCI_COMPL",
                T(
                    "Complications in the catheterisation laboratory",
                    "Complications en salle de cathétérisme",
                    "Complicaties in het katheterisatielabo",
                    "Komplikationen im Herzkatheterlabor",
                ),
                required=True,
                constraint=none_exclusive(),
                message=NONE_EXCLUSIVE,
            ),
            q(
                f"select_one {BARC}",
                "CD_BLEED_BARC",
                T(
                    "Bleeding severity (BARC)",
                    "Gravité du saignement (BARC)",
                    "Ernst van de bloeding (BARC)",
                    "Schweregrad der Blutung (BARC)",
                ),
                relevant="selected(${CD_PCI_COMPL}, 'bleeding')",
                required=True,
            ),
            repeat_max=repeat_max,
            count="${MS_NB_PCI}",
        ),
    ]


def ffr_block(*, repeat_max: int = 3) -> list[Rows]:
    """Fractional flow reserve measurements, flattened MS_FFR_1 .. MS_FFR_3."""
    return [
        q(
            "integer",
            "MS_NB_FFR",
            T(
                "Number of FFR measurements during this hospitalisation",
                "Nombre de mesures FFR pendant cette hospitalisation",
                "Aantal FFR-metingen tijdens deze hospitalisatie",
                "Anzahl der FFR-Messungen während dieses Aufenthalts",
            ),
            required=True,
            constraint=f". >= 1 and . <= {repeat_max}",
            message=T(
                f"Between 1 and {repeat_max} measurements.",
                f"Entre 1 et {repeat_max} mesures.",
                f"Tussen 1 en {repeat_max} metingen.",
                f"Zwischen 1 und {repeat_max} Messungen.",
            ),
        ),
        repeat(
            "ffr",
            T("FFR measurement", "Mesure FFR", "FFR-meting", "FFR-Messung"),
            q(
                "date",
                "DT_FFR",
                T("Date of the measurement", "Date de la mesure", "Datum van de meting", "Datum der Messung"),
                required=True,
                constraint=WITHIN_STAY,
                message=WITHIN_STAY_MESSAGE,
                nippin=("MeasurementDate", None),
            ),
            q(
                f"select_one {VESSEL}",
                "CD_FFR_VESSEL",
                T("Vessel measured", "Vaisseau mesuré", "Gemeten vat", "Gemessenes Gefäß"),
                required=True,
            ),
            q(
                f"select_one {FFR_METHOD}",
                "CD_FFR_METHOD",
                T("Method", "Méthode", "Methode", "Methode"),
                required=True,
            ),
            q(
                "decimal",
                "MS_FFR",
                T("Measured value", "Valeur mesurée", "Gemeten waarde", "Messwert"),
                hint=T(
                    "Between 0.00 and 1.00.",
                    "Entre 0,00 et 1,00.",
                    "Tussen 0,00 en 1,00.",
                    "Zwischen 0,00 und 1,00.",
                ),
                required=True,
                number_format="1.2",
                constraint=". >= 0 and . <= 1",
                message=T(
                    "The value must be between 0.00 and 1.00.",
                    "La valeur doit être comprise entre 0,00 et 1,00.",
                    "De waarde moet tussen 0,00 en 1,00 liggen.",
                    "Der Wert muss zwischen 0,00 und 1,00 liegen.",
                ),
            ),
            calc(
                "CD_FFR_SIGNIF",
                T(
                    "Haemodynamically significant (FFR ≤ 0.80, iFR ≤ 0.89)",
                    "Hémodynamiquement significative (FFR ≤ 0,80, iFR ≤ 0,89)",
                    "Hemodynamisch significant (FFR ≤ 0,80, iFR ≤ 0,89)",
                    "Hämodynamisch signifikant (FFR ≤ 0,80, iFR ≤ 0,89)",
                ),
                "if(${CD_FFR_METHOD} = 'ifr', if(${MS_FFR} <= 0.89, 'yes', 'no'), if(${MS_FFR} <= 0.80, 'yes', 'no'))",
            ),
            q(
                f"select_one {FFR_DECISION}",
                "CD_FFR_DECISION",
                T(
                    "Decision after the measurement",
                    "Décision après la mesure",
                    "Beslissing na de meting",
                    "Entscheidung nach der Messung",
                ),
                required=True,
            ),
            repeat_max=repeat_max,
            count="${MS_NB_FFR}",
        ),
    ]


def cabg_block(*, repeat_max: int = 2) -> list[Row]:
    """Optional CABG during the same hospitalisation (all five registration types allow it)."""
    is_cabg = "${CD_CABG} = 'yes'"
    return group(
        "surgery",
        T(
            "Bypass surgery (CABG)",
            "Pontage coronarien (CABG)",
            "Bypasschirurgie (CABG)",
            "Bypassoperation (CABG)",
        ),
        q(
            f"select_one {YES_NO}",
            "CD_CABG",
            T(
                "CABG during this hospitalisation",
                "Pontage coronarien pendant cette hospitalisation",
                "CABG tijdens deze hospitalisatie",
                "Bypassoperation während dieses Aufenthalts",
            ),
            required=True,
            default="no",
        ),
        q(
            "integer",
            "MS_NB_CABG",
            T(
                "Number of CABG operations",
                "Nombre de pontages",
                "Aantal CABG-ingrepen",
                "Anzahl der Bypassoperationen",
            ),
            relevant=is_cabg,
            required=True,
            constraint=f". >= 1 and . <= {repeat_max}",
            message=T(
                f"Between 1 and {repeat_max} operations.",
                f"Entre 1 et {repeat_max} opérations.",
                f"Tussen 1 en {repeat_max} ingrepen.",
                f"Zwischen 1 und {repeat_max} Operationen.",
            ),
        ),
        repeat(
            "cabg",
            T("CABG", "Pontage coronarien", "CABG", "Bypassoperation"),
            q(
                "date",
                "DT_CABG",
                T("Date of the CABG", "Date du pontage", "Datum van de CABG", "Datum der Bypassoperation"),
                required=True,
                constraint=WITHIN_STAY,
                message=WITHIN_STAY_MESSAGE,
            ),
            q(
                f"select_one {URGENCY}",
                "CD_CABG_URGENCY",
                T(
                    "Priority of the CABG",
                    "Priorité du pontage",
                    "Prioriteit van de CABG",
                    "Dringlichkeit der Bypassoperation",
                ),
                required=True,
            ),
            q(
                "integer",
                "MS_CABG_GRAFTS",
                T(
                    "Number of distal anastomoses",
                    "Nombre d'anastomoses distales",
                    "Aantal distale anastomosen",
                    "Anzahl distaler Anastomosen",
                ),
                required=True,
                constraint=". >= 1 and . <= 8",
                message=T(
                    "Between 1 and 8 anastomoses.",
                    "Entre 1 et 8 anastomoses.",
                    "Tussen 1 en 8 anastomosen.",
                    "Zwischen 1 und 8 Anastomosen.",
                ),
            ),
            repeat_max=repeat_max,
            count="${MS_NB_CABG}",
            relevant=is_cabg,
        ),
    )


P2Y12_SINGLE = (
    "not((selected(., 'clopidogrel') and (selected(., 'prasugrel') or selected(., 'ticagrelor')))"
    " or (selected(., 'prasugrel') and selected(., 'ticagrelor')))"
)
P2Y12_MESSAGE = T(
    "'None' cannot be combined with another answer, and only one P2Y12 inhibitor (clopidogrel, prasugrel or ticagrelor) can be given.",
    "« Aucun » ne peut pas être combiné avec une autre réponse, et un seul inhibiteur P2Y12 (clopidogrel, prasugrel ou ticagrélor) peut être donné.",
    "'Geen' kan niet met een ander antwoord gecombineerd worden, en slechts één P2Y12-remmer (clopidogrel, prasugrel of ticagrelor) kan gegeven worden.",
    "„Keine“ kann nicht mit einer anderen Antwort kombiniert werden, und nur ein P2Y12-Hemmer (Clopidogrel, Prasugrel oder Ticagrelor) ist möglich.",
)


def discharge_block() -> list[Row]:
    alive = "${CD_DISCH_STATUS} = 'alive'"
    return group(
        "discharge",
        T("Discharge", "Sortie", "Ontslag", "Entlassung"),
        q(
            f"select_one {DISCHARGE_STATUS}",
            "CD_DISCH_STATUS",
            T(
                "Vital status at discharge",
                "Statut vital à la sortie",
                "Vitale status bij ontslag",
                "Vitalstatus bei Entlassung",
            ),
            required=True,
        ),
        q(
            f"select_one {DISCHARGE_DESTINATION}",
            "CD_DISCH_DEST",
            T("Discharged to", "Sortie vers", "Ontslagen naar", "Entlassen nach"),
            relevant=alive,
            required=True,
        ),
        q(
            f"select_multiple {MEDICATION}",
            "CD_DISCH_MED",
            T(
                "Medication at discharge",
                "Médication à la sortie",
                "Medicatie bij ontslag",
                "Medikation bei Entlassung",
            ),
            relevant=alive,
            required=True,
            constraint=none_exclusive(P2Y12_SINGLE),
            message=P2Y12_MESSAGE,
        ),
    )


# --------------------------------------------------------------------------------------
# Workbook definitions
# --------------------------------------------------------------------------------------


@dataclass
class Dcd:
    project_code: str
    project_abbreviation: str
    project_title: T
    dcd_code: str
    dcd_number: int
    dcd_title: T
    business_key: list[str]
    source: str
    survey: list[Row]
    #: The NIPPIN message a reimbursed registry makes (settings ``nippin_message``).
    nippin_message: str | None = None

    @property
    def filename(self) -> str:
        return f"{self.project_code}_{self.dcd_code}_{VERSION}.xlsx"


ANGIO_TITLE = T(
    "Coronary angioplasty", "Angioplastie coronaire", "Coronaire angioplastiek", "Koronarangioplastie"
)
ANGIO_SOURCE = (
    "Authored by hdhub from public descriptions; this is NOT the official healthdata.be DCD "
    "(https://docs.healthdata.be/HDBP0012/DCD). The five registration types, the patient "
    "consent rule for registrations without FFR or PCI, the SSIN-less pseudocode (birth date, "
    "sex, last name, first name) and the transfer of billing data to the insurers come from the "
    "RIZIV-INAMI document 'Registratie- en overdrachtsmodaliteiten voor de verstrekkingen "
    "betreffende de percutane coronaire interventies en hun toebehoren' (program QERMID, "
    "registry 'Coronaire angioplastiek'). The technical names IDC_PAT, DT_PAT_DOB, CD_PAT_SEX, "
    "CD_RIZIV_TREAT_PHYS, DT_HOSPZ and the flattening DT_PCI_1.. follow healthdata.be's "
    "published naming; every other field, code list and rule is hdhub's own choice from "
    "public clinical knowledge of PCI registries."
)


def angio_dcd(code: str, number: int, title: T, survey: list[Row], key: list[str]) -> Dcd:
    return Dcd("HDBP0012", "ANGIO", ANGIO_TITLE, code, number, title, key, ANGIO_SOURCE, survey)


def angio_hospitalisation(*, ffr: bool, pci: bool) -> list[Row]:
    """The four hospitalisation DCDs share everything but the FFR and PCI blocks."""
    reimbursed = ffr or pci  # FFR and PCI are reimbursed acts (F-§05): billing data to the insurers
    return _flatten(
        [
            patient_block(sex_personal=False, nippin=reimbursed),
            treating_physician(nippin=reimbursed),
            [] if reimbursed else consent_field(),
            hospitalisation_block(nippin=reimbursed),
            clinical_block(),
            angiography_block(with_pci=pci),
            group(
                "ffr_measurements",
                T("FFR measurements", "Mesures FFR", "FFR-metingen", "FFR-Messungen"),
                ffr_block(),
            )
            if ffr
            else [],
            group(
                "pci_procedures",
                T(
                    "PCI procedures",
                    "Interventions coronaires percutanées",
                    "PCI-procedures",
                    "PCI-Eingriffe",
                ),
                pci_block(),
            )
            if pci
            else [],
            cabg_block(),
            discharge_block(),
        ]
    )


# ----- ANGIO follow-up choice lists ---------------------------------------------------

FU_METHOD = choices(
    "fu_method",
    ("visit", T("Outpatient visit", "Consultation", "Raadpleging", "Ambulanter Besuch")),
    (
        "phone",
        T(
            "Telephone contact with the patient",
            "Contact téléphonique avec le patient",
            "Telefonisch contact met de patiënt",
            "Telefonischer Kontakt mit dem Patienten",
        ),
    ),
    (
        "physician",
        T(
            "Contact with the general practitioner or referring cardiologist",
            "Contact avec le médecin généraliste ou le cardiologue référent",
            "Contact met de huisarts of verwijzende cardioloog",
            "Kontakt mit dem Hausarzt oder zuweisenden Kardiologen",
        ),
    ),
    ("records", T("Medical records", "Dossier médical", "Medisch dossier", "Krankenakte")),
)
VITAL_STATUS = choices(
    "vital_status",
    ("alive", T("Alive", "Vivant", "In leven", "Lebend")),
    ("deceased", T("Deceased", "Décédé", "Overleden", "Verstorben")),
    (
        "unknown",
        T(
            "Unknown (lost to follow-up)",
            "Inconnu (perdu de vue)",
            "Onbekend (niet meer opgevolgd)",
            "Unbekannt (nicht mehr nachverfolgbar)",
        ),
    ),
)
DEATH_CAUSE = choices(
    "death_cause",
    ("cardiovascular", T("Cardiovascular", "Cardiovasculaire", "Cardiovasculair", "Kardiovaskulär")),
    (
        "other",
        T("Non-cardiovascular", "Non cardiovasculaire", "Niet-cardiovasculair", "Nicht kardiovaskulär"),
    ),
    ("unknown", UNKNOWN),
)
MACE = choices(
    "mace",
    ("none", T("No event", "Aucun événement", "Geen voorval", "Kein Ereignis")),
    ("mi", T("Myocardial infarction", "Infarctus du myocarde", "Myocardinfarct", "Myokardinfarkt")),
    ("stent_thrombosis", T("Stent thrombosis", "Thrombose de stent", "Stenttrombose", "Stentthrombose")),
    (
        "tvr_pci",
        T(
            "Target-vessel revascularisation by PCI",
            "Revascularisation du vaisseau cible par ICP",
            "Revascularisatie van het doelvat met PCI",
            "Revaskularisation des Zielgefäßes durch PCI",
        ),
    ),
    (
        "tvr_cabg",
        T(
            "Target-vessel revascularisation by CABG",
            "Revascularisation du vaisseau cible par pontage",
            "Revascularisatie van het doelvat met CABG",
            "Revaskularisation des Zielgefäßes durch Bypassoperation",
        ),
    ),
    (
        "other_revasc",
        T(
            "Revascularisation of another vessel",
            "Revascularisation d'un autre vaisseau",
            "Revascularisatie van een ander vat",
            "Revaskularisation eines anderen Gefäßes",
        ),
    ),
    ("stroke", T("Stroke", "Accident vasculaire cérébral", "Cerebrovasculair accident", "Schlaganfall")),
    (
        "major_bleeding",
        T(
            "Major bleeding (BARC 3 or 5)",
            "Saignement majeur (BARC 3 ou 5)",
            "Majeure bloeding (BARC 3 of 5)",
            "Schwere Blutung (BARC 3 oder 5)",
        ),
    ),
)
ARC_CERTAINTY = choices(
    "arc_certainty",
    ("definite", T("Definite", "Certaine", "Zeker", "Gesichert")),
    ("probable", T("Probable", "Probable", "Waarschijnlijk", "Wahrscheinlich")),
    ("possible", T("Possible", "Possible", "Mogelijk", "Möglich")),
)
REHOSP_REASON = choices(
    "rehosp_reason",
    (
        "acs",
        T(
            "Acute coronary syndrome",
            "Syndrome coronarien aigu",
            "Acuut coronair syndroom",
            "Akutes Koronarsyndrom",
        ),
    ),
    ("hf", T("Heart failure", "Insuffisance cardiaque", "Hartfalen", "Herzinsuffizienz")),
    ("arrhythmia", T("Arrhythmia", "Arythmie", "Ritmestoornis", "Herzrhythmusstörung")),
    ("bleeding", T("Bleeding", "Saignement", "Bloeding", "Blutung")),
    (
        "staged_pci",
        T(
            "Planned staged PCI",
            "ICP programmée en plusieurs temps",
            "Geplande gefaseerde PCI",
            "Geplante gestufte PCI",
        ),
    ),
    ("other", OTHER),
)
CCS_CLASS = choices(
    "ccs_class",
    ("0", T("No angina", "Pas d'angor", "Geen angor", "Keine Angina pectoris")),
    ("1", T("CCS class I", "Classe CCS I", "CCS-klasse I", "CCS-Klasse I")),
    ("2", T("CCS class II", "Classe CCS II", "CCS-klasse II", "CCS-Klasse II")),
    ("3", T("CCS class III", "Classe CCS III", "CCS-klasse III", "CCS-Klasse III")),
    ("4", T("CCS class IV", "Classe CCS IV", "CCS-klasse IV", "CCS-Klasse IV")),
)


def angio_follow_up() -> list[Row]:
    """One-year follow-up of a patient whose hospitalisation included one or more PCIs."""
    since_pci = "${DT_FU} - ${DT_PCI_REF}"
    deceased = "${CD_VITAL_STATUS} = 'deceased'"
    between_pci_and_fu = ". >= ${DT_PCI_REF} and . <= ${DT_FU}"
    between_message = T(
        "The date must lie between the PCI and the follow-up date.",
        "La date doit se situer entre l'ICP et la date du suivi.",
        "De datum moet tussen de PCI en de follow-updatum liggen.",
        "Das Datum muss zwischen der PCI und dem Nachsorgedatum liegen.",
    )
    return _flatten(
        [
            patient_block(sex_personal=False),
            treating_physician(),
            group(
                "index_pci",
                T("Index PCI", "ICP de référence", "Index-PCI", "Index-PCI"),
                q(
                    "date",
                    "DT_PCI_REF",
                    T(
                        "Date of the (first) PCI of the index hospitalisation",
                        "Date de la (première) ICP de l'hospitalisation de référence",
                        "Datum van de (eerste) PCI van de indexhospitalisatie",
                        "Datum der (ersten) PCI des Indexaufenthalts",
                    ),
                    hint=T(
                        "The DT_PCI_1 of the registration 'Hospitalisation with PCI' or 'with FFR and PCI'.",
                        "Le DT_PCI_1 de l'enregistrement « Hospitalisation avec ICP » ou « avec FFR et ICP ».",
                        "De DT_PCI_1 van de registratie 'Hospitalisatie met PCI' of 'met FFR en PCI'.",
                        "Das DT_PCI_1 der Registrierung „Krankenhausaufenthalt mit PCI“ oder „mit FFR und PCI“.",
                    ),
                    required=True,
                    constraint=". <= today() and . >= ${DT_PAT_DOB}",
                    message=T(
                        "The PCI date cannot be in the future nor before the date of birth.",
                        "La date de l'ICP ne peut être ni dans le futur ni avant la date de naissance.",
                        "De PCI-datum kan niet in de toekomst liggen en niet vóór de geboortedatum.",
                        "Das PCI-Datum darf weder in der Zukunft noch vor dem Geburtsdatum liegen.",
                    ),
                ),
            ),
            group(
                "follow_up",
                T("Follow-up", "Suivi", "Follow-up", "Nachbeobachtung"),
                q(
                    "date",
                    "DT_FU",
                    T(
                        "Date of the follow-up",
                        "Date du suivi",
                        "Datum van de follow-up",
                        "Datum der Nachbeobachtung",
                    ),
                    hint=T(
                        "About one year after the PCI (305 to 425 days).",
                        "Environ un an après l'ICP (305 à 425 jours).",
                        "Ongeveer één jaar na de PCI (305 tot 425 dagen).",
                        "Etwa ein Jahr nach der PCI (305 bis 425 Tage).",
                    ),
                    required=True,
                    constraint=f". <= today() and {since_pci} >= 305 and {since_pci} <= 425",
                    message=T(
                        "The follow-up takes place about one year after the PCI (305 to 425 days later) and cannot be in the future.",
                        "Le suivi a lieu environ un an après l'ICP (305 à 425 jours plus tard) et ne peut pas être dans le futur.",
                        "De follow-up gebeurt ongeveer één jaar na de PCI (305 tot 425 dagen later) en kan niet in de toekomst liggen.",
                        "Die Nachbeobachtung erfolgt etwa ein Jahr nach der PCI (305 bis 425 Tage später) und darf nicht in der Zukunft liegen.",
                    ),
                ),
                calc(
                    "MS_FU_DAYS",
                    T("Days since the PCI", "Jours depuis l'ICP", "Dagen sinds de PCI", "Tage seit der PCI"),
                    since_pci,
                ),
                q(
                    f"select_one {FU_METHOD}",
                    "CD_FU_METHOD",
                    T(
                        "Source of the follow-up",
                        "Source du suivi",
                        "Bron van de follow-up",
                        "Quelle der Nachbeobachtung",
                    ),
                    required=True,
                ),
                q(
                    f"select_one {VITAL_STATUS}",
                    "CD_VITAL_STATUS",
                    T("Vital status", "Statut vital", "Vitale status", "Vitalstatus"),
                    required=True,
                ),
                q(
                    "date",
                    "DT_DEATH",
                    T("Date of death", "Date du décès", "Datum van overlijden", "Sterbedatum"),
                    relevant=deceased,
                    required=True,
                    constraint=between_pci_and_fu,
                    message=between_message,
                ),
                q(
                    f"select_one {DEATH_CAUSE}",
                    "CD_DEATH_CAUSE",
                    T("Cause of death", "Cause du décès", "Doodsoorzaak", "Todesursache"),
                    relevant=deceased,
                    required=True,
                ),
                calc(
                    "MS_AGE_FU",
                    T(
                        "Age at follow-up or death (years)",
                        "Âge au suivi ou au décès (années)",
                        "Leeftijd bij follow-up of overlijden (jaren)",
                        "Alter bei Nachbeobachtung oder Tod (Jahre)",
                    ),
                    "int((coalesce(${DT_DEATH}, ${DT_FU}) - ${DT_PAT_DOB}) div 365.25)",
                ),
            ),
            group(
                "events",
                T(
                    "Events since the PCI",
                    "Événements depuis l'ICP",
                    "Voorvallen sinds de PCI",
                    "Ereignisse seit der PCI",
                ),
                q(
                    f"select_multiple {MACE}",
                    "CD_MACE",
                    T(
                        "Major adverse cardiac and cerebrovascular events",
                        "Événements cardiaques et cérébrovasculaires majeurs",
                        "Ernstige cardiale en cerebrovasculaire voorvallen",
                        "Schwere kardiale und zerebrovaskuläre Ereignisse",
                    ),
                    required=True,
                    constraint=none_exclusive(),
                    message=NONE_EXCLUSIVE,
                ),
                calc(
                    "CD_MACE_ANY",
                    T(
                        "At least one event",
                        "Au moins un événement",
                        "Minstens één voorval",
                        "Mindestens ein Ereignis",
                    ),
                    "if(count-selected(${CD_MACE}) > 0 and not(selected(${CD_MACE}, 'none')), 'yes', 'no')",
                ),
                q(
                    "date",
                    "DT_MACE_FIRST",
                    T(
                        "Date of the first event",
                        "Date du premier événement",
                        "Datum van het eerste voorval",
                        "Datum des ersten Ereignisses",
                    ),
                    relevant="count-selected(${CD_MACE}) > 0 and not(selected(${CD_MACE}, 'none'))",
                    required=True,
                    constraint=between_pci_and_fu,
                    message=between_message,
                ),
                q(
                    f"select_one {ARC_CERTAINTY}",
                    "CD_ST_ARC",
                    T(
                        "Stent thrombosis certainty (ARC)",
                        "Degré de certitude de la thrombose de stent (ARC)",
                        "Zekerheid van de stenttrombose (ARC)",
                        "Sicherheit der Stentthrombose (ARC)",
                    ),
                    relevant="selected(${CD_MACE}, 'stent_thrombosis')",
                    required=True,
                ),
                q(
                    f"select_one {YES_NO_UNKNOWN}",
                    "CD_REHOSP",
                    T(
                        "Re-hospitalisation for a cardiovascular reason",
                        "Réhospitalisation pour une raison cardiovasculaire",
                        "Heropname om een cardiovasculaire reden",
                        "Erneuter Krankenhausaufenthalt aus kardiovaskulärem Grund",
                    ),
                    required=True,
                ),
                q(
                    "integer",
                    "MS_NB_REHOSP",
                    T(
                        "Number of re-hospitalisations",
                        "Nombre de réhospitalisations",
                        "Aantal heropnames",
                        "Anzahl erneuter Aufenthalte",
                    ),
                    relevant="${CD_REHOSP} = 'yes'",
                    required=True,
                    constraint=". >= 1 and . <= 20",
                    message=T(
                        "Between 1 and 20.",
                        "Entre 1 et 20.",
                        "Tussen 1 en 20.",
                        "Zwischen 1 und 20.",
                    ),
                ),
                q(
                    f"select_multiple {REHOSP_REASON}",
                    "CD_REHOSP_REASON",
                    T(
                        "Reasons for re-hospitalisation",
                        "Motifs de réhospitalisation",
                        "Redenen voor heropname",
                        "Gründe für den erneuten Aufenthalt",
                    ),
                    relevant="${CD_REHOSP} = 'yes'",
                    required=True,
                    constraint="count-selected(.) <= ${MS_NB_REHOSP} or selected(., 'staged_pci')",
                    message=T(
                        "More reasons than re-hospitalisations.",
                        "Plus de motifs que de réhospitalisations.",
                        "Meer redenen dan heropnames.",
                        "Mehr Gründe als erneute Aufenthalte.",
                    ),
                ),
                relevant="${CD_VITAL_STATUS} != 'unknown'",
            ),
            group(
                "current_status",
                T(
                    "Status at follow-up",
                    "État au moment du suivi",
                    "Toestand bij follow-up",
                    "Zustand bei Nachbeobachtung",
                ),
                q(
                    f"select_one {CCS_CLASS}",
                    "CD_ANGINA_CCS",
                    T(
                        "Angina (CCS class)",
                        "Angor (classe CCS)",
                        "Angor (CCS-klasse)",
                        "Angina pectoris (CCS-Klasse)",
                    ),
                    required=True,
                ),
                q(
                    f"select_multiple {MEDICATION}",
                    "CD_FU_MED",
                    T(
                        "Current medication",
                        "Médication actuelle",
                        "Huidige medicatie",
                        "Aktuelle Medikation",
                    ),
                    required=True,
                    constraint=none_exclusive(P2Y12_SINGLE),
                    message=P2Y12_MESSAGE,
                ),
                relevant="${CD_VITAL_STATUS} = 'alive'",
            ),
        ]
    )


def angio() -> list[Dcd]:
    def title(en: str, fr: str, nl: str, de: str) -> T:
        return T(en, fr, nl, de)

    hosp_key = ["IDC_PAT", "DT_HOSPZ"]
    return [
        angio_dcd(
            "ANGIO_HOSP",
            201,
            title("Hospitalisation", "Hospitalisation", "Hospitalisatie", "Krankenhausaufenthalt"),
            angio_hospitalisation(ffr=False, pci=False),
            hosp_key,
        ),
        angio_dcd(
            "ANGIO_HOSP_PCI",
            202,
            title(
                "Hospitalisation with PCI",
                "Hospitalisation avec ICP",
                "Hospitalisatie met PCI",
                "Krankenhausaufenthalt mit PCI",
            ),
            angio_hospitalisation(ffr=False, pci=True),
            hosp_key,
        ),
        angio_dcd(
            "ANGIO_HOSP_FFR",
            203,
            title(
                "Hospitalisation with FFR",
                "Hospitalisation avec FFR",
                "Hospitalisatie met FFR",
                "Krankenhausaufenthalt mit FFR",
            ),
            angio_hospitalisation(ffr=True, pci=False),
            hosp_key,
        ),
        angio_dcd(
            "ANGIO_HOSP_FFR_PCI",
            204,
            title(
                "Hospitalisation with FFR and PCI",
                "Hospitalisation avec FFR et ICP",
                "Hospitalisatie met FFR en PCI",
                "Krankenhausaufenthalt mit FFR und PCI",
            ),
            angio_hospitalisation(ffr=True, pci=True),
            hosp_key,
        ),
        angio_dcd(
            "ANGIO_FU_PCI",
            205,
            title("Follow-up after PCI", "Suivi après ICP", "Follow-up na PCI", "Nachbeobachtung nach PCI"),
            angio_follow_up(),
            ["IDC_PAT", "DT_PCI_REF"],
        ),
    ]


# ----- HIV_Sequence ---------------------------------------------------------------------

# The AIDS reference laboratories (ARL) that provide data (seed 001 lists the organisations;
# the three-letter codes are ours, HSP from the published example HSP_20240827092014).
ARL = choices(
    "arl",
    (
        "ITG",
        T(
            "Institute of Tropical Medicine Antwerp",
            "Institut de médecine tropicale d'Anvers",
            "Instituut voor Tropische Geneeskunde Antwerpen",
            "Institut für Tropenmedizin Antwerpen",
        ),
        {"organisation": "81170489"},
    ),
    ("UZB", same("UZ Brussel"), {"organisation": "71014391"}),
    ("UZL", same("UZ Leuven"), {"organisation": "71032209"}),
    ("ERA", same("Hôpital Erasme (ULB)"), {"organisation": "71040622"}),
    ("HSP", same("CHU Saint-Pierre"), {"organisation": "71007661"}),
    (
        "LIE",
        T(
            "CHU of Liège (Sart Tilman)",
            "CHU de Liège (Sart Tilman)",
            "CHU Luik (Sart Tilman)",
            "CHU Lüttich (Sart Tilman)",
        ),
        {"organisation": "71070712"},
    ),
    (
        "UZG",
        T("Ghent University", "Université de Gand", "Universiteit Gent", "Universität Gent"),
        {"organisation": "0248015142"},
    ),
    ("UCL", same("UCLouvain"), {"organisation": "0419052272"}),
)
HIV_SAMPLE_TYPE = choices(
    "hiv_sample_type",
    ("plasma", same("Plasma")),
    ("serum", T("Serum", "Sérum", "Serum", "Serum")),
    ("whole_blood", T("Whole blood", "Sang total", "Volbloed", "Vollblut")),
    (
        "dbs",
        T("Dried blood spot", "Goutte de sang séchée", "Gedroogde bloedvlek", "Getrockneter Blutstropfen"),
    ),
    (
        "cells",
        T(
            "Cells (proviral DNA)",
            "Cellules (ADN proviral)",
            "Cellen (proviraal DNA)",
            "Zellen (provirale DNA)",
        ),
    ),
    ("other", OTHER),
)
HIV_TYPE = choices(
    "hiv_type",
    ("hiv1", T("HIV-1", "VIH-1", "hiv-1", "HIV-1")),
    ("hiv2", T("HIV-2", "VIH-2", "hiv-2", "HIV-2")),
)
SEQ_REASON = choices(
    "seq_reason",
    (
        "baseline",
        T(
            "Baseline resistance test (new diagnosis or before treatment)",
            "Test de résistance initial (nouveau diagnostic ou avant traitement)",
            "Baseline-resistentietest (nieuwe diagnose of vóór behandeling)",
            "Resistenztest vor Therapiebeginn (Neudiagnose oder vor Behandlung)",
        ),
    ),
    (
        "failure",
        T(
            "Virological failure on antiretroviral treatment",
            "Échec virologique sous traitement antirétroviral",
            "Virologisch falen onder antiretrovirale behandeling",
            "Virologisches Versagen unter antiretroviraler Therapie",
        ),
    ),
    ("other", OTHER),
)
ART_STATUS = choices(
    "art_status",
    ("naive", T("Treatment-naive", "Naïf de traitement", "Behandelingsnaïef", "Therapienaiv")),
    ("experienced", T("Treatment-experienced", "Prétraité", "Voorbehandeld", "Vorbehandelt")),
    ("unknown", UNKNOWN),
)
HIV_GENE = choices(
    "hiv_gene",
    ("PR", T("Protease (PR)", "Protéase (PR)", "Protease (PR)", "Protease (PR)")),
    (
        "RT",
        T(
            "Reverse transcriptase (RT)",
            "Transcriptase inverse (RT)",
            "Reverse transcriptase (RT)",
            "Reverse Transkriptase (RT)",
        ),
    ),
    ("IN", T("Integrase (IN)", "Intégrase (IN)", "Integrase (IN)", "Integrase (IN)")),
    (
        "ENV",
        T(
            "Envelope (env, V3 loop for tropism)",
            "Enveloppe (env, boucle V3 pour le tropisme)",
            "Envelop (env, V3-lus voor tropisme)",
            "Hülle (env, V3-Schleife für den Tropismus)",
        ),
    ),
)
SEQ_METHOD = choices(
    "seq_method",
    (
        "sanger",
        T(
            "Sanger population sequencing",
            "Séquençage de population Sanger",
            "Sanger-populatiesequencing",
            "Sanger-Populationssequenzierung",
        ),
    ),
    (
        "ngs",
        T(
            "Next-generation sequencing",
            "Séquençage de nouvelle génération",
            "Next-generation sequencing",
            "Next-Generation-Sequenzierung",
        ),
    ),
)
HIV_SUBTYPE = choices(
    "hiv_subtype",
    *((code, same(code)) for code in ("A1", "A6", "B", "C", "D", "F1", "G", "CRF01_AE", "CRF02_AG")),
    ("other", T("Other CRF or URF", "Autre CRF ou URF", "Andere CRF of URF", "Andere CRF oder URF")),
    ("undetermined", T("Undetermined", "Indéterminé", "Onbepaald", "Unbestimmt")),
)
SUBTYPE_TOOL = choices(
    "subtype_tool",
    ("rega", same("REGA HIV Subtyping Tool")),
    ("comet", same("COMET")),
    ("stanford", same("Stanford HIVdb")),
    ("other", OTHER),
)
DRUG_CLASS = choices(
    "drug_class",
    (
        "nrti",
        T(
            "NRTI (nucleoside reverse transcriptase inhibitors)",
            "INTI (inhibiteurs nucléosidiques de la transcriptase inverse)",
            "NRTI (nucleoside reverse-transcriptaseremmers)",
            "NRTI (nukleosidische Reverse-Transkriptase-Inhibitoren)",
        ),
    ),
    (
        "nnrti",
        T(
            "NNRTI (non-nucleoside reverse transcriptase inhibitors)",
            "INNTI (inhibiteurs non nucléosidiques de la transcriptase inverse)",
            "NNRTI (niet-nucleoside reverse-transcriptaseremmers)",
            "NNRTI (nicht-nukleosidische Reverse-Transkriptase-Inhibitoren)",
        ),
    ),
    (
        "pi",
        T(
            "PI (protease inhibitors)",
            "IP (inhibiteurs de la protéase)",
            "PI (proteaseremmers)",
            "PI (Protease-Inhibitoren)",
        ),
    ),
    (
        "insti",
        T(
            "INSTI (integrase inhibitors)",
            "INI (inhibiteurs de l'intégrase)",
            "INSTI (integraseremmers)",
            "INSTI (Integrase-Inhibitoren)",
        ),
    ),
)
INTERPRETATION = choices(
    "interpretation",
    ("stanford", same("Stanford HIVdb")),
    ("rega", same("Rega")),
    ("anrs", same("ANRS")),
    ("other", OTHER),
)


def hiv_sequence() -> list[Dcd]:
    hiv1 = "${CD_HIV_TYPE} = 'hiv1'"
    survey = _flatten(
        [
            patient_block(sex_personal=True),
            group(
                "sample",
                T("Sample", "Échantillon", "Staal", "Probe"),
                q(
                    f"select_one {ARL}",
                    "CD_ARL",
                    T(
                        "AIDS reference laboratory",
                        "Laboratoire de référence SIDA",
                        "Aids-referentielaboratorium",
                        "AIDS-Referenzlabor",
                    ),
                    required=True,
                ),
                q(
                    "text",
                    "TX_LAB_SAMPLE_ID",
                    T(
                        "Laboratory sample number",
                        "Numéro d'échantillon du laboratoire",
                        "Staalnummer van het laboratorium",
                        "Probennummer des Labors",
                    ),
                    hint=T(
                        "Must not contain patient identifiers.",
                        "Ne doit pas contenir d'identifiants du patient.",
                        "Mag geen patiëntidentificatie bevatten.",
                        "Darf keine Patientenkennungen enthalten.",
                    ),
                    constraint="regex(., '^[A-Za-z0-9_-]{1,30}$')",
                    message=T(
                        "1 to 30 letters, digits, '-' or '_'.",
                        "1 à 30 lettres, chiffres, « - » ou « _ ».",
                        "1 tot 30 letters, cijfers, '-' of '_'.",
                        "1 bis 30 Buchstaben, Ziffern, „-“ oder „_“.",
                    ),
                ),
                q(
                    "date",
                    "DT_SAMPLE",
                    T(
                        "Sampling date",
                        "Date de prélèvement",
                        "Datum van staalname",
                        "Datum der Probenentnahme",
                    ),
                    required=True,
                    constraint=". <= today() and . >= ${DT_PAT_DOB}",
                    message=T(
                        "The sampling date cannot be in the future nor before the date of birth.",
                        "La date de prélèvement ne peut être ni dans le futur ni avant la date de naissance.",
                        "De datum van staalname kan niet in de toekomst liggen en niet vóór de geboortedatum.",
                        "Das Entnahmedatum darf weder in der Zukunft noch vor dem Geburtsdatum liegen.",
                    ),
                ),
                calc(
                    "MS_AGE_SAMPLE",
                    T(
                        "Age at sampling (years)",
                        "Âge au prélèvement (années)",
                        "Leeftijd bij staalname (jaren)",
                        "Alter bei Probenentnahme (Jahre)",
                    ),
                    "int((${DT_SAMPLE} - ${DT_PAT_DOB}) div 365.25)",
                ),
                q(
                    f"select_one {HIV_SAMPLE_TYPE}",
                    "CD_SAMPLE_TYPE",
                    T("Sample type", "Type d'échantillon", "Type staal", "Probenart"),
                    required=True,
                ),
            ),
            group(
                "clinical_context",
                T("Clinical context", "Contexte clinique", "Klinische context", "Klinischer Kontext"),
                q(
                    f"select_one {HIV_TYPE}",
                    "CD_HIV_TYPE",
                    T("HIV type", "Type de VIH", "Type hiv", "HIV-Typ"),
                    required=True,
                ),
                q(
                    f"select_one {SEQ_REASON}",
                    "CD_SEQ_REASON",
                    T(
                        "Reason for sequencing",
                        "Motif du séquençage",
                        "Reden voor de sequencing",
                        "Grund der Sequenzierung",
                    ),
                    required=True,
                ),
                q(
                    f"select_one {ART_STATUS}",
                    "CD_ART_STATUS",
                    T(
                        "Antiretroviral treatment status",
                        "Statut du traitement antirétroviral",
                        "Status van de antiretrovirale behandeling",
                        "Status der antiretroviralen Therapie",
                    ),
                    required=True,
                    constraint=". != 'naive' or ${CD_SEQ_REASON} != 'failure'",
                    message=T(
                        "A treatment-naive patient cannot have a virological failure on treatment.",
                        "Un patient naïf de traitement ne peut pas être en échec virologique sous traitement.",
                        "Een behandelingsnaïeve patiënt kan niet virologisch falen onder behandeling.",
                        "Ein therapienaiver Patient kann kein virologisches Versagen unter Therapie haben.",
                    ),
                ),
                q(
                    "integer",
                    "MS_VIRAL_LOAD",
                    T(
                        "Viral load of the sample (copies/mL)",
                        "Charge virale de l'échantillon (copies/mL)",
                        "Virale lading van het staal (kopieën/mL)",
                        "Viruslast der Probe (Kopien/mL)",
                    ),
                    hint=T("If known.", "Si elle est connue.", "Indien gekend.", "Falls bekannt."),
                    constraint=". >= 0 and . <= 100000000",
                    message=T(
                        "Between 0 and 100,000,000 copies/mL.",
                        "Entre 0 et 100 000 000 copies/mL.",
                        "Tussen 0 en 100.000.000 kopieën/mL.",
                        "Zwischen 0 und 100.000.000 Kopien/mL.",
                    ),
                ),
            ),
            group(
                "analysis",
                T("Sequence analysis", "Analyse de la séquence", "Sequentieanalyse", "Sequenzanalyse"),
                q(
                    "date",
                    "DT_SEQ",
                    T(
                        "Sequencing date",
                        "Date du séquençage",
                        "Datum van de sequencing",
                        "Datum der Sequenzierung",
                    ),
                    required=True,
                    constraint=". >= ${DT_SAMPLE} and . <= today()",
                    message=T(
                        "The sequencing date must be on or after the sampling date and not in the future.",
                        "La date du séquençage doit être égale ou postérieure à la date de prélèvement et pas dans le futur.",
                        "De sequencingdatum moet op of na de datum van staalname liggen en niet in de toekomst.",
                        "Das Sequenzierdatum muss am oder nach dem Entnahmedatum und nicht in der Zukunft liegen.",
                    ),
                ),
                q(
                    f"select_multiple {HIV_GENE}",
                    "CD_GENES",
                    T("Genes sequenced", "Gènes séquencés", "Gesequeneerde genen", "Sequenzierte Gene"),
                    required=True,
                    constraint="count-selected(.) >= 1",
                    message=T(
                        "Select at least one gene.",
                        "Sélectionnez au moins un gène.",
                        "Selecteer minstens één gen.",
                        "Mindestens ein Gen auswählen.",
                    ),
                ),
                q(
                    f"select_one {SEQ_METHOD}",
                    "CD_SEQ_METHOD",
                    T("Sequencing method", "Méthode de séquençage", "Sequencingmethode", "Sequenziermethode"),
                    required=True,
                ),
                q(
                    "decimal",
                    "MS_NGS_THRESHOLD",
                    T(
                        "Minority variant detection threshold (%)",
                        "Seuil de détection des variants minoritaires (%)",
                        "Detectiedrempel voor minderheidsvarianten (%)",
                        "Nachweisgrenze für Minoritätsvarianten (%)",
                    ),
                    relevant="${CD_SEQ_METHOD} = 'ngs'",
                    required=True,
                    number_format="2.1",
                    constraint=". >= 1 and . <= 25",
                    message=T(
                        "Between 1 and 25 %.",
                        "Entre 1 et 25 %.",
                        "Tussen 1 en 25 %.",
                        "Zwischen 1 und 25 %.",
                    ),
                ),
                q(
                    f"select_one {HIV_SUBTYPE}",
                    "CD_SUBTYPE",
                    T("HIV-1 subtype", "Sous-type du VIH-1", "Hiv-1-subtype", "HIV-1-Subtyp"),
                    relevant=hiv1,
                    required=True,
                ),
                q(
                    "text",
                    "TX_SUBTYPE_OTHER",
                    T(
                        "Other subtype (name)",
                        "Autre sous-type (nom)",
                        "Ander subtype (naam)",
                        "Anderer Subtyp (Name)",
                    ),
                    relevant=f"{hiv1} and ${{CD_SUBTYPE}} = 'other'",
                    required=True,
                    constraint="regex(., '^[A-Za-z0-9_/-]{1,30}$')",
                    message=T(
                        "1 to 30 letters, digits, '_', '/' or '-' (e.g. CRF06_cpx).",
                        "1 à 30 lettres, chiffres, « _ », « / » ou « - » (p. ex. CRF06_cpx).",
                        "1 tot 30 letters, cijfers, '_', '/' of '-' (bv. CRF06_cpx).",
                        "1 bis 30 Buchstaben, Ziffern, „_“, „/“ oder „-“ (z. B. CRF06_cpx).",
                    ),
                ),
                q(
                    f"select_one {SUBTYPE_TOOL}",
                    "CD_SUBTYPE_TOOL",
                    T(
                        "Subtyping tool",
                        "Outil de sous-typage",
                        "Subtyperingstool",
                        "Subtypisierungswerkzeug",
                    ),
                    relevant=hiv1,
                    required=True,
                ),
                q(
                    f"select_one {YES_NO}",
                    "CD_DRM_DETECTED",
                    T(
                        "Drug resistance mutations detected",
                        "Mutations de résistance détectées",
                        "Resistentiemutaties gedetecteerd",
                        "Resistenzmutationen nachgewiesen",
                    ),
                    required=True,
                ),
                q(
                    f"select_multiple {DRUG_CLASS}",
                    "CD_DRM_CLASSES",
                    T(
                        "Drug classes with resistance",
                        "Classes de médicaments avec résistance",
                        "Geneesmiddelenklassen met resistentie",
                        "Wirkstoffklassen mit Resistenz",
                    ),
                    relevant="${CD_DRM_DETECTED} = 'yes'",
                    required=True,
                    constraint=(
                        "count-selected(.) >= 1"
                        " and not(selected(., 'pi') and not(selected(${CD_GENES}, 'PR')))"
                        " and not(selected(., 'insti') and not(selected(${CD_GENES}, 'IN')))"
                        " and not((selected(., 'nrti') or selected(., 'nnrti')) and not(selected(${CD_GENES}, 'RT')))"
                    ),
                    message=T(
                        "Select at least one class; a class needs its gene sequenced (PI: PR, NRTI/NNRTI: RT, INSTI: IN).",
                        "Sélectionnez au moins une classe ; une classe exige le séquençage de son gène (IP : PR, INTI/INNTI : RT, INI : IN).",
                        "Selecteer minstens één klasse; een klasse vereist dat haar gen gesequeneerd is (PI: PR, NRTI/NNRTI: RT, INSTI: IN).",
                        "Mindestens eine Klasse wählen; eine Klasse setzt die Sequenzierung ihres Gens voraus (PI: PR, NRTI/NNRTI: RT, INSTI: IN).",
                    ),
                ),
                q(
                    f"select_one {INTERPRETATION}",
                    "CD_INTERP_ALGO",
                    T(
                        "Resistance interpretation algorithm",
                        "Algorithme d'interprétation de la résistance",
                        "Algoritme voor resistentie-interpretatie",
                        "Algorithmus zur Resistenzinterpretation",
                    ),
                    required=True,
                ),
                q(
                    "text",
                    "TX_INTERP_ALGO_VERSION",
                    T(
                        "Algorithm version",
                        "Version de l'algorithme",
                        "Versie van het algoritme",
                        "Version des Algorithmus",
                    ),
                    hint=T("For example 9.6.", "Par exemple 9.6.", "Bijvoorbeeld 9.6.", "Zum Beispiel 9.6."),
                    constraint="string-length(.) <= 20",
                    message=T(
                        "At most 20 characters.",
                        "20 caractères au maximum.",
                        "Maximaal 20 tekens.",
                        "Höchstens 20 Zeichen.",
                    ),
                ),
            ),
            group(
                "sequence_file",
                T(
                    "Link to the nucleotide sequence",
                    "Lien avec la séquence nucléotidique",
                    "Koppeling met de nucleotidensequentie",
                    "Verknüpfung mit der Nukleotidsequenz",
                ),
                q(
                    "text",
                    "TX_ATT",
                    T("File name", "Nom du fichier", "Bestandsnaam", "Dateiname"),
                    hint=T(
                        "ARL_yyyymmddHHMMSS: the laboratory code and the date-time stamp of the CSV file with the "
                        "nucleotide sequences sent over SFTP (e.g. HSP_20240827092014 for HSP_20240827092014.csv).",
                        "ARL_aaaammjjHHMMSS : le code du laboratoire et l'horodatage du fichier CSV des séquences "
                        "nucléotidiques envoyé par SFTP (p. ex. HSP_20240827092014 pour HSP_20240827092014.csv).",
                        "ARL_jjjjmmddUUMMSS: de code van het laboratorium en de datum-tijdstempel van het CSV-bestand "
                        "met de nucleotidensequenties verstuurd via SFTP (bv. HSP_20240827092014 voor HSP_20240827092014.csv).",
                        "ARL_jjjjmmttHHMMSS: der Laborcode und der Zeitstempel der per SFTP gesendeten CSV-Datei mit den "
                        "Nukleotidsequenzen (z. B. HSP_20240827092014 für HSP_20240827092014.csv).",
                    ),
                    required=True,
                    constraint="regex(., '^[A-Z]{3}_[0-9]{14}$') and starts-with(., concat(${CD_ARL}, '_'))",
                    message=T(
                        "The file name follows ARL_yyyymmddHHMMSS and starts with the laboratory's code (e.g. HSP_20240827092014).",
                        "Le nom du fichier suit ARL_aaaammjjHHMMSS et commence par le code du laboratoire (p. ex. HSP_20240827092014).",
                        "De bestandsnaam volgt ARL_jjjjmmddUUMMSS en begint met de code van het laboratorium (bv. HSP_20240827092014).",
                        "Der Dateiname folgt ARL_jjjjmmttHHMMSS und beginnt mit dem Laborcode (z. B. HSP_20240827092014).",
                    ),
                ),
                q(
                    "text",
                    "TX_ATT_RECRD",
                    T("Record name", "Nom de l'enregistrement", "Recordnaam", "Datensatzname"),
                    hint=T(
                        "ARL_yyyymmddHHMMSS_nnnnn: the file name and a unique 5-digit number (e.g. HSP_20240827092014_00001).",
                        "ARL_aaaammjjHHMMSS_nnnnn : le nom du fichier et un numéro unique de 5 chiffres (p. ex. HSP_20240827092014_00001).",
                        "ARL_jjjjmmddUUMMSS_nnnnn: de bestandsnaam en een uniek nummer van 5 cijfers (bv. HSP_20240827092014_00001).",
                        "ARL_jjjjmmttHHMMSS_nnnnn: der Dateiname und eine eindeutige 5-stellige Nummer (z. B. HSP_20240827092014_00001).",
                    ),
                    required=True,
                    constraint="regex(., '^[A-Z]{3}_[0-9]{14}_[0-9]{5}$') and starts-with(., concat(${TX_ATT}, '_'))",
                    message=T(
                        "The record name follows ARL_yyyymmddHHMMSS_nnnnn and starts with the file name (e.g. HSP_20240827092014_00001).",
                        "Le nom de l'enregistrement suit ARL_aaaammjjHHMMSS_nnnnn et commence par le nom du fichier (p. ex. HSP_20240827092014_00001).",
                        "De recordnaam volgt ARL_jjjjmmddUUMMSS_nnnnn en begint met de bestandsnaam (bv. HSP_20240827092014_00001).",
                        "Der Datensatzname folgt ARL_jjjjmmttHHMMSS_nnnnn und beginnt mit dem Dateinamen (z. B. HSP_20240827092014_00001).",
                    ),
                ),
            ),
        ]
    )
    return [
        Dcd(
            "HDBP0263",
            "HIV_SEQUENCE",
            T(
                "HIV-AIDS Sequence Registry",
                "Registre des séquences VIH-SIDA",
                "Hiv-aids-sequentieregister",
                "HIV-AIDS-Sequenzregister",
            ),
            "HIV_SEQUENCE",
            263,
            T(
                "HIV sequence analysis (metadata)",
                "Analyse de séquence du VIH (métadonnées)",
                "Hiv-sequentieanalyse (metadata)",
                "HIV-Sequenzanalyse (Metadaten)",
            ),
            ["TX_ATT_RECRD"],
            "Authored by hdhub from public descriptions; this is NOT the official healthdata.be DCD. "
            "The project (HDBP0263, HIV_Sequence), the data-providing AIDS reference laboratories, the "
            "metadata file and the linkage fields TX_ATT (file name, ARL_yyyymmddHHMMSS) and TX_ATT_RECRD "
            "(record name, ARL_yyyymmddHHMMSS_nnnnn) come from healthdata.be's public technical "
            "documentation of the Belgian HIV Sequence Registry (docs.healthdata.be). The patient "
            "identification follows healthdata.be's published naming (IDC_PAT, DT_PAT_DOB, CD_PAT_SEX) "
            "and the pseudocode rule for patients without an SSIN; the laboratory codes (other than HSP) "
            "and every analysis field, code list and rule are hdhub's own guess from public knowledge of "
            "HIV drug-resistance testing.",
            survey,
        )
    ]


# ----- NGS -----------------------------------------------------------------------------

NGS_SAMPLE_TYPE = choices(
    "ngs_sample_type",
    (
        "ffpe",
        T(
            "Formalin-fixed paraffin-embedded tissue (FFPE)",
            "Tissu fixé au formol et inclus en paraffine (FFPE)",
            "Formaline-gefixeerd, in paraffine ingebed weefsel (FFPE)",
            "Formalinfixiertes, paraffineingebettetes Gewebe (FFPE)",
        ),
    ),
    (
        "frozen",
        T("Fresh frozen tissue", "Tissu congelé", "Vers ingevroren weefsel", "Frisch gefrorenes Gewebe"),
    ),
    (
        "cytology",
        T("Cytology", "Cytologie", "Cytologie", "Zytologie"),
    ),
    (
        "blood",
        T("Peripheral blood", "Sang périphérique", "Perifeer bloed", "Peripheres Blut"),
    ),
    (
        "bone_marrow",
        T("Bone marrow", "Moelle osseuse", "Beenmerg", "Knochenmark"),
    ),
    (
        "plasma",
        T(
            "Plasma (cell-free DNA)",
            "Plasma (ADN libre circulant)",
            "Plasma (celvrij DNA)",
            "Plasma (zellfreie DNA)",
        ),
    ),
)
MALIGNANCY = choices(
    "malignancy",
    ("solid", T("Solid tumour", "Tumeur solide", "Solide tumor", "Solider Tumor")),
    (
        "haemato",
        T(
            "Haematological malignancy",
            "Hémopathie maligne",
            "Hematologische maligniteit",
            "Hämatologische Neoplasie",
        ),
    ),
)
TUMOUR_TYPE = choices(
    "tumour_type",
    *(
        Choice(code, label, {"category": category})
        for code, category, label in (
            (
                "nsclc",
                "solid",
                T(
                    "Non-small cell lung cancer",
                    "Cancer du poumon non à petites cellules",
                    "Niet-kleincellige longkanker",
                    "Nicht-kleinzelliges Lungenkarzinom",
                ),
            ),
            (
                "crc",
                "solid",
                T("Colorectal cancer", "Cancer colorectal", "Colorectale kanker", "Kolorektales Karzinom"),
            ),
            ("melanoma", "solid", T("Melanoma", "Mélanome", "Melanoom", "Melanom")),
            (
                "gist",
                "solid",
                T(
                    "Gastrointestinal stromal tumour",
                    "Tumeur stromale gastro-intestinale",
                    "Gastro-intestinale stromale tumor",
                    "Gastrointestinaler Stromatumor",
                ),
            ),
            ("breast", "solid", T("Breast cancer", "Cancer du sein", "Borstkanker", "Mammakarzinom")),
            (
                "ovarian",
                "solid",
                T("Ovarian cancer", "Cancer de l'ovaire", "Eierstokkanker", "Ovarialkarzinom"),
            ),
            ("glioma", "solid", T("Glioma", "Gliome", "Glioom", "Gliom")),
            (
                "solid_other",
                "solid",
                T(
                    "Other solid tumour",
                    "Autre tumeur solide",
                    "Andere solide tumor",
                    "Anderer solider Tumor",
                ),
            ),
            (
                "aml",
                "haemato",
                T(
                    "Acute myeloid leukaemia",
                    "Leucémie aiguë myéloïde",
                    "Acute myeloïde leukemie",
                    "Akute myeloische Leukämie",
                ),
            ),
            (
                "mds",
                "haemato",
                T(
                    "Myelodysplastic syndrome",
                    "Syndrome myélodysplasique",
                    "Myelodysplastisch syndroom",
                    "Myelodysplastisches Syndrom",
                ),
            ),
            (
                "mpn",
                "haemato",
                T(
                    "Myeloproliferative neoplasm",
                    "Néoplasie myéloproliférative",
                    "Myeloproliferatieve neoplasie",
                    "Myeloproliferative Neoplasie",
                ),
            ),
            (
                "cll",
                "haemato",
                T(
                    "Chronic lymphocytic leukaemia",
                    "Leucémie lymphoïde chronique",
                    "Chronische lymfatische leukemie",
                    "Chronische lymphatische Leukämie",
                ),
            ),
            ("lymphoma", "haemato", T("Lymphoma", "Lymphome", "Lymfoom", "Lymphom")),
            (
                "haemato_other",
                "haemato",
                T(
                    "Other haematological malignancy",
                    "Autre hémopathie maligne",
                    "Andere hematologische maligniteit",
                    "Andere hämatologische Neoplasie",
                ),
            ),
        )
    ),
)
SAMPLE_ORIGIN = choices(
    "sample_origin",
    ("primary", T("Primary tumour", "Tumeur primitive", "Primaire tumor", "Primärtumor")),
    ("metastasis", T("Metastasis", "Métastase", "Metastase", "Metastase")),
)
NGS_INDICATION = choices(
    "ngs_indication",
    ("diagnosis", T("Diagnosis", "Diagnostic", "Diagnose", "Diagnose")),
    ("prognosis", T("Prognosis", "Pronostic", "Prognose", "Prognose")),
    (
        "therapy",
        T(
            "Choice of a targeted therapy",
            "Choix d'une thérapie ciblée",
            "Keuze van een doelgerichte therapie",
            "Wahl einer zielgerichteten Therapie",
        ),
    ),
    (
        "monitoring",
        T(
            "Follow-up of residual disease",
            "Suivi de la maladie résiduelle",
            "Opvolging van residuele ziekte",
            "Verlaufskontrolle der Resterkrankung",
        ),
    ),
)
NGS_METHOD = choices(
    "ngs_method",
    ("amplicon", T("Amplicon-based", "Par amplicons", "Amplicon-gebaseerd", "Amplikon-basiert")),
    (
        "capture",
        T("Hybrid capture", "Capture par hybridation", "Hybridisatie-capture", "Hybridisierungs-Capture"),
    ),
)
NGS_PLATFORM = choices(
    "ngs_platform",
    ("illumina", same("Illumina")),
    ("ion_torrent", same("Ion Torrent")),
    ("other", OTHER),
)
REFERENCE_GENOME = choices(
    "reference_genome",
    ("GRCh37", same("GRCh37 (hg19)")),
    ("GRCh38", same("GRCh38 (hg38)")),
)
GENE = choices(
    "gene",
    *(
        (symbol, same(symbol))
        for symbol in (
            "ALK",
            "BRAF",
            "BRCA1",
            "BRCA2",
            "EGFR",
            "ERBB2",
            "FLT3",
            "IDH1",
            "IDH2",
            "KIT",
            "KRAS",
            "MET",
            "NPM1",
            "NRAS",
            "PDGFRA",
            "PIK3CA",
            "ROS1",
            "TP53",
        )
    ),
)
NGS_RESULT = choices(
    "ngs_result",
    (
        "variant",
        T(
            "Clinically relevant variant(s) detected",
            "Variant(s) cliniquement pertinent(s) détecté(s)",
            "Klinisch relevante variant(en) gedetecteerd",
            "Klinisch relevante Variante(n) nachgewiesen",
        ),
    ),
    (
        "no_variant",
        T(
            "No clinically relevant variant detected",
            "Aucun variant cliniquement pertinent détecté",
            "Geen klinisch relevante variant gedetecteerd",
            "Keine klinisch relevante Variante nachgewiesen",
        ),
    ),
)


def ngs() -> list[Dcd]:
    tissue = "${CD_SAMPLE_TYPE} = 'ffpe' or ${CD_SAMPLE_TYPE} = 'frozen' or ${CD_SAMPLE_TYPE} = 'cytology'"
    survey = _flatten(
        [
            patient_block(sex_personal=False),
            group(
                "laboratory",
                T(
                    "Laboratory and prescriber",
                    "Laboratoire et prescripteur",
                    "Laboratorium en voorschrijver",
                    "Labor und verordnender Arzt",
                ),
                q(
                    "text",
                    "CD_RIZIV_LAB",
                    T(
                        "NIHDI number of the laboratory",
                        "Numéro INAMI du laboratoire",
                        "RIZIV-nummer van het laboratorium",
                        "LIKIV-Nummer des Labors",
                    ),
                    required=True,
                    constraint="regex(., '^[0-9]{8}$')",
                    message=T(
                        "A laboratory's NIHDI number has 8 digits.",
                        "Le numéro INAMI d'un laboratoire compte 8 chiffres.",
                        "Het RIZIV-nummer van een laboratorium telt 8 cijfers.",
                        "Die LIKIV-Nummer eines Labors hat 8 Ziffern.",
                    ),
                ),
                q(
                    "text",
                    "CD_RIZIV_PRESC_PHYS",
                    T(
                        "NIHDI number of the prescribing physician",
                        "Numéro INAMI du médecin prescripteur",
                        "RIZIV-nummer van de voorschrijvende arts",
                        "LIKIV-Nummer des verordnenden Arztes",
                    ),
                    required=True,
                    constraint="regex(., '^1[0-9]{10}$')",
                    message=T(
                        "A physician's NIHDI number has 11 digits and starts with 1.",
                        "Le numéro INAMI d'un médecin compte 11 chiffres et commence par 1.",
                        "Het RIZIV-nummer van een arts telt 11 cijfers en begint met 1.",
                        "Die LIKIV-Nummer eines Arztes hat 11 Ziffern und beginnt mit 1.",
                    ),
                ),
            ),
            group(
                "sample",
                T("Sample and tumour", "Échantillon et tumeur", "Staal en tumor", "Probe und Tumor"),
                q(
                    "text",
                    "TX_SAMPLE_ID",
                    T(
                        "Laboratory sample number",
                        "Numéro d'échantillon du laboratoire",
                        "Staalnummer van het laboratorium",
                        "Probennummer des Labors",
                    ),
                    hint=T(
                        "Must not contain patient identifiers.",
                        "Ne doit pas contenir d'identifiants du patient.",
                        "Mag geen patiëntidentificatie bevatten.",
                        "Darf keine Patientenkennungen enthalten.",
                    ),
                    required=True,
                    constraint="regex(., '^[A-Za-z0-9_-]{1,30}$')",
                    message=T(
                        "1 to 30 letters, digits, '-' or '_'.",
                        "1 à 30 lettres, chiffres, « - » ou « _ ».",
                        "1 tot 30 letters, cijfers, '-' of '_'.",
                        "1 bis 30 Buchstaben, Ziffern, „-“ oder „_“.",
                    ),
                ),
                q(
                    "date",
                    "DT_SAMPLE",
                    T(
                        "Sampling date",
                        "Date de prélèvement",
                        "Datum van staalname",
                        "Datum der Probenentnahme",
                    ),
                    required=True,
                    constraint=". <= today() and . >= ${DT_PAT_DOB}",
                    message=T(
                        "The sampling date cannot be in the future nor before the date of birth.",
                        "La date de prélèvement ne peut être ni dans le futur ni avant la date de naissance.",
                        "De datum van staalname kan niet in de toekomst liggen en niet vóór de geboortedatum.",
                        "Das Entnahmedatum darf weder in der Zukunft noch vor dem Geburtsdatum liegen.",
                    ),
                ),
                q(
                    f"select_one {NGS_SAMPLE_TYPE}",
                    "CD_SAMPLE_TYPE",
                    T("Sample type", "Type d'échantillon", "Type staal", "Probenart"),
                    required=True,
                ),
                q(
                    f"select_one {MALIGNANCY}",
                    "CD_MALIGNANCY_CAT",
                    T("Type of malignancy", "Type de cancer", "Type maligniteit", "Art der Neoplasie"),
                    required=True,
                ),
                q(
                    f"select_one {TUMOUR_TYPE}",
                    "CD_TUMOUR_TYPE",
                    T("Tumour type", "Type de tumeur", "Tumortype", "Tumorart"),
                    required=True,
                    choice_filter="category = ${CD_MALIGNANCY_CAT}",
                ),
                q(
                    "text",
                    "TX_TUMOUR_TYPE_OTHER",
                    T("Other tumour type", "Autre type de tumeur", "Ander tumortype", "Andere Tumorart"),
                    relevant="${CD_TUMOUR_TYPE} = 'solid_other' or ${CD_TUMOUR_TYPE} = 'haemato_other'",
                    required=True,
                    constraint="string-length(.) <= 100",
                    message=MAX_100_CHARS,
                ),
                q(
                    f"select_one {SAMPLE_ORIGIN}",
                    "CD_SAMPLE_ORIGIN",
                    T(
                        "Origin of the sample",
                        "Origine de l'échantillon",
                        "Oorsprong van het staal",
                        "Herkunft der Probe",
                    ),
                    relevant=f"${{CD_MALIGNANCY_CAT}} = 'solid' and ({tissue})",
                    required=True,
                ),
                q(
                    "integer",
                    "MS_TUMOUR_PCT",
                    T(
                        "Percentage of tumour cells (%)",
                        "Pourcentage de cellules tumorales (%)",
                        "Percentage tumorcellen (%)",
                        "Anteil der Tumorzellen (%)",
                    ),
                    relevant=tissue,
                    required="${CD_SAMPLE_TYPE} = 'ffpe'",
                    constraint=". >= 0 and . <= 100",
                    message=T(
                        "Between 0 and 100 %.",
                        "Entre 0 et 100 %.",
                        "Tussen 0 en 100 %.",
                        "Zwischen 0 und 100 %.",
                    ),
                ),
                q(
                    f"select_one {NGS_INDICATION}",
                    "CD_NGS_INDICATION",
                    T("NGS indication", "Indication du NGS", "NGS-indicatie", "NGS-Indikation"),
                    required=True,
                ),
            ),
            group(
                "sequencing",
                T("Sequencing", "Séquençage", "Sequencing", "Sequenzierung"),
                q(
                    "date",
                    "DT_NGS_REPORT",
                    T("Date of the report", "Date du rapport", "Datum van het verslag", "Datum des Befundes"),
                    required=True,
                    constraint=". >= ${DT_SAMPLE} and . <= today()",
                    message=T(
                        "The report date must be on or after the sampling date and not in the future.",
                        "La date du rapport doit être égale ou postérieure à la date de prélèvement et pas dans le futur.",
                        "De verslagdatum moet op of na de datum van staalname liggen en niet in de toekomst.",
                        "Das Befunddatum muss am oder nach dem Entnahmedatum und nicht in der Zukunft liegen.",
                    ),
                ),
                calc(
                    "MS_TURNAROUND",
                    T(
                        "Turnaround time (days)",
                        "Délai de rendu (jours)",
                        "Doorlooptijd (dagen)",
                        "Bearbeitungszeit (Tage)",
                    ),
                    "${DT_NGS_REPORT} - ${DT_SAMPLE}",
                ),
                q(
                    f"select_one {NGS_METHOD}",
                    "CD_NGS_METHOD",
                    T(
                        "Library preparation",
                        "Préparation de la librairie",
                        "Bibliotheekbereiding",
                        "Bibliotheksvorbereitung",
                    ),
                    required=True,
                ),
                q(
                    f"select_one {NGS_PLATFORM}",
                    "CD_NGS_PLATFORM",
                    T(
                        "Sequencing platform",
                        "Plateforme de séquençage",
                        "Sequencingplatform",
                        "Sequenzierplattform",
                    ),
                    required=True,
                ),
                q(
                    "text",
                    "TX_PANEL_NAME",
                    T(
                        "Name and version of the gene panel",
                        "Nom et version du panel de gènes",
                        "Naam en versie van het genpanel",
                        "Name und Version des Genpanels",
                    ),
                    required=True,
                    constraint="string-length(.) <= 100",
                    message=MAX_100_CHARS,
                ),
                q(
                    f"select_one {REFERENCE_GENOME}",
                    "CD_REF_GENOME",
                    T("Reference genome", "Génome de référence", "Referentiegenoom", "Referenzgenom"),
                    required=True,
                ),
                q(
                    f"select_multiple {GENE}",
                    "CD_GENES_TESTED",
                    T("Genes analysed", "Gènes analysés", "Geanalyseerde genen", "Analysierte Gene"),
                    required=True,
                    constraint="count-selected(.) >= 1",
                    message=T(
                        "Select at least one gene.",
                        "Sélectionnez au moins un gène.",
                        "Selecteer minstens één gen.",
                        "Mindestens ein Gen auswählen.",
                    ),
                ),
                q(
                    "integer",
                    "MS_MEAN_DEPTH",
                    T(
                        "Mean sequencing depth (x)",
                        "Profondeur moyenne de séquençage (x)",
                        "Gemiddelde sequencingdiepte (x)",
                        "Mittlere Sequenziertiefe (x)",
                    ),
                    required=True,
                    constraint=". >= 1 and . <= 100000",
                    message=T(
                        "Between 1 and 100,000.",
                        "Entre 1 et 100 000.",
                        "Tussen 1 en 100.000.",
                        "Zwischen 1 und 100.000.",
                    ),
                ),
                q(
                    "decimal",
                    "MS_LOD_VAF",
                    T(
                        "Limit of detection (variant allele frequency, %)",
                        "Limite de détection (fréquence allélique du variant, %)",
                        "Detectielimiet (variantallelfrequentie, %)",
                        "Nachweisgrenze (Variantenallelfrequenz, %)",
                    ),
                    required=True,
                    number_format="2.1",
                    constraint=". > 0 and . <= 50",
                    message=T(
                        "More than 0 and at most 50 %.",
                        "Supérieure à 0 et au plus 50 %.",
                        "Meer dan 0 en hoogstens 50 %.",
                        "Größer als 0 und höchstens 50 %.",
                    ),
                ),
                q(
                    f"select_one {NGS_RESULT}",
                    "CD_NGS_RESULT",
                    T("Result", "Résultat", "Resultaat", "Ergebnis"),
                    required=True,
                ),
                q(
                    f"select_multiple {GENE}",
                    "CD_GENES_VARIANT",
                    T(
                        "Genes with a clinically relevant variant",
                        "Gènes avec un variant cliniquement pertinent",
                        "Genen met een klinisch relevante variant",
                        "Gene mit einer klinisch relevanten Variante",
                    ),
                    relevant="${CD_NGS_RESULT} = 'variant'",
                    required=True,
                    constraint="count-selected(.) >= 1 and count-selected(.) <= count-selected(${CD_GENES_TESTED})",
                    message=T(
                        "Select at least one gene, and not more genes than were analysed.",
                        "Sélectionnez au moins un gène, et pas plus de gènes que ceux analysés.",
                        "Selecteer minstens één gen, en niet meer genen dan geanalyseerd.",
                        "Mindestens ein Gen wählen, und nicht mehr Gene als analysiert.",
                    ),
                ),
                q(
                    "text",
                    "TX_VCF_FILE_NAME",
                    T(
                        "Name of the VCF file",
                        "Nom du fichier VCF",
                        "Naam van het VCF-bestand",
                        "Name der VCF-Datei",
                    ),
                    hint=T(
                        "Exactly the name of the VCF file sent over SFTP, without folder (e.g. NGS_LAB1_2025_000123.vcf.gz). "
                        "Neither the name nor the VCF header may contain patient information.",
                        "Exactement le nom du fichier VCF envoyé par SFTP, sans dossier (p. ex. NGS_LAB1_2025_000123.vcf.gz). "
                        "Ni le nom ni l'en-tête du VCF ne peuvent contenir d'informations sur le patient.",
                        "Exact de naam van het VCF-bestand verstuurd via SFTP, zonder map (bv. NGS_LAB1_2025_000123.vcf.gz). "
                        "Noch de naam noch de VCF-header mogen patiëntgegevens bevatten.",
                        "Genau der Name der per SFTP gesendeten VCF-Datei, ohne Ordner (z. B. NGS_LAB1_2025_000123.vcf.gz). "
                        "Weder der Name noch der VCF-Header dürfen Patientendaten enthalten.",
                    ),
                    required=True,
                    constraint=(
                        "regex(., '^[A-Za-z0-9][A-Za-z0-9._-]*[.]vcf([.]gz)?$') and string-length(.) <= 100"
                        " and (${IDC_PAT} = '' or not(contains(., ${IDC_PAT})))"
                    ),
                    message=T(
                        "A file name without folder, of at most 100 letters, digits, '.', '_' or '-', ending in .vcf or .vcf.gz, "
                        "and without the patient's SSIN.",
                        "Un nom de fichier sans dossier, d'au plus 100 lettres, chiffres, « . », « _ » ou « - », se terminant par "
                        ".vcf ou .vcf.gz, et sans le NISS du patient.",
                        "Een bestandsnaam zonder map, van hoogstens 100 letters, cijfers, '.', '_' of '-', eindigend op .vcf of "
                        ".vcf.gz, en zonder het INSZ van de patiënt.",
                        "Ein Dateiname ohne Ordner aus höchstens 100 Buchstaben, Ziffern, „.“, „_“ oder „-“, endend auf .vcf oder "
                        ".vcf.gz, und ohne die ENSS des Patienten.",
                    ),
                ),
            ),
        ]
    )
    return [
        Dcd(
            "HDBP0257",
            "NGS",
            T(
                "Next Generation Sequencing (NGS)",
                "Séquençage de nouvelle génération (NGS)",
                "Next Generation Sequencing (NGS)",
                "Next-Generation-Sequenzierung (NGS)",
            ),
            "NGS",
            257,
            T(
                "NGS test with VCF file",
                "Test NGS avec fichier VCF",
                "NGS-test met VCF-bestand",
                "NGS-Test mit VCF-Datei",
            ),
            ["TX_VCF_FILE_NAME"],
            "Authored by hdhub from public descriptions; this is NOT the official healthdata.be DCD. "
            "The registry's purpose (NGS tests by laboratories asking reimbursement), one VCF file per "
            "patient record whose name must equal the file name entered in the record and whose header "
            "must not contain patient information, and the 'NGS indication' come from healthdata.be's "
            "public support article 'Documentation for Registry NGS' (last modified 30/04/2020). That "
            "article gives no project code: HDBP0257 is hdhub's placeholder, not an official code. The "
            "patient identification follows healthdata.be's published naming (IDC_PAT, DT_PAT_DOB, "
            "CD_PAT_SEX); every other field, code list and rule is hdhub's own choice from public "
            "knowledge of molecular pathology.",
            survey,
        )
    ]


# ----- PACEMAKER: a reimbursed implant (NIPPIN) ------------------------------------------

IMPLANT_KIND = choices(
    "pm_implant_kind",
    ("first", T("First implant", "Première implantation", "Eerste implantatie", "Erstimplantation")),
    ("replacement", T("Replacement", "Remplacement", "Vervanging", "Austausch")),
    ("upgrade", T("Upgrade", "Mise à niveau", "Upgrade", "Aufrüstung")),
)
PACEMAKER_TYPE = choices(
    "pm_device_type",
    ("single", T("Single chamber", "Simple chambre", "Eenkamer", "Einkammer")),
    ("dual", T("Dual chamber", "Double chambre", "Tweekamer", "Zweikammer")),
    ("crt_p", same("CRT-P")),
    ("leadless", T("Leadless", "Sans sonde", "Zonder lead", "Sondenlos")),
)
#: Every billing field makes the message only when reimbursement is asked.
REIMBURSED = "${CD_REIMBURSEMENT} = 'yes'"


def billing(xml_name: str) -> tuple[str, str]:
    return (xml_name, REIMBURSED)


def pacemaker() -> list[Dcd]:
    survey = _flatten(
        [
            patient_block(sex_personal=False, nippin=True),
            group(
                "implant",
                T("Implant", "Implantation", "Implantatie", "Implantation"),
                q(
                    "date",
                    "DT_IMPLANT",
                    T(
                        "Date of the implant",
                        "Date de l'implantation",
                        "Datum van de implantatie",
                        "Datum der Implantation",
                    ),
                    required=True,
                    constraint=". <= today()",
                    message=NOT_IN_FUTURE,
                    nippin=billing("ImplantDate"),
                ),
                q(
                    f"select_one {IMPLANT_KIND}",
                    "CD_IMPLANT_KIND",
                    T("Kind of implant", "Type d'implantation", "Soort implantatie", "Art der Implantation"),
                    required=True,
                ),
                q(
                    f"select_one {PACEMAKER_TYPE}",
                    "CD_DEVICE_TYPE",
                    T("Pacemaker type", "Type de stimulateur", "Type pacemaker", "Schrittmachertyp"),
                    required=True,
                ),
                q(
                    "text",
                    "CD_DEVICE",
                    T(
                        "Device notification code",
                        "Code de notification du dispositif",
                        "Notificatiecode van het hulpmiddel",
                        "Meldecode des Produkts",
                    ),
                    hint=same("e.g. PM-40012345"),
                    required=True,
                    constraint="regex(., '^[A-Za-z0-9.-]{1,35}$')",
                    message=T(
                        "Letters, digits, dots and dashes, at most 35.",
                        "Lettres, chiffres, points et tirets, 35 au plus.",
                        "Letters, cijfers, punten en streepjes, hoogstens 35.",
                        "Buchstaben, Ziffern, Punkte und Bindestriche, höchstens 35.",
                    ),
                    nippin=billing("DeviceCode"),
                ),
                q(
                    "text",
                    "TX_DEVICE_SERIAL",
                    T("Serial number", "Numéro de série", "Serienummer", "Seriennummer"),
                    nippin=billing("DeviceSerial"),
                ),
                q(
                    "text",
                    "CD_NOMENCLATURE",
                    T("Nomenclature code", "Code de nomenclature", "Nomenclatuurcode", "Nomenklaturcode"),
                    hint=T("6 digits", "6 chiffres", "6 cijfers", "6 Ziffern"),
                    required=True,
                    constraint="regex(., '^[0-9]{6}$')",
                    message=T(
                        "A nomenclature code has 6 digits.",
                        "Un code de nomenclature compte 6 chiffres.",
                        "Een nomenclatuurcode telt 6 cijfers.",
                        "Ein Nomenklaturcode hat 6 Ziffern.",
                    ),
                    nippin=billing("NomenclatureCode"),
                ),
                q(
                    "text",
                    "CD_RIZIV_IMPL_PHYS",
                    T(
                        "NIHDI number of the implanting physician",
                        "Numéro INAMI du médecin implanteur",
                        "RIZIV-nummer van de implanterende arts",
                        "LIKIV-Nummer des implantierenden Arztes",
                    ),
                    required=True,
                    constraint="regex(., '^1[0-9]{10}$')",
                    message=T(
                        "A physician's NIHDI number has 11 digits and starts with 1.",
                        "Le numéro INAMI d'un médecin compte 11 chiffres et commence par 1.",
                        "Het RIZIV-nummer van een arts telt 11 cijfers en begint met 1.",
                        "Die LIKIV-Nummer eines Arztes hat 11 Ziffern und beginnt mit 1.",
                    ),
                    nippin=billing("PhysicianNihdi"),
                ),
                q(
                    "text",
                    "CD_RIZIV_HOSP",
                    T(
                        "NIHDI number of the hospital",
                        "Numéro INAMI de l'hôpital",
                        "RIZIV-nummer van het ziekenhuis",
                        "LIKIV-Nummer des Krankenhauses",
                    ),
                    required=True,
                    constraint="regex(., '^[0-9]{8}$')",
                    message=T(
                        "A hospital's NIHDI number has 8 digits.",
                        "Le numéro INAMI d'un hôpital compte 8 chiffres.",
                        "Het RIZIV-nummer van een ziekenhuis telt 8 cijfers.",
                        "Die LIKIV-Nummer eines Krankenhauses hat 8 Ziffern.",
                    ),
                    nippin=billing("HospitalNihdi"),
                ),
                q(
                    f"select_one {YES_NO}",
                    "CD_REIMBURSEMENT",
                    T(
                        "Reimbursement asked (billing message to MyCareNet)",
                        "Remboursement demandé (message de facturation vers MyCareNet)",
                        "Terugbetaling gevraagd (factuurbericht naar MyCareNet)",
                        "Erstattung beantragt (Abrechnungsnachricht an MyCareNet)",
                    ),
                    required=True,
                    default="yes",
                ),
            ),
        ]
    )
    return [
        Dcd(
            "HDBP0300",
            "PACEMAKER",
            T("Pacemakers", "Stimulateurs cardiaques", "Pacemakers", "Herzschrittmacher"),
            "PACEMAKER",
            300,
            T(
                "Pacemaker implant",
                "Implantation d'un stimulateur",
                "Implantatie van een pacemaker",
                "Schrittmacherimplantation",
            ),
            ["IDC_PAT", "DT_IMPLANT"],
            "Authored by hdhub; this is NOT the official healthdata.be DCD, and HDBP0300 is hdhub's "
            "placeholder, not an official code. That implant registries with a reimbursement send "
            "the limited nominative data to the NIC's MyCareNet (NIPPIN) comes from healthdata.be's "
            "public Self-Service Portal documentation (NIPPIN Manager, NIPPIN reports); every field, "
            "code list, rule and the message's element names are hdhub's own choice.",
            survey,
            nippin_message="implant",
        )
    ]


def all_dcds() -> list[Dcd]:
    return [*angio(), *hiv_sequence(), *ngs(), *pacemaker()]


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------

_BOLD = Font(bold=True)


def _used_lists(survey: list[Row]) -> list[str]:
    seen: list[str] = []
    for row in survey:
        type_ = str(row["type"])
        if type_.startswith(("select_one ", "select_multiple ")):
            list_name = type_.split()[1]
            if list_name not in CHOICES:
                raise ValueError(f"unknown choice list {list_name}")
            if list_name not in seen:
                seen.append(list_name)
    return seen


def _check_cell(value: object) -> object:
    if isinstance(value, str) and value.startswith("="):
        raise ValueError(f"a cell may not start with '=' (openpyxl would write a formula): {value!r}")
    return value


def _write_sheet(
    wb: Workbook, title: str, header: list[str], rows: Sequence[Sequence[object]], *, first: bool = False
) -> None:
    ws = wb.active if first else wb.create_sheet()
    assert ws is not None
    ws.title = title
    ws.append(header)
    for cell in ws[1]:
        cell.font = _BOLD
    for row in rows:
        ws.append([_check_cell(value) for value in row])
    ws.freeze_panes = "A2"


def build_workbook(dcd: Dcd) -> Workbook:
    wb = Workbook()
    wb.properties.creator = AUTHOR
    wb.properties.lastModifiedBy = AUTHOR
    wb.properties.title = f"{dcd.project_code} {dcd.dcd_code} {VERSION}"
    wb.properties.created = FIXED_TIME
    wb.properties.modified = FIXED_TIME

    _write_sheet(
        wb,
        "survey",
        SURVEY_COLUMNS,
        [[row.get(column, None) for column in SURVEY_COLUMNS] for row in dcd.survey],
        first=True,
    )

    lists = _used_lists(dcd.survey)
    extra_columns: list[str] = []
    for list_name in lists:
        for choice in CHOICES[list_name]:
            for column in choice.extra:
                if column not in extra_columns:
                    extra_columns.append(column)
    choice_header = ["list_name", "name", *(f"label::{lang}" for lang in LANGS), *extra_columns]
    choice_rows = [
        [list_name, choice.code, *choice.label, *(choice.extra.get(column) for column in extra_columns)]
        for list_name in lists
        for choice in CHOICES[list_name]
    ]
    _write_sheet(wb, "choices", choice_header, choice_rows)

    settings_header = ["form_title", "form_id", "version", "default_language", "source"]
    settings_row: list[object] = [dcd.dcd_title.en, dcd.dcd_code, VERSION, "en", dcd.source]
    if dcd.nippin_message is not None:
        settings_header.append("nippin_message")
        settings_row.append(dcd.nippin_message)
    _write_sheet(wb, "settings", settings_header, [settings_row])

    hd_rows: list[Sequence[object]] = [
        ["project_code", dcd.project_code],
        ["project_abbreviation", dcd.project_abbreviation],
        *([f"project_title::{lang}", text] for lang, text in zip(LANGS, dcd.project_title, strict=True)),
        ["dcd_code", dcd.dcd_code],
        ["dcd_number", dcd.dcd_number],
        *([f"dcd_title::{lang}", text] for lang, text in zip(LANGS, dcd.dcd_title, strict=True)),
        ["business_key", ",".join(dcd.business_key)],
    ]
    _write_sheet(wb, "hd", ["key", "value"], hd_rows)
    return wb


_MODIFIED = re.compile(rb"<dcterms:modified([^>]*)>[^<]*</dcterms:modified>")


def deterministic_bytes(wb: Workbook) -> bytes:
    """Save and re-zip with fixed timestamps (openpyxl stamps `modified` and zip times with now)."""
    raw = io.BytesIO()
    wb.save(raw)
    stamp = FIXED_TIME.strftime("%Y-%m-%dT%H:%M:%SZ").encode()
    out = io.BytesIO()
    with zipfile.ZipFile(raw) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename == "docProps/core.xml":
                data = _MODIFIED.sub(rb"<dcterms:modified\1>" + stamp + rb"</dcterms:modified>", data)
            fixed = zipfile.ZipInfo(info.filename, date_time=FIXED_TIME.timetuple()[:6])
            fixed.compress_type = zipfile.ZIP_DEFLATED
            fixed.external_attr = 0o644 << 16
            dst.writestr(fixed, data)
    return out.getvalue()


def validate(dcds: list[Dcd]) -> None:
    """Cheap self-checks of the definitions (the engine does the real validation)."""
    numbers: set[int] = set()
    codes: set[tuple[str, str]] = set()
    for dcd in dcds:
        assert dcd.dcd_number not in numbers, dcd.dcd_number
        assert 100 <= dcd.dcd_number <= 999
        numbers.add(dcd.dcd_number)
        assert (dcd.project_code, dcd.dcd_code) not in codes
        codes.add((dcd.project_code, dcd.dcd_code))
        names = [str(row["name"]) for row in dcd.survey if "name::technical" in row]
        assert len(names) == len(set(names)), f"{dcd.dcd_code}: duplicate names"
        for key in dcd.business_key:
            assert key in names, f"{dcd.dcd_code}: business key {key} is not a field"
        stack: list[str] = []
        for row in dcd.survey:
            type_ = str(row["type"])
            if type_ in ("begin_group", "begin_repeat"):
                stack.append(type_.split("_")[1])
            elif type_ in ("end_group", "end_repeat"):
                assert stack.pop() == type_.split("_")[1], f"{dcd.dcd_code}: unbalanced {type_}"
            for column in (
                "constraint",
                "relevant",
                "calculation",
                "required",
                "choice_filter",
                "repeat_count",
            ):
                for ref in re.findall(r"\$\{([A-Za-z0-9_]+)\}", str(row.get(column, ""))):
                    assert ref in names, f"{dcd.dcd_code}: {row.get('name')} refers to unknown ${{{ref}}}"
        assert not stack, f"{dcd.dcd_code}: unclosed {stack}"


def flattened_fields(dcd: Dcd) -> list[str]:
    """The technical names as sent in CSV and API (repeats expanded to _1.._n)."""
    out: list[str] = []
    repeat_max: int | None = None
    for row in dcd.survey:
        type_ = str(row["type"])
        if type_ == "begin_repeat":
            repeat_max = int(str(row["hd::repeat_max"]))
        elif type_ == "end_repeat":
            repeat_max = None
        elif "name::technical" in row:
            name = str(row["name::technical"])
            out.extend([f"{name}_{i}" for i in range(1, repeat_max + 1)] if repeat_max else [name])
    return out


def main() -> int:
    dcds = all_dcds()
    validate(dcds)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for dcd in dcds:
        path = OUT_DIR / dcd.filename
        data = deterministic_bytes(build_workbook(dcd))
        if not path.exists() or path.read_bytes() != data:
            path.write_bytes(data)
        fields = flattened_fields(dcd)
        sys.stdout.write(f"{path.relative_to(HERE.parent.parent.parent)}: {len(fields)} fields\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
