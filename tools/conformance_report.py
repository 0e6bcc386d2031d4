"""Write the conformance tables of docs/dcd-format.md from the cases the tests run.

    .venv/bin/python tools/conformance_report.py          # rewrite the tables
    .venv/bin/python tools/conformance_report.py --check  # exit 1 when they are stale

Three tables, each between ``<!-- conformance:NAME:start -->`` and ``...:end -->``:
``functions`` (every function of ODK's specification: supported or refused with the
parser's reason, and what checks it), ``xlsform`` (each XLSForm feature case of
services/registrations/tests/conformance/features.py, run: imported or the first problem)
and ``pyxform`` (pyxform's example forms, run the same way). The test
test_xlsform_features.py fails when the document differs from what this writes.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "dcd-format.md"
sys.path.insert(0, str(ROOT))

from hdhub.registrations.engine.functions import FUNCTIONS, REFUSED_FUNCTIONS  # noqa: E402
from services.registrations.tests.conformance.corpus import SIGNATURES  # noqa: E402
from services.registrations.tests.conformance.features import (  # noqa: E402
    FEATURES,
    ODK_FUNCTIONS,
    PYXFORM_EXAMPLES,
    UNIT_TESTED,
    Feature,
    run,
)

_BLOCK = re.compile(r"(<!-- conformance:(\w+):start -->\n)(.*?)(<!-- conformance:\2:end -->)", re.DOTALL)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _functions() -> str:
    lines = ["| function | in hdhub | checked by |", "| --- | --- | --- |"]
    for name in ODK_FUNCTIONS:
        if name in FUNCTIONS:
            status = "supported"
            if name in SIGNATURES:
                checked = "the differential test against Enketo"
            else:
                test, why = UNIT_TESTED[name]
                checked = f"`{test}` ({why})"
        else:
            status = f"refused: {REFUSED_FUNCTIONS[name]}"
            checked = "`test_every_odk_function_is_supported_or_refused_with_a_reason`"
        lines.append(f"| `{name}()` | {_cell(status)} | {checked} |")
    return "\n".join(lines) + "\n"


def _outcomes(features: tuple[Feature, ...], heading: str) -> str:
    lines = [f"| {heading} | in hdhub | what the import says |", "| --- | --- | --- |"]
    for feature in features:
        outcome = run(feature)
        if outcome.definition is not None:
            lines.append(f"| {_cell(feature.name)} | supported | imports |")
            continue
        first = outcome.problems[0]
        lines.append(f"| {_cell(feature.name)} | refused | {_cell(str(first))} |")
    return "\n".join(lines) + "\n"


def generate() -> dict[str, str]:
    """Each table as this tool writes it, by its name."""
    return {
        "functions": _functions(),
        "xlsform": _outcomes(FEATURES, "feature"),
        "pyxform": _outcomes(PYXFORM_EXAMPLES, "pyxform example form"),
    }


def current(text: str | None = None) -> dict[str, str]:
    """Each table as docs/dcd-format.md has it, by its name."""
    text = DOC.read_text(encoding="utf-8") if text is None else text
    return {m.group(2): m.group(3) for m in _BLOCK.finditer(text)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when the tables are stale")
    args = parser.parse_args(argv)
    tables = generate()
    text = DOC.read_text(encoding="utf-8")
    if args.check:
        stale = sorted(name for name, table in tables.items() if current(text).get(name) != table)
        for name in stale:
            print(f"docs/dcd-format.md: the {name} table is stale")
        return 1 if stale else 0
    missing = set(tables) - set(current(text))
    if missing:
        print(f"docs/dcd-format.md has no markers for {', '.join(sorted(missing))}")
        return 1
    DOC.write_text(_BLOCK.sub(lambda m: m.group(1) + tables[m.group(2)] + m.group(4), text), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
