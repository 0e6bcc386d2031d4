"""Print the shape of the code: the longest functions and the files over a size.

Usage: python tools/code_shape.py [--most N] [--lines N]

Reads the Python of services/*/src and libs/*/src (not the generated libs/proto, nor the
Alembic migrations, which are history and never edited) and prints
the N longest functions (nested ones counted on their own and inside their parent) and
the files over a number of lines, longest first. It reads text only and changes nothing.
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GENERATED = ("libs/proto/",)
FROZEN = "/migrations/"


def sources() -> list[Path]:
    """The Python files of the services and libraries, generated code and migrations left out."""
    found = [*ROOT.glob("services/*/src/**/*.py"), *ROOT.glob("libs/*/src/**/*.py")]
    return sorted(
        p for p in found if not str(p.relative_to(ROOT)).startswith(GENERATED) and FROZEN not in str(p)
    )


def functions(path: Path) -> list[tuple[int, str]]:
    """(lines, place) of every function in a file, decorators included."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    rel = path.relative_to(ROOT)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            end = node.end_lineno or node.lineno
            found.append((end - start + 1, f"{rel}:{start} {node.name}"))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--most", type=int, default=15, help="how many functions (15)")
    parser.add_argument("--lines", type=int, default=600, help="file size to list above (600)")
    args = parser.parse_args()
    files = sources()
    longest = sorted((f for path in files for f in functions(path)), reverse=True)
    print(f"{args.most} longest functions (lines, place):")
    for lines, place in longest[: args.most]:
        print(f"  {lines:4d}  {place}")
    sizes = [(len(p.read_text(encoding="utf-8").splitlines()), p) for p in files]
    large = sorted(((n, p) for n, p in sizes if n > args.lines), reverse=True)
    print(f"files over {args.lines} lines: {len(large)}")
    for lines, path in large:
        print(f"  {lines:4d}  {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
