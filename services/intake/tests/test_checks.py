"""The content checks, fed the way transfers feed them: in arbitrary chunks."""

from __future__ import annotations

import gzip
import zlib

import pytest

from hdhub.common.ssin import contains_ssin
from hdhub.intake.domain.checks import BGZF_EOF, SequenceChecker, VcfChecker, Verdict, delivery_problem
from hdhub.intake.domain.names import HIV_SEQUENCE, NGS, BadName, check_name
from services.intake.tests.support import sequences, vcf

SSIN = "85.04.02-169.32"  # DOMAIN.md's example: a valid mod-97 number


def run(checker: VcfChecker | SequenceChecker, data: bytes, chunk: int = 7) -> Verdict:
    for i in range(0, len(data), chunk):
        checker.feed(data[i : i + chunk])
    return checker.finish()


def test_a_plain_vcf_passes_in_any_chunking() -> None:
    for chunk in (1, 5, 64, 1 << 20):
        assert run(VcfChecker(), vcf(), chunk).accepted


def test_a_bgzipped_vcf_is_read_member_by_member() -> None:
    data = vcf()
    head, body = data.split(b"7\t", 1)
    verdict = run(VcfChecker(), gzip.compress(head) + gzip.compress(b"7\t" + body), 11)
    assert verdict.accepted


@pytest.mark.parametrize(
    ("meta", "samples", "kind"),
    [
        ((f"##patient={SSIN}",), ("S1",), "a national register number (SSIN)"),
        (("##sample_note=85040216932",), ("S1",), "a national register number (SSIN)"),
        (("##PatientName=Jan Peeters",), ("S1",), "a person's name"),
        (("##SAMPLE=<ID=S1,Name=Peeters>",), ("S1",), "a person's name"),
        (("##date_of_birth=02/04/1985",), ("S1",), "a birth date"),
        ((), ("85040216932",), "a national register number (SSIN)"),
        ((), ("Peeters, Jan",), "what looks like a person's name"),
        ((), ("S1_1985-04-02",), "a date"),
    ],
)
def test_patient_information_in_the_header_is_rejected_without_echoing_it(
    meta: tuple[str, ...], samples: tuple[str, ...], kind: str
) -> None:
    verdict = run(VcfChecker(), vcf(meta=meta, samples=samples))
    assert not verdict.accepted and verdict.rule == "vcf-patient-data"
    assert kind in verdict.message
    for value in (*meta, *samples):
        for secret in (value.split("=", 1)[-1], "85040216932", "Peeters", "1985"):
            if secret in value:
                assert secret not in verdict.message


def test_ordinary_headers_are_not_mistaken_for_patient_data() -> None:
    meta = (
        "##fileDate=20250616",
        '##INFO=<ID=GENE,Number=1,Type=String,Description="Gene name">',
        "##PEDIGREE=<Name_0=G0-ID,Name_1=G1-ID>",
        "##contig=<ID=chr7,length=159345973,assembly=GRCh38>",
    )
    assert run(VcfChecker(), vcf(meta=meta, samples=("TUMOR", "NORMAL", "NGS-2025-000123"))).accepted


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"##fileformat=VCFv3.3\n", "line 1 must be ##fileformat=VCFv4.x"),
        (b"CHROM\tPOS\n", "line 1 must be ##fileformat=VCFv4.x"),
        (b"##fileformat=VCFv4.2\n##no equals sign\n", "line 2: a meta line is ##key=value"),
        (b"##fileformat=VCFv4.2\n#CHROM\tPOS\n", "line 2: the header line starts with"),
        (b"##fileformat=VCFv4.2\n##source=x\n", "there is no #CHROM header line"),
        (
            b"##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n7\tx\t.\tA\tC\t.\t.\t.\n",
            "line 3: POS is not a whole number",
        ),
        (
            b"##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n7\t1\t.\tA\n",
            "line 3: 4 columns where the header has 8",
        ),
        (b"##fileformat=VCFv4.2\n\xff\xfe\n", "line 2 is not UTF-8"),
        (b"", "the file is empty"),
    ],
)
def test_what_is_not_vcf_4_is_rejected_naming_the_line(data: bytes, message: str) -> None:
    verdict = run(VcfChecker(), data)
    assert not verdict.accepted
    assert message in verdict.message


def bgzip(data: bytes, block: int = 4096) -> bytes:
    """``data`` as bgzip writes it (BGZF): blocks of gzip that each carry their size in a
    ``BC`` extra field, then the empty end-of-file block."""
    out = bytearray()
    for at in range(0, len(data), block):
        piece = data[at : at + block]
        packer = zlib.compressobj(6, zlib.DEFLATED, -15)
        deflated = packer.compress(piece) + packer.flush()
        size = 18 + len(deflated) + 8
        out += b"\x1f\x8b\x08\x04\x00\x00\x00\x00\x00\xff\x06\x00BC\x02\x00" + (size - 1).to_bytes(
            2, "little"
        )
        out += deflated + zlib.crc32(piece).to_bytes(4, "little") + len(piece).to_bytes(4, "little")
    return bytes(out + BGZF_EOF)


BIG = vcf(rows=30_000)  # past the data lines the checks read: a cut after them is found too


def test_a_bgzf_file_passes_whole_in_any_chunking_and_is_told_from_plain_gzip() -> None:
    data = bgzip(BIG)
    assert gzip.decompress(data) == BIG
    for chunk in (1, 7, 17, 4096, 1 << 20):
        checker = VcfChecker("NGS_X.vcf.gz")
        assert run(checker, data, chunk).accepted, chunk
    assert run(VcfChecker("NGS_X.vcf.gz"), gzip.compress(BIG), 4096).accepted
    assert run(
        VcfChecker("NGS_X.vcf.gz"), gzip.compress(BIG[:5000]) + gzip.compress(BIG[5000:]), 999
    ).accepted


@pytest.mark.parametrize("compress", [bgzip, gzip.compress], ids=["bgzf", "gzip"])
@pytest.mark.parametrize(
    "cut",
    [
        lambda n: n // 2,  # mid-file, past the lines the checks read
        lambda n: 600,  # within them
        lambda n: n - 4,  # the length of the trailer
        lambda n: n - 8,  # the CRC and the length
        lambda n: n - 28,  # bgzip's end-of-file block: every block before it whole
    ],
    ids=["half", "start", "4-bytes", "8-bytes", "28-bytes"],
)
def test_a_gzip_cut_anywhere_is_rejected_as_cut_not_for_its_last_line(compress, cut) -> None:  # type: ignore[no-untyped-def]
    data = compress(BIG)
    verdict = run(VcfChecker("NGS_X.vcf.gz"), data[: cut(len(data))], 4096)
    assert not verdict.accepted and verdict.rule == "vcf-format"
    assert verdict.message == "the .gz file is cut short or damaged: send the whole file again"


def test_a_gzip_cut_at_a_line_after_a_full_flush_is_rejected() -> None:
    packer = zlib.compressobj(6, zlib.DEFLATED, 31)
    head = packer.compress(BIG[: BIG.index(b"\n", 100_000) + 1]) + packer.flush(zlib.Z_FULL_FLUSH)
    assert not run(VcfChecker("NGS_X.vcf.gz"), head, 4096).accepted


@pytest.mark.parametrize("compress", [bgzip, gzip.compress], ids=["bgzf", "gzip"])
def test_zero_bytes_after_the_end_are_padding_as_gzip_reads_them_and_anything_else_is_not(compress) -> None:  # type: ignore[no-untyped-def]
    data = compress(BIG)
    assert run(VcfChecker("NGS_X.vcf.gz"), data + bytes(16), 4096).accepted
    assert run(VcfChecker("NGS_X.vcf.gz"), data + bytes(5000), 999).accepted
    assert not run(VcfChecker("NGS_X.vcf.gz"), data + bytes(16) + b"x", 4096).accepted


def test_a_damaged_gzip_is_rejected() -> None:
    data = bytearray(gzip.compress(BIG))
    data[len(data) // 2] ^= 0xFF
    assert not run(VcfChecker("NGS_X.vcf.gz"), bytes(data), 4096).accepted


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        (
            "NGS_X.vcf.gz",
            vcf(),
            "the file is named .gz but is not compressed: compress it with bgzip, or name it .vcf",
        ),
        ("NGS_X.vcf", gzip.compress(vcf()), "the file is gzip-compressed: name it .vcf.gz"),
    ],
)
def test_a_name_that_says_otherwise_than_the_bytes_is_rejected(name: str, data: bytes, message: str) -> None:
    verdict = run(VcfChecker(name), data)
    assert (verdict.accepted, verdict.rule, verdict.message) == (False, "vcf-format", message)


def test_a_sequence_file_gives_its_recordnames_in_order() -> None:
    verdict = run(SequenceChecker(), sequences("HSP_20240827092014", 3))
    assert verdict.accepted and verdict.filename_value == "HSP_20240827092014"
    assert verdict.recordnames == [f"HSP_20240827092014_{i:05d}" for i in (1, 2, 3)]


@pytest.mark.parametrize(
    ("rows", "rule", "message"),
    [
        (
            [
                "HSP_20240827092014;HSP_20240827092014_00001;ACGT",
                "HSP_20240827092014;HSP_20240827092014_00001;ACGT",
            ],
            "sequence-duplicate-recordname",
            "line 3",
        ),
        (
            ["HSP_20240827092014;HSP_20240827092014_00001;ACGTXZ"],
            "sequence-letters",
            "line 2: genetic_sequence has X at position 5",
        ),
        (
            ["HSP_20240827092014;HSP_20240827092014_00001;ACGTacgt"],
            "sequence-letters",
            "line 2: genetic_sequence has a at position 5; only upper-case IUPAC nucleotide codes",
        ),
        (
            ["HSP_20240827092014;HSP_20240827092014_00001;ACG-T"],
            "sequence-letters",
            "line 2: genetic_sequence has - at position 4",
        ),
        (["HSP_20240827092014;HSP_20240827092014_00001;AC.GT"], "sequence-letters", "has . at position 3"),
        (
            ["HSP_20240827092014;HSP_20240827092014_00001;AC\tGT"],
            "sequence-letters",
            "has U+0009 at position 3",
        ),
        (
            ["HSP_20240827092014;HSP_20240827092014_00001;"],
            "sequence-missing",
            "line 2: genetic_sequence is empty",
        ),
        (["HSP_20240230092014;HSP_20240230092014_00001;ACGT"], "sequence-filename", "real date and time"),
        (["HSP_20240827242014;HSP_20240827242014_00001;ACGT"], "sequence-filename", "line 2"),
        (["HSP_20240827092014;HSP_20240827092014_1;ACGT"], "sequence-recordname", "line 2"),
        (["HSP_2024082709201;HSP_2024082709201_00001;ACGT"], "sequence-filename", "line 2"),
        (["HSP_20241327092014;HSP_20241327092014_00001;ACGT"], "sequence-filename", "line 2"),
        (
            [
                "HSP_20240827092014;HSP_20240827092014_00001;ACGT",
                "HSP_20240827092015;HSP_20240827092015_00002;ACGT",
            ],
            "sequence-filename",
            "line 3",
        ),
        (["HSP_20240827092014;HSP_20240827092014_00001"], "sequence-columns", "line 2"),
        ([], "sequence-empty", "no sequences"),
    ],
)
def test_sequence_rules_name_the_line(rows: list[str], rule: str, message: str) -> None:
    verdict = run(SequenceChecker(), sequences("x", rows=rows))
    assert (verdict.accepted, verdict.rule) == (False, rule)
    assert message in verdict.message


def test_a_sequence_file_needs_its_header() -> None:
    verdict = run(SequenceChecker(), b"file;record;seq\nHSP_20240827092014;HSP_20240827092014_00001;ACGT\n")
    assert verdict.rule == "sequence-header"


def test_a_sequence_file_is_named_after_its_filename_column() -> None:
    assert delivery_problem("sequences", "HSP_20240827092014.csv", "HSP_20240827092014") is None
    problem = delivery_problem("sequences", "HSP_20240827092015.csv", "HSP_20240827092014")
    assert problem is not None and problem.rule == "sequence-file-name"


@pytest.mark.parametrize(
    ("registry", "name", "message"),
    [
        (NGS, "../etc/passwd.vcf", "no folder part"),
        (NGS, "a\x07b.vcf", "control characters"),
        (NGS, "a b.vcf", "only ASCII letters"),
        (NGS, "café.vcf", "must equal the registration's TX_VCF_FILE_NAME"),
        (NGS, "x" * 97 + ".vcf", "at most 100 characters"),
        (NGS, "sample.csv", "end in .vcf or .vcf.gz"),
        (HIV_SEQUENCE, "HSP_20240827092014.vcf", "end in .csv"),
        (NGS, "", "required"),
        (NGS, "NGS_85040216932.vcf", "national register number"),
        (NGS, "NUL.vcf", "Windows device name"),
        (NGS, "com1.vcf.gz", "Windows device name"),
        (NGS, "sample.vcf/", "may not end with / or"),
        (NGS, "a\u202eb.vcf", "invisible characters"),
        (NGS, "sample.vcf\n", "control characters"),
        (NGS, "sample.vcf.", "end with a dot"),
    ],
)
def test_file_names_are_plain(registry: object, name: str, message: str) -> None:
    with pytest.raises(BadName, match=message):
        check_name(registry, name)  # type: ignore[arg-type]


def test_ssin_detection_uses_the_check_number() -> None:
    assert contains_ssin("id 85040216932 here") and contains_ssin(SSIN)
    assert not contains_ssin("85040216933")  # wrong check digits
    assert not contains_ssin("chr7:155040216932")  # part of a longer number


@pytest.mark.parametrize(
    ("sample", "is_ssin"),
    [
        ("85040216932", True),
        ("90.26.15-011.59", True),  # a BIS number, sex unknown
        ("85023116921", False),  # 31 February: the check number fits, the date does not exist
        ("85040200007", False),  # sequence 000 is never attributed
        ("30050101270", False),  # checks only as a birth in 2030
    ],
)
def test_vcf_ssin_detection_is_the_shared_ssin_rule(sample: str, is_ssin: bool) -> None:
    verdict = run(VcfChecker(), vcf(samples=(sample,)))
    assert (verdict.rule == "vcf-patient-data" and "SSIN" in verdict.message) is is_ssin


def test_a_long_vcf_is_sampled_after_its_header_and_still_accepted() -> None:
    from hdhub.intake.domain.checks import VCF_DATA_LINES_CHECKED

    data = vcf(rows=VCF_DATA_LINES_CHECKED + 500)
    for chunk in (4096, 1000, 77):
        checker = VcfChecker()
        assert run(checker, data, chunk).accepted
        assert checker.data_lines >= VCF_DATA_LINES_CHECKED and checker.size == len(data)
