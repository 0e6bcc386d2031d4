"""What a file may be called, per registry folder. One rule for SFTP and HTTP: a plain
name (no folder, no control or shell characters, at most 100 characters, as the NGS DCD's
TX_VCF_FILE_NAME constraint says) with the registry's extension."""

from __future__ import annotations

import re
from dataclasses import dataclass

from hdhub.intake.domain.ssin import contains_ssin

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


def check_name(registry: Registry, name: str) -> str:
    if not name:
        raise BadName("a file name is required")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise BadName("file names may not contain control characters")
    if "/" in name or "\\" in name or name in (".", ".."):
        raise BadName("a file name has no folder part")
    if not NAME.match(name):
        raise BadName(
            "file names are at most 100 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    if not name.lower().endswith(registry.extensions):
        raise BadName(f"files in {registry.folder} end in {' or '.join(registry.extensions)}")
    if contains_ssin(name):
        raise BadName("file names may not carry an SSIN (patient information)")
    return name


def sequence_stem(name: str) -> str:
    """``HSP_20240827092014`` for ``HSP_20240827092014.csv``."""
    return name[: -len(".csv")] if name.lower().endswith(".csv") else name
