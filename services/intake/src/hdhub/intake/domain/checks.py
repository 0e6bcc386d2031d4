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


# --- gzip's end ---------------------------------------------------------------------------

#: bgzip's end-of-file block: an empty BGZF block, the last 28 bytes of every file it writes.
BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")


class GzipEnd:
    """Follows a gzip stream to its end, to tell a whole file from one cut short: the
    content checks read only the start of a VCF, and a cut can fall anywhere.

    bgzip's files (BGZF: gzip members that each name their own size, then an empty
    end-of-file block) are walked block by block without inflating a byte: complete when
    the last whole block is that end-of-file block. Any other gzip is inflated to the end
    (its output thrown away as it comes, its CRC checked by zlib): complete when its last
    member ended and nothing follows. A file that stops being BGZF midway is inflated from
    there."""

    def __init__(self) -> None:
        self._bgzf = True
        self._held = bytearray()  # BGZF: a header (or the end-of-file block) cut by a chunk's end
        self._skip = 0  # BGZF: bytes of the current block still to come
        self._ended = False  # BGZF: the last block was the end-of-file block
        self._inflater: zlib._Decompress | None = None
        self._member_ended = False
        self._padding = False  # zero bytes after the end, as tar leaves them: gzip ignores them
        self.broken = False

    def feed(self, chunk: bytes) -> None:
        if self.broken or not chunk:
            return
        if self._padding:
            self._pad(chunk)
        elif self._bgzf:
            self._walk(chunk)
        else:
            self._inflate(chunk)

    def _pad(self, data: bytes | memoryview) -> None:
        self._padding = True
        self.broken = self.broken or bool(bytes(data).strip(b"\0"))

    def _walk(self, chunk: bytes) -> None:
        """Each block's header read for its size, the rest of the block skipped: nothing
        is copied but a header cut by a chunk's end (and the small end-of-file block)."""
        if self._held:
            chunk, self._held = bytes(self._held) + chunk, bytearray()
        view = memoryview(chunk)
        while view:
            if self._skip:
                taken = min(self._skip, len(view))
                self._skip -= taken
                view = view[taken:]
                continue
            if view[0] == 0 and self._ended:
                self._pad(view)
                return
            size = _bgzf_block_size(view)
            if size is None or 0 < size <= len(BGZF_EOF) and len(view) < size:
                self._held += view
                return
            if size < 0:  # not BGZF: inflate from the start of this block
                self._bgzf = False
                self._inflate(bytes(view))
                return
            self._ended = view[:size] == BGZF_EOF
            taken = min(size, len(view))
            self._skip = size - taken
            view = view[taken:]

    def _inflate(self, chunk: bytes) -> None:
        data = chunk
        try:
            while data:
                if self._inflater is None and self._member_ended and data[0] == 0:
                    self._pad(data)
                    return
                if self._inflater is None:
                    self._inflater, self._member_ended = zlib.decompressobj(wbits=31), False
                self._inflater.decompress(data, 1 << 20)  # the text is thrown away
                data = self._inflater.unconsumed_tail
                if self._inflater.eof:
                    self._member_ended = True
                    data = self._inflater.unused_data + data
                    self._inflater = None
        except zlib.error:
            self.broken = True

    @property
    def complete(self) -> bool:
        if self.broken:
            return False
        if self._bgzf:
            return not self._skip and not self._held and self._ended
        return self._inflater is None and self._member_ended


def _bgzf_block_size(head: memoryview) -> int | None:
    """The whole size of the BGZF block ``head`` starts with; None while its header is
    not all there; -1 when it is not a BGZF block (plain gzip)."""
    if len(head) < 12:
        return None
    if head[0] != 0x1F or head[1] != 0x8B or head[2] != 8 or not head[3] & 4:
        return -1
    xlen = int.from_bytes(head[10:12], "little")
    if len(head) < 12 + xlen:
        return None
    extra, at = head[12 : 12 + xlen], 0
    while at + 4 <= len(extra):
        length = int.from_bytes(extra[at + 2 : at + 4], "little")
        if bytes(extra[at : at + 2]) == b"BC" and length == 2 and at + 6 <= len(extra):
            return int.from_bytes(extra[at + 4 : at + 6], "little") + 1
        at += 4 + length
    return -1


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

    def __init__(self, name: str = "") -> None:
        super().__init__()
        self.columns = 0
        self.data_lines = 0
        self._gzip: zlib._Decompress | None = None
        self._sniffed = False
        self._head = bytearray()  # the first byte, until the second tells gzip from text
        #: The name the file is sent under ("" when not known): .gz or not, as its bytes are.
        self.name = name
        self._end: GzipEnd | None = None  # gzip input: followed to its end

    @property
    def done(self) -> bool:
        return self.data_lines >= VCF_DATA_LINES_CHECKED

    def feed(self, chunk: bytes) -> None:
        if not self._sniffed:  # gzip or not, told by the first two bytes, however they come
            self._head += chunk
            if len(self._head) < 2:
                return
            chunk, self._head, self._sniffed = bytes(self._head), bytearray(), True
            if chunk[:2] == b"\x1f\x8b":
                self._gzip, self._end = zlib.decompressobj(wbits=31), GzipEnd()
        if self._end is not None and self.failure is None:  # a file already refused: no need
            self._end.feed(chunk)
        if self.done:  # the sampled lines are read; what is left of a line is not checked
            self._buffer.clear()
            self.size += len(chunk)
            return
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

    def finish(self) -> Verdict:
        # Before the lines: the last line of a file cut short is cut too, and its column
        # count would be the reason given instead of the cut.
        if self._head:  # a one-byte file
            self._sniffed = True
            super().feed(bytes(self._head))
        compressed = self._end is not None
        if self.failure is None and self.size and self.name:
            named = self.name.lower().endswith(".gz")
            if named and not compressed:
                self.failure = Rejected(
                    "vcf-format",
                    "the file is named .gz but is not compressed: compress it with bgzip, or name it .vcf",
                )
            elif compressed and not named:
                self.failure = Rejected("vcf-format", "the file is gzip-compressed: name it .vcf.gz")
        if self._end is not None and not self._end.complete and self.failure is None:
            self.failure = Rejected(
                "vcf-format", "the .gz file is cut short or damaged: send the whole file again"
            )
        if self.done:  # what is left of a line past the lines read is not checked, as in feed
            self._buffer.clear()
        return super().finish()

    def end(self) -> Verdict:
        if self.done:
            return Verdict(True)
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


def checker_for(kind: str, name: str = "") -> LineChecker:
    """The checks of a registry's files; ``name``, the name the file is sent under."""
    return VcfChecker(name) if kind == "vcf" else SequenceChecker()
