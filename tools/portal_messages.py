"""Keep the portal's gettext catalogues in step with its pages (``make messages``):
extract every message of the templates and page modules into messages.pot, then merge
it into the nl, fr and de catalogues (new messages arrive untranslated, which
services/portal/tests/test_catalogues.py refuses until someone translates them)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PORTAL = ROOT / "services" / "portal"
LOCALE = PORTAL / "src" / "hdhub" / "portal" / "locale"
PYBABEL = str(Path(sys.executable).parent / "pybabel")


def extract(output: Path) -> None:
    subprocess.run(
        [
            PYBABEL,
            "-q",
            "extract",
            "-F",
            "babel.cfg",
            "-k",
            "N_",
            "--no-location",
            "--sort-output",
            "--omit-header",
            "-o",
            str(output),
            ".",
        ],
        cwd=PORTAL,
        check=True,
    )


def main() -> None:
    extract(LOCALE / "messages.pot")
    for lang in ("nl", "fr", "de"):
        subprocess.run(
            [
                PYBABEL,
                "-q",
                "update",
                "-i",
                str(LOCALE / "messages.pot"),
                "-d",
                str(LOCALE),
                "-l",
                lang,
                "--no-fuzzy-matching",
                "--ignore-obsolete",
                "--omit-header",
            ],
            check=True,
        )


if __name__ == "__main__":
    main()
