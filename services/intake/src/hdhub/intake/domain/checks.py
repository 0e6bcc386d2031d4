"""Streaming checks: a checker is fed the file's bytes as they arrive (over SFTP or HTTP,
on their way to the object store), so a file is checked without a second read and without
being held whole anywhere. The first broken rule is kept as the verdict, with a stable
slug and a message naming the line; the offending value is never part of the message
(it may be a patient's SSIN, name or birth date), except a sequence's wrong character
and its position (a nucleotide is no patient data, and the sender needs to find it)."""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field

from hdhub.common import hiv_sequence
from hdhub.intake.domain import personal
from hdhub.intake.domain.names import sequence_stem

#: Longest line read: meta and header lines are short; a data line with a huge INFO is not.
MAX_LINE = 8 * 1024 * 1024
#: VCF data lines parsed after the header. The header (where patient data could hide) is
#: always read whole; the body is the registry's to interpret, and parsing every line of a
#: multi-gigabyte file in Python would cost more than receiving it.
VCF_DATA_LINES_CHECKED = 10_000


@dataclass
class Verdict:
    accepted: bool
    rule: str = ""
    message: str = ""
    #: HIV_Sequence: the recordnames in file order (1-to-1 links) and the filename column.
    recordnames: list[str] = field(default_factory=list)
    filename_value: str = ""


class Rejected(Exception):
    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule, self.message = rule, message


class LineChecker:
    """Splits the byte stream into lines and hands each to ``line()``; stops at the first
    rejection but keeps accepting bytes (the file is still stored, with its verdict)."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.number = 0
        self.failure: Rejected | None = None
        self.size = 0

    def feed(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.failure is not None:
            return
        try:
            self._feed_text(chunk)
        except Rejected as exc:
            self.failure = exc
            self._buffer.clear()

    def _feed_text(self, data: bytes) -> None:
        self._buffer.extend(data)
        start = 0
        while (end := self._buffer.find(b"\n", start)) >= 0:
            self._line(bytes(self._buffer[start:end]))
            start = end + 1
        del self._buffer[:start]
        if len(self._buffer) > MAX_LINE:
            raise Rejected("line-too-long", f"line {self.number + 1} is longer than {MAX_LINE} bytes")

    def _line(self, raw: bytes) -> None:
        self.number += 1
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise Rejected("encoding", f"line {self.number} is not UTF-8") from None
        if self.number == 1:
            text = text.removeprefix("\ufeff")
        self.line(text)

    def line(self, text: str) -> None:
        raise NotImplementedError

    def end(self) -> Verdict:
        raise NotImplementedError

    def finish(self) -> Verdict:
        """The content's verdict once the whole file went through (name rules come on delivery)."""
        if self.failure is None and self.size == 0:
            self.failure = Rejected("empty-file", "the file is empty")
        if self.failure is None:
            try:
                if self._buffer:
                    self._line(bytes(self._buffer))
                    self._buffer.clear()
                return self.end()
            except Rejected as exc:
                self.failure = exc
        return Verdict(False, self.failure.rule, self.failure.message)


# --- VCF ------------------------------------------------------------------------------------

FILEFORMAT = re.compile(r"^##fileformat=VCFv4\.\d+$")
META = re.compile(r"^##[A-Za-z0-9_.\-]+=")
FIXED_COLUMNS = ["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO"]


class VcfChecker(LineChecker):
    """VCF 4.x, streamed: ``##fileformat=VCFv4.x`` first, ``##key=value`` meta lines, the
    ``#CHROM`` header with the eight fixed columns (then FORMAT and sample names), data
    lines with as many columns and an integer POS; no patient information in the header
    (``personal``).
    bgzip / gzip input (``.vcf.gz``) is decompressed as it streams."""

    def __init__(self) -> None:
        super().__init__()
        self.columns = 0
        self.data_lines = 0
        self._gzip: zlib._Decompress | None = None
        self._sniffed = False

    @property
    def done(self) -> bool:
        return self.data_lines >= VCF_DATA_LINES_CHECKED

    def feed(self, chunk: bytes) -> None:
        if self.done:  # the sampled lines are read; what is left of a line is not checked
            self._buffer.clear()
            self.size += len(chunk)
            return
        if not self._sniffed and chunk:
            self._sniffed = True
            if chunk[:2] == b"\x1f\x8b":
                self._gzip = zlib.decompressobj(wbits=31)
        if self._gzip is None or self.failure is not None:
            super().feed(chunk)
            return
        self.size += len(chunk)
        try:
            data = chunk
            while data and not self.done:
                self._feed_text(self._gzip.decompress(data, MAX_LINE))
                data = self._gzip.unconsumed_tail
                if self._gzip.eof:  # bgzip: a series of gzip members
                    data = self._gzip.unused_data + data
                    self._gzip = zlib.decompressobj(wbits=31)
        except zlib.error:
            self.failure = Rejected("vcf-format", "the .gz file is not valid gzip")
        except Rejected as exc:
            self.failure = exc

    def line(self, text: str) -> None:
        n = self.number
        if n == 1:
            if not FILEFORMAT.match(text):
                raise Rejected("vcf-format", "line 1 must be ##fileformat=VCFv4.x")
            return
        if self.columns == 0:
            if text.startswith("##"):
                if not META.match(text):
                    raise Rejected("vcf-format", f"line {n}: a meta line is ##key=value")
                found = personal.in_meta_line(text)
                if found:
                    raise Rejected("vcf-patient-data", f"line {n}: the header carries {found}")
                return
            if text.startswith("#CHROM"):
                columns = text.split("\t")
                if columns[:8] != FIXED_COLUMNS:
                    raise Rejected(
                        "vcf-format",
                        f"line {n}: the header line starts with {' '.join(FIXED_COLUMNS)}, tab-separated",
                    )
                if len(columns) > 8:
                    if columns[8] != "FORMAT" or len(columns) == 9:
                        raise Rejected("vcf-format", f"line {n}: sample columns follow a FORMAT column")
                    for i, sample in enumerate(columns[9:], start=1):
                        found = personal.in_sample_name(sample)
                        if found:
                            raise Rejected("vcf-patient-data", f"line {n}: sample name {i} carries {found}")
                self.columns = len(columns)
                return
            raise Rejected("vcf-format", f"line {n}: expected a ##meta line or the #CHROM header line")
        if not text:
            return
        fields = text.split("\t")
        if len(fields) != self.columns:
            raise Rejected(
                "vcf-format", f"line {n}: {len(fields)} columns where the header has {self.columns}"
            )
        if not fields[1].isdigit():
            raise Rejected("vcf-format", f"line {n}: POS is not a whole number")
        self.data_lines += 1

    def end(self) -> Verdict:
        if self.done:
            return Verdict(True)
        if self._gzip is not None and not self._gzip.eof and (self._gzip.unconsumed_tail or self.number == 0):
            raise Rejected("vcf-format", "the .gz file is cut short")
        if self.columns == 0:
            raise Rejected("vcf-format", "there is no #CHROM header line")
        return Verdict(True)


# --- HIV nucleotide sequences ---------------------------------------------------------------

SEQUENCE_HEADER = ["filename", "recordname", "genetic_sequence"]


class SequenceChecker(LineChecker):
    """``filename;recordname;genetic_sequence``: every row's filename is the file's own
    (``ARL_yyyymmddHHMMSS``), every recordname ``filename_nnnnn`` and unique, every
    sequence upper-case IUPAC nucleotide codes (``hdhub.common.hiv_sequence``)."""

    def __init__(self) -> None:
        super().__init__()
        self.filename = ""
        self.recordnames: list[str] = []
        self._seen: set[str] = set()

    def line(self, text: str) -> None:
        n = self.number
        values = [v.strip().strip('"') for v in text.split(";")]
        if n == 1:
            if values != SEQUENCE_HEADER:
                raise Rejected("sequence-header", "line 1 must be filename;recordname;genetic_sequence")
            return
        if not text.strip():
            return
        if len(values) != 3:
            raise Rejected("sequence-columns", f"line {n}: {len(values)} values where 3 are expected")
        filename, recordname, sequence = values
        if not self.filename:
            if not hiv_sequence.is_sequence_stem(filename):
                raise Rejected(
                    "sequence-filename",
                    f"line {n}: filename is not ARL_yyyymmddHHMMSS with a real date and time",
                )
            self.filename = filename
        elif filename != self.filename:
            raise Rejected("sequence-filename", f"line {n}: filename differs from the first row's")
        if not re.fullmatch(re.escape(self.filename) + r"_\d{5}", recordname):
            raise Rejected("sequence-recordname", f"line {n}: recordname is not {self.filename}_nnnnn")
        if recordname in self._seen:
            raise Rejected(
                "sequence-duplicate-recordname", f"line {n}: recordname {recordname} appears twice"
            )
        if not sequence:
            raise Rejected("sequence-missing", f"line {n}: genetic_sequence is empty")
        if bad := hiv_sequence.bad_nucleotide(sequence):
            position, char = bad
            raise Rejected(
                "sequence-letters",
                f"line {n}: genetic_sequence has {char} at position {position}; "
                "only upper-case IUPAC nucleotide codes (ACGTURYSWKMBDHVN) are allowed",
            )
        self._seen.add(recordname)
        self.recordnames.append(recordname)

    def end(self) -> Verdict:
        if self.number < 1:
            raise Rejected("sequence-header", "line 1 must be filename;recordname;genetic_sequence")
        if not self.recordnames:
            raise Rejected("sequence-empty", "the file has no sequences")
        return Verdict(True, recordnames=list(self.recordnames), filename_value=self.filename)


def delivery_problem(kind: str, name: str, filename_value: str) -> Rejected | None:
    """The rule a file breaks by the name it is delivered under (content checked before)."""
    if kind == "sequences" and sequence_stem(name) != filename_value:
        return Rejected(
            "sequence-file-name", f"the file must be named {filename_value}.csv, after its filename column"
        )
    return None


def checker_for(kind: str) -> LineChecker:
    return VcfChecker() if kind == "vcf" else SequenceChecker()
