"""A service's own tests import that service, libs/common and the generated protos; what they
need of another service (the sim playing the central platform, an identity rule) comes
through tests/support, the one seam, so moving code inside a service never breaks another
service's tests (docs/architecture.md, "Where things are in a service")."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVICES = sorted(p.name for p in (ROOT / "services").iterdir() if (p / "src" / "hdhub").is_dir())
SHARED = {"common", "proto"}

#: Imports of another service kept on purpose, each with its reason.
ALLOWED = {
    # The crash test writes registrations' hand-over job itself, in registrations' own
    # table, to kill nippin between the job and its message: the job's shape is the seam.
    ("nippin", "hdhub.registrations.delivery.handoff"),
    ("nippin", "hdhub.registrations.store"),
    # The reconciliation's page size made small, to see nippin read a stream of many pages.
    ("nippin", "hdhub.registrations.delivery"),
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_a_services_tests_import_no_other_service() -> None:
    found = []
    for service in SERVICES:
        for path in sorted((ROOT / "services" / service / "tests").rglob("*.py")):
            for name in _imports(path):
                parts = name.split(".")
                if parts[0] != "hdhub" or len(parts) < 2 or parts[1] in SHARED | {service}:
                    continue
                if (service, name) not in ALLOWED:
                    found.append(f"{path.relative_to(ROOT)}: {name}")
    assert found == [], "import it through tests/support instead:\n" + "\n".join(found)
