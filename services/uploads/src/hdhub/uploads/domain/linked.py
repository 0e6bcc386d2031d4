"""Linked uploads: HIV_Sequence metadata registrations validated together with their
`filename;recordname;genetic_sequence` file (DOMAIN.md). `filename` is the sequence file's
own name (`ARL_yyyymmddHHMMSS`, 1-to-many, metadata TX_ATT); `recordname` is
`filename_nnnnn` (1-to-1, metadata TX_ATT_RECRD): every recordname is matched exactly once."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from hdhub.common.hiv_sequence import bad_nucleotide, is_sequence_stem
from hdhub.uploads.domain.csvfile import CsvFile, Finding

SEQUENCE_COLUMNS = ["filename", "recordname", "genetic_sequence"]


@dataclass
class SequenceIndex:
    filename: str
    #: recordname -> physical line in the sequence file
    records: dict[str, int] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)


def read_sequences(csvfile: CsvFile, upload_filename: str) -> SequenceIndex:
    """Index a sequence file by recordname, with what is wrong in it."""
    stem = upload_filename.rsplit("/", 1)[-1].removesuffix(".csv").removesuffix(".CSV")
    index = SequenceIndex(stem)
    col = f"{upload_filename}:"
    if not is_sequence_stem(stem):  # ARL_yyyymmddHHMMSS, a real date and time
        index.findings.append(Finding("sequence_file_name", "error", column=col + "filename", value=stem))
    header = csvfile.open()
    if header != SEQUENCE_COLUMNS:
        index.findings.append(
            Finding("sequence_header", "error", line=1, column=col, value=";".join(header)[:200])
        )
        return index
    for r in csvfile.records():
        if len(r.values) != 3:
            index.findings.append(
                Finding(
                    "field_count",
                    "error",
                    r.line,
                    r.number,
                    col,
                    params={"count": len(r.values), "expected": 3},
                )
            )
            continue
        filename, recordname, sequence = (v.strip() for v in r.values)
        if filename != stem:
            index.findings.append(
                Finding(
                    "sequence_filename_column",
                    "error",
                    r.line,
                    r.number,
                    col + "filename",
                    filename,
                    {"expected": stem},
                )
            )
        if not recordname.startswith(stem + "_") or not re.fullmatch(r"\d{5}", recordname[len(stem) + 1 :]):
            index.findings.append(
                Finding(
                    "sequence_recordname",
                    "error",
                    r.line,
                    r.number,
                    col + "recordname",
                    recordname,
                    {"expected": stem},
                )
            )
        bad = bad_nucleotide(sequence)
        if not sequence or bad:
            index.findings.append(
                Finding(
                    "sequence_letters" if bad else "sequence_missing",
                    "error",
                    r.line,
                    r.number,
                    col + "genetic_sequence",
                    sequence[:40],
                    {"character": bad[1], "position": bad[0]} if bad else {},
                )
            )
        if recordname in index.records:
            index.findings.append(
                Finding("sequence_duplicate", "error", r.line, r.number, col + "recordname", recordname)
            )
            continue
        index.records[recordname] = r.line
    return index
