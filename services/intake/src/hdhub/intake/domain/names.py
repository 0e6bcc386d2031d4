"""What a file may be called, per registry folder. One rule for SFTP and HTTP: the
file-name rule of every route (hdhub.common.filenames), at most 100 characters, then the
intake's own: the characters the NGS DCD's TX_VCF_FILE_NAME allows, because a VCF is
matched to the registration naming it byte for byte (HIV_Sequence names are
``ARL_yyyymmddHHMMSS.csv``, within the same set), and the registry's extension."""

from __future__ import annotations

import re
from dataclasses import dataclass

from hdhub.common.filenames import BadFileName, checked_file_name

#: The NGS DCD's TX_VCF_FILE_NAME: at most 100 characters, ASCII letters, digits, . _ -.
MAX_LENGTH = 100
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass(frozen=True)
class Registry:
    """A registry folder of the intake tree."""

    folder: str
    project_code: str
    kind: str  # "vcf" or "sequences"
    extensions: tuple[str, ...]


NGS = Registry("NGS", "HDBP0257", "vcf", (".vcf", ".vcf.gz"))
HIV_SEQUENCE = Registry("HIV_SEQUENCE", "HDBP0263", "sequences", (".csv",))
REGISTRIES = {r.folder: r for r in (NGS, HIV_SEQUENCE)}
FINISHED = "Finished"


class BadName(ValueError):
    """A file name that is refused; the message says which rule, never echoing control characters."""


#: WinSCP's temporary name: by default it sends a file over 100 KB as ``<name>.filepart``,
#: then renames it to ``<name>`` in the same folder once the last byte is in.
TEMPORARY_SUFFIX = ".filepart"


def final_name(name: str) -> str:
    """``name`` without WinSCP's temporary suffix: the name the file will carry."""
    return name[: -len(TEMPORARY_SUFFIX)] if name.endswith(TEMPORARY_SUFFIX) else name


def check_name(registry: Registry, name: str) -> str:
    """``name`` when a file of ``registry`` may carry it; :class:`BadName` naming the rule otherwise."""
    try:
        name = checked_file_name(name, max_length=MAX_LENGTH)
    except BadFileName as refusal:
        raise BadName(refusal.message()) from None
    if not NAME.fullmatch(name):
        raise BadName(
            "intake file names use only ASCII letters, digits, '.', '_' and '-', starting with a letter or "
            "digit: the name must equal the registration's TX_VCF_FILE_NAME (NGS) or filename (HIV_Sequence), "
            "which allow no other characters"
        )
    if not name.lower().endswith(registry.extensions):
        raise BadName(f"files in {registry.folder} end in {' or '.join(registry.extensions)}")
    return name


def sequence_stem(name: str) -> str:
    """``HSP_20240827092014`` for ``HSP_20240827092014.csv``."""
    return name[: -len(".csv")] if name.lower().endswith(".csv") else name
